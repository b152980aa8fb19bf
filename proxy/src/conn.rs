//! A buffered connection for the pre-login phases: bounded line reads with
//! an idle timeout (and, before login, a deadline for the whole phase),
//! writes and the TLS handshake bounded by the same timeout, and the
//! STARTTLS switch (which discards any plain text that arrived behind the
//! STARTTLS command).
use std::{
    io,
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::stream::Stream;

pub enum Line {
    /// A line without its CRLF (a bare LF is accepted as the end too).
    Text(Vec<u8>),
    /// Longer than allowed; the rest of it was skipped.
    TooLong,
    /// The peer closed, or stayed silent past the timeout.
    End,
}

pub struct Conn {
    stream: Option<Stream>,
    /// Bytes read but not yet consumed (pipelined input waits here).
    pub buf: Vec<u8>,
    idle: Duration,
    /// Reads end here whatever the idle timeout says (the pre-login phase).
    deadline: Option<Instant>,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Conn {
    pub fn new(stream: Stream, idle: Duration) -> Self {
        Self {
            stream: Some(stream),
            buf: Vec::new(),
            idle,
            deadline: None,
        }
    }

    /// Reads past `deadline` end the input: a client must log in by then,
    /// however busy it keeps the connection.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().expect("stream present")
    }

    pub fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::is_tls)
    }

    /// The stream and the unread input, for splicing.
    pub fn into_parts(mut self) -> (Stream, Vec<u8>) {
        (
            self.stream.take().expect("stream present"),
            std::mem::take(&mut self.buf),
        )
    }

    /// Writes and flushes; a client that reads nothing for the idle
    /// timeout is given up.
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let idle = self.idle;
        let stream = self.stream();
        let write = async {
            stream.write_all(data).await?;
            stream.flush().await
        };
        tokio::time::timeout(idle, write)
            .await
            .map_err(|_| timed_out("write"))?
    }

    /// Writes without flushing: replies to pipelined commands go out
    /// together once the input is used up.
    pub async fn queue(&mut self, data: &[u8]) -> io::Result<()> {
        let idle = self.idle;
        tokio::time::timeout(idle, self.stream().write_all(data))
            .await
            .map_err(|_| timed_out("write"))?
    }

    pub async fn flush_if_idle(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            let idle = self.idle;
            tokio::time::timeout(idle, self.stream().flush())
                .await
                .map_err(|_| timed_out("write"))??;
        }
        Ok(())
    }

    pub async fn starttls(&mut self, acceptor: TlsAcceptor) -> io::Result<()> {
        self.buf.clear();
        let plain = self.stream.take().expect("stream present");
        let handshake = tokio::time::timeout(self.idle, plain.accept_tls(acceptor))
            .await
            .map_err(|_| timed_out("TLS handshake"))??;
        self.stream = Some(handshake);
        Ok(())
    }

    /// Reads more input; false at end of input or after the idle timeout.
    pub async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        let idle = match self.deadline {
            Some(d) => self.idle.min(d.saturating_duration_since(Instant::now())),
            None => self.idle,
        };
        if idle.is_zero() {
            return Ok(false);
        }
        match tokio::time::timeout(idle, self.stream().read(&mut chunk)).await {
            Ok(n) => {
                let n = n?;
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n > 0)
            }
            Err(_) => Ok(false),
        }
    }

    /// The next line; one over `max` is skipped to its end (the session
    /// goes on with the next line).
    pub async fn read_line(&mut self, max: usize) -> io::Result<Line> {
        self.line_within(max, true).await
    }

    /// The next line, or `TooLong` as soon as more than `max` bytes came
    /// without its end (for a session that ends there).
    pub async fn read_line_or_stop(&mut self, max: usize) -> io::Result<Line> {
        self.line_within(max, false).await
    }

    async fn line_within(&mut self, max: usize, skip_long: bool) -> io::Result<Line> {
        let mut too_long = false;
        // Bytes already searched for the line end.
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=scanned + pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(if too_long || line.len() > max {
                    Line::TooLong
                } else {
                    Line::Text(line)
                });
            }
            scanned = self.buf.len();
            if self.buf.len() > max {
                self.buf.clear();
                scanned = 0;
                if !skip_long {
                    return Ok(Line::TooLong);
                }
                too_long = true;
            }
            self.flush_if_idle().await?;
            if !self.fill().await? {
                return Ok(Line::End);
            }
        }
    }
}
