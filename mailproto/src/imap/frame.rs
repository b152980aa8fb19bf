//! Where one IMAP command ends in a server's input, found before anything
//! parses it.
//!
//! A command is lines joined by literals: a line that ends in `{N}\r\n`
//! (or `{N+}\r\n`, RFC 7888) is followed by N bytes of literal data and
//! another line. No other line can end that way (a quoted string holds no
//! CR or LF, an atom no `{`), so the end of a command is found by looking
//! at each byte once: a client that trickles its input a byte at a time
//! costs one scan, not a parse per read. Only a whole command goes to the
//! parser, once.
//!
//! Every bound holds before the bytes are buffered: a line, one literal
//! and a whole command (its lines and literals together). A synchronising
//! literal over a bound is refused before the client sends it; a
//! non-synchronising one cannot be refused (the client sends it anyway),
//! so the session must end.

/// Bounds for one command, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One line of the command (the text between its literals).
    pub line: usize,
    /// One literal.
    pub literal: u64,
    /// The whole command: its lines and literals together.
    pub command: u64,
}

/// What was over its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Line,
    Literal(u64),
    Command,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `buf[..n]` is one whole command: parse it, then drain it.
    Command(usize),
    /// Nothing more can be found before more input is read.
    More,
    /// A synchronising literal within the bounds was announced: send the
    /// continuation request (`+ ...`), then read on.
    Continue,
    /// The command is over a bound. Answer it (tagged with `tag` when one
    /// was read, else untagged); when `close`, the client is sending data
    /// that cannot be skipped: say BYE and end the session. Otherwise keep
    /// calling: the rest of the command is discarded first.
    Refuse {
        tag: Option<String>,
        over: Over,
        close: bool,
    },
    /// Drain `buf[..n]` (a refused command), then call again.
    Discard(usize),
}

/// The scan of the command at the front of the buffer. Offsets are into
/// the caller's buffer, whose front is drained only when a [`Frame`] says
/// so; the framer then starts afresh.
#[derive(Debug, Default)]
pub struct Framer {
    /// Bytes looked at so far.
    scanned: usize,
    /// Where the current line starts.
    line_start: usize,
    /// Literal bytes still to come before the next line.
    literal_left: u64,
    /// Lines and literals of this command so far.
    total: u64,
    /// A refused command's input is being thrown away up to the end of
    /// the line that was refused.
    skipping: bool,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next step for `buf`, which holds the bytes of earlier calls
    /// plus what was read since (the front drained only as told).
    pub fn next(&mut self, buf: &[u8], limits: &Limits) -> Frame {
        loop {
            if self.skipping {
                return match find_lf(buf, self.scanned) {
                    Some(lf) => {
                        *self = Self::default();
                        Frame::Discard(lf + 1)
                    }
                    None if buf.is_empty() => Frame::More,
                    // Nothing of it is worth keeping; look on from 0.
                    None => {
                        let n = buf.len();
                        self.scanned = 0;
                        Frame::Discard(n)
                    }
                };
            }
            if self.literal_left > 0 {
                let available = (buf.len() - self.scanned) as u64;
                let take = available.min(self.literal_left);
                self.scanned += take as usize;
                self.literal_left -= take;
                if self.literal_left > 0 {
                    return Frame::More;
                }
                self.line_start = self.scanned;
            }
            let Some(lf) = find_lf(buf, self.scanned) else {
                self.scanned = buf.len();
                // Where it would end is unknown: the session ends.
                if self.scanned - self.line_start > limits.line {
                    return self.refuse(buf, Over::Line, true);
                }
                return Frame::More;
            };
            let line = &buf[self.line_start..=lf];
            self.total += line.len() as u64;
            if line.len() > limits.line + 2 {
                return self.refuse(buf, Over::Line, false);
            }
            let Some((length, sync)) = literal_header(line) else {
                if self.total > limits.command {
                    return self.refuse(buf, Over::Command, false);
                }
                *self = Self::default();
                return Frame::Command(lf + 1);
            };
            // A refused synchronising literal was never sent: the command
            // ends with this line. A non-synchronising one is on its way.
            let over = if length > limits.literal {
                Some(Over::Literal(length))
            } else if self.total + length > limits.command {
                Some(Over::Command)
            } else {
                None
            };
            if let Some(over) = over {
                self.scanned = self.line_start;
                return self.refuse(buf, over, !sync);
            }
            self.total += length;
            self.literal_left = length;
            self.scanned = lf + 1;
            self.line_start = lf + 1;
            if sync {
                return Frame::Continue;
            }
        }
    }

    /// Refuses the command; its input is skipped to the end of the
    /// current line.
    fn refuse(&mut self, buf: &[u8], over: Over, close: bool) -> Frame {
        self.skipping = true;
        self.scanned = self.scanned.min(self.line_start);
        Frame::Refuse {
            tag: tag(buf),
            over,
            close,
        }
    }
}

fn find_lf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .iter()
        .position(|b| *b == b'\n')
        .map(|i| from + i)
}

/// `{N}\r\n` or `{N+}\r\n` at the end of `line`: (N, synchronising).
pub(crate) fn literal_header(line: &[u8]) -> Option<(u64, bool)> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|b| *b == b'{')?;
    let inside = &body[open + 1..];
    let (digits, sync) = match inside.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inside, true),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // 19 digits fit in a u64.
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, sync))
}

