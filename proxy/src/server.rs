//! Listeners, the per-connection start (PROXY header, implicit TLS), the
//! balancer's agent endpoint, `/metrics`, and the graceful drain.
use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use fulmar_daemon::network::any_contains;
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpSocket, TcpStream},
};

use crate::{
    config::{Listener, ListenerTls, Protocol},
    imap, pop3, proxy_protocol,
    session::{Ctx, Peer},
    smtp,
    stream::Stream,
};

/// Time allowed for a PROXY header or a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown starts, the agent says `drain` at least this long before
/// the daemon may exit, so the balancer has seen it.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Binds every listener (before anything is spawned, so a taken port
/// fails the start).
pub fn bind(ctx: &Ctx) -> io::Result<Vec<(Listener, TcpListener)>> {
    ctx.config
        .listen
        .iter()
        .map(|l| Ok((l.clone(), listen(l.address)?)))
        .collect()
}

fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(address)
        .map_err(|e| io::Error::new(e.kind(), format!("{address}: {e}")))?;
    socket.listen(4096)
}

/// Serves until `shutdown` resolves, then drains: the agent answers
/// `drain`, listeners stay open for the balancer's in-flight flows, and
/// the call returns once sessions are done or the drain timeout passed.
pub async fn serve(
    ctx: Arc<Ctx>,
    listeners: Vec<(Listener, TcpListener)>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut tasks = Vec::new();
    for (listener, socket) in listeners {
        tasks.push(tokio::spawn(accept_loop(ctx.clone(), listener, socket)));
    }
    if let Some(address) = ctx.config.agent_address {
        let socket = listen(address)?;
        tasks.push(tokio::spawn(agent(ctx.clone(), socket)));
    }
    if let Some(address) = ctx.config.metrics_address {
        let socket = listen(address)?;
        let m = ctx.metrics.clone();
        let render = Arc::new(move || m.render());
        tasks.push(tokio::spawn(fulmar_daemon::metrics::serve(socket, render)));
    }
    shutdown.await;
    let started = Instant::now();
    let timeout = ctx.config.session.drain_timeout;
    // Sessions are asked to end over three quarters of the timeout, each
    // at a command boundary, so few are left to cut when it is over.
    crate::admin::drain::start(ctx.clone(), timeout * 3 / 4);
    tracing::info!(
        sessions = ctx.metrics.active_sessions(),
        "draining for up to {timeout:?}"
    );
    while started.elapsed() < timeout
        && (started.elapsed() < DRAIN_GRACE || ctx.metrics.active_sessions() > 0)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in tasks {
        task.abort();
    }
    tracing::info!(left = ctx.metrics.active_sessions(), "drain over");
    Ok(())
}

async fn accept_loop(ctx: Arc<Ctx>, listener: Listener, socket: TcpListener) {
    loop {
        match socket.accept().await {
            Ok((tcp, client)) => {
                let ctx = ctx.clone();
                let listener = listener.clone();
                tokio::spawn(async move {
                    let protocol = listener.protocol;
                    if let Err(e) = session(ctx, listener, tcp, client).await {
                        tracing::debug!(%client, protocol = protocol.name(), "session ended: {e}");
                    }
                });
            }
            // Out of descriptors and the like: back off instead of spinning.
            Err(e) => {
                tracing::warn!(address = %listener.address, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn session(
    ctx: Arc<Ctx>,
    listener: Listener,
    mut tcp: TcpStream,
    client: SocketAddr,
) -> io::Result<()> {
    let metrics = ctx.metrics.clone();
    let _active = metrics.session(listener.protocol);
    tcp.set_nodelay(true)?;
    let local = tcp.local_addr()?;
    let client = if listener.proxy_protocol {
        if !any_contains(&listener.proxy_protocol_from, client.ip()) {
            tracing::warn!(%client, address = %listener.address, "PROXY header from outside proxy_protocol_from: closed");
            return Ok(());
        }
        tokio::time::timeout(HANDSHAKE_TIMEOUT, proxy_protocol::read_header(&mut tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "PROXY header"))??
            .unwrap_or(client)
    } else {
        client
    };
    let Some(_slot) = ctx.connections.admit(client.ip()) else {
        tracing::warn!(%client, address = %listener.address, "connection limit reached: refused");
        // A plain connection is told in its protocol's words; a TLS one
        // is just closed (a handshake is what the limit saves).
        if listener.tls != ListenerTls::Implicit {
            let line: &[u8] = match listener.protocol {
                Protocol::Imap => b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n",
                Protocol::Pop3 => b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n",
                Protocol::Smtp | Protocol::Submission => {
                    b"421 4.7.0 Too many connections, try again later\r\n"
                }
            };
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.write_all(line)).await;
        }
        return Ok(());
    };
    let stream = if listener.tls == ListenerTls::Implicit {
        let acceptor = ctx
            .tls
            .as_ref()
            .expect("config checked: TLS present")
            .acceptor();
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
        Stream::Server(Box::new(tls))
    } else {
        Stream::Plain(tcp)
    };
    let peer = Peer::new(&ctx, listener.protocol, client, local);
    match listener.protocol {
        Protocol::Imap => imap::serve(ctx, listener, stream, peer).await,
        Protocol::Pop3 => pop3::serve(ctx, listener, stream, peer).await,
        Protocol::Smtp | Protocol::Submission => smtp::serve(ctx, listener, stream, peer).await,
    }
}

/// The balancer's agent check: one line in HAProxy's words, then close.
async fn agent(ctx: Arc<Ctx>, socket: TcpListener) {
    while let Ok((mut tcp, _)) = socket.accept().await {
        let word: &[u8] = if ctx.draining() {
            b"drain\n"
        } else {
            b"up ready\n"
        };
        let _ = tcp.write_all(word).await;
    }
}
