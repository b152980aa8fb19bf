//! MULTIAPPEND (RFC 3502): `APPEND mailbox [flags] [date] literal` with
//! more `[flags] [date] literal` after it. imap-codec parses one message
//! per APPEND, so such a command is cut here (`split`) into one plain
//! APPEND per message, each parsed by imap-codec, and stored together.
//! A message may be CATENATE's (each such APPEND then goes through
//! `catenate`) or wrapped in UTF8 (`unwrap_utf8`). What this cannot read
//! goes to imap-codec whole (and gets BAD).

use super::lex::{skip_astring, skip_literal, skip_quoted, word_at};

/// After APPEND's mailbox name: where it ends (at the space before the
/// first message).
fn after_mailbox(command: &[u8]) -> Option<usize> {
    let at = command.iter().position(|&b| b == b' ')? + 1;
    if !word_at(command, at, b"APPEND ") {
        return None;
    }
    skip_astring(command, at + 7)
}

/// After a message's flags and date (each optional) starting at `at`:
/// where its data starts.
fn after_options(command: &[u8], mut at: usize) -> Option<usize> {
    if command.get(at) == Some(&b'(') {
        at += command[at..].iter().position(|&b| b == b')')? + 1;
        at = (command.get(at) == Some(&b' ')).then_some(at + 1)?;
    }
    if command.get(at) == Some(&b'"') {
        at = skip_quoted(command, at)?;
        at = (command.get(at) == Some(&b' ')).then_some(at + 1)?;
    }
    Some(at)
}

/// Where the first message's data starts in an APPEND.
pub fn data_at(command: &[u8]) -> Option<usize> {
    let at = after_mailbox(command)?;
    after_options(command, (command.get(at) == Some(&b' ')).then_some(at + 1)?)
}

/// After a message's data at `at`: a literal, CATENATE's list (RFC 4469)
/// or UTF8's wrapped literal8 (RFC 6855).
fn after_data(command: &[u8], at: usize) -> Option<usize> {
    if word_at(command, at, b"CATENATE ") {
        Some(super::catenate::parts(command, at + 9)?.0)
    } else if word_at(command, at, b"UTF8 (") {
        let end = skip_literal(command, at + 6)?;
        (command.get(end) == Some(&b')')).then_some(end + 1)
    } else {
        skip_literal(command, at)
    }
}

/// A MULTIAPPEND as one plain APPEND per message (same tag and mailbox);
/// None for an APPEND of one message, or anything else.
pub fn split(command: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut at = after_mailbox(command)?;
    let prefix = &command[..at];
    let mut messages = Vec::new();
    while command.get(at) == Some(&b' ') {
        let start = at + 1;
        at = after_data(command, after_options(command, start)?)?;
        messages.push(start..at);
    }
    if messages.len() < 2 || command.get(at..)? != b"\r\n" {
        return None;
    }
    Some(
        messages
            .into_iter()
            .map(|m| [prefix, b" ", &command[m], b"\r\n"].concat())
            .collect(),
    )
}

/// An APPEND of one message given as UTF8 (RFC 6855 4: `UTF8 (~{n}...)`)
/// as a plain one of its literal8; None for anything else.
pub fn unwrap_utf8(command: &[u8]) -> Option<Vec<u8>> {
    let at = data_at(command)?;
    if !word_at(command, at, b"UTF8 (") {
        return None;
    }
    let end = skip_literal(command, at + 6)?;
    if command.get(end..)? != b")\r\n" {
        return None;
    }
    Some([&command[..at], &command[at + 6..end], b"\r\n"].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_messages_become_plain_appends() {
        let multi = b"t APPEND \"Sent Items\" (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {3}\r\nabc (\\Flagged) {2+}\r\nde ~{1}\r\nf\r\n";
        let parts = split(multi).unwrap();
        assert_eq!(
            parts,
            [
                b"t APPEND \"Sent Items\" (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {3}\r\nabc\r\n"
                    .to_vec(),
                b"t APPEND \"Sent Items\" (\\Flagged) {2+}\r\nde\r\n".to_vec(),
                b"t APPEND \"Sent Items\" ~{1}\r\nf\r\n".to_vec(),
            ]
        );
        // A literal mailbox name, and data holding what looks like syntax.
        let parts = split(b"t APPEND {4}\r\nWork {5}\r\n) {1} {1}\r\nx\r\n").unwrap();
        assert_eq!(parts[0], b"t APPEND {4}\r\nWork {5}\r\n) {1}\r\n");
        // UTF8 (RFC 6855) data, in a MULTIAPPEND and alone.
        let parts = split(b"t APPEND INBOX UTF8 (~{2}\r\nab) {1}\r\nc\r\n").unwrap();
        assert_eq!(parts[0], b"t APPEND INBOX UTF8 (~{2}\r\nab)\r\n");
        assert_eq!(
            unwrap_utf8(&parts[0]).unwrap(),
            b"t APPEND INBOX ~{2}\r\nab\r\n"
        );
        assert_eq!(unwrap_utf8(b"t APPEND INBOX UTF8 (~{2}\r\nab\r\n"), None);
        // One message, other commands, and damage: left to imap-codec.
        for whole in [
            &b"t APPEND INBOX {3}\r\nabc\r\n"[..],
            b"t SELECT INBOX\r\n",
            b"t APPEND INBOX {3}\r\nabc {9}\r\nab\r\n",
            b"t APPEND INBOX {3}\r\nabc {1}\r\nx junk\r\n",
            b"t APPEND INBOX {3}\r\nabc (\\Seen {1}\r\nx\r\n",
        ] {
            assert_eq!(split(whole), None, "{}", String::from_utf8_lossy(whole));
        }
    }
}
