//! SEARCHRES (RFC 5182): what `$` names. The saved result is kept as UIDs,
//! so it follows the mailbox: an expunged message leaves it, and a command
//! by number sees the saved messages' numbers as they are now.
use std::borrow::Cow;

use imap_codec::imap_types::{
    search::SearchKey,
    sequence::{SeqOrUid, Sequence, SequenceSet},
};

use crate::imap::{searchres::MARK, session::Session, uid_set};

/// Whether `set` is the mark `$` was replaced by.
fn is_mark(set: &SequenceSet) -> bool {
    matches!(set.0.as_ref(), [Sequence::Single(SeqOrUid::Value(v))] if v.get() == MARK)
}

/// `key` with each `$` as the UIDs `saved` names (nothing, when none).
fn resolve(key: &SearchKey<'static>, saved: &[u32]) -> SearchKey<'static> {
    match key {
        SearchKey::SequenceSet(set) | SearchKey::Uid(set) if is_mark(set) => {
            match SequenceSet::try_from(uid_set(saved).as_str()) {
                Ok(uids) => SearchKey::Uid(uids),
                Err(_) => SearchKey::Not(Box::new(SearchKey::All)),
            }
        }
        SearchKey::And(keys) => {
            let keys: Vec<_> = keys.as_ref().iter().map(|k| resolve(k, saved)).collect();
            SearchKey::And(keys.try_into().expect("as many keys as before"))
        }
        SearchKey::Or(a, b) => {
            SearchKey::Or(Box::new(resolve(a, saved)), Box::new(resolve(b, saved)))
        }
        SearchKey::Not(k) => SearchKey::Not(Box::new(resolve(k, saved))),
        other => other.clone(),
    }
}

impl Session {
    /// The saved UIDs when `set` stands for this command's `$`.
    pub(in crate::imap) fn saved_set(&self, set: &SequenceSet) -> Option<&[u32]> {
        (self.dollar && is_mark(set)).then_some(self.saved.as_slice())
    }

    /// A search key as evaluated: `$` made the saved UIDs.
    pub(in crate::imap) fn resolve_saved<'k>(
        &self,
        key: &'k SearchKey<'static>,
    ) -> Cow<'k, SearchKey<'static>> {
        if self.dollar {
            Cow::Owned(resolve(key, &self.saved))
        } else {
            Cow::Borrowed(key)
        }
    }

    /// SEARCH RETURN (SAVE): keeps what `found` (numbers, or UIDs when
    /// `uid`) names, as UIDs, trimmed as the other options ask.
    pub(in crate::imap) fn save_result(&mut self, found: &[u32], uid: bool) {
        let Some(options) = self.search_return.filter(|o| o.save) else {
            return;
        };
        let view = &self.selected().view;
        let mut uids: Vec<u32> = options
            .saved(found)
            .into_iter()
            .map(|n| if uid { n } else { view[n as usize - 1].uid })
            .collect();
        uids.sort_unstable();
        self.saved = uids;
    }
}
