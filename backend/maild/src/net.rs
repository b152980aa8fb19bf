//! Connection plumbing the line protocols share: a boxed stream that can
//! turn into TLS, bounded line reads and the lingering close.
use std::{future::Future, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// Accepts connections until the listener fails, each served by
/// `session` on a task of its own.
pub async fn accept<F, S>(
    listener: TcpListener,
    protocol: &'static str,
    session: F,
) -> std::io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> S,
    S: Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        let (socket, peer) = listener.accept().await?;
        // Replies are small writes: without this, Nagle and the client's
        // delayed ACK cost ~40 ms per pipelined exchange.
        let _ = socket.set_nodelay(true);
        let served = session(socket, peer);
        tokio::spawn(async move {
            let _open = crate::metrics::METRICS.session(protocol);
            if let Err(e) = served.await {
                tracing::debug!(%peer, "{protocol} session: {e}");
            }
        });
    }
}

/// Like `accept`, for implicit TLS (IMAPS, POP3S, LMTP over TLS): each
/// connection first completes its handshake within `handshake` (the
/// pre-login timeout), on its own task, so a silent client holds up
/// nobody.
pub async fn accept_tls<F, S>(
    listener: TcpListener,
    protocol: &'static str,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake: Duration,
    session: F,
) -> std::io::Result<()>
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr) -> S + Clone + Send + 'static,
    S: Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        let (socket, peer) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let (acceptor, session) = (acceptor.clone(), session.clone());
        tokio::spawn(async move {
            let _open = crate::metrics::METRICS.session(protocol);
            let served = async move {
                let tls = tokio::time::timeout(handshake, acceptor.accept(socket))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no TLS handshake in time",
                        )
                    })??;
                session(tls, peer).await
            };
            if let Err(e) = served.await {
                tracing::debug!(%peer, "{protocol} (TLS) session: {e}");
            }
        });
    }
}

/// A session's pre-login deadline: until the client logs in, each read,
/// write and TLS handshake waits at most what is left of it, however busy
/// the client keeps the connection.
pub struct Deadline(tokio::time::Instant);

impl Deadline {
    pub fn after(total: Duration) -> Self {
        Self(tokio::time::Instant::now() + total)
    }

    /// How long the next wait may be: `after_login` once logged in.
    pub fn patience(&self, logged_in: bool, after_login: Duration) -> Duration {
        if logged_in {
            after_login
        } else {
            self.0
                .saturating_duration_since(tokio::time::Instant::now())
        }
    }
}

/// Writes and flushes `data` within `limit`: a client that reads nothing
/// for that long is gone.
pub async fn write_within<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    let write = async {
        w.write_all(data).await?;
        w.flush().await
    };
    tokio::time::timeout(limit, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client not reading"))?
}

/// A client stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A line as read: its bytes (line end kept) and whether it was complete.
pub struct Line {
    pub bytes: Vec<u8>,
    pub complete: bool,
}

impl Line {
    /// The text without its line end (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    }
}

/// Reads up to and including `\n`, at most `max` bytes; `None` at EOF.
pub async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut bytes = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!bytes.is_empty()).then_some(Line {
                bytes,
                complete: false,
            }));
        }
        let room = max - bytes.len();
        let take = buf.len().min(room);
        match buf[..take].iter().position(|&b| b == b'\n') {
            Some(i) => {
                bytes.extend_from_slice(&buf[..=i]);
                r.consume(i + 1);
                return Ok(Some(Line {
                    bytes,
                    complete: true,
                }));
            }
            None => {
                bytes.extend_from_slice(&buf[..take]);
                r.consume(take);
                if bytes.len() == max {
                    return Ok(Some(Line {
                        bytes,
                        complete: false,
                    }));
                }
            }
        }
    }
}

/// Skips the rest of an over-long line; false when input ends first.
pub async fn skip_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
) -> std::io::Result<bool> {
    loop {
        match read_line(r, max).await? {
            Some(more) if more.complete => return Ok(true),
            Some(_) => {}
            None => return Ok(false),
        }
    }
}

/// A lingering close: closing with unread input would reset the
/// connection and could destroy our last reply in flight, so input is
/// drained for a moment after our side is shut.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    if io.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 16 * 1024];
    let drained = async {
        let mut total = 0usize;
        while total < (1 << 20) {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drained).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_skippable() {
        let input: &[u8] = b"short\r\nthis one is far too long\r\nnext\r\ntail";
        let mut r = BufReader::new(input);
        let first = read_line(&mut r, 10).await.unwrap().unwrap();
        assert!(first.complete);
        assert_eq!(first.text(), "short");
        let long = read_line(&mut r, 10).await.unwrap().unwrap();
        assert!(!long.complete);
        assert!(skip_line(&mut r, 10).await.unwrap());
        assert_eq!(read_line(&mut r, 10).await.unwrap().unwrap().text(), "next");
        let tail = read_line(&mut r, 10).await.unwrap().unwrap();
        assert!(!tail.complete);
        assert!(read_line(&mut r, 10).await.unwrap().is_none());
    }
}
