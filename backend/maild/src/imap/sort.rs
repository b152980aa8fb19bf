//! SORT and THREAD=ORDEREDSUBJECT (RFC 5256) and SORT=DISPLAY (RFC 5957):
//! the base subject, the values each sort key compares, and the order.
//! Strings compare by i;ascii-casemap (ASCII letters upper-cased, the rest
//! as bytes); ties keep mailbox order.
use std::{cmp::Ordering, time::SystemTime};

use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use mail_parser::{Address, Message};

/// What SORT and THREAD look at in one message.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// The sequence number (or UID) the answer names.
    pub id: u32,
    /// Mailbox order, for ties.
    pub position: usize,
    /// INTERNALDATE in microseconds: appends within one second differ.
    pub arrival: i64,
    /// The Date header in UTC seconds; the arrival time when it has none.
    pub date: i64,
    pub size: u64,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
}

fn micros(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// The first address of a list, group members included.
fn first<'a>(list: Option<&'a Address<'a>>) -> Option<&'a mail_parser::Addr<'a>> {
    match list? {
        Address::List(l) => l.first(),
        Address::Group(g) => g.iter().flat_map(|g| g.addresses.iter()).next(),
    }
}

/// The addr-mailbox (local part) of the first address: what CC, FROM and
/// TO compare.
fn mailbox(list: Option<&Address>) -> String {
    let address = first(list)
        .and_then(|a| a.address.as_deref())
        .unwrap_or_default();
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    casemap(local)
}

/// RFC 5957: the display name of the first address, or its address when
/// it has none.
fn display(list: Option<&Address>) -> String {
    let Some(a) = first(list) else {
        return String::new();
    };
    let shown = a
        .name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .or(a.address.as_deref())
        .unwrap_or_default();
    casemap(shown.trim())
}

fn casemap(s: &str) -> String {
    s.to_ascii_uppercase()
}

impl Keys {
    pub fn of(id: u32, position: usize, arrival: SystemTime, size: u64, msg: &Message) -> Keys {
        let arrival = micros(arrival);
        Keys {
            id,
            position,
            arrival,
            date: msg.date().map_or(arrival / 1_000_000, |d| d.to_timestamp()),
            size,
            subject: casemap(&base_subject(msg.subject().unwrap_or_default())),
            from: mailbox(msg.from()),
            to: mailbox(msg.to()),
            cc: mailbox(msg.cc()),
            display_from: display(msg.from()),
            display_to: display(msg.to()),
        }
    }

    fn compare(&self, other: &Keys, key: &SortKey) -> Ordering {
        match key {
            SortKey::Arrival => self.arrival.cmp(&other.arrival),
            SortKey::Cc => self.cc.cmp(&other.cc),
            SortKey::Date => self.date.cmp(&other.date),
            SortKey::From => self.from.cmp(&other.from),
            SortKey::Size => self.size.cmp(&other.size),
            SortKey::Subject => self.subject.cmp(&other.subject),
            SortKey::To => self.to.cmp(&other.to),
            SortKey::DisplayFrom => self.display_from.cmp(&other.display_from),
            SortKey::DisplayTo => self.display_to.cmp(&other.display_to),
        }
    }
}

/// Sorts by the criteria in turn, then by mailbox order.
pub fn sort(messages: &mut [Keys], criteria: &[SortCriterion]) {
    messages.sort_by(|a, b| {
        criteria
            .iter()
            .map(|c| {
                let o = a.compare(b, &c.key);
                if c.reverse { o.reverse() } else { o }
            })
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.position.cmp(&b.position))
    });
}

/// THREAD=ORDEREDSUBJECT: messages grouped by base subject, each group in
/// sent-date order with the first as the parent of the rest, groups in the
/// order of their first message's date. The answer's thread list.
pub fn ordered_subject(mut messages: Vec<Keys>) -> String {
    let by_date = |a: &Keys, b: &Keys| a.date.cmp(&b.date).then(a.position.cmp(&b.position));
    messages.sort_by(|a, b| a.subject.cmp(&b.subject).then_with(|| by_date(a, b)));
    let mut threads: Vec<Vec<Keys>> = Vec::new();
    for m in messages {
        match threads.last_mut() {
            Some(t) if t[0].subject == m.subject => t.push(m),
            _ => threads.push(vec![m]),
        }
    }
    threads.sort_by(|a, b| by_date(&a[0], &b[0]));
    let mut out = String::new();
    for t in threads {
        out.push('(');
        out.push_str(&t[0].id.to_string());
        match &t[1..] {
            [] => {}
            [only] => out.push_str(&format!(" {}", only.id)),
            children => {
                out.push(' ');
                for c in children {
                    out.push_str(&format!("({})", c.id));
                }
            }
        }
        out.push(')');
    }
    out
}

