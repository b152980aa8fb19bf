//! `/etc/fulmar/lb.toml`: how the balancer daemon runs. The services
//! themselves live in the services file, which `fulmar` edits.
use std::{path::PathBuf, time::Duration};

use fulmar_daemon::config::{self as config_file, ConfigError};
use serde::{Deserialize, Serialize};

use crate::command::CheckDefaults;

pub const DEFAULT_CONFIG: &str = "/etc/fulmar/lb.toml";
pub const DEFAULT_SOCKET: &str = "/run/fulmar/lb.sock";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeChoice {
    /// Native, and generic where the driver has no XDP support.
    Auto,
    Native,
    Generic,
}

/// Bounds of `flow_capacity`. Both flow maps are sized by it and the NAT
/// map is an LRU, which the kernel preallocates: at about 110 bytes an
/// entry, 2^26 flows already hold 7 GiB of kernel memory, and a larger
/// value would fail at start on any balancer, not at `--check`.
pub const MIN_FLOWS: u32 = 1024;
pub const MAX_FLOWS: u32 = 1 << 26;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// The interface clients' packets arrive on; it also gets the VIPs.
    pub interface: String,
    pub mode: ModeChoice,
    /// bpffs directory of the pinned maps, program and link.
    pub pin_dir: PathBuf,
    /// Flow-table capacity (fixed when the maps are first created).
    pub flow_capacity: u32,
    /// The services, reals and checks; rewritten on every change.
    pub services_file: PathBuf,
    pub control_socket: PathBuf,
    /// Prometheus text metrics at `GET /metrics` (off when absent).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Add each service's VIP to `interface` (and remove it with the last service).
    pub manage_vips: bool,
    /// How often idle flows are expired.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Above this share of the flow table the oldest flows are evicted.
    pub pressure_percent: u32,
    pub timeouts: Timeouts,
    pub health: CheckDefaults,
}

/// Flow idle timeouts (as IPVS's `--set tcp tcpfin udp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    #[serde(with = "humantime_serde")]
    pub tcp_syn: Duration,
    #[serde(with = "humantime_serde")]
    pub tcp_established: Duration,
    #[serde(with = "humantime_serde")]
    pub tcp_closing: Duration,
    #[serde(with = "humantime_serde")]
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        // The data plane's own defaults (see fulmar_common::Config).
        let c = fulmar_common::Config::default();
        Self {
            tcp_syn: Duration::from_nanos(c.tcp_syn_ns),
            tcp_established: Duration::from_nanos(c.tcp_established_ns),
            tcp_closing: Duration::from_nanos(c.tcp_closing_ns),
            udp: Duration::from_nanos(c.udp_ns),
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            interface: "eth0".into(),
            mode: ModeChoice::Auto,
            pin_dir: crate::PinLayout::default().root,
            // A million concurrent sessions: ~140 MiB of flow table.
            flow_capacity: 1 << 20,
            services_file: "/var/lib/fulmar/lb/services.conf".into(),
            control_socket: DEFAULT_SOCKET.into(),
            metrics_address: None,
            manage_vips: true,
            // Idle timeouts are minutes long; a 5 s sweep is precise enough.
            sweep_interval: Duration::from_secs(5),
            // Evict before SYNs start being dropped for a full table.
            pressure_percent: 90,
            timeouts: Timeouts::default(),
            health: CheckDefaults::default(),
        }
    }
}

impl DaemonConfig {
    /// Parses and checks a config file's text, naming the offending key.
    pub fn parse_and_validate(text: &str) -> Result<Self, ConfigError> {
        let config: Self = config_file::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// What serde cannot check, naming the offending key.
    fn validate(&self) -> Result<(), String> {
        let bad = |key: &str, why: &str| Err(format!("{key}: {why}"));
        if self.interface.is_empty() || self.interface.len() > 15 {
            return bad("interface", "an interface name of 1-15 characters");
        }
        if !(MIN_FLOWS..=MAX_FLOWS).contains(&self.flow_capacity) {
            return bad(
                "flow_capacity",
                &format!("between {MIN_FLOWS} and {MAX_FLOWS} (2^26)"),
            );
        }
        if !(50..=99).contains(&self.pressure_percent) {
            return bad("pressure_percent", "between 50 and 99");
        }
        if self.sweep_interval.is_zero() {
            return bad("sweep_interval", "above zero");
        }
        let h = &self.health;
        if h.interval.is_zero() || h.timeout.is_zero() {
            return bad("health.interval / health.timeout", "above zero");
        }
        if h.rise == 0 || h.fall == 0 {
            return bad("health.rise / health.fall", "at least 1");
        }
        let t = &self.timeouts;
        if t.tcp_established < Duration::from_secs(30 * 60) {
            // RFC 2177: IDLE is re-issued up to every 29 minutes.
            return bad(
                "timeouts.tcp_established",
                "at least 30m, or idle IMAP IDLE sessions get re-balanced",
            );
        }
        if [t.tcp_syn, t.tcp_closing, t.udp]
            .iter()
            .any(|d| d.is_zero())
        {
            return bad("timeouts", "every timeout above zero");
        }
        Ok(())
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        config_file::load(path, Self::parse_and_validate)
    }

    /// The data path's timeout settings.
    pub fn data_plane_config(&self, nat_enabled: bool) -> fulmar_common::Config {
        let t = &self.timeouts;
        fulmar_common::Config {
            tcp_syn_ns: t.tcp_syn.as_nanos() as u64,
            tcp_established_ns: t.tcp_established.as_nanos() as u64,
            tcp_closing_ns: t.tcp_closing.as_nanos() as u64,
            udp_ns: t.udp.as_nanos() as u64,
            nat_enabled: nat_enabled as u32,
            _pad: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(
            DaemonConfig::parse_and_validate("").unwrap(),
            DaemonConfig::default()
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = DaemonConfig::parse_and_validate("interfce = \"eth1\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("interfce"), "{e}");
        let e = DaemonConfig::parse_and_validate("[timeouts]\ntcp_established = \"10m\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeouts.tcp_established"), "{e}");
        let e = DaemonConfig::parse_and_validate("[health]\ninterval = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("interval"), "{e}");
        let e = DaemonConfig::parse_and_validate("mode = \"fast\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode") || e.contains("fast"), "{e}");
        for capacity in [0, 1023, MAX_FLOWS + 1, u32::MAX] {
            let e = DaemonConfig::parse_and_validate(&format!("flow_capacity = {capacity}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("flow_capacity: between 1024 and 67108864"),
                "{e}"
            );
        }
        assert!(DaemonConfig::parse_and_validate(&format!("flow_capacity = {MAX_FLOWS}")).is_ok());
    }

    #[test]
    fn values_are_read() {
        let c = DaemonConfig::parse_and_validate(
            "interface = \"bond0\"\nmode = \"generic\"\n[health]\ninterval = \"1s\"\nfall = 3\n",
        )
        .unwrap();
        assert_eq!(c.interface, "bond0");
        assert_eq!(c.mode, ModeChoice::Generic);
        assert_eq!(c.health.interval, Duration::from_secs(1));
        assert_eq!(c.health.fall, 3);
        assert_eq!(c.health.rise, 2);
    }
}
