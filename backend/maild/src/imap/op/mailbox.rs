//! Mailboxes: SELECT/EXAMINE, STATUS, APPEND (LIST and LSUB: `list`).
use std::time::SystemTime;

use imap_codec::imap_types::{
    command::CommandBody, core::Tag, datetime::DateTime, extensions::binary::LiteralOrLiteral8,
    flag::Flag, mailbox::Mailbox, status::StatusDataItemName,
};

use crate::imap::wire::{keyword, letter, mailbox_flags, permanent_flags};
use crate::imap::{
    op::qresync::Resync,
    session::{Selected, Session},
    store_error, uid_set,
};
use crate::store::{Appended, StoreError};

impl Session {
    /// SELECT (`read_only`: EXAMINE), with QRESYNC's resynchronization
    /// when asked.
    pub(in crate::imap) fn select(
        &mut self,
        tag: &Tag,
        name: &str,
        read_only: bool,
        resync: Option<&Resync>,
    ) {
        // `$` is of the mailbox it was saved in (RFC 5182 2.1).
        self.saved.clear();
        if self.selected.take().is_some() {
            // RFC 7162 3.2.11: what follows is the new mailbox's.
            self.line("* OK [CLOSED] Previous mailbox closed");
        }
        // Before the sync: a change made while it runs is looked at again.
        self.changes.mark_unchanged();
        self.owed_expunges = false;
        let store = &self.service.store;
        // EXAMINE changes nothing, not even who saw a message as recent.
        let listed = match tokio::task::block_in_place(|| {
            if read_only {
                store.sync(self.account(), name)
            } else {
                store.sync_claiming_recent(self.account(), name)
            }
        }) {
            Ok(l) => l,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        let recent: std::collections::HashSet<u32> = match self.rev2 {
            true => Default::default(),
            false => listed.recent().collect(),
        };
        self.line(&format!("* FLAGS {}", mailbox_flags(&listed.keywords)));
        if read_only {
            self.line("* OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            self.line(&format!(
                "* OK [PERMANENTFLAGS {}] Flags permitted",
                permanent_flags(&listed.keywords)
            ));
        }
        self.line(&format!("* {} EXISTS", listed.messages.len()));
        if self.rev2 {
            // RFC 9051 6.3.2: the name as the server has it, no RECENT
            // and no UNSEEN.
            let mut line = b"* LIST () \"/\" ".to_vec();
            self.write_name(&mut line, name);
            self.line(&String::from_utf8_lossy(&line));
        } else {
            self.line(&format!("* {} RECENT", recent.len()));
            if let Some(first) = listed.messages.iter().position(|m| !m.flags.contains('S')) {
                self.line(&format!("* OK [UNSEEN {}] First unseen", first + 1));
            }
        }
        self.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            listed.uid_validity
        ));
        self.line(&format!(
            "* OK [UIDNEXT {}] Predicted next UID",
            listed.next_uid
        ));
        self.line(&format!(
            "* OK [HIGHESTMODSEQ {}] Highest",
            listed.highest_modseq
        ));
        self.selected = Some(Selected {
            name: name.to_string(),
            read_only,
            uid_validity: listed.uid_validity,
            view: listed.messages,
            keywords: listed.keywords,
            recent,
            highest_modseq: listed.highest_modseq,
        });
        if let Some(r) = resync.filter(|r| r.uid_validity == listed.uid_validity) {
            self.resync(r, listed.next_uid);
        }
        let access = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        self.tagged(
            tag,
            &format!(
                "OK [{access}] {} completed",
                if read_only { "EXAMINE" } else { "SELECT" }
            ),
        );
    }

    pub(in crate::imap) fn status(&mut self, tag: &Tag, name: &str, items: &[StatusDataItemName]) {
        match self.status_line(name, items) {
            Ok(line) => {
                self.line(&line);
                self.tagged(tag, "OK STATUS completed");
            }
            Err(e) => self.tagged(tag, &store_error(&e)),
        }
    }

    /// `* STATUS name (items)` for a mailbox as it is now.
    pub(in crate::imap) fn status_line(
        &self,
        name: &str,
        items: &[StatusDataItemName],
    ) -> Result<String, StoreError> {
        let store = &self.service.store;
        let listed = tokio::task::block_in_place(|| store.sync(self.account(), name))?;
        let values: Vec<String> = items
            .iter()
            .filter_map(|item| match item {
                StatusDataItemName::Messages => Some(format!("MESSAGES {}", listed.messages.len())),
                StatusDataItemName::Recent => Some(format!("RECENT {}", listed.recent().count())),
                StatusDataItemName::UidNext => Some(format!("UIDNEXT {}", listed.next_uid)),
                StatusDataItemName::UidValidity => {
                    Some(format!("UIDVALIDITY {}", listed.uid_validity))
                }
                StatusDataItemName::HighestModSeq => {
                    Some(format!("HIGHESTMODSEQ {}", listed.highest_modseq))
                }
                StatusDataItemName::Deleted => Some(format!(
                    "DELETED {}",
                    listed
                        .messages
                        .iter()
                        .filter(|m| m.flags.contains('T'))
                        .count()
                )),
                StatusDataItemName::Size => Some(format!(
                    "SIZE {}",
                    listed.messages.iter().map(|m| m.size).sum::<u64>()
                )),
                StatusDataItemName::Unseen => Some(format!(
                    "UNSEEN {}",
                    listed
                        .messages
                        .iter()
                        .filter(|m| !m.flags.contains('S'))
                        .count()
                )),
                _ => None,
            })
            .collect();
        let mut line = b"* STATUS ".to_vec();
        self.write_name(&mut line, name);
        line.extend_from_slice(format!(" ({})", values.join(" ")).as_bytes());
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// APPEND: stores the message (with MULTIAPPEND: the messages, all or
    /// none), then tells the selected view.
    pub(in crate::imap) fn append(
        &mut self,
        tag: Tag<'static>,
        mailbox: &Mailbox,
        flags: &[Flag],
        date: Option<DateTime>,
        message: &LiteralOrLiteral8,
    ) {
        fn data<'a>(m: &'a LiteralOrLiteral8<'_>) -> &'a [u8] {
            match m {
                LiteralOrLiteral8::Literal(l) => l.as_ref(),
                LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
            }
        }
        let more = std::mem::take(&mut self.more_appends);
        let mut built = Vec::new();
        for parts in std::mem::take(&mut self.catenated) {
            match parts.map(|p| self.catenated(&p)).transpose() {
                Ok(b) => built.push(b),
                Err(refused) => return self.tagged(&tag, &refused),
            }
        }
        let given = |k: usize, m| built.get(k).and_then(Option::as_deref).unwrap_or(data(m));
        let mut parts = vec![(flags, date.as_ref(), given(0, message))];
        for c in &more {
            if let CommandBody::Append {
                flags,
                date,
                message,
                ..
            } = &c.body
            {
                parts.push((flags, date.as_ref(), given(parts.len(), message)));
            }
        }
        let name = self.name_of(mailbox);
        let account = self.account().to_string();
        let store = &self.service.store;
        let started = std::time::Instant::now();
        let r = tokio::task::block_in_place(|| {
            let mut appended = Vec::with_capacity(parts.len());
            for (flags, date, data) in parts {
                let keywords: Vec<&str> = flags.iter().filter_map(keyword).collect();
                let kw = if keywords.is_empty() {
                    String::new()
                } else {
                    store.keyword_letters(&account, &name, &keywords)?.0
                };
                appended.push(Appended {
                    data,
                    flags: flags.iter().filter_map(letter).chain(kw.chars()).collect(),
                    date: date.map(|d| SystemTime::from(*d.as_ref())),
                });
            }
            store.append_many(&account, &name, &appended)
        });
        crate::metrics::METRICS.append(r.is_ok(), started.elapsed());
        match r {
            Ok((validity, uids)) => {
                self.refresh(true);
                let uids = uid_set(&uids);
                self.tagged(
                    &tag,
                    &format!("OK [APPENDUID {validity} {uids}] APPEND completed"),
                );
            }
            Err(StoreError::NoMailbox(_)) => self.tagged(&tag, "NO [TRYCREATE] No such mailbox"),
            Err(e) => self.tagged(&tag, &store_error(&e)),
        }
    }
}
