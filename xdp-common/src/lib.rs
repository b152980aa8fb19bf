//! Everything that crosses the kernel/user boundary of the fulmar balancer:
//! map keys and values, map names, limits and counter indices.
//!
//! All types are `#[repr(C)]` with explicit padding so the eBPF program and
//! the loader agree byte for byte. Addresses are kept as they appear on the
//! wire (16 bytes; IPv4 in the first four, the rest zero) and ports in
//! network byte order (`_be` fields), so the data path never swaps bytes.
#![no_std]

/// The product name: pin directory, binaries and units all use it.
pub const PRODUCT: &str = "fulmar";

/// Virtual services one balancer holds.
pub const MAX_SERVICES: u32 = 64;
/// Real servers per virtual service (the IPVS-like pool bound).
pub const MAX_REALS: u32 = 256;
/// Each service has two banks of real slots; userspace writes the idle bank
/// and flips `Service::bank`, so the data path never reads a half-written pool.
pub const REAL_BANKS: u32 = 2;
/// Flow entries one sweep call handles (bounded by the test-run page).
pub const SWEEP_BATCH: usize = 48;

/// Map names, as the eBPF object defines them and the pin directory holds them.
pub mod map_names {
    pub const SERVICES: &str = "SERVICES";
    pub const REALS: &str = "REALS";
    pub const CONNS: &str = "CONNS";
    pub const CURSORS: &str = "CURSORS";
    pub const FLOWS: &str = "FLOWS";
    pub const NAT_REVERSE: &str = "NAT_REVERSE";
    pub const CONFIG: &str = "CONFIG";
    pub const GLOBAL_STATS: &str = "GLOBAL_STATS";
    pub const SERVICE_STATS: &str = "SERVICE_STATS";
    pub const REAL_STATS: &str = "REAL_STATS";
    pub const FLOW_EPOCH: &str = "FLOW_EPOCH";
    /// Every map, in the order the loader reports them.
    pub const ALL: [&str; 11] = [
        SERVICES,
        REALS,
        CONNS,
        CURSORS,
        FLOWS,
        NAT_REVERSE,
        CONFIG,
        GLOBAL_STATS,
        SERVICE_STATS,
        REAL_STATS,
        FLOW_EPOCH,
    ];
}

/// Program names in the eBPF object.
pub mod program_names {
    /// The balancer, attached to the interface facing clients and reals.
    pub const BALANCER: &str = "fulmar_lb";
    /// The flow sweeper, never attached: userspace runs it with
    /// BPF_PROG_TEST_RUN so every count change happens in BPF atomics.
    pub const SWEEPER: &str = "fulmar_sweep";
    /// XDP_PASS only: for the far end of a veth that receives XDP_TX frames,
    /// and the benchmark's floor.
    pub const PASS: &str = "fulmar_pass";
    /// Swaps MACs and returns XDP_TX: the benchmark's forwarding baseline.
    pub const MAC_SWAP: &str = "fulmar_mac_swap";
    pub const ALL: [&str; 4] = [BALANCER, SWEEPER, PASS, MAC_SWAP];
}

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Scheduler of a virtual service.
pub const SCHED_LC: u32 = 0;
pub const SCHED_WLC: u32 = 1;

/// Forwarding method of a virtual service.
pub const FWD_DR: u32 = 0;
pub const FWD_NAT: u32 = 1;

/// Service flag: a real marked down has its existing TCP flows answered with
/// RST (UDP dropped) instead of kept.
pub const SVC_F_RESET_ON_DOWN: u32 = 1;

/// Real states. `EMPTY` marks an unused slot.
pub const REAL_EMPTY: u32 = 0;
pub const REAL_UP: u32 = 1;
pub const REAL_DOWN: u32 = 2;
pub const REAL_DRAIN: u32 = 3;

/// Flow states. Every transition is a compare-and-swap whose winner moves
/// the real's counts, which is what keeps them exact.
pub const FLOW_ACTIVE: u64 = 1;
pub const FLOW_INACTIVE: u64 = 2;
/// Being removed by the sweeper; the data path drops its packets meanwhile.
pub const FLOW_DEAD: u64 = 3;

/// Flow flag: an ACK was seen after the SYN (the handshake completed).
pub const FLOW_F_SEEN_ACK: u32 = 1;

