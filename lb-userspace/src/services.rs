//! Virtual services and their reals in the BPF maps: the control plane's
//! view of what the data path balances.
use std::net::IpAddr;

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use fulmar_common::{
    AF_INET, AF_INET6, Config, ConnCount, FWD_DR, FWD_NAT, FlowKey, FlowValue, MAX_REALS,
    MAX_SERVICES, REAL_DOWN, REAL_DRAIN, REAL_EMPTY, REAL_UP, Real, RealStats, SCHED_LC, SCHED_WLC,
    SVC_F_RESET_ON_DOWN, Service, ServiceKey, ServiceStats, conn_index, global_stat, map_names,
    real_index,
};

use crate::{
    balancer::Balancer,
    error::{LbError, Result},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Least connection.
    Lc,
    /// Weighted least connection.
    Wlc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Forwarding {
    /// Rewrite the destination MAC; the reals hold the VIP on loopback.
    #[serde(rename = "dr")]
    DirectRouting,
    #[serde(rename = "nat")]
    /// Rewrite the destination to the real, and replies back to the VIP.
    Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RealState {
    Up,
    Down,
    /// Keeps its flows, takes no new ones.
    Drain,
}

/// A virtual service: (VIP, port, protocol) and how to balance it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub scheduler: Scheduler,
    pub forwarding: Forwarding,
    /// Answer the flows of a real marked down with RST instead of keeping them.
    pub reset_on_down: bool,
}

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealSpec {
    pub addr: IpAddr,
    pub port: u16,
    pub mac: [u8; 6],
    /// Map weight (the daemon scales configured weights, see `effective`).
    pub weight: u32,
    pub state: RealState,
}

pub fn addr_bytes(addr: IpAddr) -> ([u8; 16], u8) {
    let mut bytes = [0u8; 16];
    match addr {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            (bytes, AF_INET)
        }
        IpAddr::V6(v6) => (v6.octets(), AF_INET6),
    }
}

