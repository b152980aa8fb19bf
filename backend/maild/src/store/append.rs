//! APPEND's store side, with MULTIAPPEND's (RFC 3502): several messages
//! become visible in one step, under the mailbox's lock, or none do.
use std::{fs, path::PathBuf, time::SystemTime};

use super::{Store, StoreError, account_of, index::Change, naming::sort_flags};

/// One message of a MULTIAPPEND: its data, flag letters and date.
pub struct Appended<'a> {
    pub data: &'a [u8],
    pub flags: String,
    pub date: Option<SystemTime>,
}

impl Store {
    /// Stores `messages` in `mailbox` together: each written and synced
    /// to tmp/ first, then all renamed in while no sync can list half of
    /// them; a failure takes back what was done. Returns UIDVALIDITY and
    /// the UIDs in the order given.
    pub fn append_many(
        &self,
        address: &str,
        mailbox: &str,
        messages: &[Appended],
    ) -> Result<(u32, Vec<u32>), StoreError> {
        let dir = self.mailbox_dir(address, mailbox)?;
        let total: u64 = messages.iter().map(|m| m.data.len() as u64).sum();
        self.quotas.check(account_of(&dir), total)?;
        let mut written: Vec<(PathBuf, String)> = Vec::with_capacity(messages.len());
        for m in messages {
            match self.write_tmp(&dir, m.data, m.date) {
                Ok(w) => written.push(w),
                Err(e) => {
                    written
                        .iter()
                        .for_each(|(tmp, _)| drop(fs::remove_file(tmp)));
                    return Err(e);
                }
            }
        }
        // Renamed and given their UIDs under the mailbox's lock: no other
        // session can list some and not others, or see one (and expunge
        // it) before its UID is known.
        let (listed, mut targets) = {
            let _guard = self.locks.of(&dir);
            let before = self.kept.before(&dir);
            let mut placed: Vec<(PathBuf, Change)> = Vec::new();
            for (k, ((tmp, base), m)) in written.iter().zip(messages).enumerate() {
                let size = m.data.len() as u64;
                match Self::place(&dir, tmp, base, &sort_flags(&m.flags), size) {
                    Ok(p) => placed.push(p),
                    Err(e) => {
                        // Nothing was listed meanwhile: the lock is held.
                        placed
                            .iter()
                            .filter_map(|(_, c)| c.placed_path())
                            .for_each(|p| drop(fs::remove_file(p)));
                        written[k + 1..]
                            .iter()
                            .for_each(|(tmp, _)| drop(fs::remove_file(tmp)));
                        return Err(e);
                    }
                }
            }
            let (targets, changes): (Vec<PathBuf>, Vec<Change>) = placed.into_iter().unzip();
            self.kept.apply(&dir, before, changes);
            (self.sync_dir(&dir, false)?, targets)
        };
        targets.sort();
        targets.dedup();
        for target in &targets {
            self.durable_rename(target)?;
        }
        self.quotas.add(account_of(&dir), total);
        self.changed();
        let uids = written
            .iter()
            .map(|(_, base)| {
                listed
                    .messages
                    .iter()
                    .find(|m| m.base() == base)
                    .map(|m| m.uid)
                    .ok_or(StoreError::Gone)
            })
            .collect::<Result<Vec<u32>, _>>()?;
        Ok((listed.uid_validity, uids))
    }
}
