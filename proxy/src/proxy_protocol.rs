//! PROXY protocol v2 (haproxy.org/download/2.9/doc/proxy-protocol.txt):
//! the header a NAT-mode balancer or another proxy puts before the stream,
//! carrying the real client address.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tokio::io::{AsyncRead, AsyncReadExt};

pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Reads the header; returns the source it names (None for LOCAL, e.g.
/// a balancer's health check, or an address family we do not route).
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<SocketAddr>> {
    let mut head = [0u8; 16];
    r.read_exact(&mut head).await?;
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    parse(&head, &body)
}

fn bad(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("PROXY v2 header: {why}"),
    )
}

pub fn parse(head: &[u8; 16], body: &[u8]) -> io::Result<Option<SocketAddr>> {
    if head[..12] != SIGNATURE {
        return Err(bad("missing signature"));
    }
    if head[12] >> 4 != 2 {
        return Err(bad("not version 2"));
    }
    match head[12] & 0x0f {
        0 => return Ok(None), // LOCAL
        1 => {}
        _ => return Err(bad("unknown command")),
    }
    match head[13] {
        0x11 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        0x21 if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        0x11 | 0x21 => Err(bad("address block too short")),
        _ => Ok(None),
    }
}

/// Builds a header (tests and the bench use it as a client would).
pub fn header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => panic!("mixed address families"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_bad_input() {
        let src: SocketAddr = "198.18.0.10:40000".parse().unwrap();
        let dst: SocketAddr = "198.18.1.100:143".parse().unwrap();
        let bytes = header(src, dst);
        assert_eq!(read_header(&mut &bytes[..]).await.unwrap(), Some(src));
        let src6: SocketAddr = "[2001:db8::10]:40000".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8:1::100]:993".parse().unwrap();
        assert_eq!(
            read_header(&mut &header(src6, dst6)[..]).await.unwrap(),
            Some(src6)
        );
        let mut wrong = bytes.clone();
        wrong[3] = b'x';
        assert!(read_header(&mut &wrong[..]).await.is_err());
        let truncated = &bytes[..20];
        assert!(read_header(&mut &truncated[..]).await.is_err());
        let mut local = bytes[..16].to_vec();
        local[12] = 0x20;
        local[14] = 0;
        local[15] = 0;
        assert_eq!(read_header(&mut &local[..]).await.unwrap(), None);
    }
}
