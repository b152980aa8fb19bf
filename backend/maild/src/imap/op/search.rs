//! SEARCH over the selected view (the keys are evaluated in `imap::search`).

use imap_codec::imap_types::search::SearchKey;

use crate::imap::search::{self, Bounds, Candidate};
use crate::imap::session::Session;

impl Session {
    pub(in crate::imap) fn search(&self, key: &SearchKey, uid: bool) -> Vec<u32> {
        let sel = self.selected();
        let view = &sel.view;
        let bounds = Bounds {
            seq: view.len() as u32,
            uid: view.last().map_or(0, |m| m.uid),
        };
        view.iter()
            .enumerate()
            .filter(|(i, m)| {
                let recent = sel.recent.contains(&m.uid);
                let c = Candidate::new(*i as u32 + 1, m, recent, &sel.keywords);
                search::matches(key, &c, bounds)
            })
            .map(|(i, m)| if uid { m.uid } else { i as u32 + 1 })
            .collect()
    }
}
