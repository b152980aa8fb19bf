//! A TCP RST answered from XDP to a client whose real went down, so the
//! client reconnects at once (RFC 9293 §3.10.7.1 reset generation).
use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use fulmar_common::{AF_INET, IPPROTO_TCP};

use crate::{
    csum,
    headers::{
        ETH_HLEN, EthHdr, IPV6_HLEN, Ipv4Hdr, Ipv6Hdr, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TcpHdr,
        ptr_at,
    },
};

const TCP_HLEN: usize = 20;
const IPV4_HLEN: usize = 20;

/// Turns the packet in `ctx` (a TCP segment from the client) into the RST
/// that answers it and returns XDP_TX. Segments with IPv4 options are dropped
/// instead (the reply would have to mirror them).
#[inline(always)]
pub fn reply(ctx: &XdpContext, family: u8, l4_off: usize) -> u32 {
    let ip_hlen = if family == AF_INET {
        IPV4_HLEN
    } else {
        IPV6_HLEN
    };
    if l4_off != ETH_HLEN + ip_hlen {
        return xdp_action::XDP_DROP;
    }
    let Some(th) = ptr_at::<TcpHdr>(ctx, l4_off) else {
        return xdp_action::XDP_DROP;
    };
    // Everything the reply needs from the segment, before the tail moves.
    // SAFETY: bounds checked by ptr_at.
    let (sport, dport, seq, ack_seq, flags, doff) = unsafe {
        (
            (*th).sport,
            (*th).dport,
            u32::from_be_bytes((*th).seq),
            u32::from_be_bytes((*th).ack_seq),
            (*th).flags,
            ((*th).doff_res >> 4) as usize * 4,
        )
    };
    let ip_payload = match ip_payload_len(ctx, family) {
        Some(len) => len,
        None => return xdp_action::XDP_DROP,
    };
    let mut seg_len = ip_payload.saturating_sub(doff) as u32;
    if flags & TCP_SYN != 0 {
        seg_len += 1;
    }
    if flags & TCP_FIN != 0 {
        seg_len += 1;
    }

    let new_len = (l4_off + TCP_HLEN) as i32;
    let old_len = (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: helper call on our own context; shrinking only.
    if new_len != old_len && unsafe { bpf_xdp_adjust_tail(ctx.ctx, new_len - old_len) } != 0 {
        return xdp_action::XDP_DROP;
    }

    let (rst_seq, rst_ack, rst_flags) = if flags & TCP_ACK != 0 {
        (ack_seq, 0, TCP_RST)
    } else {
        (0, seq.wrapping_add(seg_len), TCP_RST | TCP_ACK)
    };
    let mut tcp = [0u8; TCP_HLEN];
    tcp[0..2].copy_from_slice(&dport);
    tcp[2..4].copy_from_slice(&sport);
    tcp[4..8].copy_from_slice(&rst_seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&rst_ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = rst_flags;

    let Some(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe {
        let src = (*eth).src;
        (*eth).src = (*eth).dst;
        (*eth).dst = src;
    }

    let pseudo_sum = if family == AF_INET {
        let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN) else {
            return xdp_action::XDP_DROP;
        };
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let src = (*ip).src;
            let dst = (*ip).dst;
            let mut hdr = [0u8; IPV4_HLEN];
            hdr[0] = 0x45;
            hdr[2..4].copy_from_slice(&((IPV4_HLEN + TCP_HLEN) as u16).to_be_bytes());
            hdr[6] = 0x40; // DF
            hdr[8] = 64;
            hdr[9] = IPPROTO_TCP;
            hdr[12..16].copy_from_slice(&dst);
            hdr[16..20].copy_from_slice(&src);
            let check = !csum::fold(csum::add_words(0, &hdr));
            hdr[10..12].copy_from_slice(&check.to_be_bytes());
            *(ip as *mut [u8; IPV4_HLEN]) = hdr;
            let sum = csum::add_words(csum::add_words(0, &dst), &src);
            sum + IPPROTO_TCP as u64 + TCP_HLEN as u64
        }
    } else {
        let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN) else {
            return xdp_action::XDP_DROP;
        };
        // SAFETY: bounds checked by ptr_at.
        unsafe {
            let src = (*ip).src;
            let dst = (*ip).dst;
            (*ip).src = dst;
            (*ip).dst = src;
            (*ip).payload_len = (TCP_HLEN as u16).to_be_bytes();
            (*ip).hop_limit = 64;
            let sum = csum::add_words(csum::add_words(0, &dst), &src);
            sum + IPPROTO_TCP as u64 + TCP_HLEN as u64
        }
    };
    let check = !csum::fold(csum::add_words(pseudo_sum, &tcp));
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    let Some(th) = ptr_at::<[u8; TCP_HLEN]>(ctx, l4_off) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: bounds checked by ptr_at.
    unsafe { *th = tcp };
    xdp_action::XDP_TX
}

/// Bytes after the IP header, as the header says.
#[inline(always)]
fn ip_payload_len(ctx: &XdpContext, family: u8) -> Option<usize> {
    if family == AF_INET {
        let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_HLEN)?;
        // SAFETY: bounds checked by ptr_at.
        let tot = u16::from_be_bytes(unsafe { (*ip).tot_len }) as usize;
        Some(tot.saturating_sub(IPV4_HLEN))
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_HLEN)?;
        // SAFETY: bounds checked by ptr_at.
        Some(u16::from_be_bytes(unsafe { (*ip).payload_len }) as usize)
    }
}
