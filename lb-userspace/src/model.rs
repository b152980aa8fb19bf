//! The balancer's desired configuration: virtual services, their reals and
//! each real's health check, as the operator states it. The daemon turns it
//! into map contents (see `effective`); `save` prints it as batch lines.
use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::services::{Forwarding, RealState, Scheduler};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => fulmar_common::IPPROTO_TCP,
            Proto::Udp => fulmar_common::IPPROTO_UDP,
        }
    }
}

/// A virtual service's identity: `VIP:PORT/PROTO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAddr {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

impl ServiceAddr {
    /// The service's key in the `SERVICES` map.
    pub fn key(&self) -> fulmar_common::ServiceKey {
        crate::services::service_key(self.vip, self.port, self.proto.number())
    }
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "{}/{proto}", SocketAddr::new(self.vip, self.port))
    }
}

impl FromStr for ServiceAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, proto) = match s.rsplit_once('/') {
            Some((addr, "tcp")) => (addr, Proto::Tcp),
            Some((addr, "udp")) => (addr, Proto::Udp),
            Some((_, other)) => return Err(format!("protocol {other:?}: use tcp or udp")),
            None => (s, Proto::Tcp),
        };
        let sock: SocketAddr = addr.parse().map_err(|_| {
            format!("service {s:?}: write VIP:PORT[/tcp|udp], e.g. 198.18.1.100:143 or [2001:db8::1]:143")
        })?;
        if sock.port() == 0 {
            return Err(format!("service {s:?}: port 0"));
        }
        Ok(Self {
            vip: sock.ip(),
            port: sock.port(),
            proto,
        })
    }
}

impl Serialize for ServiceAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServiceAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How a real's health is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// No probing: the real counts as healthy.
    None,
    /// A TCP connect.
    Tcp,
    /// `220` greeting, then EHLO answered with 250, then QUIT.
    Smtp,
    /// `* OK` greeting, then LOGOUT.
    Imap,
    /// `+OK` greeting, then QUIT.
    Pop3,
}

impl CheckKind {
    pub const NAMES: [&'static str; 5] = ["none", "tcp", "smtp", "imap", "pop3"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::None, Self::Tcp, Self::Smtp, Self::Imap, Self::Pop3]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The probe a mail port calls for, and whether it speaks TLS at once.
    pub fn for_port(port: u16) -> (Self, bool) {
        match port {
            25 | 587 => (Self::Smtp, false),
            465 => (Self::Smtp, true),
            143 => (Self::Imap, false),
            993 => (Self::Imap, true),
            110 => (Self::Pop3, false),
            995 => (Self::Pop3, true),
            _ => (Self::Tcp, false),
        }
    }
}

/// A real's health check, every value resolved (defaults filled in).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckConf {
    pub kind: CheckKind,
    /// Implicit TLS (the handshake is part of the check).
    pub tls: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes that bring a down real up.
    pub rise: u32,
    /// Consecutive failures that take an up real down.
    pub fall: u32,
    /// A recovered real's weight ramps linearly over this period (0: off).
    #[serde(with = "humantime_serde")]
    pub slow_start: Duration,
    /// TCP port of the real's agent (HAProxy agent-check convention).
    pub agent_port: Option<u16>,
}

/// A real server of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealConf {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u16,
    /// The operator's state; health can only take an `up` real down.
    pub state: RealState,
    /// A MAC fixed by the operator instead of resolved by neighbour discovery.
    pub mac: Option<[u8; 6]>,
    pub check: CheckConf,
}

impl RealConf {
    pub fn endpoint(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConf {
    pub scheduler: Scheduler,
    pub forwarding: Forwarding,
    pub reset_on_down: bool,
    /// In the order they were added: slots follow it.
    pub reals: Vec<RealConf>,
}

impl ServiceConf {
    pub fn real(&self, endpoint: SocketAddr) -> Option<&RealConf> {
        self.reals.iter().find(|r| r.endpoint() == endpoint)
    }
}

/// Everything the operator configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub services: BTreeMap<ServiceAddr, ServiceConf>,
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2))
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

