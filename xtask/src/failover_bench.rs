//! `cargo xtask failover-bench`: failover time over injected node failures
//! (SIGKILL of every process of the node holding the instance) in a lab
//! cluster with the lab fencing agent, split into detection (fault → fence
//! start), fencing, and start (fence done → first delivery acknowledged by
//! the new holder). The baseline, measured in the same run, is a planned
//! move (`fulmar instance relocate`): stop and start with no detection or
//! fencing.
//!
//! Then the same through the whole platform (`lab up`'s, shipped timing):
//! node deaths and relocations of the mail instances as a client sees
//! them through the balancer's VIP and a proxy (`--through-front`).
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use fulmar_lab::cluster::{ClusterLab, Deliverer, Fencing, NODES, Options, Sampler, Service};

#[derive(Parser)]
pub struct Args {
    /// Node failures to inject.
    #[arg(long, default_value_t = 20)]
    failures: usize,
    /// Planned relocations measured as the baseline.
    #[arg(long, default_value_t = 5)]
    relocations: usize,
    /// Lease TTL in seconds (etcd's unit; the lab etcd allows 1).
    #[arg(long, default_value_t = 1)]
    lease_ttl: u64,
    /// Node deaths, and as many relocations, through the balancer and a
    /// proxy on the whole platform (0: skip).
    #[arg(long, default_value_t = 5)]
    through_front: usize,
}

