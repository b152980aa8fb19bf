//! The product's front path on the reference topology, as `cargo xtask lab
//! up` runs it and as the end-to-end tests meet it: fulmar-lbd (XDP) on
//! the balancer with the shipped config, fulmar-proxyd on proxy1..3
//! authenticating against a real slapd on the directory host, and two
//! fulmar-maild instances as the accounts' homes (mail1 on node1, mail2 on
//! node2, each on its own VIP). Every proxy opens its admin endpoint (TLS,
//! a token), and `fulmar` on the balancer host reaches them through the
//! balancer's reals.
use std::{
    net::{Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use fulmar_lb::{Balancer, LoadOptions, PinLayout};
use fulmar_proxy::config::AdminConfig;

mod configs;

pub(crate) use configs::directory;
use configs::{rand_u128, services};

use crate::{
    Lab,
    certs::Ca,
    mail,
    platform::{self, Platform},
    prometheus::Prometheus,
    topology,
};

/// Mail ports the balancer serves (SMTP, POP3, IMAP and their TLS ports).
pub const MAIL_PORTS: [u16; 7] = [25, 110, 143, 465, 587, 993, 995];
/// The proxies' directory cache lifetime in the lab.
const PROXY_CACHE_TTL: Duration = Duration::from_secs(2);
/// The back-end mail instances: (name, node, VIP).
pub const INSTANCES: [(&str, &str, &str); 2] = [
    ("mail1", "node1", "198.18.2.21"),
    ("mail2", "node2", "198.18.2.22"),
];
/// Accounts of the lab's directory: (uid, password, home instance VIP).
pub const ACCOUNTS: [(&str, &str, &str); 2] = [
    ("ann", "ann-secret", "198.18.2.21"),
    ("bob", "bob-secret", "198.18.2.22"),
];
/// An account in provisioning's own form (uid = address), at home on
/// mail1, for `fulmar account move` (which needs an empty mailbox on the
/// destination: `fulmar-maild account-create` there first).
pub const MOVABLE: (&str, &str) = ("carol@mail.test", "carol-secret");
/// Provisioning's master user on the instances, from the balancer host
/// (where `fulmar` runs).
const MASTER: (&str, &str) = ("provision", "master-secret");
pub const DIRECTORY: &str = "198.18.2.20";
pub const PROXY_ADDRS: [&str; 3] = ["198.18.1.11", "198.18.1.12", "198.18.1.13"];
/// The proxies' admin endpoints (TLS, the token in `admin.token`).
pub const ADMIN_PORT: u16 = 7071;
/// The name in the lab's certificate (proxies and instances share one).
pub const CERT_NAME: &str = "mail.fulmar.test";
/// The balancer's own address (its metrics are scraped there).
pub const BALANCER: &str = "198.18.1.2";
/// The proxies share their penalty schedule on this UDP port.
pub const PENALTY_SYNC_PORT: u16 = 7072;
/// Metrics ports: fulmar-lbd, fulmar-proxyd, fulmar-maild (on each VIP).
pub const LB_METRICS: u16 = 9421;
pub const PROXY_METRICS: u16 = 9425;
pub const MAILD_METRICS: u16 = 9423;

/// The workspace's binaries the front path runs.
pub struct Bins {
    pub lbd: PathBuf,
    pub fulmar: PathBuf,
    pub proxyd: PathBuf,
    pub maild: PathBuf,
    pub noded: PathBuf,
}

impl Bins {
    /// Binaries in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Bins {
            lbd: dir.join("fulmar-lbd"),
            fulmar: dir.join("fulmar"),
            proxyd: dir.join("fulmar-proxyd"),
            maild: dir.join("fulmar-maild"),
            noded: dir.join("fulmar-noded"),
        }
    }
}

pub struct Front {
    pub lab: Lab,
    /// Configs, the directory's database, the instances' volumes.
    pub work: PathBuf,
    pub bins: Bins,
    /// fulmar-lbd's control socket.
    pub lb_socket: PathBuf,
    /// `fulmar -A`: how to reach the proxies' admin endpoints.
    pub admin_config: PathBuf,
    /// `fulmar -P`: provisioning (directory admin, instances' master user).
    pub provision_config: PathBuf,
    /// Scrapes every daemon, with the shipped alert rules.
    pub prometheus: Option<Prometheus>,
    /// The directory's slapd while it runs.
    slapd: Option<u32>,
    /// The back end under the failover manager (`start_platform`).
    pub platform: Option<Platform>,
    /// Left running (`persist`): its volumes stay.
    keep: bool,
    /// Daemons started again (log name → how many times).
    restarts: std::collections::BTreeMap<String, usize>,
}

