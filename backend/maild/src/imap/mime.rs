//! A message's structure as IMAP shows it: ENVELOPE, BODYSTRUCTURE and
//! `BODY[section]` bytes. mail-parser finds the parts and their offsets;
//! every value sent is taken raw from the message, so what a client sees
//! matches the bytes it can fetch.
use std::num::NonZeroU32;

use base64::Engine;
use imap_codec::imap_types::{core::AString, fetch::Section};
use mail_parser::{
    Addr, Address, Header, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

use super::wire::{nstring, string};

/// Parses a stored message; bytes that are no message at all (empty ones
/// among them) parse as a message with no headers and that body. Every
/// message has its root part: mail-parser's accessors index `parts[0]`.
pub fn parse(raw: &[u8]) -> Message<'_> {
    // mail-parser 0.11 panics on some malformed multiparts (found by
    // fuzzing, `fuzz/seeds/mime_structure/parser-panic`): such a message,
    // which anyone can send, is shown as one part of raw bytes instead of
    // ending every session that fetches it.
    let parsed =
        std::panic::catch_unwind(|| MessageParser::default().parse(raw)).unwrap_or_else(|_| {
            tracing::warn!(
                bytes = raw.len(),
                "mail-parser panicked on a message: shown unparsed"
            );
            None
        });
    match parsed {
        Some(msg) if !msg.parts.is_empty() => msg,
        _ => Message {
            parts: vec![MessagePart {
                body: PartType::Binary(raw.into()),
                offset_end: raw.len() as u32,
                ..Default::default()
            }],
            raw_message: raw.into(),
            ..Default::default()
        },
    }
}

fn root<'m>(msg: &'m Message<'m>) -> Option<&'m MessagePart<'m>> {
    msg.parts.first()
}

/// Bytes `from..to` of a message. mail-parser gives a nested message's
/// offsets in its parent's terms while its raw bytes start at its own
/// header: the root part's header offset is its base.
pub(super) fn slice<'m>(msg: &'m Message, from: u32, to: u32) -> Option<&'m [u8]> {
    let base = root(msg).map_or(0, |r| r.offset_header);
    let from = from.checked_sub(base)? as usize;
    let to = to.checked_sub(base)? as usize;
    msg.raw_message().get(from..to)
}

/// A header's raw value, unfolded and trimmed.
fn raw_value(msg: &Message, headers: &[Header], name: &str) -> Option<String> {
    let h = headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))?;
    let bytes = slice(msg, h.offset_start, h.offset_end)?;
    let text = String::from_utf8_lossy(bytes);
    Some(
        text.replace("\r\n", "")
            .replace('\n', "")
            .trim()
            .to_string(),
    )
}

fn header_text(msg: &Message, name: &str) -> Option<String> {
    raw_value(msg, &root(msg)?.headers, name)
}

/// A display name as the envelope wants it: ASCII as is, anything else as
/// an RFC 2047 encoded word.
fn display_name(name: &str) -> Vec<u8> {
    if name.is_ascii() {
        name.as_bytes().to_vec()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
        format!("=?utf-8?B?{b64}?=").into_bytes()
    }
}

fn address(out: &mut Vec<u8>, a: &Addr) {
    let full = a.address.as_deref().unwrap_or_default();
    let (mailbox, host) = full.rsplit_once('@').unwrap_or((full, ""));
    out.push(b'(');
    nstring(out, a.name.as_deref().map(display_name).as_deref());
    out.extend_from_slice(b" NIL ");
    nstring(out, Some(mailbox.as_bytes()));
    out.push(b' ');
    nstring(out, (!host.is_empty()).then_some(host.as_bytes()));
    out.push(b')');
}

/// Only entries with an address are addresses: a group member that is a
/// comment (`group2: (foo) ;`) is no mailbox to show.
fn real(a: &&Addr) -> bool {
    a.address.as_deref().is_some_and(|a| !a.is_empty())
}

