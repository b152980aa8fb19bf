//! The daemon's state: the configuration, what the checks and the
//! neighbour table say, and what was last written to the maps. Every input
//! change goes through `refresh`, which rewrites a service's pool in one
//! bank flip when its live view changed.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Instant,
};

use fulmar_common::{FLOW_ACTIVE, FLOW_INACTIVE, REAL_DOWN, REAL_EMPTY};
use tokio::sync::broadcast;

use crate::{
    Balancer,
    config::DaemonConfig,
    effective::{AgentVerdict, LiveReal, RealRuntime, live_real, service_specs},
    model::{Desired, ServiceAddr, format_mac, forwarding_name, scheduler_name, state_name},
    rows::{
        AttachRow, DropsRow, Event, FlowCountRow, FlowRow, RealRow, RealStatsRow, ServiceRow,
        ServiceStatsRow, StatsRow,
    },
    services::{Forwarding, RealSpec, RealState, ServiceSpec, addr_bytes, bytes_addr},
};

/// A real of a service.
pub type RealId = (ServiceAddr, SocketAddr);

/// Each live real's endpoint and slot in its service's live bank.
type Slots = Vec<(SocketAddr, u32)>;

/// A check's recent history.
#[derive(Clone, Debug, Default)]
pub struct CheckLog {
    pub successes: u32,
    pub failures: u32,
    pub last: String,
}

