//! A mixed IMAP session load: each client repeats whole sessions (LOGIN,
//! SELECT, FETCH of ten messages' headers and of one whole, STORE, APPEND,
//! UID STORE \Deleted and UID EXPUNGE of what it appended, LOGOUT) and
//! every command's latency is kept. The mailbox ends the size it began.
use std::{net::SocketAddr, time::Instant};

use anyhow::{Context, Result};
use tokio::{io::BufReader, net::TcpStream};

use super::{ADDRESS, PASSWORD, answer, message};

/// Commands per session.
pub const COMMANDS: usize = 9;

/// The commands of a session, as the breakdown names them.
pub const NAMES: [&str; COMMANDS] = [
    "LOGIN",
    "SELECT",
    "FETCH hdr",
    "FETCH body",
    "STORE",
    "APPEND",
    "UID STORE",
    "EXPUNGE",
    "LOGOUT",
];

#[derive(Clone, Copy)]
pub struct Mixed {
    pub commands_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The median latency of each command (`NAMES`).
    pub p50_by_command: [f64; COMMANDS],
}

/// `clients` clients, each running `sessions` sessions one after another.
pub fn run(to: SocketAddr, clients: usize, sessions: usize) -> Result<Mixed> {
    let runtime = crate::lab::client_runtime()?;
    runtime.block_on(async move {
        let started = Instant::now();
        let mut workers = Vec::new();
        for w in 0..clients {
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(sessions * COMMANDS);
                for s in 0..sessions {
                    session(to, w * sessions + s, &mut latencies).await?;
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        // Latencies in session order: command i of every session at i mod 9.
        let mut all = Vec::new();
        let mut by_command: [Vec<f64>; COMMANDS] = Default::default();
        for w in workers {
            for (i, ms) in w.await??.into_iter().enumerate() {
                by_command[i % COMMANDS].push(ms);
                all.push(ms);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let at = |v: &mut Vec<f64>, q: f64| {
            v.sort_by(f64::total_cmp);
            v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
        };
        Ok(Mixed {
            commands_per_second: all.len() as f64 / secs,
            p50_ms: at(&mut all, 0.50),
            p99_ms: at(&mut all, 0.99),
            p50_by_command: by_command.map(|mut v| at(&mut v, 0.5)),
        })
    })
}

/// One session; each command's latency (ms) goes to `latencies`. A
/// command answered anything but OK fails the bench.
async fn session(to: SocketAddr, n: usize, latencies: &mut Vec<f64>) -> Result<()> {
    let tcp = TcpStream::connect(to).await?;
    tcp.set_nodelay(true)?;
    let mut conn = BufReader::new(tcp);
    answer(&mut conn, "", "").await?;
    let k = 1 + n % 10;
    let body = message(900_000_000 + n);
    let flag = if n.is_multiple_of(2) {
        "+FLAGS"
    } else {
        "-FLAGS"
    };
    let mut uid = String::new();
    let steps = [
        ("a", format!("LOGIN {ADDRESS} {PASSWORD}")),
        ("b", "SELECT INBOX".to_string()),
        ("c", "FETCH 1:10 (FLAGS RFC822.SIZE ENVELOPE)".to_string()),
        ("d", format!("FETCH {k} (BODY.PEEK[])")),
        ("e", format!("STORE {k} {flag} (\\Flagged)")),
        (
            "f",
            format!("APPEND INBOX (\\Seen) {{{}+}}\r\n{body}", body.len()),
        ),
        ("g", "UID STORE {uid} +FLAGS.SILENT (\\Deleted)".to_string()),
        ("h", "UID EXPUNGE {uid}".to_string()),
        ("z", "LOGOUT".to_string()),
    ];
    for (tag, text) in steps {
        let text = text.replace("{uid}", &uid);
        let sent = Instant::now();
        let got = answer(&mut conn, tag, &text).await?;
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
        if tag == "f" {
            // `f OK [APPENDUID validity uid] ...`
            uid = got
                .tagged
                .split_once("APPENDUID ")
                .and_then(|(_, rest)| rest.split([' ', ']']).nth(1))
                .context("APPEND answered without APPENDUID")?
                .to_string();
        }
    }
    Ok(())
}
