//! The flow sweeper, run by userspace through BPF_PROG_TEST_RUN with a
//! `SweepRequest` as the packet. For each listed flow it expires (idle past
//! its timeout) or evicts (forced) the entry: a compare-and-swap to DEAD
//! decides the one winner, which moves the real's count and deletes the
//! entry. Userspace only chooses candidates; counts never leave BPF atomics.
use core::{mem::size_of, ptr::read_volatile};

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use fulmar_common::{
    Config, FLOW_ACTIVE, FLOW_DEAD, FLOW_F_SEEN_ACK, FLOW_INACTIVE, FlowKey, FlowValue,
    IPPROTO_TCP, SWEEP_BATCH, SWEEP_FORCE, SWEEP_INVALIDATE, SWEEP_KEPT, SWEEP_NOT_FOUND,
    SWEEP_RACED, SWEEP_REMOVED, SweepEntry, SweepHeader, conn_index,
};

use crate::{
    atomic,
    headers::ptr_at,
    maps::{CONFIG, CONNS, FLOW_EPOCH, FLOWS},
};

#[inline(always)]
pub fn try_sweep(ctx: &XdpContext) -> Result<u32, ()> {
    let header = ptr_at::<SweepHeader>(ctx, 0).ok_or(())?;
    // SAFETY: bounds checked by ptr_at.
    let (op, count, offset) = unsafe { ((*header).op, (*header).count, (*header).clock_offset_ns) };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() }.wrapping_add(offset);
    let defaults = Config::default();
    let config = CONFIG.get(0).unwrap_or(&defaults);
    let mut removed = false;
    let mut i: usize = 0;
    while i < SWEEP_BATCH && i < count as usize {
        let at = size_of::<SweepHeader>() + i * size_of::<SweepEntry>();
        i += 1;
        let Some(entry) = ptr_at::<SweepEntry>(ctx, at) else {
            break;
        };
        // SAFETY: bounds checked by ptr_at; the key goes to the stack for the helpers.
        let key: FlowKey = unsafe { (*entry).key };
        let result = sweep_one(&key, op, now, config, &defaults);
        removed |= result == SWEEP_REMOVED;
        // SAFETY: bounds checked by ptr_at.
        unsafe { (*entry).result = result };
    }
    if removed || op == SWEEP_INVALIDATE {
        void_flow_caches();
    }
    Ok(xdp_action::XDP_PASS)
}

/// The configured timeout, or the default where the control plane left 0.
#[inline(always)]
fn or_default(value: u64, default: u64) -> u64 {
    if value == 0 { default } else { value }
}

#[inline(always)]
fn sweep_one(key: &FlowKey, op: u32, now: u64, config: &Config, defaults: &Config) -> u32 {
    let Some(flow) = FLOWS.get_ptr_mut(key) else {
        return SWEEP_NOT_FOUND;
    };
    // SAFETY: map value pointer, valid for this run.
    let (state, flags, last_seen, service, slot) = unsafe {
        (
            read_volatile(&(*flow).state),
            (*flow).flags,
            read_volatile(&(*flow).last_seen_ns),
            (*flow).service,
            (*flow).slot,
        )
    };
    if state == FLOW_DEAD {
        return SWEEP_RACED;
    }
    if op != SWEEP_FORCE {
        let timeout = if key.proto != IPPROTO_TCP {
            or_default(config.udp_ns, defaults.udp_ns)
        } else if state == FLOW_INACTIVE {
            or_default(config.tcp_closing_ns, defaults.tcp_closing_ns)
        } else if flags & FLOW_F_SEEN_ACK != 0 {
            or_default(config.tcp_established_ns, defaults.tcp_established_ns)
        } else {
            or_default(config.tcp_syn_ns, defaults.tcp_syn_ns)
        };
        if now.saturating_sub(last_seen) < timeout {
            return SWEEP_KEPT;
        }
    }
    if !retire(key, flow, state, service, slot) {
        // It just closed or reopened: its timeout changed, look again next sweep.
        return SWEEP_RACED;
    }
    SWEEP_REMOVED
}

/// Takes `flow` (seen in `state`) out of FLOWS: the compare-and-swap to
/// DEAD picks the one winner, which moves the real's count and deletes the
/// entry. False when another CPU changed the flow first. The caller bumps
/// FLOW_EPOCH so no CPU's flow cache keeps sending the key to the old real.
#[inline(always)]
pub fn retire(key: &FlowKey, flow: *mut FlowValue, state: u64, service: u32, slot: u32) -> bool {
    // SAFETY: map value pointer.
    if !atomic::swap_state(unsafe { &raw mut (*flow).state }, state, FLOW_DEAD) {
        return false;
    }
    if let Some(conns) = CONNS.get_ptr_mut(conn_index(service, slot)) {
        // SAFETY: map value pointer; shared across CPUs, hence the atomic.
        let counter = unsafe {
            if state == FLOW_ACTIVE {
                &raw mut (*conns).active
            } else {
                &raw mut (*conns).inactive
            }
        };
        atomic::decrement(counter);
    }
    let _ = FLOWS.remove(key);
    true
}

/// Voids every CPU's flow cache entries made before now.
#[inline(always)]
pub fn void_flow_caches() {
    if let Some(word) = FLOW_EPOCH.get_ptr_mut(0) {
        atomic::increment(word);
    }
}
