//! COPY and MOVE (RFC 6851), with UIDPLUS answers.

use imap_codec::imap_types::{core::Tag, sequence::SequenceSet};

use crate::imap::{
    session::{Session, expunged_lines},
    store_error, uid_set,
};
use crate::store::{Message, StoreError};

impl Session {
    pub(in crate::imap) fn copy(
        &mut self,
        tag: &Tag,
        set: &SequenceSet,
        target: &str,
        uid: bool,
        moving: bool,
    ) {
        let Some(targets) = self.targets(set, uid) else {
            self.tagged(tag, "BAD No such message");
            return;
        };
        let what = if moving { "MOVE" } else { "COPY" };
        let messages: Vec<Message> = targets
            .iter()
            .map(|&i| self.selected().view[i].clone())
            .collect();
        if messages.is_empty() {
            self.tagged(tag, &format!("OK {what} completed (nothing to do)"));
            return;
        }
        let account = self.account().to_string();
        let keywords = &self.selected().keywords;
        let copied = tokio::task::block_in_place(|| {
            self.service
                .store
                .copy(&account, &messages, keywords, target)
        });
        let (validity, new_uids) = match copied {
            Ok(c) => c,
            Err(StoreError::NoMailbox(_)) => {
                self.tagged(tag, "NO [TRYCREATE] No such mailbox");
                return;
            }
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        let old: Vec<u32> = messages.iter().map(|m| m.uid).collect();
        let code = format!(
            "COPYUID {validity} {} {}",
            uid_set(&old),
            uid_set(&new_uids)
        );
        if !moving {
            self.refresh(uid);
            self.tagged(tag, &format!("OK [{code}] COPY completed"));
            return;
        }
        self.line(&format!("* OK [{code}] Moved"));
        let refs: Vec<&Message> = messages.iter().collect();
        if let Err(e) = tokio::task::block_in_place(|| self.service.store.expunge(&refs, false)) {
            self.tagged(tag, &store_error(&e));
            return;
        }
        let sel = self.selected.as_mut().expect("selected");
        let removed: Vec<(usize, u32)> = targets
            .iter()
            .rev()
            .map(|&i| (i, sel.view_mut().remove(i).uid))
            .collect();
        for line in expunged_lines(self.qresync, &removed) {
            self.line(&line);
        }
        // A move into the selected mailbox itself brings the copies in.
        self.refresh(true);
        self.tagged(tag, "OK MOVE completed");
    }
}
