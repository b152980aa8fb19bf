//! The sync: a mailbox listed with its UIDs, new messages given theirs (in
//! name order, which is delivery order), vanished ones forgotten; from the
//! kept index when it is current (`index`), else from a scan.
use std::{
    collections::HashMap,
    fs, io,
    path::Path,
    sync::{Arc, atomic::Ordering},
};

use super::{
    Mailbox, Message, Store, StoreError, account_of,
    index::{File, Index, Stamp},
    io_at, keywords, modseq,
    uidlist::{UIDLIST, UidList, fresh_uid_validity, parse_uidlist, scan, write_uidlist},
};

impl Store {
    /// Lists the mailbox, giving every message without a UID the next ones
    /// and forgetting vanished ones.
    pub fn sync(&self, address: &str, mailbox: &str) -> Result<Mailbox, StoreError> {
        let dir = self.mailbox_dir(address, mailbox)?;
        let _guard = self.locks.of(&dir);
        self.sync_dir(&dir, false)
    }

    /// `sync`, and the messages no session has seen as \Recent yet become
    /// the caller's: the result's `first_recent` and later UIDs are recent
    /// for it alone (RFC 3501 2.3.2).
    pub fn sync_claiming_recent(
        &self,
        address: &str,
        mailbox: &str,
    ) -> Result<Mailbox, StoreError> {
        let dir = self.mailbox_dir(address, mailbox)?;
        let _guard = self.locks.of(&dir);
        self.sync_dir(&dir, true)
    }

    /// The sync of a mailbox directory, its lock held by the caller. The
    /// index is kept again only when all went well: one that gave UIDs it
    /// could not write down must not be used.
    pub(super) fn sync_dir(&self, dir: &Path, claim_recent: bool) -> Result<Mailbox, StoreError> {
        let mut index = match self.kept.take(dir) {
            Some(index) if index.is_current(dir) => index,
            _ => self.scan_index(dir)?,
        };
        let listed = self.list(dir, &mut index, claim_recent)?;
        self.kept.put(dir, index);
        Ok(listed)
    }

    /// An index read from the directory: the UID list and a scan of
    /// `new/` and `cur/`, stamped before either was read.
    fn scan_index(&self, dir: &Path) -> Result<Index, StoreError> {
        self.scans.fetch_add(1, Ordering::Relaxed);
        let stamp = Stamp::of(dir);
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
        let unsaved = read.is_none();
        let list = match read {
            Some(list) => list,
            None => {
                // One UIDVALIDITY file per account, whatever the mailbox.
                let _account = self.validity.lock().unwrap_or_else(|e| e.into_inner());
                UidList {
                    uid_validity: fresh_uid_validity(account_of(dir))?,
                    next_uid: 1,
                    first_recent: 1,
                    by_uid: Default::default(),
                }
            }
        };
        let files: HashMap<String, File> = scan(dir)?
            .into_iter()
            .map(|(base, (path, flags, size))| (base, File { path, flags, size }))
            .collect();
        Ok(Index::new(
            stamp,
            list,
            files,
            keywords::read(dir)?,
            unsaved,
        ))
    }

    /// The listing an index gives, after the UIDs owed are given and
    /// written down, and mod-sequences given to what changed.
    fn list(
        &self,
        dir: &Path,
        index: &mut Index,
        claim_recent: bool,
    ) -> Result<Mailbox, StoreError> {
        let mut changed = index.number_fresh() | index.unsaved;
        let first_recent = index.list.first_recent;
        if claim_recent && index.list.first_recent < index.list.next_uid {
            index.list.first_recent = index.list.next_uid;
            changed = true;
        }
        if changed {
            write_uidlist(dir, &index.list)?;
            index.saved(dir);
        }
        let (messages, highest_modseq) = match &index.listing {
            Some(listed) => listed.clone(),
            None => {
                let mut messages: Vec<Message> = index
                    .list
                    .by_uid
                    .iter()
                    .filter_map(|(&uid, base)| {
                        let file = index.files.get(base)?;
                        Some(Message {
                            uid,
                            path: file.path.clone(),
                            flags: file.flags.clone(),
                            size: file.size,
                            modseq: 0,
                        })
                    })
                    .collect();
                let highest = modseq::update(&self.modseqs, dir, &mut messages)?;
                let listed = (Arc::new(messages), highest);
                index.listing = Some(listed.clone());
                listed
            }
        };
        Ok(Mailbox {
            uid_validity: index.list.uid_validity,
            next_uid: index.list.next_uid,
            // What this sync claimed is recent for the caller alone.
            first_recent,
            keywords: index.keywords.clone(),
            highest_modseq,
            messages,
        })
    }
}
