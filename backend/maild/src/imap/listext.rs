//! LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and SPECIAL-USE's
//! options (RFC 6154): `LIST (selection) reference (patterns) RETURN
//! (options)`. imap-codec parses none of it, so such a LIST is read here
//! (`split`) and reaches imap-codec as a plain `LIST "" ""`, its real
//! request kept beside it. What this cannot read (a literal, an unknown
//! option) goes to imap-codec as it is, which answers BAD, as RFC 5258
//! wants for an unknown option.
use imap_codec::imap_types::status::StatusDataItemName;

/// What an extended LIST asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListExt {
    pub reference: String,
    pub patterns: Vec<String>,
    /// Selection: subscribed names only (and they say \Subscribed).
    pub subscribed: bool,
    /// Selection: a parent matched for its subscribed children (CHILDINFO).
    pub recursive: bool,
    /// Selection: special-use mailboxes only.
    pub special_use: bool,
    /// Return: \Subscribed on subscribed names.
    pub return_subscribed: bool,
    /// Return: a STATUS line after each selectable mailbox (LIST-STATUS).
    pub status: Option<Vec<StatusDataItemName>>,
}

/// One token of the command line.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Word(String),
}

/// Quoted strings and atoms (LIST's `%` and `*` included); None at a
/// literal or a malformed string.
fn tokens(text: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b' ' => i += 1,
            b'(' => {
                out.push(Token::Open);
                i += 1;
            }
            b')' => {
                out.push(Token::Close);
                i += 1;
            }
            b'"' => {
                let mut word = Vec::new();
                i += 1;
                loop {
                    match *text.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            word.push(*text.get(i + 1)?);
                            i += 2;
                        }
                        b'\r' | b'\n' => return None,
                        b => {
                            word.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Token::Word(String::from_utf8(word).ok()?));
            }
            b'{' | b'\r' | b'\n' => return None,
            _ => {
                let end = text[i..]
                    .iter()
                    .position(|b| matches!(b, b' ' | b'(' | b')' | b'"' | b'{' | b'\r' | b'\n'))
                    .map_or(text.len(), |n| i + n);
                out.push(Token::Word(String::from_utf8(text[i..end].to_vec()).ok()?));
                i = end;
            }
        }
    }
    Some(out)
}

/// The words of a parenthesized list starting at `at` (after `Open`),
/// and where it ends.
fn group(tokens: &[Token], at: usize) -> Option<(Vec<&str>, usize)> {
    let mut words = Vec::new();
    let mut i = at;
    loop {
        match tokens.get(i)? {
            Token::Close => return Some((words, i + 1)),
            Token::Word(w) => words.push(w.as_str()),
            Token::Open => return None,
        }
        i += 1;
    }
}

fn status_item(word: &str) -> Option<StatusDataItemName> {
    Some(match word.to_ascii_uppercase().as_str() {
        "MESSAGES" => StatusDataItemName::Messages,
        "RECENT" => StatusDataItemName::Recent,
        "UIDNEXT" => StatusDataItemName::UidNext,
        "UIDVALIDITY" => StatusDataItemName::UidValidity,
        "UNSEEN" => StatusDataItemName::Unseen,
        "HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
        "DELETED" => StatusDataItemName::Deleted,
        "SIZE" => StatusDataItemName::Size,
        _ => return None,
    })
}

