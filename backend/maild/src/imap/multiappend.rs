//! MULTIAPPEND (RFC 3502): `APPEND mailbox [flags] [date] literal` with
//! more `[flags] [date] literal` after it. imap-codec parses one message
//! per APPEND, so such a command is cut here (`split`) into one plain
//! APPEND per message, each parsed by imap-codec, and stored together.
//! A message may be CATENATE's (each such APPEND then goes through
//! `catenate`). What this cannot read goes to imap-codec whole (and gets
//! BAD).

use super::lex::{skip_astring, skip_literal, skip_quoted, word_at};

/// A MULTIAPPEND as one plain APPEND per message (same tag and mailbox);
/// None for an APPEND of one message, or anything else.
pub fn split(command: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut at = command.iter().position(|&b| b == b' ')? + 1;
    if !word_at(command, at, b"APPEND ") {
        return None;
    }
    at = skip_astring(command, at + 7)?;
    let prefix = &command[..at];
    let mut messages = Vec::new();
    while command.get(at) == Some(&b' ') {
        let start = at + 1;
        at = start;
        if command.get(at) == Some(&b'(') {
            at += command[at..].iter().position(|&b| b == b')')? + 1;
            at = (command.get(at) == Some(&b' ')).then_some(at + 1)?;
        }
        if command.get(at) == Some(&b'"') {
            at = skip_quoted(command, at)?;
            at = (command.get(at) == Some(&b' ')).then_some(at + 1)?;
        }
        at = if word_at(command, at, b"CATENATE ") {
            super::catenate::parts(command, at + 9)?.0
        } else {
            skip_literal(command, at)?
        };
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
