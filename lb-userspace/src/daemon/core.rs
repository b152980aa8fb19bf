//! The daemon's state: the configuration, what the checks and the
//! neighbour table say, and what was last written to the maps. Every input
//! change goes through `refresh`, which rewrites a service's pool in one
//! bank flip when its live view changed. (The rows `show` reads are built
//! in `queries`.)
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Instant,
};

use fulmar_common::{REAL_DOWN, REAL_EMPTY};
use tokio::sync::broadcast;

use crate::{
    Balancer,
    config::DaemonConfig,
    effective::{AgentVerdict, LiveReal, RealRuntime, live_real, service_specs},
    health::CheckError,
    model::{Desired, ServiceAddr, format_mac, state_name},
    rows::{AttachRow, Event},
    services::{Forwarding, RealSpec, RealState, ServiceSpec, addr_bytes},
};

/// A real of a service.
pub type RealId = (ServiceAddr, SocketAddr);

/// Each live real's endpoint and slot in its service's live bank.
pub(super) type Slots = Vec<(SocketAddr, u32)>;

/// A check's recent history.
#[derive(Clone, Debug, Default)]
pub struct CheckLog {
    pub successes: u32,
    pub failures: u32,
    pub last: String,
    /// Every result since the real was added (for the metrics).
    pub ok_total: u64,
    pub failed_total: u64,
}

pub struct Core {
    pub lb: Balancer,
    pub config: DaemonConfig,
    pub desired: Desired,
    pub attach: AttachRow,
    pub(super) runtime: HashMap<RealId, RealRuntime>,
    pub(super) checks: HashMap<RealId, CheckLog>,
    /// MACs from the neighbour table, by address.
    pub(super) neighbours: HashMap<IpAddr, [u8; 6]>,
    pub(super) live: HashMap<RealId, LiveReal>,
    pub(super) pushed: BTreeMap<ServiceAddr, (ServiceSpec, Vec<RealSpec>)>,
    pub events: broadcast::Sender<Event>,
    /// Set after the first commit: reals added later ramp when they come up.
    pub(super) started: bool,
}

fn fresh_runtime(check_none: bool, ramp_on_up: bool) -> RealRuntime {
    RealRuntime {
        // Unchecked reals count as healthy; checked ones must rise first.
        healthy: check_none,
        agent: None,
        ramp_from: None,
        ramp_on_up,
    }
}

impl Core {
    /// Takes over the maps as a previous run left them: reals live in the
    /// maps keep their health until a check says otherwise, so a restart
    /// changes nothing for traffic.
    pub fn new(lb: Balancer, config: DaemonConfig, desired: Desired, attach: AttachRow) -> Self {
        let (events, _) = broadcast::channel(1024);
        let mut core = Self {
            lb,
            config,
            desired: Desired::default(),
            attach,
            runtime: HashMap::new(),
            checks: HashMap::new(),
            neighbours: HashMap::new(),
            live: HashMap::new(),
            pushed: BTreeMap::new(),
            events,
            started: false,
        };
        for (addr, svc) in &desired.services {
            let live = core
                .lb
                .service(&addr.key())
                .ok()
                .flatten()
                .and_then(|s| core.lb.live_reals(&s).ok())
                .unwrap_or_default();
            for real in &svc.reals {
                let (bytes, _) = addr_bytes(real.addr);
                let in_map = live.iter().find(|r| {
                    r.addr == bytes && r.port_be == real.port.to_be() && r.state != REAL_EMPTY
                });
                let mut rt = fresh_runtime(real.check.kind == crate::model::CheckKind::None, false);
                if let Some(r) = in_map {
                    rt.healthy |= r.state != REAL_DOWN;
                    if r.mac != [0; 6] {
                        core.neighbours.entry(real.addr).or_insert(r.mac);
                    }
                }
                core.runtime.insert((*addr, real.endpoint()), rt);
            }
        }
        core.desired = desired;
        core
    }

