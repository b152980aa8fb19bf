//! The cluster config, the same file on every back-end node
//! (`/etc/fulmar/cluster.toml`): where etcd is, the timing of leases and
//! probes, the nodes, and the service instances.
//!
//! ```toml
//! [etcd]
//! endpoints = ["http://198.18.20.11:2379", "http://198.18.20.12:2379", "http://198.18.20.13:2379"]
//!
//! [timing]
//! lease_ttl = "2s"
//!
//! [node.node1]
//! [node.node2]
//!
//! [instance.mail1]
//! address = "198.51.100.21/24"
//! # ... see `instance`
//! ```
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use fulmar_daemon::config::{self as config_file, ConfigError};
use serde::{Deserialize, Serialize};

use crate::instance::InstanceSpec;

pub const DEFAULT_PATH: &str = "/etc/fulmar/cluster.toml";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub etcd: EtcdConfig,
    #[serde(default)]
    pub timing: Timing,
    /// The fencing topology (see `fulmar-fencing`).
    #[serde(default = "default_fencing")]
    pub fencing: PathBuf,
    #[serde(default)]
    pub node: BTreeMap<String, NodeSpec>,
    #[serde(default)]
    pub instance: BTreeMap<String, InstanceSpec>,
}

fn default_fencing() -> PathBuf {
    fulmar_fencing::config::DEFAULT_PATH.into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// Every key of this cluster lives under it, so clusters can share an
    /// etcd.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "/fulmar".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// A node whose lease is not renewed for this long is failed. etcd
    /// counts whole seconds and refuses less than 1.5 × its election
    /// timeout.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// A node that has not had a renewal acknowledged for
    /// `lease_ttl - self_fence_margin` stops its instances itself, before
    /// anyone may conclude it failed.
    #[serde(with = "humantime_serde")]
    pub self_fence_margin: Duration,
    /// How often agents and the leader look at the cluster state.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// Restarts in place within `restart_window` before the instance is
    /// given up on this node and relocated.
    pub restart_threshold: u32,
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
    /// After an instance fails on a node (start or probes), that node is
    /// avoided for this long, doubled on every further failure there, up
    /// to `failure_timeout` (Pacemaker's migration-threshold of 1 with a
    /// backoff).
    #[serde(with = "humantime_serde")]
    pub failure_backoff: Duration,
    /// The longest a node is avoided, and how long after its last failure
    /// its failure count is forgotten (Pacemaker's failure-timeout): a
    /// failed start never bans a node for good.
    #[serde(with = "humantime_serde")]
    pub failure_timeout: Duration,
    /// How often the leader runs every fence device's `monitor` action, so
    /// that a broken BMC or credential is found before a node fails.
    #[serde(with = "humantime_serde")]
    pub fence_monitor_interval: Duration,
    /// How often each agent sends its heartbeat to the other nodes.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node (with a `heartbeat` address) silent this long is failed and
    /// fenced at once, without waiting for its lease; the takeover still
    /// waits for the fence to confirm it off.
    #[serde(with = "humantime_serde")]
    pub suspect_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_ttl: Duration::from_secs(2),
            self_fence_margin: Duration::from_millis(500),
            reconcile_interval: Duration::from_millis(50),
            probe_interval: Duration::from_secs(1),
            restart_threshold: 3,
            restart_window: Duration::from_secs(300),
            failure_backoff: Duration::from_secs(2),
            failure_timeout: Duration::from_secs(120),
            fence_monitor_interval: Duration::from_secs(60),
            heartbeat_interval: Duration::from_millis(50),
            suspect_after: Duration::from_millis(300),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// For the status view; fencing finds the node through `fencing`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Where this node's fulmar-noded serves Prometheus `GET /metrics`.
    #[serde(default)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Where this node's fulmar-noded sends and hears heartbeats (UDP, on
    /// the cluster network). Without it the node is watched by its lease
    /// alone (see `timing.suspect_after`).
    #[serde(default)]
    pub heartbeat: Option<std::net::SocketAddr>,
}

impl ClusterConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        config_file::load(path, Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: ClusterConfig = config_file::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.etcd.endpoints.is_empty() {
            return Err("etcd.endpoints is empty".into());
        }
        let t = &self.timing;
        if t.lease_ttl < Duration::from_secs(1) || t.lease_ttl.subsec_nanos() != 0 {
            return Err("timing.lease_ttl must be whole seconds, at least 1s".into());
        }
        // The margin must leave time to renew: keep-alives go every ttl/4.
        if t.self_fence_margin.is_zero() || t.self_fence_margin >= t.lease_ttl / 2 {
            return Err("timing.self_fence_margin must be above 0 and below lease_ttl / 2".into());
        }
        // Several beats lost before a suspicion, and sooner than the lease.
        if t.heartbeat_interval.is_zero()
            || t.suspect_after < 3 * t.heartbeat_interval
            || t.suspect_after >= t.lease_ttl
        {
            return Err(
                "timing.suspect_after must be at least 3 x heartbeat_interval (above 0) \
                 and below lease_ttl"
                    .into(),
            );
        }
        for (name, spec) in &self.instance {
            spec.vip().map_err(|e| format!("instance {name}: {e}"))?;
            if spec.start.is_empty() {
                return Err(format!("instance {name}: start is empty"));
            }
            if let Some(d) = spec
                .run_dirs
                .iter()
                .find(|d| !crate::takeover::stale::valid_run_dir(d))
            {
                return Err(format!(
                    "instance {name}: run_dirs entry {} must be relative to the mountpoint, \
                     without ..",
                    d.display()
                ));
            }
            for n in spec.allowed.iter().chain(&spec.preferred) {
                if !self.node.contains_key(n) {
                    return Err(format!("instance {name}: unknown node {n:?}"));
                }
            }
        }
        Ok(())
    }

    /// The lease TTL in etcd's unit.
    pub fn ttl_secs(&self) -> i64 {
        self.timing.lease_ttl.as_secs() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [etcd]
        endpoints = ["http://198.18.9.1:2379"]
        [node.node1]
        [node.node2]
        [instance.mail1]
        address = "198.18.9.100/24"
        interface = "eth0"
        volume = "/v"
        mountpoint = "/m"
        start = ["dovecot", "-F"]
        preferred = ["node1"]
    "#;

    #[test]
    fn parses_with_defaults() {
        let c = ClusterConfig::parse(BASE).unwrap();
        assert_eq!(c.etcd.prefix, "/fulmar");
        assert_eq!(c.ttl_secs(), 2);
        assert!(c.instance["mail1"].sticky);
    }

    #[test]
    fn refuses_bad_config() {
        let bad = [
            (BASE.replace("node1\"]", "node9\"]"), "unknown node"),
            (BASE.replace("[\"http://198.18.9.1:2379\"]", "[]"), "empty"),
            (BASE.replace("/24", ""), "/prefix"),
            (
                format!("{BASE}\n[timing]\nlease_ttl = \"1500ms\""),
                "whole seconds",
            ),
            (
                format!("{BASE}\n[timing]\nlease_ttl = \"1s\"\nself_fence_margin = \"1s\""),
                "self_fence_margin",
            ),
            (format!("{BASE}\nbogus = 1"), "unknown field"),
            (
                format!("{BASE}\n[timing]\nheartbeat_interval = \"200ms\""),
                "suspect_after",
            ),
        ];
        for (text, want) in bad {
            let e = ClusterConfig::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
