//! Fencing configuration (TOML): devices by name, and per node its delay
//! and ordered levels of devices.
//!
//! ```toml
//! state_dir = "/var/lib/fulmar/fencing"
//!
//! [device.node1-bmc]
//! type = "redfish"
//! address = "https://bmc-node1.mgmt.internal"
//! username = "fence"
//! password_file = "/etc/fulmar/fencing/node1-bmc.password"
//!
//! [device.node1-pdu]
//! type = "agent"
//! agent = "fence_apc_snmp"
//! options = { ip = "pdu1.mgmt.internal", plug = "3" }
//!
//! [node.node1]
//! delay = "0s"
//! levels = [["node1-bmc"], ["node1-pdu"]]
//! ```
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

use fulmar_daemon::config::{self as config_file, ConfigError};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

pub const DEFAULT_PATH: &str = "/etc/fulmar/fencing.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/fulmar/fencing";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FencingConfig {
    /// Where the fence history (and operators' manual confirmations) live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub device: BTreeMap<String, DeviceConfig>,
    #[serde(default)]
    pub node: BTreeMap<String, NodeConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Wait this long before fencing this node: in a two-node (or evenly
    /// split) partition the node with the delay survives, because its peer
    /// is fenced first.
    #[serde(default, with = "humantime_serde")]
    pub delay: Duration,
    /// Tried in order; every device of a level must succeed.
    pub levels: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DeviceConfig {
    /// Any ClusterLabs fence agent (`fence_*`), run by its convention.
    Agent(AgentConfig),
    Redfish(RedfishConfig),
    Ipmi(IpmiConfig),
    /// Lab only: a host of the netns lab.
    LabHost(LabHostConfig),
    /// Cuts one node off one instance volume.
    IoBarrier(IoBarrierConfig),
}

impl DeviceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceConfig::Agent(_) => "agent",
            DeviceConfig::Redfish(_) => "redfish",
            DeviceConfig::Ipmi(_) => "ipmi",
            DeviceConfig::LabHost(_) => "lab-host",
            DeviceConfig::IoBarrier(_) => "io-barrier",
        }
    }

    /// What the device acts on, for listings (never a password).
    pub fn target(&self) -> String {
        match self {
            DeviceConfig::Agent(c) => {
                let mut opts: Vec<String> =
                    c.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
                opts.sort();
                format!("{} {}", c.agent, opts.join(" "))
            }
            DeviceConfig::Redfish(c) => c.address.clone(),
            DeviceConfig::Ipmi(c) => format!("{}:{}", c.address, c.port),
            DeviceConfig::LabHost(c) => format!("netns {}", c.netns),
            DeviceConfig::IoBarrier(c) => format!("{} node {}", c.volume.display(), c.node),
        }
    }

    /// Devices that cut access rather than power need `on` when the node
    /// comes back ("unfencing").
    pub fn unfences(&self) -> bool {
        match self {
            DeviceConfig::IoBarrier(_) => true,
            DeviceConfig::Agent(c) => matches!(c.agent.as_str(), "fence_scsi" | "fence_mpath"),
            _ => false,
        }
    }

    pub fn timeout(&self) -> Duration {
        match self {
            DeviceConfig::Agent(c) => c.timeout,
            DeviceConfig::Redfish(c) => c.timeout,
            DeviceConfig::Ipmi(c) => c.timeout,
            DeviceConfig::LabHost(c) => c.timeout,
            DeviceConfig::IoBarrier(c) => c.timeout,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `fence_ipmilan`, or a path. Names are looked up in /usr/sbin, /sbin
    /// and PATH.
    pub agent: String,
    /// key=value options handed on stdin (ip, username, plug, ssl_insecure...).
    #[serde(default)]
    pub options: HashMap<String, String>,
    /// Never written back out (a serialised config holds no secret).
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedfishConfig {
    /// `https://host[:port]` of the management board.
    pub address: String,
    pub username: String,
    /// Never written back out (a serialised config holds no secret).
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The system's URI; found when the board has exactly one.
    #[serde(default)]
    pub system: Option<String>,
    /// Trust these CAs (PEM) instead of the public roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Accept any certificate (self-signed boards). Prefer `ca`.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IpmiConfig {
    pub address: String,
    #[serde(default = "default_ipmi_port")]
    pub port: u16,
    pub username: String,
    /// Never written back out (a serialised config holds no secret).
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// RMCP+ cipher suite (ipmitool -C); ipmitool's default when unset.
    #[serde(default)]
    pub cipher_suite: Option<u8>,
    #[serde(default = "default_ipmi_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabHostConfig {
    /// The host's network namespace (under /run/netns).
    pub netns: String,
    #[serde(default = "default_ipmi_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IoBarrierConfig {
    /// The volume directory (`disk.img` and `access/NODE.img`).
    pub volume: PathBuf,
    /// The node whose access this device revokes.
    pub node: String,
    #[serde(default = "default_ipmi_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_state_dir() -> PathBuf {
    DEFAULT_STATE_DIR.into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_ipmi_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_ipmi_port() -> u16 {
    623
}

impl FencingConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config_file::load(path, Self::parse)
    }

    /// Parses and checks that every level names known devices.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: FencingConfig = config_file::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Every node has levels, every level names known devices.
    fn validate(&self) -> Result<(), String> {
        for (name, node) in &self.node {
            if node.levels.is_empty() {
                return Err(format!("node {name} has no fencing levels"));
            }
            for (i, level) in node.levels.iter().enumerate() {
                if level.is_empty() {
                    return Err(format!("node {name}: level {} is empty", i + 1));
                }
                for device in level {
                    if !self.device.contains_key(device) {
                        return Err(format!(
                            "node {name}: level {} names unknown device {device:?}",
                            i + 1
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
state_dir = "/tmp/x"
[device.bmc]
type = "redfish"
address = "https://198.18.9.1"
username = "fence"
password = "s3cret"
insecure = true
[device.pdu]
type = "agent"
agent = "fence_apc_snmp"
options = { ip = "198.18.9.2", plug = "3" }
timeout = "10s"
[node.node1]
delay = "5s"
levels = [["bmc"], ["pdu"]]
"#;

    #[test]
    fn parses_levels_delays_and_devices() {
        let c = FencingConfig::parse(SAMPLE).unwrap();
        assert_eq!(c.node["node1"].delay, Duration::from_secs(5));
        assert_eq!(c.node["node1"].levels, vec![vec!["bmc"], vec!["pdu"]]);
        assert_eq!(c.device["pdu"].timeout(), Duration::from_secs(10));
        assert_eq!(c.device["bmc"].timeout(), Duration::from_secs(60));
        assert_eq!(
            c.device["pdu"].target(),
            "fence_apc_snmp ip=198.18.9.2 plug=3"
        );
        // The password is in the config but never in its Debug form.
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn names_what_is_wrong() {
        let unknown = SAMPLE.replace("[\"pdu\"]]", "[\"pdx\"]]");
        assert!(
            FencingConfig::parse(&unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown device \"pdx\"")
        );
        let typo = SAMPLE.replace("insecure", "insecur");
        assert!(
            FencingConfig::parse(&typo)
                .unwrap_err()
                .to_string()
                .contains("insecur")
        );
        let kind = SAMPLE.replace("\"redfish\"", "\"redfsh\"");
        assert!(
            FencingConfig::parse(&kind)
                .unwrap_err()
                .to_string()
                .contains("redfsh")
        );
    }
}
