//! A per-CPU, direct-mapped cache of established flows, and the fast path
//! that uses it.
//!
//! A kernel hash-map lookup (jhash of the 40-byte key, bucket walk, memcmp)
//! costs more than everything else an established packet needs, while array
//! lookups are inlined by the verifier. So a plain IPv4 TCP segment (IHL 5,
//! not a fragment, no SYN/FIN/RST) of a direct-routing flow first tries this
//! CPU's cache slot, picked by a multiplicative hash of the flow key. A hit
//! counts the packet and rewrites the MACs; nothing else. Anything else
//! (a miss, IPv6, UDP, NAT, odd headers) takes the full path, which fills the
//! cache when it forwards an established flow.
//!
//! FLOWS stays the truth; an entry is only a hint, valid while:
//! - its epoch equals `FLOW_EPOCH[0]`, which the sweeper bumps whenever a flow
//!   leaves FLOWS and the control plane bumps after every service change (so a
//!   removed flow, a flipped real bank or a real marked down misses at once);
//! - the full path saw the flow within `TOUCH_JIFFIES`, so the flow's
//!   `last_seen` in FLOWS keeps moving for the sweeper. Jiffies because
//!   `bpf_jiffies64` is inlined (one load), while `bpf_ktime_get_coarse_ns`
//!   is a helper call that alone costs about half of a hit.
//!
//! Counts never change on a hit: opens, closes and resets take the full path.
//! A collision only overwrites a slot: crafted keys cost speed, never pinning.
use core::ptr::read_volatile;

use aya_ebpf::{bindings::xdp_action, helpers::bpf_jiffies64, programs::XdpContext};
use fulmar_common::{AF_INET, FWD_DR, FlowKey, IPPROTO_TCP};

use crate::{
    balancer::Packet,
    headers::{ETH_HLEN, EthHdr, Ipv4Hdr, TCP_FIN, TCP_RST, TCP_SYN, TcpHdr, copy, ptr_at},
    maps::{FLOW_CACHE, FLOW_EPOCH, REAL_STATS, SERVICE_STATS},
};

/// How long an entry is trusted before the full path looks at FLOWS again:
/// 25 jiffies is 100 ms at the usual CONFIG_HZ=250 (25–250 ms for HZ 1000–100).
const TOUCH_JIFFIES: u64 = 25;

/// The clock entries are stamped with (inlined by the verifier).
#[inline(always)]
pub fn jiffies() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_jiffies64() }
}

/// Slots per CPU (a power of two): 8192 × 72 bytes = 576 KiB per CPU.
pub const SLOTS: u32 = 1 << SLOT_BITS;
const SLOT_BITS: u32 = 13;

/// One cached flow: its key as words, where it goes, and when it was checked.
#[repr(C)]
pub struct CachedFlow {
    pub key: [u64; 5],
    pub epoch: u64,
    /// `jiffies()` when the full path last saw the flow (and refreshed FLOWS).
    pub checked: u64,
    pub service: u32,
    /// `conn_index` of the flow's real, for its counters.
    pub conn: u32,
    /// The real's MAC: direct routing needs nothing else.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

#[inline(always)]
fn words(key: &FlowKey) -> &[u64; 5] {
    // SAFETY: FlowKey is 40 bytes, repr(C, align(8)), every byte written by
    // the parser (`_pad` included).
    unsafe { &*(key as *const FlowKey as *const [u64; 5]) }
}

#[inline(always)]
fn slot_of(w: &[u64; 5]) -> u32 {
    let mixed = w[0] ^ w[1] ^ (w[2] << 32 | w[2] >> 32) ^ (w[3] << 32 | w[3] >> 32) ^ w[4];
    (mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOT_BITS)) as u32
}

/// Word by word: `==` on arrays becomes a call to a byte-loop memcmp.
#[inline(always)]
fn same_key(a: &[u64; 5], b: &[u64; 5]) -> bool {
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) == 0
}

/// The current epoch; the full path reads it before anything it caches.
#[inline(always)]
pub fn epoch() -> u64 {
    match FLOW_EPOCH.get_ptr(0) {
        // SAFETY: map value pointer; other CPUs bump it atomically.
        Some(word) => unsafe { read_volatile(word) },
        None => u64::MAX,
    }
}

