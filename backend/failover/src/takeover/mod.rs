//! Starting an instance on this node, in the order that keeps a moved
//! instance safe: attach the volume (through this node's access path, only
//! when nothing else has it attached) and check it → mount it → clear the
//! previous holder's run state →
//! stamp the generation (refused if the volume carries a newer one) → add
//! the address → announce it → start the service → probe until it answers.
//! A failed step undoes the ones before it, in reverse. Stop is the
//! reverse: service, address, volume. (Fencing the previous node comes
//! before all this and is the failover manager's step.)
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

pub mod announce;
pub mod probe;
pub mod service;
pub mod stale;
pub mod vip;
pub mod volume;

use announce::announce;
use probe::probe;
use service::Service;
use vip::Netlink;
use volume::Mounted;

use crate::instance::InstanceSpec;

/// One timed step, for the failover report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub took: Duration,
}

/// An instance running here.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    /// This node: the service is told it (FULMAR_NODE) at each start.
    node: String,
    pub generation: u64,
    pub steps: Vec<Step>,
    mounted: Mounted,
    ifindex: u32,
    addr: IpAddr,
    service: Service,
}

impl Running {
    pub fn service_pid(&self) -> u32 {
        self.service.pid()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("starting {instance} (generation {generation}) failed at {step}: {reason}")]
pub struct StartError {
    pub instance: String,
    pub generation: u64,
    pub step: &'static str,
    pub reason: String,
    /// Whether the volume carried a newer generation.
    pub superseded: bool,
    /// Whether the file system check found damage that needs a person.
    pub needs_repair: bool,
}

/// What has been done so far, to undo on failure.
#[derive(Default)]
struct Undo {
    mounted: Option<Mounted>,
    address: Option<(u32, IpAddr)>,
    service: Option<Service>,
}

impl Undo {
    async fn run(mut self, spec: &InstanceSpec, netlink: &Netlink) {
        if let Some(s) = self.service.take()
            && let Err(e) = s.stop(spec)
        {
            tracing::error!("rollback: stopping the service: {e}");
        }
        if let Some((index, addr)) = self.address
            && let Err(e) = netlink.del(index, addr).await
        {
            tracing::error!("rollback: {e}");
        }
        if let Some(m) = self.mounted.take()
            && let Err(e) = volume::unmount(&m)
        {
            tracing::error!("rollback: {e}");
        }
    }
}

pub async fn start(
    name: &str,
    spec: &InstanceSpec,
    node: &str,
    generation: u64,
) -> Result<Running, StartError> {
    let fail = |step: &'static str, reason: String, superseded: bool| StartError {
        instance: name.to_string(),
        generation,
        step,
        reason,
        superseded,
        needs_repair: false,
    };
    let mut steps = Vec::new();
    let mut undo = Undo::default();
    let (addr, prefix) = spec
        .vip()
        .map_err(|e| fail("config", e.to_string(), false))?;
    let netlink = Netlink::connect().map_err(|e| fail("config", e.to_string(), false))?;
    let link = netlink
        .link(&spec.interface)
        .await
        .map_err(|e| fail("config", e.to_string(), false))?;

    let mut clock = Instant::now();
    let mut lap = |name: &'static str, steps: &mut Vec<Step>| {
        steps.push(Step {
            name,
            took: clock.elapsed(),
        });
        clock = Instant::now();
    };

    let outcome: Result<Service, StartError> = async {
        let device = volume::attach(&spec.volume, node, name).map_err(|e| StartError {
            needs_repair: matches!(e, volume::VolumeError::NeedsRepair { .. }),
            ..fail("check", e.to_string(), false)
        })?;
        lap("check", &mut steps);
        undo.mounted = Some(
            volume::mount(device, &spec.mountpoint)
                .map_err(|e| fail("mount", e.to_string(), false))?,
        );
        lap("mount", &mut steps);
        let cleared = stale::clear(&spec.mountpoint, &spec.run_dirs)
            .map_err(|e| fail("run state", e.to_string(), false))?;
        if !cleared.is_empty() {
            tracing::info!(
                instance = name,
                ?cleared,
                "removed the last holder's run state"
            );
        }
        lap("run state", &mut steps);
        volume::claim(&spec.mountpoint, node, generation).map_err(|e| {
            let superseded = matches!(e, volume::VolumeError::Stale { .. });
            fail("generation", e.to_string(), superseded)
        })?;
        lap("generation", &mut steps);
        netlink
            .add(link.index, addr, prefix)
            .await
            .map_err(|e| fail("address", e.to_string(), false))?;
        undo.address = Some((link.index, addr));
        lap("address", &mut steps);
        announce(link.index, link.mac, addr).map_err(|e| fail("announce", e.to_string(), false))?;
        lap("announce", &mut steps);
        undo.service = Some(
            Service::start(name, node, spec, generation)
                .map_err(|e| fail("service", e.to_string(), false))?,
        );
        lap("service", &mut steps);
        let service = undo.service.as_mut().expect("started");
        until_healthy(name, service, addr, spec)
            .await
            .map_err(|e| fail("probe", e.to_string(), false))?;
        lap("probe", &mut steps);
        Ok(undo.service.take().expect("started"))
    }
    .await;
    match outcome {
        Ok(service) => Ok(Running {
            name: name.to_string(),
            node: node.to_string(),
            generation,
            steps,
            mounted: undo.mounted.take().expect("mounted"),
            ifindex: link.index,
            addr,
            service,
        }),
        Err(e) => {
            tracing::error!("{e}; rolling back");
            undo.run(spec, &netlink).await;
            Err(e)
        }
    }
}

