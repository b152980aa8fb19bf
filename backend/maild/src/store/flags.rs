//! Flag changes and expunges of messages other sessions may be changing
//! at the same time. A message's flags are its file name, so a session's
//! path for it goes stale the moment another session changes its flags:
//! each operation finds the message's current file by its base name and
//! applies itself to the flags it has now, never to what the session last
//! saw (no lost update, and no message left behind by an EXPUNGE or MOVE
//! that only knew an old name).
use std::{
    collections::{BTreeMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
};

use super::{Message, Store, StoreError, fsync_dir, index::Change, io_at, naming::sort_flags};

/// How often a change is tried again when another session renamed the
/// file under it (each retry means that session made progress).
const RETRIES: usize = 16;

/// What a flag change does with the letters given.
#[derive(Debug, Clone)]
pub enum FlagChange {
    Replace(String),
    Add(String),
    Remove(String),
}

impl FlagChange {
    fn apply(&self, current: &str) -> String {
        sort_flags(&match self {
            FlagChange::Replace(l) => l.clone(),
            FlagChange::Add(l) => format!("{current}{l}"),
            FlagChange::Remove(l) => current.chars().filter(|c| !l.contains(*c)).collect(),
        })
    }
}

/// The mailbox directory of a message file (`MAILBOX/cur/NAME`).
fn mailbox_of(path: &Path) -> Option<&Path> {
    path.parent()?.parent()
}

/// The file a message is in now and its flags; None when it is gone.
pub(super) fn current(message: &Message) -> Result<Option<(PathBuf, String)>, StoreError> {
    let Some(dir) = mailbox_of(&message.path) else {
        return Ok(None);
    };
    let base = message.base();
    let new = dir.join("new").join(base);
    if new.exists() {
        return Ok(Some((new, String::new())));
    }
    let cur = dir.join("cur");
    let entries = match fs::read_dir(&cur) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(&cur)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_at(&cur))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let (b, flags) = name.split_once(":2,").unwrap_or((&name, ""));
        if b == base {
            return Ok(Some((entry.path(), flags.to_string())));
        }
    }
    Ok(None)
}

/// What became of one message an expunge was asked to remove.
enum Removal {
    /// Removed from this directory (`new/` or `cur/`).
    From(PathBuf),
    /// Kept: another session took its \Deleted away.
    Kept,
    Gone,
}

impl Store {
    /// Changes a message's flags (maildir letters) as they are now: a
    /// rename into `cur/`, under the mailbox's lock. Returns the message
    /// as it now is; `Gone` when it was expunged.
    pub fn set_flags(&self, message: &Message, change: &FlagChange) -> Result<Message, StoreError> {
        let dir = mailbox_of(&message.path).ok_or(StoreError::Gone)?;
        let guard = self.locks.of(dir);
        let before = self.kept.before(dir);
        let (mut path, mut flags) = (message.path.clone(), message.flags.clone());
        for _ in 0..RETRIES {
            let wanted = change.apply(&flags);
            let target = dir
                .join("cur")
                .join(format!("{}:2,{wanted}", message.base()));
            if target == path {
                return Ok(Message {
                    path,
                    flags: wanted,
                    ..message.clone()
                });
            }
            match fs::rename(&path, &target) {
                Ok(()) => {
                    let renamed = Change::Renamed {
                        base: message.base().to_string(),
                        path: target.clone(),
                        flags: wanted.clone(),
                    };
                    self.kept.apply(dir, before, [renamed]);
                    drop(guard);
                    fsync_dir(&dir.join("cur"))?;
                    self.changed();
                    return Ok(Message {
                        path: target,
                        flags: wanted,
                        ..message.clone()
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // The session's name was stale: start from the flags now.
                    (path, flags) = current(message)?.ok_or(StoreError::Gone)?;
                }
                Err(e) => return Err(io_at(&message.path)(e)),
            }
        }
        Err(StoreError::Io {
            path: message.path.clone(),
            source: io::Error::other("renamed by others on every try"),
        })
    }

    /// Removes messages for good (MOVE; EXPUNGE with `deleted_only`, which
    /// keeps a message whose \Deleted another session took away), each
    /// mailbox's under its lock. One already gone is fine. Returns the
    /// UIDs kept.
    pub fn expunge(
        &self,
        messages: &[&Message],
        deleted_only: bool,
    ) -> Result<HashSet<u32>, StoreError> {
        let mut by_mailbox: BTreeMap<&Path, Vec<&Message>> = BTreeMap::new();
        for m in messages {
            if let Some(dir) = mailbox_of(&m.path) {
                by_mailbox.entry(dir).or_default().push(m);
            }
        }
        let (mut subdirs, mut kept) = (HashSet::new(), HashSet::new());
        for (dir, group) in by_mailbox {
            let _guard = self.locks.of(dir);
            let before = self.kept.before(dir);
            let mut removed = Vec::new();
            // What was removed before a failure is told to the index too.
            let result = group.iter().try_for_each(|m| {
                match self.remove(m, deleted_only)? {
                    Removal::From(sub) => {
                        removed.push(Change::Removed {
                            base: m.base().to_string(),
                        });
                        subdirs.insert(sub);
                    }
                    Removal::Kept => drop(kept.insert(m.uid)),
                    Removal::Gone => {}
                }
                Ok(())
            });
            self.kept.apply(dir, before, removed);
            result?;
        }
        for d in subdirs {
            fsync_dir(&d)?;
        }
        self.changed();
        Ok(kept)
    }

    /// Removes one message's file, wherever it is now.
    fn remove(&self, m: &Message, deleted_only: bool) -> Result<Removal, StoreError> {
        let mut path = m.path.clone();
        for _ in 0..RETRIES {
            match fs::remove_file(&path) {
                Ok(()) => {
                    let sub = path.parent().unwrap_or(&path).to_path_buf();
                    let mailbox = mailbox_of(&path).unwrap_or(&sub);
                    self.quotas.remove(super::account_of(mailbox), m.size);
                    return Ok(Removal::From(sub));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => match current(m)? {
                    Some((p, flags)) if !deleted_only || flags.contains('T') => path = p,
                    Some(_) => return Ok(Removal::Kept),
                    None => return Ok(Removal::Gone),
                },
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        Err(StoreError::Io {
            path,
            source: io::Error::other("renamed by others on every try"),
        })
    }
}
