//! Per-account storage quota: the sum of the account's message sizes over
//! all its mailboxes, against a limit. The limit is the account's own
//! (`ROOT/mail/ACCOUNT/quota`: a size like `2 GiB`, or `none`), else the
//! instance's `quota` setting; without either the account is unlimited.
//!
//! Usage is counted once per account from the files and then kept up to
//! date by the store's own changes (one process owns the volume); a
//! deleted mailbox makes it count again.
use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{
    config::parse_size,
    store::{StoreError, io_at},
};

/// The per-account limit file, in the account's directory.
pub const QUOTA_FILE: &str = "quota";

/// What an account may store and what it holds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub limit: u64,
}

pub struct Quotas {
    default: Option<u64>,
    used: Mutex<HashMap<PathBuf, u64>>,
}

/// A per-account limit as written in its file.
pub fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "none" => Ok(None),
        size => parse_size(size).map(Some),
    }
}

impl Quotas {
    pub fn new(default: Option<u64>) -> Self {
        Self {
            default,
            used: Mutex::default(),
        }
    }

    /// The account's limit: its own file, else the default.
    fn limit(&self, account: &Path) -> Result<Option<u64>, StoreError> {
        let path = account.join(QUOTA_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => parse_limit(&text).map_err(|e| StoreError::Io {
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(self.default),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// The account's usage, None when it is unlimited.
    pub fn usage(&self, account: &Path) -> Result<Option<Usage>, StoreError> {
        let Some(limit) = self.limit(account)? else {
            return Ok(None);
        };
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let used = match used.get(account) {
            Some(&n) => n,
            None => {
                let n = count(account)?;
                used.insert(account.to_path_buf(), n);
                n
            }
        };
        Ok(Some(Usage { used, limit }))
    }

    /// Refuses `extra` more bytes when they do not fit, or when the
    /// account is already full (`extra` 0: a size not yet known).
    pub fn check(&self, account: &Path, extra: u64) -> Result<(), StoreError> {
        match self.usage(account)? {
            Some(u) if u.used >= u.limit || u.used + extra > u.limit => {
                Err(StoreError::OverQuota {
                    used: u.used,
                    limit: u.limit,
                })
            }
            _ => Ok(()),
        }
    }

    pub fn add(&self, account: &Path, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = used.get_mut(account) {
            *n += bytes;
        }
    }

    pub fn remove(&self, account: &Path, bytes: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = used.get_mut(account) {
            *n = n.saturating_sub(bytes);
        }
    }

    /// (accounts counted, bytes they hold, accounts at `near` of their
    /// limit or above): the accounts used since the start that have a limit.
    pub fn tally(&self, near: f64) -> (u64, u64, u64) {
        let counted: Vec<(PathBuf, u64)> = {
            let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            used.iter().map(|(a, n)| (a.clone(), *n)).collect()
        };
        let mut out = (0, 0, 0);
        for (account, used) in counted {
            // A limit removed since: no longer counted against.
            let Ok(Some(limit)) = self.limit(&account) else {
                continue;
            };
            out.0 += 1;
            out.1 += used;
            if used as f64 >= limit as f64 * near {
                out.2 += 1;
            }
        }
        out
    }

    /// Counts the account again at its next use.
    pub fn forget(&self, account: &Path) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.remove(account);
    }
}

/// The bytes in every mailbox's new/ and cur/ of the account.
fn count(account: &Path) -> Result<u64, StoreError> {
    let mut total = 0;
    for mailbox in fs::read_dir(account).map_err(io_at(account))? {
        let mailbox = mailbox.map_err(io_at(account))?;
        // A leading dot is never a mailbox (names encode it): a deletion's
        // leftover.
        if mailbox.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let mailbox = mailbox.path();
        for sub in ["new", "cur"] {
            let dir = mailbox.join(sub);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry.map_err(io_at(&dir))?;
                total += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    Ok(total)
}
