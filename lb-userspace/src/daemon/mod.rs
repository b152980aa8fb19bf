//! `fulmar-lbd`: loads (or takes over) the XDP data path, applies the
//! services file, and keeps the maps true to the checks, the agents and the
//! neighbour table. It serves `fulmar` on a Unix socket.
pub mod control;
pub mod core;
mod metrics;
mod queries;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::{
    AttachMode, Balancer, LbError, LoadOptions, PinLayout,
    config::{DaemonConfig, ModeChoice},
    edit::apply_batch,
    health,
    model::{CheckConf, Desired},
    netlink::{self, Netlink},
    rows::AttachRow,
    services::Forwarding,
};
use core::{Core, RealId};

pub type Shared = Arc<Mutex<Core>>;

/// The running daemon's moving parts.
pub struct Daemon {
    pub core: Shared,
    netlink: Netlink,
    ifindex: u32,
    checks: Mutex<HashMap<RealId, (CheckConf, JoinHandle<()>)>>,
}

/// Loads the object and attaches it, or reuses the attachment a previous
/// run pinned: the data path never stops for a daemon restart.
fn load_and_attach(config: &DaemonConfig) -> Result<(Balancer, String)> {
    let pins = PinLayout::new(&config.pin_dir);
    let mut lb = Balancer::load(
        &pins,
        &LoadOptions {
            flow_capacity: config.flow_capacity,
        },
    )
    .context("loading the XDP object (is this root, with bpffs mounted?)")?;
    let link = pins.link(&config.interface);
    if link.exists() {
        tracing::info!(
            "XDP already attached to {} through {}; keeping it, with its flows",
            config.interface,
            link.display()
        );
        return Ok((lb, "pinned".into()));
    }
    let mode = match config.mode {
        ModeChoice::Generic => AttachMode::Generic,
        ModeChoice::Native | ModeChoice::Auto => AttachMode::Native,
    };
    match lb.attach(&config.interface, mode) {
        Ok(()) => {}
        Err(LbError::NativeUnsupported { .. }) if config.mode == ModeChoice::Auto => {
            tracing::warn!(
                "{}: the driver has no native XDP; attaching in generic (skb) mode, which is slower",
                config.interface
            );
            lb.attach(&config.interface, AttachMode::Generic)?;
            return Ok((lb, "generic".into()));
        }
        Err(e) => return Err(e.into()),
    }
    let name = if mode == AttachMode::Native {
        "native"
    } else {
        "generic"
    };
    tracing::info!("XDP attached to {} in {name} mode", config.interface);
    Ok((lb, name.into()))
}

