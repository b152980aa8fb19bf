//! The control socket: one JSON `Request` line in, `Response` lines out
//! (one, or a stream for `monitor`). Only root (or the daemon's own user)
//! can connect: the socket is 0600 from the moment it appears, and the
//! peer's credentials are checked.
use std::{
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    sync::Arc,
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use super::Daemon;
use crate::{
    command::{self, CheckDefaults, Command},
    edit::apply_batch,
    model::Desired,
    rows::{Reply, Request, Response},
};

/// Longest request line: a batch of a few thousand lines.
const MAX_REQUEST: u64 = 16 << 20;

pub async fn serve(daemon: Arc<Daemon>, path: std::path::PathBuf) -> Result<()> {
    let path = path.as_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = bind_private(path)?;
    tracing::info!("control socket {}", path.display());
    // The socket's owner is this daemon's user.
    let me = std::fs::metadata(path)?.uid();
    loop {
        let (conn, _) = listener.accept().await?;
        // The mode already keeps others out; the peer's uid says so again.
        match conn.peer_cred() {
            Ok(c) if c.uid() == 0 || c.uid() == me => {}
            other => {
                tracing::warn!("control socket: refused a client ({other:?})");
                continue;
            }
        }
        let daemon = daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = client(daemon, conn).await {
                tracing::debug!("control client: {e}");
            }
        });
    }
}

/// Binds the socket where nobody can reach it yet (a fresh 0700 directory
/// beside `path`), makes it 0600 there, then renames it into place: there
/// is no moment at which it exists at `path` with the umask's mode.
fn bind_private(path: &std::path::Path) -> Result<UnixListener> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path.file_name().context("control_socket names no file")?;
    let private = dir.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("creating {}", private.display()))?;
    let staged = private.join("sock");
    let bound = UnixListener::bind(&staged)
        .with_context(|| format!("binding {}", staged.display()))
        .and_then(|l| {
            std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
            // A socket left by a killed daemon is replaced: nobody listens
            // on it any more.
            std::fs::rename(&staged, path)
                .with_context(|| format!("moving the socket to {}", path.display()))?;
            Ok(l)
        });
    let _ = std::fs::remove_dir_all(&private);
    bound
}

async fn client(daemon: Arc<Daemon>, conn: UnixStream) -> Result<()> {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => return send(&mut write, &Response::Error(format!("bad request: {e}"))).await,
    };
    let response = match request {
        Request::Batch { lines } => {
            change(&daemon, |desired, defaults| {
                Ok(apply_batch(desired, &lines, defaults)?)
            })
            .await
        }
        Request::Command { argv, stats } => match command::parse(&argv) {
            Err(e) => Err(e.into()),
            Ok(Command::Monitor) => return monitor(&daemon, &mut write).await,
            Ok(c) if c.is_config() => {
                change(&daemon, |desired, defaults| {
                    let mut next = desired.clone();
                    next.apply(&c, defaults)?;
                    Ok(next)
                })
                .await
            }
            Ok(c) => query(&daemon, c, stats).await,
        },
    };
    let response = match response {
        Ok(reply) => Response::Ok(reply),
        Err(e) => Response::Error(e),
    };
    send(&mut write, &response).await
}

/// Streams every event until the client leaves.
async fn monitor(daemon: &Daemon, write: &mut tokio::net::unix::OwnedWriteHalf) -> Result<()> {
    let mut events = daemon.core.lock().expect("core lock").events.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => send(write, &Response::Ok(Reply::Event(event))).await?,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("a monitor fell {n} events behind");
            }
            Err(_) => return Ok(()),
        }
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, response: &Response) -> Result<()> {
    let mut text = serde_json::to_string(response)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    Ok(())
}

/// A configuration change: `edit` makes the next configuration from the
/// live one, which the daemon then applies and saves.
async fn change(
    daemon: &Arc<Daemon>,
    edit: impl FnOnce(&Desired, &CheckDefaults) -> Result<Desired, String>,
) -> Result<Reply, String> {
    let next = {
        let core = daemon.core.lock().expect("core lock");
        edit(&core.desired, &core.config.health)?
    };
    daemon.apply(next).await?;
    Ok(Reply::Done(String::new()))
}

async fn query(daemon: &Arc<Daemon>, command: Command, stats: u8) -> Result<Reply, String> {
    let core = daemon.core.clone();
    // Listing flows walks the whole table: off the async threads.
    tokio::task::spawn_blocking(move || {
        let mut core = core.lock().expect("core lock");
        Ok(match command {
            Command::ServiceShow(f) => Reply::Services(core.service_rows(f.as_ref(), stats)?),
            Command::RealShow(f) => Reply::Reals(core.real_rows(f.as_ref(), stats)?),
            Command::FlowShow(f) => Reply::Flows(core.flow_rows(f.as_ref())?),
            Command::FlowCount(f) => Reply::FlowCounts(core.flow_counts(f.as_ref())?),
            Command::FlowFlush(f) => Reply::Done(core.flush_flows(f.as_ref())?),
            Command::StatsShow => Reply::Stats(core.stats_row()?),
            Command::AttachShow => Reply::Attach(core.attach.clone()),
            Command::Save => Reply::Batch(core.desired.to_batch()),
            Command::Help(object) => Reply::Help(format!("{}\n", command::usage(object))),
            other => return Err(format!("{other:?} cannot be run here")),
        })
    })
    .await
    .map_err(|e| e.to_string())?
}