fn address_list(out: &mut Vec<u8>, list: Option<&Address>) {
    let empty = match list {
        None => true,
        Some(Address::List(l)) => !l.iter().any(|a| real(&a)),
        Some(Address::Group(g)) => g
            .iter()
            .all(|g| g.name.is_none() && !g.addresses.iter().any(|a| real(&a))),
    };
    if empty {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    match list {
        Some(Address::List(list)) => list.iter().filter(real).for_each(|a| address(out, a)),
        Some(Address::Group(groups)) => {
            for g in groups {
                let members = g.addresses.iter().filter(real);
                match &g.name {
                    // RFC 3501 group syntax: a start marker, the members,
                    // an end marker.
                    Some(name) => {
                        out.extend_from_slice(b"(NIL NIL ");
                        string(out, name.as_bytes());
                        out.extend_from_slice(b" NIL)");
                        members.for_each(|a| address(out, a));
                        out.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                    None => members.for_each(|a| address(out, a)),
                }
            }
        }
        None => {}
    }
    out.push(b')');
}

/// ENVELOPE (RFC 3501 7.4.2).
pub fn envelope(out: &mut Vec<u8>, msg: &Message) {
    out.push(b'(');
    for name in ["Date", "Subject"] {
        nstring(out, header_text(msg, name).as_deref().map(str::as_bytes));
        out.push(b' ');
    }
    let from = msg.from();
    for list in [
        from,
        msg.sender().or(from),
        msg.reply_to().or(from),
        msg.to(),
        msg.cc(),
        msg.bcc(),
    ] {
        address_list(out, list);
        out.push(b' ');
    }
    nstring(
        out,
        header_text(msg, "In-Reply-To")
            .as_deref()
            .map(str::as_bytes),
    );
    out.push(b' ');
    nstring(
        out,
        header_text(msg, "Message-ID").as_deref().map(str::as_bytes),
    );
    out.push(b')');
}

fn upper(out: &mut Vec<u8>, s: &str) {
    string(out, s.to_ascii_uppercase().as_bytes());
}

fn params(out: &mut Vec<u8>, part: &MessagePart, text_default: bool) {
    let attrs = part
        .content_type()
        .and_then(|c| c.attributes())
        .unwrap_or(&[]);
    let mut pairs: Vec<(&str, &str)> = attrs
        .iter()
        .map(|a| (a.name.as_ref(), a.value.as_ref()))
        .collect();
    if text_default && !pairs.iter().any(|(n, _)| n.eq_ignore_ascii_case("charset")) {
        pairs.push(("charset", "us-ascii"));
    }
    if pairs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (n, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        upper(out, n);
        out.push(b' ');
        string(out, v.as_bytes());
    }
    out.push(b')');
}

fn disposition(out: &mut Vec<u8>, part: &MessagePart) {
    match part.content_disposition() {
        Some(d) => {
            out.push(b'(');
            upper(out, d.ctype());
            out.push(b' ');
            match d.attributes() {
                Some(attrs) if !attrs.is_empty() => {
                    out.push(b'(');
                    for (i, a) in attrs.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        upper(out, &a.name);
                        out.push(b' ');
                        string(out, a.value.as_bytes());
                    }
                    out.push(b')');
                }
                _ => out.extend_from_slice(b"NIL"),
            }
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Text lines, the last one counted even without its line end.
fn line_count(body: &[u8]) -> usize {
    let ends = body.iter().filter(|&&b| b == b'\n').count();
    ends + usize::from(body.last().is_some_and(|&b| b != b'\n'))
}

/// How much of a message's structure BODY and BODYSTRUCTURE show: anyone
/// can send a message, and the structure is written by recursion.
/// Multiparts nested deeper than `depth` are one opaque part (with their
/// size), as Dovecot does past its 100 levels; parts past the first
/// `parts` are written as empty ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub depth: usize,
    pub parts: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            depth: 100,
            parts: 10_000,
        }
    }
}

/// One BODY/BODYSTRUCTURE being written.
struct Walk {
    extended: bool,
    depth: usize,
    parts_left: usize,
}

/// BODYSTRUCTURE (`extended`) or BODY of a whole message.
pub fn body_structure(out: &mut Vec<u8>, msg: &Message, extended: bool, shape: Shape) {
    let mut walk = Walk {
        extended,
        depth: shape.depth,
        parts_left: shape.parts,
    };
    nested_structure(out, msg, 0, &mut walk);
}

fn nested_structure(out: &mut Vec<u8>, msg: &Message, depth: usize, walk: &mut Walk) {
    match root(msg) {
        Some(_) => {
            // Each part is written once: a malformed message can make
            // mail-parser list a part under several parents (found by
            // fuzzing: 279 bytes asked for gigabytes of BODYSTRUCTURE).
            let mut seen = vec![false; msg.parts.len()];
            part_structure(out, msg, 0, depth, &mut seen, walk)
        }
        None => {
            let raw = msg.raw_message();
            let lines = line_count(raw);
            out.extend_from_slice(
                format!(
                    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" {} {lines})",
                    raw.len()
                )
                .as_bytes(),
            );
        }
    }
}

/// A multipart's stand-in for a part it cannot show (none, seen, or past
/// the part count).
const EMPTY_PART: &[u8] = b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)";

