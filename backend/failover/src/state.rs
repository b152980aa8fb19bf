//! The cluster state in etcd, one JSON value per key under the prefix:
//!
//! | key                      | written by | lease | what |
//! |--------------------------|------------|-------|------|
//! | `alive/NODE`             | the node   | node  | membership; its create revision is the node's *incarnation* |
//! | `leader`                 | the leader | node  | who places instances |
//! | `placement/INSTANCE`     | the leader | –     | node, incarnation, generation, stop |
//! | `status/INSTANCE`        | the node   | –     | what the node did with that placement |
//! | `admin/instance/INSTANCE`| operators  | –     | disabled, frozen, relocate |
//! | `admin/node/NODE`        | operators  | –     | standby |
//! | `fence/NODE`             | the leader, operators | – | the last fence and the incarnation it covers |
//! | `fencelog/MS-NODE`       | the leader, operators | – | every fence attempt |
//! | `why/INSTANCE`           | the leader | –     | why an instance is not running |
//!
//! Incarnations make fencing exact: a placement names the incarnation it
//! was given to, and it may move only when that incarnation is gone and a
//! fence covers it. A node that rejoins is a new incarnation.
use crate::error::ClusterError;
use std::collections::BTreeMap;

use etcd_client::{Client, GetOptions};
use fulmar_fencing::Record;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Alive {
    pub node: String,
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Placement {
    pub node: String,
    /// The `alive/NODE` create revision of the node it was given to.
    pub incarnation: i64,
    /// Increases on every move; written on the volume as fencing token.
    pub generation: u64,
    /// The leader asks the node to stop it (relocate, disable, standby).
    #[serde(default)]
    pub stop: bool,
    /// Nodes where it failed (start or probes), each avoided until its
    /// backoff ends and forgotten after `failure_timeout`; cleared by
    /// `instance enable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<Avoid>,
}

/// A node an instance failed on recently.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Avoid {
    pub node: String,
    /// Failures there that are not forgotten yet.
    pub failures: u32,
    /// When it last failed there (ms since the epoch, the node's report).
    pub last_ms: u64,
    /// Not placed there before this.
    pub until_ms: u64,
}

/// Earlier releases stored a bare node name, avoided for good.
impl<'de> Deserialize<'de> for Avoid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            node: String,
            failures: u32,
            last_ms: u64,
            until_ms: u64,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Name(String),
            Full(Full),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Name(node) => Avoid {
                node,
                failures: 1,
                last_ms: 0,
                until_ms: 0,
            },
            Repr::Full(f) => Avoid {
                node: f.node,
                failures: f.failures,
                last_ms: f.last_ms,
                until_ms: f.until_ms,
            },
        })
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Starting,
    Running,
    Restarting,
    Stopping,
    Stopped,
    Failed,
    /// The volume's check found damage that needs a person: nothing of the
    /// instance is left on the node, and no node takes it until
    /// `fulmar instance repair`.
    NeedsRepair,
}

