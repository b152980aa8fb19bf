//! A server's IMAP input path (the proxy before login, fulmar-maild
//! always): bytes arrive in chunks, the framer finds each command within
//! its limits, fulmar-maild's pre-parsers take off the extensions
//! imap-codec does not read, and imap-codec parses it whole. Nothing may panic, a command is
//! never longer than what was read, and nothing is buffered past the
//! command limit plus one read.
#![no_main]
use fulmar_mailproto::imap::frame::{Frame, Framer, Limits};
use fulmar_maild::imap::prepare::prepare;
use imap_codec::{CommandCodec, decode::Decoder};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    line: 256,
    literal: 1024,
    command: 2048,
};

fuzz_target!(|data: &[u8]| {
    // The first byte sets the read size, so splits fall everywhere.
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 64) + 1;
    let mut framer = Framer::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut reads = input.chunks(chunk);
    loop {
        match framer.next(&buf, &LIMITS) {
            Frame::More => match reads.next() {
                Some(read) => buf.extend_from_slice(read),
                None => return,
            },
            Frame::Command(n) => {
                assert!(n <= buf.len());
                let _ = CommandCodec::default().decode(&buf[..n]);
                // fulmar-maild first takes off what imap-codec does not
                // read (ESEARCH, LIST-EXTENDED, MULTIAPPEND, `$`).
                let (input, taken) = prepare(&buf[..n]);
                assert!(input.len() <= 10 * n + 32, "prepared {} from {n}", input.len());
                let _ = CommandCodec::default().decode(&input);
                for part in &taken.more_appends {
                    assert!(part.len() <= n);
                    let _ = CommandCodec::default().decode(part);
                }
                buf.drain(..n);
            }
            Frame::Discard(n) => {
                assert!(n <= buf.len());
                buf.drain(..n);
            }
            Frame::Continue => {}
            Frame::Refuse { close, .. } => {
                if close {
                    return;
                }
            }
        }
        assert!(
            buf.len() as u64 <= LIMITS.command + 2 * chunk as u64 + LIMITS.line as u64,
            "buffered {} bytes",
            buf.len()
        );
    }
});
