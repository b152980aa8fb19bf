//! Membership: this node's etcd lease and the local deadline that
//! self-fencing keys on.
//!
//! The deadline is `send time of the last acknowledged keep-alive + TTL −
//! margin`, measured on this node's monotonic clock. etcd cannot expire the
//! lease before the TTL has run from that acknowledgement, so an instance
//! stopped by the deadline is down before anyone may decide the node failed —
//! without waiting for an error from a cut-off connection.
use crate::error::ClusterError;
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
};

use crate::state::{Alive, Keys, encode};

/// What the agent and the leader share about the lease.
#[derive(Debug, Clone)]
pub struct LeaseHandle {
    pub id: i64,
    /// The create revision of `alive/NODE`.
    pub incarnation: i64,
    last_ack: Arc<Mutex<Instant>>,
    lost: Arc<AtomicBool>,
    ttl: Duration,
    margin: Duration,
}

impl LeaseHandle {
    pub fn deadline(&self) -> Instant {
        *self.last_ack.lock().expect("lease clock") + self.ttl - self.margin
    }

    /// Whether this node may still act as a member.
    pub fn valid(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && Instant::now() < self.deadline()
    }
}

pub struct Lease {
    handle: LeaseHandle,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Lease {
    /// Grants a lease and registers `alive/NODE` on it. Fails while another
    /// incarnation of this node still holds its key (it must expire and be
    /// fenced, or be revoked on a clean shutdown).
    pub async fn join(
        client: &Client,
        endpoints: &[String],
        keys: &Keys,
        node: &str,
        ttl: Duration,
        margin: Duration,
    ) -> Result<Lease, ClusterError> {
        let mut c = client.clone();
        let sent = Instant::now();
        let grant = c
            .lease_grant(ttl.as_secs() as i64, None)
            .await
            .map_err(ClusterError::etcd(" lease grant"))?;
        let id = grant.id();
        let key = keys.alive(node);
        let alive = Alive {
            node: node.into(),
            pid: std::process::id(),
        };
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                encode(&alive),
                Some(PutOptions::new().with_lease(id)),
            )]);
        let resp = c.txn(txn).await.map_err(ClusterError::etcd(""))?;
        if !resp.succeeded() {
            let _ = c.lease_revoke(id).await;
            return Err(ClusterError::StillHeld {
                key,
                node: node.into(),
            });
        }
        let incarnation = resp.header().map(|h| h.revision()).unwrap_or(0);
        let handle = LeaseHandle {
            id,
            incarnation,
            last_ack: Arc::new(Mutex::new(sent)),
            lost: Arc::new(AtomicBool::new(false)),
            ttl,
            margin,
        };
        let keeper = tokio::spawn(keep_alive(endpoints.to_vec(), handle.clone()));
        Ok(Lease { handle, keeper })
    }

    pub fn handle(&self) -> &LeaseHandle {
        &self.handle
    }

    /// A clean leave: the key goes at once and nobody needs to fence us.
    pub async fn revoke(self, client: &Client) {
        let mut c = client.clone();
        if let Err(e) = c.lease_revoke(self.handle.id).await {
            tracing::warn!("revoking lease: {e}");
        }
    }
}

/// Renews every TTL/4. Each renewal waits at most TTL/4 for its answer.
/// The stream lives on a client of one member; one that fails is opened
/// again on the next member: a balanced channel can go on routing to a
/// member that just died for longer than the lease lasts.
async fn keep_alive(endpoints: Vec<String>, h: LeaseHandle) {
    let period = h.ttl / 4;
    let mut stream = None;
    let mut next_member = 0;
    loop {
        let sent = Instant::now();
        if stream.is_none() {
            stream = open_stream(&endpoints, &mut next_member, h.id, period).await;
        }
        if let Some((keeper, answers)) = stream.as_mut() {
            let answer = tokio::time::timeout(period, async {
                keeper.keep_alive().await?;
                answers.message().await
            })
            .await;
            match answer {
                Ok(Ok(Some(a))) if a.ttl() > 0 => {
                    *h.last_ack.lock().expect("lease clock") = sent;
                    crate::metrics::METRICS.renewal(Some(sent.elapsed()));
                }
                Ok(Ok(Some(_))) => {
                    tracing::error!(lease = h.id, "lease expired");
                    h.lost.store(true, Ordering::Release);
                    return;
                }
                Ok(Ok(None)) => stream = None,
                Ok(Err(e)) => {
                    crate::metrics::METRICS.renewal(None);
                    tracing::warn!("lease keep-alive: {e}");
                    stream = None;
                }
                Err(_) => {
                    crate::metrics::METRICS.renewal(None);
                    tracing::warn!("lease keep-alive: no answer in {period:?}");
                    stream = None;
                }
            }
        } else {
            // No member opened a stream: this period's renewal is lost.
            crate::metrics::METRICS.renewal(None);
        }
        tokio::time::sleep_until((sent + period).into()).await;
    }
}

/// A keep-alive stream on the first member that opens one within `period`,
/// trying them in turn from `*next`; a refused connection (a dead member)
/// moves on at once. Connecting is lazy: only an opened stream proves a member.
async fn open_stream(
    endpoints: &[String],
    next: &mut usize,
    lease: i64,
    period: Duration,
) -> Option<(LeaseKeeper, LeaseKeepAliveStream)> {
    let started = Instant::now();
    for _ in 0..endpoints.len() {
        let left = period.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let endpoint = &endpoints[*next % endpoints.len()];
        *next += 1;
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(left)
            .with_timeout(period);
        let attempt = async {
            let mut client = Client::connect([endpoint], Some(options)).await?;
            client.lease_keep_alive(lease).await
        };
        match tokio::time::timeout(left, attempt).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => tracing::warn!("lease keep-alive stream: {endpoint}: {e}"),
            Err(_) => tracing::warn!("lease keep-alive stream: {endpoint}: no answer in {left:?}"),
        }
    }
    None
}
