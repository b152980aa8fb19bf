//! Every map of the balancer, pinned by name under the loader's pin directory
//! so a restarted control plane keeps the flow table and the counts.
use crate::{balancer::Scratch, flow_cache::CachedFlow};
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use fulmar_common::{
    Config, ConnCount, FlowKey, FlowValue, MAX_REALS, MAX_SERVICES, NatValue, REAL_BANKS, Real,
    RealStats, Service, ServiceKey, ServiceStats, global_stat,
};

/// Virtual services by (VIP, port, protocol); written by the control plane.
/// Not preallocated, so a replaced entry is never reused under a reader.
#[map]
pub static SERVICES: HashMap<ServiceKey, Service> =
    HashMap::pinned(MAX_SERVICES, BPF_F_NO_PREALLOC);

/// Real-server slots, two banks per service; written by the control plane,
/// which fills the idle bank and then flips `Service::bank`.
#[map]
pub static REALS: Array<Real> = Array::pinned(MAX_SERVICES * REAL_BANKS * MAX_REALS, 0);

/// Active/inactive flows per (service, slot); changed only by BPF atomics,
/// in the balancer (open, close) and the sweeper (expiry, eviction).
#[map]
pub static CONNS: Array<ConnCount> = Array::pinned(MAX_SERVICES * MAX_REALS, 0);

/// Start of each service's next scheduler scan; an atomic counter so tied
/// reals take turns even when SYNs arrive on several CPUs at once.
#[map]
pub static CURSORS: Array<u64> = Array::pinned(MAX_SERVICES, 0);

/// Flow (client → VIP) → real; created by the balancer, deleted only by the
/// sweeper. Not preallocated: a deleted entry stays readable (as DEAD) until
/// every packet holding it is done. The loader sets the size.
#[map]
pub static FLOWS: HashMap<FlowKey, FlowValue> = HashMap::pinned(65536, BPF_F_NO_PREALLOC);

/// NAT reply (real → client) → VIP to restore; created by the balancer.
/// LRU: an entry carries no count, so silent eviction of a dead one is harmless.
#[map]
pub static NAT_REVERSE: LruHashMap<FlowKey, NatValue> = LruHashMap::pinned(65536, 0);

/// `[0]`: idle timeouts and switches; written by the control plane.
#[map]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

/// Per-CPU verdict counters of the parser (see `global_stat`).
#[map]
pub static GLOBAL_STATS: PerCpuArray<u64> = PerCpuArray::pinned(global_stat::COUNT, 0);

/// Per-CPU counters per service.
#[map]
pub static SERVICE_STATS: PerCpuArray<ServiceStats> = PerCpuArray::pinned(MAX_SERVICES, 0);

/// Per-CPU counters per (service, slot).
#[map]
pub static REAL_STATS: PerCpuArray<RealStats> = PerCpuArray::pinned(MAX_SERVICES * MAX_REALS, 0);

/// `[0]`: bumped (atomically) whenever a flow leaves FLOWS or the control
/// plane changes a service: every CPU's flow cache entry older than it is void.
#[map]
pub static FLOW_EPOCH: Array<u64> = Array::pinned(1, 0);

/// Per-CPU direct-mapped cache of established flows (see `flow_cache`).
#[map]
pub static FLOW_CACHE: PerCpuArray<CachedFlow> =
    PerCpuArray::with_max_entries(crate::flow_cache::SLOTS, 0);

/// One packet's working memory per CPU (the 512-byte stack is too small).
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count_global(index: u32) {
    if let Some(counter) = GLOBAL_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *counter += 1 };
    }
}
