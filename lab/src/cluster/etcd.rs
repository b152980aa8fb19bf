//! The cluster lab's three etcd members (Debian's etcd-server), one per
//! namespace, and the base64 its JSON uses.
use std::{
    path::Path,
    thread::sleep,
    time::{Duration, Instant},
};

use crate::{Lab, LabError};

/// etcdctl's JSON carries keys and values in standard base64.
pub(super) fn b64(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(super) fn start(lab: &mut Lab, dir: &Path) -> Result<String, LabError> {
    let peers: Vec<String> = (1..=3)
        .map(|i| format!("etcd{i}=http://198.18.10.{}:2380", 20 + i))
        .collect();
    let peers = peers.join(",");
    let token = lab.prefix().to_string();
    for i in 1..=3 {
        let ip = format!("198.18.10.{}", 20 + i);
        let data = dir.join(format!("etcd{i}.data"));
        let args = [
            "--name".to_string(),
            format!("etcd{i}"),
            "--data-dir".into(),
            data.to_string_lossy().into_owned(),
            "--listen-peer-urls".into(),
            format!("http://{ip}:2380"),
            "--initial-advertise-peer-urls".into(),
            format!("http://{ip}:2380"),
            "--listen-client-urls".into(),
            format!("http://{ip}:2379"),
            "--advertise-client-urls".into(),
            format!("http://{ip}:2379"),
            "--initial-cluster".into(),
            peers.clone(),
            "--initial-cluster-token".into(),
            token.clone(),
            "--initial-cluster-state".into(),
            "new".into(),
            // A LAN of veths. Losing the leader stalls lease renewals for
            // one election: up to 2 × 250 ms, twice if the votes split. That
            // plus one renewal interval must fit in lease_ttl - margin, or
            // every node self-fences (the README's timing rule).
            "--heartbeat-interval".into(),
            "25".into(),
            "--election-timeout".into(),
            "250".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(&format!("etcd{i}"), "etcd", "etcd", &args)?;
    }
    let endpoints: Vec<String> = (1..=3)
        .map(|i| format!("http://198.18.10.{}:2379", 20 + i))
        .collect();
    let endpoints = endpoints.join(",");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = lab
            .exec(
                "client",
                "etcdctl",
                &["--endpoints", &endpoints, "endpoint", "health"],
            )
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(endpoints);
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "etcd not healthy: {}",
                lab.log("etcd1", "etcd")
            )));
        }
        sleep(Duration::from_millis(100));
    }
}
