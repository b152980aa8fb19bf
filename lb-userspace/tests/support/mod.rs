//! Shared by the balancer's integration tests: a balancer loaded under a
//! unique pin directory that is removed on drop, and packet fixtures.
#![allow(dead_code)]
#[allow(unused_imports)]
pub use fulmar_lb::frames as packet;

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU32, Ordering},
};

use fulmar_lb::{
    Balancer, Forwarding, LoadOptions, PinLayout, RealSpec, RealState, Scheduler, ServiceSpec,
    balancer::unpin_all,
};

/// A balancer under /sys/fs/bpf/fulmar-test-<pid>-<n>, unpinned on drop
/// (also when the test panics).
pub struct TestBalancer {
    pub lb: Balancer,
    pins: PinLayout,
}

impl TestBalancer {
    pub fn new(flow_capacity: u32) -> Self {
        assert_eq!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() },
            0,
            "BPF tests need root (CI runs as root)"
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pins = PinLayout::new(format!(
            "/sys/fs/bpf/fulmar-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = unpin_all(&pins);
        let lb = Balancer::load(&pins, &LoadOptions { flow_capacity }).expect("load and verify");
        Self { lb, pins }
    }
}

impl Drop for TestBalancer {
    fn drop(&mut self) {
        let _ = unpin_all(&self.pins);
    }
}

pub const VIP4: &str = "198.18.0.100";
pub const VIP6: &str = "2001:db8::100";

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// The MAC given to real `i` in these tests: 02:00:00:00:hi:lo.
pub fn real_mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, (i >> 8) as u8, i as u8]
}

pub fn service(vip: &str, port: u16, scheduler: Scheduler, forwarding: Forwarding) -> ServiceSpec {
    ServiceSpec {
        vip: ip(vip),
        port,
        proto: fulmar_common::IPPROTO_TCP,
        scheduler,
        forwarding,
        reset_on_down: false,
    }
}

/// `weights.len()` reals 198.18.1.i (or 2001:db8:1::i), all up.
pub fn reals(v6: bool, port: u16, weights: &[u16]) -> Vec<RealSpec> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| RealSpec {
            addr: if v6 {
                ip(&format!("2001:db8:1::{:x}", i + 1))
            } else {
                ip(&format!("198.18.{}.{}", 1 + (i + 1) / 256, (i + 1) % 256))
            },
            port,
            mac: real_mac(i),
            weight: weight as u32,
            state: RealState::Up,
        })
        .collect()
}
