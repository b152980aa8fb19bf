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

use crate::imap::wire::{keyword, letter, mailbox_flags, permanent_flags, string};
use crate::imap::{
    mailbox_name,
    session::{Selected, Session},
    store_error, wildcard,
};
use crate::store::{INBOX, SPECIAL_USE, StoreError};

impl Session {
    pub(in crate::imap) fn select(&mut self, tag: &Tag, name: &str, read_only: bool) {
        self.selected = None;
        // Before the sync: a change made while it runs is looked at again.
        self.changes.mark_unchanged();
        self.owed_expunges = false;
        let store = &self.service.store;
        // EXAMINE changes nothing, not even who saw a message as recent.
        let listed = match if read_only {
            store.sync(self.account(), name)
        } else {
            store.sync_claiming_recent(self.account(), name)
        } {
            Ok(l) => l,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        let recent: std::collections::HashSet<u32> = listed.recent().collect();
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
        self.line(&format!("* {} RECENT", recent.len()));
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
        self.line(&format!(
            "* OK [HIGHESTMODSEQ {}] Highest",
            listed.highest_modseq
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
            keywords: listed.keywords,
            recent,
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
        for (name, noselect) in listed(&full, &names) {
            let mut attrs: Vec<&str> = Vec::new();
            if noselect {
                attrs.push("\\Noselect");
            }
            // CHILDREN (RFC 3348), for LIST: LSUB's names are subscriptions.
            if !subscribed {
                let prefix = format!("{name}/");
                let parent = names.iter().any(|n| n.starts_with(&prefix));
                attrs.push(if parent {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if let Some((_, special)) = SPECIAL_USE.iter().find(|(n, _)| *n == name) {
                attrs.push(special);
            }
            let attrs = attrs.join(" ");
            let mut line = format!("* {command} ({attrs}) \"/\" ").into_bytes();
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
                StatusDataItemName::Recent => Some(format!("RECENT {}", listed.recent().count())),
                StatusDataItemName::UidNext => Some(format!("UIDNEXT {}", listed.next_uid)),
                StatusDataItemName::UidValidity => {
                    Some(format!("UIDVALIDITY {}", listed.uid_validity))
                }
                StatusDataItemName::HighestModSeq => {
                    Some(format!("HIGHESTMODSEQ {}", listed.highest_modseq))
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
        let when = date.map(|d| SystemTime::from(*d.as_ref()));
        let name = mailbox_name(mailbox);
        let account = self.account().to_string();
        let keywords: Vec<&str> = flags.iter().filter_map(keyword).collect();
        let store = &self.service.store;
        let started = std::time::Instant::now();
        let r = tokio::task::block_in_place(|| {
            let kw = if keywords.is_empty() {
                String::new()
            } else {
                store.keyword_letters(&account, &name, &keywords)?.0
            };
            let letters: String = flags.iter().filter_map(letter).chain(kw.chars()).collect();
            store.append(&account, &name, data, &letters, when)
        });
        crate::metrics::METRICS.append(r.is_ok(), started.elapsed());
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

fn matches(pattern: &str, name: &str) -> bool {
    if name == INBOX {
        wildcard(pattern.to_ascii_uppercase().as_bytes(), b"INBOX")
    } else {
        wildcard(pattern.as_bytes(), name.as_bytes())
    }
}

/// What LIST or LSUB shows for `pattern` over `names` (the mailboxes, or
/// the subscriptions), each with whether it is `\Noselect`. RFC 3501
/// 6.3.8/6.3.9: when a pattern ends in `%`, a level of hierarchy it stops
/// at is shown too if only names below it match; as `\Noselect` unless it
/// is itself one of `names`.
fn listed(pattern: &str, names: &[String]) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut levels = std::collections::HashSet::new();
    for name in names {
        if matches(pattern, name) {
            out.push((name.clone(), false));
            continue;
        }
        if !pattern.ends_with('%') {
            continue;
        }
        let level = name
            .match_indices('/')
            .map(|(i, _)| &name[..i])
            .find(|level| matches(pattern, level));
        if let Some(level) = level
            && !names.iter().any(|n| n == level)
            && levels.insert(level.to_string())
        {
            out.push((level.to_string(), true));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_above_matches_are_noselect() {
        let names: Vec<String> = ["INBOX", "a/b/c", "a/b/d", "x", "x/y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let shown = |p: &str| {
            listed(p, &names)
                .into_iter()
                .map(|(n, no)| format!("{n}{}", if no { "!" } else { "" }))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(shown("%"), "INBOX a! x");
        assert_eq!(shown("a/%"), "a/b!");
        assert_eq!(shown("a/b/%"), "a/b/c a/b/d");
        assert_eq!(shown("x/%"), "x/y");
        assert_eq!(shown("*"), "INBOX a/b/c a/b/d x x/y");
        assert_eq!(shown("inbox"), "INBOX");
    }
}
