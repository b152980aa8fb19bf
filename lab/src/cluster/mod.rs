//! A failover cluster in the lab, for the fault suite and the failover
//! benchmark: three etcd members, three back-end nodes running
//! `fulmar-noded`, one instance (fulmar-maild with LMTP and IMAP on a
//! loop-mounted ext4 volume behind a VIP) and a client that keeps
//! delivering mail and records every 250.
//!
//! Address plan (198.18.10.0/24): client .10, node1–3 .11–.13, etcd1–3
//! .21–.23, the instance VIP .100; .250 is a BMC that never answers.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;

mod deliver;
pub mod etcd;
pub mod ldap;
mod sampler;
pub mod volume;

pub use deliver::Deliverer;
pub use sampler::Sampler;
pub use volume::mounted_by;

use crate::{
    Attachment, HostSpec, Lab, LabError, LabSpec, SegmentSpec, cmd, prometheus::Prometheus,
};
use deliver::USER;
use etcd::PREFIX;
use fulmar_failover::{
    config::{ClusterConfig, EtcdConfig, NodeSpec, Timing},
    instance::InstanceSpec,
};
use fulmar_fencing::agents::io_barrier::attachments;
use fulmar_fencing::config::{
    DeviceConfig, FencingConfig, IoBarrierConfig, IpmiConfig, LabHostConfig,
    NodeConfig as FenceNode,
};

pub const VIP: &str = "198.18.10.100";
pub const NODES: [&str; 3] = ["node1", "node2", "node3"];
pub const INSTANCE: &str = "mail1";
/// Where each node's fulmar-noded serves its metrics.
pub const NODED_METRICS: u16 = 9422;

fn node_addr(node: &str) -> String {
    let i: u8 = node.trim_start_matches("node").parse().expect("nodeN");
    format!("198.18.10.{}", 10 + i)
}

/// How the nodes are fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fencing {
    /// Every node: level 1 = lab power + the volume's I/O barrier.
    Lab,
    /// node1 as above; node2: level 1 an unreachable BMC, level 2 the lab
    /// devices; node3: only an unreachable BMC (unfenceable).
    Varied,
}

/// What the instance runs on its volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// fulmar-maild with one account (`Deliverer` writes to it).
    Maild,
    /// slapd, back_mdb (`ldap::LdapWriter` writes to it).
    Slapd,
}

pub struct Options {
    /// The `fulmar-noded` binary.
    pub noded: PathBuf,
    pub service: Service,
    /// The `fulmar-maild` binary: the instance's service.
    pub maild: PathBuf,
    pub lease_ttl_secs: u64,
    pub self_fence_margin_ms: u64,
    pub fencing: Fencing,
    /// Nodes allowed to run the instance (empty: all).
    pub allowed: Vec<&'static str>,
}

pub struct ClusterLab {
    pub lab: Lab,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub volume: PathBuf,
    pub mountpoint: PathBuf,
    endpoints: String,
    opts: Options,
    boots: BTreeMap<String, usize>,
    /// Each node's running agent.
    agents: BTreeMap<String, u32>,
}

/// The volume outlives the lab's processes: the node that held it at the
/// end still has it mounted and its loop device attached (its agent was
/// killed, not stopped). Pulling every node's plug lets both go before the
/// lab's directory is removed.
impl Drop for ClusterLab {
    fn drop(&mut self) {
        for node in NODES {
            if let Err(e) = self.unplug(node) {
                eprintln!("cluster lab teardown: {node}: {e}");
            }
        }
    }
}

pub(super) fn lab_io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |e| LabError::io(path, e)
}

impl ClusterLab {
    pub fn build(opts: Options) -> Result<ClusterLab, LabError> {
        let mut members = vec![("client".to_string(), "198.18.10.10/24".to_string())];
        for n in NODES {
            members.push((n.into(), format!("{}/24", node_addr(n))));
        }
        for i in 1..=3 {
            members.push((format!("etcd{i}"), format!("198.18.10.{}/24", 20 + i)));
        }
        let mut lab = Lab::build(&LabSpec {
            hosts: members.iter().map(|(h, _)| HostSpec::new(h)).collect(),
            segments: vec![SegmentSpec {
                name: "lan".into(),
                members: members
                    .iter()
                    .map(|(h, a)| Attachment::new(h, "eth0", &[a]))
                    .collect(),
            }],
            routes: Vec::new(),
        })?;
        let dir = lab.log_dir().join("cluster");
        fs::create_dir_all(&dir).map_err(lab_io(&dir))?;
        let members = [
            ("etcd1", "198.18.10.21"),
            ("etcd2", "198.18.10.22"),
            ("etcd3", "198.18.10.23"),
        ];
        let endpoints = etcd::start(&mut lab, &dir, &members, "client")?;
        let volume = dir.join("volume-mail1");
        let mountpoint = dir.join("mnt-mail1");
        volume::prepare(&volume, &mountpoint, opts.service, &opts.maild)?;
        let cluster = ClusterLab {
            config: dir.join("cluster.toml"),
            lab,
            dir,
            volume,
            mountpoint,
            endpoints,
            opts,
            boots: BTreeMap::new(),
            agents: BTreeMap::new(),
        };
        cluster.write_configs()?;
        Ok(cluster)
    }

