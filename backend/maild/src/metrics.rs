//! `GET /metrics` of fulmar-maild: sessions per protocol, deliveries and
//! APPENDs by result, how long the store takes to make a message durable,
//! and quota use (fulmar-noded reports the volume's space). One set per
//! process (one instance per process), so the counters are a static.
use std::{
    collections::BTreeMap,
    sync::{
        LazyLock, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use fulmar_daemon::metrics::{Histogram, Kind, Text};

use crate::store::Store;

/// Seconds: an fsynced write is milliseconds; seconds mean a sick disk.
static STORE_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// An account at or above this share of its limit is "near its quota".
pub const NEAR_QUOTA: f64 = 0.9;

pub struct Metrics {
    /// protocol → (accepted, open now)
    sessions: Mutex<BTreeMap<&'static str, (u64, u64)>>,
    /// (protocol, result) → count
    deliveries: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    appends_ok: AtomicU64,
    appends_failed: AtomicU64,
    deliver: Histogram,
    append: Histogram,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    sessions: Mutex::default(),
    deliveries: Mutex::default(),
    appends_ok: AtomicU64::new(0),
    appends_failed: AtomicU64::new(0),
    deliver: Histogram::new(&STORE_BUCKETS),
    append: Histogram::new(&STORE_BUCKETS),
});

/// Counts a session as open until dropped.
pub struct SessionGuard(&'static str);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(s) = lock(&METRICS.sessions).get_mut(self.0) {
            s.1 -= 1;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn session(&'static self, protocol: &'static str) -> SessionGuard {
        let mut s = lock(&self.sessions);
        let e = s.entry(protocol).or_default();
        e.0 += 1;
        e.1 += 1;
        SessionGuard(protocol)
    }

    /// One recipient's delivery: `ok`, `over_quota` or `failed`, and how
    /// long the store took.
    pub fn delivery(&self, protocol: &'static str, result: &'static str, took: Duration) {
        *lock(&self.deliveries)
            .entry((protocol, result))
            .or_default() += 1;
        self.deliver.observe(took);
    }

    pub fn append(&self, ok: bool, took: Duration) {
        if ok {
            &self.appends_ok
        } else {
            &self.appends_failed
        }
        .fetch_add(1, Relaxed);
        self.append.observe(took);
    }

    pub fn render(&self, instance: &str, generation: u64, store: &Store) -> String {
        let mut t = Text::default();
        let g = generation.to_string();
        t.family(
            "fulmar_maild_instance_info",
            Kind::Gauge,
            "The instance this process serves and the generation it started with.",
        )
        .sample(
            "fulmar_maild_instance_info",
            &[("fulmar_instance", instance), ("generation", &g)],
            1,
        );
        let sessions = lock(&self.sessions).clone();
        let total = (
            "fulmar_maild_sessions_total",
            Kind::Counter,
            "Sessions accepted, by protocol.",
        );
        t.by(total, "protocol", sessions.iter().map(|(p, s)| (*p, s.0)));
        let open = (
            "fulmar_maild_sessions_active",
            Kind::Gauge,
            "Sessions open now, by protocol.",
        );
        t.by(open, "protocol", sessions.iter().map(|(p, s)| (*p, s.1)));
        let name = "fulmar_maild_deliveries_total";
        t.family(
            name,
            Kind::Counter,
            "Recipients delivered to (LMTP, SMTP), by result.",
        );
        for ((p, result), n) in lock(&self.deliveries).iter() {
            t.sample(name, &[("protocol", p), ("result", result)], n);
        }
        let name = "fulmar_maild_appends_total";
        t.family(name, Kind::Counter, "IMAP APPENDs, by result.");
        t.sample(name, &[("result", "ok")], self.appends_ok.load(Relaxed));
        t.sample(
            name,
            &[("result", "failed")],
            self.appends_failed.load(Relaxed),
        );
        let name = "fulmar_maild_store_seconds";
        t.family(
            name,
            Kind::Histogram,
            "Time to store a message durably, by operation.",
        );
        self.deliver.render(&mut t, name, &[("op", "deliver")]);
        self.append.render(&mut t, name, &[("op", "append")]);
        t.single(
            "fulmar_maild_mailbox_scans_total",
            Kind::Counter,
            "Syncs that read a mailbox's directory: its index was not kept or had missed a change from outside.",
            store.scans(),
        );
        let (accounts, used, near) = store.quota_tally(NEAR_QUOTA);
        t.single(
            "fulmar_maild_quota_accounts",
            Kind::Gauge,
            "Accounts with a quota whose use is counted (those used since the start).",
            accounts,
        );
        t.single(
            "fulmar_maild_quota_used_bytes",
            Kind::Gauge,
            "Bytes those accounts hold.",
            used,
        );
        t.single(
            "fulmar_maild_quota_near_accounts",
            Kind::Gauge,
            "Accounts at 90 % of their quota or more.",
            near,
        );
        t.finish()
    }
}