impl RunState {
    /// Nothing of the instance is left on the node.
    pub fn down(self) -> bool {
        matches!(
            self,
            RunState::Stopped | RunState::Failed | RunState::NeedsRepair
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    pub node: String,
    pub generation: u64,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Start steps and their durations in ms (mount, generation, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<(String, u64)>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceAdmin {
    #[serde(default)]
    pub disabled: bool,
    /// The cluster leaves it alone: no moves, no restarts.
    #[serde(default)]
    pub frozen: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relocate: Option<Relocate>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Relocate {
    /// Where it runs now: it must leave this node.
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeAdmin {
    #[serde(default)]
    pub standby: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fence {
    /// Incarnations up to this one are fenced (when `record` says so).
    pub incarnation: i64,
    pub record: Record,
    /// The node's I/O barriers were lifted for a later incarnation.
    #[serde(default)]
    pub unfenced: bool,
}

/// Everything under the prefix, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: i64,
    /// node → (incarnation, lease)
    pub alive: BTreeMap<String, (i64, i64)>,
    /// (node, lease)
    pub leader: Option<(String, i64)>,
    pub placement: BTreeMap<String, Placement>,
    pub status: BTreeMap<String, Status>,
    pub instance_admin: BTreeMap<String, InstanceAdmin>,
    pub node_admin: BTreeMap<String, NodeAdmin>,
    pub fence: BTreeMap<String, Fence>,
    pub why: BTreeMap<String, String>,
    pub fencelog: Vec<Record>,
    /// When it was read (ms since the epoch): failure backoffs end by it.
    pub now_ms: u64,
}

impl Snapshot {
    pub fn incarnation(&self, node: &str) -> Option<i64> {
        self.alive.get(node).map(|(i, _)| *i)
    }

    pub fn standby(&self, node: &str) -> bool {
        self.node_admin.get(node).is_some_and(|a| a.standby)
    }

    /// The status a node reported for the current placement, if any.
    pub fn current_status(&self, instance: &str) -> Option<&Status> {
        let p = self.placement.get(instance)?;
        self.status
            .get(instance)
            .filter(|s| s.node == p.node && s.generation == p.generation)
    }
}

/// Key names under a prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: format!("{}/", prefix.trim_end_matches('/')),
        }
    }
    pub fn all(&self) -> &str {
        &self.prefix
    }
    pub fn alive(&self, node: &str) -> String {
        format!("{}alive/{node}", self.prefix)
    }
    pub fn leader(&self) -> String {
        format!("{}leader", self.prefix)
    }
    pub fn placement(&self, instance: &str) -> String {
        format!("{}placement/{instance}", self.prefix)
    }
    pub fn status(&self, instance: &str) -> String {
        format!("{}status/{instance}", self.prefix)
    }
    pub fn instance_admin(&self, instance: &str) -> String {
        format!("{}admin/instance/{instance}", self.prefix)
    }
    pub fn node_admin(&self, node: &str) -> String {
        format!("{}admin/node/{node}", self.prefix)
    }
    pub fn fence(&self, node: &str) -> String {
        format!("{}fence/{node}", self.prefix)
    }
    pub fn fencelog(&self, record: &Record) -> String {
        format!(
            "{}fencelog/{:015}-{}",
            self.prefix, record.started_ms, record.node
        )
    }
    pub fn why(&self, instance: &str) -> String {
        format!("{}why/{instance}", self.prefix)
    }
}

fn parse<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(value).map_err(|e| ClusterError::Garbled {
        key: key.into(),
        reason: e.to_string(),
    })
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state serializes")
}

/// Reads the whole state in one range request (one revision, consistent).
pub async fn load(client: &mut Client, keys: &Keys) -> Result<Snapshot, ClusterError> {
    let resp = client
        .get(keys.all(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(ClusterError::etcd(""))?;
    let mut s = Snapshot {
        revision: resp.header().map(|h| h.revision()).unwrap_or(0),
        now_ms: fulmar_fencing::history::now_ms(),
        ..Snapshot::default()
    };
    for kv in resp.kvs() {
        let key = kv.key_str().map_err(|e| ClusterError::Garbled {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            reason: e.to_string(),
        })?;
        let Some(rest) = key.strip_prefix(keys.all()) else {
            continue;
        };
        let value = kv.value();
        // A value nobody can read is reported, not skipped: the state is
        // shared and a silent skip would hide a placement.
        match rest.split_once('/') {
            None if rest == "leader" => {
                s.leader = Some((String::from_utf8_lossy(value).into_owned(), kv.lease()));
            }
            Some(("alive", node)) => {
                s.alive
                    .insert(node.into(), (kv.create_revision(), kv.lease()));
            }
            Some(("placement", i)) => {
                s.placement.insert(i.into(), parse(key, value)?);
            }
            Some(("status", i)) => {
                s.status.insert(i.into(), parse(key, value)?);
            }
            Some(("admin", rest)) => match rest.split_once('/') {
                Some(("instance", i)) => {
                    s.instance_admin.insert(i.into(), parse(key, value)?);
                }
                Some(("node", n)) => {
                    s.node_admin.insert(n.into(), parse(key, value)?);
                }
                _ => {}
            },
            Some(("fence", n)) => {
                s.fence.insert(n.into(), parse(key, value)?);
            }
            Some(("fencelog", _)) => s.fencelog.push(parse(key, value)?),
            Some(("why", i)) => {
                s.why
                    .insert(i.into(), String::from_utf8_lossy(value).into_owned());
            }
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let k = Keys::new("/fulmar/");
        assert_eq!(k.alive("node1"), "/fulmar/alive/node1");
        assert_eq!(k.instance_admin("mail1"), "/fulmar/admin/instance/mail1");
        assert_eq!(k.all(), "/fulmar/");
    }

    #[test]
    fn records_round_trip() {
        let p = Placement {
            node: "node1".into(),
            incarnation: 7,
            generation: 3,
            stop: false,
            avoid: vec![],
        };
        let text = String::from_utf8(encode(&p)).unwrap();
        assert!(!text.contains("avoid"), "{text}");
        assert_eq!(parse::<Placement>("k", text.as_bytes()).unwrap(), p);
        assert!(
            parse::<Placement>("k", b"{")
                .unwrap_err()
                .to_string()
                .starts_with("k:")
        );
    }
}