struct Failover {
    node: String,
    detection: Duration,
    fencing: Duration,
    start: Duration,
    total: Duration,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn run(args: Args) -> Result<()> {
    crate::lab::require_root("failover-bench")?;
    let bins = crate::lab::cargo_build_bins(
        &[
            "fulmar-failover",
            "fulmar-cli",
            "fulmar-maild",
            "fulmar-lb",
            "fulmar-proxy",
        ],
        true,
    )?;
    let mut c = ClusterLab::build(Options {
        service: Service::Maild,
        noded: bins.join("fulmar-noded"),
        maild: bins.join("fulmar-maild"),
        lease_ttl_secs: args.lease_ttl,
        self_fence_margin_ms: 300,
        fencing: Fencing::Lab,
        allowed: vec![],
    })
    .context("building the cluster lab")?;
    c.start_agents()?;
    c.wait_running(Duration::from_secs(30), |_, _| true)?;
    let client = Deliverer::start(&c.lab, Duration::from_millis(5));
    // Every 20 ms: never two nodes with the VIP or the volume attached.
    let sampler = Sampler::start(&c, Duration::from_millis(20));
    client
        .wait_ack_after(Instant::now(), Duration::from_secs(10))
        .context("no delivery through the instance")?;

    let mut moves = Vec::new();
    for i in 0..args.relocations {
        let (from, g) = c.wait_running(Duration::from_secs(30), |_, _| true)?;
        let to = NODES.iter().find(|n| **n != from).expect("three nodes");
        let t0 = Instant::now();
        c.fulmar(
            &bins.join("fulmar"),
            &["instance", "relocate", "mail1", "to", to],
        )?;
        c.wait_running(Duration::from_secs(30), |n, g2| n == *to && g2 > g)?;
        client
            .wait_ack_after(Instant::now(), Duration::from_secs(30))
            .context("no delivery after the move")?;
        let took = client.outage_after(t0).context("outage")?;
        println!("relocation {:2}: {from} → {to}: {:6.0} ms", i + 1, ms(took));
        moves.push(took);
    }

    let mut runs = Vec::new();
    for i in 0..args.failures {
        let (holder, g) = c.wait_running(Duration::from_secs(30), |_, _| true)?;
        // Every other node back in and unfenced, so the pick is free.
        wait_members(&c)?;
        let t0 = Instant::now();
        let t0_ms = wall_ms();
        c.kill_node(&holder)?;
        c.wait_running(Duration::from_secs(30), |n, g2| n != holder && g2 > g)?;
        client
            .wait_ack_after(Instant::now(), Duration::from_secs(30))
            .context("no delivery after the takeover")?;
        let total = client.outage_after(t0).context("outage")?;
        let fence = c
            .record(&format!("fence/{holder}"))
            .context("no fence record")?;
        let started = fence["record"]["started_ms"].as_u64().unwrap_or(t0_ms);
        let fencing = Duration::from_millis(fence["record"]["duration_ms"].as_u64().unwrap_or(0));
        let detection = Duration::from_millis(started.saturating_sub(t0_ms));
        let start = total.saturating_sub(detection + fencing);
        println!(
            "failure {:2}: {holder}: detection {:5.0} ms, fencing {:4.0} ms, start {:4.0} ms, total {:5.0} ms",
            i + 1,
            ms(detection),
            ms(fencing),
            ms(start),
            ms(total)
        );
        runs.push(Failover {
            node: holder.clone(),
            detection,
            fencing,
            start,
            total,
        });
        c.boot(&holder)?;
    }
    let acked = client.stop();
    let (samples, two_holders) = sampler.stop();
    let stored = c.stored()?;
    let lost = acked.iter().filter(|(n, _)| !stored.contains(n)).count();
    let findings = c.check_findings();
    let fsck = c.stop_and_check(&bins.join("fulmar"))?;

    println!();
    println!(
        "failover over {} node failures (lease TTL {} s, lab fencing agent), ms:",
        runs.len(),
        args.lease_ttl
    );
    println!("{:<22} {:>8} {:>8}", "", "median", "max");
    let row = |name: &str, v: Vec<Duration>| {
        println!("{name:<22} {:>8.0} {:>8.0}", ms(median(&v)), ms(max(&v)));
    };
    row("detection", runs.iter().map(|r| r.detection).collect());
    row("fencing", runs.iter().map(|r| r.fencing).collect());
    row("start", runs.iter().map(|r| r.start).collect());
    row(
        "total (fault→serving)",
        runs.iter().map(|r| r.total).collect(),
    );
    row("baseline: relocation", moves.clone());
    let totals: Vec<Duration> = runs.iter().map(|r| r.total).collect();
    let per_node = NODES
        .iter()
        .map(|n| format!("{n} {}", runs.iter().filter(|r| r.node == *n).count()))
        .collect::<Vec<_>>()
        .join(", ");
    println!("failed nodes: {per_node}");
    println!(
        "target: median ≤ 2000 ms ({}), max ≤ 4000 ms ({})",
        if median(&totals) <= Duration::from_secs(2) {
            "met"
        } else {
            "MISSED"
        },
        if max(&totals) <= Duration::from_secs(4) {
            "met"
        } else {
            "MISSED"
        },
    );
    println!(
        "deliveries: {} acknowledged, {} missing after {} takeovers",
        acked.len(),
        lost,
        runs.len()
    );
    println!(
        "volume: {} of {samples} samples (every 20 ms) with two holders; {} takeover checks \
         that repaired or needed a person; e2fsck -fn at the end: {}",
        two_holders.len(),
        findings.len(),
        if fsck.is_ok() { "clean" } else { "DAMAGED" }
    );
    if lost > 0 {
        bail!("{lost} acknowledged deliveries are missing");
    }
    if !two_holders.is_empty() || !findings.is_empty() {
        bail!("split volume: {two_holders:?}; checks: {findings:?}");
    }
    if let Err(report) = fsck {
        bail!("e2fsck -fn after the run: {report}");
    }
    drop(c);
    if args.through_front > 0 {
        through_front(args.through_front, &bins)?;
    }
    Ok(())
}

/// Node deaths beside planned relocations on the platform, as the client
/// sees them through the VIP (chaos's measure: from its last login before
/// the fault to the end of its first one after).
fn through_front(n: usize, bins: &std::path::Path) -> Result<()> {
    use fulmar_lab::{
        front::{Bins, Front},
        platform::chaos::{self, Kind},
    };
    let work = std::env::temp_dir().join(format!("fulmar-failover-bench-{}", std::process::id()));
    let mut front = Front::start_platform(&work, Bins::in_dir(bins))?;
    println!("\nthrough the balancer and a proxy (the whole platform, shipped timing):");
    let mut rows = Vec::new();
    for (kind, seed) in [(Kind::NodeKill, 1), (Kind::Relocation, 2)] {
        let ledger = chaos::run(&mut front, n, seed, &[kind], &mut |line| println!("{line}"))?;
        let broken = ledger.broken();
        if !broken.is_empty() {
            bail!("invariants broken:\n{}", broken.join("\n"));
        }
        let outages: Vec<Duration> = ledger
            .faults
            .iter()
            .map(|f| Duration::from_secs_f64(f.outage))
            .collect();
        rows.push((kind, outages, ledger.acked.values().sum::<usize>()));
    }
    drop(front);
    let _ = std::fs::remove_dir_all(&work);
    println!("client-side outage, ms:  {:>8} {:>8}", "median", "max");
    for (kind, outages, acked) in rows {
        let name = match kind {
            Kind::NodeKill => "node death (fenced)",
            _ => "baseline: relocation",
        };
        println!(
            "{name:<24} {:>8.0} {:>8.0}   ({acked} deliveries acknowledged, none lost)",
            ms(median(&outages)),
            ms(max(&outages))
        );
    }
    Ok(())
}

fn wait_members(c: &ClusterLab) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = c.state()?;
        let all_in = NODES.iter().all(|n| {
            state.contains_key(&format!("alive/{n}"))
                && c.record(&format!("fence/{n}"))
                    .is_none_or(|f| f["unfenced"] == true)
        });
        if all_in {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nodes did not all rejoin: {state:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn max(v: &[Duration]) -> Duration {
    v.iter().max().copied().unwrap_or_default()
}
