//! Prometheus text exposition (format 0.0.4) shared by every daemon: a
//! writer that keeps each family's HELP and TYPE before its samples and
//! escapes label values, a lock-free histogram, and the `GET /metrics`
//! endpoint itself.
use std::{
    fmt::{Display, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One scrape's text.
#[derive(Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.name()
        );
        self
    }

    /// One sample of the family just started (or of its `_bucket`, `_sum`,
    /// `_count` series).
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family whose samples differ in one label: (its value, the sample).
    pub fn by<'a, V: Display>(
        &mut self,
        (name, kind, help): (&str, Kind, &str),
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, V)>,
    ) -> &mut Self {
        self.family(name, kind, help);
        for (value, v) in samples {
            self.sample(name, &[(label, value)], v);
        }
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Display) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A latency histogram over fixed bounds (seconds), updated without locks.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The `_bucket`, `_sum` and `_count` samples under `labels` (the
    /// family's HELP/TYPE are the caller's, so several label sets can share one).
    pub fn render(&self, text: &mut Text, name: &str, labels: &[(&str, &str)]) {
        let bucket = format!("{name}_bucket");
        for (bound, v) in self.bounds.iter().zip(&self.buckets) {
            let le = bound.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            text.sample(&bucket, &l, v.load(Relaxed));
        }
        let count = self.count.load(Relaxed);
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        text.sample(&bucket, &l, count);
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        text.sample(&format!("{name}_sum"), labels, sum);
        text.sample(&format!("{name}_count"), labels, count);
    }
}

/// A request head may take this long; a scrape that stalls is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` with `render()`'s text; anything else is a 404.
/// Runs until the listener fails.
pub async fn serve(socket: TcpListener, render: Arc<dyn Fn() -> String + Send + Sync>) {
    while let Ok((mut tcp, _)) = socket.accept().await {
        let render = render.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            let read = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    let n = tcp.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&chunk[..n]);
                }
                std::io::Result::Ok(())
            };
            if !matches!(tokio::time::timeout(HEAD_TIMEOUT, read).await, Ok(Ok(()))) {
                return;
            }
            let response = if head.starts_with(b"GET /metrics ") {
                let body = render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let write = tcp.write_all(response.as_bytes());
            let _ = tokio::time::timeout(HEAD_TIMEOUT, write).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_histograms_render_in_the_text_format() {
        let mut t = Text::default();
        t.family("x_total", Kind::Counter, "Things.").sample(
            "x_total",
            &[("who", "a\"b\\c\nd")],
            3,
        );
        let h = Histogram::new(&[0.01, 0.1]);
        h.observe(Duration::from_millis(50));
        t.family("lat_seconds", Kind::Histogram, "Latency.");
        h.render(&mut t, "lat_seconds", &[("op", "x")]);
        let text = t.finish();
        assert!(text.starts_with("# HELP x_total Things.\n# TYPE x_total counter\n"));
        assert!(
            text.contains("x_total{who=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("lat_seconds_bucket{op=\"x\",le=\"0.01\"} 0\n"));
        assert!(text.contains("lat_seconds_bucket{op=\"x\",le=\"0.1\"} 1\n"));
        assert!(text.contains("lat_seconds_bucket{op=\"x\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("lat_seconds_sum{op=\"x\"} 0.05\n"));
        assert!(text.contains("lat_seconds_count{op=\"x\"} 1\n"));
    }
}
