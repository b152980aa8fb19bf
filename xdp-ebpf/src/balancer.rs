//! The per-packet path: parse, match a virtual service, find or create the
//! flow, forward by direct routing or NAT; NAT replies are rewritten back.
use core::{mem::size_of, ptr::read_volatile};

use aya_ebpf::{
    bindings::{BPF_NOEXIST, bpf_fib_lookup, xdp_action},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_coarse_ns, bpf_redirect},
    programs::XdpContext,
};
use fulmar_common::{
    AF_INET, AF_INET6, FLOW_ACTIVE, FLOW_DEAD, FLOW_F_SEEN_ACK, FLOW_INACTIVE, FWD_NAT, FlowKey,
    FlowValue, IPPROTO_TCP, IPPROTO_UDP, NatValue, REAL_DOWN, REAL_EMPTY, REAL_UP, Real,
    SVC_F_RESET_ON_DOWN, Service, ServiceKey, ServiceStats, conn_index, global_stat, real_index,
};

use crate::{
    atomic, csum, flow_cache,
    headers::{
        ETH_HLEN, ETH_P_IP, ETH_P_IPV6, EthHdr, IPV6_HLEN, Ipv4Hdr, Ipv6Hdr, TCP_ACK, TCP_FIN,
        TCP_RST, TCP_SYN, TcpHdr, UdpHdr, be16, copy, ptr_at, set_v4,
    },
    maps::{
        CONFIG, CONNS, FLOWS, NAT_REVERSE, REAL_STATS, REALS, SCRATCH, SERVICE_STATS, SERVICES,
        count_global,
    },
    rst, schedule, sweep,
};

const EEXIST: i32 = 17;
/// last_seen is refreshed at most this often: fewer writes to a shared line.
const TOUCH_NS: u64 = 100_000_000;

/// What the parser learned of a TCP/UDP packet. Lives in the per-CPU
/// `SCRATCH` map: the BPF stack (512 bytes) cannot hold it and the rest.
#[repr(C)]
pub struct Packet {
    /// Addresses, ports, protocol and family, as the flow table keys them.
    pub key: FlowKey,
    pub l4_off: usize,
    pub len: u64,
    pub tcp_flags: u8,
}

impl Packet {
    #[inline(always)]
    fn is_tcp(&self) -> bool {
        self.key.proto == IPPROTO_TCP
    }
    /// A SYN without ACK opens a TCP flow; any UDP datagram may open one.
    #[inline(always)]
    fn opens_flow(&self) -> bool {
        !self.is_tcp() || self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }
    #[inline(always)]
    fn closes_flow(&self) -> bool {
        self.is_tcp() && self.tcp_flags & (TCP_FIN | TCP_RST) != 0
    }
}

/// Per-CPU working memory of one packet's run.
#[repr(C)]
pub struct Scratch {
    pub pkt: Packet,
    /// The NAT reverse key, or the forward key of a NAT reply.
    pub other_key: FlowKey,
    pub flow: FlowValue,
    pub fib: bpf_fib_lookup,
}

/// The parser's outcome: a packet in scratch to balance, or a verdict.
type Parsed = Option<u32>;

#[inline(always)]
fn verdict(stat: u32, action: u32) -> Parsed {
    count_global(stat);
    Some(action)
}

