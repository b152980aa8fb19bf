//! Prometheus text metrics: sessions, logins, directory latency, back-end
//! errors. Plain atomics; `/metrics` renders them on request.
use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use fulmar_daemon::metrics::{Histogram, Kind, Text};

use crate::{config::Protocol, penalty::sync::SyncCounts};

const PROTOCOLS: [Protocol; 4] = [
    Protocol::Imap,
    Protocol::Pop3,
    Protocol::Smtp,
    Protocol::Submission,
];
/// Upper bounds (seconds) of the directory latency histogram.
static LATENCY_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5];

#[derive(Debug, Clone, Copy)]
pub enum LoginResult {
    Ok,
    Failed,
    Unavailable,
    /// Refused unchecked: too many failures from the address or for the
    /// account.
    Throttled,
}

#[derive(Default)]
struct PerProtocol {
    sessions: AtomicU64,
    active: AtomicU64,
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    logins_unavailable: AtomicU64,
    logins_throttled: AtomicU64,
    backend_errors: AtomicU64,
}

/// Name, type, help and the field of a per-protocol series.
type Series = (
    &'static str,
    Kind,
    &'static str,
    fn(&PerProtocol) -> &AtomicU64,
);

pub struct Metrics {
    per: [PerProtocol; 4],
    directory: Histogram,
    /// The tier's shared penalty schedule (`crate::penalty::sync`).
    pub penalty_sync: SyncCounts,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            per: Default::default(),
            directory: Histogram::new(&LATENCY_BUCKETS),
            penalty_sync: SyncCounts::default(),
        }
    }
}

/// Counts a session as active until dropped.
pub struct SessionGuard<'a>(&'a PerProtocol);

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    fn of(&self, p: Protocol) -> &PerProtocol {
        &self.per[PROTOCOLS.iter().position(|q| *q == p).unwrap_or(0)]
    }

    pub fn session(&self, p: Protocol) -> SessionGuard<'_> {
        let per = self.of(p);
        per.sessions.fetch_add(1, Relaxed);
        per.active.fetch_add(1, Relaxed);
        SessionGuard(per)
    }

    pub fn active_sessions(&self) -> u64 {
        self.per.iter().map(|p| p.active.load(Relaxed)).sum()
    }

    pub fn login(&self, p: Protocol, result: LoginResult) {
        let per = self.of(p);
        match result {
            LoginResult::Ok => &per.logins_ok,
            LoginResult::Failed => &per.logins_failed,
            LoginResult::Unavailable => &per.logins_unavailable,
            LoginResult::Throttled => &per.logins_throttled,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn backend_error(&self, p: Protocol) {
        self.of(p).backend_errors.fetch_add(1, Relaxed);
    }

    pub fn directory_latency(&self, d: Duration) {
        self.directory.observe(d);
    }

    /// The exposition text (format 0.0.4).
    pub fn render(&self) -> String {
        let mut t = Text::default();
        let series: [Series; 3] = [
            (
                "fulmar_proxy_sessions_total",
                Kind::Counter,
                "Sessions accepted.",
                |p| &p.sessions,
            ),
            (
                "fulmar_proxy_sessions_active",
                Kind::Gauge,
                "Sessions open now.",
                |p| &p.active,
            ),
            (
                "fulmar_proxy_backend_errors_total",
                Kind::Counter,
                "Back-end connections that failed or broke.",
                |p| &p.backend_errors,
            ),
        ];
        for (name, kind, help, get) in series {
            t.family(name, kind, help);
            for p in PROTOCOLS {
                t.sample(
                    name,
                    &[("protocol", p.name())],
                    get(self.of(p)).load(Relaxed),
                );
            }
        }
        let name = "fulmar_proxy_logins_total";
        t.family(name, Kind::Counter, "Logins by result.");
        for p in PROTOCOLS {
            let per = self.of(p);
            for (result, v) in [
                ("ok", &per.logins_ok),
                ("failed", &per.logins_failed),
                ("unavailable", &per.logins_unavailable),
                ("throttled", &per.logins_throttled),
            ] {
                t.sample(
                    name,
                    &[("protocol", p.name()), ("result", result)],
                    v.load(Relaxed),
                );
            }
        }
        let name = "fulmar_proxy_directory_seconds";
        t.family(name, Kind::Histogram, "Directory operation latency.");
        self.directory.render(&mut t, name, &[]);
        let sync = &self.penalty_sync;
        t.by(
            (
                "fulmar_proxy_penalty_sync_events_total",
                Kind::Counter,
                "Penalty events sent to peers, applied from them, and dropped (forged, stale, malformed).",
            ),
            "event",
            [
                ("sent", sync.sent.load(Relaxed)),
                ("applied", sync.applied.load(Relaxed)),
                ("rejected", sync.rejected.load(Relaxed)),
            ],
        );
        t.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts() {
        let m = Metrics::default();
        let guard = m.session(Protocol::Imap);
        m.login(Protocol::Imap, LoginResult::Failed);
        m.directory_latency(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("fulmar_proxy_sessions_active{protocol=\"imap\"} 1"));
        assert!(text.contains("fulmar_proxy_logins_total{protocol=\"imap\",result=\"failed\"} 1"));
        assert!(text.contains("fulmar_proxy_directory_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("fulmar_proxy_directory_seconds_bucket{le=\"0.0025\"} 0"));
        drop(guard);
        assert!(
            m.render()
                .contains("fulmar_proxy_sessions_active{protocol=\"imap\"} 0")
        );
    }
}
