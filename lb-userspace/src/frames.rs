//! Packet fixtures for BPF_PROG_TEST_RUN (tests and `cargo xtask bench`): Ethernet + IPv4/IPv6 + TCP/UDP with correct
//! checksums, and a parser that verifies them on the way out.
use std::net::IpAddr;

pub const CLIENT_MAC: [u8; 6] = [2, 0xc1, 0, 0, 0, 1];
pub const LB_MAC: [u8; 6] = [2, 0x1b, 0, 0, 0, 1];

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[derive(Clone, Debug)]
pub struct Segment {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// 6 = TCP, 17 = UDP.
    pub proto: u8,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: Vec<u8>,
}

impl Segment {
    pub fn tcp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            proto: 6,
            flags,
            seq: 1000,
            ack: 0,
            payload: Vec::new(),
        }
    }
    pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            proto: 17,
            flags: 0,
            seq: 0,
            ack: 0,
            payload: b"ping".to_vec(),
        }
    }
}

fn sum16(data: &[u8], mut sum: u32) -> u32 {
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            (chunk[0] as u16) << 8
        };
        sum += word as u32;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut sum = sum16(&addr_bytes(src), 0);
    sum = sum16(&addr_bytes(dst), sum);
    sum + proto as u32 + len as u32
}

/// A full frame from the client MAC to the balancer MAC.
pub fn frame(seg: &Segment) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&seg.sport.to_be_bytes());
    l4.extend_from_slice(&seg.dport.to_be_bytes());
    if seg.proto == 6 {
        l4.extend_from_slice(&seg.seq.to_be_bytes());
        l4.extend_from_slice(&seg.ack.to_be_bytes());
        l4.push(5 << 4);
        l4.push(seg.flags);
        l4.extend_from_slice(&65535u16.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 0]);
    } else {
        l4.extend_from_slice(&((8 + seg.payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(&seg.payload);
    let check_at = if seg.proto == 6 { 16 } else { 6 };
    let mut check = !fold(sum16(
        &l4,
        pseudo_sum(seg.src, seg.dst, seg.proto, l4.len()),
    ));
    if seg.proto == 17 && check == 0 {
        check = 0xffff;
    }
    l4[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());

    let mut out = Vec::new();
    out.extend_from_slice(&LB_MAC);
    out.extend_from_slice(&CLIENT_MAC);
    match (seg.src, seg.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 1, 0x40, 0, 64, seg.proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = !fold(sum16(&ip, 0));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&0x86DDu16.to_be_bytes());
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            out.extend_from_slice(&[seg.proto, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    out.extend_from_slice(&l4);
    out
}

/// A frame as the program left it, with its checksums verified.
#[derive(Debug)]
pub struct Seen {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub seg: Segment,
}

/// Parses an Ethernet/IP/TCP|UDP frame and checks every checksum in it.
pub fn parse(frame: &[u8]) -> Result<Seen, String> {
    let dst_mac: [u8; 6] = frame[0..6].try_into().unwrap();
    let src_mac: [u8; 6] = frame[6..12].try_into().unwrap();
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (src, dst, proto, l4) = match ethertype {
        0x0800 => {
            let ip = &frame[14..34];
            if fold(sum16(ip, 0)) != 0xffff {
                return Err("bad IPv4 header checksum".into());
            }
            let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            let src = IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap());
            let dst = IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap());
            (src, dst, ip[9], &frame[34..14 + tot])
        }
        0x86DD => {
            let ip = &frame[14..54];
            let plen = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            let src = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
            let dst = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
            (src, dst, ip[6], &frame[54..54 + plen])
        }
        other => return Err(format!("ethertype {other:#x}")),
    };
    let udp_no_check = proto == 17 && l4[6..8] == [0, 0] && matches!(src, IpAddr::V4(_));
    if !udp_no_check && fold(sum16(l4, pseudo_sum(src, dst, proto, l4.len()))) != 0xffff {
        return Err(format!(
            "bad {} checksum",
            if proto == 6 { "TCP" } else { "UDP" }
        ));
    }
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    let (flags, seq, ack, payload) = if proto == 6 {
        let doff = (l4[12] >> 4) as usize * 4;
        (
            l4[13],
            u32::from_be_bytes(l4[4..8].try_into().unwrap()),
            u32::from_be_bytes(l4[8..12].try_into().unwrap()),
            l4[doff..].to_vec(),
        )
    } else {
        (0, 0, 0, l4[8..].to_vec())
    };
    Ok(Seen {
        dst_mac,
        src_mac,
        seg: Segment {
            src,
            dst,
            sport,
            dport,
            proto,
            flags,
            seq,
            ack,
            payload,
        },
    })
}
