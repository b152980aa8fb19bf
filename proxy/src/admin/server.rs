//! Serving the admin endpoint on its two doors.
use std::{
    io,
    path::Path,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use fulmar_daemon::secret::Secret;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, UnixListener},
};

use super::{Envelope, MAX_REQUEST, Reply, Request, Status, drain};
use crate::session::Ctx;

/// A silent admin client is dropped after this long.
const IDLE: Duration = Duration::from_secs(30);

/// Binds the Unix socket (mode 0600, replacing a stale one).
pub fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve_unix(ctx: Arc<Ctx>, listener: UnixListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(conversation(ctx.clone(), stream, None));
    }
}

/// The TLS door: the proxy's certificate, the token on every request.
pub async fn serve_tls(ctx: Arc<Ctx>, listener: TcpListener, token: Arc<Secret>) {
    while let Ok((tcp, peer)) = listener.accept().await {
        let ctx = ctx.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let Some(tls) = ctx.tls.as_ref() else { return };
            match tokio::time::timeout(IDLE, tls.acceptor().accept(tcp)).await {
                Ok(Ok(stream)) => conversation(ctx, stream, Some(token)).await,
                _ => tracing::debug!(%peer, "admin: TLS handshake failed"),
            }
        });
    }
}

async fn conversation<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: Arc<Ctx>,
    stream: S,
    token: Option<Arc<Secret>>,
) {
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read).take(u64::MAX);
    loop {
        let mut line = Vec::new();
        read.set_limit(MAX_REQUEST as u64 + 1);
        match tokio::time::timeout(IDLE, read.read_until(b'\n', &mut line)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
        let reply = if line.len() > MAX_REQUEST || !line.ends_with(b"\n") {
            Reply::Error(format!("request longer than {MAX_REQUEST} bytes"))
        } else {
            match serde_json::from_slice::<Envelope>(&line) {
                Err(e) => Reply::Error(format!("bad request: {e}")),
                Ok(env) if !authorized(token.as_deref(), env.token.as_deref()) => {
                    tracing::warn!("admin: request with a wrong token refused");
                    Reply::Error("wrong or missing token".into())
                }
                Ok(env) => answer(&ctx, env.request),
            }
        };
        let mut text = serde_json::to_string(&reply).expect("replies serialize");
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
        if matches!(reply, Reply::Error(_)) && line.len() > MAX_REQUEST {
            return;
        }
    }
}

/// The Unix door needs no token; the TLS door needs the right one
/// (compared in constant time).
fn authorized(expected: Option<&Secret>, given: Option<&str>) -> bool {
    match (expected, given) {
        (None, _) => true,
        (Some(want), Some(got)) => want.matches(got),
        (Some(_), None) => false,
    }
}

fn answer(ctx: &Arc<Ctx>, request: Request) -> Reply {
    match request {
        Request::Status => Reply::Status(status(ctx)),
        Request::List => Reply::Sessions(ctx.registry.list()),
        Request::Kick { select } => {
            // A login right after the kick must see the directory as it is
            // now (an account move has just switched mailHost).
            if let crate::registry::Selector::Account(account) = &select {
                ctx.directory.forget(account);
            }
            let n = ctx.registry.kick(&select);
            tracing::info!(?select, sessions = n, "admin: kick");
            Reply::Kicked(n)
        }
        Request::Drain { within_ms } => {
            let within = Duration::from_millis(within_ms);
            tracing::info!(?within, sessions = ctx.registry.len(), "admin: drain");
            drain::start(ctx.clone(), within);
            Reply::Status(status(ctx))
        }
        Request::Undrain => {
            tracing::info!("admin: undrain");
            drain::stop(ctx);
            Reply::Status(status(ctx))
        }
    }
}

pub fn status(ctx: &Ctx) -> Status {
    let (sessions, connecting, not_kicked) = ctx.registry.counts();
    Status {
        name: ctx.admin_name.clone(),
        sessions,
        connecting,
        not_kicked,
        draining: ctx.draining.load(Ordering::Relaxed),
    }
}
