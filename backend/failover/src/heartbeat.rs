//! Fast failure detection: every agent sends a UDP heartbeat to every
//! other node's agent each `heartbeat_interval`, and the leader counts a
//! node it has heard before and not heard for `suspect_after` as failed,
//! long before its etcd lease (whole seconds) could expire.
//!
//! Suspicion only ever leads to a fence, and a takeover only follows a
//! fence that confirmed the node off: a wrong suspicion costs that node's
//! instances a move, never a second writer. Two guards keep it rare:
//! - a node never heard since this agent started is not suspected (it may
//!   not send heartbeats at all, or not yet);
//! - a leader that hears no other node at all suspects nobody: its own
//!   link is the likelier fault, and the lease decides instead.
//!
//! A heartbeat is `fulmar-hb1 PREFIX NODE`, accepted only from the address
//! the config gives that node.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::net::UdpSocket;

use crate::config::ClusterConfig;

const MAGIC: &str = "fulmar-hb1";

/// When each other node's agent was last heard.
#[derive(Default)]
pub struct Heartbeats {
    heard: Mutex<BTreeMap<String, Instant>>,
}

impl Heartbeats {
    /// Binds this node's heartbeat address and starts sending and
    /// receiving. With no address for this node, a detector that hears
    /// nothing (and so suspects nobody).
    pub async fn start(config: Arc<ClusterConfig>, node: &str) -> std::io::Result<Arc<Self>> {
        let this = Arc::new(Self::default());
        let Some(own) = config.node.get(node).and_then(|n| n.heartbeat) else {
            return Ok(this);
        };
        let socket = Arc::new(UdpSocket::bind(own).await?);
        let peers: Vec<(String, SocketAddr)> = config
            .node
            .iter()
            .filter(|(n, _)| n.as_str() != node)
            .filter_map(|(n, spec)| spec.heartbeat.map(|a| (n.clone(), a)))
            .collect();
        let beat = format!("{MAGIC} {} {node}", config.etcd.prefix).into_bytes();
        let interval = config.timing.heartbeat_interval;
        tokio::spawn(send(socket.clone(), beat, peers.clone(), interval));
        tokio::spawn(receive(
            socket,
            config.etcd.prefix.clone(),
            peers,
            Arc::downgrade(&this),
        ));
        Ok(this)
    }

    /// Nodes heard before and silent for `after` now. Empty when no node
    /// was heard within `after` (see the module doc).
    pub fn suspects(&self, after: Duration) -> BTreeSet<String> {
        let ages = self.ages();
        let silent: BTreeSet<String> = ages
            .iter()
            .filter(|(_, age)| *age >= after)
            .map(|(n, _)| n.clone())
            .collect();
        if silent.len() == ages.len() {
            return BTreeSet::new();
        }
        silent
    }

    /// How long ago each node was last heard (for the metrics).
    pub fn ages(&self) -> Vec<(String, Duration)> {
        let heard = self.heard.lock().expect("heartbeats");
        heard
            .iter()
            .map(|(n, at)| (n.clone(), at.elapsed()))
            .collect()
    }

    pub(crate) fn heard(&self, node: &str) {
        self.heard
            .lock()
            .expect("heartbeats")
            .insert(node.to_string(), Instant::now());
    }
}

async fn send(
    socket: Arc<UdpSocket>,
    beat: Vec<u8>,
    peers: Vec<(String, SocketAddr)>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        for (_, to) in &peers {
            // A peer that is down answers with ICMP; nothing to do about it.
            let _ = socket.send_to(&beat, to).await;
        }
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    prefix: String,
    peers: Vec<(String, SocketAddr)>,
    heartbeats: std::sync::Weak<Heartbeats>,
) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            // ICMP errors from the sends surface here: keep listening.
            continue;
        };
        let Some(heartbeats) = heartbeats.upgrade() else {
            return;
        };
        if let Some(node) = sender(&buf[..len], &prefix, &peers, from) {
            heartbeats.heard(node);
        }
    }
}

/// The node a datagram is a heartbeat of: the right magic and cluster,
/// a known node, sent from that node's address.
fn sender<'a>(
    datagram: &[u8],
    prefix: &str,
    peers: &'a [(String, SocketAddr)],
    from: SocketAddr,
) -> Option<&'a str> {
    let text = std::str::from_utf8(datagram).ok()?;
    let mut words = text.split(' ');
    if words.next()? != MAGIC || words.next()? != prefix {
        return None;
    }
    let node = words.next()?;
    if words.next().is_some() {
        return None;
    }
    peers
        .iter()
        .find(|(n, a)| n == node && a.ip() == from.ip())
        .map(|(n, _)| n.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_known_node_from_its_address_counts() {
        let peers = vec![("node2".to_string(), "198.18.2.12:7790".parse().unwrap())];
        let from = "198.18.2.12:40000".parse().unwrap();
        let ok = b"fulmar-hb1 /fulmar node2";
        assert_eq!(sender(ok, "/fulmar", &peers, from), Some("node2"));
        let spoofed = "198.18.2.99:7790".parse().unwrap();
        assert_eq!(sender(ok, "/fulmar", &peers, spoofed), None);
        for bad in [
            &b"fulmar-hb1 /other node2"[..],
            b"fulmar-hb1 /fulmar node9",
            b"fulmar-hb1 /fulmar node2 extra",
            b"fulmar-hb0 /fulmar node2",
            b"\xff\xfe",
        ] {
            assert_eq!(sender(bad, "/fulmar", &peers, from), None, "{bad:?}");
        }
    }

    #[test]
    fn silence_is_suspected_only_while_someone_else_is_heard() {
        let h = Heartbeats::default();
        let after = Duration::from_secs(60);
        assert!(h.suspects(after).is_empty(), "nobody heard yet");
        let long_ago = Instant::now() - 2 * after;
        let at = |node: &str, when: Instant| {
            h.heard.lock().unwrap().insert(node.to_string(), when);
        };
        at("node2", long_ago);
        at("node3", long_ago);
        // Both silent: this node's own link is the likelier fault.
        assert!(h.suspects(after).is_empty());
        at("node3", Instant::now());
        assert_eq!(h.suspects(after), BTreeSet::from(["node2".to_string()]));
    }
}