    /// Makes `next` the configuration: maps, VIP bookkeeping is the caller's.
    pub fn commit(&mut self, next: Desired) -> crate::error::Result<()> {
        for addr in self.pushed.keys().copied().collect::<Vec<_>>() {
            if !next.services.contains_key(&addr) {
                let (spec, _) = self.pushed.remove(&addr).expect("listed");
                self.lb.delete_service(&spec.key())?;
            }
        }
        let mut wanted = HashMap::new();
        for (addr, svc) in &next.services {
            for real in &svc.reals {
                let id = (*addr, real.endpoint());
                let rt = self.runtime.remove(&id).unwrap_or_else(|| {
                    fresh_runtime(
                        real.check.kind == crate::model::CheckKind::None,
                        self.started,
                    )
                });
                wanted.insert(id, rt);
            }
        }
        self.runtime = wanted;
        self.checks.retain(|id, _| self.runtime.contains_key(id));
        self.live.retain(|id, _| self.runtime.contains_key(id));
        let services = next.services.len();
        let reals = self.runtime.len();
        self.desired = next;
        // Timeouts, and whether replies must be looked up for NAT.
        let nat = self
            .desired
            .services
            .values()
            .any(|s| s.forwarding == Forwarding::Nat);
        self.lb.set_config(&self.config.data_plane_config(nat))?;
        self.refresh_all()?;
        self.started = true;
        let _ = self.events.send(Event::Config { services, reals });
        Ok(())
    }

    pub fn refresh_all(&mut self) -> crate::error::Result<()> {
        let addrs: Vec<ServiceAddr> = self.desired.services.keys().copied().collect();
        for addr in addrs {
            self.refresh(&addr)?;
        }
        Ok(())
    }

    /// Recomputes one service's live view and writes it if it changed.
    pub fn refresh(&mut self, addr: &ServiceAddr) -> crate::error::Result<()> {
        let Some(svc) = self.desired.services.get(addr) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut lives = Vec::with_capacity(svc.reals.len());
        let mut events = Vec::new();
        for real in &svc.reals {
            let id = (*addr, real.endpoint());
            let mac_known = real.mac.is_some() || self.neighbours.contains_key(&real.addr);
            let rt = self
                .runtime
                .entry(id)
                .or_insert_with(|| fresh_runtime(false, true));
            let mut live = live_real(real, rt, mac_known, svc.forwarding, now);
            let before = self.live.get(&id);
            if let Some(before) = before {
                if before.state == RealState::Up && live.state != RealState::Up {
                    rt.ramp_on_up = true;
                }
                if before.state != RealState::Up
                    && live.state == RealState::Up
                    && rt.ramp_on_up
                    && !real.check.slow_start.is_zero()
                {
                    // Back in rotation: ramp up from here.
                    rt.ramp_from = Some(now);
                    live = live_real(real, rt, mac_known, svc.forwarding, now);
                }
                if before.state != live.state {
                    events.push(Event::RealState {
                        service: addr.to_string(),
                        real: id.1.to_string(),
                        from: state_name(before.state).into(),
                        to: state_name(live.state).into(),
                        reason: live.reason.clone(),
                    });
                } else if before.weight != live.weight && !live.ramping && !before.ramping {
                    events.push(Event::Weight {
                        service: addr.to_string(),
                        real: id.1.to_string(),
                        from: before.weight,
                        to: live.weight,
                    });
                }
            }
            if !live.ramping {
                rt.ramp_from = None;
            }
            self.live.insert(id, live.clone());
            lives.push(live);
        }
        let neighbours = &self.neighbours;
        let specs = service_specs(addr, svc, &lives, |i| {
            svc.reals[i]
                .mac
                .or_else(|| neighbours.get(&svc.reals[i].addr).copied())
        });
        if self.pushed.get(addr) != Some(&specs) {
            self.lb.apply_service(&specs.0, &specs.1)?;
            self.pushed.insert(*addr, specs);
        }
        for event in events {
            tracing::info!("{}", event.text());
            let _ = self.events.send(event);
        }
        Ok(())
    }