pub struct Core {
    pub lb: Balancer,
    pub config: DaemonConfig,
    pub desired: Desired,
    pub attach: AttachRow,
    runtime: HashMap<RealId, RealRuntime>,
    checks: HashMap<RealId, CheckLog>,
    /// MACs from the neighbour table, by address.
    neighbours: HashMap<IpAddr, [u8; 6]>,
    live: HashMap<RealId, LiveReal>,
    pushed: BTreeMap<ServiceAddr, (ServiceSpec, Vec<RealSpec>)>,
    pub events: broadcast::Sender<Event>,
    /// Set after the first commit: reals added later ramp when they come up.
    started: bool,
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
        result: Result<(), String>,
    ) -> crate::error::Result<()> {
        let Some(conf) = self.desired.services.get(&id.0).and_then(|s| s.real(id.1)) else {
            return Ok(());
        };
        let (rise, fall) = (conf.check.rise, conf.check.fall);
        let log = self.checks.entry(*id).or_default();
        match &result {
            Ok(()) => {
                log.successes += 1;
                log.failures = 0;
                log.last = "ok".into();
            }
            Err(e) => {
                log.failures += 1;
                log.successes = 0;
                log.last = e.clone();
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

    fn conn_counts(&self, spec: &ServiceSpec) -> Vec<(u64, u64)> {
        let Ok(Some(svc)) = self.lb.service(&spec.key()) else {
            return Vec::new();
        };
        (0..svc.n_reals)
            .map(|slot| {
                self.lb
                    .conns(svc.id, slot)
                    .map(|c| (c.active, c.inactive))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Slot of each configured real in the live bank, and the service id.
    fn slots(&self, addr: &ServiceAddr) -> Option<(u32, Slots)> {
        let key = addr.key();
        let svc = self.lb.service(&key).ok()??;
        let reals = self.lb.live_reals(&svc).ok()?;
        let out = reals
            .iter()
            .enumerate()
            .filter(|(_, real)| real.state != REAL_EMPTY)
            .map(|(slot, real)| {
                let ip = bytes_addr(&real.addr, key.family);
                (SocketAddr::new(ip, u16::from_be(real.port_be)), slot as u32)
            })
            .collect();
        Some((svc.id, out))
    }

    fn selected<'a>(
        &'a self,
        filter: Option<&ServiceAddr>,
    ) -> Result<Vec<&'a ServiceAddr>, String> {
        if let Some(f) = filter
            && !self.desired.services.contains_key(f)
        {
            return Err(format!("no service {f}; see `fulmar service show`"));
        }
        Ok(self
            .desired
            .services
            .keys()
            .filter(|a| filter.is_none_or(|f| f == *a))
            .collect())
    }

    pub fn service_rows(
        &self,
        filter: Option<&ServiceAddr>,
        stats: u8,
    ) -> Result<Vec<ServiceRow>, String> {
        let mut rows = Vec::new();
        for addr in self.selected(filter)? {
            let svc = &self.desired.services[addr];
            let pushed = self.pushed.get(addr);
            let counts = pushed.map(|(s, _)| self.conn_counts(s)).unwrap_or_default();
            let stats_row = if stats > 0 {
                self.slots(addr)
                    .and_then(|(id, _)| self.lb.service_stats(id).ok())
                    .map(|s| ServiceStatsRow {
                        packets: s.packets,
                        bytes: s.bytes,
                        new_flows: s.new_flows,
                        flow_cache_hits: s.flow_cache_hits,
                        drops: (stats > 1).then_some(DropsRow {
                            no_real: s.drop_no_real,
                            table_full: s.drop_table_full,
                            real_down: s.drop_real_down,
                            stale: s.drop_stale,
                            rst_sent: s.rst_sent,
                        }),
                    })
            } else {
                None
            };
            rows.push(ServiceRow {
                service: addr.to_string(),
                scheduler: scheduler_name(svc.scheduler).into(),
                scheduler_live: pushed
                    .map_or("-".into(), |(s, _)| scheduler_name(s.scheduler).into()),
                forward: forwarding_name(svc.forwarding).into(),
                reset_on_down: svc.reset_on_down,
                reals: svc.reals.len(),
                reals_up: svc
                    .reals
                    .iter()
                    .filter(|r| {
                        self.live
                            .get(&(*addr, r.endpoint()))
                            .is_some_and(|l| l.state == RealState::Up)
                    })
                    .count(),
                active: counts.iter().map(|c| c.0).sum(),
                inactive: counts.iter().map(|c| c.1).sum(),
                stats: stats_row,
            });
        }
        Ok(rows)
    }

    pub fn real_rows(
        &self,
        filter: Option<&ServiceAddr>,
        stats: u8,
    ) -> Result<Vec<RealRow>, String> {
        let mut rows = Vec::new();
        for addr in self.selected(filter)? {
            let svc = &self.desired.services[addr];
            let slots = self.slots(addr);
            for real in &svc.reals {
                let id = (*addr, real.endpoint());
                let slot = slots.as_ref().and_then(|(sid, s)| {
                    s.iter()
                        .find(|(e, _)| *e == id.1)
                        .map(|(_, slot)| (*sid, *slot))
                });
                let conns = slot
                    .and_then(|(sid, slot)| self.lb.conns(sid, slot).ok())
                    .unwrap_or_default();
                let live = self.live.get(&id);
                let c = &real.check;
                let check = format!(
                    "{}{} every {} timeout {} rise {} fall {}{}",
                    c.kind.name(),
                    if c.tls { "+tls" } else { "" },
                    humantime::format_duration(c.interval),
                    humantime::format_duration(c.timeout),
                    c.rise,
                    c.fall,
                    if c.slow_start.is_zero() {
                        String::new()
                    } else {
                        format!(" slow-start {}", humantime::format_duration(c.slow_start))
                    }
                );
                let agent = c.agent_port.map(|port| {
                    let said = match self.runtime.get(&id).and_then(|r| r.agent) {
                        None => "no answer".to_string(),
                        Some(AgentVerdict::Ready { percent }) => format!("up {percent}%"),
                        Some(AgentVerdict::Drain) => "drain".into(),
                        Some(AgentVerdict::Down) => "down".into(),
                    };
                    format!("port {port}: {said}")
                });
                let stats_row = (stats > 0).then(|| {
                    let s = slot
                        .and_then(|(sid, slot)| self.lb.real_stats(sid, slot).ok())
                        .unwrap_or_default();
                    RealStatsRow {
                        packets: s.packets,
                        bytes: s.bytes,
                        new_flows: s.new_flows,
                        last_check: (stats > 1).then(|| {
                            self.checks
                                .get(&id)
                                .map_or("none yet".into(), |l| l.last.clone())
                        }),
                    }
                });
                rows.push(RealRow {
                    service: addr.to_string(),
                    real: crate::model::format_real(real.addr, real.port, addr.port),
                    weight: real.weight,
                    weight_live: live.map_or(0, |l| l.weight),
                    state: state_name(real.state).into(),
                    state_live: live.map_or("down".into(), |l| state_name(l.state).into()),
                    reason: live.map_or(String::new(), |l| l.reason.clone()),
                    ramping: live.is_some_and(|l| l.ramping),
                    mac: real
                        .mac
                        .or_else(|| self.neighbours.get(&real.addr).copied())
                        .map(|m| format_mac(&m)),
                    active: conns.active,
                    inactive: conns.inactive,
                    check,
                    agent,
                    stats: stats_row,
                });
            }
        }
        Ok(rows)
    }

    /// The selected services by map id, each with its reals' slots.
    fn service_ids(
        &self,
        filter: Option<&ServiceAddr>,
    ) -> Result<HashMap<u32, (ServiceAddr, Slots)>, String> {
        let mut ids = HashMap::new();
        for addr in self.selected(filter)? {
            if let Some((id, slots)) = self.slots(addr) {
                ids.insert(id, (*addr, slots));
            }
        }
        Ok(ids)
    }

    pub fn flow_rows(&self, filter: Option<&ServiceAddr>) -> Result<Vec<FlowRow>, String> {
        let ids = self.service_ids(filter)?;
        let now = monotonic_ns();
        let flows = self.lb.flows().map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for (key, value) in flows {
            let Some((addr, slots)) = ids.get(&value.service) else {
                continue;
            };
            let client =
                SocketAddr::new(bytes_addr(&key.src, key.family), u16::from_be(key.sport_be));
            let real = slots
                .iter()
                .find(|(_, slot)| *slot == value.slot)
                .map_or_else(|| format!("slot {}", value.slot), |(e, _)| e.to_string());
            rows.push(FlowRow {
                client: client.to_string(),
                service: addr.to_string(),
                real,
                state: match value.state {
                    FLOW_ACTIVE => "active",
                    FLOW_INACTIVE => "inactive",
                    _ => "closing",
                }
                .into(),
                idle_ms: now.saturating_sub(value.last_seen_ns) / 1_000_000,
            });
        }
        rows.sort_by(|a, b| (&a.service, &a.client).cmp(&(&b.service, &b.client)));
        Ok(rows)
    }

    pub fn flow_counts(&self, filter: Option<&ServiceAddr>) -> Result<Vec<FlowCountRow>, String> {
        let ids = self.service_ids(filter)?;
        let flows = self.lb.flows().map_err(|e| e.to_string())?;
        let mut rows: BTreeMap<ServiceAddr, FlowCountRow> = BTreeMap::new();
        for (addr, _) in ids.values() {
            rows.insert(
                *addr,
                FlowCountRow {
                    service: addr.to_string(),
                    flows: 0,
                    active: 0,
                    inactive: 0,
                },
            );
        }
        for (_, value) in flows {
            if let Some(row) = ids.get(&value.service).and_then(|(a, _)| rows.get_mut(a)) {
                row.flows += 1;
                match value.state {
                    FLOW_ACTIVE => row.active += 1,
                    FLOW_INACTIVE => row.inactive += 1,
                    _ => {}
                }
            }
        }
        Ok(rows.into_values().collect())
    }

    /// Removes the flows of one or every service (counts follow exactly).
    pub fn flush_flows(&mut self, filter: Option<&ServiceAddr>) -> Result<String, String> {
        let ids = self.service_ids(filter)?;
        let report = self
            .lb
            .flush_flows(|_, v| ids.contains_key(&v.service))
            .map_err(|e| e.to_string())?;
        Ok(format!("flushed {} flows", report.removed))
    }

    pub fn stats_row(&self) -> Result<StatsRow, String> {
        let counters = self.lb.global_stats().map_err(|e| e.to_string())?;
        let flows = self.lb.flows().map_err(|e| e.to_string())?.len() as u64;
        Ok(StatsRow {
            flows,
            flow_capacity: self.config.flow_capacity,
            counters: counters
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        })
    }
}

/// CLOCK_MONOTONIC in ns: the clock bpf_ktime_get_coarse_ns reads.
fn monotonic_ns() -> u64 {
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
