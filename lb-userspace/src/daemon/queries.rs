//! What `fulmar ... show` reads: rows built from the configuration, the
//! live view and the maps (services, reals, flows, counters). Only
//! `flush_flows` changes anything (it empties flow entries).
use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
};

use fulmar_common::{FLOW_ACTIVE, FLOW_INACTIVE, REAL_EMPTY};

use super::core::{Core, Slots, monotonic_ns};
use crate::{
    effective::AgentVerdict,
    model::{ServiceAddr, format_mac, forwarding_name, scheduler_name, state_name},
    rows::{
        DropsRow, FlowCountRow, FlowRow, RealRow, RealStatsRow, ServiceRow, ServiceStatsRow,
        StatsRow,
    },
    services::{RealState, ServiceSpec, bytes_addr},
};

impl Core {
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
