//! The last listings of the busiest mailboxes, each with the change count
//! (`Store::changes`) it was taken at. Every change the store makes bumps
//! that count after it is done, and one process owns the volume, so a
//! listing taken at the current count is what a sync would find now: the
//! sessions on a mailbox one change woke share one directory scan instead
//! of each making its own (a scan of a large mailbox takes milliseconds,
//! under the store's sync lock). A change from outside the store (a file
//! dropped into new/, a damaged UID list) moves a modification time of
//! what a listing is read from, and is found at the next sync too.
use std::{
    collections::VecDeque,
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use super::{Mailbox, keywords, uidlist::UIDLIST};

/// Mailboxes whose last listing is kept, and the messages in them all
/// (a listing costs about 150 bytes a message: 200 000 are ~30 MB).
const KEPT: usize = 16;
const KEPT_MESSAGES: usize = 200_000;

/// The modification times of what a listing is read from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp([Option<SystemTime>; 4]);

impl Stamp {
    /// Taken before a scan: a change during it moves a time past this.
    pub(super) fn of(dir: &Path) -> Self {
        Stamp([
            modified(dir, "new"),
            modified(dir, "cur"),
            modified(dir, UIDLIST),
            modified(dir, keywords::FILE),
        ])
    }

    /// After the scan rewrote the UID list itself (new UIDs, \Recent
    /// claimed): its own write is not a change from outside.
    pub(super) fn uid_list_rewritten(&mut self, dir: &Path) {
        self.0[2] = modified(dir, UIDLIST);
    }
}

fn modified(dir: &Path, name: &str) -> Option<SystemTime> {
    fs::metadata(dir.join(name)).and_then(|m| m.modified()).ok()
}

#[derive(Default)]
pub(super) struct Listings(Mutex<VecDeque<(PathBuf, u64, Stamp, Mailbox)>>);

impl Listings {
    /// The listing of `dir` taken at change count `count`, if kept and
    /// nothing changed it from outside.
    pub(super) fn get(&self, dir: &Path, count: u64) -> Option<Mailbox> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (_, _, stamp, listed) = kept.iter().find(|(d, c, ..)| d == dir && *c == count)?;
        (Stamp::of(dir) == *stamp).then(|| listed.clone())
    }

    /// Keeps `listed`, taken at change count `count` after `stamp`.
    pub(super) fn put(&self, dir: &Path, count: u64, stamp: Stamp, listed: &Mailbox) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|(d, ..)| d != dir);
        kept.push_front((dir.to_path_buf(), count, stamp, listed.clone()));
        bound(&mut kept, KEPT, KEPT_MESSAGES, |(.., m)| m.messages.len());
    }
}

/// Keeps the first `most` of a cache, newest first, and of them those
/// whose `size` together stays within `limit`; the newest always stays,
/// whatever its size.
pub(super) fn bound<T>(
    cache: &mut VecDeque<T>,
    most: usize,
    limit: usize,
    size: impl Fn(&T) -> usize,
) {
    let mut total = 0;
    let fits = cache
        .iter()
        .position(|e| {
            total += size(e);
            total > limit
        })
        .unwrap_or(cache.len())
        .max(1);
    cache.truncate(fits.min(most));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(n: usize) -> Mailbox {
        let m = super::super::Message {
            uid: 1,
            path: PathBuf::new(),
            flags: String::new(),
            size: 0,
            modseq: 1,
        };
        Mailbox {
            uid_validity: 1,
            next_uid: 2,
            first_recent: 2,
            keywords: Vec::new(),
            highest_modseq: 1,
            messages: vec![m; n],
        }
    }

    #[test]
    fn kept_listings_are_bounded_in_mailboxes_and_in_messages() {
        let dir = std::env::temp_dir();
        let stamp = Stamp::of(&dir);
        let listings = Listings::default();
        for i in 0..20 {
            listings.put(&dir.join(format!("m{i}")), 1, stamp, &listing(10));
        }
        assert_eq!(listings.0.lock().unwrap().len(), KEPT);
        // A large one pushes out what no longer fits beside it.
        listings.put(&dir.join("big"), 1, stamp, &listing(KEPT_MESSAGES - 25));
        assert_eq!(listings.0.lock().unwrap().len(), 3);
        // One larger than the bound is still kept, alone.
        listings.put(&dir.join("huge"), 1, stamp, &listing(KEPT_MESSAGES + 1));
        assert_eq!(listings.0.lock().unwrap().len(), 1);
    }
}