/// Key of `SERVICES`: the virtual service (VIP, port, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub addr: [u8; 16],
    pub port_be: u16,
    pub proto: u8,
    pub family: u8,
}

/// Value of `SERVICES`, written by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index of the service in the per-service arrays (< MAX_SERVICES).
    pub id: u32,
    /// Which of the two real banks is live.
    pub bank: u32,
    /// Slots in use in the live bank (<= MAX_REALS).
    pub n_reals: u32,
    pub scheduler: u32,
    pub forward: u32,
    pub flags: u32,
}

/// Element of `REALS`, at `real_index(service, bank, slot)`; written by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Real {
    pub addr: [u8; 16],
    pub mac: [u8; 6],
    pub port_be: u16,
    /// Effective weight (0..=65535); 0 takes no new flows.
    pub weight: u32,
    pub state: u32,
    /// Bumped whenever the slot gets a different real, so stale flows notice.
    pub generation: u32,
}

/// Element of `CONNS`, at `conn_index(service, slot)`: updated only with
/// atomics (64-bit: the width BPF atomics have in Rust's core).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCount {
    pub active: u64,
    pub inactive: u64,
}

/// Key of `FLOWS` (client → VIP) and of `NAT_REVERSE` (real → client).
/// 8-aligned so the data path can compare and hash it as five u64 words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of `FLOWS`: which real a flow is pinned to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    pub service: u32,
    pub slot: u32,
    pub generation: u32,
    pub flags: u32,
    /// One of FLOW_*; 64-bit because the BPF target's atomics are.
    pub state: u64,
    /// bpf_ktime_get_coarse_ns() of the last packet (monotonic, tick-grained:
    /// cheap per packet, and far finer than any idle timeout).
    pub last_seen_ns: u64,
}

/// Value of `NAT_REVERSE`: what a real's reply must look like to the client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatValue {
    pub vip: [u8; 16],
    pub vport_be: u16,
    pub _pad: [u8; 2],
}

/// `CONFIG[0]`: idle timeouts (the sweeper applies them) and switches.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// A SYN never followed by an ACK.
    pub tcp_syn_ns: u64,
    /// An established TCP flow. Must outlast IMAP IDLE's 29-minute re-issue.
    pub tcp_established_ns: u64,
    /// After FIN or RST.
    pub tcp_closing_ns: u64,
    pub udp_ns: u64,
    /// Non-zero when any service uses NAT: replies are then looked up.
    pub nat_enabled: u32,
    pub _pad: u32,
}

const SEC: u64 = 1_000_000_000;

impl Default for Config {
    fn default() -> Self {
        Self {
            // As IPVS's SYN_RECV: a handshake that did not complete in a minute is gone.
            tcp_syn_ns: 60 * SEC,
            // 2 h 15 min: IMAP IDLE re-issues within 29 min (RFC 2177) and TCP
            // keep-alive defaults to 2 h, so an idle but live session stays pinned.
            tcp_established_ns: 8100 * SEC,
            // As IPVS's FIN_WAIT / TIME_WAIT: two minutes after the close.
            tcp_closing_ns: 120 * SEC,
            // As IPVS's UDP timeout.
            udp_ns: 300 * SEC,
            nat_enabled: 0,
            _pad: 0,
        }
    }
}

/// Per-CPU counters per service (`SERVICE_STATS[service]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// New flow with no real up and weighted.
    pub drop_no_real: u64,
    /// New flow while the flow table was full.
    pub drop_table_full: u64,
    /// Packet of a flow whose real is down (RST sent or dropped).
    pub drop_real_down: u64,
    /// Packet of a flow being swept, or whose real slot was reused.
    pub drop_stale: u64,
    pub rst_sent: u64,
    /// Packets (of `packets`) forwarded from a CPU's flow cache.
    pub flow_cache_hits: u64,
}

/// Per-CPU counters per real (`REAL_STATS[conn_index(service, slot)]`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealStats {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    pub _pad: u64,
}

