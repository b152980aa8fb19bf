//! Maildir storage with persistent UIDs.
//!
//! A delivery writes `tmp/NAME`, fsyncs it, renames it to `new/NAME` and
//! fsyncs `new/`: only then is it acknowledged. UIDs are given when a
//! mailbox is synced (opened), recorded in `uidlist`, which is replaced whole
//! (write, fsync, rename, fsync of the directory). A crash therefore leaves
//! at worst a message without a UID yet (it gets one at the next sync) or a
//! stray file in `tmp/` (never shown, removed after an hour): nothing
//! acknowledged is lost, nothing is listed twice, the UID list is always a
//! whole old or whole new one.
//!
//! Account directories are the address, lower-cased, with every byte other
//! than `a-z 0-9 . _ @ + -` (and a leading dot) written as `%XX`, so no
//! address can name a path outside `ROOT/mail`.
use std::{
    collections::{BTreeMap, HashSet},
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

mod append;
mod flags;
mod index;
pub mod keywords;
pub mod lock;
mod modseq;
mod naming;
pub mod quota;
mod sync;
pub mod uidlist;

pub use append::Appended;
pub use flags::FlagChange;
use index::Change;
pub use modseq::Vanished;
pub use naming::{account_dir_name, mailbox_dir_name, percent_decode};
use naming::{mailbox_name, sort_flags};
use quota::{QUOTA_FILE, Quotas, Usage, parse_limit};

pub const INBOX: &str = "INBOX";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}: no such mailbox here")]
    NoAccount(String),
    #[error("{0:?} is not a mail address")]
    BadAddress(String),
    #[error("no mailbox {0:?}")]
    NoMailbox(String),
    #[error("mailbox {0:?} exists")]
    MailboxExists(String),
    #[error("{0}")]
    Refused(&'static str),
    #[error("the message is gone")]
    Gone,
    #[error("mailbox full: {used} of {limit} bytes used")]
    OverQuota { used: u64, limit: u64 },
    /// An account's mailboxes or subscriptions are at their configured
    /// number.
    #[error("at most {limit} {what}")]
    Limit { what: &'static str, limit: usize },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One message as a synced mailbox lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    pub path: PathBuf,
    /// Maildir flag letters (`S`een, `R`eplied, `F`lagged, `T`rashed, `D`raft).
    pub flags: String,
    pub size: u64,
    /// CONDSTORE's MODSEQ when it was listed (`modseq`).
    pub modseq: u64,
}

#[derive(Debug, Clone)]
pub struct Mailbox {
    pub uid_validity: u32,
    pub next_uid: u32,
    /// Messages from this UID on are \Recent: not yet seen by any session
    /// (for `sync_claiming_recent`, seen now by the caller alone).
    pub first_recent: u32,
    /// Keyword names by letter (`keywords`).
    pub keywords: Vec<String>,
    /// CONDSTORE's HIGHESTMODSEQ (`modseq`).
    pub highest_modseq: u64,
    /// By UID; one list shared by every sync that found the mailbox as it
    /// was (sessions on a mailbox hold one copy, not one each).
    pub messages: Arc<Vec<Message>>,
}

/// The maildirs of one instance.
pub struct Store {
    root: PathBuf,
    host: String,
    counter: AtomicU64,
    /// Each mailbox's lock, held by its syncs and by every change to its
    /// files (one process owns the volume, see `lock`).
    locks: index::Locks,
    /// Held while an account's next UIDVALIDITY is given.
    validity: Mutex<()>,
    /// Bumped after every change to any mailbox: IDLE and NOOP look again.
    changes: tokio::sync::watch::Sender<u64>,
    quotas: Quotas,
    /// Directory fsyncs shared by concurrent deliveries (group commit).
    barriers: Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<DirBarrier>>>,
    /// Mod-sequences of the busiest mailboxes, as written.
    modseqs: modseq::Cache,
    /// Indexes of the busiest mailboxes, kept up to date by the store's
    /// own changes.
    kept: index::Kept,
    /// Syncs that scanned a directory (`scans`).
    scans: AtomicU64,
    /// Mailboxes and subscriptions per account: neither is in the quota,
    /// and each costs a directory scan on every LIST.
    max_mailboxes: usize,
    max_subscriptions: usize,
}

/// One directory's group commit: renames are counted; an fsync covers
/// every rename counted before it started, so a delivery whose rename an
/// fsync already covered needs none of its own.
#[derive(Default)]
struct DirBarrier {
    renames: AtomicU64,
    synced: Mutex<u64>,
}

/// The account directory a mailbox directory is in.
fn account_of(mailbox_dir: &Path) -> &Path {
    mailbox_dir.parent().unwrap_or(mailbox_dir)
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

impl Store {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let mail = root.join("mail");
        fs::create_dir_all(&mail).map_err(io_at(&mail))?;
        let host = fulmar_daemon::host_name()
            .map(|h| h.replace(['/', ':'], "_"))
            .unwrap_or_else(|_| "localhost".into());
        Ok(Self {
            root: mail,
            host,
            counter: AtomicU64::new(0),
            locks: index::Locks::default(),
            validity: Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(0),
            quotas: Quotas::new(None),
            barriers: Mutex::default(),
            modseqs: modseq::Cache::default(),
            kept: index::Kept::default(),
            scans: AtomicU64::new(0),
            max_mailboxes: usize::MAX,
            max_subscriptions: usize::MAX,
        })
    }

    /// Caps each account's mailboxes and subscriptions.
    pub fn with_limits(mut self, mailboxes: usize, subscriptions: usize) -> Self {
        self.max_mailboxes = mailboxes;
        self.max_subscriptions = subscriptions;
        self
    }

    /// Gives every account without a limit of its own this one.
    pub fn with_default_quota(mut self, limit: Option<u64>) -> Self {
        self.quotas = Quotas::new(limit);
        self
    }

    /// The account's quota usage; None when it is unlimited.
    pub fn quota(&self, address: &str) -> Result<Option<Usage>, StoreError> {
        self.quotas.usage(&self.account_dir(address)?)
    }

    /// `OverQuota` unless `extra` more bytes fit in the account.
    /// See [`quota::Quotas::tally`].
    pub fn quota_tally(&self, near: f64) -> (u64, u64, u64) {
        self.quotas.tally(near)
    }

    pub fn check_quota(&self, address: &str, extra: u64) -> Result<(), StoreError> {
        self.quotas.check(&self.account_dir(address)?, extra)
    }

    /// Sets the account's own limit (`2 GiB`, `none`), or with None
    /// returns it to the instance default.
    pub fn set_quota(&self, address: &str, limit: Option<&str>) -> Result<(), StoreError> {
        let account = self.account_dir(address)?;
        match limit {
            Some(text) => {
                parse_limit(text).map_err(|e| StoreError::Io {
                    path: account.join(QUOTA_FILE),
                    source: io::Error::new(io::ErrorKind::InvalidInput, e),
                })?;
                replace_file(
                    &account,
                    QUOTA_FILE,
                    format!("{}\n", text.trim()).as_bytes(),
                )
            }
            None => match fs::remove_file(account.join(QUOTA_FILE)) {
                Ok(()) => fsync_dir(&account),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_at(&account.join(QUOTA_FILE))(e)),
            },
        }
    }

    /// Makes a rename just done in `dir` durable: fsyncs the directory, or
    /// waits for an fsync that started after the rename.
    fn durable_rename(&self, dir: &Path) -> Result<(), StoreError> {
        let barrier = self
            .barriers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(dir.to_path_buf())
            .or_default()
            .clone();
        let mine = barrier.renames.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = barrier.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= mine {
            return Ok(());
        }
        let upto = barrier.renames.load(Ordering::SeqCst);
        fsync_dir(dir)?;
        *synced = upto;
        Ok(())
    }

    /// Syncs so far that read a mailbox's directory instead of its kept
    /// index.
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// A receiver that sees every later change to the store.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn account_dir(&self, address: &str) -> Result<PathBuf, StoreError> {
        let account = self.root.join(account_dir_name(address)?);
        if !account.is_dir() {
            return Err(StoreError::NoAccount(address.to_string()));
        }
        Ok(account)
    }

    /// The directory of an existing mailbox.
    pub fn mailbox_dir(&self, address: &str, mailbox: &str) -> Result<PathBuf, StoreError> {
        let dir = self.account_dir(address)?.join(mailbox_dir_name(mailbox)?);
        if !dir.join("cur").is_dir() {
            return Err(StoreError::NoMailbox(mailbox.to_string()));
        }
        Ok(dir)
    }

    pub fn has_account(&self, address: &str) -> bool {
        account_dir_name(address).is_ok_and(|d| self.root.join(d).is_dir())
    }

    /// Creates the account with an empty INBOX and the special-use
    /// folders (idempotent).
    pub fn create_account(&self, address: &str) -> Result<(), StoreError> {
        let account = self.root.join(account_dir_name(address)?);
        for (name, _) in std::iter::once((INBOX, "")).chain(SPECIAL_USE) {
            make_maildir(&account.join(mailbox_dir_name(name)?))?;
        }
        fsync_dir(&account)?;
        fsync_dir(&self.root)?;
        self.sync(address, INBOX).map(|_| ())
    }

    /// Every mailbox of the account, INBOX first, then by name.
    pub fn mailboxes(&self, address: &str) -> Result<Vec<String>, StoreError> {
        let account = self.account_dir(address)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(&account).map_err(io_at(&account))? {
            let entry = entry.map_err(io_at(&account))?;
            let dir = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join("cur").is_dir()
                && let Some(name) = mailbox_name(&dir)
            {
                names.push(name);
            }
        }
        names.sort_by(|a, b| (a != INBOX, a).cmp(&(b != INBOX, b)));
        Ok(names)
    }

    pub fn create_mailbox(&self, address: &str, name: &str) -> Result<(), StoreError> {
        let account = self.account_dir(address)?;
        let dir = account.join(mailbox_dir_name(name)?);
        if dir.exists() {
            return Err(StoreError::MailboxExists(name.to_string()));
        }
        if self.mailboxes(address)?.len() >= self.max_mailboxes {
            return Err(StoreError::Limit {
                what: "mailboxes per account",
                limit: self.max_mailboxes,
            });
        }
        make_maildir(&dir)?;
        fsync_dir(&account)
    }

    pub fn delete_mailbox(&self, address: &str, name: &str) -> Result<(), StoreError> {
        if name.eq_ignore_ascii_case(INBOX) {
            return Err(StoreError::Refused("INBOX cannot be deleted"));
        }
        let dir = self.mailbox_dir(address, name)?;
        // Renamed out of sight first, so a crash never leaves half a mailbox.
        let doomed = dir.with_file_name(format!(".deleted.{}", self.unique_name()));
        {
            let _guard = self.locks.of(&dir);
            fs::rename(&dir, &doomed).map_err(io_at(&dir))?;
            self.kept.forget(&dir);
        }
        fsync_dir(dir.parent().unwrap_or(&dir))?;
        fs::remove_dir_all(&doomed).map_err(io_at(&doomed))?;
        self.quotas.forget(dir.parent().unwrap_or(&dir));
        self.modseqs.clear();
        self.changed();
        Ok(())
    }

    pub fn rename_mailbox(&self, address: &str, from: &str, to: &str) -> Result<(), StoreError> {
        if from.eq_ignore_ascii_case(INBOX) || to.eq_ignore_ascii_case(INBOX) {
            return Err(StoreError::Refused("INBOX cannot be renamed"));
        }
        let source = self.mailbox_dir(address, from)?;
        let target = source.with_file_name(mailbox_dir_name(to)?);
        if target.exists() {
            return Err(StoreError::MailboxExists(to.to_string()));
        }
        {
            let _guard = self.locks.of(&source);
            fs::rename(&source, &target).map_err(io_at(&source))?;
            // The target's name may have held a mailbox deleted earlier.
            self.kept.forget(&source);
            self.kept.forget(&target);
        }
        fsync_dir(source.parent().unwrap_or(&source))?;
        self.modseqs.clear();
        self.changed();
        Ok(())
    }

    /// The subscribed mailbox names, in the order they were added.
    pub fn subscriptions(&self, address: &str) -> Result<Vec<String>, StoreError> {
        let path = self.account_dir(address)?.join(SUBSCRIPTIONS);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(SPECIAL_USE
                .iter()
                .map(|(n, _)| n.to_string())
                .chain([INBOX.to_string()])
                .collect()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    pub fn set_subscribed(&self, address: &str, name: &str, on: bool) -> Result<(), StoreError> {
        if name.contains(['\r', '\n']) {
            return Err(StoreError::NoMailbox(name.to_string()));
        }
        let mut names = self.subscriptions(address)?;
        let had = names.len();
        names.retain(|n| n != name);
        if on {
            if names.len() == had && had >= self.max_subscriptions {
                return Err(StoreError::Limit {
                    what: "subscriptions per account",
                    limit: self.max_subscriptions,
                });
            }
            names.push(name.to_string());
        }
        let account = self.account_dir(address)?;
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        replace_file(&account, SUBSCRIPTIONS, text.as_bytes())
    }

    /// A maildir name, unique on this host. A sync gives new messages
    /// their UIDs in name order, so names sort in the order they were made:
    /// the microseconds and the counter are zero-padded (unpadded, `M99999`
    /// sorted after `M100000` and two deliveries within a second could get
    /// their UIDs the wrong way round).
    fn unique_name(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{}.M{:06}P{}Q{:010}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed),
            self.host
        )
    }

    /// `unique_name` with the message's size (`,S=`, as Dovecot's maildirs
    /// have it): a sync reads sizes from the names, not a stat per message.
    fn sized_name(&self, size: u64) -> String {
        format!("{},S={size}", self.unique_name())
    }

    /// Writes a message into `dir/tmp` and syncs it: (its path, its name).
    /// `internal_date`, when given, becomes its mtime.
    fn write_tmp(
        &self,
        dir: &Path,
        data: &[u8],
        internal_date: Option<SystemTime>,
    ) -> Result<(PathBuf, String), StoreError> {
        let name = self.sized_name(data.len() as u64);
        let tmp = dir.join("tmp").join(&name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_at(&tmp))?;
        // fdatasync is enough unless the mtime (INTERNALDATE) was set.
        let written = file.write_all(data).and_then(|()| match internal_date {
            Some(t) => file.set_modified(t).and_then(|()| file.sync_all()),
            None => file.sync_data(),
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_at(&tmp)(e));
        }
        Ok((tmp, name))
    }

    /// Renames a written tmp file of `size` bytes into `new/` (no flags)
    /// or `cur/`, the mailbox's lock held; returns the directory it is now
    /// in and the change for the index. Not yet durable: see
    /// `durable_rename`.
    fn place(
        dir: &Path,
        tmp: &Path,
        name: &str,
        flags: &str,
        size: u64,
    ) -> Result<(PathBuf, Change), StoreError> {
        let (target, placed) = placed_name(dir, name, flags);
        if let Err(e) = fs::rename(tmp, &placed) {
            let _ = fs::remove_file(tmp);
            return Err(io_at(tmp)(e));
        }
        Ok((target, Change::placed(name, placed, flags, size)))
    }

    /// IMAP APPEND: stores the message and returns (UIDVALIDITY, UID).
    pub fn append(
        &self,
        address: &str,
        mailbox: &str,
        data: &[u8],
        flags: &str,
        internal_date: Option<SystemTime>,
    ) -> Result<(u32, u32), StoreError> {
        let one = Appended {
            data,
            flags: flags.to_string(),
            date: internal_date,
        };
        let (validity, uids) = self.append_many(address, mailbox, std::slice::from_ref(&one))?;
        Ok((validity, uids[0]))
    }

    /// Copies messages into `mailbox` with their flags and internal dates
    /// (hard links: the files never change). Returns the target's
    /// UIDVALIDITY and the new UIDs in the order given.
    pub fn copy(
        &self,
        address: &str,
        messages: &[Message],
        keywords: &[String],
        mailbox: &str,
    ) -> Result<(u32, Vec<u32>), StoreError> {
        let dir = self.mailbox_dir(address, mailbox)?;
        let size = messages.iter().map(|m| m.size).sum();
        self.quotas.check(account_of(&dir), size)?;
        let mut bases = Vec::with_capacity(messages.len());
        let mut touched = HashSet::new();
        // Linked and given UIDs under the mailbox's lock (see `append_many`).
        let guard = self.locks.of(&dir);
        let before = self.kept.before(&dir);
        // Keyword letters are the source mailbox's: the target's may differ.
        let mut names: Vec<&str> = messages
            .iter()
            .flat_map(|m| keywords::names(&m.flags, keywords))
            .collect();
        names.sort_unstable();
        names.dedup();
        let target_table = if names.is_empty() {
            Vec::new()
        } else {
            keywords::assign(&dir, &names)?.1
        };
        // A COPY that fails leaves the target as it was (RFC 3501 6.4.7):
        // the links made before a message turned out gone are removed.
        let mut made: Vec<Change> = Vec::new();
        if !names.is_empty() {
            made.push(Change::Keywords(target_table.clone()));
        }
        let undo = |made: &[Change], e: StoreError| {
            made.iter()
                .filter_map(Change::placed_path)
                .for_each(|p| drop(fs::remove_file(p)));
            e
        };
        for m in messages {
            let name = self.sized_name(m.size);
            let flags: String = m
                .flags
                .chars()
                .filter(char::is_ascii_uppercase)
                .chain(
                    keywords::names(&m.flags, keywords)
                        .filter_map(|k| keywords::letter_of(&target_table, k)),
                )
                .collect();
            let flags = sort_flags(&flags);
            let (sub, target) = placed_name(&dir, &name, &flags);
            // A stale name (another session changed the flags) is found
            // again by its base name; only a message gone for good fails.
            let mut linked = fs::hard_link(&m.path, &target);
            if linked
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
            {
                match flags::current(m) {
                    Ok(Some((now, _))) => linked = fs::hard_link(now, &target),
                    Ok(None) => return Err(undo(&made, StoreError::Gone)),
                    Err(e) => return Err(undo(&made, e)),
                }
            }
            match linked {
                Ok(()) => made.push(Change::placed(&name, target, &flags, m.size)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(undo(&made, StoreError::Gone));
                }
                Err(e) => return Err(undo(&made, io_at(&target)(e))),
            }
            touched.insert(sub);
            bases.push(name);
        }
        self.kept.apply(&dir, before, made);
        let listed = self.sync_dir(&dir, false)?;
        drop(guard);
        for sub in touched {
            fsync_dir(&sub)?;
        }
        self.quotas.add(account_of(&dir), size);
        self.changed();
        let by_base: BTreeMap<&str, u32> =
            listed.messages.iter().map(|m| (m.base(), m.uid)).collect();
        let uids = bases
            .iter()
            .map(|b| by_base.get(b.as_str()).copied().ok_or(StoreError::Gone))
            .collect::<Result<_, _>>()?;
        Ok((listed.uid_validity, uids))
    }

    /// Stores one message in the account's INBOX; returns once it is
    /// durable. `OverQuota` when it does not fit.
    pub fn deliver(&self, address: &str, data: &[u8]) -> Result<(), StoreError> {
        let dir = self.mailbox_dir(address, INBOX)?;
        self.quotas.check(account_of(&dir), data.len() as u64)?;
        let (tmp, name) = self.write_tmp(&dir, data, None)?;
        let target = {
            let _guard = self.locks.of(&dir);
            let before = self.kept.before(&dir);
            let (target, placed) = Self::place(&dir, &tmp, &name, "", data.len() as u64)?;
            self.kept.apply(&dir, before, [placed]);
            target
        };
        self.durable_rename(&target)?;
        self.quotas.add(account_of(&dir), data.len() as u64);
        self.changed();
        Ok(())
    }

    /// The letters of keyword `names` in a mailbox, new names given new
    /// letters, and the mailbox's keyword table as it now is; `Limit` past
    /// 26 keywords.
    pub fn keyword_letters(
        &self,
        address: &str,
        mailbox: &str,
        names: &[&str],
    ) -> Result<(String, Vec<String>), StoreError> {
        let dir = self.mailbox_dir(address, mailbox)?;
        let _guard = self.locks.of(&dir);
        let before = self.kept.before(&dir);
        let assigned = keywords::assign(&dir, names);
        match &assigned {
            Ok((_, table)) => self
                .kept
                .apply(&dir, before, [Change::Keywords(table.clone())]),
            Err(_) => self.kept.forget(&dir),
        }
        assigned
    }
}

