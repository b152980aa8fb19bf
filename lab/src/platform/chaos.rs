//! Chaos on the platform: faults injected one after another, in an order
//! and on targets drawn from a seed, while a client works through the
//! balancer's VIP. Each fault gets a line of timeline (when the client was
//! served again, when the node was fenced); the ledger at the end holds
//! what must never happen: an acknowledged message lost or stored twice,
//! two holders of a VIP or volume, a volume needing repair, a crash.
use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{
    INSTANCES, bmc, volume_paths,
    workload::{self, Workload, now},
};
use crate::{
    cluster::{Sampler, etcd, kill_netns},
    front::Front,
    topology,
};

/// The accounts the client works as, and their homes.
pub const USERS: [(&str, &str, &str); 2] = [
    ("ann", "ann-secret", "mail1"),
    ("bob", "bob-secret", "mail2"),
];
/// How long any one step may take before the run fails.
const STEP: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A back-end node with a mail instance loses power (every process
    /// killed; the kernel keeps its mounts and addresses until fenced).
    NodeKill,
    /// A back-end node's link goes down: it self-fences, the others fence it.
    Partition,
    /// The node running the directory (ldap) dies.
    DirectoryKill,
    /// The BMC stops answering, then a node with a mail instance dies: it
    /// is fenced by level 2 (lab power).
    FenceDeviceDown,
    /// fulmar-maild is killed (-9); its node restarts it in place.
    MaildCrash,
    /// A proxy host's processes die; it comes back.
    ProxyKill,
    /// fulmar-lbd is killed (-9); XDP goes on forwarding; it comes back.
    BalancerKill,
    /// An etcd member dies; it comes back.
    EtcdKill,
    /// `fulmar instance relocate` to another node.
    Relocation,
    /// `fulmar node standby`, then `online`.
    Standby,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::NodeKill,
        Kind::Partition,
        Kind::DirectoryKill,
        Kind::FenceDeviceDown,
        Kind::MaildCrash,
        Kind::ProxyKill,
        Kind::BalancerKill,
        Kind::EtcdKill,
        Kind::Relocation,
        Kind::Standby,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::NodeKill => "node-kill",
            Kind::Partition => "partition",
            Kind::DirectoryKill => "directory-kill",
            Kind::FenceDeviceDown => "fence-device-down",
            Kind::MaildCrash => "maild-crash",
            Kind::ProxyKill => "proxy-kill",
            Kind::BalancerKill => "balancer-kill",
            Kind::EtcdKill => "etcd-kill",
            Kind::Relocation => "relocation",
            Kind::Standby => "standby",
        }
    }

    pub fn parse(word: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == word)
            .with_context(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("no fault kind {word:?} (kinds: {})", names.join(", "))
            })
    }
}

/// One fault as the client and the cluster saw it (seconds after `at`).
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    pub target: String,
    pub at: f64,
    /// When the fence of the target node ended, and by which level, for
    /// node faults.
    pub fenced: Option<(f64, usize)>,
    /// The longest time any account went unserved while the fault lasted
    /// (`workload::outage`: successive successful logins' span).
    pub outage: f64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub faults: Vec<Fault>,
    /// Per account: messages acknowledged, stored, lost, stored twice.
    pub acked: BTreeMap<String, usize>,
    pub stored: BTreeMap<String, usize>,
    pub lost: BTreeMap<String, Vec<u64>>,
    pub twice: BTreeMap<String, Vec<u64>>,
    /// Instants where two nodes held one instance's VIP or volume.
    pub two_holders: Vec<String>,
    pub samples: usize,
    /// Instances whose volume check found damage.
    pub needs_repair: Vec<String>,
    /// Lines of any daemon log that say it panicked.
    pub crashes: Vec<String>,
}

impl Ledger {
    /// Each broken invariant, in words.
    pub fn broken(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (user, lost) in &self.lost {
            if !lost.is_empty() {
                out.push(format!(
                    "{user}: {} acknowledged and lost: {lost:?}",
                    lost.len()
                ));
            }
        }
        for (user, twice) in &self.twice {
            if !twice.is_empty() {
                out.push(format!("{user}: stored twice: {twice:?}"));
            }
        }
        out.extend(self.two_holders.iter().map(|v| format!("two holders: {v}")));
        out.extend(
            self.needs_repair
                .iter()
                .map(|i| format!("{i} needs repair")),
        );
        out.extend(self.crashes.iter().map(|c| format!("crash: {c}")));
        out
    }

