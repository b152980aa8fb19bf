//! Where each IMAP command (client to server) or response (server to
//! client) ends in a relayed byte stream, without keeping the stream.
//!
//! Both directions share one shape: lines joined by literals, a line that
//! ends in `{N}\r\n` or `{N+}\r\n` being followed by N bytes and another
//! line. The proxy relays logged-in sessions through this to end them at
//! a command boundary (a kick or a drain). Only a unit's first bytes (its
//! tag and name) and the end of the current line are kept: a 50 MB APPEND
//! costs a few bytes of state.

use super::frame::literal_header;

/// How much of a unit's first line is kept: room for a tag (at most 64
/// bytes here) and a command name.
const HEAD: usize = 96;
/// How much of a line's end is kept: `{` twenty digits `+}` CRLF.
const TAIL: usize = 26;

#[derive(Debug, Default)]
pub struct Units {
    /// Literal bytes still to come before the unit's next line.
    literal_left: u64,
    /// The first bytes of the unit's first line.
    head: Vec<u8>,
    /// Whether the first line is over (head is complete).
    head_done: bool,
    /// The last bytes of the current line.
    tail: Vec<u8>,
    /// Bytes of the unit seen so far (0: between units).
    seen: u64,
    /// Every line is a unit (POP3): `{N}` at a line's end is just text.
    lines_only: bool,
}

impl Units {
    pub fn new() -> Self {
        Self::default()
    }

    /// Units of one line each, for line protocols (POP3).
    pub fn lines() -> Self {
        Self {
            lines_only: true,
            ..Self::default()
        }
    }

    /// True between units: nothing of a next one has been seen.
    pub fn at_boundary(&self) -> bool {
        self.seen == 0
    }

    /// Bytes of a unit whose first line has not ended yet (0 otherwise):
    /// what a relay holds back while the unit may still turn out to be one
    /// it answers itself.
    pub fn unfinished_head(&self) -> u64 {
        if self.head_done { 0 } else { self.seen }
    }

    /// Feeds `bytes`; `on_end(n, head)` is called for each unit that ends
    /// within them, `n` being the offset just past its end and `head` its
    /// first bytes. With `stop`, feeding stops at the first unit's end (or
    /// at once, between units) and the bytes taken are returned.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        stop: bool,
        mut on_end: impl FnMut(usize, &[u8]),
    ) -> usize {
        self.feed_until(bytes, stop, |n, _, head| {
            on_end(n, head);
            true
        })
    }

    /// `feed`, where `on_end(n, len, head)` also gets the unit's length
    /// and stops the feeding right after the unit by returning false.
    pub fn feed_until(
        &mut self,
        bytes: &[u8],
        stop: bool,
        mut on_end: impl FnMut(usize, u64, &[u8]) -> bool,
    ) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            if stop && self.at_boundary() {
                return at;
            }
            if self.literal_left > 0 {
                let take = (bytes.len() - at)
                    .min(usize::try_from(self.literal_left).unwrap_or(usize::MAX));
                self.literal_left -= take as u64;
                self.seen += take as u64;
                at += take;
                continue;
            }
            let rest = &bytes[at..];
            let (piece, ends) = match rest.iter().position(|b| *b == b'\n') {
                Some(lf) => (&rest[..=lf], true),
                None => (rest, false),
            };
            self.seen += piece.len() as u64;
            at += piece.len();
            if !self.head_done {
                let room = HEAD.saturating_sub(self.head.len());
                self.head.extend_from_slice(&piece[..piece.len().min(room)]);
            }
            self.tail.extend_from_slice(piece);
            if self.tail.len() > TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
            if !ends {
                continue;
            }
            self.head_done = true;
            let literal = if self.lines_only {
                None
            } else {
                literal_header(&self.tail).map(|(n, _)| n)
            };
            self.tail.clear();
            match literal {
                Some(n) => self.literal_left = n,
                None => {
                    let go_on = on_end(at, self.seen, &self.head);
                    self.head.clear();
                    self.head_done = false;
                    self.seen = 0;
                    if !go_on {
                        return at;
                    }
                }
            }
        }
        at
    }
}