/// An extended LIST: the request, and the plain command imap-codec is
/// given in its place. None for a plain LIST (or one this cannot read).
pub fn split(command: &[u8]) -> Option<(Vec<u8>, ListExt)> {
    let tag_end = command.iter().position(|&b| b == b' ')?;
    let rest = command.get(tag_end + 1..)?;
    if rest.len() < 5 || !rest[..5].eq_ignore_ascii_case(b"LIST ") {
        return None;
    }
    let body = rest[5..].strip_suffix(b"\r\n").unwrap_or(&rest[5..]);
    let t = tokens(body)?;
    let mut ext = ListExt::default();
    let mut i = 0;
    let mut extended = false;
    if t.first() == Some(&Token::Open) {
        let (words, next) = group(&t, 1)?;
        for w in words {
            match w.to_ascii_uppercase().as_str() {
                "SUBSCRIBED" => ext.subscribed = true,
                "RECURSIVEMATCH" => ext.recursive = true,
                "SPECIAL-USE" => ext.special_use = true,
                "REMOTE" => {}
                _ => return None,
            }
        }
        // RECURSIVEMATCH alone means nothing (RFC 5258 3.1: BAD).
        if ext.recursive && !ext.subscribed {
            return None;
        }
        (i, extended) = (next, true);
    }
    let Token::Word(reference) = t.get(i)? else {
        return None;
    };
    ext.reference.clone_from(reference);
    i += 1;
    match t.get(i)? {
        Token::Open => {
            let (words, next) = group(&t, i + 1)?;
            if words.is_empty() {
                return None;
            }
            ext.patterns = words.into_iter().map(str::to_string).collect();
            (i, extended) = (next, true);
        }
        Token::Word(p) => {
            ext.patterns = vec![p.clone()];
            i += 1;
        }
        Token::Close => return None,
    }
    if let Some(Token::Word(w)) = t.get(i) {
        if !w.eq_ignore_ascii_case("RETURN") || t.get(i + 1) != Some(&Token::Open) {
            return None;
        }
        i += 2;
        loop {
            match t.get(i)? {
                Token::Close => {
                    i += 1;
                    break;
                }
                Token::Word(w) => match w.to_ascii_uppercase().as_str() {
                    "SUBSCRIBED" => ext.return_subscribed = true,
                    "CHILDREN" | "SPECIAL-USE" => {}
                    "STATUS" if t.get(i + 1) == Some(&Token::Open) => {
                        let (words, next) = group(&t, i + 2)?;
                        let items = words.into_iter().map(status_item).collect::<Option<_>>()?;
                        ext.status = Some(items);
                        i = next;
                        continue;
                    }
                    _ => return None,
                },
                Token::Open => return None,
            }
            i += 1;
        }
        extended = true;
    }
    if i != t.len() || !extended {
        return None;
    }
    ext.return_subscribed |= ext.subscribed;
    let mut plain = command[..=tag_end].to_vec();
    plain.extend_from_slice(b"LIST \"\" \"\"\r\n");
    Some((plain, ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(line: &str) -> Option<ListExt> {
        split(line.as_bytes()).map(|(plain, ext)| {
            assert_eq!(plain, b"t LIST \"\" \"\"\r\n");
            ext
        })
    }

    #[test]
    fn extended_lists_are_read_and_plain_ones_left_alone() {
        assert_eq!(ext("t LIST \"\" \"*\"\r\n"), None);
        assert_eq!(ext("t LIST \"\" %\r\n"), None);
        let e = ext("t LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" Archive/%)\r\n").unwrap();
        assert!(e.subscribed && e.recursive && e.return_subscribed);
        assert_eq!(e.patterns, ["INBOX", "Archive/%"]);
        let e = ext("t list \"\" \"*\" return (children status (MESSAGES unseen))\r\n").unwrap();
        assert_eq!(
            e.status,
            Some(vec![
                StatusDataItemName::Messages,
                StatusDataItemName::Unseen
            ])
        );
        let e = ext("t LIST () \"a\\\"b\" \"*\"\r\n").unwrap();
        assert_eq!(e.reference, "a\"b");
        // Unknown options, RECURSIVEMATCH alone, literals, junk after: not
        // read here, so imap-codec answers BAD.
        for bad in [
            "t LIST (FOO) \"\" \"*\"\r\n",
            "t LIST (RECURSIVEMATCH) \"\" \"*\"\r\n",
            "t LIST \"\" \"*\" RETURN (FOO)\r\n",
            "t LIST \"\" \"*\" RETURN (STATUS (NOPE))\r\n",
            "t LIST \"\" {3}\r\nabc RETURN ()\r\n",
            "t LIST \"\" () RETURN ()\r\n",
            "t LIST \"\" \"*\" RETURN () x\r\n",
            "t LIST (SUBSCRIBED \"\" \"*\"\r\n",
        ] {
            assert_eq!(ext(bad), None, "{bad}");
        }
    }
}
