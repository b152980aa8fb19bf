//! `cargo xtask attack`: the hostile-client suite against the running lab
//! (`cargo xtask lab up`), through the balancer VIP. Each attack runs on
//! the client host (`attack.py`) while a probe client, from another
//! address and with an honest account, logs in and sends NOOP every
//! 50 ms. Per attack it prints what the server did and what it cost: the
//! CPU-seconds and resident memory the proxies and mail instances used
//! meanwhile, and how long the probe waited (beside its idle baseline).
use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use fulmar_lab::{LabState, topology};

use crate::lab::{STATE_FILE, require_root};

#[derive(Parser)]
pub struct Args {
    /// Run only these attacks (names as printed); all by default.
    only: Vec<String>,
}

/// In order: brute force last, since it leaves the client's address and
/// `ann` throttled for a while.
const ATTACKS: [&str; 12] = [
    "nested_multiparts",
    "smuggling",
    "prelogin_authenticate",
    "list_wildcards",
    "literals",
    "forged_sender",
    "helo_control",
    "slow_clients",
    "mailbox_flood",
    "proxy_header",
    "brute_force_spread",
    "brute_force",
];

/// The probe's own address on the client host.
const PROBE_FROM: &str = "198.18.0.99";
/// The spread brute force's sources: 198.18.0.150-199.
const SPREAD: std::ops::Range<u8> = 150..200;

/// CPU ticks (utime + stime) and resident KiB of a process.
fn usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ticks, rss))
}

/// The lab's processes of one program, in any of its hosts (fulmar-maild
/// is the failover manager's child, not the lab's).
fn pids_of(state: &LabState, program: &str) -> Vec<u32> {
    state
        .hosts
        .iter()
        .flat_map(|host| {
            let netns = format!("{}-{host}", state.prefix);
            let out = std::process::Command::new("ip")
                .args(["netns", "pids", &netns])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(program))
        })
        .collect()
}

/// Summed CPU seconds and resident MiB of `pids`.
fn measure(pids: &[u32]) -> (f64, f64) {
    let (ticks, kib) = pids
        .iter()
        .filter_map(|p| usage(*p))
        .fold((0, 0), |(t, r), (a, b)| (t + a, r + b));
    (ticks as f64 / 100.0, kib as f64 / 1024.0)
}

pub fn run(args: Args) -> Result<()> {
    require_root("the attack suite")?;
    let text = std::fs::read_to_string(STATE_FILE)
        .with_context(|| format!("{STATE_FILE}: bring the lab up first (cargo xtask lab up)"))?;
    let state: LabState = serde_json::from_str(&text).context("reading the lab state")?;
    let netns = format!("{}-client", state.prefix);
    let script = Path::new(&state.log_dir).join("attack.py");
    std::fs::write(&script, include_str!("attack.py"))?;
    // The probe's and the spread guessers' addresses; present already on
    // a second run.
    let sources = SPREAD.map(|n| format!("198.18.0.{n}"));
    for address in std::iter::once(PROBE_FROM.to_string()).chain(sources) {
        let _ = Command::new("ip")
            .args(["-n", &netns, "addr", "add", &format!("{address}/24")])
            .args(["dev", "eth0"])
            .output();
    }
    let proxies = pids_of(&state, "fulmar-proxyd");
    let instances = pids_of(&state, "fulmar-maild");
    if proxies.is_empty() || instances.is_empty() {
        bail!("the lab runs no fulmar-proxyd or fulmar-maild (is it up?)");
    }
    let attacks: Vec<&str> = ATTACKS
        .iter()
        .copied()
        .filter(|a| args.only.is_empty() || args.only.iter().any(|o| o == a))
        .collect();
    let run_one = |name: &str| -> Result<serde_json::Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &netns, "python3"])
            .arg(&script)
            .args([name, topology::VIP4, PROBE_FROM])
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line)
            .with_context(|| format!("{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr)))
    };
    // The idle run: the probe's baseline, and the CPU the tiers use with
    // no attack at all (the balancer's health checks, the probe), which
    // each attack's figures are given above.
    let (p0, m0) = (measure(&proxies).0, measure(&instances).0);
    let started = Instant::now();
    let baseline = run_one("idle")?;
    let idle_secs = started.elapsed().as_secs_f64();
    let proxy_rate = (measure(&proxies).0 - p0) / idle_secs;
    let maild_rate = (measure(&instances).0 - m0) / idle_secs;
    let base_p50 = baseline["p50_ms"].as_f64().unwrap_or(0.0);
    println!(
        "idle: probe p50 {base_p50:.0} ms, max {:.0} ms over {} logins; CPU {proxy_rate:.2} s/s \
         in the proxies, {maild_rate:.2} s/s in the instances (subtracted below)\n",
        baseline["max_ms"].as_f64().unwrap_or(0.0),
        baseline["probes"]
    );
    println!(
        "| attack | what the server did | s | CPU-s proxies | CPU-s maild | RSS Δ MiB | probe p50 / max ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for name in attacks {
        let (p0, pr0) = measure(&proxies);
        let (m0, mr0) = measure(&instances);
        let started = Instant::now();
        let r = run_one(name)?;
        let wall = started.elapsed().as_secs_f64();
        let (p1, pr1) = measure(&proxies);
        let (m1, mr1) = measure(&instances);
        println!(
            "| {name} | {} | {:.1} | {:.2} | {:.2} | {:+.1} | {:.0} / {:.0} |",
            r["did"].as_str().unwrap_or("?").replace('|', "/"),
            r["seconds"].as_f64().unwrap_or(0.0),
            (p1 - p0 - proxy_rate * wall).max(0.0),
            (m1 - m0 - maild_rate * wall).max(0.0),
            (pr1 + mr1) - (pr0 + mr0),
            r["p50_ms"].as_f64().unwrap_or(f64::NAN),
            r["max_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
