//! SORT (RFC 5256) and SORT=DISPLAY (RFC 5957): the base subject, the
//! values each sort key and THREAD compare, and the order.
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
    /// THREAD=REFERENCES: the Message-ID, the ids of the References (or
    /// else the first of In-Reply-To), and whether the base subject
    /// extraction took a reply or forward marker off the subject.
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub reply: bool,
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
        let (subject, reply) = base_subject_of(msg.subject().unwrap_or_default());
        let ids = |v: &mail_parser::HeaderValue| -> Vec<String> {
            v.as_text_list()
                .unwrap_or_default()
                .iter()
                .map(|id| id.to_string())
                .collect()
        };
        let mut references = ids(msg.references());
        if references.is_empty() {
            references = ids(msg.in_reply_to()).into_iter().take(1).collect();
        }
        Keys {
            id,
            position,
            arrival,
            date: msg.date().map_or(arrival / 1_000_000, |d| d.to_timestamp()),
            size,
            subject: casemap(&subject),
            from: mailbox(msg.from()),
            to: mailbox(msg.to()),
            cc: mailbox(msg.cc()),
            display_from: display(msg.from()),
            display_to: display(msg.to()),
            message_id: msg.message_id().map(str::to_string),
            references,
            reply,
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

/// RFC 5256 2.1: the subject without reply and forward markers, blobs,
/// `(fwd)` trailers and `[fwd: ...]` wrappers, whitespace collapsed.
/// (mail-parser has already decoded encoded words.)
pub fn base_subject(subject: &str) -> String {
    base_subject_of(subject).0
}

/// The base subject, and whether a reply or forward marker (a `re:`,
/// `fw:` or `fwd:` leader, a `(fwd)` trailer, a `[fwd: ]` wrapper) was
/// taken off: such a message is a reply or forward (section 2.1).
pub fn base_subject_of(subject: &str) -> (String, bool) {
    // Step 1: every run of white space becomes one space.
    let mut s = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // Step 2: trailers, "(fwd)" and white space, repeatedly.
        loop {
            let lower = s.to_ascii_lowercase();
            if lower.ends_with("(fwd)") {
                s.truncate(s.len() - 5);
                reply = true;
            } else if s.ends_with(' ') {
                s.pop();
            } else {
                break;
            }
        }
        // Steps 3 to 5: leaders and blobs, until neither goes.
        loop {
            let before = s.len();
            let (rest, marker) = strip_leader(&s);
            reply |= marker;
            s = rest.to_string();
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
            reply = true;
            continue;
        }
        return (s, reply);
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
/// `fwd`, white space, an optional blob, and a colon (then true: a
/// reply or forward marker).
fn strip_leader(s: &str) -> (&str, bool) {
    if let Some(rest) = s.strip_prefix(' ') {
        return (rest, false);
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
        return (s, false);
    };
    let mut after = rest[marker.len()..].trim_start();
    if let Some(r) = strip_blob(after) {
        after = r;
    }
    match after.strip_prefix(':') {
        Some(r) => (r, true),
        None => (s, false),
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
