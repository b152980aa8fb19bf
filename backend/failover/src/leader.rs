//! Leadership: one agent holds `leader` on its lease and applies the
//! [`plan`](crate::plan). Each write is a transaction that holds only while
//! `leader` is still on this node's lease, so a deposed or cut-off leader
//! cannot place anything. Fencing runs in the background, one at a time per
//! node, and is recorded in etcd (and in the local fence history).
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Instant,
};

/// The leader's fences: in progress (None) or recorded at a revision a
/// snapshot may not have seen yet (Some), both meaning "do not fence
/// again"; and a signal when one is recorded, which frees instances, so
/// the leader plans at once rather than at its next tick.
#[derive(Default)]
struct Fencing {
    nodes: Mutex<BTreeMap<String, Option<i64>>>,
    recorded: tokio::sync::Notify,
}

impl Fencing {
    fn set(&self, node: &str, recorded: Option<i64>) {
        self.nodes
            .lock()
            .expect("fencing set")
            .insert(node.to_string(), recorded);
    }
}

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use fulmar_fencing::{Action, Fencer, Outcome, Record, history::now_ms};

use crate::{
    config::ClusterConfig,
    heartbeat::Heartbeats,
    lease::LeaseHandle,
    metrics::METRICS,
    plan::{Decision, plan},
    state::{self, Fence, Keys, Snapshot, encode},
};

pub async fn run(
    config: Arc<ClusterConfig>,
    client: Client,
    node: String,
    lease: LeaseHandle,
    fencer: Arc<Fencer>,
    heartbeats: Arc<Heartbeats>,
) {
    let keys = Keys::new(&config.etcd.prefix);
    let mut suspected = BTreeSet::new();
    let fencing = Arc::new(Fencing::default());
    let mut tick = tokio::time::interval(config.timing.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_leader = false;
    let mut next_monitor = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = fencing.recorded.notified() => {}
        }
        if !lease.valid() {
            return;
        }
        let mut c = client.clone();
        let mut s = match state::load(&mut c, &keys).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("leader: {e}");
                continue;
            }
        };
        match &s.leader {
            Some((n, l)) if *n == node && *l == lease.id => {}
            Some((n, l)) => {
                was_leader = false;
                METRICS.leading(false);
                // A silent leader is deposed now, not when its lease ends:
                // its writes need `leader` on its lease, so once this
                // succeeds it can place nothing, and it is fenced next.
                if heartbeats.suspects(config.timing.suspect_after).contains(n) {
                    depose(&mut c, &keys, n, *l, &node, lease.id).await;
                }
                continue;
            }
            None => {
                campaign(&mut c, &keys, &node, lease.id).await;
                continue;
            }
        }
        if !was_leader {
            tracing::info!(node, "leading the cluster");
            was_leader = true;
            METRICS.leading(true);
        }
        suspect(&heartbeats, &config, &mut s, &mut suspected);
        if Instant::now() >= next_monitor {
            next_monitor = Instant::now() + config.timing.fence_monitor_interval;
            tokio::spawn(monitor_devices(fencer.clone()));
        }
        let in_flight: BTreeSet<String> = {
            let mut f = fencing.nodes.lock().expect("fencing set");
            f.retain(|_, recorded| recorded.is_none_or(|r| r > s.revision));
            f.keys().cloned().collect()
        };
        for decision in plan(&config, &s, &in_flight) {
            if !lease.valid() {
                return;
            }
            apply(decision, &s, &mut c, &keys, &lease, &fencer, &fencing).await;
        }
        METRICS.cluster(config.clone(), s);
    }
}

/// Nodes silent past `suspect_after` count as failed (their `alive` entry
/// is dropped from the leader's view), so their instances are fenced and
/// taken over now rather than when the lease expires.
fn suspect(
    heartbeats: &Heartbeats,
    config: &ClusterConfig,
    s: &mut Snapshot,
    suspected: &mut BTreeSet<String>,
) {
    let now = heartbeats.suspects(config.timing.suspect_after);
    for node in now.difference(suspected) {
        tracing::warn!(
            node,
            silent_for = ?config.timing.suspect_after,
            "no heartbeat: failed"
        );
    }
    for node in suspected.difference(&now) {
        tracing::info!(node, "heartbeats again");
    }
    s.alive.retain(|node, _| !now.contains(node));
    *suspected = now;
}

/// Runs every fence device's `monitor` action (each bounded by its own
/// timeout) and records whether it passed.
async fn monitor_devices(fencer: Arc<Fencer>) {
    let names: Vec<String> = fencer.config().device.keys().cloned().collect();
    for name in names {
        let result = fencer.device_action(&name, Action::Monitor).await;
        if let Err(e) = &result {
            tracing::warn!(device = name, "fence device monitor failed: {e}");
        }
        METRICS.device_monitor(&name, result.is_ok());
    }
}

async fn campaign(c: &mut Client, keys: &Keys, node: &str, lease: i64) {
    let unheld = Compare::create_revision(keys.leader(), CompareOp::Equal, 0);
    if let Err(e) = claim_leader(c, keys, node, lease, unheld).await {
        tracing::warn!("campaigning: {e}");
    }
}

/// Puts `leader` = `node` on its `lease` when `when` holds; whether it did.
async fn claim_leader(
    c: &mut Client,
    keys: &Keys,
    node: &str,
    lease: i64,
    when: Compare,
) -> Result<bool, etcd_client::Error> {
    let txn = Txn::new().when([when]).and_then([TxnOp::put(
        keys.leader(),
        node,
        Some(PutOptions::new().with_lease(lease)),
    )]);
    Ok(c.txn(txn).await?.succeeded())
}