/// The command's tag, when its first word is one (RFC 3501 `tag`).
pub fn tag(buf: &[u8]) -> Option<String> {
    let word = buf.split(|b| *b == b' ').next()?;
    let ok = !word.is_empty()
        && word.len() <= 64
        && word
            .iter()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]+".contains(b));
    ok.then(|| String::from_utf8_lossy(word).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        line: 32,
        literal: 100,
        command: 150,
    };

    /// Feeds `input` a byte at a time as a session would, answering
    /// every step; returns the steps (More left out) and the buffer left.
    fn run(input: &[u8], limits: &Limits) -> (Vec<String>, Vec<u8>) {
        let mut f = Framer::new();
        let mut buf = Vec::new();
        let mut steps = Vec::new();
        let mut input = input.iter();
        loop {
            match f.next(&buf, limits) {
                Frame::More => match input.next() {
                    Some(b) => buf.push(*b),
                    None => return (steps, buf),
                },
                Frame::Command(n) => {
                    steps.push(format!("cmd {}", String::from_utf8_lossy(&buf[..n])));
                    buf.drain(..n);
                }
                Frame::Discard(n) => {
                    buf.drain(..n);
                }
                Frame::Continue => steps.push("+".into()),
                Frame::Refuse { tag, over, close } => {
                    steps.push(format!("refuse {tag:?} {over:?} {close}"));
                    if close {
                        return (steps, buf);
                    }
                }
            }
        }
    }

    #[test]
    fn commands_and_literals() {
        let (steps, left) = run(
            b"a1 NOOP\r\na2 LOGIN {3}\r\nbob {4+}\r\npa\r\n\r\na3 NOOP\r\na4",
            &L,
        );
        assert_eq!(
            steps,
            [
                "cmd a1 NOOP\r\n",
                "+",
                "cmd a2 LOGIN {3}\r\nbob {4+}\r\npa\r\n\r\n",
                "cmd a3 NOOP\r\n",
            ]
        );
        assert_eq!(left, b"a4");
    }

    #[test]
    fn a_refused_sync_literal_ends_the_command() {
        let (steps, left) = run(b"a1 APPEND x {101}\r\na2 NOOP\r\n", &L);
        assert_eq!(
            steps,
            ["refuse Some(\"a1\") Literal(101) false", "cmd a2 NOOP\r\n"]
        );
        assert!(left.is_empty());
    }

    #[test]
    fn a_non_sync_literal_over_a_bound_closes() {
        let (steps, _) = run(b"a1 APPEND x {101+}\r\nxxxx", &L);
        assert_eq!(steps, ["refuse Some(\"a1\") Literal(101) true"]);
        // Two literals within their own bound, over the command's.
        let mut input = b"a1 X {90+}\r\n".to_vec();
        input.extend([b'y'; 90]);
        input.extend(b" {90+}\r\n");
        let (steps, _) = run(&input, &L);
        assert_eq!(steps, ["refuse Some(\"a1\") Command true"]);
    }

    #[test]
    fn the_whole_command_is_bounded_across_literals() {
        let mut input = b"a1 X {60}\r\n".to_vec();
        input.extend([b'y'; 60]);
        input.extend(b" {80}\r\n");
        let (steps, _) = run(&input, &L);
        assert_eq!(steps, ["+", "refuse Some(\"a1\") Command false"]);
    }

    #[test]
    fn a_long_line_is_refused() {
        // Whole in the buffer (one read brought it): refused, skipped.
        let mut buf = b"a1 LOGIN ".to_vec();
        buf.extend([b'x'; 1000]);
        buf.extend(b"\r\na2 NOOP\r\n");
        let mut f = Framer::new();
        let refused = Frame::Refuse {
            tag: Some("a1".into()),
            over: Over::Line,
            close: false,
        };
        assert_eq!(f.next(&buf, &L), refused);
        assert_eq!(f.next(&buf, &L), Frame::Discard(1011));
        assert_eq!(f.next(&buf[1011..], &L), Frame::Command(9));
        // Still coming: where it ends is unknown, the session ends.
        let (steps, _) = run(&buf, &L);
        assert_eq!(steps, ["refuse Some(\"a1\") Line true"]);
        // No tag to answer: untagged.
        let (steps, _) = run(&[b'{'; 40], &L);
        assert_eq!(steps, ["refuse None Line true"]);
    }

    #[test]
    fn literal_data_is_not_taken_for_lines() {
        // Inside the literal: a literal header, an empty line, and a line
        // over the limit; none of it is a line of the command.
        let mut input = b"a1 APPEND x {50}\r\n".to_vec();
        input.extend(b"line {9}\r\n\r\nmore than the line limit..............");
        input.extend(b"\r\n");
        assert_eq!(input.len(), 18 + 50 + 2);
        let (steps, _) = run(&input, &L);
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(steps[1].ends_with("....\r\n"), "{steps:?}");
    }

    #[test]
    fn literal_headers() {
        assert_eq!(literal_header(b"a {12}\r\n"), Some((12, true)));
        assert_eq!(literal_header(b"a {0+}\r\n"), Some((0, false)));
        assert_eq!(literal_header(b"a {}\r\n"), None);
        assert_eq!(literal_header(b"a {1x}\r\n"), None);
        assert_eq!(literal_header(b"a {12}\n"), None);
        assert_eq!(literal_header(b"a \"{12}\"\r\n"), None);
        assert_eq!(literal_header(b"a {99999999999999999999}\r\n"), None);
    }
}
