//! The client side of an IMAP connection, as both the proxy (logging in on
//! a back-end, then splicing) and provisioning (a master-user session) use
//! it: read the greeting, send a command (waiting for `+` before every
//! synchronising literal), read one response at a time with its raw
//! bytes. imap-codec encodes and parses; every read is bounded in size and,
//! when asked, in time.
//!
//! [`frame`] is the server side's first step: where one command ends in
//! the input, within configured bounds; [`units`] finds where commands or
//! responses end in a stream that is relayed rather than buffered.
use std::time::Duration;

use imap_codec::{
    CommandCodec, GreetingCodec, ResponseCodec,
    decode::{Decoder, GreetingDecodeError, ResponseDecodeError},
    encode::{Encoder, Fragment},
    imap_types::{
        IntoStatic,
        command::Command,
        core::LiteralMode,
        response::{Greeting, Response},
    },
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub mod frame;
pub mod units;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer in {0:?}")]
    Timeout(Duration),
    #[error("connection closed")]
    Closed,
    /// A response (with its literals) above the connection's bound.
    #[error("a response of more than {0} bytes")]
    TooLarge(usize),
    #[error("{what} does not parse: {head:?}")]
    Garbled { what: &'static str, head: String },
    /// The server answered a synchronising literal with this, not `+`.
    #[error("literal refused: {0:?}")]
    LiteralRefused(Box<Response<'static>>),
}

/// One response and the bytes it was sent as.
pub struct Received {
    pub response: Response<'static>,
    pub raw: Vec<u8>,
}

pub struct Wire<S> {
    stream: S,
    buf: Vec<u8>,
    max_response: usize,
    timeout: Option<Duration>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    /// `max_response` bounds one response with its literals; `timeout`,
    /// when set, bounds every read and write.
    pub fn new(stream: S, max_response: usize, timeout: Option<Duration>) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            max_response,
            timeout,
        }
    }

    /// The stream and what was read from it but not yet decoded.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.stream, self.buf)
    }

    pub async fn greeting(&mut self) -> Result<Greeting<'static>, WireError> {
        loop {
            match GreetingCodec::default().decode(&self.buf) {
                Ok((rem, greeting)) => {
                    let greeting = greeting.into_static();
                    let used = self.buf.len() - rem.len();
                    self.buf.drain(..used);
                    return Ok(greeting);
                }
                Err(GreetingDecodeError::Incomplete) => self.fill().await?,
                Err(_) => return Err(self.garbled("the greeting")),
            }
        }
    }

    /// Sends `command`, waiting for `+` before each synchronising literal.
    pub async fn command(&mut self, command: &Command<'_>) -> Result<(), WireError> {
        for fragment in CommandCodec::default().encode(command) {
            match fragment {
                Fragment::Line { data } => self.write(&data).await?,
                Fragment::Literal { data, mode } => {
                    if mode == LiteralMode::Sync {
                        self.flush().await?;
                        let answer = self.response().await?;
                        if !matches!(answer.response, Response::CommandContinuationRequest(_)) {
                            return Err(WireError::LiteralRefused(Box::new(answer.response)));
                        }
                    }
                    self.write(&data).await?;
                }
            }
        }
        self.flush().await
    }

    /// Sends a line the command codec does not make (an AUTHENTICATE
    /// continuation, DONE), CRLF included.
    pub async fn line(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.write(bytes).await?;
        self.flush().await
    }

    /// The next response, whole (literals included).
    pub async fn response(&mut self) -> Result<Received, WireError> {
        loop {
            match ResponseCodec::default().decode(&self.buf) {
                Ok((rem, response)) => {
                    let response = response.into_static();
                    let used = self.buf.len() - rem.len();
                    let raw = self.buf.drain(..used).collect();
                    return Ok(Received { response, raw });
                }
                Err(ResponseDecodeError::Incomplete) => self.fill().await?,
                Err(ResponseDecodeError::LiteralFound { length }) => {
                    if length as usize > self.max_response {
                        return Err(WireError::TooLarge(self.max_response));
                    }
                    self.fill().await?
                }
                Err(_) => return Err(self.garbled("a response")),
            }
        }
    }

    fn garbled(&self, what: &'static str) -> WireError {
        let head = String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)]).into_owned();
        WireError::Garbled { what, head }
    }

    async fn bounded<T>(
        limit: Option<Duration>,
        io: impl Future<Output = std::io::Result<T>>,
    ) -> Result<T, WireError> {
        match limit {
            Some(limit) => tokio::time::timeout(limit, io)
                .await
                .map_err(|_| WireError::Timeout(limit))?
                .map_err(WireError::from),
            None => Ok(io.await?),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        Self::bounded(self.timeout, self.stream.write_all(bytes)).await
    }

    async fn flush(&mut self) -> Result<(), WireError> {
        Self::bounded(self.timeout, self.stream.flush()).await
    }

    async fn fill(&mut self) -> Result<(), WireError> {
        if self.buf.len() > self.max_response {
            return Err(WireError::TooLarge(self.max_response));
        }
        let mut chunk = vec![0u8; 64 << 10];
        let n = Self::bounded(self.timeout, self.stream.read(&mut chunk)).await?;
        if n == 0 {
            return Err(WireError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::imap_types::command::CommandBody;

    use super::*;

    /// A server script on the other end of a pipe.
    async fn talk(
        server_says: &'static [u8],
    ) -> (
        Wire<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<Vec<u8>>,
    ) {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let heard = tokio::spawn(async move {
            server.write_all(server_says).await.unwrap();
            let mut heard = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_millis(200), server.read_to_end(&mut heard))
                    .await;
            heard
        });
        (
            Wire::new(client, 1 << 20, Some(Duration::from_secs(5))),
            heard,
        )
    }

    #[tokio::test]
    async fn greeting_then_responses_with_literals_and_their_bytes() {
        let (mut wire, _) =
            talk(b"* OK ready\r\n* 1 FETCH (BODY[] {5}\r\nhello)\r\na OK done\r\n").await;
        wire.greeting().await.unwrap();
        let fetch = wire.response().await.unwrap();
        assert_eq!(fetch.raw, b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n");
        let done = wire.response().await.unwrap();
        assert!(matches!(done.response, Response::Status(_)));
    }

    #[tokio::test]
    async fn a_refused_literal_and_a_garbled_response_are_errors() {
        let (mut wire, _) = talk(b"* OK ready\r\na NO [TOOBIG] no\r\n").await;
        wire.greeting().await.unwrap();
        let login = Command::new("a", CommandBody::login("ann", "pass\r\nword").unwrap()).unwrap();
        assert!(matches!(
            wire.command(&login).await,
            Err(WireError::LiteralRefused(_))
        ));
        let (mut wire, _) = talk(b"this is not IMAP\r\n").await;
        assert!(matches!(
            wire.greeting().await,
            Err(WireError::Garbled { .. })
        ));
    }

    #[tokio::test]
    async fn an_oversized_literal_is_refused_before_it_is_read() {
        let (mut wire, _) = talk(b"* OK ready\r\n* 1 FETCH (BODY[] {99999999}\r\n").await;
        wire.greeting().await.unwrap();
        assert!(matches!(wire.response().await, Err(WireError::TooLarge(_))));
    }
}
