//! STORE (flag changes) and EXPUNGE.

use imap_codec::imap_types::{
    flag::{Flag, StoreResponse, StoreType},
    sequence::SequenceSet,
};

use crate::imap::search::in_set;
use crate::imap::session::Session;
use crate::imap::wire::{flags_from_letters, letter};
use crate::store::{Message, StoreError};

impl Session {
    pub(in crate::imap) fn store(
        &mut self,
        targets: &[usize],
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag],
        uid: bool,
    ) {
        let given: String = flags.iter().filter_map(letter).collect();
        for &i in targets {
            let message = self.selected().view[i].clone();
            let letters = match kind {
                StoreType::Replace => given.clone(),
                StoreType::Add => format!("{}{given}", message.flags),
                StoreType::Remove => message
                    .flags
                    .chars()
                    .filter(|c| !given.contains(*c))
                    .collect(),
            };
            let result =
                tokio::task::block_in_place(|| self.service.store.set_flags(&message, &letters));
            match result {
                Ok(updated) => self.selected.as_mut().expect("selected").view[i] = updated,
                // Expunged elsewhere: it goes at the next refresh.
                Err(StoreError::Gone) => continue,
                Err(e) => {
                    tracing::error!("store flags: {e}");
                    continue;
                }
            }
            if response == StoreResponse::Answer {
                let m = &self.selected().view[i];
                let uid_part = if uid {
                    format!("UID {} ", m.uid)
                } else {
                    String::new()
                };
                let line = format!(
                    "* {} FETCH ({uid_part}FLAGS {})",
                    i + 1,
                    flags_from_letters(&m.flags)
                );
                self.line(&line);
            }
        }
        // Our own renames are not news to us.
        self.changes.mark_unchanged();
    }

    /// Removes \Deleted messages (only those in `uids` when given).
    pub(in crate::imap) fn expunge(&mut self, uids: Option<&SequenceSet>, tell: bool) {
        let sel = self.selected.as_mut().expect("selected");
        let largest = sel.view.last().map_or(0, |m| m.uid);
        let doomed: Vec<usize> = (0..sel.view.len())
            .filter(|&i| {
                sel.view[i].flags.contains('T')
                    && uids.is_none_or(|set| in_set(set, sel.view[i].uid, largest))
            })
            .collect();
        let messages: Vec<&Message> = doomed.iter().map(|&i| &sel.view[i]).collect();
        if let Err(e) = tokio::task::block_in_place(|| self.service.store.expunge(&messages)) {
            tracing::error!("expunge: {e}");
            return;
        }
        for &i in doomed.iter().rev() {
            sel.view.remove(i);
            if tell {
                self.out
                    .extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
            }
        }
        self.changes.mark_unchanged();
    }
}
