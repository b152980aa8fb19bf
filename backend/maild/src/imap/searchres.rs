//! SEARCHRES (RFC 5182): `$`, the result a `SEARCH RETURN (SAVE)` kept,
//! used where a sequence set goes. imap-codec knows no `$`, so `mark`
//! puts `MARK` in its place before parsing, and the session, knowing the
//! command had one, reads that set as the saved UIDs (`Session::saved`).
//! Only where a set may stand: the first argument of FETCH, STORE, COPY,
//! MOVE and UID EXPUNGE, and a search key of SEARCH, SORT and THREAD (not
//! the argument of a key such as SUBJECT, which may be `$` itself).

use super::lex::{command_at, skip_literal, skip_quoted, word_at};

/// What `$` becomes for imap-codec: a number no mailbox reaches.
pub const MARK: u32 = u32::MAX;

/// Search keys that take arguments: a `$` after one is that argument.
const TAKES_ONE: [&str; 17] = [
    "BCC",
    "BEFORE",
    "BODY",
    "CC",
    "FROM",
    "KEYWORD",
    "LARGER",
    "ON",
    "SENTBEFORE",
    "SENTON",
    "SENTSINCE",
    "SINCE",
    "SMALLER",
    "SUBJECT",
    "TEXT",
    "TO",
    "UNKEYWORD",
];

/// `command` with each `$` where a set may stand replaced by `MARK`;
/// None when it has none.
pub fn mark(command: &[u8]) -> Option<Vec<u8>> {
    let at = command_at(command)?;
    let first_arg = [&b"FETCH "[..], b"STORE ", b"COPY ", b"MOVE ", b"EXPUNGE "]
        .into_iter()
        .find(|w| word_at(command, at, w));
    let searching = [&b"SEARCH "[..], b"SORT ", b"THREAD "]
        .into_iter()
        .find(|w| word_at(command, at, w));
    let dollars: Vec<usize> = if let Some(w) = first_arg {
        let arg = at + w.len();
        let alone = matches!(command.get(arg + 1), Some(b' ' | b'\r' | b'\n') | None);
        if command.get(arg) == Some(&b'$') && alone {
            vec![arg]
        } else {
            vec![]
        }
    } else if let Some(w) = searching {
        search_dollars(command, at + w.len())?
    } else {
        return None;
    };
    if dollars.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(command.len() + 10 * dollars.len());
    let mut from = 0;
    for d in dollars {
        out.extend_from_slice(&command[from..d]);
        out.extend_from_slice(MARK.to_string().as_bytes());
        from = d + 1;
    }
    out.extend_from_slice(&command[from..]);
    Some(out)
}

/// Where `$` stands as a search key in `command` from `at`: tokens split
/// at spaces and parentheses, quoted strings and literals stepped over.
fn search_dollars(command: &[u8], mut at: usize) -> Option<Vec<usize>> {
    let mut found = Vec::new();
    let (mut prev, mut before): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    while at < command.len() {
        match command[at] {
            b' ' | b'(' | b')' | b'\r' | b'\n' => {
                at += 1;
                continue;
            }
            b'"' => {
                at = skip_quoted(command, at)?;
                (before, prev) = (prev, b"\"".to_vec());
                continue;
            }
            // A literal, or BINARY's literal8 (`~{`).
            b'{' | b'~' if command[at] == b'{' || command.get(at + 1) == Some(&b'{') => {
                at = skip_literal(command, at)?;
                (before, prev) = (prev, b"{".to_vec());
                continue;
            }
            _ => {}
        }
        let end = at
            + command[at..]
                .iter()
                .position(|b| matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n'))
                .unwrap_or(command.len() - at);
        let token = command[at..end].to_ascii_uppercase();
        let argument = TAKES_ONE.iter().any(|k| k.as_bytes() == prev.as_slice())
            || before == b"HEADER"
            || prev == b"HEADER";
        if token == b"$" && !argument {
            found.push(at);
        }
        (before, prev) = (prev, token);
        at = end;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(line: &str) -> Option<String> {
        mark(line.as_bytes()).map(|m| String::from_utf8(m).unwrap())
    }

    #[test]
    fn dollar_is_marked_only_where_a_set_stands() {
        assert_eq!(
            marked("a FETCH $ (FLAGS)\r\n").as_deref(),
            Some("a FETCH 4294967295 (FLAGS)\r\n")
        );
        assert_eq!(
            marked("a UID STORE $ +FLAGS (\\Seen)\r\n").as_deref(),
            Some("a UID STORE 4294967295 +FLAGS (\\Seen)\r\n")
        );
        assert_eq!(
            marked("a UID EXPUNGE $\r\n").as_deref(),
            Some("a UID EXPUNGE 4294967295\r\n")
        );
        assert_eq!(
            marked("a SEARCH UID $ (OR $ SEEN) SUBJECT $\r\n").as_deref(),
            Some("a SEARCH UID 4294967295 (OR 4294967295 SEEN) SUBJECT $\r\n")
        );
        assert_eq!(
            marked("a SEARCH HEADER X-A $ NOT $\r\n").as_deref(),
            Some("a SEARCH HEADER X-A $ NOT 4294967295\r\n")
        );
        assert_eq!(
            marked("a SEARCH SUBJECT {1}\r\n$ $\r\n").as_deref(),
            Some("a SEARCH SUBJECT {1}\r\n$ 4294967295\r\n")
        );
        // Not a set, or not `$` alone: left alone.
        assert_eq!(marked("a LOGIN ann $\r\n"), None);
        assert_eq!(marked("a FETCH $1 (FLAGS)\r\n"), None);
        assert_eq!(marked("a SEARCH KEYWORD $Label\r\n"), None);
        assert_eq!(marked("a SEARCH SUBJECT \"$\"\r\n"), None);
    }
}