/// A node fenced off is no member any more: its lease is revoked, so its
/// `alive` entry goes now (not when the lease would expire) and the node,
/// booted again, joins with a new incarnation at once.
async fn end_membership(c: &mut Client, keys: &Keys, node: &str, incarnation: i64) {
    let Ok(found) = c.get(keys.alive(node), None).await else {
        return;
    };
    for kv in found.kvs() {
        if kv.create_revision() <= incarnation
            && let Err(e) = c.lease_revoke(kv.lease()).await
        {
            tracing::warn!(node, "revoking the fenced node's lease: {e}");
        }
    }
}

/// Takes `leader` from `silent` (on its lease `theirs`), if still theirs.
async fn depose(c: &mut Client, keys: &Keys, silent: &str, theirs: i64, node: &str, mine: i64) {
    let still_theirs = Compare::lease(keys.leader(), CompareOp::Equal, theirs);
    match claim_leader(c, keys, node, mine, still_theirs).await {
        Ok(true) => tracing::warn!(
            leader = silent,
            node,
            "no heartbeat from the leader: deposed it"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!("deposing {silent}: {e}"),
    }
}

/// Writes `ops` only while this node's lease still holds `leader`.
async fn as_leader(c: &mut Client, keys: &Keys, lease: i64, ops: Vec<TxnOp>) -> bool {
    let txn = Txn::new()
        .when([Compare::lease(keys.leader(), CompareOp::Equal, lease)])
        .and_then(ops);
    match c.txn(txn).await {
        Ok(r) => r.succeeded(),
        Err(e) => {
            tracing::warn!("leader write: {e}");
            false
        }
    }
}

async fn apply(
    decision: Decision,
    s: &Snapshot,
    c: &mut Client,
    keys: &Keys,
    lease: &LeaseHandle,
    fencer: &Arc<Fencer>,
    fencing: &Arc<Fencing>,
) {
    match decision {
        Decision::Place {
            instance,
            placement,
        } => {
            tracing::info!(
                instance,
                node = placement.node,
                generation = placement.generation,
                "placing"
            );
            let ops = vec![
                TxnOp::put(keys.placement(&instance), encode(&placement), None),
                TxnOp::delete(keys.why(&instance), None),
            ];
            as_leader(c, keys, lease.id, ops).await;
        }
        Decision::Stop { instance } => {
            let Some(mut p) = s.placement.get(&instance).cloned() else {
                return;
            };
            tracing::info!(instance, node = p.node, "asking to stop");
            p.stop = true;
            let ops = vec![TxnOp::put(keys.placement(&instance), encode(&p), None)];
            as_leader(c, keys, lease.id, ops).await;
        }
        Decision::Relocated { instance } => {
            let mut admin = s.instance_admin.get(&instance).cloned().unwrap_or_default();
            admin.relocate = None;
            let ops = vec![TxnOp::put(
                keys.instance_admin(&instance),
                encode(&admin),
                None,
            )];
            as_leader(c, keys, lease.id, ops).await;
        }
        Decision::Why { instance, reason } => {
            if !reason.is_empty() {
                tracing::warn!(instance, "{reason}");
            }
            let op = if reason.is_empty() {
                TxnOp::delete(keys.why(&instance), None)
            } else {
                TxnOp::put(keys.why(&instance), reason, None)
            };
            as_leader(c, keys, lease.id, vec![op]).await;
        }
        Decision::Fence { node, incarnation } => {
            fencing.set(&node, None);
            let (fencer, fencing, mut c, keys) =
                (fencer.clone(), fencing.clone(), c.clone(), keys.clone());
            tokio::spawn(async move {
                tracing::warn!(node, incarnation, "fencing");
                let record = fencer.fence(&node).await.unwrap_or_else(|e| Record {
                    node: node.clone(),
                    started_ms: now_ms(),
                    delay_ms: 0,
                    duration_ms: 0,
                    levels: Vec::new(),
                    outcome: Outcome::Unfenceable {
                        reasons: vec![e.to_string()],
                    },
                });
                tracing::warn!(node, "{}", record.summary());
                if record.safe_to_take_over() {
                    end_membership(&mut c, &keys, &node, incarnation).await;
                }
                let fence = Fence {
                    incarnation,
                    record: record.clone(),
                    unfenced: false,
                };
                // A fact, not a decision: recorded even if leadership moved.
                let txn = Txn::new().and_then([
                    TxnOp::put(keys.fence(&node), encode(&fence), None),
                    TxnOp::put(keys.fencelog(&record), encode(&record), None),
                ]);
                let recorded = match c.txn(txn).await {
                    Ok(r) => r.header().map(|h| h.revision()).unwrap_or(i64::MAX),
                    Err(e) => {
                        tracing::error!(node, "recording the fence: {e}");
                        0
                    }
                };
                fencing.set(&node, Some(recorded));
                fencing.recorded.notify_one();
            });
        }
        Decision::Unfence { node } => {
            let Some(mut fence) = s.fence.get(&node).cloned() else {
                return;
            };
            match fencer.unfence(&node).await {
                Ok(()) => {
                    tracing::info!(node, "unfenced");
                    fence.unfenced = true;
                    let ops = vec![TxnOp::put(keys.fence(&node), encode(&fence), None)];
                    as_leader(c, keys, lease.id, ops).await;
                }
                Err(e) => tracing::error!(node, "unfencing: {e}"),
            }
        }
    }
}