#[inline(always)]
pub fn try_balance(ctx: &XdpContext) -> Result<u32, ()> {
    if let Some(action) = flow_cache::fast_path(ctx) {
        return Ok(action);
    }
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: per-CPU map value, used by this run only.
    let scratch = unsafe { &mut *scratch };
    let parsed = match ptr_at::<EthHdr>(ctx, 0) {
        // SAFETY: bounds checked by ptr_at.
        Some(eth) => match be16(unsafe { (*eth).proto }) {
            ETH_P_IP => parse_ipv4(ctx, &mut scratch.pkt),
            ETH_P_IPV6 => parse_ipv6(ctx, &mut scratch.pkt),
            _ => verdict(global_stat::PASS_NOT_IP, xdp_action::XDP_PASS),
        },
        None => verdict(global_stat::DROP_TRUNCATED, xdp_action::XDP_DROP),
    };
    if let Some(action) = parsed {
        return Ok(action);
    }
    // Read before the service and flow, so a cache entry built from them
    // is void if either changes meanwhile.
    let epoch = flow_cache::epoch();
    let key = ServiceKey {
        addr: scratch.pkt.key.dst,
        port_be: scratch.pkt.key.dport_be,
        proto: scratch.pkt.key.proto,
        family: scratch.pkt.key.family,
    };
    match SERVICES.get_ptr(&key) {
        // SAFETY: map value (the control plane replaces, never edits, entries).
        Some(svc) => Ok(balance(ctx, scratch, unsafe { &*svc }, epoch)),
        None => Ok(nat_reply(ctx, scratch)),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, pkt: &mut Packet) -> Parsed {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
        return verdict(global_stat::DROP_TRUNCATED, xdp_action::XDP_DROP);
    };
    // SAFETY: bounds checked by ptr_at.
    let (ver_ihl, tot_len, frag, proto, src4, dst4) = unsafe {
        (
            (*ip).ver_ihl,
            be16((*ip).tot_len),
            be16((*ip).frag_off),
            (*ip).proto,
            (*ip).src,
            (*ip).dst,
        )
    };
    let ihl = (ver_ihl & 0x0f) as usize * 4;
    let pkt_len = ctx.data_end() - ctx.data();
    if ver_ihl >> 4 != 4
        || ihl < 20
        || ETH_HLEN + (tot_len as usize) > pkt_len
        || (tot_len as usize) < ihl
    {
        return verdict(global_stat::DROP_TRUNCATED, xdp_action::XDP_DROP);
    }
    if frag & 0x3fff != 0 {
        return verdict(global_stat::PASS_FRAGMENT, xdp_action::XDP_PASS);
    }
    if ihl > 20 {
        count_global(global_stat::IP_OPTIONS);
    }
    set_v4(&mut pkt.key.src, &src4);
    set_v4(&mut pkt.key.dst, &dst4);
    parse_l4(ctx, pkt, AF_INET, proto, ETH_HLEN + ihl)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, pkt: &mut Packet) -> Parsed {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN) else {
        return verdict(global_stat::DROP_TRUNCATED, xdp_action::XDP_DROP);
    };
    // SAFETY: bounds checked by ptr_at.
    let (ver, payload_len, next) = unsafe {
        (
            (*ip).ver_tc_flow[0] >> 4,
            be16((*ip).payload_len),
            (*ip).next_hdr,
        )
    };
    if ver != 6 || ETH_HLEN + IPV6_HLEN + payload_len as usize > ctx.data_end() - ctx.data() {
        return verdict(global_stat::DROP_TRUNCATED, xdp_action::XDP_DROP);
    }
    match next {
        IPPROTO_TCP | IPPROTO_UDP => {
            // SAFETY: bounds checked by ptr_at.
            unsafe {
                copy(&mut pkt.key.src, &(*ip).src);
                copy(&mut pkt.key.dst, &(*ip).dst);
            }
            parse_l4(ctx, pkt, AF_INET6, next, ETH_HLEN + IPV6_HLEN)
        }
        // Hop-by-hop (0), routing (43), fragment (44), destination options (60).
        0 | 43 | 44 | 60 => verdict(global_stat::PASS_IPV6_EXT, xdp_action::XDP_PASS),
        _ => verdict(global_stat::PASS_OTHER_PROTO, xdp_action::XDP_PASS),
    }
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, pkt: &mut Packet, family: u8, proto: u8, l4_off: usize) -> Parsed {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let (sport, dport, tcp_flags) = match proto {
        IPPROTO_TCP => {
            let Some(th) = ptr_at::<TcpHdr>(ctx, l4_off) else {
                return verdict(global_stat::DROP_TRUNCATED, xdp_action::XDP_DROP);
            };
            // SAFETY: bounds checked by ptr_at.
            unsafe { ((*th).sport, (*th).dport, (*th).flags) }
        }
        IPPROTO_UDP => {
            let Some(uh) = ptr_at::<UdpHdr>(ctx, l4_off) else {
                return verdict(global_stat::DROP_TRUNCATED, xdp_action::XDP_DROP);
            };
            // SAFETY: bounds checked by ptr_at.
            unsafe { ((*uh).sport, (*uh).dport, 0) }
        }
        _ => return verdict(global_stat::PASS_OTHER_PROTO, xdp_action::XDP_PASS),
    };
    pkt.key.sport_be = u16::from_ne_bytes(sport);
    pkt.key.dport_be = u16::from_ne_bytes(dport);
    pkt.key.proto = proto;
    pkt.key.family = family;
    pkt.key._pad = [0; 2];
    pkt.l4_off = l4_off;
    pkt.len = len;
    pkt.tcp_flags = tcp_flags;
    None
}

