//! `cargo xtask proxy-bench`: IMAP LOGIN+SELECT+LOGOUT sessions per second
//! and latency, through the proxy and straight to the same Dovecot back-end,
//! from one load generator in one run; then the proxy's memory per idle
//! proxied session. The proxy's lookup cache is off: every login costs an
//! LDAP search and an LDAP bind.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use fulmar_lab::{Lab, LabSpec, mail};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

const PROXY: &str = "198.18.6.2";
const CLIENT: &str = "198.18.6.10";
const BACKEND: &str = "198.18.6.11";
const DIRECTORY: &str = "198.18.6.20";
const BASE: &str = "dc=fulmar,dc=test";
const USER: (&str, &str) = ("bench", "bench-secret");

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of load per path.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Concurrent client sessions.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Idle logged-in sessions held for the memory figure.
    #[arg(long, default_value_t = 200)]
    idle: usize,
}

pub fn run(args: Args) -> Result<()> {
    crate::lab::require_root("proxy-bench")?;
    let proxyd = crate::lab::cargo_build_bins(&["fulmar-proxy"], true)?.join("fulmar-proxyd");
    let spec = LabSpec::lan(&[
        ("px", &format!("{PROXY}/24")),
        ("cl", &format!("{CLIENT}/24")),
        ("be", &format!("{BACKEND}/24")),
        ("dir", &format!("{DIRECTORY}/24")),
    ]);
    let mut lab = Lab::build(&spec).context("building the bench lab")?;
    let work = lab.log_dir().join("bench");
    let directory = crate::lab::one_account_directory(
        BASE,
        "proxy-secret",
        USER.0,
        USER.1,
        &format!("{}@mail.test", USER.0),
        BACKEND,
    );
    mail::start_slapd(&mut lab, "dir", DIRECTORY, &work.join("ldap"), &directory)?;
    // The back-end checks the password itself, so the direct path and the
    // proxied path cost it the same.
    mail::start_dovecot(
        &mut lab,
        "be",
        BACKEND,
        &work.join("be"),
        &[PROXY],
        mail::Passwords::Own(&[USER]),
        None,
    )?;
    let config = format!(
        "[[listen]]\nprotocol = \"imap\"\naddress = \"{PROXY}:143\"\ntls = \"none\"\n\
         [directory]\nurls = [\"ldap://{DIRECTORY}\"]\nbind_dn = \"cn=proxy,{BASE}\"\n\
         bind_password = \"proxy-secret\"\nbase_dn = \"{BASE}\"\ncache_ttl = \"0s\"\n\
         user_attribute = \"uid\"\n"
    );
    let config_path = work.join("proxy.toml");
    std::fs::write(&config_path, config)?;
    let pid = lab.spawn(
        "px",
        "proxy",
        proxyd.to_str().context("path")?,
        &["--config", config_path.to_str().context("path")?],
    )?;
    mail::wait_port(&lab, "px", PROXY, 143)?;

    let seconds = Duration::from_secs(args.seconds);
    let concurrency = args.concurrency;
    let direct: SocketAddr = format!("{BACKEND}:143").parse()?;
    let proxied: SocketAddr = format!("{PROXY}:143").parse()?;
    // Warm both paths (process pools, connection pools) before measuring.
    lab.in_host("cl", move || {
        load(direct, Duration::from_millis(300), concurrency)
    })??;
    lab.in_host("cl", move || {
        load(proxied, Duration::from_millis(300), concurrency)
    })??;
    let d = lab.in_host("cl", move || load(direct, seconds, concurrency))??;
    let p = lab.in_host("cl", move || load(proxied, seconds, concurrency))??;

    println!(
        "IMAP LOGIN+SELECT+LOGOUT, {concurrency} concurrent clients, {}s per path, \
         LDAP search + bind on every proxied login (cache off)\n",
        args.seconds
    );
    println!(
        "{:<22} {:>11} {:>9} {:>9} {:>7}",
        "path", "sessions/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, r) in [("direct to back-end", &d), ("through the proxy", &p)] {
        println!(
            "{name:<22} {:>11.0} {:>9.2} {:>9.2} {:>7}",
            r.rate, r.p50_ms, r.p99_ms, r.errors
        );
    }
    println!(
        "{:<22} {:>10.0}%   (target >= 70%)\n",
        "proxy / direct",
        100.0 * p.rate / d.rate
    );

    let before = rss_kib(pid)?;
    let idle = args.idle;
    let held = lab.in_host("cl", move || hold_idle(proxied, idle))??;
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before)) as f64 / held as f64;
    println!(
        "idle proxied sessions: {held}; proxy RSS {before} KiB -> {after} KiB = {per:.1} KiB per session (target <= 64 KiB)"
    );
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")
}

struct Figures {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// Sessions from this thread (so its sockets live in the client's netns).
fn load(to: SocketAddr, duration: Duration, concurrency: usize) -> Result<Figures> {
    let runtime = crate::lab::client_runtime()?;
    runtime.block_on(async move {
        let started = Instant::now();
        let deadline = started + duration;
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match session(to, false).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for w in workers {
            let (l, e) = w.await?;
            all.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort();
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Ok(Figures {
            rate: all.len() as f64 / elapsed,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            errors,
        })
    })
}

/// One LOGIN+SELECT+LOGOUT session; with `keep`, stops after SELECT and
/// returns the open connection.
async fn session(to: SocketAddr, keep: bool) -> Result<Option<BufReader<TcpStream>>> {
    let tcp = TcpStream::connect(to).await?;
    tcp.set_nodelay(true)?;
    let mut conn = BufReader::new(tcp);
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let steps: &[(&str, String)] = &[
        ("a", format!("a LOGIN {} {}\r\n", USER.0, USER.1)),
        ("b", "b SELECT INBOX\r\n".into()),
        ("c", "c LOGOUT\r\n".into()),
    ];
    for (tag, command) in steps {
        if keep && *tag == "c" {
            return Ok(Some(conn));
        }
        conn.get_mut().write_all(command.as_bytes()).await?;
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                bail!("closed during {tag}");
            }
            if line.starts_with(&format!("{tag} ")) {
                if !line.starts_with(&format!("{tag} OK")) {
                    bail!("{}", line.trim_end());
                }
                break;
            }
        }
    }
    Ok(None)
}

/// Opens `n` logged-in sessions and keeps them until the process's memory
/// was read (they close when this thread's runtime drops after a pause).
fn hold_idle(to: SocketAddr, n: usize) -> Result<usize> {
    let runtime = crate::lab::client_runtime()?;
    let held = runtime.block_on(async move {
        let mut held = Vec::new();
        for _ in 0..n {
            if let Ok(Some(c)) = session(to, true).await {
                held.push(c);
            }
        }
        held
    });
    let count = held.len();
    // The caller measures while these stay open.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(held);
        drop(runtime);
    });
    Ok(count)
}
