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
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

const UIDLIST: &str = "uidlist";
const UIDLIST_MAGIC: &str = "fulmar-uidlist 1";
/// A `tmp/` file older than this is a crashed delivery's leftover.
const TMP_MAX_AGE: Duration = Duration::from_secs(3600);
pub const INBOX: &str = "INBOX";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}: no such mailbox here")]
    NoAccount(String),
    #[error("{0:?} is not a mail address")]
    BadAddress(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
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
}

#[derive(Debug, Clone)]
pub struct Mailbox {
    pub uid_validity: u32,
    pub next_uid: u32,
    /// By UID.
    pub messages: Vec<Message>,
}

/// The maildirs of one instance.
pub struct Store {
    root: PathBuf,
    host: String,
    counter: AtomicU64,
    /// UID lists are rewritten by one sync at a time (one process owns the
    /// volume, see `lock`).
    sync: Mutex<()>,
}

/// The directory name of an address, or why it is not one.
pub fn account_dir_name(address: &str) -> Result<String, StoreError> {
    let lower = address.trim().to_ascii_lowercase();
    let bad = || StoreError::BadAddress(address.to_string());
    let (local, domain) = lower.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty() || domain.is_empty() || lower.len() > 254 || lower.contains(['\r', '\n']) {
        return Err(bad());
    }
    let mut out = String::with_capacity(lower.len());
    for (i, b) in lower.bytes().enumerate() {
        let plain = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'_' | b'@' | b'+' | b'-')
            || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
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
            sync: Mutex::new(()),
        })
    }

    fn mailbox_dir(&self, address: &str, mailbox: &str) -> Result<PathBuf, StoreError> {
        let account = self.root.join(account_dir_name(address)?);
        if !account.is_dir() {
            return Err(StoreError::NoAccount(address.to_string()));
        }
        Ok(account.join(mailbox))
    }

    pub fn has_account(&self, address: &str) -> bool {
        account_dir_name(address).is_ok_and(|d| self.root.join(d).is_dir())
    }

    /// Creates the account with an empty INBOX (idempotent).
    pub fn create_account(&self, address: &str) -> Result<(), StoreError> {
        let account = self.root.join(account_dir_name(address)?);
        let inbox = account.join(INBOX);
        for sub in ["tmp", "new", "cur"] {
            let dir = inbox.join(sub);
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        fsync_dir(&inbox)?;
        fsync_dir(&account)?;
        fsync_dir(&self.root)?;
        self.sync(address, INBOX).map(|_| ())
    }

    /// Stores one message in the account's INBOX; returns once it is durable.
    pub fn deliver(&self, address: &str, data: &[u8]) -> Result<(), StoreError> {
        let dir = self.mailbox_dir(address, INBOX)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed),
            self.host
        );
        let tmp = dir.join("tmp").join(&name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_at(&tmp))?;
        let written = file.write_all(data).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_at(&tmp)(e));
        }
        drop(file);
        let new = dir.join("new");
        fs::rename(&tmp, new.join(&name)).map_err(io_at(&tmp))?;
        fsync_dir(&new)
    }

    /// Gives every message without a UID the next ones (in name order, which
    /// is delivery order), forgets vanished ones, and lists the mailbox.
    pub fn sync(&self, address: &str, mailbox: &str) -> Result<Mailbox, StoreError> {
        let dir = self.mailbox_dir(address, mailbox)?;
        let _guard = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let list_path = dir.join(UIDLIST);
        let read = match fs::read_to_string(&list_path) {
            Ok(text) => parse_uidlist(&text).or_else(|| {
                // Never written half (rename), so only outside damage gets
                // here: start a new UIDVALIDITY, as IMAP requires then.
                tracing::warn!(path = %list_path.display(), "unreadable UID list, renumbering");
                None
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_at(&list_path)(e)),
        };
        let mut changed = read.is_none();
        let (uid_validity, mut next_uid, mut by_uid) =
            read.unwrap_or_else(|| (fresh_uid_validity(), 1, BTreeMap::new()));
        let on_disk = scan(&dir)?;
        let known: HashSet<&str> = by_uid.values().map(String::as_str).collect();
        // `on_disk` is ordered by name, which is delivery order.
        let fresh: Vec<String> = on_disk
            .keys()
            .filter(|b| !known.contains(b.as_str()))
            .cloned()
            .collect();
        for base in fresh {
            by_uid.insert(next_uid, base);
            next_uid += 1;
            changed = true;
        }
        let before = by_uid.len();
        by_uid.retain(|_, base| on_disk.contains_key(base));
        changed |= by_uid.len() != before;
        if changed {
            write_uidlist(&dir, uid_validity, next_uid, &by_uid)?;
        }
        let messages = by_uid
            .iter()
            .map(|(&uid, base)| {
                let (path, flags, size) = on_disk[base].clone();
                Message {
                    uid,
                    path,
                    flags,
                    size,
                }
            })
            .collect();
        Ok(Mailbox {
            uid_validity,
            next_uid,
            messages,
        })
    }
}

