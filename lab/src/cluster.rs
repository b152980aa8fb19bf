//! A failover cluster in the lab, for the fault suite and the failover
//! benchmark: three etcd members, three back-end nodes running
//! `fulmar-noded`, one instance (Dovecot with LMTP and IMAP on a
//! loop-mounted ext4 volume behind a VIP) and a client that keeps
//! delivering mail and records every 250.
//!
//! Address plan (198.18.10.0/24): client .10, node1–3 .11–.13, etcd1–3
//! .21–.23, the instance VIP .100; .250 is a BMC that never answers.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle, sleep},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use fulmar_fencing::agents::io_barrier::attachments;
use serde_json::Value;

use crate::{Attachment, HostSpec, Lab, LabError, LabSpec, SegmentSpec, cmd};

pub const VIP: &str = "198.18.10.100";
pub const NODES: [&str; 3] = ["node1", "node2", "node3"];
pub const INSTANCE: &str = "mail1";
const PREFIX: &str = "/fulmar";

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

pub struct Options {
    /// The `fulmar-noded` binary.
    pub noded: PathBuf,
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
}

fn lab_io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
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
        let endpoints = start_etcd(&mut lab, &dir)?;
        let volume = dir.join("volume-mail1");
        let mountpoint = dir.join("mnt-mail1");
        prepare_volume(&volume, &mountpoint)?;
        let cluster = ClusterLab {
            config: dir.join("cluster.toml"),
            lab,
            dir,
            volume,
            mountpoint,
            endpoints,
            opts,
            boots: BTreeMap::new(),
        };
        cluster.write_configs()?;
        Ok(cluster)
    }

    fn write_configs(&self) -> Result<(), LabError> {
        let dir = &self.dir;
        let vol = self.volume.display();
        let mut fencing = format!("state_dir = \"{}\"\n", dir.join("fence-state").display());
        for n in NODES {
            fencing.push_str(&format!(
                "[device.{n}-power]\ntype = \"lab-host\"\nnetns = \"{ns}\"\ntimeout = \"5s\"\n\
                 [device.{n}-mail1]\ntype = \"io-barrier\"\nvolume = \"{vol}\"\nnode = \"{n}\"\ntimeout = \"5s\"\n\
                 [device.{n}-bmc]\ntype = \"ipmi\"\naddress = \"198.18.10.250\"\nusername = \"admin\"\n\
                 password = \"password\"\ntimeout = \"1s\"\n",
                ns = self.lab.netns(n)
            ));
            let lab_level = format!("[\"{n}-power\", \"{n}-mail1\"]");
            let levels = match (self.opts.fencing, n) {
                (Fencing::Varied, "node2") => format!("[[\"{n}-bmc\"], {lab_level}]"),
                (Fencing::Varied, "node3") => format!("[[\"{n}-bmc\"]]"),
                _ => format!("[{lab_level}]"),
            };
            fencing.push_str(&format!("[node.{n}]\nlevels = {levels}\n"));
        }
        let path = dir.join("fencing.toml");
        fs::write(&path, fencing).map_err(lab_io(&path))?;

        let mnt = self.mountpoint.display();
        let allowed: Vec<String> = self
            .opts
            .allowed
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        let mut cluster = format!(
            "fencing = \"{fencing}\"\n\
             [etcd]\nendpoints = [{endpoints}]\nprefix = \"{PREFIX}\"\n\
             [timing]\nlease_ttl = \"{ttl}s\"\nself_fence_margin = \"{margin}ms\"\n\
             reconcile_interval = \"50ms\"\nprobe_interval = \"500ms\"\n\
             restart_threshold = 2\nrestart_window = \"60s\"\n",
            fencing = path.display(),
            endpoints = self
                .endpoints
                .split(',')
                .map(|e| format!("\"{e}\""))
                .collect::<Vec<_>>()
                .join(", "),
            ttl = self.opts.lease_ttl_secs,
            margin = self.opts.self_fence_margin_ms,
        );
        for n in NODES {
            cluster.push_str(&format!("[node.{n}]\naddresses = [\"{}\"]\n", node_addr(n)));
        }
        cluster.push_str(&format!(
            "[instance.{INSTANCE}]\naddress = \"{VIP}/24\"\ninterface = \"eth0\"\n\
             volume = \"{vol}\"\nmountpoint = \"{mnt}\"\n\
             start = [\"dovecot\", \"-F\", \"-c\", \"{mnt}/dovecot.conf\"]\n\
             probe_ports = [24, 143]\nrun_dirs = [\"run\"]\nstart_timeout = \"10s\"\nstop_timeout = \"5s\"\n\
             allowed = [{allowed}]\npreferred = [\"node1\"]\n",
            allowed = allowed.join(", ")
        ));
        fs::write(&self.config, cluster).map_err(lab_io(&self.config))
    }

    /// Starts (or restarts after a fence) the agent on `node`.
    pub fn start_agent(&mut self, node: &str) -> Result<u32, LabError> {
        let boot = self.boots.entry(node.into()).or_default();
        *boot += 1;
        let name = format!("noded{boot}");
        let noded = self.opts.noded.to_string_lossy().into_owned();
        let config = self.config.to_string_lossy().into_owned();
        self.lab
            .spawn(node, &name, &noded, &["--config", &config, "--node", node])
    }

    pub fn start_agents(&mut self) -> Result<(), LabError> {
        for n in NODES {
            self.start_agent(n)?;
        }
        Ok(())
    }

    /// Everything the agents logged, for failure messages.
    pub fn agent_logs(&self) -> String {
        let mut out = String::new();
        for n in NODES {
            for boot in 1..=self.boots.get(n).copied().unwrap_or(0) {
                let text = self.lab.log(n, &format!("noded{boot}"));
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("--- {n} boot {boot} (last lines)\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// SIGKILL every process of a node (its mounts and addresses stay:
    /// the kernel holds them, as a hung node would).
    pub fn kill_node(&self, node: &str) -> Result<(), LabError> {
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
        if mounted_by(&self.volume).contains(node) {
            let mnt = self.mountpoint.to_string_lossy().into_owned();
            let mut c = Command::new("umount");
            c.args(["-l", &mnt]);
            cmd::checked(c)?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<String> = attachments(&self.volume)
                .into_iter()
                .filter(|a| a.node().as_deref() == Some(node))
                .map(|a| a.device)
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LabError::NotReady(format!(
                    "{node}'s loop devices {left:?} stay attached"
                )));
            }
            for device in left {
                let mut c = Command::new("losetup");
                c.args(["-d", &format!("/dev/{device}")]);
                let _ = cmd::checked(c);
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// The pid of the instance's Dovecot master on whichever node runs it.
    pub fn service_pid(&self) -> Option<i32> {
        let conf = format!("{}/dovecot.conf", self.mountpoint.display());
        let mut c = Command::new("pgrep");
        c.args(["-f", &format!("dovecot -F -c {conf}$")]);
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
        let mut all = vec!["--endpoints", &self.endpoints, "--command-timeout=2s"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-w", "json"]);
        let out = self.lab.check("client", "etcdctl", &all)?;
        let v =
            serde_json::from_str(&out).map_err(|e| LabError::Spec(format!("etcdctl json: {e}")))?;
        Ok((v, out))
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
        let (v, _) = self.etcdctl_json(&["get", "--prefix", &format!("{PREFIX}/")])?;
        let mut map = BTreeMap::new();
        for kv in v["kvs"].as_array().into_iter().flatten() {
            let key = b64(kv["key"].as_str().unwrap_or_default());
            let value = b64(kv["value"].as_str().unwrap_or_default());
            map.insert(
                key.trim_start_matches(&format!("{PREFIX}/")).to_string(),
                value,
            );
        }
        Ok(map)
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
        let state = self.state().ok()?;
        let p: Value = serde_json::from_str(state.get(&format!("placement/{INSTANCE}"))?).ok()?;
        let s: Value = serde_json::from_str(state.get(&format!("status/{INSTANCE}"))?).ok()?;
        (p["node"] == s["node"]
            && p["generation"] == s["generation"]
            && s["state"] == "running"
            && p["stop"] != true)
            .then(|| {
                (
                    p["node"].as_str().unwrap_or_default().to_string(),
                    p["generation"].as_u64().unwrap_or(0),
                )
            })
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
        let mailbox = self.mountpoint.join("mail").join(USER);
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

/// etcdctl's JSON carries keys and values in standard base64.
fn b64(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn kill_netns(netns: &str) -> Result<(), LabError> {
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

/// Whether something is mounted at `path` (this mount namespace).
pub fn mounted(path: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == path.to_str())
}

/// Nodes whose access path of `volume` backs a mounted loop device.
pub fn mounted_by(volume: &Path) -> BTreeSet<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Fields after " - ": fstype, source, options.
    let sources: BTreeSet<&str> = info
        .lines()
        .filter_map(|l| l.split_once(" - ")?.1.split(' ').nth(1))
        .collect();
    attachments(volume)
        .into_iter()
        .filter(|a| sources.contains(format!("/dev/{}", a.device).as_str()))
        .filter_map(|a| a.node())
        .collect()
}

fn start_etcd(lab: &mut Lab, dir: &Path) -> Result<String, LabError> {
    let peers: Vec<String> = (1..=3)
        .map(|i| format!("etcd{i}=http://198.18.10.{}:2380", 20 + i))
        .collect();
    let peers = peers.join(",");
    let token = lab.prefix().to_string();
    for i in 1..=3 {
        let ip = format!("198.18.10.{}", 20 + i);
        let data = dir.join(format!("etcd{i}.data"));
        let args = [
            "--name".to_string(),
            format!("etcd{i}"),
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
            "--listen-peer-urls".into(),
            format!("http://{ip}:2380"),
            "--initial-advertise-peer-urls".into(),
            format!("http://{ip}:2380"),
            "--listen-client-urls".into(),
            format!("http://{ip}:2379"),
            "--advertise-client-urls".into(),
            format!("http://{ip}:2379"),
            "--initial-cluster".into(),
            peers.clone(),
            "--initial-cluster-token".into(),
            token.clone(),
            "--initial-cluster-state".into(),
            "new".into(),
            // A LAN of veths. Losing the leader stalls lease renewals for
            // one election: up to 2 × 250 ms, twice if the votes split. That
            // plus one renewal interval must fit in lease_ttl - margin, or
            // every node self-fences (the README's timing rule).
            "--heartbeat-interval".into(),
            "25".into(),
            "--election-timeout".into(),
            "250".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(&format!("etcd{i}"), "etcd", "etcd", &args)?;
    }
    let endpoints: Vec<String> = (1..=3)
        .map(|i| format!("http://198.18.10.{}:2379", 20 + i))
        .collect();
    let endpoints = endpoints.join(",");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = lab
            .exec(
                "client",
                "etcdctl",
                &["--endpoints", &endpoints, "endpoint", "health"],
            )
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(endpoints);
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "etcd not healthy: {}",
                lab.log("etcd1", "etcd")
            )));
        }
        sleep(Duration::from_millis(100));
    }
}

/// A 64 MiB ext4 volume with the Dovecot config and mail directory, and an
/// access path for every node.
fn prepare_volume(volume: &Path, mountpoint: &Path) -> Result<(), LabError> {
    let access = volume.join("access");
    fs::create_dir_all(&access).map_err(lab_io(&access))?;
    fs::create_dir_all(mountpoint).map_err(lab_io(mountpoint))?;
    let disk = volume.join("disk.img");
    fs::File::create(&disk)
        .and_then(|f| f.set_len(64 << 20))
        .map_err(lab_io(&disk))?;
    let run = |program: &str, args: &[&str]| {
        let mut c = Command::new(program);
        c.args(args);
        cmd::checked(c)
    };
    let disk_s = disk.to_string_lossy().into_owned();
    let mnt = mountpoint.to_string_lossy().into_owned();
    run("mkfs.ext4", &["-q", "-F", &disk_s])?;
    run("mount", &["-o", "loop", &disk_s, &mnt])?;
    let conf = format!(
        "protocols = lmtp imap\nlisten = {VIP}\n\
         base_dir = {mnt}/run\nstate_dir = {mnt}/state\ninstance_name = {INSTANCE}\n\
         log_path = {mnt}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n\
         mail_location = maildir:{mnt}/mail/%u\nfirst_valid_uid = 1\n\
         mail_fsync = always\n\
         passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
         userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={mnt}/mail/%u allow_all_users=yes\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    port = 143\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service lmtp {{\n  inet_listener lmtp {{\n    port = 24\n  }}\n}}\n"
    );
    let result = (|| {
        let path = mountpoint.join("dovecot.conf");
        fs::write(&path, conf).map_err(lab_io(&path))?;
        let mail = mountpoint.join("mail");
        fs::create_dir_all(&mail).map_err(lab_io(&mail))?;
        run("chown", &["dovecot:dovecot", &mail.to_string_lossy()]).map(|_| ())
    })();
    run("umount", &[&mnt])?;
    result?;
    for n in NODES {
        let path = access.join(format!("{n}.img"));
        fs::hard_link(&disk, &path).map_err(lab_io(&path))?;
    }
    Ok(())
}

const USER: &str = "ann@example.test";

/// Delivers numbered messages over LMTP to the VIP from the client, one at
/// a time, and records each one that got its 250.
pub struct Deliverer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
    thread: Option<JoinHandle<()>>,
}

impl Deliverer {
    pub fn start(lab: &Lab, interval: Duration) -> Deliverer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let netns = lab.netns_path("client");
        let thread = thread::spawn(move || {
            let ns = fs::File::open(&netns).expect("client netns");
            // SAFETY: setns(2) on an open namespace file; this thread only.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns");
            let mut seq = 0u64;
            while !s.load(Ordering::Relaxed) {
                // Refused, reset, timed out: the instance is moving; retry.
                let _ = session(&s, &a, &mut seq, interval);
                sleep(Duration::from_millis(20));
            }
        });
        Deliverer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// (sequence, when its 250 came) so far.
    pub fn acked(&self) -> Vec<(u64, Instant)> {
        self.acked.lock().expect("acked").clone()
    }

    /// The first 250 after `t`, if any.
    fn first_ack_after(&self, t: Instant) -> Option<Instant> {
        self.acked
            .lock()
            .expect("acked")
            .iter()
            .map(|(_, at)| *at)
            .find(|at| *at > t)
    }

    /// The outage a fault at `t` caused: from `t` to the end of the longest
    /// gap between 250s after it (replies in flight at `t` do not count as
    /// serving again). None while nothing was acknowledged since.
    pub fn outage_after(&self, t: Instant) -> Option<Duration> {
        self.longest_gap(t).map(|(_, end)| end - t)
    }

    /// The longest pause between 250s after `t`.
    pub fn longest_gap_after(&self, t: Instant) -> Duration {
        self.longest_gap(t).map(|(gap, _)| gap).unwrap_or_default()
    }

    /// (length, end) of the longest gap between 250s after `t`, counting
    /// from `t`; the later one wins a tie.
    fn longest_gap(&self, t: Instant) -> Option<(Duration, Instant)> {
        let acked = self.acked.lock().expect("acked");
        let mut prev = t;
        let mut longest = None;
        for at in acked.iter().map(|(_, at)| *at).filter(|at| *at > t) {
            if longest.is_none_or(|(gap, _)| at - prev >= gap) {
                longest = Some((at - prev, at));
            }
            prev = at;
        }
        longest
    }

    /// Waits for a 250 after `t`.
    pub fn wait_ack_after(&self, t: Instant, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(at) = self.first_ack_after(t) {
                return Some(at);
            }
            sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stop(mut self) -> Vec<(u64, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.acked()
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One LMTP connection, as many messages as it lasts.
fn session(
    stop: &AtomicBool,
    acked: &Mutex<Vec<(u64, Instant)>>,
    seq: &mut u64,
    interval: Duration,
) -> std::io::Result<()> {
    let target: SocketAddr = format!("{VIP}:24").parse().expect("vip");
    let stream = TcpStream::connect_timeout(&target, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let reply = |r: &mut BufReader<TcpStream>| -> std::io::Result<String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line);
            }
        }
    };
    let expect = |line: String, code: &str| {
        if line.starts_with(code) {
            Ok(())
        } else {
            Err(std::io::Error::other(line))
        }
    };
    expect(reply(&mut r)?, "220")?;
    w.write_all(b"LHLO client.test\r\n")?;
    expect(reply(&mut r)?, "250")?;
    while !stop.load(Ordering::Relaxed) {
        *seq += 1;
        let n = *seq;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        w.write_all(
            format!("MAIL FROM:<probe@client.test>\r\nRCPT TO:<{USER}>\r\nDATA\r\n").as_bytes(),
        )?;
        expect(reply(&mut r)?, "250")?;
        expect(reply(&mut r)?, "250")?;
        expect(reply(&mut r)?, "354")?;
        w.write_all(
            format!(
                "From: probe@client.test\r\nTo: {USER}\r\nSubject: delivery {n}\r\n\
                 X-Seq: {n}\r\nX-Sent-Ms: {stamp}\r\n\r\nmessage {n}\r\n.\r\n"
            )
            .as_bytes(),
        )?;
        expect(reply(&mut r)?, "250")?;
        acked.lock().expect("acked").push((n, Instant::now()));
        sleep(interval);
    }
    let _ = w.write_all(b"QUIT\r\n");
    Ok(())
}

/// Samples the holders every `period` and records any instant where two
/// nodes hold the VIP or have the volume mounted.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(usize, Vec<String>)>>,
}

impl Sampler {
    pub fn start(cluster: &ClusterLab, period: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let netns: Vec<(String, String)> = NODES
            .iter()
            .map(|n| (n.to_string(), cluster.lab.netns(n)))
            .collect();
        let volume = cluster.volume.clone();
        let thread = thread::spawn(move || {
            let mut samples = 0;
            let mut violations = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let mut vip = BTreeSet::new();
                for (node, ns) in &netns {
                    let out = Command::new("ip")
                        .args(["-n", ns, "-o", "-4", "addr", "show", "to"])
                        .arg(format!("{VIP}/32"))
                        .output();
                    if out.is_ok_and(|o| !o.stdout.is_empty()) {
                        vip.insert(node.clone());
                    }
                }
                // Attached, not only mounted: a lazily unmounted file
                // system on a device that lingers can still write.
                let attached: BTreeSet<String> = attachments(&volume)
                    .iter()
                    .filter_map(|a| a.node())
                    .collect();
                samples += 1;
                if vip.len() > 1 || attached.len() > 1 {
                    violations.push(format!("VIP on {vip:?}, volume attached by {attached:?}"));
                }
                sleep(period);
            }
            (samples, violations)
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// (samples taken, violations seen).
    pub fn stop(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("sampler"))
            .unwrap_or_default()
    }
}
