//! The back end under the failover manager, as `cargo xtask lab up` runs
//! it: three etcd members; fulmar-noded on node1, node2 and standby; and
//! three instances, each on its own loop-mounted ext4 volume behind its own
//! VIP: mail1 and mail2 (fulmar-maild) and ldap (slapd, the directory the
//! proxies and the instances authenticate against). The agents place,
//! start and probe them, and when a node dies they fence it (lab power,
//! then the I/O barrier of every volume) before another node takes over.
use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use fulmar_failover::{
    config::{ClusterConfig, NodeSpec},
    instance::InstanceSpec,
};
use fulmar_fencing::config::{
    DeviceConfig, FencingConfig, IoBarrierConfig, LabHostConfig, NodeConfig as FenceNode,
};

pub mod bmc;
pub mod chaos;
pub mod workload;

use crate::{
    Lab,
    cluster::{etcd, kill_netns, volume},
    front::{DIRECTORY, Front},
    mail, topology,
};

/// The platform's instances: (name, VIP, preferred node). The standby node
/// is the spare of an N+1 cluster.
pub const INSTANCES: [(&str, &str, &str); 3] = [
    ("mail1", "198.18.2.21", "node1"),
    ("mail2", "198.18.2.22", "node2"),
    ("ldap", DIRECTORY, "node2"),
];
/// Where each node's fulmar-noded sends and hears heartbeats.
const NODED_HEARTBEAT: u16 = 7790;
/// Where each node's fulmar-noded serves its metrics.
pub const NODED_METRICS: u16 = 9422;
/// `fulmar` and etcdctl run on the balancer host (the operator's seat).
const SEAT: &str = "balancer";

pub struct Platform {
    /// cluster.toml (`fulmar -C`) and fencing.toml (`fulmar -F`).
    pub cluster_config: PathBuf,
    pub fencing_config: PathBuf,
    pub endpoints: String,
    pub noded: PathBuf,
    /// Each node's agent starts (log names noded1, noded2, …).
    boots: BTreeMap<String, usize>,
}

/// The volume and mountpoint of instance `name` under `work`.
pub fn volume_paths(work: &Path, name: &str) -> (PathBuf, PathBuf) {
    (work.join("volumes").join(name), work.join("mnt").join(name))
}

/// The node's address on the back-end segment.
fn node_addr(node: &str) -> String {
    let i = topology::BACKEND_NODES
        .iter()
        .position(|n| *n == node)
        .expect("a back-end node");
    format!("198.18.2.{}", 11 + i)
}

impl Platform {
    /// etcd, the volumes (filled with each instance's config and data),
    /// the cluster and fencing configs, and an agent on every node;
    /// returns once every instance runs.
    pub fn start(front: &mut Front, noded: &Path) -> Result<Platform> {
        let work = front.work.clone();
        let endpoints = etcd::start(&mut front.lab, &work, &topology::ETCD, SEAT)?;
        for (i, (name, vip, _)) in INSTANCES.iter().enumerate() {
            let (vol, mnt) = volume_paths(&work, name);
            volume::make(&vol, &mnt, &topology::BACKEND_NODES, || -> Result<()> {
                if *name == "ldap" {
                    fill_directory(&work, &mnt)
                } else {
                    front.write_instance(&mnt, name, vip, 2424 + i as u16)
                }
            })?;
        }
        let mut platform = Platform {
            cluster_config: work.join("cluster.toml"),
            fencing_config: work.join("fencing.toml"),
            endpoints,
            noded: noded.to_path_buf(),
            boots: BTreeMap::new(),
        };
        platform.write_configs(&front.lab, &work)?;
        bmc::start(&mut front.lab, &work, noded, &platform.cluster_config)?;
        // node1 first, and leading before the others join: a test that
        // kills node1 kills the leader (the others must depose it). The
        // instances wait, disabled, until every node is in: placed by a
        // lone node1 they would all stay there.
        let cluster = platform.cluster_config.to_string_lossy().into_owned();
        let bin = front.bins.fulmar.to_string_lossy().into_owned();
        let fulmar = |lab: &Lab, verb: &str, name: &str| -> Result<()> {
            lab.check(SEAT, &bin, &["-C", &cluster, "instance", verb, name])?;
            Ok(())
        };
        for (name, _, _) in INSTANCES {
            fulmar(&front.lab, "disable", name)?;
        }
        let (first, others) = topology::BACKEND_NODES.split_first().expect("nodes");
        platform.start_agent(&mut front.lab, first)?;
        let within = Duration::from_secs(30);
        platform.wait_state(&front.lab, within, &format!("{first} leading"), |s| {
            s.get("leader").map(String::as_str) == Some(*first)
        })?;
        for node in others {
            platform.start_agent(&mut front.lab, node)?;
        }
        platform.wait_state(&front.lab, within, "every node joined", |s| {
            topology::BACKEND_NODES
                .iter()
                .all(|n| s.contains_key(&format!("alive/{n}")))
        })?;
        for (name, _, _) in INSTANCES {
            fulmar(&front.lab, "enable", name)?;
        }
        for (name, _, _) in INSTANCES {
            platform.wait_running(&front.lab, name, Duration::from_secs(60), |_, _| true)?;
        }
        Ok(platform)
    }