/// A lab under the failover manager leaves its volumes mounted and their
/// loop devices attached (the kernel holds them, not a process): they go
/// once every process has.
impl Drop for Front {
    fn drop(&mut self) {
        if self.keep || self.platform.is_none() {
            return;
        }
        for host in topology::BACKEND_NODES {
            let _ = crate::cluster::kill_netns(&self.lab.netns(host));
        }
        if let Err(e) = platform::release_volumes(&self.work) {
            eprintln!("front lab teardown: {e}");
        }
    }
}

fn text(p: &Path) -> Result<&str> {
    p.to_str().context("a path that is not UTF-8")
}

impl Front {
    /// Builds the lab and starts every tier, the directory and the
    /// instances by hand; returns once every real is up at the balancer.
    pub fn start(work: &Path, bins: Bins) -> Result<Front> {
        Self::start_with(work, bins, false)
    }

    /// The whole platform: as `start`, but the directory and the
    /// instances are placed, started and moved by the failover manager.
    pub fn start_platform(work: &Path, bins: Bins) -> Result<Front> {
        Self::start_with(work, bins, true)
    }

    fn start_with(work: &Path, bins: Bins, platform: bool) -> Result<Front> {
        let spec = if platform {
            topology::platform()
        } else {
            topology::reference()
        };
        let lab = Lab::build(&spec).context("building the lab")?;
        std::fs::create_dir_all(work)?;
        let mut front = Front {
            lab,
            work: work.to_path_buf(),
            bins,
            lb_socket: work.join("lb.sock"),
            admin_config: work.join("admin.toml"),
            provision_config: work.join("provision.toml"),
            prometheus: None,
            slapd: None,
            platform: None,
            keep: false,
            restarts: Default::default(),
        };
        // What fulmar-realserver.service does on a proxy node.
        for proxy in topology::PROXIES {
            front.lab.check(
                proxy,
                text(&front.bins.fulmar)?,
                &["realserver", "prepare", topology::VIP4, topology::VIP6],
            )?;
        }
        front.start_mail_tiers(platform)?;
        front.start_balancer()?;
        front.start_prometheus()?;
        Ok(front)
    }

    /// Prometheus on the directory host, scraping the balancer, the
    /// proxies and the instances (on their VIPs).
    fn start_prometheus(&mut self) -> Result<()> {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../daemon/dist/prometheus/fulmar.rules.yml");
        let mut jobs = vec![
            ("fulmar-lbd", vec![format!("{BALANCER}:{LB_METRICS}")]),
            (
                "fulmar-proxyd",
                PROXY_ADDRS
                    .iter()
                    .map(|a| format!("{a}:{PROXY_METRICS}"))
                    .collect(),
            ),
            (
                "fulmar-maild",
                INSTANCES
                    .iter()
                    .map(|(_, _, vip)| format!("{vip}:{MAILD_METRICS}"))
                    .collect(),
            ),
        ];
        let (host, addr) = if self.platform.is_some() {
            jobs.push((
                "fulmar-noded",
                topology::BACKEND_NODES
                    .iter()
                    .enumerate()
                    .map(|(i, _)| format!("198.18.2.{}:{}", 11 + i, platform::NODED_METRICS))
                    .collect(),
            ));
            topology::MONITOR
        } else {
            ("directory", DIRECTORY)
        };
        let work = self.work.join("prometheus");
        let p = Prometheus::start(&mut self.lab, host, addr, &work, &jobs, &rules)?;
        self.prometheus = Some(p);
        Ok(())
    }

    /// The lab's Prometheus.
    pub fn prometheus(&self) -> &Prometheus {
        self.prometheus.as_ref().expect("started with the lab")
    }

    /// `fulmar` on the balancer host, with the lab's sockets and admin
    /// config; its stdout.
    pub fn fulmar(&self, args: &[&str]) -> Result<String> {
        let mut all = vec![
            "-S",
            text(&self.lb_socket)?,
            "-A",
            text(&self.admin_config)?,
            "-P",
            text(&self.provision_config)?,
        ];
        if let Some(p) = &self.platform {
            all.extend([
                "-C",
                text(&p.cluster_config)?,
                "-F",
                text(&p.fencing_config)?,
            ]);
        }
        all.extend_from_slice(args);
        Ok(self.lab.check("balancer", text(&self.bins.fulmar)?, &all)?)
    }

