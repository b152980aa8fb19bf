//! The three atomics the balancer needs, on 64-bit map words. Rust's core
//! offers no read-modify-write atomics for the BPF target, but LLVM lowers
//! these intrinsics to BPF_ATOMIC instructions (CPU v3, see build.rs).
use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd, atomic_xsub};

/// `*word += value`, returning the old value.
///
/// SeqCst on purpose: LLVM 22's BPF backend lowers a *relaxed* add to the
/// non-fetching BPF_ADD even when the result is used (the old value is then
/// silently the addend); a sequentially consistent one gets BPF_FETCH.
#[inline(always)]
pub fn fetch_add(word: *mut u64, value: u64) -> u64 {
    // SAFETY: callers pass 8-byte aligned map value pointers, valid for the run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(word, value) }
}

/// `*word -= 1`.
#[inline(always)]
pub fn decrement(word: *mut u64) {
    // SAFETY: as fetch_add.
    unsafe { atomic_xsub::<u64, u64, { AtomicOrdering::Relaxed }>(word, 1) };
}

/// `*word += 1`.
#[inline(always)]
pub fn increment(word: *mut u64) {
    // SAFETY: as fetch_add; the result is unused, so BPF_ADD is right here.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(word, 1) };
}

/// Swaps `from` for `to`; true for the one caller that did it.
#[inline(always)]
pub fn swap_state(word: *mut u64, from: u64, to: u64) -> bool {
    // SAFETY: as fetch_add.
    unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(word, from, to)
    }
    .1
}
