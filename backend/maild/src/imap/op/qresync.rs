//! QRESYNC (RFC 7162 section 3.2): SELECT (QRESYNC ...) telling what
//! vanished (VANISHED (EARLIER)) and what changed (FETCH) since the
//! client's last mod-sequence, UID FETCH (CHANGEDSINCE n VANISHED), and
//! HIGHESTMODSEQ where a client must learn it. VANISHED in place of
//! EXPUNGE is `session::expunged_lines`; ENABLE is with CONDSTORE's.
use imap_codec::imap_types::{command::FetchModifier, sequence::SequenceSet};

use crate::imap::{
    ranges::{self, Ranges},
    session::Session,
};
use crate::store::Vanished;

/// SELECT's QRESYNC parameter, as this server uses it: the sequence-match
/// data only helps a server that forgot expunges guess less, and a
/// superset of what vanished is always a right answer.
pub struct Resync {
    pub uid_validity: u32,
    pub since: u64,
    /// The UIDs the client knows (all, when not given).
    pub known: Option<SequenceSet>,
}

impl Session {
    /// After SELECT's own answer, for a client whose UIDVALIDITY is still
    /// right: the known UIDs expunged since, then every message changed
    /// since (its flags and MODSEQ), before the tagged OK.
    pub(in crate::imap) fn resync(&mut self, r: &Resync, next_uid: u32) {
        let last = next_uid.saturating_sub(1);
        let known = match &r.known {
            Some(set) => ranges::of_set(set, last, last),
            None if last > 0 => vec![(1, last)],
            None => Vec::new(),
        };
        if let Some(line) = self.vanished_earlier(r.since, &known) {
            self.line(&line);
        }
        let sel = self.selected();
        let lines: Vec<String> = sel
            .view
            .iter()
            .enumerate()
            .filter(|(_, m)| m.modseq > r.since)
            .map(|(i, m)| {
                let flags = sel.flags(m);
                format!(
                    "* {} FETCH (UID {} FLAGS {flags} MODSEQ ({}))",
                    i + 1,
                    m.uid,
                    m.modseq
                )
            })
            .collect();
        for line in lines {
            self.line(&line);
        }
    }

    /// `* VANISHED (EARLIER) ...` for the UIDs within `asked` expunged
    /// after `since`; None when there are none. When the store forgot
    /// expunges that old (or cannot say), every UID of `asked` up to the
    /// last one given that is not in the view is named.
    fn vanished_earlier(&mut self, since: u64, asked: &[(u32, u32)]) -> Option<String> {
        let name = self.selected().name.clone();
        let store = &self.service.store;
        let found = tokio::task::block_in_place(|| store.vanished(self.account(), &name, since));
        let view = &self.selected().view;
        let (found, last) = match found {
            Ok((found, last)) => (Some(found), last),
            Err(e) => {
                // An answer that left out an expunge would mislead the
                // client: it is told too much rather than too little.
                tracing::error!("vanished: {e}");
                (None, view.last().map_or(0, |m| m.uid))
            }
        };
        let gone: Ranges = match found {
            Some(Vanished::Known(uids)) => {
                let uids: Vec<u32> = uids
                    .into_iter()
                    .filter(|&u| ranges::contains(asked, u))
                    .collect();
                ranges::runs(&uids)
            }
            Some(Vanished::Forgotten) | None => {
                let present: Vec<u32> = view.iter().map(|m| m.uid).collect();
                let asked: Ranges = asked
                    .iter()
                    .filter(|r| r.0 <= last)
                    .map(|&(a, b)| (a, b.min(last)))
                    .collect();
                ranges::without(&asked, &present)
            }
        };
        (!gone.is_empty()).then(|| format!("* VANISHED (EARLIER) {}", ranges::render(&gone)))
    }

    /// UID FETCH's VANISHED modifier: only with CHANGEDSINCE, only by UID,
    /// only once QRESYNC is on; tells what of the set vanished since.
    pub(in crate::imap) fn fetch_vanished(
        &mut self,
        modifiers: &[FetchModifier],
        set: &SequenceSet,
        uid: bool,
    ) -> Result<(), &'static str> {
        if !modifiers.contains(&FetchModifier::Vanished) {
            return Ok(());
        }
        let since = modifiers.iter().find_map(|m| match m {
            FetchModifier::ChangedSince(n) => Some(n.get()),
            FetchModifier::Vanished => None,
        });
        let Some(since) = since.filter(|_| uid && self.qresync) else {
            return Err("BAD VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC");
        };
        // `*` is the largest UID there is; one expunged above it is
        // still in the client's range.
        let asked = ranges::of_set(set, u32::MAX, u32::MAX);
        if let Some(line) = self.vanished_earlier(since, &asked) {
            self.line(&line);
        }
        Ok(())
    }

    /// After FETCH or STORE: while an expunge cannot be told yet, the
    /// MODSEQs just shown may be above the expunge's; HIGHESTMODSEQ below
    /// it keeps a client that resyncs from here from missing it (RFC 7162
    /// errata 1810).
    pub(in crate::imap) fn note_pending_expunges(&mut self) {
        if self.owed_expunges && self.condstore {
            let highest = self.selected().highest_modseq;
            self.line(&format!(
                "* OK [HIGHESTMODSEQ {highest}] Expunges are told at the next command that may"
            ));
        }
    }

    /// `[HIGHESTMODSEQ n] ` for EXPUNGE's tagged OK once CONDSTORE is on:
    /// the value after the expunge, all changes up to it told.
    pub(in crate::imap) fn expunged_highest(&mut self) -> String {
        if !self.condstore {
            return String::new();
        }
        self.refresh(true);
        format!("[HIGHESTMODSEQ {}] ", self.selected().highest_modseq)
    }
}
