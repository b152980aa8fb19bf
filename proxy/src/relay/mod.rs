//! A logged-in session: bytes pass between client and back-end untouched,
//! while a tracker follows where commands and responses end. When the
//! session is kicked (an operator's kick, a drain) it ends at a command
//! boundary: the client's next command is not passed on, the commands
//! already sent get their answers, then the client gets its protocol's
//! goodbye (`* BYE [UNAVAILABLE]`, `-ERR [SYS/TEMP]`) and both connections
//! close. A session that reaches no boundary within the grace is cut.
mod track;

use std::{io, sync::Mutex, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::watch,
};

pub use track::{Imap, Pop3};

use crate::{liveness::Watch, registry::Handle, stream::Stream};

/// Where a protocol's commands and responses end.
pub trait Tracker: Send {
    /// Client bytes. With `stop`, takes them only up to the end of the
    /// command in progress (none between commands); returns how many
    /// were taken.
    fn up(&mut self, bytes: &[u8], stop: bool) -> usize;
    fn up_at_boundary(&self) -> bool;
    /// Back-end bytes.
    fn down(&mut self, bytes: &[u8]);
    /// Between responses, with no command waiting for its answer (an IMAP
    /// IDLE counts as waiting for nothing).
    fn quiet(&self) -> bool;
    /// What the client is told when the session is ended for it.
    fn goodbye(&self) -> &'static [u8];
}

#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The back-end closed (after LOGOUT or QUIT, or on its own).
    Closed,
    /// Ended at a command boundary after a kick.
    Kicked,
    /// Kicked, but no boundary came within the grace.
    Cut,
}

/// Relays until the back-end closes or a kick ends the session. First the
/// login reply and whatever each side sent early goes on.
pub struct Relay<'a, T> {
    pub tracker: T,
    pub handle: &'a Handle,
    pub grace: Duration,
}

const CHUNK: usize = 16 * 1024;

/// The tracker and the back-end probing it decides: one lock per chunk.
struct Follow<T> {
    tracker: T,
    watch: Watch,
}

impl<T: Tracker> Follow<T> {
    /// After bytes either way: an answer is due from the back-end unless
    /// the session is quiet.
    fn settle(&mut self) {
        self.watch.answer_due(!self.tracker.quiet());
    }
}

impl<T: Tracker> Relay<'_, T> {
    pub async fn run(
        self,
        mut client: Stream,
        to_client: &[u8],
        client_pending: &[u8],
        mut backend: Stream,
        backend_pending: &[u8],
    ) -> io::Result<End> {
        let Relay {
            mut tracker,
            handle,
            grace,
        } = self;
        client.write_all(to_client).await?;
        tracker.down(backend_pending);
        client.write_all(backend_pending).await?;
        client.flush().await?;
        tracker.up(client_pending, false);
        backend.write_all(client_pending).await?;
        backend.flush().await?;
        let mut follow = Follow {
            tracker,
            watch: Watch::new(backend.tcp())?,
        };
        follow.settle();
        let follow = Mutex::new(follow);
        let lock = || follow.lock().unwrap_or_else(|e| e.into_inner());
        let (mut client_rx, mut client_tx) = tokio::io::split(client);
        let (mut backend_rx, mut backend_tx) = tokio::io::split(backend);
        let (stopped_tx, mut stopped) = watch::channel(false);
        // Client to back-end, until the client closes or, kicked, reaches
        // a command boundary.
        let up = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let kicked = handle.is_kicked();
                if kicked && lock().tracker.up_at_boundary() {
                    stopped_tx.send_replace(true);
                    return;
                }
                let n = tokio::select! {
                    r = client_rx.read(&mut buf) => r.unwrap_or(0),
                    _ = handle.kicked(), if !kicked => continue,
                };
                if n == 0 {
                    let _ = backend_tx.shutdown().await;
                    return;
                }
                let take = {
                    let mut f = lock();
                    let take = f.tracker.up(&buf[..n], kicked);
                    f.settle();
                    take
                };
                if backend_tx.write_all(&buf[..take]).await.is_err() {
                    return;
                }
                if take < n {
                    // What came behind the boundary is never sent.
                    stopped_tx.send_replace(true);
                    return;
                }
            }
        };
        // Back-end to client, until the back-end closes or the kicked
        // session is quiet.
        let down = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let up_stopped = *stopped.borrow();
                if up_stopped && lock().tracker.quiet() {
                    let goodbye = lock().tracker.goodbye();
                    client_tx.write_all(goodbye).await?;
                    let _ = client_tx.shutdown().await;
                    return Ok(End::Kicked);
                }
                let n = tokio::select! {
                    r = backend_rx.read(&mut buf) => r?,
                    _ = stopped.wait_for(|s| *s), if !up_stopped => continue,
                };
                if n == 0 {
                    let _ = client_tx.shutdown().await;
                    return Ok(End::Closed);
                }
                {
                    let mut f = lock();
                    f.tracker.down(&buf[..n]);
                    f.settle();
                }
                client_tx.write_all(&buf[..n]).await?;
            }
        };
        let cut = async {
            handle.kicked().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(up, down, cut);
        let mut up_done = false;
        loop {
            tokio::select! {
                end = &mut down => return end,
                _ = &mut up, if !up_done => up_done = true,
                _ = &mut cut => return Ok(End::Cut),
            }
        }
    }
}

#[cfg(test)]
mod tests;