#[inline(always)]
fn balance(ctx: &XdpContext, scratch: &mut Scratch, svc: &Service, epoch: u64) -> u32 {
    let pkt = &scratch.pkt;
    let Some(stats) = SERVICE_STATS.get_ptr_mut(svc.id) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: per-CPU slot, only this CPU writes it.
    unsafe {
        (*stats).packets += 1;
        (*stats).bytes += pkt.len;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if let Some(flow) = FLOWS.get_ptr_mut(&pkt.key) {
        if !reused_toward_closed_real(pkt, svc, flow) {
            return established(ctx, pkt, svc, flow, stats, now, epoch);
        }
        // Retired (or raced by a sweep or another CPU): a new flow either
        // way; NOEXIST insertion settles a race with a CPU reopening it.
    }
    if pkt.opens_flow() {
        return new_flow(ctx, scratch, svc, stats, now, epoch);
    }
    if pkt.closes_flow() {
        count_global(global_stat::DROP_CLOSE_NO_FLOW);
        return xdp_action::XDP_DROP;
    }
    // Mid-stream segment of a flow we do not know (expired, or opened before
    // this balancer): forward without pinning; a real without that
    // connection answers RST and the client reconnects.
    count_global(global_stat::UNPINNED_MIDSTREAM);
    match scheduled_real(svc, stats) {
        Ok((_, real)) => forward(ctx, pkt, svc.forward, real),
        Err(action) => action,
    }
}

/// The slot and real that take a new flow of `svc`, or the verdict when
/// no real can (counted as `drop_no_real`).
#[inline(always)]
fn scheduled_real(svc: &Service, stats: *mut ServiceStats) -> Result<(u32, &'static Real), u32> {
    let Some(slot) = schedule::pick(svc) else {
        // SAFETY: per-CPU slot.
        unsafe { (*stats).drop_no_real += 1 };
        return Err(xdp_action::XDP_DROP);
    };
    match REALS.get(real_index(svc.id, svc.bank, slot)) {
        Some(real) => Ok((slot, real)),
        None => Err(xdp_action::XDP_ABORTED),
    }
}

#[inline(always)]
fn new_flow(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    svc: &Service,
    stats: *mut ServiceStats,
    now: u64,
    epoch: u64,
) -> u32 {
    let pkt = &scratch.pkt;
    let (slot, real) = match scheduled_real(svc, stats) {
        Ok(chosen) => chosen,
        Err(action) => return action,
    };
    scratch.flow = FlowValue {
        service: svc.id,
        slot,
        generation: real.generation,
        flags: 0,
        state: FLOW_ACTIVE,
        last_seen_ns: now,
    };
    match FLOWS.insert(&pkt.key, &scratch.flow, BPF_NOEXIST as u64) {
        Ok(()) => {}
        Err(err) if err == -EEXIST => {
            // Another CPU opened the same flow a moment ago: join it.
            return match FLOWS.get_ptr_mut(&pkt.key) {
                Some(flow) => established(ctx, pkt, svc, flow, stats, now, epoch),
                None => xdp_action::XDP_DROP,
            };
        }
        Err(_) => {
            // Full: the SYN is dropped, the client retries, and the
            // control plane's sweeper makes room (evicting, counted).
            // SAFETY: per-CPU slot.
            unsafe { (*stats).drop_table_full += 1 };
            return xdp_action::XDP_DROP;
        }
    }
    if let Some(conns) = CONNS.get_ptr_mut(conn_index(svc.id, slot)) {
        // SAFETY: map value pointer; shared across CPUs, hence the atomic.
        atomic::increment(unsafe { &raw mut (*conns).active });
    }
    // SAFETY: per-CPU slots.
    unsafe { (*stats).new_flows += 1 };
    if let Some(rs) = REAL_STATS.get_ptr_mut(conn_index(svc.id, slot)) {
        // SAFETY: per-CPU slot.
        unsafe { (*rs).new_flows += 1 };
    }
    if svc.forward == FWD_NAT {
        scratch.other_key = FlowKey {
            src: real.addr,
            dst: pkt.key.src,
            sport_be: real.port_be,
            dport_be: pkt.key.sport_be,
            proto: pkt.key.proto,
            family: pkt.key.family,
            _pad: [0; 2],
        };
        let nat = NatValue {
            vip: pkt.key.dst,
            vport_be: pkt.key.dport_be,
            _pad: [0; 2],
        };
        let _ = NAT_REVERSE.insert(&scratch.other_key, &nat, 0);
    }
    count_real(conn_index(svc.id, slot), pkt);
    forward(ctx, pkt, svc.forward, real)
}

#[inline(always)]
fn established(
    ctx: &XdpContext,
    pkt: &Packet,
    svc: &Service,
    flow: *mut FlowValue,
    stats: *mut ServiceStats,
    now: u64,
    epoch: u64,
) -> u32 {
    // SAFETY: map value pointer, valid for this run (FLOWS is not
    // preallocated, so a concurrently deleted entry is not reused under us).
    let (state, slot, generation, service, flags, last_seen) = unsafe {
        (
            read_volatile(&(*flow).state),
            (*flow).slot,
            (*flow).generation,
            (*flow).service,
            (*flow).flags,
            (*flow).last_seen_ns,
        )
    };
    let real: &Real = match REALS.get(real_index(svc.id, svc.bank, slot)) {
        Some(real)
            if state != FLOW_DEAD
                && service == svc.id
                && real.generation == generation
                && real.state != REAL_EMPTY =>
        {
            real
        }
        _ => {
            // Being swept, or its real was removed: the next packet of a
            // new flow will be scheduled afresh.
            // SAFETY: per-CPU slot.
            unsafe { (*stats).drop_stale += 1 };
            return xdp_action::XDP_DROP;
        }
    };
    if real.state == REAL_DOWN && svc.flags & SVC_F_RESET_ON_DOWN != 0 {
        close_flow(flow);
        // SAFETY: per-CPU slot.
        unsafe { (*stats).drop_real_down += 1 };
        if pkt.is_tcp() && pkt.tcp_flags & TCP_RST == 0 {
            // SAFETY: per-CPU slot.
            unsafe { (*stats).rst_sent += 1 };
            return rst::reply(ctx, pkt.key.family, pkt.l4_off);
        }
        return xdp_action::XDP_DROP;
    }
    if pkt.is_tcp() {
        if pkt.opens_flow() && state == FLOW_INACTIVE {
            // The same 4-tuple opens again after a close: same real, active again.
            reopen_flow(flow);
        } else if pkt.closes_flow() {
            close_flow(flow);
        } else if pkt.tcp_flags & TCP_ACK != 0 && flags & FLOW_F_SEEN_ACK == 0 {
            // SAFETY: map value; a lost race only delays the flag by a packet.
            unsafe { (*flow).flags = flags | FLOW_F_SEEN_ACK };
        }
    }
    if now.wrapping_sub(last_seen) > TOUCH_NS {
        // SAFETY: map value; a plain store, the sweeper only compares it.
        unsafe { (*flow).last_seen_ns = now };
    }
    let conn = conn_index(svc.id, slot);
    if state != FLOW_DEAD && real.state != REAL_DOWN {
        flow_cache::store(pkt, epoch, svc.id, conn, svc.forward, &real.mac);
    }
    count_real(conn, pkt);
    forward(ctx, pkt, svc.forward, real)
}

/// ACTIVE → INACTIVE; the CPU that wins the swap moves the count.
#[inline(always)]
pub fn close_flow(flow: *mut FlowValue) {
    if atomic::swap_state(
        // SAFETY: map value pointer.
        unsafe { &raw mut (*flow).state },
        FLOW_ACTIVE,
        FLOW_INACTIVE,
    ) {
        // SAFETY: map value pointer.
        let (service, slot) = unsafe { ((*flow).service, (*flow).slot) };
        move_count(service, slot, true);
    }
}

/// A SYN on a closed 4-tuple whose real no longer takes new flows (drained,
/// weight 0, down or replaced) is a new connection, so it is scheduled
/// afresh as IPVS does with `conn_reuse_mode`: clients reuse a source port
/// at once when the server closed first, and a drained proxy would
/// otherwise keep getting the reconnects of the very sessions it ended.
/// Retires the old flow and says so.
#[inline(always)]
fn reused_toward_closed_real(pkt: &Packet, svc: &Service, flow: *mut FlowValue) -> bool {
    if !pkt.is_tcp() || !pkt.opens_flow() {
        return false;
    }
    // SAFETY: map value pointer, valid for this run.
    let (state, slot, generation, service) = unsafe {
        (
            read_volatile(&(*flow).state),
            (*flow).slot,
            (*flow).generation,
            (*flow).service,
        )
    };
    if state != FLOW_INACTIVE || service != svc.id {
        return false;
    }
    let takes_new = matches!(
        REALS.get(real_index(svc.id, svc.bank, slot)),
        Some(real) if real.state == REAL_UP && real.weight != 0 && real.generation == generation
    );
    if takes_new {
        return false;
    }
    if sweep::retire(&pkt.key, flow, state, service, slot) {
        sweep::void_flow_caches();
    }
    true
}

/// INACTIVE → ACTIVE, for a SYN on a closed 4-tuple.
#[inline(always)]
fn reopen_flow(flow: *mut FlowValue) {
    if atomic::swap_state(
        // SAFETY: map value pointer.
        unsafe { &raw mut (*flow).state },
        FLOW_INACTIVE,
        FLOW_ACTIVE,
    ) {
        // SAFETY: map value pointer.
        unsafe { (*flow).flags = 0 };
        // SAFETY: map value pointer.
        let (service, slot) = unsafe { ((*flow).service, (*flow).slot) };
        move_count(service, slot, false);
    }
}

/// Moves one flow of (service, slot) from active to inactive, or back.
#[inline(always)]
fn move_count(service: u32, slot: u32, to_inactive: bool) {
    let Some(conns) = CONNS.get_ptr_mut(conn_index(service, slot)) else {
        return;
    };
    // SAFETY: map value pointer; shared across CPUs, hence the atomics.
    let (active, inactive) = unsafe { (&raw mut (*conns).active, &raw mut (*conns).inactive) };
    let (from, to) = if to_inactive {
        (active, inactive)
    } else {
        (inactive, active)
    };
    atomic::decrement(from);
    atomic::increment(to);
}

#[inline(always)]
fn count_real(conn: u32, pkt: &Packet) {
    if let Some(rs) = REAL_STATS.get_ptr_mut(conn) {
        // SAFETY: per-CPU slot.
        unsafe {
            (*rs).packets += 1;
            (*rs).bytes += pkt.len;
        }
    }
}

/// Sends the packet to `real`: NAT rewrites the destination first; both then
/// rewrite the MACs (ours as source, the real's as destination) and bounce
/// it out of the interface it came in on.
#[inline(always)]
fn forward(ctx: &XdpContext, pkt: &Packet, forward: u32, real: &Real) -> u32 {
    if forward == FWD_NAT
        && rewrite(ctx, pkt, Side::Destination, &real.addr, real.port_be).is_none()
    {
        return xdp_action::XDP_DROP;
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at; distinct fields.
    unsafe {
        copy(&mut (*eth).src, &(*eth).dst);
        copy(&mut (*eth).dst, &real.mac);
    }
    xdp_action::XDP_TX
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

/// Rewrites one side's address and port, fixing the IPv4 header checksum
/// and the TCP/UDP checksum (whose pseudo-header covers the addresses).
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    pkt: &Packet,
    side: Side,
    addr: &[u8; 16],
    port_be: u16,
) -> Option<()> {
    let port = port_be.to_ne_bytes();
    let (old_port, port_off) = match side {
        Side::Source => (pkt.key.sport_be.to_ne_bytes(), 0),
        Side::Destination => (pkt.key.dport_be.to_ne_bytes(), 2),
    };
    let l4_check_off = if pkt.is_tcp() { 16 } else { 6 };
    let check_ptr = ptr_at::<[u8; 2]>(ctx, pkt.l4_off + l4_check_off)?;
    let port_ptr = ptr_at::<[u8; 2]>(ctx, pkt.l4_off + port_off)?;
    // SAFETY: bounds checked by ptr_at.
    let mut l4_check = unsafe { *check_ptr };
    // An IPv4 UDP checksum of zero means "none": leave it so.
    let l4_has_check = pkt.is_tcp() || pkt.key.family == AF_INET6 || l4_check != [0, 0];

    if pkt.key.family == AF_INET {
        let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN)?;
        let new4 = [addr[0], addr[1], addr[2], addr[3]];
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let field = if side == Side::Source {
                &mut (*ip).src
            } else {
                &mut (*ip).dst
            };
            let old4 = *field;
            *field = new4;
            (*ip).check = csum::replace((*ip).check, &old4, &new4);
            l4_check = csum::replace(l4_check, &old4, &new4);
        }
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN)?;
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let field = if side == Side::Source {
                &mut (*ip).src
            } else {
                &mut (*ip).dst
            };
            let mut old = [0u8; 16];
            copy(&mut old, field);
            copy(field, addr);
            l4_check = csum::replace(l4_check, &old, addr);
        }
    }
    l4_check = csum::replace(l4_check, &old_port, &port);
    if !pkt.is_tcp() && l4_check == [0, 0] {
        l4_check = [0xff, 0xff];
    }
    // SAFETY: bounds checked by ptr_at above; no tail/head change since.
    unsafe {
        *port_ptr = port;
        if l4_has_check {
            *check_ptr = l4_check;
        }
    }
    Some(())
}

