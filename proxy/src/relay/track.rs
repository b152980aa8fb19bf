//! The trackers: where IMAP and POP3 commands and their answers end.
use std::collections::VecDeque;

use fulmar_mailproto::imap::units::{Units, words};

use super::{Own, Tracker};

/// The longest first line of a command the relay may answer itself (a
/// 64-byte tag and `COMPRESS DEFLATE`): one this long is held back until
/// it ends, a longer one is passed on as it comes.
pub const OWN_MAX: u64 = 128;

/// IMAP (RFC 3501/9051): commands and responses are lines joined by
/// literals; a tagged status answers the oldest command waiting; `+`
/// after IDLE means the session is idling until the client's DONE.
/// COMPRESS DEFLATE (RFC 4978) is the proxy's own: the back-end hop stays
/// plain, so the proxy still sees where commands end.
#[derive(Default)]
pub struct Imap {
    up: Units,
    down: Units,
    /// Commands sent and not yet answered; true for IDLE.
    waiting: VecDeque<bool>,
    /// The back-end accepted IDLE and the client has not said DONE.
    idling: bool,
    /// The command the client sent last is the relay's to answer, and
    /// its length.
    own: Option<(Own, u64)>,
    /// COMPRESS was asked for.
    compressed: bool,
}

/// Whether a command's first line is `TAG COMPRESS DEFLATE`.
fn is_compress(head: &[u8]) -> bool {
    let line = head.strip_suffix(b"\n").unwrap_or(head);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let words: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    matches!(words.as_slice(), [_, name, algorithm]
        if name.eq_ignore_ascii_case(b"COMPRESS") && algorithm.eq_ignore_ascii_case(b"DEFLATE"))
}

impl Tracker for Imap {
    fn up(&mut self, bytes: &[u8], stop: bool) -> usize {
        let Self {
            up,
            waiting,
            idling,
            own,
            compressed,
            ..
        } = self;
        up.feed_until(bytes, stop, |_, len, head| {
            let (first, name) = words(head);
            if *idling && first.eq_ignore_ascii_case(b"DONE") {
                *idling = false;
            } else if len <= OWN_MAX && is_compress(head) {
                let tag = String::from_utf8_lossy(first).into_owned();
                let asked = match compressed {
                    true => Own::AlreadyCompressed(tag),
                    false => Own::Compress(tag),
                };
                *compressed = true;
                *own = Some((asked, len));
                return false;
            } else {
                waiting.push_back(name == "IDLE");
            }
            true
        })
    }

    fn up_unfinished(&self) -> u64 {
        let n = self.up.unfinished_head();
        if n <= OWN_MAX { n } else { 0 }
    }

    fn own(&mut self) -> Option<(Own, u64)> {
        self.own.take()
    }

    fn up_at_boundary(&self) -> bool {
        self.up.at_boundary()
    }

    fn down(&mut self, bytes: &[u8]) {
        let Self {
            down,
            waiting,
            idling,
            ..
        } = self;
        down.feed(bytes, false, |_, head| match words(head).0 {
            b"*" => {}
            b"+" => *idling |= waiting.front() == Some(&true),
            _ => {
                if waiting.pop_front() == Some(true) {
                    *idling = false;
                }
            }
        });
    }

    fn quiet(&self) -> bool {
        self.down.at_boundary()
            && (self.waiting.is_empty() || (self.idling && self.waiting.len() == 1))
    }

    fn goodbye(&self) -> &'static [u8] {
        b"* BYE [UNAVAILABLE] Session ended by the administrator, please reconnect.\r\n"
    }
}

/// POP3 (RFC 1939): one line per command; an answer is one line, or for
/// RETR, TOP, CAPA and LIST/UIDL without an argument a `+OK` line, the
/// body and a line of one dot.
pub struct Pop3 {
    up: Units,
    down: Units,
    /// Commands sent and not yet answered; true when a `+OK` answer has
    /// a body.
    waiting: VecDeque<bool>,
    /// Inside an answer's body.
    body: bool,
}

impl Default for Pop3 {
    fn default() -> Self {
        Self {
            up: Units::lines(),
            down: Units::lines(),
            waiting: VecDeque::new(),
            body: false,
        }
    }
}

fn multi_line(verb: &[u8], has_argument: bool) -> bool {
    let verb = verb.to_ascii_uppercase();
    matches!(verb.as_slice(), b"RETR" | b"TOP" | b"CAPA")
        || (matches!(verb.as_slice(), b"LIST" | b"UIDL") && !has_argument)
}

impl Tracker for Pop3 {
    fn up(&mut self, bytes: &[u8], stop: bool) -> usize {
        let Self { up, waiting, .. } = self;
        up.feed(bytes, stop, |_, head| {
            let (verb, argument) = words(head);
            waiting.push_back(multi_line(verb, !argument.is_empty()));
        })
    }

    fn up_at_boundary(&self) -> bool {
        self.up.at_boundary()
    }

    fn down(&mut self, bytes: &[u8]) {
        let Self {
            down,
            waiting,
            body,
            ..
        } = self;
        down.feed(bytes, false, |_, head| {
            if *body {
                if matches!(head, b".\r\n" | b".\n") {
                    *body = false;
                    waiting.pop_front();
                }
            } else if head.starts_with(b"+OK") {
                if waiting.front() == Some(&true) {
                    *body = true;
                } else {
                    waiting.pop_front();
                }
            } else if head.starts_with(b"-ERR") {
                waiting.pop_front();
            }
        });
    }

    fn quiet(&self) -> bool {
        self.down.at_boundary() && !self.body && self.waiting.is_empty()
    }

    fn goodbye(&self) -> &'static [u8] {
        b"-ERR [SYS/TEMP] Session ended by the administrator, please reconnect.\r\n"
    }
}
