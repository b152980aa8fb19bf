//! IMAP COMPRESS=DEFLATE (RFC 4978): once the command is answered OK,
//! each direction of the connection is a raw DEFLATE stream (RFC 1951, no
//! zlib header). Every flush is a sync flush, so each response (or
//! command) reaches the peer whole as soon as it is written.
//!
//! The peer starts compressing right after its COMPRESS command's CRLF, so
//! bytes already read behind that line are the start of its compressed
//! stream: they are read (inflated) first.
use std::{
    io::{self, Cursor},
    pin::Pin,
    task::{Context, Poll},
};

use async_compression::{
    Level,
    tokio::{bufread::DeflateDecoder, write::DeflateEncoder},
};
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, BufReader, Chain, ReadBuf, ReadHalf, WriteHalf,
};

/// zlib's default level: Dovecot's too.
const LEVEL: Level = Level::Precise(6);

/// What reads a peer's compressed stream, inflated: `pending` (the bytes
/// read behind its COMPRESS line), then `inner`.
pub fn reader<R: AsyncRead + Unpin>(inner: R, pending: Vec<u8>) -> Inflate<R> {
    let input = Cursor::new(pending).chain(Ended {
        inner,
        ended: false,
    });
    Inflate(DeflateDecoder::new(BufReader::new(input)))
}

/// What writes to a peer compressed.
pub type Deflate<W> = DeflateEncoder<W>;

pub fn writer<W: AsyncWrite + Unpin>(inner: W) -> Deflate<W> {
    DeflateEncoder::with_quality(inner, LEVEL)
}

/// The inflating side of [`reader`]: a peer that hangs up in the middle of
/// its stream (as every client does: none ends it first) reads as the end
/// of input, not as an error; damage before that is one.
pub struct Inflate<R>(DeflateDecoder<BufReader<Input<R>>>);

/// The compressed input: what was read behind the command, then the rest.
type Input<R> = Chain<Cursor<Vec<u8>>, Ended<R>>;

impl<R: AsyncRead + Unpin> AsyncRead for Inflate<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(_)) if self.0.get_ref().get_ref().get_ref().1.ended => {
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// A reader that remembers reaching its end.
pub struct Ended<R> {
    inner: R,
    ended: bool,
}

impl<R: AsyncRead + Unpin> AsyncRead for Ended<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if room && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            self.ended = true;
        }
        polled
    }
}

/// A whole connection with COMPRESS on (both directions).
pub struct Deflated<S> {
    read: Inflate<ReadHalf<S>>,
    write: DeflateEncoder<WriteHalf<S>>,
}

impl<S: AsyncRead + AsyncWrite> Deflated<S> {
    pub fn new(stream: S, pending: Vec<u8>) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self {
            read: reader(r, pending),
            write: writer(w),
        }
    }
}

impl<S: AsyncRead + AsyncWrite> AsyncRead for Deflated<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite> AsyncWrite for Deflated<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A read that must finish well within this (it hangs when a flush did
    /// not deliver).
    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn each_flush_delivers_what_was_written_whole() {
        let (x, y) = tokio::io::duplex(1 << 16);
        let (mut a, mut b) = (Deflated::new(x, Vec::new()), Deflated::new(y, Vec::new()));
        for line in [&b"* OK one\r\n"[..], b"a1 OK two\r\n"] {
            a.write_all(line).await.unwrap();
            a.flush().await.unwrap();
            let mut got = vec![0u8; line.len()];
            tokio::time::timeout(WAIT, b.read_exact(&mut got))
                .await
                .expect("flushed")
                .unwrap();
            assert_eq!(got, line);
        }
        b.write_all(b"a2 LOGOUT\r\n").await.unwrap();
        b.flush().await.unwrap();
        let mut got = vec![0u8; 11];
        a.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"a2 LOGOUT\r\n");
    }

    #[tokio::test]
    async fn bytes_read_behind_the_command_come_first_and_a_hang_up_ends_input() {
        let mut compressed = Vec::new();
        {
            let mut w = writer(&mut compressed);
            for line in [&b"a1 NOOP\r\n"[..], b"a2 NOOP\r\n"] {
                w.write_all(line).await.unwrap();
                w.flush().await.unwrap();
            }
        }
        let k = compressed.len() / 2;
        let (x, mut y) = tokio::io::duplex(1 << 16);
        let mut r = reader(x, compressed[..k].to_vec());
        y.write_all(&compressed[k..]).await.unwrap();
        let mut got = vec![0u8; 18];
        tokio::time::timeout(WAIT, r.read_exact(&mut got))
            .await
            .expect("read")
            .unwrap();
        assert_eq!(got, b"a1 NOOP\r\na2 NOOP\r\n");
        // The peer hangs up without ending its stream.
        drop(y);
        let mut rest = Vec::new();
        assert_eq!(r.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn damaged_input_is_an_error() {
        let (x, mut y) = tokio::io::duplex(1 << 16);
        let mut r = reader(x, Vec::new());
        // BTYPE 11 is reserved: no DEFLATE stream starts like this.
        y.write_all(&[0xff; 64]).await.unwrap();
        let mut got = [0u8; 16];
        let read = tokio::time::timeout(WAIT, r.read(&mut got))
            .await
            .expect("read");
        assert!(read.is_err(), "{read:?}");
    }
}
