//! Flag changes and expunges of messages other sessions may be changing
//! at the same time. A message's flags are its file name, so a session's
//! path for it goes stale the moment another session changes its flags:
//! each operation finds the message's current file by its base name and
//! applies itself to the flags it has now, never to what the session last
//! saw (no lost update, and no message left behind by an EXPUNGE or MOVE
//! that only knew an old name).
use std::{
    collections::HashSet,
    fs, io,
    path::{Path, PathBuf},
};

use super::{Message, Store, StoreError, fsync_dir, io_at, naming::sort_flags};

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

impl Store {
    /// Changes a message's flags (maildir letters) as they are now: a
    /// rename into `cur/`. Returns the message as it now is; `Gone` when
    /// it was expunged.
    pub fn set_flags(&self, message: &Message, change: &FlagChange) -> Result<Message, StoreError> {
        let dir = mailbox_of(&message.path).ok_or(StoreError::Gone)?;
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
                    fsync_dir(&dir.join("cur"))?;
                    self.changed();
                    return Ok(Message {
                        path: target,
                        flags: wanted,
                        ..message.clone()
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Renamed by another session meanwhile: start from its flags.
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
    /// keeps a message whose \Deleted another session took away). One
    /// already gone is fine. Returns the UIDs kept.
    pub fn expunge(
        &self,
        messages: &[&Message],
        deleted_only: bool,
    ) -> Result<HashSet<u32>, StoreError> {
        let mut dirs = HashSet::new();
        let mut kept = HashSet::new();
        for m in messages {
            let Some(dir) = m.path.parent() else {
                continue;
            };
            let mut path = m.path.clone();
            for _ in 0..RETRIES {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        self.quotas
                            .remove(super::account_of(dir.parent().unwrap_or(dir)), m.size);
                        dirs.insert(path.parent().unwrap_or(dir).to_path_buf());
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => match current(m)? {
                        Some((p, flags)) if !deleted_only || flags.contains('T') => path = p,
                        Some(_) => {
                            kept.insert(m.uid);
                            break;
                        }
                        None => break,
                    },
                    Err(e) => return Err(io_at(&path)(e)),
                }
            }
        }
        for d in dirs {
            fsync_dir(&d)?;
        }
        self.changed();
        Ok(kept)
    }
}
