//! DATA as it streams in, one read at a time: where the message ends
//! (`CRLF.CRLF`, which may be split across reads), how big it is, and
//! whether it holds a bare LF (RFC 5321 §2.3.8), which the proxy refuses
//! rather than pass on: a back-end that ends lines at LF would take `LF.LF`
//! for the end and what follows for commands (SMTP smuggling).

const END: &[u8] = b"\r\n.\r\n";

/// What the reads so far have shown.
pub struct Scanner {
    /// The last bytes seen (at most 4), so a terminator begun in one read
    /// is found in the next; the data starts at the beginning of a line.
    tail: Vec<u8>,
    /// Message bytes so far (the terminator's `.CRLF` included).
    pub size: u64,
    /// A bare LF was seen in the message.
    pub bare_lf: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            tail: b"\r\n".to_vec(),
            size: 0,
            bare_lf: false,
        }
    }
}

impl Scanner {
    /// Scans the next read: how many of its bytes are the message's, and
    /// the index just past the terminator when it ends here (what follows
    /// is the next command).
    pub fn scan(&mut self, chunk: &[u8]) -> (usize, Option<usize>) {
        let end = find_end(&self.tail, chunk);
        let body = &chunk[..end.unwrap_or(chunk.len())];
        self.size += body.len() as u64;
        self.bare_lf |= has_bare_lf(self.tail.last().copied(), body);
        self.tail = last_bytes(&self.tail, chunk);
        (body.len(), end)
    }
}

/// The end of `chunk`'s data: the index just past `CRLF.CRLF`, where the
/// first bytes may complete a terminator begun in `tail`.
fn find_end(tail: &[u8], chunk: &[u8]) -> Option<usize> {
    // A terminator begun in `tail` (at most 4 bytes) ends within the
    // chunk's first 4 bytes; any other lies wholly in the chunk, later.
    let seam = [tail, &chunk[..chunk.len().min(END.len() - 1)]].concat();
    let across = seam
        .windows(END.len())
        .position(|w| w == END)
        .map(|p| p + END.len() - tail.len());
    across.or_else(|| {
        chunk
            .windows(END.len())
            .position(|w| w == END)
            .map(|p| p + END.len())
    })
}

/// Whether `body` has an LF not preceded by CR (`before`: the byte before
/// `body`).
fn has_bare_lf(before: Option<u8>, body: &[u8]) -> bool {
    body.iter().enumerate().any(|(i, &b)| {
        let prev = if i == 0 { before } else { Some(body[i - 1]) };
        b == b'\n' && prev != Some(b'\r')
    })
}

/// The last 4 bytes of `tail` followed by `chunk`.
fn last_bytes(tail: &[u8], chunk: &[u8]) -> Vec<u8> {
    let mut t = [tail, &chunk[chunk.len().saturating_sub(4)..]].concat();
    t.drain(..t.len().saturating_sub(4));
    t
}

/// The same answers for a whole stream at once: where the message ends
/// (just past the terminator) and whether it holds a bare LF. What any
/// split of the stream into reads must agree with (the fuzz target
/// `smtp_data` checks it).
pub fn whole(stream: &[u8]) -> (Option<usize>, bool) {
    let framed = [b"\r\n", stream].concat();
    let end = framed
        .windows(END.len())
        .position(|w| w == END)
        .map(|p| p + END.len() - 2);
    let body = &stream[..end.unwrap_or(stream.len())];
    (end, has_bare_lf(Some(b'\n'), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_feeds() {
        assert!(!has_bare_lf(Some(b'\n'), b"a\r\nb\r\n"));
        assert!(has_bare_lf(Some(b'\n'), b"a\r\n.\nMAIL"));
        assert!(!has_bare_lf(Some(b'\r'), b"\nrest"));
        assert!(has_bare_lf(Some(b'x'), b"\nrest"));
    }

    #[test]
    fn terminator_across_reads() {
        assert_eq!(find_end(b"\r\n", b".\r\n"), Some(3));
        assert_eq!(find_end(b"\r\n", b"hi\r\n.\r\nQUIT\r\n"), Some(7));
        assert_eq!(find_end(b"hi\r\n", b".\r\n"), Some(3));
        assert_eq!(find_end(b"i\r\n.", b"\r\n"), Some(2));
        assert_eq!(find_end(b"\r\n", b"..\r\n"), None, "a stuffed dot is data");
        assert_eq!(find_end(b"x\r\n", b"line\r\n"), None);
    }

    /// Every split of a stream into two reads agrees with the whole.
    #[test]
    fn reads_agree_with_the_whole() {
        let stream = b"Subject: x\r\n\r\nbody\n.\r\n..\r\n.\r\nQUIT\r\n";
        let (end, bare) = whole(stream);
        assert_eq!((end, bare), (Some(29), true));
        for cut in 0..=stream.len() {
            let mut s = Scanner::default();
            let (_, first) = s.scan(&stream[..cut]);
            let got = first.or_else(|| s.scan(&stream[cut..]).1.map(|e| e + cut));
            assert_eq!((got, s.bare_lf), (end, bare), "cut at {cut}");
        }
    }
}
