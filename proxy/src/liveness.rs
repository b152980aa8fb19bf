//! How soon a back-end that went silent is noticed. When an instance's
//! node is cut off, a connection with nothing in flight (LOGIN sent and
//! acknowledged, the answer not yet sent; a relayed IDLE) hears nothing:
//! no retransmission runs, so no error comes until a timeout, however
//! soon the instance serves again on another node. A keepalive probe does
//! run: once the instance's address has moved, the new holder answers it
//! with a reset, and the proxy knows within a probe interval. A back-end
//! that is only slow (a long fsync, a hung process) is never cut short:
//! its kernel answers the probes.
use std::{io, time::Duration};

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// What the connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The greeting, TLS handshake and login: answers due at once, and a
    /// client waiting on them. One probe per second of silence.
    Login,
    /// A logged-in session, idle for minutes (IDLE): a probe per 10 s of
    /// silence, so that a dead back-end ends the client's session in
    /// ~16 s rather than when the client next speaks.
    Session,
}

impl Phase {
    /// (silence before the first probe, between probes, unanswered probes
    /// before the connection fails).
    fn timing(self) -> (Duration, Duration, u32) {
        match self {
            Phase::Login => (Duration::from_secs(1), Duration::from_secs(1), 3),
            Phase::Session => (Duration::from_secs(10), Duration::from_secs(2), 3),
        }
    }
}

/// Sets the keepalive of a back-end connection for `phase`.
pub fn watch(tcp: &TcpStream, phase: Phase) -> io::Result<()> {
    let (time, interval, retries) = phase.timing();
    let keepalive = TcpKeepalive::new()
        .with_time(time)
        .with_interval(interval)
        .with_retries(retries);
    SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}