pub fn bytes_addr(bytes: &[u8; 16], family: u8) -> IpAddr {
    if family == AF_INET {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}

/// The `SERVICES` key of (VIP, port, protocol number).
pub fn service_key(vip: IpAddr, port: u16, proto: u8) -> ServiceKey {
    let (addr, family) = addr_bytes(vip);
    ServiceKey {
        addr,
        port_be: port.to_be(),
        proto,
        family,
    }
}

impl ServiceSpec {
    pub fn key(&self) -> ServiceKey {
        service_key(self.vip, self.port, self.proto)
    }
}

impl RealSpec {
    fn to_real(&self, generation: u32) -> Real {
        let (addr, _) = addr_bytes(self.addr);
        Real {
            addr,
            mac: self.mac,
            port_be: self.port.to_be(),
            weight: self.weight,
            state: match self.state {
                RealState::Up => REAL_UP,
                RealState::Down => REAL_DOWN,
                RealState::Drain => REAL_DRAIN,
            },
            generation,
        }
    }
}

/// Whether `real` (a slot's content) is the real `spec` names.
fn holds(real: &Real, spec: &RealSpec) -> bool {
    real.state != REAL_EMPTY
        && real.addr == addr_bytes(spec.addr).0
        && real.port_be == spec.port.to_be()
}

fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> LbError {
    move |source| LbError::Map { map, source }
}

impl Balancer {
    fn map_data(&self, name: &'static str) -> Result<&aya::maps::Map> {
        self.ebpf.map(name).ok_or_else(|| LbError::Missing {
            kind: "map",
            name: name.into(),
        })
    }
    fn map_data_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).ok_or_else(|| LbError::Missing {
            kind: "map",
            name: name.into(),
        })
    }
    fn services_map(&self) -> Result<HashMap<&MapData, ServiceKey, Service>> {
        HashMap::try_from(self.map_data(map_names::SERVICES)?).map_err(map_err(map_names::SERVICES))
    }
    pub(crate) fn flows_map(&self) -> Result<HashMap<&MapData, FlowKey, FlowValue>> {
        HashMap::try_from(self.map_data(map_names::FLOWS)?).map_err(map_err(map_names::FLOWS))
    }

    /// Idle timeouts and switches the data path and sweeper use.
    pub fn config(&self) -> Result<Config> {
        let map: Array<_, Config> = Array::try_from(self.map_data(map_names::CONFIG)?)
            .map_err(map_err(map_names::CONFIG))?;
        let config = map.get(&0, 0).map_err(map_err(map_names::CONFIG))?;
        // A fresh map is all zero: that means "defaults".
        Ok(if config.tcp_established_ns == 0 {
            Config::default()
        } else {
            config
        })
    }

    pub fn set_config(&mut self, config: &Config) -> Result<()> {
        let mut map: Array<_, Config> = Array::try_from(self.map_data_mut(map_names::CONFIG)?)
            .map_err(map_err(map_names::CONFIG))?;
        map.set(0, config, 0).map_err(map_err(map_names::CONFIG))
    }

    /// Every service with its key.
    pub fn services(&self) -> Result<Vec<(ServiceKey, Service)>> {
        let map = self.services_map()?;
        map.iter()
            .map(|r| r.map_err(map_err(map_names::SERVICES)))
            .collect()
    }

    pub fn service(&self, key: &ServiceKey) -> Result<Option<Service>> {
        match self.services_map()?.get(key, 0) {
            Ok(svc) => Ok(Some(svc)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(map_names::SERVICES)(e)),
        }
    }

    /// Creates or updates a service and its whole pool of reals. A real
    /// keeps its slot (and its flows) while its address and port stay.
    pub fn apply_service(&mut self, spec: &ServiceSpec, reals: &[RealSpec]) -> Result<Service> {
        if reals.len() > MAX_REALS as usize {
            return Err(LbError::TooManyReals {
                max: MAX_REALS,
                given: reals.len(),
            });
        }
        let key = spec.key();
        let existing = self.service(&key)?;
        let id = match existing {
            Some(svc) => svc.id,
            None => {
                let used: Vec<u32> = self.services()?.iter().map(|(_, s)| s.id).collect();
                (0..MAX_SERVICES)
                    .find(|id| !used.contains(id))
                    .ok_or(LbError::ServicesFull { max: MAX_SERVICES })?
            }
        };
        let live_bank = existing.map_or(0, |s| s.bank);
        let old_n = existing.map_or(0, |s| s.n_reals);
        let next_bank = if existing.is_some() { live_bank ^ 1 } else { 0 };

        // Lay the new pool out so that reals already present keep their slot.
        let old: Vec<Real> = (0..MAX_REALS)
            .map(|slot| self.real(id, live_bank, slot))
            .collect::<Result<_>>()?;
        let mut slots: Vec<Option<&RealSpec>> = vec![None; MAX_REALS as usize];
        let mut newcomers = Vec::new();
        for spec_real in reals {
            match (0..old_n as usize).find(|&s| slots[s].is_none() && holds(&old[s], spec_real)) {
                Some(slot) => slots[slot] = Some(spec_real),
                None => newcomers.push(spec_real),
            }
        }
        for spec_real in newcomers {
            let free = slots.iter().position(|s| s.is_none()).expect("len checked");
            slots[free] = Some(spec_real);
        }
        let n_reals = slots.iter().rposition(|s| s.is_some()).map_or(0, |p| p + 1) as u32;

        // The idle bank is written whole, so it never keeps a slot from two
        // updates back; a slot that changes hands gets a new generation.
        let mut stale_slots = Vec::new();
        {
            let mut map: Array<_, Real> = Array::try_from(self.map_data_mut(map_names::REALS)?)
                .map_err(map_err(map_names::REALS))?;
            for (slot, (before, spec_real)) in old.iter().zip(&slots).enumerate() {
                let real = match spec_real {
                    Some(r) if holds(before, r) => r.to_real(before.generation),
                    Some(r) => r.to_real(before.generation.wrapping_add(1)),
                    None if before.state == REAL_EMPTY => *before,
                    None => Real {
                        generation: before.generation.wrapping_add(1),
                        ..Real::default()
                    },
                };
                if before.state != REAL_EMPTY && real.generation != before.generation {
                    stale_slots.push(slot as u32);
                }
                map.set(real_index(id, next_bank, slot as u32), real, 0)
                    .map_err(map_err(map_names::REALS))?;
            }
        }
        let service = Service {
            id,
            bank: next_bank,
            n_reals,
            scheduler: match spec.scheduler {
                Scheduler::Lc => SCHED_LC,
                Scheduler::Wlc => SCHED_WLC,
            },
            forward: match spec.forwarding {
                Forwarding::DirectRouting => FWD_DR,
                Forwarding::Nat => FWD_NAT,
            },
            flags: if spec.reset_on_down {
                SVC_F_RESET_ON_DOWN
            } else {
                0
            },
        };
        {
            let mut map: HashMap<_, ServiceKey, Service> =
                HashMap::try_from(self.map_data_mut(map_names::SERVICES)?)
                    .map_err(map_err(map_names::SERVICES))?;
            // One element replaced whole: the data path sees old or new.
            map.insert(key, service, 0)
                .map_err(map_err(map_names::SERVICES))?;
        }
        if spec.forwarding == Forwarding::Nat {
            let mut config = self.config()?;
            if config.nat_enabled == 0 {
                config.nat_enabled = 1;
                self.set_config(&config)?;
            }
        }
        // Flows pinned to a real that left its slot are removed (counted).
        if !stale_slots.is_empty() {
            self.flush_flows(|_, v| v.service == id && stale_slots.contains(&v.slot))?;
        }
        self.invalidate_flow_caches()?;
        Ok(service)
    }

    /// Deletes a service and every flow pinned to it.
    pub fn delete_service(&mut self, key: &ServiceKey) -> Result<()> {
        let svc = self
            .service(key)?
            .ok_or_else(|| LbError::NoService(format!("{key:?}")))?;
        {
            let mut map: HashMap<_, ServiceKey, Service> =
                HashMap::try_from(self.map_data_mut(map_names::SERVICES)?)
                    .map_err(map_err(map_names::SERVICES))?;
            map.remove(key).map_err(map_err(map_names::SERVICES))?;
        }
        self.flush_flows(|_, v| v.service == svc.id)?;
        // Leave the slots empty with bumped generations for the next owner of the id.
        let mut map: Array<_, Real> = Array::try_from(self.map_data_mut(map_names::REALS)?)
            .map_err(map_err(map_names::REALS))?;
        for bank in 0..2 {
            for slot in 0..MAX_REALS {
                let index = real_index(svc.id, bank, slot);
                let real = map.get(&index, 0).map_err(map_err(map_names::REALS))?;
                if real != Real::default() {
                    let cleared = Real {
                        generation: real.generation.wrapping_add(1),
                        ..Real::default()
                    };
                    map.set(index, cleared, 0)
                        .map_err(map_err(map_names::REALS))?;
                }
            }
        }
        self.invalidate_flow_caches()
    }

    /// The real in `slot` of a bank of service `id`.
    pub fn real(&self, id: u32, bank: u32, slot: u32) -> Result<Real> {
        let map: Array<_, Real> =
            Array::try_from(self.map_data(map_names::REALS)?).map_err(map_err(map_names::REALS))?;
        map.get(&real_index(id, bank, slot), 0)
            .map_err(map_err(map_names::REALS))
    }

    /// The live reals of a service, by slot.
    pub fn live_reals(&self, svc: &Service) -> Result<Vec<Real>> {
        (0..svc.n_reals)
            .map(|slot| self.real(svc.id, svc.bank, slot))
            .collect()
    }

    /// Active and inactive flows of (service, slot).
    pub fn conns(&self, id: u32, slot: u32) -> Result<ConnCount> {
        let map: Array<_, ConnCount> =
            Array::try_from(self.map_data(map_names::CONNS)?).map_err(map_err(map_names::CONNS))?;
        map.get(&conn_index(id, slot), 0)
            .map_err(map_err(map_names::CONNS))
    }

    /// The scheduler cursor of service `id` (where its next scan starts).
    pub fn cursor(&self, id: u32) -> Result<u64> {
        let map: Array<_, u64> = Array::try_from(self.map_data(map_names::CURSORS)?)
            .map_err(map_err(map_names::CURSORS))?;
        map.get(&id, 0).map_err(map_err(map_names::CURSORS))
    }

    pub fn service_stats(&self, id: u32) -> Result<ServiceStats> {
        let map: PerCpuArray<_, ServiceStats> =
            PerCpuArray::try_from(self.map_data(map_names::SERVICE_STATS)?)
                .map_err(map_err(map_names::SERVICE_STATS))?;
        let values = map.get(&id, 0).map_err(map_err(map_names::SERVICE_STATS))?;
        Ok(values.iter().fold(ServiceStats::default(), |mut sum, v| {
            sum.packets += v.packets;
            sum.bytes += v.bytes;
            sum.new_flows += v.new_flows;
            sum.drop_no_real += v.drop_no_real;
            sum.drop_table_full += v.drop_table_full;
            sum.drop_real_down += v.drop_real_down;
            sum.drop_stale += v.drop_stale;
            sum.rst_sent += v.rst_sent;
            sum.flow_cache_hits += v.flow_cache_hits;
            sum
        }))
    }

    pub fn real_stats(&self, id: u32, slot: u32) -> Result<RealStats> {
        let map: PerCpuArray<_, RealStats> =
            PerCpuArray::try_from(self.map_data(map_names::REAL_STATS)?)
                .map_err(map_err(map_names::REAL_STATS))?;
        let values = map
            .get(&conn_index(id, slot), 0)
            .map_err(map_err(map_names::REAL_STATS))?;
        Ok(values.iter().fold(RealStats::default(), |mut sum, v| {
            sum.packets += v.packets;
            sum.bytes += v.bytes;
            sum.new_flows += v.new_flows;
            sum
        }))
    }

    /// Parser verdict counters, summed over CPUs, by name.
    pub fn global_stats(&self) -> Result<Vec<(&'static str, u64)>> {
        let map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.map_data(map_names::GLOBAL_STATS)?)
                .map_err(map_err(map_names::GLOBAL_STATS))?;
        (0..global_stat::COUNT)
            .map(|i| {
                let values = map.get(&i, 0).map_err(map_err(map_names::GLOBAL_STATS))?;
                Ok((global_stat::NAMES[i as usize], values.iter().sum()))
            })
            .collect()
    }

    /// Every flow in the table.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowValue)>> {
        let map = self.flows_map()?;
        let mut out = Vec::new();
        for item in map.iter() {
            match item {
                Ok(kv) => out.push(kv),
                // Deleted between key and value lookup: skip it.
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(map_names::FLOWS)(e)),
            }
        }
        Ok(out)
    }
}