    /// The fencing topology and the cluster config, as the crates' own
    /// config types (a renamed field breaks this build, not a test run).
    fn write_configs(&self) -> Result<(), LabError> {
        let dir = &self.dir;
        let bmc_password = dir.join("bmc.secret");
        fs::write(&bmc_password, "password\n").map_err(lab_io(&bmc_password))?;
        let mut fencing = FencingConfig {
            state_dir: dir.join("fence-state"),
            device: BTreeMap::new(),
            node: BTreeMap::new(),
        };
        for n in NODES {
            let power = format!("{n}-power");
            let barrier = format!("{n}-{INSTANCE}");
            let bmc = format!("{n}-bmc");
            fencing.device.insert(
                power.clone(),
                DeviceConfig::LabHost(LabHostConfig {
                    netns: self.lab.netns(n),
                    timeout: Duration::from_secs(5),
                }),
            );
            fencing.device.insert(
                barrier.clone(),
                DeviceConfig::IoBarrier(IoBarrierConfig {
                    volume: self.volume.clone(),
                    node: n.into(),
                    timeout: Duration::from_secs(5),
                }),
            );
            fencing.device.insert(
                bmc.clone(),
                DeviceConfig::Ipmi(IpmiConfig {
                    address: "198.18.10.250".into(),
                    port: 623,
                    username: "admin".into(),
                    password: None,
                    password_file: Some(bmc_password.clone()),
                    cipher_suite: None,
                    timeout: Duration::from_secs(1),
                }),
            );
            let lab_level = vec![power, barrier];
            let levels = match (self.opts.fencing, n) {
                (Fencing::Varied, "node2") => vec![vec![bmc], lab_level],
                (Fencing::Varied, "node3") => vec![vec![bmc]],
                _ => vec![lab_level],
            };
            let node = FenceNode {
                delay: Duration::ZERO,
                levels,
            };
            fencing.node.insert(n.into(), node);
        }
        let fencing_path = dir.join("fencing.toml");
        write_toml(&fencing_path, &fencing)?;

        let timing = Timing {
            lease_ttl: Duration::from_secs(self.opts.lease_ttl_secs),
            self_fence_margin: Duration::from_millis(self.opts.self_fence_margin_ms),
            reconcile_interval: Duration::from_millis(50),
            probe_interval: Duration::from_millis(500),
            restart_threshold: 2,
            restart_window: Duration::from_secs(60),
            ..Timing::default()
        };
        let mnt = self.mountpoint.display();
        let instance = InstanceSpec {
            address: format!("{VIP}/24"),
            interface: "eth0".into(),
            volume: self.volume.clone(),
            mountpoint: self.mountpoint.clone(),
            // The root on the command line names the instance in `ps`.
            start: match self.opts.service {
                Service::Maild => vec![
                    self.opts.maild.to_string_lossy().into_owned(),
                    "--root".into(),
                    mnt.to_string(),
                    "run".into(),
                ],
                Service::Slapd => ldap::start_command(&self.mountpoint),
            },
            stop: None,
            probe_ports: match self.opts.service {
                Service::Maild => vec![24, 143],
                Service::Slapd => vec![389],
            },
            run_dirs: vec!["run".into()],
            start_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
            allowed: self.opts.allowed.iter().map(|n| n.to_string()).collect(),
            preferred: vec!["node1".into()],
            sticky: true,
        };
        let cluster = ClusterConfig {
            etcd: EtcdConfig {
                endpoints: self.endpoints.split(',').map(String::from).collect(),
                prefix: PREFIX.into(),
            },
            timing,
            fencing: fencing_path,
            node: NODES
                .iter()
                .map(|n| {
                    let spec = NodeSpec {
                        addresses: vec![node_addr(n)],
                        metrics: Some(SocketAddr::new(
                            node_addr(n).parse().expect("address"),
                            9422,
                        )),
                        // The failover suite proves detection by lease
                        // alone; the platform uses heartbeats.
                        heartbeat: None,
                    };
                    (n.to_string(), spec)
                })
                .collect(),
            instance: BTreeMap::from([(INSTANCE.to_string(), instance)]),
        };
        write_toml(&self.config, &cluster)
    }

