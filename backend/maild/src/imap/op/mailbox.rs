//! Mailboxes: SELECT/EXAMINE, LIST/LSUB, STATUS, APPEND.
use std::time::SystemTime;

use imap_codec::imap_types::{
    core::Tag,
    datetime::DateTime,
    extensions::binary::LiteralOrLiteral8,
    flag::Flag,
    mailbox::{ListMailbox, Mailbox},
    status::StatusDataItemName,
};

use crate::imap::wire::{PERMANENT_FLAGS, letter, string};
use crate::imap::{
    mailbox_name,
    session::{Selected, Session},
    store_error, wildcard,
};
use crate::store::{INBOX, SPECIAL_USE, StoreError};

impl Session {
    pub(in crate::imap) fn select(&mut self, tag: &Tag, name: &str, read_only: bool) {
        self.selected = None;
        let listed = match self.service.store.sync(self.account(), name) {
            Ok(l) => l,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        self.changes.mark_unchanged();
        self.line(&format!("* FLAGS {PERMANENT_FLAGS}"));
        if read_only {
            self.line("* OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            self.line(&format!(
                "* OK [PERMANENTFLAGS {PERMANENT_FLAGS}] Flags permitted"
            ));
        }
        self.line(&format!("* {} EXISTS", listed.messages.len()));
        self.line("* 0 RECENT");
        if let Some(first) = listed.messages.iter().position(|m| !m.flags.contains('S')) {
            self.line(&format!("* OK [UNSEEN {}] First unseen", first + 1));
        }
        self.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            listed.uid_validity
        ));
        self.line(&format!(
            "* OK [UIDNEXT {}] Predicted next UID",
            listed.next_uid
        ));
        let access = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        self.tagged(
            tag,
            &format!(
                "OK [{access}] {} completed",
                if read_only { "EXAMINE" } else { "SELECT" }
            ),
        );
        self.selected = Some(Selected {
            name: name.to_string(),
            read_only,
            uid_validity: listed.uid_validity,
            view: listed.messages,
        });
    }

    pub(in crate::imap) fn list(
        &mut self,
        tag: &Tag,
        reference: &Mailbox,
        pattern: &ListMailbox,
        subscribed: bool,
    ) {
        let reference = match reference {
            Mailbox::Inbox => INBOX.to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref()).into_owned(),
        };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let command = if subscribed { "LSUB" } else { "LIST" };
        if pattern.is_empty() && !subscribed {
            self.line("* LIST (\\Noselect) \"/\" \"\"");
            self.tagged(tag, "OK LIST completed");
            return;
        }
        let full = format!("{reference}{pattern}");
        let names = if subscribed {
            self.service.store.subscriptions(self.account())
        } else {
            self.service.store.mailboxes(self.account())
        };
        let names = match names {
            Ok(n) => n,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        for name in names {
            let matched = if name == INBOX {
                wildcard(full.to_ascii_uppercase().as_bytes(), b"INBOX")
            } else {
                wildcard(full.as_bytes(), name.as_bytes())
            };
            if !matched {
                continue;
            }
            let special = SPECIAL_USE
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, attr)| *attr);
            let mut line = format!("* {command} ({}) \"/\" ", special.unwrap_or("")).into_bytes();
            string(&mut line, name.as_bytes());
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b"\r\n");
        }
        self.tagged(tag, &format!("OK {command} completed"));
    }

    pub(in crate::imap) fn status(&mut self, tag: &Tag, name: &str, items: &[StatusDataItemName]) {
        let listed = match self.service.store.sync(self.account(), name) {
            Ok(l) => l,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        let values: Vec<String> = items
            .iter()
            .filter_map(|item| match item {
                StatusDataItemName::Messages => Some(format!("MESSAGES {}", listed.messages.len())),
                StatusDataItemName::Recent => Some("RECENT 0".into()),
                StatusDataItemName::UidNext => Some(format!("UIDNEXT {}", listed.next_uid)),
                StatusDataItemName::UidValidity => {
                    Some(format!("UIDVALIDITY {}", listed.uid_validity))
                }
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
        string(&mut line, name.as_bytes());
        line.extend_from_slice(format!(" ({})\r\n", values.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        self.tagged(tag, "OK STATUS completed");
    }
    /// APPEND: stores the message, then tells the selected view.
    pub(in crate::imap) fn append(
        &mut self,
        tag: Tag<'static>,
        mailbox: &Mailbox,
        flags: &[Flag],
        date: Option<DateTime>,
        message: &LiteralOrLiteral8,
    ) {
        let data: &[u8] = match message {
            LiteralOrLiteral8::Literal(l) => l.as_ref(),
            LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
        };
        let letters: String = flags.iter().filter_map(letter).collect();
        let when = date.map(|d| SystemTime::from(*d.as_ref()));
        let name = mailbox_name(mailbox);
        let account = self.account().to_string();
        let r = tokio::task::block_in_place(|| {
            self.service
                .store
                .append(&account, &name, data, &letters, when)
        });
        match r {
            Ok((validity, uid)) => {
                self.refresh(true);
                self.tagged(
                    &tag,
                    &format!("OK [APPENDUID {validity} {uid}] APPEND completed"),
                );
            }
            Err(StoreError::NoMailbox(_)) => self.tagged(&tag, "NO [TRYCREATE] No such mailbox"),
            Err(e) => self.tagged(&tag, &store_error(&e)),
        }
    }
}
