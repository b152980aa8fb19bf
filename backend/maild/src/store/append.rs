//! MULTIAPPEND's store side (RFC 3502): several messages become visible
//! in one step, under the sync lock, or none do.
use std::{fs, path::PathBuf, time::SystemTime};

use super::{Store, StoreError, account_of, naming::sort_flags};

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
        let (listed, targets) = {
            let _guard = self.sync.lock().unwrap_or_else(|e| e.into_inner());
            let mut placed: Vec<PathBuf> = Vec::new();
            for (k, ((tmp, base), m)) in written.iter().zip(messages).enumerate() {
                let flags = sort_flags(&m.flags);
                match Self::place(&dir, tmp, base, &flags) {
                    // Where `place` put it, to take it back if a later one fails.
                    Ok(target) if flags.is_empty() => placed.push(target.join(base)),
                    Ok(target) => placed.push(target.join(format!("{base}:2,{flags}"))),
                    Err(e) => {
                        // Nothing was listed meanwhile: the lock is held.
                        placed.iter().for_each(|p| drop(fs::remove_file(p)));
                        written[k + 1..]
                            .iter()
                            .for_each(|(tmp, _)| drop(fs::remove_file(tmp)));
                        return Err(e);
                    }
                }
            }
            let mut targets: Vec<PathBuf> = placed
                .iter()
                .filter_map(|p| p.parent().map(PathBuf::from))
                .collect();
            targets.sort();
            targets.dedup();
            (self.sync_placed(&dir)?, targets)
        };
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
