//! Byte-level steps over a command line, for the pre-parsers that read
//! what imap-codec does not (`prepare`): a word at a place, where the
//! command's name starts, a quoted string, a literal.

/// Whether `word` (any case) stands at `at`.
pub fn word_at(text: &[u8], at: usize, word: &[u8]) -> bool {
    text.get(at..at + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// Where the command's name starts: after the tag and a `UID `.
pub fn command_at(text: &[u8]) -> Option<usize> {
    let at = text.iter().position(|&b| b == b' ')? + 1;
    Some(if word_at(text, at, b"UID ") {
        at + 4
    } else {
        at
    })
}

/// After a quoted string starting at `at`.
pub fn skip_quoted(text: &[u8], mut at: usize) -> Option<usize> {
    at += 1;
    loop {
        match *text.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            b'\r' | b'\n' => return None,
            _ => at += 1,
        }
    }
}

/// After a literal (`{n}`, `{n+}`, or BINARY's `~{n}`) and its data.
pub fn skip_literal(text: &[u8], mut at: usize) -> Option<usize> {
    if text.get(at) == Some(&b'~') {
        at += 1;
    }
    if text.get(at) != Some(&b'{') {
        return None;
    }
    let close = at + text[at..].iter().position(|&b| b == b'}')?;
    let digits = text[at + 1..close]
        .strip_suffix(b"+")
        .unwrap_or(&text[at + 1..close]);
    let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if text.get(close + 1..close + 3)? != b"\r\n" {
        return None;
    }
    let end = (close + 3).checked_add(n)?;
    (end <= text.len()).then_some(end)
}