/// UIDVALIDITY from the clock (seconds; never 0).
fn fresh_uid_validity() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
        .max(1)
}

type UidList = (u32, u32, BTreeMap<u32, String>);

fn parse_uidlist(text: &str) -> Option<UidList> {
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

fn write_uidlist(
    dir: &Path,
    uid_validity: u32,
    next_uid: u32,
    by_uid: &BTreeMap<u32, String>,
) -> Result<(), StoreError> {
    let mut text = format!("{UIDLIST_MAGIC} {uid_validity} {next_uid}\n");
    for (uid, base) in by_uid {
        text += &format!("{uid} {base}\n");
    }
    let tmp = dir.join(format!("{UIDLIST}.tmp"));
    let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_at(&tmp))?;
    fs::rename(&tmp, dir.join(UIDLIST)).map_err(io_at(&tmp))?;
    fsync_dir(dir)
}

/// Messages in `new/` and `cur/` by base name (the name before `:2,`):
/// (path, flags, size). Drops `tmp/` leftovers of crashed deliveries.
fn scan(dir: &Path) -> Result<BTreeMap<String, (PathBuf, String, u64)>, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_root(tag: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("fulmar-maildir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        root
    }

    #[test]
    fn addresses_cannot_leave_the_store() {
        assert_eq!(
            account_dir_name("Ann@Example.TEST").unwrap(),
            "ann@example.test"
        );
        assert_eq!(
            account_dir_name("a/../b@x.test").unwrap(),
            "a%2F..%2Fb@x.test"
        );
        assert_eq!(
            account_dir_name(".hidden@x.test").unwrap(),
            "%2Ehidden@x.test"
        );
        assert_eq!(
            account_dir_name("*)(uid=*@x.test").unwrap(),
            "%2A%29%28uid%3D%2A@x.test"
        );
        assert!(account_dir_name("no-at-sign").is_err());
        assert!(account_dir_name("@x.test").is_err());
    }

    #[test]
    fn uids_are_given_once_and_survive_resync() {
        let root = temp_root("uids");
        let store = Store::open(&root).unwrap();
        assert!(matches!(
            store.deliver("ann@x.test", b"x"),
            Err(StoreError::NoAccount(_))
        ));
        store.create_account("ann@x.test").unwrap();
        for i in 0..3 {
            store
                .deliver("ann@x.test", format!("m{i}").as_bytes())
                .unwrap();
        }
        let first = store.sync("ann@x.test", INBOX).unwrap();
        assert_eq!(
            first.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(fs::read(&first.messages[2].path).unwrap(), b"m2");
        // A flag change is a rename to cur/NAME:2,FLAGS: same UID.
        let m = &first.messages[0];
        let base = m.path.file_name().unwrap().to_string_lossy().into_owned();
        let flagged = m
            .path
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("cur")
            .join(format!("{base}:2,FS"));
        fs::rename(&m.path, &flagged).unwrap();
        fs::remove_file(&first.messages[1].path).unwrap();
        store.deliver("ann@x.test", b"m3").unwrap();
        let second = store.sync("ann@x.test", INBOX).unwrap();
        assert_eq!(second.uid_validity, first.uid_validity);
        let listed: Vec<(u32, &str)> = second
            .messages
            .iter()
            .map(|m| (m.uid, m.flags.as_str()))
            .collect();
        assert_eq!(listed, [(1, "FS"), (3, ""), (4, "")]);
        assert_eq!(second.next_uid, 5);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_damaged_uid_list_renumbers_with_a_new_uidvalidity() {
        let root = temp_root("damaged");
        let store = Store::open(&root).unwrap();
        store.create_account("bob@x.test").unwrap();
        store.deliver("bob@x.test", b"one").unwrap();
        let before = store.sync("bob@x.test", INBOX).unwrap();
        let list = root.join("mail/bob@x.test/INBOX/uidlist");
        fs::write(&list, "garbage").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let after = store.sync("bob@x.test", INBOX).unwrap();
        assert_ne!(after.uid_validity, before.uid_validity);
        assert_eq!(after.messages.len(), 1);
        fs::remove_dir_all(&root).unwrap();
    }
}