    /// The platform `lab up` left running, from its state and work
    /// directory; dropping it leaves everything running.
    pub fn attach(state: crate::LabState, work: &Path, bins: Bins) -> Result<Front> {
        let lab = Lab::attach(state);
        let platform = Platform::attach(&lab, work, &bins.noded)?;
        Ok(Front {
            lab,
            work: work.to_path_buf(),
            lb_socket: work.join("lb.sock"),
            admin_config: work.join("admin.toml"),
            provision_config: work.join("provision.toml"),
            bins,
            prometheus: None,
            slapd: None,
            platform: Some(platform),
            keep: true,
            restarts: Default::default(),
        })
    }

    /// Starts `program` in `host` again under a log name of its own
    /// (`NAME.N`): the last run's log stays for the post-mortem.
    fn respawn(&mut self, host: &str, name: &str, program: &Path, args: &[&str]) -> Result<u32> {
        let n = self.restarts.entry(format!("{host}/{name}")).or_default();
        *n += 1;
        let log = format!("{name}.{n}");
        Ok(self.lab.spawn(host, &log, text(program)?, args)?)
    }

    /// A proxy host back after a kill: fulmar-proxyd on its config.
    pub fn restart_proxy(&mut self, proxy: &str) -> Result<()> {
        let config = self.work.join(format!("{proxy}.toml"));
        let proxyd = self.bins.proxyd.clone();
        self.respawn(
            proxy,
            "fulmar-proxyd",
            &proxyd,
            &["--config", text(&config)?],
        )?;
        Ok(())
    }

    /// fulmar-lbd again after a kill: it takes over the pinned maps (the
    /// XDP program forwarded established flows meanwhile); returns once
    /// every real is up.
    pub fn restart_balancer(&mut self) -> Result<()> {
        let config = self.work.join("lb.toml");
        let lbd = self.bins.lbd.clone();
        self.respawn(
            "balancer",
            "fulmar-lbd",
            &lbd,
            &["--config", text(&config)?],
        )?;
        self.wait_reals_up(Duration::from_secs(15))
    }

    /// Leaves the lab running when this goes (for `lab up`); its state,
    /// for `lab down`.
    pub fn persist(&mut self) -> crate::LabState {
        self.keep = true;
        self.lab.persist()
    }

