//! fulmar's XDP balancer: virtual services → front-end proxies with IPVS
//! least-connection / weighted least-connection, a flow table that pins each
//! flow to its real, direct routing (MAC rewrite) or NAT, and an RST reply
//! for flows of a real marked down.
//!
//! `fulmar_sweep` is a second program, never attached: userspace runs it with
//! BPF_PROG_TEST_RUN to expire or evict flows, so that every change of a
//! real's connection counts is a BPF atomic on the same words the balancer uses.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod atomic;
mod balancer;
mod csum;
mod flow_cache;
mod headers;
mod maps;
mod rst;
mod schedule;
mod sweep;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn fulmar_lb(ctx: XdpContext) -> u32 {
    balancer::try_balance(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

#[xdp]
pub fn fulmar_sweep(ctx: XdpContext) -> u32 {
    sweep::try_sweep(&ctx).unwrap_or(xdp_action::XDP_ABORTED)
}

/// XDP_PASS and nothing else. Attached to the far end of a veth, it gives
/// that end the XDP receive path XDP_TX frames need; also the benchmark floor.
#[xdp]
pub fn fulmar_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Swaps the MAC addresses and bounces the frame: the benchmark's bare
/// XDP_TX baseline.
#[xdp]
pub fn fulmar_mac_swap(ctx: XdpContext) -> u32 {
    match headers::ptr_at::<headers::EthHdr>(&ctx, 0) {
        Some(eth) => {
            // SAFETY: bounds checked by ptr_at.
            unsafe {
                let src = (*eth).src;
                (*eth).src = (*eth).dst;
                (*eth).dst = src;
            }
            xdp_action::XDP_TX
        }
        None => xdp_action::XDP_DROP,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
