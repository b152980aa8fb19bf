//! Wire headers as byte arrays (packets are only 2-byte aligned) and the one
//! bounds-checked accessor every packet read goes through.
use aya_ebpf::programs::XdpContext;
use core::mem::size_of;

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const IPV6_HLEN: usize = 40;
/// The largest offset `ptr_at` accepts.
pub const MAX_OFFSET: usize = 4096;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: [u8; 2],
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub ver_tc_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_hdr: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

#[repr(C)]
pub struct TcpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub seq: [u8; 4],
    pub ack_seq: [u8; 4],
    pub doff_res: u8,
    pub flags: u8,
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urg_ptr: [u8; 2],
}

#[repr(C)]
pub struct UdpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}

/// A pointer to a `T` at `offset` in the packet, or `None` when the packet
/// ends before it.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    // Offsets read back from memory are unbounded to the verifier; this
    // bound (more than any header chain or sweep batch needs) restores one.
    if offset > MAX_OFFSET {
        return None;
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

#[inline(always)]
pub fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Copies an `N`-byte field. A plain array assignment may become a call to
/// aya-ebpf's byte-at-a-time `memmove`; `copy_nonoverlapping` is a memcpy,
/// which bpf-linker expands inline into loads and stores.
///
/// # Safety
/// Both pointers valid for `N` bytes (bounds checked) and not overlapping.
#[inline(always)]
pub unsafe fn copy<const N: usize>(dst: *mut [u8; N], src: *const [u8; N]) {
    // SAFETY: the caller's promise.
    unsafe { core::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, N) }
}

/// An IPv4 address into a 16-byte key field, the rest zeroed, without the
/// `memset` call LLVM would make of zeroing the whole field.
#[inline(always)]
pub fn set_v4(dst: &mut [u8; 16], addr: &[u8; 4]) {
    let words = dst.as_mut_ptr() as *mut u32;
    // SAFETY: 16 bytes are four u32 slots; volatile keeps them four stores.
    unsafe {
        core::ptr::write_unaligned(words, u32::from_ne_bytes(*addr));
        for i in 1..4 {
            core::ptr::write_volatile(words.add(i), 0);
        }
    }
}