    fn start_mail_tiers(&mut self, platform: bool) -> Result<()> {
        let work = self.work.clone();
        // The lab's CA (`ca.crt`) and one certificate for every service:
        // the proxies' client side and admin doors (by name), the
        // directory and the instances (by the addresses they are dialled
        // at). Each TLS hop checks its peer against the CA.
        // (and the BMC on the monitor host)
        let mut names = vec![CERT_NAME, DIRECTORY, topology::MONITOR.1];
        names.extend(INSTANCES.iter().map(|(_, _, vip)| *vip));
        let ca = Ca::new()?;
        ca.write(&work.join("ca.crt"))?;
        ca.issue(&names, &work.join("proxy.crt"), &work.join("proxy.key"))?;
        if platform {
            let noded = self.bins.noded.clone();
            self.platform = Some(Platform::start(self, &noded)?);
        } else {
            self.start_directory()?;
            for (i, instance) in INSTANCES.iter().enumerate() {
                self.start_instance(*instance, 2424 + i as u16)?;
            }
        }
        std::fs::write(work.join("ldap.secret"), "proxy-secret\n")?;
        self.write_provision_config()?;
        let token = format!("{:032x}", rand_u128());
        std::fs::write(work.join("admin.token"), format!("{token}\n"))?;
        std::fs::write(
            &self.admin_config,
            format!(
                "port = {ADMIN_PORT}\nca = \"{}\"\ntls_name = \"{CERT_NAME}\"\ntoken_file = \"{}\"\n",
                work.join("ca.crt").display(),
                work.join("admin.token").display()
            ),
        )?;
        let config = self.proxy_config()?;
        std::fs::write(
            work.join("penalty.key"),
            format!("{:032x}{:032x}\n", rand_u128(), rand_u128()),
        )?;
        for (proxy, addr) in topology::PROXIES.iter().zip(PROXY_ADDRS) {
            let mut config = config.clone();
            // One guessing schedule for the tier: each proxy tells the
            // others of every check it reserves and how it ended.
            let penalty = &mut config.session.auth_penalty;
            penalty.sync_address = Some(SocketAddr::new(addr.parse()?, PENALTY_SYNC_PORT));
            penalty.peers = PROXY_ADDRS
                .iter()
                .filter(|a| **a != addr)
                .map(|a| Ok(SocketAddr::new(a.parse()?, PENALTY_SYNC_PORT)))
                .collect::<Result<_>>()?;
            penalty.sync_key_file = Some(work.join("penalty.key"));
            config.admin = Some(AdminConfig {
                socket: Some(work.join(format!("{proxy}-admin.sock"))),
                address: Some(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), ADMIN_PORT)),
                token_file: Some(work.join("admin.token")),
                name: proxy.to_string(),
            });
            let path = work.join(format!("{proxy}.toml"));
            std::fs::write(&path, toml::to_string(&config)?)?;
            let proxyd = text(&self.bins.proxyd)?.to_string();
            self.lab
                .spawn(proxy, "fulmar-proxyd", &proxyd, &["--config", text(&path)?])?;
        }
        for (proxy, addr) in topology::PROXIES.iter().zip(PROXY_ADDRS) {
            mail::wait_port(&self.lab, proxy, addr, 143)?;
        }
        Ok(())
    }

    /// slapd on the directory host, with the lab's accounts (loaded afresh:
    /// what provisioning wrote since is gone).
    pub fn start_directory(&mut self) -> Result<()> {
        let work = self.work.clone();
        let (certificate, key) = (work.join("proxy.crt"), work.join("proxy.key"));
        self.slapd = Some(mail::start_slapd(
            &mut self.lab,
            "directory",
            DIRECTORY,
            &work.join("ldap"),
            &directory(&certificate, &key),
        )?);
        Ok(())
    }

    /// Kills slapd (SIGKILL, as a node loss would): the directory is gone
    /// until `start_directory`.
    pub fn stop_directory(&mut self) -> Result<()> {
        let pid = self.slapd.take().context("slapd is not running")?;
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.lab.try_wait(pid).is_none() {
            if Instant::now() > deadline {
                bail!("slapd {pid} outlived SIGKILL by 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// One fulmar-maild instance started by hand, as the failover manager
    /// would: its VIP on the node, its root (here a directory of its own)
    /// with the config and accounts, then `fulmar-maild run`.
    fn start_instance(&mut self, (name, node, vip): (&str, &str, &str), lmtp: u16) -> Result<()> {
        let root = self.work.join("volumes").join(name);
        self.write_instance(&root, name, vip, lmtp)?;
        self.lab.check(
            node,
            "ip",
            &["addr", "add", &format!("{vip}/32"), "dev", "eth0"],
        )?;
        let root_arg = text(&root)?.to_string();
        let maild = text(&self.bins.maild)?.to_string();
        self.lab.spawn(
            node,
            name,
            &maild,
            &[
                "--root",
                &root_arg,
                "run",
                "--node",
                node,
                "--generation",
                "1",
            ],
        )?;
        mail::wait_port(&self.lab, "proxy1", vip, 995)?;
        Ok(())
    }

    /// The kernel-tuning drop-in, then fulmar-lbd on the shipped config;
    /// waits until every real is up.
    fn start_balancer(&mut self) -> Result<()> {
        let tuning = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../lb-userspace/dist/60-fulmar-balancer.conf");
        // -e: net.core.bpf_jit_enable exists only in the root namespace.
        self.lab.check(
            "balancer",
            "sysctl",
            &["-e", "-q", &format!("--load={}", tuning.display())],
        )?;
        let config = self.lb_config()?;
        let config_path = self.work.join("lb.toml");
        std::fs::write(&config_path, toml::to_string(&config)?)?;
        std::fs::write(&config.services_file, services())?;
        self.lab.register_pin_dir(&config.pin_dir);
        // A veth delivers XDP_TX frames only to a peer with an XDP program:
        // the lab's stand-in for a NIC. The daemon reuses the maps this pins.
        let port = self
            .lab
            .fabric_port("balancer", "eth0")
            .context("balancer port")?;
        let pins = PinLayout::new(&config.pin_dir);
        let capacity = config.flow_capacity;
        self.lab.in_host("fabric", move || -> Result<()> {
            let mut lb = Balancer::load(
                &pins,
                &LoadOptions {
                    flow_capacity: capacity,
                },
            )?;
            lb.attach_veth_peer(&port)?;
            Ok(())
        })??;
        let lbd = text(&self.bins.lbd)?.to_string();
        self.lab.spawn(
            "balancer",
            "fulmar-lbd",
            &lbd,
            &["--config", text(&config_path)?],
        )?;
        self.wait_reals_up(Duration::from_secs(15))
    }

    /// Waits until the balancer has every real up.
    pub fn wait_reals_up(&self, within: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let up = self
                .fulmar(&["-j", "real", "show"])
                .ok()
                .and_then(|text| serde_json::from_str::<Vec<serde_json::Value>>(&text).ok())
                .is_some_and(|rows| {
                    !rows.is_empty() && rows.iter().all(|r| r["state_live"] == "up")
                });
            if up {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!(
                    "the reals did not all come up:\n{}\n{}",
                    self.fulmar(&["real", "show"]).unwrap_or_default(),
                    self.lab.log("balancer", "fulmar-lbd")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
