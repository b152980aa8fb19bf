//! How soon a back-end that went silent is noticed. When an instance's
//! node is cut off, a connection with nothing in flight (LOGIN or SELECT
//! sent and acknowledged, the answer not yet sent; a relayed IDLE) hears
//! nothing: no retransmission runs, so no error comes until a timeout,
//! however soon the instance serves again on another node. A keepalive
//! probe does run: once the instance's address has moved, the new holder
//! answers it with a reset, and the proxy knows within a probe interval.
//! A back-end that is only slow (a long fsync, a hung process) is never
//! cut short: its kernel answers the probes.
use std::{io, os::fd::AsFd, time::Duration};

use socket2::{SockRef, Socket, TcpKeepalive};
use tokio::net::TcpStream;

/// Silence before the first probe while an answer is due (the greeting,
/// the login, a command's response): a client is waiting on it.
const ANSWER_DUE: Duration = Duration::from_secs(1);
/// Silence before the first probe while nothing is due (between
/// commands, IDLE): sessions idle for hours cost a probe per 10 s each,
/// and a dead back-end ends its client's session within ~13 s rather
/// than when the client next speaks.
const QUIET: Duration = Duration::from_secs(10);
/// Between probes, and how many go unanswered before the connection
/// fails.
const INTERVAL: Duration = Duration::from_secs(1);
const PROBES: u32 = 3;

fn keepalive(time: Duration) -> TcpKeepalive {
    TcpKeepalive::new()
        .with_time(time)
        .with_interval(INTERVAL)
        .with_retries(PROBES)
}

/// A new back-end connection: an answer (the greeting) is due. With
/// bytes in flight instead (a command or a message not yet acknowledged),
/// retransmissions find the new holder; they are kept at one RTO apart
/// (thin-stream linear timeouts: a command is a thin stream) rather than
/// doubling to 1.6 and 3.2 s while the address moves.
pub fn connected(tcp: &TcpStream) -> io::Result<()> {
    let socket = SockRef::from(tcp);
    // Best effort: a kernel without it still retransmits, only later.
    let _ = socket.set_tcp_thin_linear_timeouts(true);
    socket.set_tcp_keepalive(&keepalive(ANSWER_DUE))
}

/// A relayed session's back-end connection, probed soon while a command
/// waits for its answer and slowly while the session is quiet.
pub struct Watch {
    /// The same socket (a second descriptor: the relay owns the stream).
    socket: Socket,
    due: bool,
}

impl Watch {
    pub fn new(tcp: &TcpStream) -> io::Result<Self> {
        let socket = Socket::from(tcp.as_fd().try_clone_to_owned()?);
        socket.set_tcp_keepalive(&keepalive(QUIET))?;
        Ok(Self { socket, due: false })
    }

    /// Whether an answer is due now; the socket is changed only when
    /// that changes (a command and its answer: two calls).
    pub fn answer_due(&mut self, due: bool) {
        if due != self.due {
            self.due = due;
            let time = if due { ANSWER_DUE } else { QUIET };
            // Only the idle time differs; a failure leaves the last one.
            let _ = self
                .socket
                .set_tcp_keepalive(&TcpKeepalive::new().with_time(time));
        }
    }
}
