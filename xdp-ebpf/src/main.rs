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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