/// The first word of a unit (its tag, `*` or `+`) and the second (a
/// command name or a status), upper-cased.
pub fn words(head: &[u8]) -> (&[u8], String) {
    let line = head.strip_suffix(b"\n").unwrap_or(head);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|b| *b == b' ');
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    (first, String::from_utf8_lossy(second).to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(units: &mut Units, input: &[u8]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        units.feed(input, false, |n, head| {
            out.push((n, String::from_utf8_lossy(head).into_owned()))
        });
        out
    }

    #[test]
    fn lines_and_literals_make_units() {
        let mut u = Units::new();
        let input = b"a NOOP\r\nb APPEND x {5}\r\nhe\r\no\r\nc IDLE\r\n";
        let got = ends(&mut u, input);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].0, 8);
        assert_eq!(got[1].1, "b APPEND x {5}\r\n");
        assert_eq!(got[1].0, 8 + 16 + 5 + 2);
        assert!(u.at_boundary());
    }

    #[test]
    fn byte_at_a_time_finds_the_same_ends() {
        let input = b"* 1 FETCH (BODY[] {12}\r\nab\r\n{3}\r\nxyz)\r\nt OK done\r\n+ idling\r\n";
        let whole = ends(&mut Units::new(), input);
        let mut u = Units::new();
        let mut trickled = Vec::new();
        for (i, b) in input.iter().enumerate() {
            u.feed(std::slice::from_ref(b), false, |n, head| {
                trickled.push((i + n, String::from_utf8_lossy(head).into_owned()))
            });
        }
        assert_eq!(whole, trickled);
        assert_eq!(whole.len(), 3);
        assert_eq!(words(whole[1].1.as_bytes()), (&b"t"[..], "OK".to_string()));
    }

    #[test]
    fn a_literal_that_looks_like_a_line_end_is_data() {
        let mut u = Units::new();
        assert!(ends(&mut u, b"a APPEND x {4+}\r\n\r\n\r\n").is_empty());
        assert!(!u.at_boundary());
        assert_eq!(ends(&mut u, b"\r\n").len(), 1);
    }

    #[test]
    fn lines_only_ignores_literal_markers() {
        let mut u = Units::lines();
        assert_eq!(ends(&mut u, b"NOOP {5}\r\nSTAT\r\n").len(), 2);
    }

    #[test]
    fn stop_takes_up_to_the_first_end() {
        let mut u = Units::new();
        assert_eq!(
            u.feed(b"a NOOP\r\n", true, |_, _| {}),
            0,
            "between units: nothing"
        );
        assert_eq!(u.feed(b"a NO", false, |_, _| {}), 4);
        assert_eq!(u.feed(b"OP\r\nb NOOP\r\n", true, |_, _| {}), 4);
        assert!(u.at_boundary());
    }

    #[test]
    fn a_huge_literal_keeps_little_state() {
        let mut u = Units::new();
        u.feed(b"a APPEND INBOX {99999999999}\r\n", false, |_, _| {});
        u.feed(&vec![b'x'; 1 << 16], false, |_, _| panic!("no end yet"));
        assert!(u.head.len() <= HEAD && u.tail.len() <= TAIL);
    }

    #[test]
    fn feeding_can_stop_after_a_unit_and_an_unfinished_first_line_is_counted() {
        let mut u = Units::new();
        assert_eq!(u.feed(b"a1 COMP", false, |_, _| {}), 7);
        assert_eq!(u.unfinished_head(), 7);
        let mut lens = Vec::new();
        let taken = u.feed_until(b"RESS DEFLATE\r\nrest", false, |_, len, _| {
            lens.push(len);
            false
        });
        assert_eq!((taken, lens), (14, vec![21]));
        // A literal's first line is over: nothing of it is unfinished.
        u.feed(b"a2 APPEND INBOX {3}\r\nab", false, |_, _| {});
        assert_eq!(u.unfinished_head(), 0);
    }
}
