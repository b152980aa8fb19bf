//! A real Prometheus (Debian's package) in one lab host, scraping the
//! lab's daemons every second with the shipped alert rules loaded, and a
//! small client for its HTTP query API (run from inside the host's
//! namespace).
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use crate::{Lab, LabError};

/// Where the lab's Prometheus listens in its host.
pub const PORT: u16 = 9090;

/// One series of a query's answer: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

pub struct Prometheus {
    host: String,
    addr: String,
}

impl Prometheus {
    /// Starts `prometheus` in `host` on `addr`, scraping `jobs` (name →
    /// targets host:port) with `rules` loaded; returns once it is ready.
    pub fn start(
        lab: &mut Lab,
        host: &str,
        addr: &str,
        work: &Path,
        jobs: &[(&str, Vec<String>)],
        rules: &Path,
    ) -> Result<Prometheus, LabError> {
        std::fs::create_dir_all(work).map_err(|e| LabError::io(work, e))?;
        let mut config = format!(
            "# written by the lab\nglobal:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  \
             evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n",
            rules.display()
        );
        for (job, targets) in jobs {
            let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
            config += &format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            );
        }
        let path = work.join("prometheus.yml");
        std::fs::write(&path, config).map_err(|e| LabError::io(&path, e))?;
        let data = work.join("data");
        lab.spawn(
            host,
            "prometheus",
            "prometheus",
            &[
                &format!("--config.file={}", path.display()),
                &format!("--storage.tsdb.path={}", data.display()),
                &format!("--web.listen-address={addr}:{PORT}"),
            ],
        )?;
        let p = Prometheus {
            host: host.into(),
            addr: addr.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.get(lab, "/-/ready").map(|(code, _)| code) != Ok(200) {
            if Instant::now() > deadline {
                return Err(LabError::NotReady(format!(
                    "prometheus did not get ready:\n{}",
                    lab.log(host, "prometheus")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(p)
    }

    /// Its web address, as `lab up` prints it.
    pub fn url(&self) -> String {
        format!("http://{}:{PORT}/", self.addr)
    }

    /// (status code, body) of a GET from inside the host.
    fn get(&self, lab: &Lab, path: &str) -> Result<(u16, String), String> {
        let (addr, path) = (format!("{}:{PORT}", self.addr), path.to_string());
        lab.in_host(&self.host, move || -> Result<(u16, String), String> {
            let mut tcp = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
            tcp.set_read_timeout(Some(Duration::from_secs(5)))
                .map_err(|e| e.to_string())?;
            write!(tcp, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut text = String::new();
            tcp.read_to_string(&mut text).map_err(|e| e.to_string())?;
            let code = text
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("no status line in {text:?}"))?;
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            Ok((code, body.to_string()))
        })
        .map_err(|e| e.to_string())?
    }

    /// An instant query's series.
    pub fn query(&self, lab: &Lab, expr: &str) -> Result<Vec<Sample>, String> {
        let (code, body) = self.get(lab, &format!("/api/v1/query?query={}", encode(expr)))?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("{expr}: {body}"));
        }
        let mut out = Vec::new();
        for r in v["data"]["result"].as_array().into_iter().flatten() {
            let labels = r["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let value = r["value"][1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            out.push((labels, value));
        }
        Ok(out)
    }

    /// Waits until `expr` gives `n` series for which `ok` holds; returns them.
    pub fn wait_for(
        &self,
        lab: &Lab,
        expr: &str,
        n: usize,
        ok: impl Fn(&Sample) -> bool,
        within: Duration,
    ) -> Result<Vec<Sample>, String> {
        let deadline = Instant::now() + within;
        loop {
            let last = self.query(lab, expr);
            if let Ok(s) = &last
                && s.len() == n
                && s.iter().all(&ok)
            {
                return last;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{expr}: wanted {n} matching series; last: {last:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