/// Reads the services file; an absent file is an empty configuration.
pub fn read_services(config: &DaemonConfig) -> Result<Desired> {
    let path = &config.services_file;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Desired::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    apply_batch(&Desired::default(), &lines, &config.health)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

impl Daemon {
    pub async fn start(config: DaemonConfig) -> Result<Arc<Self>> {
        let desired = read_services(&config)?;
        let (lb, mode) = load_and_attach(&config)?;
        let netlink = Netlink::connect()?;
        let ifindex = netlink.ifindex(&config.interface).await?;
        let program_id = program_id(&PinLayout::new(&config.pin_dir));
        let attach = AttachRow {
            interface: config.interface.clone(),
            mode,
            pin_dir: config.pin_dir.display().to_string(),
            program_id,
            flow_capacity: config.flow_capacity,
            vips: Vec::new(),
        };
        let mut core = Core::new(lb, config, desired, attach);
        // Subscribe before listing: a neighbour resolved between the two
        // would otherwise be in neither, and a reachable entry sends no
        // further event for tens of seconds.
        let neighbour_updates = netlink::watch_neighbours(ifindex)?;
        for n in netlink.neighbours(ifindex).await? {
            core.on_neighbour(n.addr, n.mac)?;
        }
        let initial = core.desired.clone();
        core.commit(initial)?;
        prune_unknown_services(&mut core)?;
        let daemon = Arc::new(Self {
            core: Arc::new(Mutex::new(core)),
            netlink,
            ifindex,
            checks: Mutex::new(HashMap::new()),
        });
        daemon.sync_vips().await?;
        daemon.sync_checks();
        daemon.clone().spawn_background(neighbour_updates);
        Ok(daemon)
    }

    /// Applies a new configuration: maps, file, VIPs, checks.
    pub async fn apply(self: &Arc<Self>, next: Desired) -> Result<(), String> {
        {
            let mut core = self.core.lock().expect("core lock");
            core.commit(next).map_err(|e| e.to_string())?;
            core.persist().map_err(|e| {
                format!(
                    "applied, but saving {} failed: {e}",
                    core.config.services_file.display()
                )
            })?;
        }
        self.sync_vips().await.map_err(|e| e.to_string())?;
        self.sync_checks();
        Ok(())
    }

    /// Adds each service's VIP to the interface and removes the VIPs of
    /// services that are gone (only addresses fulmar added).
    async fn sync_vips(&self) -> Result<()> {
        let (wanted, manage) = {
            let core = self.core.lock().expect("core lock");
            (core.desired.vips(), core.config.manage_vips)
        };
        if manage {
            let owned = self.netlink.owned_addresses(self.ifindex).await?;
            for vip in wanted.difference(&owned) {
                self.netlink.add_address(self.ifindex, *vip).await?;
                tracing::info!("VIP {vip} added");
            }
            for vip in owned.difference(&wanted) {
                self.netlink.del_address(self.ifindex, *vip).await?;
                tracing::info!("VIP {vip} removed: no service uses it");
            }
        }
        let mut core = self.core.lock().expect("core lock");
        core.attach.vips = wanted.iter().map(IpAddr::to_string).collect();
        Ok(())
    }

    /// One probing task per real; restarted when its check changes.
    fn sync_checks(self: &Arc<Self>) {
        let wanted: HashMap<RealId, (CheckConf, Forwarding)> = {
            let core = self.core.lock().expect("core lock");
            core.desired
                .services
                .iter()
                .flat_map(|(addr, svc)| {
                    svc.reals
                        .iter()
                        .map(move |r| ((*addr, r.endpoint()), (r.check.clone(), svc.forwarding)))
                })
                .collect()
        };
        let mut checks = self.checks.lock().expect("checks lock");
        checks.retain(|id, (conf, task)| {
            let keep = wanted.get(id).is_some_and(|(c, _)| c == conf);
            if !keep {
                task.abort();
            }
            keep
        });
        for (id, (conf, forwarding)) in wanted {
            if checks.contains_key(&id) {
                continue;
            }
            let task = tokio::spawn(check_loop(self.core.clone(), id, conf.clone(), forwarding));
            checks.insert(id, (conf, task));
        }
    }

    fn spawn_background(
        self: Arc<Self>,
        neighbours: impl futures::Stream<Item = netlink::NeighbourUpdate> + Send + 'static,
    ) {
        let mut neighbours = Box::pin(neighbours);
        let core = self.core.clone();
        tokio::spawn(async move {
            while let Some(update) = neighbours.next().await {
                if let Err(e) = core
                    .lock()
                    .expect("core lock")
                    .on_neighbour(update.addr, update.mac)
                {
                    tracing::error!("following neighbour {}: {e}", update.addr);
                }
            }
            tracing::error!("neighbour monitor ended: MAC changes are no longer followed");
        });
        let core = self.core.clone();
        tokio::spawn(async move {
            // Slow start resolution: weights move every 100 ms.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if let Err(e) = core.lock().expect("core lock").tick() {
                    tracing::error!("slow start: {e}");
                }
            }
        });
        let core = self.core.clone();
        let every = core.lock().expect("core lock").config.sweep_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let core = core.clone();
                let done =
                    tokio::task::spawn_blocking(move || core.lock().expect("core lock").sweep())
                        .await;
                if let Ok(Err(e)) = done {
                    tracing::error!("flow sweep: {e}");
                }
            }
        });
    }
}

/// Deletes services the maps hold but the configuration does not (left by
/// a run whose services file was replaced).
fn prune_unknown_services(core: &mut Core) -> crate::error::Result<()> {
    let known: HashSet<_> = core.desired.services.keys().map(|a| a.key()).collect();
    for (key, _) in core.lb.services()? {
        if !known.contains(&key) {
            tracing::info!("removing a service the configuration no longer has");
            core.lb.delete_service(&key)?;
        }
    }
    Ok(())
}

/// Probes one real forever, reporting each result; also asks its agent,
/// and nudges neighbour resolution while its MAC is unknown.
async fn check_loop(core: Shared, id: RealId, conf: CheckConf, forwarding: Forwarding) {
    let mut tick = tokio::time::interval(conf.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let needs_mac = forwarding == Forwarding::DirectRouting
            && !core.lock().expect("core lock").neighbour_known(&id.1.ip());
        if needs_mac {
            nudge_neighbour(id.1.ip());
        }
        let result = health::probe(id.1, &conf).await;
        let agent = match conf.agent_port {
            Some(port) => health::ask_agent(SocketAddr::new(id.1.ip(), port), conf.timeout).await,
            None => None,
        };
        let mut core = core.lock().expect("core lock");
        if let Err(e) = core
            .on_check(&id, result)
            .and_then(|()| core.on_agent(&id, agent))
        {
            tracing::error!("updating real {} of {}: {e}", id.1, id.0);
        }
    }
}

/// Sends one datagram to the discard port: the kernel resolves the
/// neighbour, and the monitor then reports its MAC.
fn nudge_neighbour(addr: IpAddr) {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal");
    if let Ok(sock) = std::net::UdpSocket::bind(bind) {
        let _ = sock.send_to(&[], SocketAddr::new(addr, 9));
    }
}

/// The id of the attached balancer program (as `bpftool prog` shows it).
fn program_id(pins: &PinLayout) -> Option<u32> {
    aya::programs::ProgramInfo::from_pin(pins.program())
        .ok()
        .map(|p| p.id())
}

pub use control::serve;
