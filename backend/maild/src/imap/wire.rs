//! Writing IMAP response data: strings as atoms-safe quoted strings or
//! literals, NIL, flag lists and dates, so no value from a message can
//! break a response's syntax.
use std::time::SystemTime;

use imap_codec::imap_types::flag::Flag;

use crate::store::keywords;

/// A string: quoted when it is short printable ASCII, else a literal.
pub fn string(out: &mut Vec<u8>, value: &[u8]) {
    let quotable = value.len() <= 1024 && value.iter().all(|&b| (0x20..0x7f).contains(&b));
    if quotable {
        out.push(b'"');
        for &b in value {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, value);
    }
}

/// A UTF-8 string (RFC 6855, once UTF8=ACCEPT is on): quoted when short
/// and free of controls, else a literal.
pub fn utf8_string(out: &mut Vec<u8>, value: &str) {
    if value.len() > 1024 || value.chars().any(char::is_control) {
        return literal(out, value.as_bytes());
    }
    out.push(b'"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push(b'\\');
        }
        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
    out.push(b'"');
}

/// Message content: always a literal, as clients (curl) expect for it.
pub fn literal(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
}

/// Decoded content (BINARY): a literal8 (`~{n}`, RFC 3516) when it holds
/// a NUL, which a plain literal may not carry; a literal otherwise.
pub fn binary_literal(out: &mut Vec<u8>, value: &[u8]) {
    if value.contains(&0) {
        out.push(b'~');
    }
    literal(out, value);
}

/// NIL or message content.
pub fn nliteral(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => literal(out, v),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// NIL or a string.
pub fn nstring(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// A message's FLAGS: its system flags (maildir capitals), its keywords
/// (lowercase letters, named by the mailbox's `keywords` table) and
/// \Recent when it is recent for this session.
pub fn flag_list(letters: &str, keywords: &[String], recent: bool) -> String {
    let mut names: Vec<&str> = letters
        .chars()
        .filter_map(|c| match c {
            'D' => Some("\\Draft"),
            'F' => Some("\\Flagged"),
            'R' => Some("\\Answered"),
            'S' => Some("\\Seen"),
            'T' => Some("\\Deleted"),
            _ => None,
        })
        .collect();
    if recent {
        names.push("\\Recent");
    }
    names.extend(keywords::names(letters, keywords));
    format!("({})", names.join(" "))
}

/// The keyword a flag names, if it is one (\Recent and other backslash
/// flags are not: clients cannot set them).
pub fn keyword<'f>(flag: &'f Flag) -> Option<&'f str> {
    match flag {
        Flag::Keyword(atom) => Some(atom.inner()),
        _ => None,
    }
}

/// The maildir letter of a system flag; None for keywords (see `keyword`).
pub fn letter(flag: &Flag) -> Option<char> {
    match flag {
        Flag::Draft => Some('D'),
        Flag::Flagged => Some('F'),
        Flag::Answered => Some('R'),
        Flag::Seen => Some('S'),
        Flag::Deleted => Some('T'),
        _ => None,
    }
}

const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// The FLAGS a mailbox knows: the system flags and its keywords.
pub fn mailbox_flags(keywords: &[String]) -> String {
    let mut all = vec![SYSTEM_FLAGS];
    all.extend(keywords.iter().map(String::as_str));
    format!("({})", all.join(" "))
}

/// PERMANENTFLAGS: the mailbox's flags, and `\*` (new keywords) while it
/// has letters left for them.
pub fn permanent_flags(keywords: &[String]) -> String {
    let mut all = vec![SYSTEM_FLAGS];
    all.extend(keywords.iter().map(String::as_str));
    if keywords.len() < crate::store::keywords::MAX {
        all.push("\\*");
    }
    format!("({})", all.join(" "))
}

/// An INTERNALDATE: `"22-Nov-2026 18:43:44 +0000"`.
pub fn internal_date(t: SystemTime) -> String {
    let t: chrono::DateTime<chrono::Utc> = t.into();
    t.format("\"%d-%b-%Y %H:%M:%S +0000\"").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &[u8]) -> String {
        let mut out = Vec::new();
        string(&mut out, v);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn values_cannot_break_the_syntax() {
        assert_eq!(enc(b"Hello"), "\"Hello\"");
        assert_eq!(enc(b"say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"");
        assert_eq!(enc(b"two\r\nlines"), "{10}\r\ntwo\r\nlines");
        assert_eq!(enc("é".as_bytes()), "{2}\r\né");
        let mut out = Vec::new();
        nstring(&mut out, None);
        assert_eq!(out, b"NIL");
    }

    #[test]
    fn flags_and_dates() {
        assert_eq!(
            flag_list("FRS", &[], false),
            "(\\Flagged \\Answered \\Seen)"
        );
        assert_eq!(flag_list("", &[], false), "()");
        let table = ["$Label1".to_string(), "Work".to_string()];
        assert_eq!(flag_list("Sb", &table, true), "(\\Seen \\Recent Work)");
        assert!(permanent_flags(&table).ends_with(" $Label1 Work \\*)"));
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365);
        assert_eq!(internal_date(t), "\"01-Jan-1971 00:00:00 +0000\"");
    }
}