    /// The ledger in lines: per account, then per fault kind the client's
    /// outage (median and max), then every invariant.
    pub fn report(&self) -> String {
        let mut out = String::from("ledger\n");
        for (user, acked) in &self.acked {
            out += &format!(
                "  {user}: {acked} acknowledged, {} stored, {} lost, {} stored twice\n",
                self.stored.get(user).unwrap_or(&0),
                self.lost.get(user).map_or(0, Vec::len),
                self.twice.get(user).map_or(0, Vec::len)
            );
        }
        let mut by_kind: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
        for f in &self.faults {
            by_kind.entry(f.kind).or_default().push(f.outage);
        }
        out += "  client-side outage per fault kind (s): count, median, max\n";
        for (kind, mut v) in by_kind {
            v.sort_by(f64::total_cmp);
            out += &format!(
                "    {:<18} {:>3} {:>6.2} {:>6.2}\n",
                kind.name(),
                v.len(),
                (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0,
                v[v.len() - 1]
            );
        }
        out += &format!(
            "  two holders of a VIP or volume: {} instants in {} samples\n",
            self.two_holders.len(),
            self.samples
        );
        out += &format!("  volumes needing repair: {}\n", self.needs_repair.len());
        out += &format!("  process crashes: {}\n", self.crashes.len());
        out
    }
}

/// xorshift64*: the run's order and targets from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Runs `faults` faults of `kinds` (each kind at least once when
/// `faults` allows, the rest drawn at random) on the platform `front`
/// runs; `say` gets the timeline as it happens.
pub fn run(
    front: &mut Front,
    faults: usize,
    seed: u64,
    kinds: &[Kind],
    say: &mut dyn FnMut(String),
) -> Result<Ledger> {
    if kinds.is_empty() {
        bail!("no fault kinds to run");
    }
    let mut rng = Rng(seed.max(1));
    let mut order: Vec<Kind> = kinds.iter().copied().cycle().take(faults).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let nodes = topology::BACKEND_NODES
        .iter()
        .map(|n| (n.to_string(), front.lab.netns(n)))
        .collect();
    let watched = INSTANCES
        .iter()
        .map(|(name, vip, _)| {
            (
                name.to_string(),
                vip.to_string(),
                volume_paths(&front.work, name).0,
            )
        })
        .collect();
    let sampler = Sampler::watch(nodes, watched, Duration::from_millis(50));
    let users: Vec<(&str, &str)> = USERS.iter().map(|(u, p, _)| (*u, *p)).collect();
    let client = Workload::start(&mut front.lab, &front.work, &users)?;
    let result = (|| -> Result<Vec<Fault>> {
        wait_served(front, &client, &users, 0.0)?;
        let mut done = Vec::new();
        for (i, kind) in order.iter().enumerate() {
            let fault = inject(front, &client, *kind, &mut rng)?;
            say(timeline(i + 1, &fault));
            done.push(fault);
        }
        Ok(done)
    })();
    let run = client.run.clone();
    let events = client.stop(&mut front.lab);
    let (samples, two_holders) = sampler.stop();
    let faults = result?;
    let events = events?;
    let mut ledger = Ledger {
        faults,
        two_holders,
        samples,
        ..Ledger::default()
    };
    for (user, password) in users {
        let acked = workload::acked(&events, user);
        let stored = workload::stored(&front.lab, &run, user, password)?;
        ledger.lost.insert(
            user.into(),
            acked
                .iter()
                .filter(|s| !stored.contains_key(s))
                .copied()
                .collect(),
        );
        ledger.twice.insert(
            user.into(),
            stored
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|(s, _)| *s)
                .collect(),
        );
        ledger.acked.insert(user.into(), acked.len());
        ledger.stored.insert(user.into(), stored.len());
    }
    let p = front.platform.as_ref().context("a platform")?;
    let state = p.state(&front.lab)?;
    for (name, _, _) in INSTANCES {
        let status: Option<Value> = state
            .get(&format!("status/{name}"))
            .and_then(|s| serde_json::from_str(s).ok());
        if status.is_some_and(|s| s["state"] == "needs_repair") {
            ledger.needs_repair.push(name.into());
        }
    }
    ledger.crashes = crashes(front);
    Ok(ledger)
}

