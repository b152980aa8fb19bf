//! Three etcd members (Debian's etcd-server), one per namespace, for the
//! cluster lab and the platform; the state the failover manager keeps in
//! them, as etcdctl reads it.
use std::{
    collections::BTreeMap,
    path::Path,
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{Lab, LabError};

/// Where the failover manager keeps its state (the labs' cluster.toml).
pub const PREFIX: &str = "/fulmar";

/// etcdctl's JSON carries keys and values in standard base64.
pub(super) fn b64(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Starts a member on each (host, address) of `members`, data under
/// `dir`; returns the client endpoints once `from` finds them healthy.
pub fn start(
    lab: &mut Lab,
    dir: &Path,
    members: &[(&str, &str)],
    from: &str,
) -> Result<String, LabError> {
    for i in 0..members.len() {
        spawn_member(lab, dir, members, i)?;
    }
    let endpoints: Vec<String> = members
        .iter()
        .map(|(_, ip)| format!("http://{ip}:2379"))
        .collect();
    let endpoints = endpoints.join(",");
    wait_healthy(lab, from, &endpoints, Duration::from_secs(20))
        .map_err(|e| LabError::NotReady(format!("{e}: {}", lab.log(members[0].0, "etcd"))))?;
    Ok(endpoints)
}

/// Waits until every member of `endpoints` answers `endpoint health` from
/// `from`.
pub fn wait_healthy(
    lab: &Lab,
    from: &str,
    endpoints: &str,
    within: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + within;
    loop {
        let ok = lab
            .exec(
                from,
                "etcdctl",
                &["--endpoints", endpoints, "endpoint", "health"],
            )
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "etcd not healthy within {within:?}"
            )));
        }
        sleep(Duration::from_millis(100));
    }
}

/// Starts member `i` of `members` on its host (again, after a kill: it
/// rejoins with the data it has); its log is `etcd`.
pub fn spawn_member(
    lab: &mut Lab,
    dir: &Path,
    members: &[(&str, &str)],
    i: usize,
) -> Result<u32, LabError> {
    let peers: Vec<String> = members
        .iter()
        .map(|(name, ip)| format!("{name}=http://{ip}:2380"))
        .collect();
    let peers = peers.join(",");
    let token = lab.prefix().to_string();
    let (name, ip) = members[i];
    let data = dir.join(format!("{name}.data"));
    let args = [
        "--name".to_string(),
        name.to_string(),
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
    lab.spawn(name, "etcd", "etcd", &args)
}

/// `etcdctl ARGS -w json` from `from`, parsed, and its text.
pub fn etcdctl_json(
    lab: &Lab,
    from: &str,
    endpoints: &str,
    args: &[&str],
) -> Result<(Value, String), LabError> {
    let mut all = vec!["--endpoints", endpoints, "--command-timeout=2s"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-w", "json"]);
    let out = lab.check(from, "etcdctl", &all)?;
    let v = serde_json::from_str(&out).map_err(|e| LabError::Spec(format!("etcdctl json: {e}")))?;
    Ok((v, out))
}

/// The cluster state: key (without the prefix) → value.
pub fn state(lab: &Lab, from: &str, endpoints: &str) -> Result<BTreeMap<String, String>, LabError> {
    let (v, _) = etcdctl_json(
        lab,
        from,
        endpoints,
        &["get", "--prefix", &format!("{PREFIX}/")],
    )?;
    let mut map = BTreeMap::new();
    for kv in v["kvs"].as_array().into_iter().flatten() {
        let key = b64(kv["key"].as_str().unwrap_or_default());
        let value = b64(kv["value"].as_str().unwrap_or_default());
        map.insert(
            key.trim_start_matches(&format!("{PREFIX}/")).to_string(),
            value,
        );
    }
    Ok(map)
}

/// (node, generation) while `instance`'s current placement runs.
pub fn running(state: &BTreeMap<String, String>, instance: &str) -> Option<(String, u64)> {
    let p: Value = serde_json::from_str(state.get(&format!("placement/{instance}"))?).ok()?;
    let s: Value = serde_json::from_str(state.get(&format!("status/{instance}"))?).ok()?;
    (p["node"] == s["node"]
        && p["generation"] == s["generation"]
        && s["state"] == "running"
        && p["stop"] != true)
        .then(|| {
            (
                p["node"].as_str().unwrap_or_default().to_string(),
                p["generation"].as_u64().unwrap_or(0),
            )
        })
}
