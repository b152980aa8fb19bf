//! The UID list of a mailbox (`uidlist`: UIDVALIDITY, the next UID, the
//! first UID no session has yet seen as recent, and UID → base name),
//! replaced whole; and the scan of `new/` and `cur/`.
use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{StoreError, io_at, replace_file};

pub(super) const UIDLIST: &str = "uidlist";
const UIDLIST_MAGIC: &str = "fulmar-uidlist 1";
/// A `tmp/` file unchanged this long is a crashed delivery's leftover.
const TMP_MAX_AGE: Duration = Duration::from_secs(3600);
/// The last UIDVALIDITY given in an account (a dot name: never a mailbox).
const LAST_UID_VALIDITY: &str = ".uidvalidity";

/// A UIDVALIDITY never given before in the account: the clock in seconds,
/// or one past the last one given, whichever is larger. The clock alone
/// repeats when a name is deleted and created again within a second, and
/// RFC 3501 2.3.1.1 forbids that reuse (clients would show cached
/// messages of the old mailbox). Callers hold the store's `validity` lock.
pub(super) fn fresh_uid_validity(account: &Path) -> Result<u32, StoreError> {
    let last = fs::read_to_string(account.join(LAST_UID_VALIDITY))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1);
    let given = now.max(last.wrapping_add(1)).max(1);
    replace_file(account, LAST_UID_VALIDITY, format!("{given}\n").as_bytes())?;
    Ok(given)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidList {
    pub uid_validity: u32,
    pub next_uid: u32,
    /// Messages from this UID on are \Recent for the next session that
    /// claims them (RFC 3501: one session sees a message as recent).
    pub first_recent: u32,
    pub by_uid: BTreeMap<u32, String>,
}

/// A UID list from its text; None when it is not a whole, valid one.
pub fn parse_uidlist(text: &str) -> Option<UidList> {
    let mut lines = text.lines();
    let header = lines.next()?.strip_prefix(UIDLIST_MAGIC)?;
    let mut words = header.split_whitespace();
    let uid_validity: u32 = words.next()?.parse().ok().filter(|&v| v != 0)?;
    let next_uid: u32 = words.next()?.parse().ok()?;
    // Lists written before \Recent was kept have no third number: nothing
    // in them is recent.
    let first_recent = match words.next() {
        Some(w) => w.parse::<u32>().ok()?.min(next_uid),
        None => next_uid,
    };
    let mut by_uid = BTreeMap::new();
    for line in lines {
        let (uid, base) = line.split_once(' ')?;
        let uid: u32 = uid.parse().ok()?;
        // A base name is what `scan` reads from a directory entry: never
        // empty, never with a control character (only damage puts one here).
        if uid == 0 || uid >= next_uid || base.is_empty() || base.contains(char::is_control) {
            return None;
        }
        by_uid.insert(uid, base.to_string());
    }
    Some(UidList {
        uid_validity,
        next_uid,
        first_recent,
        by_uid,
    })
}

/// The text of a UID list (what `parse_uidlist` reads back).
pub fn render(list: &UidList) -> String {
    let UidList {
        uid_validity,
        next_uid,
        first_recent,
        by_uid,
    } = list;
    let mut text = format!("{UIDLIST_MAGIC} {uid_validity} {next_uid} {first_recent}\n");
    for (uid, base) in by_uid {
        text += &format!("{uid} {base}\n");
    }
    text
}

pub(super) fn write_uidlist(dir: &Path, list: &UidList) -> Result<(), StoreError> {
    replace_file(dir, UIDLIST, render(list).as_bytes())
}

/// Messages in `new/` and `cur/` by base name (the name before `:2,`):
/// (path, flags, size). Drops `tmp/` leftovers of crashed deliveries,
/// judged by ctime: an APPEND sets a tmp file's mtime to its (possibly
/// years old) INTERNALDATE before the rename, and nobody can set ctime.
pub(super) fn scan(dir: &Path) -> Result<BTreeMap<String, (PathBuf, String, u64)>, StoreError> {
    let mut out = BTreeMap::new();
    for sub in ["new", "cur"] {
        let sub_dir = dir.join(sub);
        for entry in fs::read_dir(&sub_dir).map_err(io_at(&sub_dir))? {
            let entry = entry.map_err(io_at(&sub_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let (base, flags) = match name.split_once(":2,") {
                Some((base, flags)) => (base.to_string(), flags.to_string()),
                None => (name.clone(), String::new()),
            };
            // The size is in the name (`,S=`) of what this store wrote; a
            // stat per message per sync only for others' files.
            let named = base
                .rsplit_once(",S=")
                .and_then(|(_, rest)| rest.split(',').next()?.parse::<u64>().ok());
            let size = named.unwrap_or_else(|| entry.metadata().map(|m| m.len()).unwrap_or(0));
            out.insert(base, (entry.path(), flags, size));
        }
    }
    let tmp = dir.join("tmp");
    if let Ok(entries) = fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let old = entry.metadata().ok().is_some_and(|m| {
                let changed = UNIX_EPOCH + Duration::from_secs(m.ctime().max(0) as u64);
                changed.elapsed().is_ok_and(|age| age > TMP_MAX_AGE)
            });
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(out)
}