/// `198.18.1.11:143`, `[2001:db8::11]:143`; the port is left out when it
/// equals the service's.
pub fn format_real(addr: IpAddr, port: u16, service_port: u16) -> String {
    if port == service_port {
        addr.to_string()
    } else {
        SocketAddr::new(addr, port).to_string()
    }
}

fn on_off(v: bool) -> &'static str {
    if v { "on" } else { "off" }
}

/// A duration as one word of the command grammar: humantime writes
/// `3m 18s`, which would read back as two words.
fn duration_word(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

pub fn scheduler_name(s: Scheduler) -> &'static str {
    match s {
        Scheduler::Lc => "lc",
        Scheduler::Wlc => "wlc",
    }
}

pub fn forwarding_name(f: Forwarding) -> &'static str {
    match f {
        Forwarding::DirectRouting => "dr",
        Forwarding::Nat => "nat",
    }
}

pub fn state_name(s: RealState) -> &'static str {
    match s {
        RealState::Up => "up",
        RealState::Down => "down",
        RealState::Drain => "drain",
    }
}

impl Desired {
    /// The configuration as batch lines that `-batch` restores exactly:
    /// every value is written out, so the result does not depend on the
    /// defaults of the daemon that reads it.
    pub fn to_batch(&self) -> String {
        let mut out = String::from("service flush\n");
        for (addr, svc) in &self.services {
            out += &format!(
                "service add {addr} scheduler {} forward {} reset-on-down {}\n",
                scheduler_name(svc.scheduler),
                forwarding_name(svc.forwarding),
                on_off(svc.reset_on_down)
            );
            for real in &svc.reals {
                let c = &real.check;
                out += &format!(
                    "real add {addr} {} weight {} state {}",
                    format_real(real.addr, real.port, addr.port),
                    real.weight,
                    state_name(real.state)
                );
                if let Some(mac) = &real.mac {
                    out += &format!(" mac {}", format_mac(mac));
                }
                out += &format!(
                    " check {} tls {} interval {} timeout {} rise {} fall {} slow-start {}",
                    c.kind.name(),
                    on_off(c.tls),
                    duration_word(c.interval),
                    duration_word(c.timeout),
                    c.rise,
                    c.fall,
                    duration_word(c.slow_start)
                );
                if let Some(port) = c.agent_port {
                    out += &format!(" agent {port}");
                }
                out.push('\n');
            }
        }
        out
    }

    /// Every VIP a service uses.
    pub fn vips(&self) -> std::collections::BTreeSet<IpAddr> {
        self.services.keys().map(|a| a.vip).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_addresses_parse_and_print_back() {
        for text in [
            "198.18.1.100:143/tcp",
            "[2001:db8:1::100]:993/tcp",
            "198.18.1.100:53/udp",
        ] {
            let addr: ServiceAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        let bare: ServiceAddr = "198.18.1.100:25".parse().unwrap();
        assert_eq!(bare.proto, Proto::Tcp);
        for bad in [
            "198.18.1.100",
            "198.18.1.100:0",
            "x:25",
            "198.18.1.100:25/sctp",
        ] {
            assert!(bad.parse::<ServiceAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_one_word_that_reads_back() {
        use std::time::Duration;
        // The fuzzer's find: a slow start of 198 s was written `3m 18s`.
        for d in [
            Duration::from_secs(198),
            Duration::from_millis(3_723_004),
            Duration::from_millis(250),
            Duration::ZERO,
        ] {
            let word = duration_word(d);
            assert!(!word.contains(' '), "{word}");
            assert_eq!(humantime::parse_duration(&word).unwrap(), d, "{word}");
        }
    }

    #[test]
    fn macs_parse_strictly() {
        assert_eq!(
            parse_mac("02:00:00:00:0a:ff"),
            Some([2, 0, 0, 0, 0x0a, 0xff])
        );
        for bad in [
            "02:00:00:00:0a",
            "2:00:00:00:0a:ff",
            "02:00:00:00:0a:ff:01",
            "zz:00:00:00:00:00",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
