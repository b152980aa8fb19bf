//! SEARCH: evaluates imap-codec's parsed search keys against one message.
//! A message's file is read (and parsed) only when a key needs its content.
use std::{cell::OnceCell, time::SystemTime};

use imap_codec::imap_types::{
    search::SearchKey,
    sequence::{SeqOrUid, Sequence, SequenceSet},
};

use super::mime;
use crate::store::{Message, keywords};

/// One message as SEARCH sees it.
pub struct Candidate<'a> {
    pub seq: u32,
    pub message: &'a Message,
    /// \Recent for the searching session.
    recent: bool,
    /// The mailbox's keyword names by letter.
    keywords: &'a [String],
    /// Read and parsed at most once, whatever the number of keys.
    parsed: OnceCell<mail_parser::Message<'static>>,
}

/// The highest sequence number and UID: what `*` means.
#[derive(Clone, Copy)]
pub struct Bounds {
    pub seq: u32,
    pub uid: u32,
}

impl<'a> Candidate<'a> {
    pub fn new(seq: u32, message: &'a Message, recent: bool, keywords: &'a [String]) -> Self {
        Self {
            seq,
            message,
            recent,
            keywords,
            parsed: OnceCell::new(),
        }
    }

    fn parsed(&self) -> &mail_parser::Message<'static> {
        self.parsed.get_or_init(|| {
            // A message expunged meanwhile matches nothing that needs content.
            let raw = std::fs::read(&self.message.path).unwrap_or_default();
            mime::parse(&raw).into_owned()
        })
    }

    fn flag(&self, letter: char) -> bool {
        self.message.flags.contains(letter)
    }

    fn keyword(&self, name: &str) -> bool {
        keywords::letter_of(self.keywords, name).is_some_and(|l| self.flag(l))
    }

    fn internal_date(&self) -> chrono::NaiveDate {
        let t: chrono::DateTime<chrono::Utc> = internal_time(self.message).into();
        t.date_naive()
    }

    fn sent_date(&self) -> Option<chrono::NaiveDate> {
        let d = self.parsed().date()?;
        chrono::NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
    }

    fn header_contains(&self, name: &str, needle: &[u8]) -> bool {
        contains(&mime::header_for_search(self.parsed(), name), needle)
    }
}

/// A message's INTERNALDATE: its file's mtime (delivery or APPEND date).
pub fn internal_time(message: &Message) -> SystemTime {
    std::fs::metadata(&message.path)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Case-insensitive substring, as RFC 3501 asks; an empty needle matches.
fn contains(haystack: &str, needle: &[u8]) -> bool {
    let needle = String::from_utf8_lossy(needle).to_lowercase();
    haystack.to_lowercase().contains(&needle)
}

/// Whether `n` is in `set`, `*` being `largest`.
pub fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let value = |v: &SeqOrUid| match v {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(v) => value(v) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

pub fn matches(key: &SearchKey, c: &Candidate, bounds: Bounds) -> bool {
    let m = c.message;
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, c, bounds)),
        SearchKey::Or(a, b) => matches(a, c, bounds) || matches(b, c, bounds),
        SearchKey::Not(k) => !matches(k, c, bounds),
        SearchKey::All => true,
        SearchKey::SequenceSet(set) => in_set(set, c.seq, bounds.seq),
        SearchKey::Uid(set) => in_set(set, m.uid, bounds.uid),
        // One MODSEQ per message: it stands for every flag's (RFC 7162
        // 3.1.5), whichever entry is named.
        SearchKey::ModSequence { modseq, .. } => m.modseq >= *modseq,
        SearchKey::Answered => c.flag('R'),
        SearchKey::Deleted => c.flag('T'),
        SearchKey::Draft => c.flag('D'),
        SearchKey::Flagged => c.flag('F'),
        SearchKey::Seen => c.flag('S'),
        SearchKey::Unanswered => !c.flag('R'),
        SearchKey::Undeleted => !c.flag('T'),
        SearchKey::Undraft => !c.flag('D'),
        SearchKey::Unflagged => !c.flag('F'),
        SearchKey::Unseen => !c.flag('S'),
        SearchKey::Recent => c.recent,
        SearchKey::New => c.recent && !c.flag('S'),
        SearchKey::Old => !c.recent,
        SearchKey::Keyword(k) => c.keyword(k.inner()),
        SearchKey::Unkeyword(k) => !c.keyword(k.inner()),
        SearchKey::Larger(n) => m.size > u64::from(*n),
        SearchKey::Smaller(n) => m.size < u64::from(*n),
        SearchKey::Before(d) => c.internal_date() < *d.as_ref(),
        SearchKey::On(d) => c.internal_date() == *d.as_ref(),
        SearchKey::Since(d) => c.internal_date() >= *d.as_ref(),
        SearchKey::SentBefore(d) => c.sent_date().is_some_and(|s| s < *d.as_ref()),
        SearchKey::SentOn(d) => c.sent_date().is_some_and(|s| s == *d.as_ref()),
        SearchKey::SentSince(d) => c.sent_date().is_some_and(|s| s >= *d.as_ref()),
        SearchKey::From(s) => c.header_contains("From", s.as_ref()),
        SearchKey::To(s) => c.header_contains("To", s.as_ref()),
        SearchKey::Cc(s) => c.header_contains("Cc", s.as_ref()),
        SearchKey::Bcc(s) => c.header_contains("Bcc", s.as_ref()),
        SearchKey::Subject(s) => c.header_contains("Subject", s.as_ref()),
        SearchKey::Header(name, s) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            let msg = c.parsed();
            let text = mime::header_for_search(msg, &name);
            let present = msg.parts.first().is_some_and(|r| {
                r.headers
                    .iter()
                    .any(|h| h.name().eq_ignore_ascii_case(&name))
            });
            present && contains(&text, s.as_ref())
        }
        SearchKey::Body(s) => contains(&mime::body_text(c.parsed()), s.as_ref()),
        SearchKey::Text(s) => {
            let msg = c.parsed();
            let headers = String::from_utf8_lossy(
                mime::section(
                    msg,
                    Some(&imap_codec::imap_types::fetch::Section::Header(None)),
                )
                .unwrap_or_default()
                .as_slice(),
            )
            .into_owned();
            contains(&headers, s.as_ref()) || contains(&mime::body_text(msg), s.as_ref())
        }
        // Extensions not announced cannot be asked for; match nothing.
        #[allow(unreachable_patterns)]
        _ => false,
    }
}
