//! The mailbox index: what a sync lists (the UID list and the files in
//! `new/` and `cur/`), kept in memory for the busiest mailboxes and brought
//! up to date by the store's own changes as it makes them. A sync after
//! another session's STORE, APPEND or EXPUNGE then costs no directory scan
//! (a scan of 6000 messages took ~10 ms, once per change, under the
//! mailbox's lock, while every session on the mailbox waited for it).
//!
//! Every change the store makes to a mailbox's files is made under the
//! mailbox's lock (`Locks`), between two stamps (the modification times of
//! what a scan reads). A kept index whose stamp is the one from before the
//! change takes the change and the stamp from after it; one whose stamp
//! differs has missed something (a change from outside the store, such as
//! a file dropped into `new/`) and is dropped, so the next sync scans. A
//! sync scans anyway once its index is `RESCAN` old, so a change from
//! outside made in the instant between one of ours and its stamp is not
//! missed for long.
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    fs,
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime},
};

use super::{Message, keywords, uidlist::UIDLIST, uidlist::UidList};

/// Mailboxes whose index is kept, and the messages in them all (an index
/// costs about 300 bytes a message: 100 000 are ~30 MB).
const KEPT: usize = 16;
const KEPT_MESSAGES: usize = 100_000;
/// An index older than this is scanned again (see above).
const RESCAN: Duration = Duration::from_secs(60);
/// Mailbox locks: a mailbox's is the one its directory hashes to, so two
/// mailboxes share one rarely and only wait for each other then.
const LOCKS: usize = 128;

/// The modification times of what a scan reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp([Option<SystemTime>; 4]);

impl Stamp {
    pub(super) fn of(dir: &Path) -> Self {
        Stamp([
            modified(dir, "new"),
            modified(dir, "cur"),
            modified(dir, UIDLIST),
            modified(dir, keywords::FILE),
        ])
    }
}

fn modified(dir: &Path, name: &str) -> Option<SystemTime> {
    fs::metadata(dir.join(name)).and_then(|m| m.modified()).ok()
}

/// A message file: where it is, its flag letters, its size.
#[derive(Clone, Debug)]
pub(super) struct File {
    pub path: PathBuf,
    pub flags: String,
    pub size: u64,
}

/// One mailbox as a sync reads it.
pub(super) struct Index {
    stamp: Stamp,
    scanned: Instant,
    /// As this index has it: on disk unless `unsaved`.
    pub list: UidList,
    /// What is in `new/` and `cur/`, by base name.
    pub files: HashMap<String, File>,
    /// UIDs by base name: `list.by_uid` the other way round.
    pub uid_of: HashMap<String, u32>,
    /// Base names in `files` without a UID yet.
    pub fresh: BTreeSet<String>,
    /// The UID list on disk is not `list` (UIDs of files gone were dropped,
    /// or there was none).
    pub unsaved: bool,
    pub keywords: Vec<String>,
    /// The last listing made of it, and its HIGHESTMODSEQ: given again
    /// until the index changes.
    pub listing: Option<(Arc<Vec<Message>>, u64)>,
}

/// What one of the store's own changes did to a mailbox.
pub(super) enum Change {
    /// A message file put into `new/` or `cur/`.
    Placed {
        base: String,
        file: File,
    },
    /// A message file renamed (its flags changed).
    Renamed {
        base: String,
        path: PathBuf,
        flags: String,
    },
    Removed {
        base: String,
    },
    Keywords(Vec<String>),
}

impl Change {
    pub(super) fn placed(base: &str, path: PathBuf, flags: &str, size: u64) -> Self {
        Change::Placed {
            base: base.to_string(),
            file: File {
                path,
                flags: flags.to_string(),
                size,
            },
        }
    }

    /// The file a `Placed` put in.
    pub(super) fn placed_path(&self) -> Option<&Path> {
        match self {
            Change::Placed { file, .. } => Some(&file.path),
            _ => None,
        }
    }
}

impl Index {
    /// An index of what a scan read, stamped before it.
    pub(super) fn new(
        stamp: Stamp,
        mut list: UidList,
        files: HashMap<String, File>,
        keywords: Vec<String>,
        unsaved: bool,
    ) -> Self {
        let before = list.by_uid.len();
        list.by_uid.retain(|_, base| files.contains_key(base));
        let unsaved = unsaved || list.by_uid.len() != before;
        let uid_of: HashMap<String, u32> =
            list.by_uid.iter().map(|(&u, b)| (b.clone(), u)).collect();
        let fresh = files
            .keys()
            .filter(|b| !uid_of.contains_key(*b))
            .cloned()
            .collect();
        Index {
            stamp,
            scanned: Instant::now(),
            list,
            files,
            uid_of,
            fresh,
            unsaved,
            keywords,
            listing: None,
        }
    }

    /// Whether it is what a scan would read now.
    pub(super) fn is_current(&self, dir: &Path) -> bool {
        self.scanned.elapsed() < RESCAN && Stamp::of(dir) == self.stamp
    }

