//! LIST and LSUB (RFC 3501), with LIST-EXTENDED's selection and return
//! options (RFC 5258), LIST-STATUS (RFC 5819), CHILDREN (RFC 3348) and
//! SPECIAL-USE (RFC 6154). A plain LIST is an extended one without options.
use std::collections::HashSet;

use imap_codec::imap_types::{
    core::Tag,
    mailbox::{ListMailbox, Mailbox},
};

use crate::imap::{listext::ListExt, mutf7, session::Session, store_error, wildcard};
use crate::store::{INBOX, SPECIAL_USE};

/// One name a LIST answers.
struct Entry {
    name: String,
    /// Shown for names below it only (RFC 3501 6.3.8's `%` rule).
    placeholder: bool,
    /// Matched for its subscribed children (RECURSIVEMATCH's CHILDINFO).
    childinfo: bool,
}

impl Session {
    pub(in crate::imap) fn list(
        &mut self,
        tag: &Tag,
        reference: &Mailbox,
        pattern: &ListMailbox,
        lsub: bool,
    ) {
        let extended = if lsub { None } else { self.list_ext.take() };
        let mut ext = extended.unwrap_or_else(|| ListExt {
            reference: match reference {
                Mailbox::Inbox => INBOX.to_string(),
                Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref()).into_owned(),
            },
            patterns: vec![match pattern {
                ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
                ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
            }],
            ..ListExt::default()
        });
        if self.utf8 {
            ext.reference = mutf7::encode(&ext.reference);
            ext.patterns.iter_mut().for_each(|p| *p = mutf7::encode(p));
        }
        let command = if lsub { "LSUB" } else { "LIST" };
        if ext.patterns == [""] && !lsub {
            self.line("* LIST (\\Noselect) \"/\" \"\"");
            self.tagged(tag, "OK LIST completed");
            return;
        }
        let store = &self.service.store;
        let names = store.mailboxes(self.account()).and_then(|m| {
            let wants_subs = lsub || ext.subscribed || ext.return_subscribed;
            let subs = if wants_subs {
                store.subscriptions(self.account())?
            } else {
                Vec::new()
            };
            Ok((m, subs))
        });
        let (mailboxes, subscriptions) = match names {
            Ok(n) => n,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        let pool = if lsub || ext.subscribed {
            &subscriptions
        } else {
            &mailboxes
        };
        let entries = entries(&ext, pool, !lsub && ext.subscribed);
        let exists: HashSet<&str> = mailboxes.iter().map(String::as_str).collect();
        let subscribed: HashSet<&str> = subscriptions.iter().map(String::as_str).collect();
        for e in entries {
            let special = SPECIAL_USE.iter().find(|(n, _)| *n == e.name).map(|s| s.1);
            if ext.special_use && special.is_none() {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            let real = exists.contains(e.name.as_str());
            if !real && ext.subscribed && !e.placeholder {
                attrs.push("\\NonExistent");
            } else if e.placeholder || !real && !lsub {
                attrs.push("\\Noselect");
            }
            // LSUB's names are subscriptions: no children there.
            if !lsub {
                let prefix = format!("{}/", e.name);
                let parent = mailboxes.iter().any(|n| n.starts_with(&prefix));
                attrs.push(if parent {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if ext.return_subscribed && subscribed.contains(e.name.as_str()) {
                attrs.push("\\Subscribed");
            }
            attrs.extend(special);
            let mut line = format!("* {command} ({}) \"/\" ", attrs.join(" ")).into_bytes();
            self.write_name(&mut line, &e.name);
            if e.childinfo {
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b"\r\n");
            // LIST-STATUS: for mailboxes that can be selected; one that
            // went away meanwhile is just not told.
            if let Some(items) = ext.status.as_ref().filter(|_| real && !e.placeholder)
                && let Ok(status) = self.status_line(&e.name, items)
            {
                self.line(&status);
            }
        }
        self.tagged(tag, &format!("OK {command} completed"));
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    if name == INBOX {
        wildcard(pattern.to_ascii_uppercase().as_bytes(), b"INBOX")
    } else {
        wildcard(pattern.as_bytes(), name.as_bytes())
    }
}

/// What a LIST shows from `pool` (the mailboxes, or the subscriptions),
/// each name once, for every pattern. `recursive_subs`: the pool is the
/// subscriptions of a LIST (SUBSCRIBED), where a level above a subscribed
/// name is shown only for RECURSIVEMATCH, with CHILDINFO.
fn entries(ext: &ListExt, pool: &[String], recursive_subs: bool) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for pattern in &ext.patterns {
        let full = format!("{}{pattern}", ext.reference);
        if recursive_subs {
            for name in pool {
                let levels = name.match_indices('/').map(|(i, _)| &name[..i]);
                if matches(&full, name) {
                    add(&mut out, name, false, false);
                }
                for level in levels.filter(|l| ext.recursive && matches(&full, l)) {
                    add(&mut out, level, false, true);
                }
            }
        } else {
            for (name, placeholder) in listed(&full, pool) {
                add(&mut out, &name, placeholder, false);
            }
        }
    }
    out
}

fn add(out: &mut Vec<Entry>, name: &str, placeholder: bool, childinfo: bool) {
    match out.iter_mut().find(|e| e.name == name) {
        Some(e) => {
            e.childinfo |= childinfo;
            e.placeholder &= placeholder;
        }
        None => out.push(Entry {
            name: name.to_string(),
            placeholder,
            childinfo,
        }),
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