fn part_structure(
    out: &mut Vec<u8>,
    msg: &Message,
    id: u32,
    depth: usize,
    seen: &mut [bool],
    walk: &mut Walk,
) {
    let Some(part) = msg.parts.get(id as usize) else {
        return;
    };
    if std::mem::replace(&mut seen[id as usize], true) || walk.parts_left == 0 {
        out.extend_from_slice(EMPTY_PART);
        return;
    }
    walk.parts_left -= 1;
    let extended = walk.extended;
    let ctype = part.content_type();
    let (kind, subtype) = match ctype {
        Some(c) => (c.ctype().to_string(), c.subtype().unwrap_or("").to_string()),
        None => ("text".into(), "plain".into()),
    };
    out.push(b'(');
    if let Some(children) = part.sub_parts().filter(|_| depth < walk.depth) {
        for &child in children {
            part_structure(out, msg, child, depth + 1, seen, walk);
        }
        if children.is_empty() {
            // A multipart with no parts still needs a body inside.
            out.extend_from_slice(EMPTY_PART);
        }
        out.push(b' ');
        upper(
            out,
            if subtype.is_empty() {
                "mixed"
            } else {
                &subtype
            },
        );
        if extended {
            out.push(b' ');
            params(out, part, false);
            out.push(b' ');
            disposition(out, part);
            out.extend_from_slice(b" NIL NIL");
        }
        out.push(b')');
        return;
    }
    let is_text = kind.eq_ignore_ascii_case("text");
    upper(out, &kind);
    out.push(b' ');
    upper(
        out,
        if subtype.is_empty() {
            "plain"
        } else {
            &subtype
        },
    );
    out.push(b' ');
    params(out, part, is_text);
    out.push(b' ');
    for field in ["Content-ID", "Content-Description"] {
        let value = raw_value(msg, &part.headers, field);
        nstring(out, value.as_deref().map(str::as_bytes));
        out.push(b' ');
    }
    upper(out, part.content_transfer_encoding().unwrap_or("7bit"));
    let body = slice(msg, part.offset_body, part.offset_end).unwrap_or_default();
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    let lines = line_count(body);
    if let Some(nested) = part.message().filter(|_| depth < walk.depth) {
        out.push(b' ');
        envelope(out, nested);
        out.push(b' ');
        nested_structure(out, nested, depth + 1, walk);
        out.extend_from_slice(format!(" {lines}").as_bytes());
    } else if is_text {
        out.extend_from_slice(format!(" {lines}").as_bytes());
    }
    if extended {
        out.extend_from_slice(b" NIL ");
        disposition(out, part);
        out.extend_from_slice(b" NIL NIL");
    }
    out.push(b')');
}

/// The part a section path names (RFC 3501 6.4.5): numbers pick parts of
/// a multipart; a number after a message/rfc822 part goes into it.
pub(super) fn resolve<'m>(
    msg: &'m Message<'m>,
    path: &[NonZeroU32],
) -> Option<(&'m Message<'m>, &'m MessagePart<'m>)> {
    let mut msg = msg;
    let mut part = root(msg)?;
    for (i, n) in path.iter().enumerate() {
        if i > 0
            && let Some(nested) = part.message()
        {
            msg = nested;
            part = root(msg)?;
        }
        match part.sub_parts() {
            Some(children) => {
                let id = *children.get(n.get() as usize - 1)?;
                part = msg.parts.get(id as usize)?;
            }
            None if n.get() == 1 => {}
            None => return None,
        }
    }
    Some((msg, part))
}