fn timeline(n: usize, f: &Fault) -> String {
    let fenced = f
        .fenced
        .map(|(t, level)| format!(", fenced by level {level} at +{t:.2} s"))
        .unwrap_or_default();
    let secs = f.at.rem_euclid(86_400.0);
    let (h, m, s) = (secs as u64 / 3600, secs as u64 / 60 % 60, secs % 60.0);
    format!(
        "{n:>4} {h:02}:{m:02}:{s:06.3} {:<18} {:<13} client served again after {:.2} s{fenced}",
        f.kind.name(),
        f.target,
        f.outage
    )
}

/// Every line of the lab's logs that tells of a panic.
fn crashes(front: &Front) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(front.lab.log_dir()) else {
        return found;
    };
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let name = e.file_name().to_string_lossy().into_owned();
        found.extend(
            text.lines()
                .filter(|l| l.contains("panicked at"))
                .map(|l| format!("{name}: {l}")),
        );
    }
    found
}

/// Waits until each of `users` has logged in twice since `from`.
fn wait_served(front: &Front, client: &Workload, users: &[(&str, &str)], from: f64) -> Result<()> {
    let names: Vec<&str> = users.iter().map(|(u, _)| *u).collect();
    client.wait(&front.lab, STEP, &format!("{names:?} served"), |e| {
        names
            .iter()
            .all(|u| workload::logins_after(e, u, from).len() >= 2)
    })
}

/// The instances running on `node` now.
fn instances_on(front: &Front, node: &str) -> Result<Vec<(String, u64)>> {
    let p = front.platform.as_ref().context("a platform")?;
    let state = p.state(&front.lab)?;
    Ok(INSTANCES
        .iter()
        .filter_map(|(name, _, _)| {
            let (n, g) = etcd::running(&state, name)?;
            (n == node).then(|| (name.to_string(), g))
        })
        .collect())
}

/// The node running `instance` now.
fn home(front: &Front, instance: &str) -> Result<String> {
    let p = front.platform.as_ref().context("a platform")?;
    p.running(&front.lab, instance)
        .map(|(n, _)| n)
        .with_context(|| format!("{instance} is not running"))
}

