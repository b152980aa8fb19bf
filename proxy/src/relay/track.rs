//! The trackers: where IMAP and POP3 commands and their answers end.
use std::collections::VecDeque;

use fulmar_mailproto::imap::units::{Units, words};

use super::Tracker;

/// IMAP (RFC 3501/9051): commands and responses are lines joined by
/// literals; a tagged status answers the oldest command waiting; `+`
/// after IDLE means the session is idling until the client's DONE.
#[derive(Default)]
pub struct Imap {
    up: Units,
    down: Units,
    /// Commands sent and not yet answered; true for IDLE.
    waiting: VecDeque<bool>,
    /// The back-end accepted IDLE and the client has not said DONE.
    idling: bool,
}

impl Tracker for Imap {
    fn up(&mut self, bytes: &[u8], stop: bool) -> usize {
        let Self {
            up,
            waiting,
            idling,
            ..
        } = self;
        up.feed(bytes, stop, |_, head| {
            let (first, name) = words(head);
            if *idling && first.eq_ignore_ascii_case(b"DONE") {
                *idling = false;
            } else {
                waiting.push_back(name == "IDLE");
            }
        })
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
