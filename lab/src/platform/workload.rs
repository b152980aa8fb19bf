//! A mail client workload on the client host, through the balancer's VIP
//! and the proxies (`workload.py`): per account one thread delivering
//! numbered messages over SMTP and one logging in over IMAP; what the
//! client saw, read back as events; and what the accounts' mailboxes hold.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{Lab, topology};

const SCRIPT: &str = include_str!("workload.py");

/// One outcome the client saw; `at` is wall-clock seconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message the proxy accepted (250 to the end of DATA).
    Ack { user: String, seq: u64, at: f64 },
    /// A delivery that failed (the client would retry later).
    Nack { user: String, seq: u64, at: f64 },
    /// A login (with SELECT) that started at `at` and took `secs`.
    Login {
        user: String,
        ok: bool,
        at: f64,
        secs: f64,
    },
}

impl Event {
    fn parse(line: &str) -> Option<Event> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let user = f.get(1)?.to_string();
        Some(match *f.first()? {
            "ack" => Event::Ack {
                user,
                seq: f.get(2)?.parse().ok()?,
                at: f.get(3)?.parse().ok()?,
            },
            "nack" => Event::Nack {
                user,
                seq: f.get(2)?.parse().ok()?,
                at: f.get(3)?.parse().ok()?,
            },
            "login" => Event::Login {
                user,
                ok: *f.get(2)? == "ok",
                at: f.get(3)?.parse().ok()?,
                secs: f.get(4)?.parse().ok()?,
            },
            _ => return None,
        })
    }
}

pub struct Workload {
    pid: u32,
    stop: PathBuf,
    /// Names this run's messages: a mailbox keeps those of earlier runs.
    pub run: String,
}

/// Wall-clock seconds now (the workload's time base).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Workload {
    /// Starts it for `users` (uid, password); it runs until `stop`.
    pub fn start(lab: &mut Lab, work: &Path, users: &[(&str, &str)]) -> Result<Workload> {
        let stop = work.join("workload.stop");
        let _ = std::fs::remove_file(&stop);
        let script = work.join("workload.py");
        std::fs::write(&script, SCRIPT)?;
        let run = format!("{}", (now() * 1000.0) as u64);
        let mut args = vec![script.to_string_lossy().into_owned()];
        args.push(stop.to_string_lossy().into_owned());
        args.push(run.clone());
        args.extend(users.iter().map(|(u, p)| format!("{u}:{p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let pid = lab.spawn("client", "workload", "python3", &args)?;
        Ok(Workload { pid, stop, run })
    }

    /// Everything the client saw so far.
    pub fn events(&self, lab: &Lab) -> Vec<Event> {
        lab.log("client", "workload")
            .lines()
            .filter_map(Event::parse)
            .collect()
    }

    /// The client's lines for failed logins, with what the server said.
    pub fn failures(&self, lab: &Lab) -> Vec<String> {
        lab.log("client", "workload")
            .lines()
            .filter(|l| l.starts_with("login ") && l.contains(" fail "))
            .map(String::from)
            .collect()
    }

    /// Waits until what the client saw satisfies `done`.
    pub fn wait(
        &self,
        lab: &Lab,
        within: Duration,
        what: &str,
        done: impl Fn(&[Event]) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + within;
        while !done(&self.events(lab)) {
            if Instant::now() > deadline {
                bail!(
                    "the client did not see {what} within {within:?}; it saw:\n{}",
                    tail(&lab.log("client", "workload"), 30)
                );
            }
            sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops it (each thread finishes what it is doing) and returns every
    /// event.
    pub fn stop(self, lab: &mut Lab) -> Result<Vec<Event>> {
        std::fs::write(&self.stop, "")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while lab.try_wait(self.pid).is_none() {
            if Instant::now() > deadline {
                bail!("the workload did not stop within 30 s");
            }
            sleep(Duration::from_millis(50));
        }
        let log = lab.log("client", "workload");
        if !log.lines().any(|l| l == "done") {
            bail!("the workload failed:\n{}", tail(&log, 30));
        }
        Ok(self.events(lab))
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sequence numbers acknowledged to `user`.
pub fn acked(events: &[Event], user: &str) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Ack { user: u, seq, .. } if u == user => Some(*seq),
            _ => None,
        })
        .collect()
}

/// When `user` logged in, after `from`: (start, seconds) of each success.
pub fn logins_after(events: &[Event], user: &str, from: f64) -> Vec<(f64, f64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Login {
                user: u,
                ok: true,
                at,
                secs,
            } if u == user && *at >= from => Some((*at, *secs)),
            _ => None,
        })
        .collect()
}

/// How many of `user`'s logins failed in [from, to).
pub fn failed_logins(events: &[Event], user: &str, from: f64, to: f64) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(e, Event::Login { user: u, ok: false, at, .. }
                if u == user && *at >= from && *at < to)
        })
        .count()
}

/// The longest time `user` went unserved while a fault lasted (from
/// `from` to `to`): the longest span from the start of one successful
/// login to the end of the next successful one, over the pairs that reach
/// into the window. A normal pair spans two logins and a pause; a fault
/// stretches it by the time nothing got through.
pub fn outage(events: &[Event], user: &str, from: f64, to: f64) -> Option<f64> {
    let ok = logins_after(events, user, 0.0);
    ok.windows(2)
        .filter(|w| w[1].0 >= from && w[0].0 <= to)
        .map(|w| w[1].0 + w[1].1 - w[0].0)
        .reduce(f64::max)
}

/// `user`'s INBOX read through the VIP: each sequence number of `run`
/// stored → how many copies.
pub fn stored(lab: &Lab, run: &str, user: &str, password: &str) -> Result<BTreeMap<u64, usize>> {
    let script = format!(
        r#"
import imaplib, re
m = imaplib.IMAP4("{vip}", 143, timeout=30)
m.login("{user}", "{password}")
n = int(m.select("INBOX", readonly=True)[1][0])
if n:
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (X-SEQ)])")
    for part in data:
        if isinstance(part, tuple):
            found = re.search(rb"X-Seq: {run}\.(\d+)", part[1])
            if found:
                print(found.group(1).decode())
m.logout()
"#,
        vip = topology::VIP4
    );
    let out = lab.exec("client", "python3", &["-c", &script])?;
    if !out.status.success() {
        bail!(
            "reading {user}'s INBOX: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut seen = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let seq: u64 = line.parse().context("an X-Seq")?;
        *seen.entry(seq).or_default() += 1;
    }
    Ok(seen)
}
