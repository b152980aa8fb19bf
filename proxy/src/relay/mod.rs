//! A logged-in session: bytes pass between client and back-end untouched,
//! while a tracker follows where commands and responses end. When the
//! session is kicked (an operator's kick, a drain) it ends at a command
//! boundary: the client's next command is not passed on, the commands
//! already sent get their answers, then the client gets its protocol's
//! goodbye (`* BYE [UNAVAILABLE]`, `-ERR [SYS/TEMP]`) and both connections
//! close. A session that reaches no boundary within the grace is cut.
//!
//! IMAP's COMPRESS DEFLATE is the relay's own (`Own`): it is not passed
//! on, it is answered in its turn, and from then on the client's side is
//! DEFLATE both ways while the back-end's stays plain (the tracker needs to
//! see the commands; compression within the site would cost CPU on both
//! tiers for nothing). A first line that may be such a command is held back
//! until it ends, so none of it reaches the back-end.
mod track;

use std::{io, sync::Mutex, time::Duration};

use fulmar_mailproto::deflate;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{mpsc, oneshot, watch},
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
    /// How many of the client bytes fed last are an unfinished first line
    /// that may yet be a command the relay answers itself: held back.
    fn up_unfinished(&self) -> u64 {
        0
    }
    /// After `up`: the command it stopped after, which the relay answers
    /// itself instead of passing it on, and its length.
    fn own(&mut self) -> Option<(Own, u64)> {
        None
    }
}

/// A client command the relay answers itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Own {
    /// IMAP COMPRESS DEFLATE (by its tag): answered OK once every command
    /// before it is answered; from then on the client's side of the
    /// session is DEFLATE both ways.
    Compress(String),
    /// A second COMPRESS: refused.
    AlreadyCompressed(String),
}

impl Own {
    /// The tagged answer.
    fn answer(&self) -> String {
        match self {
            Own::Compress(tag) => format!("{tag} OK DEFLATE active\r\n"),
            Own::AlreadyCompressed(tag) => {
                format!("{tag} NO [COMPRESSIONACTIVE] DEFLATE is on already\r\n")
            }
        }
    }
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
        let (client_rx, client_tx) = tokio::io::split(client);
        let (mut backend_rx, mut backend_tx) = tokio::io::split(backend);
        let (stopped_tx, mut stopped) = watch::channel(false);
        // Commands the relay answers itself, to the side that writes to
        // the client, which answers each in its turn and says when it did.
        let (own_tx, mut own_rx) = mpsc::channel::<(Own, oneshot::Sender<()>)>(1);
        // Client to back-end, until the client closes or, kicked, reaches
        // a command boundary.
        let up = async {
            let mut client_rx: Box<dyn AsyncRead + Unpin + Send> = Box::new(client_rx);
            let mut buf = vec![0u8; CHUNK];
            // Read and not fed yet (what came behind a command answered here).
            let mut carry: Vec<u8> = Vec::new();
            // Fed and not passed on: the start of a line that may be such a command.
            let mut held: Vec<u8> = Vec::new();
            loop {
                let kicked = handle.is_kicked();
                if kicked && lock().tracker.up_at_boundary() {
                    stopped_tx.send_replace(true);
                    return;
                }
                let n = if carry.is_empty() {
                    tokio::select! {
                        r = client_rx.read(&mut buf) => r.unwrap_or(0),
                        _ = handle.kicked(), if !kicked => continue,
                    }
                } else {
                    let n = carry.len().min(CHUNK);
                    buf[..n].copy_from_slice(&carry[..n]);
                    carry.drain(..n);
                    n
                };
                if n == 0 {
                    let _ = backend_tx.write_all(&held).await;
                    let _ = backend_tx.shutdown().await;
                    return;
                }
                let (take, own, unfinished) = {
                    let mut f = lock();
                    let take = f.tracker.up(&buf[..n], kicked);
                    let own = f.tracker.own();
                    let unfinished = f.tracker.up_unfinished();
                    f.settle();
                    (take, own, unfinished)
                };
                let mut out = std::mem::take(&mut held);
                out.extend_from_slice(&buf[..take]);
                let keep = match &own {
                    // The command itself is not passed on.
                    Some((_, len)) => usize::try_from(*len).unwrap_or(usize::MAX),
                    None if take == n => usize::try_from(unfinished).unwrap_or(0),
                    None => 0,
                };
                let keep = keep.min(out.len());
                held = out.split_off(out.len() - keep);
                if backend_tx.write_all(&out).await.is_err() {
                    return;
                }
                let Some((own, _)) = own else {
                    if take < n {
                        // What came behind the boundary is never sent.
                        stopped_tx.send_replace(true);
                        return;
                    }
                    continue;
                };
                held.clear();
                carry.splice(0..0, buf[take..n].iter().copied());
                let compress = matches!(own, Own::Compress(_));
                let (done_tx, done) = oneshot::channel();
                if own_tx.send((own, done_tx)).await.is_err() || done.await.is_err() {
                    return;
                }
                if compress {
                    // The client compresses from right after its command.
                    let pending = std::mem::take(&mut carry);
                    client_rx = Box::new(deflate::reader(client_rx, pending));
                }
            }
        };
        // Back-end to client, until the back-end closes or the kicked
        // session is quiet; and the answers to the commands the relay
        // takes itself, each once every command before it is answered.
        let down = async {
            let mut client_tx: Box<dyn AsyncWrite + Unpin + Send> = Box::new(client_tx);
            let mut buf = vec![0u8; CHUNK];
            let mut asked: Option<(Own, oneshot::Sender<()>)> = None;
            let mut deflating = false;
            loop {
                let up_stopped = *stopped.borrow();
                if up_stopped && lock().tracker.quiet() {
                    let goodbye = lock().tracker.goodbye();
                    client_tx.write_all(goodbye).await?;
                    let _ = client_tx.shutdown().await;
                    return Ok(End::Kicked);
                }
                if asked.is_some() && lock().tracker.quiet() {
                    let (own, done) = asked.take().expect("asked");
                    client_tx.write_all(own.answer().as_bytes()).await?;
                    client_tx.flush().await?;
                    if let Own::Compress(_) = own {
                        client_tx = Box::new(deflate::writer(client_tx));
                        deflating = true;
                    }
                    let _ = done.send(());
                }
                let n = tokio::select! {
                    r = backend_rx.read(&mut buf) => r?,
                    _ = stopped.wait_for(|s| *s), if !up_stopped => continue,
                    a = own_rx.recv(), if asked.is_none() => {
                        asked = a;
                        continue;
                    }
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
                // A DEFLATE writer holds what it has not flushed; a plain
                // one has nothing to flush.
                if deflating {
                    client_tx.flush().await?;
                }
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