/// A packet from a NAT real back to its client: restore the VIP as source and
/// route it to the client. Anything else that matched no service passes.
#[inline(always)]
fn nat_reply(ctx: &XdpContext, scratch: &mut Scratch) -> u32 {
    let pkt = &scratch.pkt;
    let nat_enabled = CONFIG.get(0).map(|c| c.nat_enabled != 0).unwrap_or(false);
    let nat = if nat_enabled {
        NAT_REVERSE.get_ptr(&pkt.key)
    } else {
        None
    };
    let Some(nat) = nat else {
        count_global(global_stat::PASS_NO_SERVICE);
        return xdp_action::XDP_PASS;
    };
    // SAFETY: map value; copied out at once.
    let nat: NatValue = unsafe { *nat };
    if pkt.closes_flow() {
        // The real closed: the client-side flow goes inactive too.
        scratch.other_key = FlowKey {
            src: pkt.key.dst,
            dst: nat.vip,
            sport_be: pkt.key.dport_be,
            dport_be: nat.vport_be,
            proto: pkt.key.proto,
            family: pkt.key.family,
            _pad: [0; 2],
        };
        if let Some(flow) = FLOWS.get_ptr_mut(&scratch.other_key) {
            close_flow(flow);
        }
    }
    if rewrite(ctx, &scratch.pkt, Side::Source, &nat.vip, nat.vport_be).is_none() {
        return xdp_action::XDP_DROP;
    }
    route_to_client(ctx, scratch, &nat.vip)
}

