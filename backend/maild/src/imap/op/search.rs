//! SEARCH over the selected view (the keys are evaluated in `imap::search`).

use imap_codec::imap_types::search::SearchKey;

use crate::imap::search::{self, Bounds, Candidate};
use crate::imap::session::Session;

impl Session {
    /// The sequence numbers (UIDs with `uid`) of the messages `key`
    /// matches, and the highest MODSEQ among them (None when none did).
    pub(in crate::imap) fn search(
        &self,
        key: &SearchKey<'static>,
        uid: bool,
    ) -> (Vec<u32>, Option<u64>) {
        let view = &self.selected().view;
        let matched = self.matching(key);
        let highest = matched.iter().map(|&i| view[i].modseq).max();
        let ids = matched
            .into_iter()
            .map(|i| if uid { view[i].uid } else { i as u32 + 1 })
            .collect();
        (ids, highest)
    }

    /// Indices into the view of the messages `key` matches.
    pub(in crate::imap) fn matching(&self, key: &SearchKey<'static>) -> Vec<usize> {
        let key = self.resolve_saved(key);
        let key = key.as_ref();
        let sel = self.selected();
        let view = &sel.view;
        let bounds = Bounds {
            seq: view.len() as u32,
            uid: view.last().map_or(0, |m| m.uid),
        };
        (0..view.len())
            .filter(|&i| {
                let m = &view[i];
                let recent = sel.recent.contains(&m.uid);
                let c = Candidate::new(i as u32 + 1, m, recent, &sel.keywords);
                search::matches(key, &c, bounds)
            })
            .collect()
    }
}