    /// Starts (or restarts after a fence) the agent on `node`.
    pub fn start_agent(&mut self, node: &str) -> Result<u32, LabError> {
        let boot = self.boots.entry(node.into()).or_default();
        *boot += 1;
        let name = format!("noded{boot}");
        let noded = self.opts.noded.to_string_lossy().into_owned();
        let config = self.config.to_string_lossy().into_owned();
        let pid = self
            .lab
            .spawn(node, &name, &noded, &["--config", &config, "--node", node])?;
        self.agents.insert(node.into(), pid);
        Ok(pid)
    }

    /// Stops `node`'s agent as systemd would (SIGTERM) and waits up to
    /// `within` for it to exit; how it exited.
    pub fn stop_agent(
        &mut self,
        node: &str,
        within: Duration,
    ) -> Result<std::process::ExitStatus, LabError> {
        let pid = *self
            .agents
            .get(node)
            .ok_or_else(|| LabError::NotReady(format!("no agent started on {node}")))?;
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.lab.try_wait(pid) {
                self.agents.remove(node);
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(LabError::NotReady(format!(
                    "{node}'s agent still runs {within:?} after SIGTERM\n{}",
                    self.agent_logs()
                )));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// A real Prometheus on the client host scraping every node's agent,
    /// with the shipped alert rules.
    pub fn start_prometheus(&mut self) -> Result<Prometheus, LabError> {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../daemon/dist/prometheus/fulmar.rules.yml");
        let targets = NODES
            .iter()
            .map(|n| format!("{}:{NODED_METRICS}", node_addr(n)))
            .collect();
        let work = self.dir.join("prometheus");
        Prometheus::start(
            &mut self.lab,
            "client",
            "198.18.10.10",
            &work,
            &[("fulmar-noded", targets)],
            &rules,
        )
    }

    pub fn start_agents(&mut self) -> Result<(), LabError> {
        for n in NODES {
            self.start_agent(n)?;
        }
        Ok(())
    }

    /// Everything the agents logged, for failure messages.
    pub fn agent_logs(&self) -> String {
        agent_logs(&self.lab, &self.boots)
    }

    /// SIGKILL every process of a node (its mounts and addresses stay:
    /// the kernel holds them, as a hung node would).
    pub fn kill_node(&self, node: &str) -> Result<(), LabError> {
        kill_netns(&self.lab.netns(node))
    }

    /// Like `kill_node`, but a process of the node outlives the kill by
    /// `linger` with its working directory on the node's mount of the
    /// volume (one stuck in the kernel, finishing I/O): the node's loop
    /// device stays attached until it goes. It runs outside the node's
    /// namespace, so the kill does not reach it; it ends by itself.
    pub fn kill_node_leaving_a_holder(&self, node: &str, linger: Duration) -> Result<(), LabError> {
        let holder = Command::new("sleep")
            .arg(format!("{:.3}", linger.as_secs_f64()))
            .current_dir(&self.mountpoint)
            .spawn()
            .map_err(lab_io(&self.mountpoint))?;
        // Reaped in the background: it must not become a zombie that
        // `ip netns pids` or the sampler could mistake for the node.
        std::thread::spawn(move || {
            let mut holder = holder;
            let _ = holder.wait();
        });
        kill_netns(&self.lab.netns(node))
    }

    /// Cuts the node's link: both sides stay alive.
    pub fn cut(&self, node: &str) -> Result<(), LabError> {
        self.lab
            .check(node, "ip", &["link", "set", "eth0", "down"])
            .map(|_| ())
    }

    /// After a power fence: links up, the address back (as the boot
    /// config would), and the agent started again.
    pub fn boot(&mut self, node: &str) -> Result<(), LabError> {
        kill_netns(&self.lab.netns(node))?;
        self.lab.check(node, "ip", &["link", "set", "eth0", "up"])?;
        let addr = format!("{}/24", node_addr(node));
        let _ = self
            .lab
            .exec(node, "ip", &["addr", "add", &addr, "dev", "eth0"]);
        self.start_agent(node)?;
        Ok(())
    }

    /// What an operator does before confirming a manual fence: pulls the
    /// plug. Processes die, the address goes, and the kernel's hold on the
    /// volume (mount, loop device) goes with the power: the device is
    /// detached, and this returns once it is gone.
    pub fn unplug(&self, node: &str) -> Result<(), LabError> {
        kill_netns(&self.lab.netns(node))?;
        self.lab
            .check(node, "ip", &["addr", "flush", "dev", "eth0"])?;
        self.lab
            .check(node, "ip", &["link", "set", "eth0", "down"])?;
        volume::release(&self.volume, &self.mountpoint, Some(node))
    }

    /// The pid of the instance's fulmar-maild on whichever node runs it.
    pub fn service_pid(&self) -> Option<i32> {
        let mnt = self.mountpoint.display();
        let mut c = Command::new("pgrep");
        c.args(["-f", &format!("fulmar-maild --root {mnt} run$")]);
        cmd::checked(c)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Kills the etcd member `i` (1–3).
    pub fn kill_etcd(&self, i: usize) -> Result<(), LabError> {
        kill_netns(&self.lab.netns(&format!("etcd{i}")))
    }

    /// `etcdctl ARGS -w json` from the client host, parsed.
    fn etcdctl_json(&self, args: &[&str]) -> Result<(Value, String), LabError> {
        etcd::etcdctl_json(&self.lab, "client", &self.endpoints, args)
    }

    /// Which etcd member (1–3) leads the raft group now.
    pub fn etcd_leader(&self) -> Result<usize, LabError> {
        let (v, out) = self.etcdctl_json(&["endpoint", "status"])?;
        let statuses = v.as_array().cloned().unwrap_or_default();
        statuses
            .iter()
            .position(|s| {
                s["Status"]["header"]["member_id"] == s["Status"]["leader"]
                    && !s["Status"]["leader"].is_null()
            })
            .map(|i| i + 1)
            .ok_or_else(|| LabError::NotReady(format!("no etcd leader in {out}")))
    }

    /// The cluster state: key (without the prefix) → value.
    pub fn state(&self) -> Result<BTreeMap<String, String>, LabError> {
        etcd::state(&self.lab, "client", &self.endpoints)
    }

    /// A JSON record of the state, if present.
    pub fn record(&self, key: &str) -> Option<Value> {
        let state = self.state().ok()?;
        serde_json::from_str(state.get(key)?).ok()
    }

    pub fn leader(&self) -> Option<String> {
        self.state().ok()?.get("leader").cloned()
    }

    /// (node, generation) while the instance's current placement runs.
    pub fn running(&self) -> Option<(String, u64)> {
        etcd::running(&self.state().ok()?, INSTANCE)
    }

    /// Waits until the instance runs and satisfies `ok`.
    pub fn wait_running(
        &self,
        within: Duration,
        ok: impl Fn(&str, u64) -> bool,
    ) -> Result<(String, u64), LabError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((node, generation)) = self.running()
                && ok(&node, generation)
            {
                return Ok((node, generation));
            }
            if Instant::now() > deadline {
                return Err(LabError::NotReady(format!(
                    "instance not running as expected within {within:?}; state: {:?}\n{}",
                    self.state(),
                    self.agent_logs()
                )));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Runs the `fulmar` tool with this cluster's config from the client.
    pub fn fulmar(&self, fulmar: &Path, args: &[&str]) -> Result<String, LabError> {
        let mut all = vec!["-C", self.config.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        self.lab
            .check("client", fulmar.to_str().expect("utf-8 path"), &all)
    }

    /// Agent log lines, over every boot of every node, that say a takeover's
    /// file system check repaired something or found what needs a person:
    /// a clean handover has none.
    pub fn check_findings(&self) -> Vec<String> {
        let mut found = Vec::new();
        for n in NODES {
            for boot in 1..=self.boots.get(n).copied().unwrap_or(0) {
                let text = self.lab.log(n, &format!("noded{boot}"));
                found.extend(
                    text.lines()
                        .filter(|l| l.contains("needs repair") || l.contains("check repaired"))
                        .map(|l| format!("{n}: {l}")),
                );
            }
        }
        found
    }

    /// Disables the instance, waits until it stopped everywhere, and runs
    /// the full read-only check (`e2fsck -fn`) of its disk: Ok with the
    /// report when clean, Err with it when not.
    pub fn stop_and_check(&self, fulmar: &Path) -> Result<Result<String, String>, LabError> {
        self.fulmar(fulmar, &["instance", "disable", INSTANCE])?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .record(&format!("status/{INSTANCE}"))
            .is_some_and(|s| s["state"] == "stopped")
        {
            if Instant::now() > deadline {
                return Err(LabError::NotReady(format!(
                    "{INSTANCE} not stopped in 30 s:\n{}",
                    self.agent_logs()
                )));
            }
            sleep(Duration::from_millis(50));
        }
        let disk = self.volume.join("disk.img");
        let out = Command::new("e2fsck")
            .arg("-fn")
            .arg(&disk)
            .output()
            .map_err(lab_io(&disk))?;
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(if out.status.success() {
            Ok(report)
        } else {
            Err(report)
        })
    }

    /// Nodes with a loop device on the volume now, mounted or not (a
    /// device is a node that can still write).
    pub fn attached(&self) -> BTreeSet<String> {
        attachments(&self.volume)
            .into_iter()
            .filter_map(|a| a.node())
            .collect()
    }

    /// The alive stamp fulmar-maild on `node` last wrote to the volume
    /// (`run/alive.NODE`: generation and wall-clock ms), read through
    /// whichever node has it mounted now (the lab's nodes share one mount
    /// table): after a takeover, what reached the disk.
    pub fn alive_stamp(&self, node: &str) -> Option<(u64, u64)> {
        let path = self.mountpoint.join("run").join(format!("alive.{node}"));
        let text = fs::read_to_string(path).ok()?;
        let mut words = text.split_whitespace();
        Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
    }

    /// Which nodes hold the VIP and which have the volume mounted, now.
    pub fn holders(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut vip = BTreeSet::new();
        for n in NODES {
            if let Ok(out) = self.lab.check(
                n,
                "ip",
                &["-o", "-4", "addr", "show", "to", &format!("{VIP}/32")],
            ) && !out.trim().is_empty()
            {
                vip.insert(n.to_string());
            }
        }
        (vip, mounted_by(&self.volume))
    }

    /// The sequence numbers stored in the instance's mailbox (read through
    /// whichever node has it mounted now).
    pub fn stored(&self) -> Result<BTreeSet<u64>, LabError> {
        self.in_mailbox(&["new", "cur"])
    }

    /// Sequence numbers left in the maildir's `tmp`: written but never
    /// delivered (a rename that did not reach the disk).
    pub fn stranded(&self) -> Result<BTreeSet<u64>, LabError> {
        self.in_mailbox(&["tmp"])
    }

    fn in_mailbox(&self, subdirs: &[&str]) -> Result<BTreeSet<u64>, LabError> {
        let mut seen = BTreeSet::new();
        let mailbox = self.mountpoint.join("mail").join(USER).join("INBOX");
        for sub in subdirs {
            let dir = mailbox.join(sub);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let text = fs::read_to_string(e.path()).unwrap_or_default();
                if let Some(seq) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Seq: "))
                    .and_then(|s| s.trim().parse().ok())
                {
                    seen.insert(seq);
                }
            }
        }
        Ok(seen)
    }
}

fn write_toml(path: &Path, value: &impl serde::Serialize) -> Result<(), LabError> {
    let text =
        toml::to_string(value).map_err(|e| LabError::Spec(format!("{}: {e}", path.display())))?;
    fs::write(path, text).map_err(lab_io(path))
}

/// The last lines of every boot's agent log (`noded1`, `noded2`, …) of
/// each node in `boots` (node → boots), for failure messages.
pub(crate) fn agent_logs(lab: &Lab, boots: &BTreeMap<String, usize>) -> String {
    let mut out = String::new();
    for (node, boots) in boots {
        for boot in 1..=*boots {
            let text = lab.log(node, &format!("noded{boot}"));
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {node} boot {boot} (last lines)\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// SIGKILL every process in `netns` until none is left.
pub(crate) fn kill_netns(netns: &str) -> Result<(), LabError> {
    for _ in 0..100 {
        let out = cmd::checked({
            let mut c = Command::new("ip");
            c.args(["netns", "pids", netns]);
            c
        })?;
        let pids: Vec<i32> = out
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| *p != std::process::id() as i32)
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        sleep(Duration::from_millis(20));
    }
    Err(LabError::NotReady(format!(
        "processes in {netns} survive SIGKILL"
    )))
}
