//! The UID list of a mailbox (`uidlist`: UIDVALIDITY, the next UID, and
//! UID → base name), replaced whole; and the scan of `new/` and `cur/`.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{StoreError, io_at, replace_file};

pub(super) const UIDLIST: &str = "uidlist";
const UIDLIST_MAGIC: &str = "fulmar-uidlist 1";
/// A `tmp/` file older than this is a crashed delivery's leftover.
const TMP_MAX_AGE: Duration = Duration::from_secs(3600);
/// UIDVALIDITY from the clock (seconds; never 0).
pub(super) fn fresh_uid_validity() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
        .max(1)
}

pub(super) type UidList = (u32, u32, BTreeMap<u32, String>);

pub(super) fn parse_uidlist(text: &str) -> Option<UidList> {
    let mut lines = text.lines();
    let header = lines.next()?.strip_prefix(UIDLIST_MAGIC)?;
    let mut words = header.split_whitespace();
    let uid_validity: u32 = words.next()?.parse().ok().filter(|&v| v != 0)?;
    let next_uid: u32 = words.next()?.parse().ok()?;
    let mut by_uid = BTreeMap::new();
    for line in lines {
        let (uid, base) = line.split_once(' ')?;
        let uid: u32 = uid.parse().ok()?;
        if uid == 0 || uid >= next_uid || base.is_empty() {
            return None;
        }
        by_uid.insert(uid, base.to_string());
    }
    Some((uid_validity, next_uid, by_uid))
}

pub(super) fn write_uidlist(
    dir: &Path,
    uid_validity: u32,
    next_uid: u32,
    by_uid: &BTreeMap<u32, String>,
) -> Result<(), StoreError> {
    let mut text = format!("{UIDLIST_MAGIC} {uid_validity} {next_uid}\n");
    for (uid, base) in by_uid {
        text += &format!("{uid} {base}\n");
    }
    replace_file(dir, UIDLIST, text.as_bytes())
}

/// Messages in `new/` and `cur/` by base name (the name before `:2,`):
/// (path, flags, size). Drops `tmp/` leftovers of crashed deliveries.
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
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.insert(base, (entry.path(), flags, size));
        }
    }
    let tmp = dir.join("tmp");
    if let Ok(entries) = fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > TMP_MAX_AGE);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(out)
}