fn header_lines(msg: &Message, names: &[AString], keep: bool) -> Vec<u8> {
    let wanted = |h: &Header| {
        names
            .iter()
            .any(|n| h.name().as_bytes().eq_ignore_ascii_case(n.as_ref()))
    };
    let mut out = Vec::new();
    for h in root(msg).map(|r| r.headers.as_slice()).unwrap_or_default() {
        if wanted(h) == keep {
            out.extend_from_slice(slice(msg, h.offset_field, h.offset_end).unwrap_or_default());
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn header_of(msg: &Message) -> Vec<u8> {
    match root(msg) {
        Some(r) => slice(msg, r.offset_header, r.offset_body)
            .unwrap_or_default()
            .to_vec(),
        None => Vec::new(),
    }
}

/// Everything after the header, to the end of the message's own bytes:
/// a multipart root part ends at its closing delimiter, but the epilogue
/// after it is text of the message too.
fn text_of(msg: &Message) -> Vec<u8> {
    let raw = msg.raw_message();
    let from = root(msg).map_or(0, |r| r.offset_body.saturating_sub(r.offset_header));
    raw.get(from as usize..).unwrap_or_default().to_vec()
}

/// The text of the message/rfc822 part `path` names: its body after the
/// encapsulated header. Taken from the part in its parent, since
/// mail-parser cuts a nested message's own bytes at its root part's end,
/// before a multipart's epilogue.
fn nested_text(msg: &Message, path: &[NonZeroU32]) -> Option<Vec<u8>> {
    let (m, part) = resolve(msg, path)?;
    let inner = root(part.message()?)?;
    let whole = slice(m, part.offset_body, part.offset_end)?;
    let header = inner.offset_body.checked_sub(inner.offset_header)? as usize;
    Some(whole.get(header..)?.to_vec())
}

/// The bytes of `BODY[section]`; None when the section names no part
/// (the answer is then NIL... or, for a part that is not a message, empty).
pub fn section(msg: &Message, section: Option<&Section>) -> Option<Vec<u8>> {
    let nested = |path: &[NonZeroU32]| -> Option<&Message> {
        let (_, part) = resolve(msg, path)?;
        part.message()
    };
    Some(match section {
        None => msg.raw_message().to_vec(),
        Some(Section::Header(None)) => header_of(msg),
        Some(Section::Text(None)) => text_of(msg),
        Some(Section::HeaderFields(None, names)) => header_lines(msg, names.as_ref(), true),
        Some(Section::HeaderFieldsNot(None, names)) => header_lines(msg, names.as_ref(), false),
        Some(Section::Header(Some(p))) => header_of(nested(p.0.as_ref())?),
        Some(Section::Text(Some(p))) => nested_text(msg, p.0.as_ref())?,
        Some(Section::HeaderFields(Some(p), names)) => {
            header_lines(nested(p.0.as_ref())?, names.as_ref(), true)
        }
        Some(Section::HeaderFieldsNot(Some(p), names)) => {
            header_lines(nested(p.0.as_ref())?, names.as_ref(), false)
        }
        Some(Section::Part(p)) => {
            let (m, part) = resolve(msg, p.0.as_ref())?;
            slice(m, part.offset_body, part.offset_end)?.to_vec()
        }
        Some(Section::Mime(p)) => {
            let (m, part) = resolve(msg, p.0.as_ref())?;
            slice(m, part.offset_header, part.offset_body)?.to_vec()
        }
    })
}

/// The text a SEARCH key looks at in one header: decoded when mail-parser
/// knows how, raw otherwise.
pub fn header_for_search(msg: &Message, name: &str) -> String {
    let Some(r) = root(msg) else {
        return String::new();
    };
    let mut text = String::new();
    for h in r
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
    {
        if let Some(raw) = slice(msg, h.offset_start, h.offset_end) {
            text.push_str(&String::from_utf8_lossy(raw));
        }
        match h.value() {
            mail_parser::HeaderValue::Text(t) => text.push_str(t),
            mail_parser::HeaderValue::Address(a) => {
                for addr in a.iter() {
                    text.push_str(addr.name.as_deref().unwrap_or_default());
                    text.push(' ');
                    text.push_str(addr.address.as_deref().unwrap_or_default());
                }
            }
            _ => {}
        }
        text.push('\n');
    }
    text
}

/// The decoded text of every text part, for SEARCH BODY.
pub fn body_text(msg: &Message) -> String {
    let mut text = String::new();
    for part in &msg.parts {
        if let Some(t) = match &part.body {
            mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) => Some(t),
            _ => None,
        } {
            text.push_str(t);
            text.push('\n');
        }
    }
    if msg.parts.is_empty() {
        text.push_str(&String::from_utf8_lossy(msg.raw_message()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::fetch::Part;

    const MIXED: &[u8] = b"From: Ann Example <ann@x.test>\r\n\
To: bob@y.test, \"Carl, Jr\" <carl@y.test>\r\n\
Subject: =?utf-8?q?caf=C3=A9?=\r\n\
Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <m1@x.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
hello\r\n\
world\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
From: dan@z.test\r\n\
\r\n\
inner body\r\n\
--b1--\r\n";

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    fn part(n: &[u32]) -> Part {
        Part(
            n.iter()
                .map(|&n| NonZeroU32::new(n).unwrap())
                .collect::<Vec<_>>()
                .try_into()
                .unwrap(),
        )
    }

    #[test]
    fn envelope_keeps_raw_values_and_splits_addresses() {
        let msg = parse(MIXED);
        let mut out = Vec::new();
        envelope(&mut out, &msg);
        assert_eq!(
            s(out),
            "(\"Sun, 22 Nov 2026 10:00:00 +0000\" \"=?utf-8?q?caf=C3=A9?=\" \
             ((\"Ann Example\" NIL \"ann\" \"x.test\")) ((\"Ann Example\" NIL \"ann\" \"x.test\")) \
             ((\"Ann Example\" NIL \"ann\" \"x.test\")) \
             ((NIL NIL \"bob\" \"y.test\")(\"Carl, Jr\" NIL \"carl\" \"y.test\")) NIL NIL NIL \"<m1@x.test>\")"
        );
    }

    #[test]
    fn sections_are_the_raw_bytes_bodystructure_counts() {
        let msg = parse(MIXED);
        assert_eq!(
            s(section(&msg, Some(&Section::Part(part(&[1])))).unwrap()),
            "hello\r\nworld"
        );
        assert_eq!(
            s(section(&msg, Some(&Section::Header(Some(part(&[2]))))).unwrap()),
            "Subject: inner\r\nFrom: dan@z.test\r\n\r\n"
        );
        assert_eq!(
            s(section(&msg, Some(&Section::Text(Some(part(&[2]))))).unwrap()),
            "inner body"
        );
        assert_eq!(
            s(section(&msg, Some(&Section::Mime(part(&[1])))).unwrap()),
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert!(section(&msg, Some(&Section::Part(part(&[3])))).is_none());
        let names = vec![AString::try_from("subject").unwrap()]
            .try_into()
            .unwrap();
        assert_eq!(
            s(section(&msg, Some(&Section::HeaderFields(None, names))).unwrap()),
            "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n"
        );
        let mut out = Vec::new();
        body_structure(&mut out, &msg, false, Shape::default());
        let bs = s(out);
        assert!(
            bs.starts_with("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 12 2)"),
            "{bs}"
        );
        assert!(
            bs.contains("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" "),
            "{bs}"
        );
        assert!(bs.ends_with(" \"MIXED\")"), "{bs}");
    }

    #[test]
    fn garbage_is_still_a_message() {
        let msg = parse(b"no headers at all");
        let mut out = Vec::new();
        body_structure(&mut out, &msg, true, Shape::default());
        assert!(s(out).starts_with("(\"TEXT\" \"PLAIN\""));
        let mut out = Vec::new();
        envelope(&mut out, &msg);
        assert!(s(out).starts_with("(NIL NIL"));
    }
}