/// Why a running instance could not be stopped, restarted or found healthy.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    #[error(transparent)]
    Address(#[from] vip::VipError),
    #[error(transparent)]
    Volume(#[from] volume::VolumeError),
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    #[error("{source} after {after:?}")]
    NotHealthy {
        source: probe::ProbeError,
        after: Duration,
    },
    /// The service is gone, with the last lines it logged.
    #[error("{0}")]
    Exited(String),
}

impl From<TakeoverError> for String {
    fn from(e: TakeoverError) -> String {
        e.to_string()
    }
}

/// Stops a running instance: service, address, volume.
pub async fn stop(running: Running, spec: &InstanceSpec) -> Result<(), TakeoverError> {
    running.service.stop(spec)?;
    release(running.ifindex, running.addr, &running.mounted).await
}

/// Self-fencing: SIGKILL the service, drop the address, unmount, with no
/// grace period. Every step is tried even when one fails.
pub async fn stop_now(mut running: Running) -> Result<(), TakeoverError> {
    let killed = running.service.kill().map_err(TakeoverError::from);
    let released = release(running.ifindex, running.addr, &running.mounted).await;
    killed.and(released)
}

async fn release(ifindex: u32, addr: IpAddr, mounted: &Mounted) -> Result<(), TakeoverError> {
    let address = match Netlink::connect() {
        Ok(netlink) => netlink.del(ifindex, addr).await,
        Err(e) => Err(e),
    };
    let volume = volume::unmount(mounted).map_err(TakeoverError::from);
    address.map_err(TakeoverError::from).and(volume)
}

/// Restarts the service in place (same volume, address and generation) and
/// waits for its probe; the instance stays here.
pub async fn restart_service(
    running: &mut Running,
    spec: &InstanceSpec,
) -> Result<(), TakeoverError> {
    // The old one is dead or failing: nothing of it may hold the ports.
    running.service.kill()?;
    running.service = Service::start(&running.name, &running.node, spec, running.generation)?;
    until_healthy(&running.name, &mut running.service, running.addr, spec).await
}

/// Probes a just-started service until it passes, it exits, or
/// `start_timeout` runs out.
async fn until_healthy(
    name: &str,
    service: &mut Service,
    addr: IpAddr,
    spec: &InstanceSpec,
) -> Result<(), TakeoverError> {
    let deadline = Instant::now() + spec.start_timeout;
    loop {
        if !service.running() {
            return Err(exited(name, spec));
        }
        match probe(addr, &spec.probe_ports, &spec.mountpoint).await {
            Ok(()) => return Ok(()),
            Err(source) if Instant::now() > deadline => {
                return Err(TakeoverError::NotHealthy {
                    source,
                    after: spec.start_timeout,
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl Running {
    /// The health probe: the service runs, its ports answer, the volume
    /// takes a durable write.
    pub async fn healthy(&mut self, spec: &InstanceSpec) -> Result<(), TakeoverError> {
        if !self.service.running() {
            return Err(exited(&self.name, spec));
        }
        Ok(probe(self.addr, &spec.probe_ports, &spec.mountpoint).await?)
    }
}

/// "the service exited", with the last lines it logged: the reason an
/// operator needs is usually there.
fn exited(name: &str, spec: &InstanceSpec) -> TakeoverError {
    let log = service::log_path(name, spec);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    TakeoverError::Exited(if tail.is_empty() {
        "the service exited".into()
    } else {
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("the service exited: {}", tail.join(" | "))
    })
}
