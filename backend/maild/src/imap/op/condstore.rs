//! CONDSTORE (RFC 7162 section 3): turning it on (ENABLE, SELECT
//! (CONDSTORE), or any command that names a mod-sequence), the MODSEQ
//! values this session shows, and what FETCH CHANGEDSINCE and STORE
//! UNCHANGEDSINCE select. QRESYNC's own part is in `qresync`.
use imap_codec::imap_types::{
    command::{FetchModifier, SelectParameter, StoreModifier},
    core::Tag,
    extensions::enable::CapabilityEnable,
    fetch::MessageDataItemName,
    search::SearchKey,
};

use crate::imap::{op::qresync::Resync, session::Session};
use crate::store::Message;

/// Whether a search names a mod-sequence (its answer then ends with the
/// highest MODSEQ of what matched).
pub fn names_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(names_modseq),
        SearchKey::Or(a, b) => names_modseq(a) || names_modseq(b),
        SearchKey::Not(k) => names_modseq(k),
        _ => false,
    }
}

/// ` MODSEQ (n)` for a FETCH response once CONDSTORE is on (`condstore`).
pub(in crate::imap) fn modseq_item(condstore: bool, m: &Message) -> String {
    if condstore {
        format!(" MODSEQ ({})", m.modseq)
    } else {
        String::new()
    }
}

impl Session {
    /// ENABLE: CONDSTORE, QRESYNC (which brings CONDSTORE with it),
    /// UTF8=ACCEPT, and IMAP4rev2 (which brings UTF-8 names with it).
    pub(in crate::imap) fn enable(&mut self, tag: &Tag, asked: &[CapabilityEnable]) {
        let mut enabled = String::new();
        for c in asked {
            // imap-codec knows CONDSTORE by name; QRESYNC is `Other`.
            let name = c.to_string().to_ascii_uppercase();
            if enabled.to_ascii_uppercase().contains(&format!(" {name}")) {
                continue;
            }
            match name.as_str() {
                "CONDSTORE" => self.condstore = true,
                "QRESYNC" => (self.condstore, self.qresync) = (true, true),
                "UTF8=ACCEPT" => self.utf8 = true,
                // Before a mailbox is selected: its view keeps \Recent.
                "IMAP4REV2" if self.selected.is_none() => (self.rev2, self.utf8) = (true, true),
                _ => continue,
            }
            enabled.push(' ');
            enabled.push_str(if name == "IMAP4REV2" {
                "IMAP4rev2"
            } else {
                &name
            });
        }
        self.line(&format!("* ENABLED{enabled}"));
        self.tagged(tag, "OK ENABLE completed");
    }

    /// SELECT (`read_only`: EXAMINE) with its parameters: CONDSTORE
    /// turns it on; QRESYNC (once enabled) resynchronizes.
    pub(in crate::imap) fn open(
        &mut self,
        tag: &Tag,
        name: &str,
        parameters: &[SelectParameter],
        read_only: bool,
    ) {
        let mut resync = None;
        for p in parameters {
            match p {
                SelectParameter::CondStore => self.condstore = true,
                SelectParameter::QResync { .. } if !self.qresync => {
                    self.tagged(tag, "BAD ENABLE QRESYNC first");
                    return;
                }
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    resync = Some(Resync {
                        uid_validity: uid_validity.get(),
                        since: mod_sequence_value.get(),
                        known: known_uids.clone(),
                    });
                }
            }
        }
        self.select(tag, name, read_only, resync.as_ref());
    }

    /// The view's MODSEQ values as the store has them now (after this
    /// session changed flags: the change took a new one). Flags are left
    /// to `refresh`, which tells the client about others' changes.
    pub(in crate::imap) fn learn_modseqs(&mut self) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let (account, name) = (self.account().to_string(), sel.name.clone());
        let store = &self.service.store;
        let listed = match tokio::task::block_in_place(|| store.sync(&account, &name)) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("mod-sequences: {e}");
                return;
            }
        };
        let now: std::collections::HashMap<u32, u64> =
            listed.messages.iter().map(|m| (m.uid, m.modseq)).collect();
        let sel = self.selected.as_mut().expect("selected");
        for m in sel.view_mut() {
            if let Some(&modseq) = now.get(&m.uid) {
                m.modseq = modseq;
            }
        }
    }

    /// FETCH modifiers: CHANGEDSINCE keeps the targets changed after the
    /// value and adds MODSEQ to the items (VANISHED: `fetch_vanished`).
    pub(in crate::imap) fn fetch_modifiers(
        &mut self,
        modifiers: &[FetchModifier],
        targets: &mut Vec<usize>,
        items: &mut Vec<MessageDataItemName<'static>>,
    ) {
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(since) => {
                    self.condstore = true;
                    let view = &self.selected().view;
                    targets.retain(|&i| view[i].modseq > since.get());
                }
                FetchModifier::Vanished => {}
            }
        }
        if self.condstore && !items.contains(&MessageDataItemName::ModSeq) {
            let flags = items.contains(&MessageDataItemName::Flags);
            if flags || !modifiers.is_empty() {
                items.push(MessageDataItemName::ModSeq);
            }
        }
    }

    /// STORE UNCHANGEDSINCE: the targets changed after the value are left
    /// alone and returned (their UIDs or numbers go in `[MODIFIED]`).
    pub(in crate::imap) fn unchanged_since(
        &mut self,
        modifiers: &[StoreModifier],
        targets: &mut Vec<usize>,
    ) -> Vec<usize> {
        let Some(since) = modifiers
            .iter()
            .map(|StoreModifier::UnchangedSince(n)| *n)
            .min()
        else {
            return Vec::new();
        };
        self.condstore = true;
        // Against the values as they are now, not as last seen.
        self.learn_modseqs();
        let view = &self.selected().view;
        let (modified, kept): (Vec<usize>, Vec<usize>) =
            targets.iter().partition(|&&i| view[i].modseq > since);
        *targets = kept;
        modified
    }
}