    /// After the sync rewrote the UID list itself.
    pub(super) fn saved(&mut self, dir: &Path) {
        self.unsaved = false;
        self.stamp.0[2] = modified(dir, UIDLIST);
    }

    /// Gives the fresh files the next UIDs, in name order (delivery
    /// order); true when any was given.
    pub(super) fn number_fresh(&mut self) -> bool {
        let fresh = std::mem::take(&mut self.fresh);
        let mut given = false;
        for base in fresh {
            if self.files.contains_key(&base) && !self.uid_of.contains_key(&base) {
                let uid = self.list.next_uid;
                self.list.next_uid += 1;
                self.list.by_uid.insert(uid, base.clone());
                self.uid_of.insert(base, uid);
                given = true;
                self.listing = None;
            }
        }
        given
    }

    /// Takes one change; false when it shows the index lost track.
    fn take(&mut self, change: Change) -> bool {
        self.listing = None;
        match change {
            Change::Placed { base, file } => {
                if !self.uid_of.contains_key(&base) {
                    self.fresh.insert(base.clone());
                }
                self.files.insert(base, file);
            }
            Change::Renamed { base, path, flags } => match self.files.get_mut(&base) {
                Some(file) => (file.path, file.flags) = (path, flags),
                None => return false,
            },
            Change::Removed { base } => {
                self.files.remove(&base);
                self.fresh.remove(&base);
                if let Some(uid) = self.uid_of.remove(&base) {
                    self.list.by_uid.remove(&uid);
                    self.unsaved = true;
                }
            }
            Change::Keywords(table) => self.keywords = table,
        }
        true
    }
}

/// The kept indexes, busiest first.
#[derive(Default)]
pub(super) struct Kept(Mutex<VecDeque<(PathBuf, Index)>>);

impl Kept {
    fn lock(&self) -> MutexGuard<'_, VecDeque<(PathBuf, Index)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the index of `dir` out (the caller holds its lock).
    pub(super) fn take(&self, dir: &Path) -> Option<Index> {
        let mut kept = self.lock();
        let i = kept.iter().position(|(d, _)| d == dir)?;
        kept.remove(i).map(|(_, index)| index)
    }

    /// Keeps `index` as the newest.
    pub(super) fn put(&self, dir: &Path, index: Index) {
        let mut kept = self.lock();
        kept.retain(|(d, _)| d != dir);
        kept.push_front((dir.to_path_buf(), index));
        bound(&mut kept, KEPT, KEPT_MESSAGES, |(_, i)| i.files.len());
    }

    pub(super) fn forget(&self, dir: &Path) {
        self.lock().retain(|(d, _)| d != dir);
    }

    /// Before a change to `dir`, its lock held: the stamp a kept index
    /// must have to take the change (None when none is kept).
    pub(super) fn before(&self, dir: &Path) -> Option<Stamp> {
        // Looked up first, stamped after: no stat under the kept lock,
        // which every mailbox's changes share.
        let kept = self.lock().iter().any(|(d, _)| d == dir);
        kept.then(|| Stamp::of(dir))
    }

    /// After changes to `dir` (its lock still held) that started at
    /// `before`: the kept index takes them, or is dropped.
    pub(super) fn apply(
        &self,
        dir: &Path,
        before: Option<Stamp>,
        changes: impl IntoIterator<Item = Change>,
    ) {
        let Some(before) = before else { return };
        let after = Stamp::of(dir);
        let mut kept = self.lock();
        let Some(i) = kept.iter().position(|(d, _)| d == dir) else {
            return;
        };
        let index = &mut kept[i].1;
        let followed = index.stamp == before && changes.into_iter().all(|c| index.take(c));
        if followed {
            index.stamp = after;
        } else {
            kept.remove(i);
        }
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

/// Each mailbox's lock: every change to its files, and every sync (which
/// gives UIDs and rewrites the UID list), is made holding it.
pub(super) struct Locks(Vec<Mutex<()>>);

impl Default for Locks {
    fn default() -> Self {
        Locks((0..LOCKS).map(|_| Mutex::new(())).collect())
    }
}

impl Locks {
    pub(super) fn of(&self, dir: &Path) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        dir.hash(&mut hasher);
        self.0[hasher.finish() as usize % LOCKS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_indexes_are_bounded_in_mailboxes_and_in_messages() {
        let mut cache: VecDeque<usize> = std::iter::repeat_n(10, 20).collect();
        bound(&mut cache, KEPT, KEPT_MESSAGES, |n| *n);
        assert_eq!(cache.len(), KEPT);
        // A large one pushes out what no longer fits beside it.
        cache.push_front(KEPT_MESSAGES - 25);
        bound(&mut cache, KEPT, KEPT_MESSAGES, |n| *n);
        assert_eq!(cache.len(), 3);
        // One larger than the bound is still kept, alone.
        cache.push_front(KEPT_MESSAGES + 1);
        bound(&mut cache, KEPT, KEPT_MESSAGES, |n| *n);
        assert_eq!(cache.len(), 1);
    }
}