/// RFC 5256 2.1: the subject without reply and forward markers, blobs,
/// `(fwd)` trailers and `[fwd: ...]` wrappers, whitespace collapsed.
/// (mail-parser has already decoded encoded words.)
pub fn base_subject(subject: &str) -> String {
    // Step 1: every run of white space becomes one space.
    let mut s = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        // Step 2: trailers, "(fwd)" and white space, repeatedly.
        loop {
            let lower = s.to_ascii_lowercase();
            if lower.ends_with("(fwd)") {
                s.truncate(s.len() - 5);
            } else if s.ends_with(' ') {
                s.pop();
            } else {
                break;
            }
        }
        // Steps 3 to 5: leaders and blobs, until neither goes.
        loop {
            let before = s.len();
            s = strip_leader(&s).to_string();
            if let Some(rest) = strip_blob(&s)
                && !rest.is_empty()
            {
                s = rest.to_string();
            }
            if s.len() == before {
                break;
            }
        }
        // Step 6: "[fwd: subject]".
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
            continue;
        }
        return s;
    }
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: the rest after one, if `s`
/// starts with one.
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find([']', '['])?;
    if !inner[end..].starts_with(']') {
        return None;
    }
    Some(inner[end + 1..].trim_start())
}

/// Strips one `subj-leader`: white space, or blobs then `re`, `fw` or
/// `fwd`, white space, an optional blob, and a colon.
fn strip_leader(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix(' ') {
        return rest;
    }
    let mut rest = s;
    while let Some(r) = strip_blob(rest) {
        rest = r;
    }
    let lower = rest.to_ascii_lowercase();
    let marker = ["re", "fwd", "fw"]
        .into_iter()
        .find(|m| lower.starts_with(m));
    let Some(marker) = marker else {
        return s;
    };
    let mut after = rest[marker.len()..].trim_start();
    if let Some(r) = strip_blob(after) {
        after = r;
    }
    match after.strip_prefix(':') {
        Some(r) => r,
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects_as_rfc_5256_extracts_them() {
        for (subject, base) in [
            ("Re: hello", "hello"),
            ("RE:  Re: [list] Fwd: hello  (fwd)", "hello"),
            ("[fwd: Re: hello]", "hello"),
            ("Re[2]: hello", "hello"),
            ("[list] hello", "hello"),
            ("[only a blob]", "[only a blob]"),
            ("Fw: Fwd:re:x", "x"),
            ("reply to all", "reply to all"),
            ("  spaced \t out  ", "spaced out"),
            ("", ""),
        ] {
            assert_eq!(base_subject(subject), base, "{subject:?}");
        }
    }

    fn keys(id: u32, subject: &str, date: i64) -> Keys {
        Keys {
            id,
            position: id as usize,
            date,
            subject: casemap(&base_subject(subject)),
            ..Keys::default()
        }
    }

    #[test]
    fn ordered_subject_threads() {
        let threads = ordered_subject(vec![
            keys(1, "b", 10),
            keys(2, "Re: a", 30),
            keys(3, "a", 20),
            keys(4, "Re: B", 40),
            keys(5, "c", 5),
            keys(6, "Fwd: a", 50),
        ]);
        assert_eq!(threads, "(5)(1 4)(3 (2)(6))");
    }

    #[test]
    fn sort_by_criteria_then_mailbox_order() {
        let mut m = vec![keys(1, "b", 10), keys(2, "a", 10), keys(3, "a", 5)];
        let subject = SortCriterion {
            reverse: false,
            key: SortKey::Subject,
        };
        let newest = SortCriterion {
            reverse: true,
            key: SortKey::Date,
        };
        sort(&mut m, std::slice::from_ref(&subject));
        assert_eq!(m.iter().map(|k| k.id).collect::<Vec<_>>(), [2, 3, 1]);
        sort(&mut m, &[subject, newest]);
        assert_eq!(m.iter().map(|k| k.id).collect::<Vec<_>>(), [2, 3, 1]);
        let oldest = SortCriterion {
            reverse: false,
            key: SortKey::Date,
        };
        sort(&mut m, &[oldest]);
        assert_eq!(m.iter().map(|k| k.id).collect::<Vec<_>>(), [3, 1, 2]);
    }
}
