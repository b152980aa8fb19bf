//! fulmar-lbd: the balancer daemon (see `fulmar_lb::daemon`).
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use fulmar_lb::{
    config::{DEFAULT_CONFIG, DaemonConfig},
    daemon::{self, Daemon},
};

/// fulmar balancer daemon: attaches the XDP data path (or takes over the
/// pinned one), applies the services file, health-checks the reals and
/// follows their MACs; `fulmar` talks to it on the control socket.
/// Prometheus metrics at `GET /metrics` on `metrics_address` when set.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Daemon configuration (TOML).
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Check the configuration and the services file, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    fulmar_daemon::init_logging();
    let config =
        if args.config.exists() || args.config.as_path() != std::path::Path::new(DEFAULT_CONFIG) {
            DaemonConfig::load(&args.config).map_err(anyhow::Error::msg)?
        } else {
            tracing::info!("{DEFAULT_CONFIG} is absent: running on defaults");
            DaemonConfig::default()
        };
    if args.check {
        let desired = daemon::read_services(&config)?;
        println!(
            "{}: ok; {}: {} services",
            args.config.display(),
            config.services_file.display(),
            desired.services.len()
        );
        return Ok(());
    }
    let runtime = fulmar_daemon::runtime()?;
    runtime.block_on(async move {
        let socket = config.control_socket.clone();
        let metrics_address = config.metrics_address;
        let daemon = Daemon::start(config).await?;
        if let Some(address) = metrics_address {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("metrics_address {address}"))?;
            let core = daemon.core.clone();
            let render =
                std::sync::Arc::new(move || core.lock().expect("core lock").metrics_text());
            tokio::spawn(fulmar_daemon::metrics::serve(listener, render));
        }
        let server = tokio::spawn(daemon::serve(daemon, socket.clone()));
        fulmar_daemon::notify("READY=1");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            result = server => result.context("control socket")??,
        }
        // The data path stays attached and pinned: stopping the daemon
        // freezes health checking, it never drops traffic.
        tracing::info!("stopping; XDP stays attached with its flows");
        let _ = std::fs::remove_file(&socket);
        Ok(())
    })
}
