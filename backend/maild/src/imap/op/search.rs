//! SEARCH over the selected view (the keys are evaluated in `imap::search`).

use imap_codec::imap_types::search::SearchKey;

use crate::imap::search::{self, Bounds, Candidate};
use crate::imap::session::Session;

impl Session {
    pub(in crate::imap) fn search(&self, key: &SearchKey, uid: bool) -> Vec<u32> {
        let view = &self.selected().view;
        let bounds = Bounds {
            seq: view.len() as u32,
            uid: view.last().map_or(0, |m| m.uid),
        };
        view.iter()
            .enumerate()
            .filter(|(i, m)| search::matches(key, &Candidate::new(*i as u32 + 1, m), bounds))
            .map(|(i, m)| if uid { m.uid } else { i as u32 + 1 })
            .collect()
    }
}