/// Indices of `GLOBAL_STATS`, per-CPU u64 counters of every verdict the
/// parser takes before a service is known. The documented rules:
pub mod global_stat {
    /// Not IPv4/IPv6 (ARP, VLAN-tagged, ...): XDP_PASS.
    pub const PASS_NOT_IP: u32 = 0;
    /// IP but matches no service and no NAT reply: XDP_PASS.
    pub const PASS_NO_SERVICE: u32 = 1;
    /// Headers cut short (Ethernet, IP or L4 beyond the packet end, IPv4
    /// IHL < 5 or total length beyond the packet): XDP_DROP.
    pub const DROP_TRUNCATED: u32 = 2;
    /// IPv4 fragment (MF or offset): XDP_PASS; a non-first fragment has no
    /// ports, so it cannot be matched to a flow. Mail is TCP with PMTU discovery.
    pub const PASS_FRAGMENT: u32 = 3;
    /// IPv6 with an extension header before TCP/UDP: XDP_PASS.
    pub const PASS_IPV6_EXT: u32 = 4;
    /// IPv4 with options: balanced normally (counted only).
    pub const IP_OPTIONS: u32 = 5;
    /// Neither TCP nor UDP: XDP_PASS.
    pub const PASS_OTHER_PROTO: u32 = 6;
    /// TCP non-SYN with no flow: forwarded to a scheduled real, not pinned
    /// (the real answers RST if it has no such connection).
    pub const UNPINNED_MIDSTREAM: u32 = 7;
    /// TCP RST/FIN with no flow: XDP_DROP (nothing to close).
    pub const DROP_CLOSE_NO_FLOW: u32 = 8;
    /// NAT reply whose route or neighbour to the client is unknown: XDP_DROP.
    pub const DROP_NAT_NO_ROUTE: u32 = 9;
    /// NAT reply rewritten and sent.
    pub const NAT_REPLY: u32 = 10;
    pub const COUNT: u32 = 11;
    pub const NAMES: [&str; COUNT as usize] = [
        "pass_not_ip",
        "pass_no_service",
        "drop_truncated",
        "pass_fragment",
        "pass_ipv6_ext",
        "ip_options",
        "pass_other_proto",
        "unpinned_midstream",
        "drop_close_no_flow",
        "drop_nat_no_route",
        "nat_reply",
    ];
}

/// Sweep operations.
pub const SWEEP_EXPIRE: u32 = 0;
pub const SWEEP_FORCE: u32 = 1;
/// No entries: only invalidates every CPU's flow cache (after the control
/// plane changed a service or its reals).
pub const SWEEP_INVALIDATE: u32 = 2;

/// Sweep results, written back per entry.
pub const SWEEP_KEPT: u32 = 0;
pub const SWEEP_REMOVED: u32 = 1;
pub const SWEEP_NOT_FOUND: u32 = 2;
/// Another sweeper got it first.
pub const SWEEP_RACED: u32 = 3;

/// Header of the sweeper's test-run packet, followed by `count` entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SweepHeader {
    pub op: u32,
    pub count: u32,
    /// Added to the clock, so tests can age flows without waiting.
    pub clock_offset_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SweepEntry {
    pub key: FlowKey,
    pub result: u32,
    /// FlowKey's 8-byte alignment, spelled out.
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SweepRequest {
    pub header: SweepHeader,
    pub entries: [SweepEntry; SWEEP_BATCH],
}

#[inline(always)]
pub const fn real_index(service: u32, bank: u32, slot: u32) -> u32 {
    (service * REAL_BANKS + bank) * MAX_REALS + slot
}

#[inline(always)]
pub const fn conn_index(service: u32, slot: u32) -> u32 {
    service * MAX_REALS + slot
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    /// Marks map types as plain old data for aya.
    macro_rules! pod {
        ($($t:ty),*) => {$(
            // SAFETY: all are repr(C), made of integers and byte arrays with
            // explicit padding fields, so every bit pattern is valid.
            unsafe impl aya::Pod for $t {}
        )*};
    }
    pod!(
        ServiceKey,
        Service,
        Real,
        ConnCount,
        FlowKey,
        FlowValue,
        NatValue,
        Config,
        ServiceStats,
        RealStats
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<Service>(), 24);
        assert_eq!(size_of::<Real>(), 36);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowValue>(), 32);
        assert_eq!(size_of::<NatValue>(), 20);
        assert_eq!(size_of::<Config>(), 40);
        assert_eq!(size_of::<SweepEntry>(), 48);
        // The sweep request must fit a test-run page with XDP headroom.
        assert!(size_of::<SweepRequest>() <= 3000);
    }

    #[test]
    fn established_timeout_keeps_imap_idle_pinned() {
        assert!(Config::default().tcp_established_ns > 29 * 60 * SEC);
    }
}
