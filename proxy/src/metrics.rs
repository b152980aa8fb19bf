//! Prometheus text metrics: sessions, logins, directory latency, back-end
//! errors. Plain atomics; `/metrics` renders them on request.
use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use crate::config::Protocol;

const PROTOCOLS: [Protocol; 4] = [
    Protocol::Imap,
    Protocol::Pop3,
    Protocol::Smtp,
    Protocol::Submission,
];
/// Upper bounds (seconds) of the directory latency histogram.
const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5];

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
    &'static str,
    &'static str,
    fn(&PerProtocol) -> &AtomicU64,
);

#[derive(Default)]
pub struct Metrics {
    per: [PerProtocol; 4],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
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
        let secs = d.as_secs_f64();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// The exposition text (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let series: [Series; 3] = [
            (
                "fulmar_proxy_sessions_total",
                "counter",
                "Sessions accepted.",
                |p| &p.sessions,
            ),
            (
                "fulmar_proxy_sessions_active",
                "gauge",
                "Sessions open now.",
                |p| &p.active,
            ),
            (
                "fulmar_proxy_backend_errors_total",
                "counter",
                "Back-end connections that failed or broke.",
                |p| &p.backend_errors,
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for p in PROTOCOLS {
                let v = get(self.of(p)).load(Relaxed);
                let _ = writeln!(out, "{name}{{protocol=\"{}\"}} {v}", p.name());
            }
        }
        let name = "fulmar_proxy_logins_total";
        let _ = writeln!(
            out,
            "# HELP {name} Logins by result.\n# TYPE {name} counter"
        );
        for p in PROTOCOLS {
            let per = self.of(p);
            for (result, v) in [
                ("ok", &per.logins_ok),
                ("failed", &per.logins_failed),
                ("unavailable", &per.logins_unavailable),
                ("throttled", &per.logins_throttled),
            ] {
                let _ = writeln!(
                    out,
                    "{name}{{protocol=\"{}\",result=\"{result}\"}} {}",
                    p.name(),
                    v.load(Relaxed)
                );
            }
        }
        let name = "fulmar_proxy_directory_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Directory operation latency.\n# TYPE {name} histogram"
        );
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let v = self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {v}");
        }
        let count = self.latency_count.load(Relaxed);
        let sum = self.latency_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        out
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