/// Looks the client up in the kernel's FIB and neighbour tables and sends
/// the packet there.
#[inline(always)]
fn route_to_client(ctx: &XdpContext, scratch: &mut Scratch, vip: &[u8; 16]) -> u32 {
    let pkt = &scratch.pkt;
    let params = &mut scratch.fib;
    // Zeroed word by word: `zeroed()` would be a call to a byte-loop memset.
    let slots = params as *mut bpf_fib_lookup as *mut u32;
    for i in 0..size_of::<bpf_fib_lookup>() / 4 {
        // SAFETY: a u32-aligned C struct of integers; all-zero is valid.
        unsafe { core::ptr::write_volatile(slots.add(i), 0) };
    }
    params.family = pkt.key.family;
    params.l4_protocol = pkt.key.proto;
    // Routes here do not depend on ports; the source port stays unset.
    params.sport = 0;
    params.dport = pkt.key.dport_be;
    params.ifindex = ctx.ingress_ifindex() as u32;
    if pkt.key.family == AF_INET {
        params.__bindgen_anon_1.tot_len = (ctx.data_end() - ctx.data() - ETH_HLEN) as u16;
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([vip[0], vip[1], vip[2], vip[3]]);
        let dst = &pkt.key.dst;
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    } else {
        params.__bindgen_anon_3.ipv6_src = words(vip);
        params.__bindgen_anon_4.ipv6_dst = words(&pkt.key.dst);
    }
    // SAFETY: helper on our own context with a stack struct of the right size.
    let rc = unsafe {
        fib_lookup(
            ctx.ctx as *mut _,
            params,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc != 0 {
        count_global(global_stat::DROP_NAT_NO_ROUTE);
        return xdp_action::XDP_DROP;
    }
    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        copy(&mut (*eth).src, &params.smac);
        copy(&mut (*eth).dst, &params.dmac);
    }
    count_global(global_stat::NAT_REPLY);
    if params.ifindex == ctx.ingress_ifindex() as u32 {
        xdp_action::XDP_TX
    } else {
        // SAFETY: helper call with an ifindex the FIB returned.
        unsafe { bpf_redirect(params.ifindex, 0) as u32 }
    }
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]),
        u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]),
        u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]]),
        u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]),
    ]
}