    /// The platform of a lab left running, from its work directory; its
    /// agents' next boots are numbered after the logs already there.
    pub fn attach(lab: &Lab, work: &Path, noded: &Path) -> Result<Platform> {
        let cluster_config = work.join("cluster.toml");
        let cluster = ClusterConfig::load(&cluster_config).map_err(anyhow::Error::msg)?;
        let boots = topology::BACKEND_NODES
            .iter()
            .map(|node| {
                let n = (1..)
                    .take_while(|b| lab.log_dir().join(format!("{node}-noded{b}.log")).exists())
                    .count();
                (node.to_string(), n)
            })
            .collect();
        Ok(Platform {
            cluster_config,
            fencing_config: cluster.fencing.clone(),
            endpoints: cluster.etcd.endpoints.join(","),
            noded: noded.to_path_buf(),
            boots,
        })
    }

    /// fencing.toml: every node is fenced by its BMC (level 1), else by
    /// its lab power (level 2), each with the I/O barrier of every volume
    /// (the lab's nodes share one kernel: a power cut alone would leave
    /// their loop devices). cluster.toml: the shipped timing, the lab's
    /// nodes and instances.
    fn write_configs(&self, lab: &Lab, work: &Path) -> Result<()> {
        let mut fencing = FencingConfig {
            state_dir: work.join("fence-state"),
            device: BTreeMap::new(),
            node: BTreeMap::new(),
        };
        for node in topology::BACKEND_NODES {
            let power = format!("{node}-power");
            fencing.device.insert(
                power.clone(),
                DeviceConfig::LabHost(LabHostConfig {
                    netns: lab.netns(node),
                    timeout: Duration::from_secs(5),
                }),
            );
            let bmc = format!("{node}-bmc");
            fencing.device.insert(bmc.clone(), bmc::device(work, node));
            let mut barriers = Vec::new();
            for (name, _, _) in INSTANCES {
                let barrier = format!("{node}-{name}");
                fencing.device.insert(
                    barrier.clone(),
                    DeviceConfig::IoBarrier(IoBarrierConfig {
                        volume: volume_paths(work, name).0,
                        node: node.into(),
                        timeout: Duration::from_secs(5),
                    }),
                );
                barriers.push(barrier);
            }
            let level = |device: String| [vec![device], barriers.clone()].concat();
            let fence = FenceNode {
                delay: Duration::ZERO,
                levels: vec![level(bmc), level(power)],
            };
            fencing.node.insert(node.into(), fence);
        }
        fs::write(&self.fencing_config, toml::to_string(&fencing)?)?;

        let shipped =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../backend/failover/dist/cluster.toml");
        let mut cluster = ClusterConfig::load(&shipped).map_err(anyhow::Error::msg)?;
        cluster.etcd.endpoints = self.endpoints.split(',').map(String::from).collect();
        cluster.fencing = self.fencing_config.clone();
        cluster.node = topology::BACKEND_NODES
            .iter()
            .map(|n| {
                let addr = node_addr(n);
                let ip = addr.parse().expect("address");
                let spec = NodeSpec {
                    metrics: Some(SocketAddr::new(ip, NODED_METRICS)),
                    heartbeat: Some(SocketAddr::new(ip, NODED_HEARTBEAT)),
                    addresses: vec![addr],
                };
                (n.to_string(), spec)
            })
            .collect();
        cluster.instance = INSTANCES
            .iter()
            .map(|(name, vip, preferred)| {
                (name.to_string(), self.instance(work, name, vip, preferred))
            })
            .collect();
        fs::write(&self.cluster_config, toml::to_string(&cluster)?)?;
        Ok(())
    }

    fn instance(&self, work: &Path, name: &str, vip: &str, preferred: &str) -> InstanceSpec {
        let (volume, mountpoint) = volume_paths(work, name);
        let mnt = mountpoint.to_string_lossy().into_owned();
        let maild = self.noded.with_file_name("fulmar-maild");
        let (start, probe_ports) = if name == "ldap" {
            let conf = format!("{mnt}/slapd/slapd.conf");
            let urls = mail::slapd_urls(vip, true);
            let start = ["slapd", "-d", "0", "-h", &urls, "-f", &conf].map(String::from);
            (start.to_vec(), vec![389, 636])
        } else {
            // The root on the command line names the instance in `ps`.
            let start = [&maild.to_string_lossy(), "--root", &mnt, "run"].map(|s| s.to_string());
            (start.to_vec(), vec![993, 995, 24])
        };
        InstanceSpec {
            address: format!("{vip}/24"),
            interface: "eth0".into(),
            volume,
            mountpoint,
            start,
            stop: None,
            probe_ports,
            run_dirs: vec![if name == "ldap" { "slapd/run" } else { "run" }.into()],
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            allowed: Vec::new(),
            preferred: vec![preferred.into()],
            sticky: true,
        }
    }