/// The special-use folders every account gets (RFC 6154).
pub const SPECIAL_USE: [(&str, &str); 4] = [
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
];
const SUBSCRIPTIONS: &str = "subscriptions";

impl Mailbox {
    /// The UIDs of the messages no session has seen as \Recent yet (for
    /// `sync_claiming_recent`, those the caller alone sees as recent).
    pub fn recent(&self) -> impl Iterator<Item = u32> + '_ {
        self.messages
            .iter()
            .map(|m| m.uid)
            .filter(|&u| u >= self.first_recent)
    }
}

impl Message {
    /// The maildir base name: the file name without `:2,FLAGS`.
    pub fn base(&self) -> &str {
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        name.split_once(":2,").map_or(name, |(b, _)| b)
    }
}

/// Where a message file named `name` with `flags` goes: (`new/` or
/// `cur/`, its path there).
fn placed_name(dir: &Path, name: &str, flags: &str) -> (PathBuf, PathBuf) {
    let (sub, file_name) = if flags.is_empty() {
        ("new", name.to_string())
    } else {
        ("cur", format!("{name}:2,{flags}"))
    };
    let target = dir.join(sub);
    let path = target.join(file_name);
    (target, path)
}

fn make_maildir(dir: &Path) -> Result<(), StoreError> {
    for sub in ["tmp", "new", "cur"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).map_err(io_at(&d))?;
    }
    fsync_dir(dir)
}

/// Replaces `dir/name` whole: write, fsync, rename, fsync of the directory.
pub(super) fn replace_file(dir: &Path, name: &str, data: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    fulmar_daemon::durable::replace(&path, data).map_err(io_at(&path))
}

#[cfg(test)]
mod tests;
