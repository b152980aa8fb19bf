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

/// After an astring (a mailbox name: atom, quoted string or literal)
/// starting at `at` and followed by a space.
pub fn skip_astring(text: &[u8], at: usize) -> Option<usize> {
    match *text.get(at)? {
        b'"' => skip_quoted(text, at),
        b'{' => skip_literal(text, at),
        _ => Some(at + text[at..].iter().position(|&b| b == b' ')?),
    }
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
pub fn skip_literal(text: &[u8], at: usize) -> Option<usize> {
    literal(text, at).map(|(end, _)| end)
}

/// A literal at `at`: where it ends and its data.
pub fn literal(text: &[u8], mut at: usize) -> Option<(usize, &[u8])> {
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
    (end <= text.len()).then(|| (end, &text[close + 3..end]))
}

/// A quoted string at `at`: where it ends and its text, unescaped.
pub fn quoted(text: &[u8], at: usize) -> Option<(usize, Vec<u8>)> {
    let end = skip_quoted(text, at)?;
    let mut out = Vec::with_capacity(end - at);
    let mut escaped = false;
    for &b in &text[at + 1..end - 1] {
        match (escaped, b) {
            (false, b'\\') => escaped = true,
            _ => {
                out.push(b);
                escaped = false;
            }
        }
    }
    Some((end, out))
}
