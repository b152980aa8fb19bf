//! Telling the link that an address moved: a gratuitous ARP (request and
//! reply, sender = target = the address) for IPv4, an unsolicited neighbour
//! advertisement with the override flag to all nodes for IPv6. Peers that
//! cached the old node's MAC switch at once instead of after their
//! neighbour entry goes stale.
use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const ETH_P_ARP: u16 = 0x0806;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Announces `addr` on the interface `ifindex` whose MAC is `mac`.
pub fn announce(ifindex: u32, mac: [u8; 6], addr: IpAddr) -> io::Result<()> {
    match addr {
        IpAddr::V4(v4) => {
            // Both forms: some stacks only update from one of them.
            gratuitous_arp(ifindex, mac, v4, 1)?;
            gratuitous_arp(ifindex, mac, v4, 2)
        }
        IpAddr::V6(v6) => unsolicited_na(ifindex, mac, v6),
    }
}

/// The Ethernet frame of a gratuitous ARP (`op` 1 request, 2 reply).
pub fn arp_frame(mac: [u8; 6], addr: Ipv4Addr, op: u16) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&addr.octets());
    // Target MAC: zero in a request, broadcast in a reply (RFC 5227 style).
    if op == 2 {
        f[32..38].copy_from_slice(&[0xff; 6]);
    }
    f[38..42].copy_from_slice(&addr.octets());
    f
}

fn gratuitous_arp(ifindex: u32, mac: [u8; 6], addr: Ipv4Addr, op: u16) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(ETH_P_ARP.to_be()),
        ))?)
    };
    let frame = arp_frame(mac, addr, op);
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = ifindex as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: frame and address are valid for the lengths given.
    check(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        ) as libc::c_int
    })?;
    Ok(())
}

/// ICMPv6 neighbour advertisement: override flag, target link-layer
/// address option. The kernel fills in the checksum on ICMPv6 sockets.
pub fn na_message(mac: [u8; 6], addr: Ipv6Addr) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[0] = 136; // neighbour advertisement
    m[4] = 0x20; // override (not router, not solicited)
    m[8..24].copy_from_slice(&addr.octets());
    m[24] = 2; // target link-layer address
    m[25] = 1; // 8 octets
    m[26..32].copy_from_slice(&mac);
    m
}

fn unsolicited_na(ifindex: u32, mac: [u8; 6], addr: Ipv6Addr) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMPV6,
        ))?)
    };
    // RFC 4861: hop limit 255, or receivers drop it.
    let hops: libc::c_int = 255;
    let index = ifindex as libc::c_int;
    for (option, value) in [
        (libc::IPV6_MULTICAST_HOPS, &hops),
        (libc::IPV6_MULTICAST_IF, &index),
    ] {
        // SAFETY: an int option with its size.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_IPV6,
                option,
                (value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            )
        })?;
    }
    let message = na_message(mac, addr);
    // SAFETY: sockaddr_in6 is plain data.
    let mut to: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    to.sin6_family = libc::AF_INET6 as u16;
    to.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    to.sin6_scope_id = ifindex;
    // SAFETY: message and address are valid for the lengths given.
    check(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            (&to as *const libc::sockaddr_in6).cast(),
            size_of::<libc::sockaddr_in6>() as u32,
        ) as libc::c_int
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mac = [2, 0, 0, 0, 0, 9];
        let f = arp_frame(mac, Ipv4Addr::new(198, 18, 9, 100), 1);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[28..32], &f[38..42]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(
            &arp_frame(mac, Ipv4Addr::new(198, 18, 9, 100), 2)[32..38],
            &[0xff; 6]
        );
        let m = na_message(mac, "2001:db8:9::100".parse().unwrap());
        assert_eq!((m[0], m[4], m[24], m[25]), (136, 0x20, 2, 1));
        assert_eq!(&m[26..32], &mac);
    }
}