    /// A probe's result; the real flips after `rise` / `fall` in a row.
    pub fn on_check(
        &mut self,
        id: &RealId,
        result: Result<(), CheckError>,
    ) -> crate::error::Result<()> {
        let Some(conf) = self.desired.services.get(&id.0).and_then(|s| s.real(id.1)) else {
            return Ok(());
        };
        let (rise, fall) = (conf.check.rise, conf.check.fall);
        let log = self.checks.entry(*id).or_default();
        match &result {
            Ok(()) => {
                log.successes += 1;
                log.ok_total += 1;
                log.failures = 0;
                log.last = "ok".into();
            }
            Err(e) => {
                log.failures += 1;
                log.failed_total += 1;
                log.successes = 0;
                log.last = e.to_string();
            }
        }
        let Some(rt) = self.runtime.get_mut(id) else {
            return Ok(());
        };
        let flip = if rt.healthy {
            log.failures >= fall
        } else {
            log.successes >= rise
        };
        if flip {
            rt.healthy = !rt.healthy;
            if !rt.healthy {
                tracing::warn!(
                    "real {} of {} failed {} checks: {}",
                    id.1,
                    id.0,
                    fall,
                    log.last
                );
            }
            self.refresh(&id.0)?;
        }
        Ok(())
    }

    pub fn on_agent(
        &mut self,
        id: &RealId,
        verdict: Option<AgentVerdict>,
    ) -> crate::error::Result<()> {
        let Some(rt) = self.runtime.get_mut(id) else {
            return Ok(());
        };
        if rt.agent != verdict {
            rt.agent = verdict;
            self.refresh(&id.0)?;
        }
        Ok(())
    }

    /// A neighbour-table change: a real that moved to a new MAC is followed.
    pub fn on_neighbour(&mut self, addr: IpAddr, mac: Option<[u8; 6]>) -> crate::error::Result<()> {
        // A neighbour that fails or is collected keeps its last MAC: the
        // health check, not the ARP cache, judges whether the real is alive.
        let Some(mac) = mac else { return Ok(()) };
        if self.neighbours.get(&addr) == Some(&mac) {
            return Ok(());
        }
        let affected: Vec<ServiceAddr> = self
            .desired
            .services
            .iter()
            .filter(|(_, s)| s.reals.iter().any(|r| r.addr == addr && r.mac.is_none()))
            .map(|(a, _)| *a)
            .collect();
        self.neighbours.insert(addr, mac);
        if affected.is_empty() {
            return Ok(());
        }
        let event = Event::Mac {
            real: addr.to_string(),
            mac: format_mac(&mac),
        };
        tracing::info!("{}", event.text());
        let _ = self.events.send(event);
        for svc in affected {
            self.refresh(&svc)?;
        }
        Ok(())
    }

    pub fn neighbour_known(&self, addr: &IpAddr) -> bool {
        self.neighbours.contains_key(addr)
    }

    /// Advances slow starts: services with a ramping real are rewritten.
    pub fn tick(&mut self) -> crate::error::Result<()> {
        let ramping: Vec<ServiceAddr> = self
            .live
            .iter()
            .filter(|(_, l)| l.ramping)
            .map(|(id, _)| id.0)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for addr in ramping {
            self.refresh(&addr)?;
        }
        Ok(())
    }

    /// Expires idle flows; above the pressure mark evicts the oldest.
    pub fn sweep(&mut self) -> crate::error::Result<()> {
        let expired = self.lb.expire_flows(0)?;
        let left = (expired.examined - expired.removed) as u64;
        let capacity = self.config.flow_capacity;
        let mark = capacity as u64 * self.config.pressure_percent as u64 / 100;
        if left > mark {
            // Down to 10 points below the mark, so eviction is not continuous.
            let target = mark.saturating_sub(capacity as u64 / 10);
            let evicted = self.lb.evict_oldest((left - target) as usize)?;
            let event = Event::FlowPressure {
                flows: left,
                capacity,
                evicted: evicted.removed as u64,
            };
            tracing::warn!("{}", event.text());
            let _ = self.events.send(event);
        }
        Ok(())
    }

    /// Writes the configuration file atomically (temp file, fsync, rename).
    pub fn persist(&self) -> std::io::Result<()> {
        let path = &self.config.services_file;
        write_atomic(
            path,
            &format!(
                "# fulmar balancer services; written by fulmar-lbd on every change.\n\
             # Edit with `fulmar`, or replace and load with `fulmar -batch FILE`.\n{}",
                self.desired.to_batch()
            ),
        )
    }
}

/// CLOCK_MONOTONIC in ns: the clock bpf_ktime_get_coarse_ns reads.
pub(super) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    fulmar_daemon::durable::replace(path, text.as_bytes())
}