fn inject(front: &mut Front, client: &Workload, kind: Kind, rng: &mut Rng) -> Result<Fault> {
    let at = now();
    let mut fenced = None;
    let target = match kind {
        Kind::NodeKill | Kind::Partition | Kind::DirectoryKill | Kind::FenceDeviceDown => {
            let node = if kind == Kind::DirectoryKill {
                home(front, "ldap")?
            } else {
                let mail = rng.pick(&["mail1", "mail2"]);
                home(front, mail)?
            };
            let moved = instances_on(front, &node)?;
            if kind == Kind::FenceDeviceDown {
                bmc::stop(&front.lab, &front.work)?;
            }
            let lab = &mut front.lab;
            let p = front.platform.as_mut().context("a platform")?;
            if kind == Kind::Partition {
                lab.check(&node, "ip", &["link", "set", "eth0", "down"])?;
            } else {
                p.kill_node(lab, &node)?;
            }
            for (name, generation) in &moved {
                p.wait_running(lab, name, STEP, |n, g| n != node && g > *generation)?;
            }
            fenced = fenced_at(front, &node, at).map(|(t, level)| (t - at, level));
            if kind == Kind::FenceDeviceDown {
                let p = front.platform.as_ref().context("a platform")?;
                let (noded, config) = (p.noded.clone(), p.cluster_config.clone());
                bmc::start(&mut front.lab, &front.work, &noded, &config)?;
            }
            if kind == Kind::Partition {
                // The lab power fence killed it; what is left of the
                // partition (its link) comes back with the boot.
                kill_netns(&front.lab.netns(&node))?;
            }
            let lab = &mut front.lab;
            let p = front.platform.as_mut().context("a platform")?;
            p.boot(lab, &node)?;
            wait_online(front, &node)?;
            node
        }
        Kind::MaildCrash => {
            let name = *rng.pick(&["mail1", "mail2"]);
            let mnt = volume_paths(&front.work, name).1;
            let pattern = format!("fulmar-maild --root {} run$", mnt.display());
            front
                .lab
                .check("balancer", "pkill", &["-KILL", "-f", &pattern])?;
            name.to_string()
        }
        Kind::ProxyKill => {
            let proxy = *rng.pick(&topology::PROXIES);
            kill_netns(&front.lab.netns(proxy))?;
            front.restart_proxy(proxy)?;
            front.wait_reals_up(STEP)?;
            proxy.to_string()
        }
        Kind::BalancerKill => {
            kill_netns(&front.lab.netns("balancer"))?;
            front.restart_balancer()?;
            "fulmar-lbd".into()
        }
        Kind::EtcdKill => {
            let i = rng.below(topology::ETCD.len());
            let (member, _) = topology::ETCD[i];
            kill_netns(&front.lab.netns(member))?;
            // The cluster goes on with two; the client with it.
            wait_served(front, client, &[("ann", ""), ("bob", "")], now())?;
            etcd::spawn_member(&mut front.lab, &front.work, &topology::ETCD, i)?;
            wait_etcd_healthy(front)?;
            member.to_string()
        }
        Kind::Relocation => {
            let name = *rng.pick(&["mail1", "mail2", "ldap"]);
            let from = home(front, name)?;
            let others: Vec<&str> = topology::BACKEND_NODES
                .iter()
                .copied()
                .filter(|n| *n != from)
                .collect();
            let to = *rng.pick(&others);
            front.fulmar(&["instance", "relocate", name, "to", to])?;
            let lab = &front.lab;
            let p = front.platform.as_ref().context("a platform")?;
            p.wait_running(lab, name, STEP, |n, _| n == to)?;
            format!("{name}>{to}")
        }
        Kind::Standby => {
            let mail = rng.pick(&["mail1", "mail2"]);
            let node = home(front, mail)?;
            let moved = instances_on(front, &node)?;
            front.fulmar(&["node", "standby", &node])?;
            let lab = &front.lab;
            let p = front.platform.as_ref().context("a platform")?;
            for (name, _) in &moved {
                p.wait_running(lab, name, STEP, |n, _| n != node)?;
            }
            front.fulmar(&["node", "online", &node])?;
            node
        }
    };
    // Steady again: every instance runs, and every account is served.
    let p = front.platform.as_ref().context("a platform")?;
    for (name, _, _) in INSTANCES {
        p.wait_running(&front.lab, name, STEP, |_, _| true)?;
    }
    let users: Vec<(&str, &str)> = USERS.iter().map(|(u, p, _)| (*u, *p)).collect();
    wait_served(front, client, &users, at)?;
    let steady = now();
    let events = client.events(&front.lab);
    // Every account's: a fault can reach further than its target.
    let outage = USERS
        .iter()
        .filter_map(|(u, _, _)| workload::outage(&events, u, at, steady))
        .fold(0.0, f64::max);
    Ok(Fault {
        kind,
        target,
        at,
        fenced,
        outage,
    })
}

/// When `node`'s fence that started after `after` ended (unix seconds),
/// and the level that fenced it.
pub fn fenced_at(front: &Front, node: &str, after: f64) -> Option<(f64, usize)> {
    let out = front.fulmar(&["-j", "fence", "history", node]).ok()?;
    out.lines().rev().find_map(|line| {
        let r: Value = serde_json::from_str(line).ok()?;
        let started = r["started_ms"].as_u64()? as f64 / 1000.0;
        let level = r["outcome"]["level"].as_u64()? as usize;
        (r["outcome"]["result"] == "fenced" && started >= after).then(|| {
            let ended = started + r["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
            (ended, level)
        })
    })
}

fn wait_online(front: &Front, node: &str) -> Result<()> {
    let p = front.platform.as_ref().context("a platform")?;
    let alive = format!("alive/{node}");
    p.wait_state(&front.lab, STEP, &format!("{node} rejoined"), |s| {
        s.contains_key(&alive)
    })?;
    Ok(())
}

fn wait_etcd_healthy(front: &Front) -> Result<()> {
    let p = front.platform.as_ref().context("a platform")?;
    Ok(etcd::wait_healthy(
        &front.lab,
        "balancer",
        &p.endpoints,
        STEP,
    )?)
}
