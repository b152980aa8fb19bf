//! fulmar-noded: the failover agent of a back-end node (see
//! `fulmar_failover::agent`).
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use fulmar_failover::{
    agent::Agent,
    config::{ClusterConfig, DEFAULT_PATH},
    metrics::METRICS,
};
use fulmar_fencing::{Fencer, FencingConfig};
use tokio::signal::unix::{SignalKind, signal};

/// fulmar back-end node agent: joins the cluster in etcd with a lease, runs
/// the service instances placed on this node (mount, VIP, gratuitous ARP,
/// service, probe), restarts them in place on probe failures, stops them
/// itself when its lease deadline passes, and, when elected leader, places
/// instances and fences failed nodes before any takeover. SIGTERM stops the
/// instances here and leaves the cluster (the leader moves them at once).
/// Prometheus metrics at `GET /metrics` on `node.NAME.metrics` when set.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Cluster configuration (TOML), the same on every node.
    #[arg(long, short = 'c', default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// This node's name in the config [default: the host name].
    #[arg(long, short = 'n')]
    node: Option<String>,
    /// Check the cluster and fencing configs, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    fulmar_daemon::init_logging();
    let config = ClusterConfig::load(&args.config).map_err(anyhow::Error::msg)?;
    let fencing = FencingConfig::load(&config.fencing).map_err(anyhow::Error::msg)?;
    let node = match args.node {
        Some(n) => n,
        None => fulmar_daemon::host_name().context("reading the host name")?,
    };
    if !config.node.contains_key(&node) {
        anyhow::bail!("node {node:?} is not in {}", args.config.display());
    }
    if args.check {
        println!(
            "{}: ok; node {node}, {} nodes, {} instances",
            args.config.display(),
            config.node.len(),
            config.instance.len()
        );
        return Ok(());
    }
    let runtime = fulmar_daemon::runtime()?;
    runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        if let Some(address) = config.node[&node].metrics {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("node.{node}.metrics {address}"))?;
            let render = std::sync::Arc::new(|| METRICS.render());
            tokio::spawn(fulmar_daemon::metrics::serve(listener, render));
        }
        let agent = Agent::connect(config, &node, Fencer::new(fencing))
            .await
            .map_err(anyhow::Error::msg)?;
        fulmar_daemon::notify("READY=1");
        agent
            .run(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                fulmar_daemon::notify("STOPPING=1");
            })
            .await;
        Ok(())
    })
}
