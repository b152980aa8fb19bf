//! A service instance as the cluster config describes it.
//!
//! ```toml
//! [instance.mail1]
//! address = "198.51.100.21/24"
//! interface = "eth0"
//! volume = "/srv/fulmar/volumes/mail1"     # disk.img + access/NODE.img
//! mountpoint = "/srv/fulmar/mail1"
//! start = ["/usr/sbin/dovecot", "-F", "-c", "/srv/fulmar/mail1/dovecot.conf"]
//! probe_ports = [143, 24]
//! run_dirs = ["run"]      # pid files and sockets there are the last holder's
//! allowed = ["node1", "node2", "node3"]   # empty: every node
//! preferred = ["node1"]
//! sticky = true          # stay where it runs when node1 comes back
//! ```
use std::{net::IpAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// `ADDR/PREFIX`: the instance's virtual IP (IPv4 or IPv6).
    pub address: String,
    /// The interface the address lives on.
    pub interface: String,
    /// The volume directory: `disk.img` and one access path per node.
    pub volume: PathBuf,
    pub mountpoint: PathBuf,
    /// The service's command line; it runs in the foreground. It gets
    /// FULMAR_INSTANCE, FULMAR_GENERATION and FULMAR_MOUNT.
    pub start: Vec<String>,
    /// Stops it (e.g. `systemctl stop UNIT`); SIGTERM when unset.
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// TCP ports on the instance address that must answer.
    #[serde(default)]
    pub probe_ports: Vec<u16>,
    /// The service's run directories on the volume (relative to the
    /// mountpoint). Pid files and sockets there are removed before every
    /// start: the previous holder was stopped or fenced, so none can belong
    /// to a live process, and a pid in a stale file may name an unrelated
    /// process here (Dovecot then refuses to start: "already running").
    #[serde(default)]
    pub run_dirs: Vec<PathBuf>,
    /// How long the service may take to answer its probe after starting.
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    pub start_timeout: Duration,
    /// How long it may take to stop before SIGKILL.
    #[serde(default = "default_stop_timeout", with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Nodes that may run it; empty means every node.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// Nodes it goes to first, in order.
    #[serde(default)]
    pub preferred: Vec<String>,
    /// Stay on the node it runs on when a preferred node comes back (no
    /// automatic failback, which would cut sessions a second time).
    #[serde(default = "default_true")]
    pub sticky: bool,
}

fn default_true() -> bool {
    true
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_stop_timeout() -> Duration {
    Duration::from_secs(20)
}

/// An instance `address` that is not `ADDR/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address {0:?} needs a /prefix")]
    NoPrefix(String),
    #[error("address {0:?} is not an IP address")]
    NotAnAddress(String),
    #[error("prefix /{prefix} does not fit {addr}")]
    Prefix { prefix: String, addr: IpAddr },
}

impl From<AddressError> for String {
    fn from(e: AddressError) -> String {
        e.to_string()
    }
}

impl InstanceSpec {
    /// The address and prefix length.
    pub fn vip(&self) -> Result<(IpAddr, u8), AddressError> {
        let (addr, prefix) = self
            .address
            .split_once('/')
            .ok_or_else(|| AddressError::NoPrefix(self.address.clone()))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| AddressError::NotAnAddress(self.address.clone()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(p) if p <= max => Ok((addr, p)),
            _ => Err(AddressError::Prefix {
                prefix: prefix.into(),
                addr,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(address: &str) -> InstanceSpec {
        InstanceSpec {
            address: address.into(),
            interface: "eth0".into(),
            volume: "/v".into(),
            mountpoint: "/m".into(),
            start: vec!["true".into()],
            stop: None,
            probe_ports: vec![],
            run_dirs: vec![],
            start_timeout: default_start_timeout(),
            stop_timeout: default_stop_timeout(),
            allowed: vec![],
            preferred: vec![],
            sticky: true,
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(spec("198.18.9.100/24").vip().unwrap().1, 24);
        assert_eq!(spec("2001:db8:9::100/64").vip().unwrap().1, 64);
        assert!(
            spec("198.18.9.100")
                .vip()
                .unwrap_err()
                .to_string()
                .contains("/prefix")
        );
        assert!(spec("198.18.9.100/33").vip().is_err());
        assert!(spec("mail1/24").vip().is_err());
    }
}