/// The flow key words of a plain IPv4 TCP segment that neither opens nor
/// closes a flow, laid out as the parser lays out `FlowKey`, with its
/// Ethernet header and frame length; else `None`.
#[inline(always)]
fn plain_ipv4_tcp(ctx: &XdpContext) -> Option<([u64; 5], *mut EthHdr, u64)> {
    let eth = ptr_at::<EthHdr>(ctx, 0)?;
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN)?;
    let th = ptr_at::<TcpHdr>(ctx, ETH_HLEN + 20)?;
    // SAFETY: bounds checked by ptr_at.
    let (proto_eth, ver_ihl, tot_len, frag, proto, src, dst, sport, dport, flags) = unsafe {
        (
            (*eth).proto,
            (*ip).ver_ihl,
            u16::from_be_bytes((*ip).tot_len),
            u16::from_be_bytes((*ip).frag_off),
            (*ip).proto,
            (*ip).src,
            (*ip).dst,
            (*th).sport,
            (*th).dport,
            (*th).flags,
        )
    };
    if proto_eth != [0x08, 0x00]
        || ver_ihl != 0x45
        || proto != IPPROTO_TCP
        || frag & 0x3fff != 0
        || flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0
        || (tot_len as usize) < 40
        || ETH_HLEN + tot_len as usize > ctx.data_end() - ctx.data()
    {
        return None;
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    let ports = u16::from_ne_bytes(sport) as u64 | (u16::from_ne_bytes(dport) as u64) << 16;
    let key = [
        u32::from_ne_bytes(src) as u64,
        0,
        u32::from_ne_bytes(dst) as u64,
        0,
        ports | (IPPROTO_TCP as u64) << 32 | (AF_INET as u64) << 40,
    ];
    Some((key, eth, len))
}

/// Forwards a cached established flow: the verdict, or `None` for the full path.
#[inline(always)]
pub fn fast_path(ctx: &XdpContext) -> Option<u32> {
    let (key, eth, len) = plain_ipv4_tcp(ctx)?;
    let entry = FLOW_CACHE.get_ptr(slot_of(&key))?;
    // SAFETY: per-CPU map value; only this CPU writes it.
    let entry = unsafe { &*entry };
    if !same_key(&entry.key, &key) || entry.epoch != epoch() {
        return None;
    }
    if jiffies().wrapping_sub(entry.checked) > TOUCH_JIFFIES {
        return None;
    }
    let stats = SERVICE_STATS.get_ptr_mut(entry.service)?;
    let real_stats = REAL_STATS.get_ptr_mut(entry.conn)?;
    // SAFETY: per-CPU slots, only this CPU writes them; eth bounds checked.
    unsafe {
        (*stats).packets += 1;
        (*stats).bytes += len;
        (*stats).flow_cache_hits += 1;
        (*real_stats).packets += 1;
        (*real_stats).bytes += len;
        copy(&mut (*eth).src, &(*eth).dst);
        copy(&mut (*eth).dst, &entry.mac);
    }
    Some(xdp_action::XDP_TX)
}

/// Remembers where the full path just sent an established packet's flow,
/// if the fast path can take its next packets.
#[inline(always)]
pub fn store(pkt: &Packet, epoch: u64, service: u32, conn: u32, forward: u32, mac: &[u8; 6]) {
    if forward != FWD_DR
        || pkt.key.family != AF_INET
        || pkt.key.proto != IPPROTO_TCP
        || pkt.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0
    {
        return;
    }
    let key = words(&pkt.key);
    let Some(entry) = FLOW_CACHE.get_ptr_mut(slot_of(key)) else {
        return;
    };
    // SAFETY: per-CPU map value; only this CPU writes it.
    let entry = unsafe { &mut *entry };
    entry.key = *key;
    entry.epoch = epoch;
    entry.checked = jiffies();
    entry.service = service;
    entry.conn = conn;
    // SAFETY: two distinct 6-byte fields.
    unsafe { copy(&mut entry.mac, mac) };
}