    /// Starts (or, after a fence, restarts) the agent on `node`.
    pub fn start_agent(&mut self, lab: &mut Lab, node: &str) -> Result<u32> {
        let boot = self.boots.entry(node.into()).or_default();
        *boot += 1;
        let name = format!("noded{boot}");
        let noded = self.noded.to_string_lossy().into_owned();
        let config = self.cluster_config.to_string_lossy().into_owned();
        Ok(lab.spawn(node, &name, &noded, &["--config", &config, "--node", node])?)
    }

    /// SIGKILL every process of `node`: its mounts and addresses stay (the
    /// kernel holds them, as on a hung node) until a fence takes them.
    pub fn kill_node(&self, lab: &Lab, node: &str) -> Result<()> {
        Ok(kill_netns(&lab.netns(node))?)
    }

    /// After a power fence: the links up, the node's addresses and routes
    /// back (as its boot config would), and its agent started again.
    pub fn boot(&mut self, lab: &mut Lab, node: &str) -> Result<()> {
        lab.check(node, "ip", &["link", "set", "eth0", "up"])?;
        let addrs = lab.state().addresses[node]["eth0"].clone();
        for addr in addrs {
            let _ = lab.exec(node, "ip", &["addr", "add", &addr, "dev", "eth0"]);
        }
        for via in ["198.18.2.1", "2001:db8:2::1"] {
            let _ = lab.exec(node, "ip", &["route", "replace", "default", "via", via]);
        }
        self.start_agent(lab, node)?;
        Ok(())
    }

    /// The failover manager's state: key (without the prefix) → value.
    pub fn state(&self, lab: &Lab) -> Result<BTreeMap<String, String>> {
        Ok(etcd::state(lab, SEAT, &self.endpoints)?)
    }

    /// (node, generation) while `instance` runs where it is placed.
    pub fn running(&self, lab: &Lab, instance: &str) -> Option<(String, u64)> {
        etcd::running(&self.state(lab).ok()?, instance)
    }

    /// Waits until `instance` runs and satisfies `ok`.
    pub fn wait_running(
        &self,
        lab: &Lab,
        instance: &str,
        within: Duration,
        ok: impl Fn(&str, u64) -> bool,
    ) -> Result<(String, u64)> {
        let state = self.wait_state(
            lab,
            within,
            &format!("{instance} running as expected"),
            |s| etcd::running(s, instance).is_some_and(|(n, g)| ok(&n, g)),
        )?;
        Ok(etcd::running(&state, instance).expect("it ran"))
    }

    /// Waits until the cluster state satisfies `ok` (`what` names it in
    /// the error, with the state and the agents' logs); returns that state.
    pub fn wait_state(
        &self,
        lab: &Lab,
        within: Duration,
        what: &str,
        ok: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> Result<BTreeMap<String, String>> {
        let deadline = Instant::now() + within;
        loop {
            let state = self.state(lab);
            if let Ok(s) = &state
                && ok(s)
            {
                return state;
            }
            if Instant::now() > deadline {
                bail!(
                    "not {what} within {within:?}; state: {state:?}\n{}",
                    self.agent_logs(lab)
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// The last lines every agent logged, for failure messages.
    pub fn agent_logs(&self, lab: &Lab) -> String {
        crate::cluster::agent_logs(lab, &self.boots)
    }
}

/// The ldap volume: slapd's config, certificate and database (durable: a
/// directory that keeps what provisioning writes).
fn fill_directory(work: &Path, mnt: &Path) -> Result<()> {
    let dir = mnt.join("slapd");
    fs::create_dir_all(&dir)?;
    let (certificate, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    fs::copy(work.join("proxy.crt"), &certificate).context("the lab certificate")?;
    fs::copy(work.join("proxy.key"), &key)?;
    mail::load_slapd(&dir, &crate::front::directory(&certificate, &key), true)?;
    Ok(())
}

/// Pulls every volume under `work` from every node, as a power cut would:
/// what `lab down` and a dropped lab do once the nodes' processes are dead.
pub fn release_volumes(work: &Path) -> Result<()> {
    for (name, _, _) in INSTANCES {
        let (vol, mnt) = volume_paths(work, name);
        if vol.exists() {
            volume::release(&vol, &mnt, None)?;
        }
    }
    Ok(())
}
