//! ESEARCH (RFC 4731): `SEARCH RETURN (MIN MAX ALL COUNT) keys` answers
//! one `* ESEARCH` line with what was asked instead of every number.
//! imap-codec does not parse the RETURN clause: it is taken off the
//! command line here (`split`) and the rest parsed as a plain SEARCH.
use std::fmt::Write;

use super::{
    lex::{command_at, word_at},
    uid_set,
};

/// The result options a SEARCH asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Return {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    /// SEARCHRES (RFC 5182): the result is kept as `$`.
    pub save: bool,
}

impl Return {
    /// Whether an `* ESEARCH` line is due: not for SAVE alone.
    pub fn answers(&self) -> bool {
        self.min || self.max || self.all || self.count
    }

    /// What SAVE keeps of `found` (ascending): MIN and/or MAX alone when
    /// only they were asked with it, else all (RFC 5182 section 2.4).
    pub fn saved(&self, found: &[u32]) -> Vec<u32> {
        if (self.min || self.max) && !self.all && !self.count {
            let mut kept: Vec<u32> = Vec::new();
            kept.extend(found.first().filter(|_| self.min));
            kept.extend(found.last().filter(|_| self.max));
            kept.dedup();
            return kept;
        }
        found.to_vec()
    }
}

/// `command` without its `RETURN (...)` clause, and the options, when it
/// is a `[UID] SEARCH RETURN` command whose options are all known; None
/// otherwise (the command is parsed as it is: an unknown option is then a
/// syntax error, as RFC 4731 section 3.1 wants).
pub fn split(command: &[u8]) -> Option<(Vec<u8>, Return)> {
    let at = command_at(command)?;
    if !word_at(command, at, b"SEARCH RETURN (") {
        return None;
    }
    let clause = at + b"SEARCH ".len();
    let open = clause + b"RETURN (".len();
    let close = open + command[open..].iter().position(|&b| b == b')')?;
    let mut options = Return::default();
    for word in command[open..close]
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
    {
        match word.to_ascii_uppercase().as_slice() {
            b"MIN" => options.min = true,
            b"MAX" => options.max = true,
            b"ALL" => options.all = true,
            b"COUNT" => options.count = true,
            b"SAVE" => options.save = true,
            _ => return None,
        }
    }
    // RETURN () means ALL.
    if options == Return::default() {
        options.all = true;
    }
    // The clause and the space after it go.
    let rest = command.get(close + 1..)?.strip_prefix(b" ")?;
    let mut plain = command[..clause].to_vec();
    plain.extend_from_slice(rest);
    Some((plain, options))
}

/// The `* ESEARCH` line for `found` (ascending sequence numbers or UIDs).
pub fn answer(tag: &str, uid: bool, options: Return, found: &[u32]) -> String {
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    // MIN, MAX and ALL say nothing when nothing matched (section 3.1).
    if let (Some(first), Some(last)) = (found.first(), found.last()) {
        if options.min {
            let _ = write!(line, " MIN {first}");
        }
        if options.max {
            let _ = write!(line, " MAX {last}");
        }
        if options.all {
            let _ = write!(line, " ALL {}", uid_set(found));
        }
    }
    if options.count {
        let _ = write!(line, " COUNT {}", found.len());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_return_clause_is_taken_off() {
        let (plain, options) = split(b"a UID SEARCH RETURN (MIN count) UNSEEN\r\n").unwrap();
        assert_eq!(plain, b"a UID SEARCH UNSEEN\r\n");
        assert!(options.min && options.count && !options.max && !options.all);
        let (plain, options) = split(b"b search return () 1:* FLAGGED\r\n").unwrap();
        assert_eq!(plain, b"b search 1:* FLAGGED\r\n");
        assert!(options.all && !options.count);
        // Not ESEARCH, or an unknown option: left alone.
        assert_eq!(split(b"c SEARCH ALL\r\n"), None);
        assert_eq!(split(b"d SEARCH RETURN (PARTIAL) ALL\r\n"), None);
        let (_, options) = split(b"d SEARCH RETURN (SAVE) ALL\r\n").unwrap();
        assert!(options.save && !options.answers());
        let min = Return {
            min: true,
            save: true,
            ..Return::default()
        };
        assert_eq!(min.saved(&[3, 5, 9]), [3]);
        assert_eq!(Return { max: true, ..min }.saved(&[3, 5, 9]), [3, 9]);
        assert_eq!(Return { count: true, ..min }.saved(&[3, 5]), [3, 5]);
        assert_eq!(split(b"e SEARCH RETURN (MIN"), None);
        assert_eq!(split(b"f FETCH RETURN (MIN) ALL\r\n"), None);
    }

    #[test]
    fn answers_name_only_what_was_asked() {
        let all = Return {
            min: true,
            max: true,
            all: true,
            count: true,
            save: false,
        };
        assert_eq!(
            answer("a", true, all, &[2, 3, 4, 9]),
            "* ESEARCH (TAG \"a\") UID MIN 2 MAX 9 ALL 2:4,9 COUNT 4"
        );
        assert_eq!(
            answer("b", false, all, &[]),
            "* ESEARCH (TAG \"b\") COUNT 0"
        );
        let count = Return {
            count: true,
            ..Return::default()
        };
        assert_eq!(
            answer("c", false, count, &[1, 5]),
            "* ESEARCH (TAG \"c\") COUNT 2"
        );
    }
}
