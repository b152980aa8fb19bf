//! `ADDRESS/PREFIX` networks in configs: who may send a PROXY header, name
//! the client in XCLIENT or ID, or log in as the master user.
use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a network like 198.18.0.0/24 or 2001:db8::/32")]
pub struct NetworkError(String);

/// One network; written and read as text (`"198.18.0.0/24"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Self, NetworkError> {
        let bad = || NetworkError(text.to_string());
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in it; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether any of `networks` holds `ip`.
pub fn any_contains(networks: &[Network], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(ip))
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for Network {
    type Error = NetworkError;
    fn try_from(text: String) -> Result<Self, NetworkError> {
        Self::parse(&text)
    }
}

impl From<Network> for String {
    fn from(n: Network) -> String {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_contain_and_print() {
        let n = Network::parse("198.18.0.0/15").unwrap();
        assert!(n.contains("198.19.255.1".parse().unwrap()));
        assert!(!n.contains("198.20.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:198.18.0.9".parse().unwrap()));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("198.18.0.1".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("203.0.113.1".parse().unwrap())
        );
        for bad in ["198.18.0.0", "198.18.0.0/33", "x/8", "2001:db8::/129"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(n.to_string(), "198.18.0.0/15");
    }
}
