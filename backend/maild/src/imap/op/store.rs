//! STORE (flag changes) and EXPUNGE.

use imap_codec::imap_types::{
    flag::{Flag, StoreResponse, StoreType},
    sequence::SequenceSet,
};

use crate::imap::search::in_set;
use crate::imap::session::{Session, expunged_lines};
use crate::imap::wire::{keyword, letter};
use crate::store::{FlagChange, Message, StoreError, keywords};

impl Session {
    /// STORE: new flags for each target; keywords the mailbox does not know
    /// yet get letters (`Limit` past 26).
    pub(in crate::imap) fn store(
        &mut self,
        targets: &[usize],
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag],
        uid: bool,
    ) -> Result<(), StoreError> {
        let names: Vec<&str> = flags.iter().filter_map(keyword).collect();
        let sel = self.selected();
        let keyword_letters: String = match kind {
            // A keyword the mailbox never had is on no message.
            StoreType::Remove => names
                .iter()
                .filter_map(|n| keywords::letter_of(&sel.keywords, n))
                .collect(),
            // System flags alone: nothing to look up.
            StoreType::Add | StoreType::Replace if names.is_empty() => String::new(),
            StoreType::Add | StoreType::Replace => {
                let (account, name) = (self.account().to_string(), sel.name.clone());
                let store = &self.service.store;
                let (letters, table) =
                    tokio::task::block_in_place(|| store.keyword_letters(&account, &name, &names))?;
                self.tell_keywords(table);
                letters
            }
        };
        let given: String = flags
            .iter()
            .filter_map(letter)
            .chain(keyword_letters.chars())
            .collect();
        let change = match kind {
            StoreType::Replace => FlagChange::Replace(given),
            StoreType::Add => FlagChange::Add(given),
            StoreType::Remove => FlagChange::Remove(given),
        };
        let mut stored = Vec::new();
        for &i in targets {
            let message = self.selected().view[i].clone();
            let result =
                tokio::task::block_in_place(|| self.service.store.set_flags(&message, &change));
            match result {
                Ok(updated) => self.selected.as_mut().expect("selected").view_mut()[i] = updated,
                // Expunged elsewhere: it goes at the next refresh.
                Err(StoreError::Gone) => continue,
                Err(e) => {
                    tracing::error!("store flags: {e}");
                    continue;
                }
            }
            stored.push(i);
        }
        // With CONDSTORE each stored message's new MODSEQ is told, also
        // after .SILENT (RFC 7162 3.1.3).
        if self.condstore && !stored.is_empty() {
            self.learn_modseqs();
        }
        for i in stored {
            let sel = self.selected();
            let m = &sel.view[i];
            let mut items = Vec::new();
            if uid {
                items.push(format!("UID {}", m.uid));
            }
            if response == StoreResponse::Answer {
                items.push(format!("FLAGS {}", sel.flags(m)));
            }
            if self.condstore {
                items.push(format!("MODSEQ ({})", m.modseq));
            }
            if response == StoreResponse::Answer || self.condstore {
                let line = format!("* {} FETCH ({})", i + 1, items.join(" "));
                self.line(&line);
            }
        }
        // Not marked unchanged: another session's change made meanwhile
        // must not be lost with our own (the next refresh sees ours as
        // no difference).
        Ok(())
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
        let kept = match tokio::task::block_in_place(|| self.service.store.expunge(&messages, true))
        {
            Ok(kept) => kept,
            Err(e) => {
                tracing::error!("expunge: {e}");
                return;
            }
        };
        // A message whose \Deleted another session took away stays (and
        // its flags reach this view at the next refresh).
        let gone: Vec<usize> = doomed
            .into_iter()
            .filter(|&i| !kept.contains(&sel.view[i].uid))
            .collect();
        let removed: Vec<(usize, u32)> = gone
            .iter()
            .rev()
            .map(|&i| (i, sel.view_mut().remove(i).uid))
            .collect();
        if tell {
            for line in expunged_lines(self.qresync, &removed) {
                self.line(&line);
            }
        }
    }
}
