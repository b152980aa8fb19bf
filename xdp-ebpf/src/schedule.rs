//! IPVS least-connection (`lc`) and weighted least-connection (`wlc`).
//!
//! overhead = active × 256 + inactive. `lc` takes the least overhead; `wlc`
//! the least overhead / weight, compared by cross-multiplication as IPVS
//! does. Reals that are not up, or have weight 0, never take a new flow.
//! The scan starts at a per-service cursor that advances atomically on every
//! pick, and a later candidate must be strictly better, so among equal
//! candidates the first one at or after the cursor wins: ties rotate. The
//! scan covers the whole pool, at most MAX_REALS slots: bounded per SYN.
use core::ptr::read_volatile;

use fulmar_common::{MAX_REALS, REAL_UP, SCHED_WLC, Service, conn_index, real_index};

use crate::{
    atomic,
    maps::{CONNS, CURSORS, REALS},
};

/// The slot of the real that takes the next new flow of `svc`.
#[inline(always)]
pub fn pick(svc: &Service) -> Option<u32> {
    let n = svc.n_reals;
    if n == 0 || n > MAX_REALS {
        return None;
    }
    let cursor = CURSORS.get_ptr_mut(svc.id)?;
    // checked_rem: n is non-zero here, but a panic path must not even exist.
    let start = atomic::fetch_add(cursor, 1)
        .checked_rem(n as u64)
        .unwrap_or(0) as u32;

    let mut best = u32::MAX;
    let mut best_overhead: u64 = 0;
    let mut best_weight: u64 = 0;
    let mut i: u32 = 0;
    while i < MAX_REALS && i < n {
        let mut slot = start + i;
        if slot >= n {
            slot -= n;
        }
        i += 1;
        let Some(real) = REALS.get(real_index(svc.id, svc.bank, slot)) else {
            continue;
        };
        if real.state != REAL_UP || real.weight == 0 {
            continue;
        }
        let Some(conns) = CONNS.get_ptr(conn_index(svc.id, slot)) else {
            continue;
        };
        // SAFETY: map value pointer; the words change only by atomics, a
        // plain read sees some recent value, which is all a scheduler needs.
        let (active, inactive) = unsafe {
            (
                read_volatile(&(*conns).active),
                read_volatile(&(*conns).inactive),
            )
        };
        let overhead = (active as u64) * 256 + inactive as u64;
        let weight = real.weight as u64;
        let better = if best == u32::MAX {
            true
        } else if svc.scheduler == SCHED_WLC {
            best_overhead * weight > overhead * best_weight
        } else {
            overhead < best_overhead
        };
        if better {
            best = slot;
            best_overhead = overhead;
            best_weight = weight;
        }
    }
    if best == u32::MAX { None } else { Some(best) }
}
