//! CATENATE (RFC 4469): an APPEND whose message is made of parts, each a
//! literal (`TEXT`) or an IMAP URL (RFC 5092) of a message, or a part of
//! one, in the account's own mailboxes (`URL`). imap-codec does not parse
//! it: `split` takes the parts off and leaves a plain APPEND of an empty
//! literal in their place; the session builds the message from them
//! (`url`) and stores it as any other.
use super::lex::{literal, quoted, word_at};
use crate::store::percent_decode as unescape;

#[derive(Debug, PartialEq, Eq)]
pub enum Part {
    Text(Vec<u8>),
    Url(String),
}

/// The parts of a CATENATE list starting at `at` (its `(`) and where the
/// list ends.
pub fn parts(text: &[u8], mut at: usize) -> Option<(usize, Vec<Part>)> {
    if text.get(at) != Some(&b'(') {
        return None;
    }
    at += 1;
    let mut parts = Vec::new();
    loop {
        if word_at(text, at, b"TEXT ") {
            let (end, data) = literal(text, at + 5)?;
            parts.push(Part::Text(data.to_vec()));
            at = end;
        } else if word_at(text, at, b"URL ") {
            at += 4;
            let (end, url) = match *text.get(at)? {
                b'"' => quoted(text, at)?,
                b'{' => literal(text, at).map(|(end, d)| (end, d.to_vec()))?,
                _ => {
                    let end = at + text[at..].iter().position(|&b| b == b' ' || b == b')')?;
                    (end, text[at..end].to_vec())
                }
            };
            parts.push(Part::Url(String::from_utf8(url).ok()?));
            at = end;
        } else {
            return None;
        }
        match *text.get(at)? {
            b' ' => at += 1,
            b')' if !parts.is_empty() => return Some((at + 1, parts)),
            _ => return None,
        }
    }
}

/// An APPEND of one message given as CATENATE: the same APPEND with an
/// empty literal for its data, and the parts. None for anything else.
pub fn split(command: &[u8]) -> Option<(Vec<u8>, Vec<Part>)> {
    let at = super::multiappend::data_at(command)?;
    if !word_at(command, at, b"CATENATE ") {
        return None;
    }
    let (end, parts) = self::parts(command, at + 9)?;
    if command.get(end..)? != b"\r\n" {
        return None;
    }
    Some(([&command[..at], b"{0}\r\n\r\n"].concat(), parts))
}

/// An IMAP URL of a message or part on this server (RFC 5092), as far as
/// CATENATE needs: `imap://[user@]host[:port]` (the user, if given, the
/// one logged in), or nothing before the path, or a path relative to the
/// selected mailbox (from `;UID=`).
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    /// None: the selected mailbox.
    pub mailbox: Option<String>,
    pub uid_validity: Option<u32>,
    pub uid: u32,
    pub section: Option<String>,
    /// (offset, length).
    pub partial: Option<(u64, Option<u64>)>,
}

/// Reads a URL for the account `user`; None when it is not one this
/// server can resolve (BADURL).
pub fn url(text: &str, user: &str) -> Option<Url> {
    let path = match text.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("imap://") => {
            let rest = &text[7..];
            let slash = rest.find('/')?;
            if let Some((userinfo, _)) = rest[..slash].rsplit_once('@') {
                let name = userinfo.split(';').next()?;
                if !unescape(name)?.eq_ignore_ascii_case(user) || userinfo.contains(";") {
                    return None;
                }
            }
            &rest[slash..]
        }
        _ => text,
    };
    let (mailbox, rest) = match path.strip_prefix('/') {
        Some(p) => {
            let end = p.find("/;")?;
            let (mailbox, validity) = match p[..end].split_once(";UIDVALIDITY=") {
                Some((m, v)) => (m, Some(v.parse::<u32>().ok()?)),
                None => (&p[..end], None),
            };
            (Some((unescape(mailbox)?, validity)), &p[end + 1..])
        }
        None => (None, path),
    };
    let mut url = Url {
        mailbox: mailbox.as_ref().map(|m| m.0.clone()),
        uid_validity: mailbox.and_then(|m| m.1),
        uid: 0,
        section: None,
        partial: None,
    };
    for (i, piece) in rest.split('/').enumerate() {
        let (key, value) = piece.strip_prefix(';')?.split_once('=')?;
        match (i, key.to_ascii_uppercase().as_str()) {
            (0, "UID") => url.uid = value.parse().ok().filter(|&u| u > 0)?,
            (1, "SECTION") => url.section = Some(unescape(value)?),
            (1 | 2, "PARTIAL") if url.partial.is_none() => {
                let (offset, length) = match value.split_once('.') {
                    Some((o, l)) => (o.parse().ok()?, Some(l.parse().ok()?)),
                    None => (value.parse().ok()?, None),
                };
                url.partial = Some((offset, length));
            }
            _ => return None,
        }
    }
    (url.uid > 0).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catenate_append_becomes_a_plain_one_and_its_parts() {
        let (plain, parts) = split(
            b"t APPEND Drafts (\\Seen) CATENATE (TEXT {6+}\r\nhello\n URL \"/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1\" URL /Sent/;UID=9 TEXT {2}\r\n!\n)\r\n",
        )
        .unwrap();
        assert_eq!(plain, b"t APPEND Drafts (\\Seen) {0}\r\n\r\n");
        assert_eq!(
            parts,
            [
                Part::Text(b"hello\n".to_vec()),
                Part::Url("/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1".into()),
                Part::Url("/Sent/;UID=9".into()),
                Part::Text(b"!\n".to_vec()),
            ]
        );
        for other in [
            &b"t APPEND INBOX {3}\r\nabc\r\n"[..],
            b"t APPEND INBOX CATENATE ()\r\n",
            b"t APPEND INBOX CATENATE (TEXT {3}\r\nab)\r\n",
            b"t APPEND INBOX CATENATE (JUNK x)\r\n",
            b"t APPEND INBOX CATENATE (URL x) extra\r\n",
        ] {
            assert_eq!(split(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn urls_of_this_accounts_messages_and_nothing_else() {
        let u = url("imap://ann%40x.test@mail.x.test/Sent%20Items;UIDVALIDITY=5/;UID=12/;SECTION=1.MIME/;PARTIAL=10.20", "ann@x.test").unwrap();
        assert_eq!(
            u,
            Url {
                mailbox: Some("Sent Items".into()),
                uid_validity: Some(5),
                uid: 12,
                section: Some("1.MIME".into()),
                partial: Some((10, Some(20))),
            }
        );
        assert_eq!(url(";UID=4", "ann@x.test").unwrap().mailbox, None);
        for bad in [
            "imap://bob%40x.test@mail.x.test/INBOX/;UID=1",
            "imap://ann%40x.test;AUTH=*@mail.x.test/INBOX/;UID=1",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/INBOX;UIDVALIDITY=/;UID=1",
            "/INBOX/;UID=1/;URLAUTH=anonymous",
            "/INBOX/;UID=1/;SECTION=%zz",
            "/INBOX",
        ] {
            assert_eq!(url(bad, "ann@x.test"), None, "{bad}");
        }
    }
}
