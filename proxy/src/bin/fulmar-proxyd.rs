//! fulmar-proxyd: the front-end proxy daemon (see `fulmar_proxy`).
#![forbid(unsafe_code)]
use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use clap::Parser;
use fulmar_proxy::{
    admin,
    config::{DEFAULT_CONFIG, ProxyConfig},
    connections::Connections,
    directory::Directory,
    metrics::Metrics,
    penalty::{self, Penalties, sync::Codec},
    registry::Registry,
    server,
    session::Ctx,
    stream::{ServerTls, connector},
};
use tokio::signal::unix::{SignalKind, signal};

/// fulmar front-end proxy: serves IMAP, POP3 and SMTP on the configured
/// listeners, authenticates each login against LDAP and opens the session
/// on the account's home back-end (mailHost). SIGHUP reloads the TLS
/// certificate; SIGTERM drains (the agent answers "drain") and exits when
/// the sessions are done or the drain timeout has passed.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Daemon configuration (TOML).
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Check the configuration (and load the certificate), then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    fulmar_daemon::init_logging();
    let config = ProxyConfig::load(&args.config).map_err(anyhow::Error::msg)?;
    let bind_password = config.bind_password().map_err(anyhow::Error::msg)?;
    let tls = match &config.tls {
        Some(t) => Some(ServerTls::load(&t.certificate, &t.key).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let backend_tls = match &config.backend.tls_ca {
        Some(ca) if config.backend.tls => Some(connector(ca).map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let directory_tls = match &config.directory.tls_ca {
        Some(ca) => Some(fulmar_daemon::tls_client_config(ca).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let sync_codec = match &config.session.auth_penalty.sync_key_file {
        Some(path) => Some(Codec::load(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let admin_token = config.admin_token().map_err(anyhow::Error::msg)?;
    if args.check {
        println!(
            "{}: ok; {} listeners",
            args.config.display(),
            config.listen.len()
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::default());
        let penalty = &config.session.auth_penalty;
        let penalties = match (penalty.sync_address, sync_codec) {
            (Some(address), Some(codec)) => {
                let (penalties, events) = Penalties::shared(penalty.clone());
                let penalties = Arc::new(penalties);
                let socket = tokio::net::UdpSocket::bind(address)
                    .await
                    .with_context(|| format!("penalty sync address {address}"))?;
                tracing::info!(%address, peers = ?penalty.peers, "penalty schedule shared with peers");
                tokio::spawn(penalty::sync::run(
                    socket,
                    penalty.peers.clone(),
                    codec,
                    penalties.clone(),
                    events,
                    metrics.clone(),
                ));
                penalties
            }
            _ => Arc::new(Penalties::new(penalty.clone())),
        };
        let ctx = Arc::new(Ctx {
            directory: Directory::new(
                config.directory.clone(),
                bind_password,
                directory_tls,
                metrics.clone(),
            ),
            penalties,
            connections: Connections::new(
                config.session.max_connections,
                config.session.max_connections_per_ip,
            ),
            registry: Arc::new(Registry::default()),
            admin_name: config
                .admin
                .as_ref()
                .map(|a| a.name.clone())
                .unwrap_or_default(),
            drain_epoch: Default::default(),
            config,
            metrics,
            tls,
            backend_tls,
            draining: Default::default(),
        });
        let listeners = server::bind(&ctx).context("binding the listeners")?;
        if let Some(a) = &ctx.config.admin {
            if let Some(path) = &a.socket {
                let socket = admin::server::bind_unix(path).context("the admin socket")?;
                tracing::info!(path = %path.display(), "admin socket");
                tokio::spawn(admin::server::serve_unix(ctx.clone(), socket));
            }
            if let (Some(address), Some(token)) = (a.address, admin_token) {
                let socket = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("the admin endpoint {address}"))?;
                tracing::info!(%address, "admin endpoint (TLS, token)");
                tokio::spawn(admin::server::serve_tls(ctx.clone(), socket, Arc::new(token)));
            }
        }
        for (l, _) in &listeners {
            tracing::info!(protocol = l.protocol.name(), address = %l.address, tls = ?l.tls, "listening");
        }
        let mut hup = signal(SignalKind::hangup())?;
        let reload_ctx = ctx.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match reload_ctx.tls.as_ref().map(ServerTls::reload) {
                    Some(Ok(())) => tracing::info!("TLS certificate reloaded"),
                    Some(Err(e)) => tracing::error!("TLS reload failed, keeping the old certificate: {e}"),
                    None => {}
                }
            }
        });
        let mut term = signal(SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        fulmar_daemon::notify("READY=1");
        server::serve(ctx, listeners, async move {
            shutdown.await;
            fulmar_daemon::notify("STOPPING=1");
        })
        .await?;
        Ok(())
    })
}
