//! `cargo xtask mail-bench`: the built-in mail service against Debian's
//! Dovecot on the same machine, same client, same run: LMTP deliveries per
//! second (each acknowledged only when durable), IMAP FETCH of whole
//! messages, then a mixed IMAP session load with its latency (`mixed`) and
//! the memory an idle session costs (`memory`). Rounds alternate between
//! the two servers; each figure is the median of its rounds.
mod memory;
mod mixed;
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use fulmar_lab::{Lab, LabSpec, mail};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

const CLIENT: &str = "198.18.7.10";
const MAILD: &str = "198.18.7.11";
const DOVECOT: &str = "198.18.7.12";
const DIRECTORY: &str = "198.18.7.20";
const BASE: &str = "dc=fulmar,dc=test";
const ADDRESS: &str = "bench@mail.test";
const PASSWORD: &str = "bench-secret";

#[derive(clap::Args)]
pub struct Args {
    /// Messages delivered per server per round.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Concurrent LMTP and IMAP connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Rounds per server (alternating); figures are medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Mixed-load IMAP sessions per client per round (9 commands each).
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Idle sessions held open to weigh one.
    #[arg(long, default_value_t = 200)]
    idle: usize,
}

pub fn run(args: Args) -> Result<()> {
    crate::lab::require_root("mail-bench")?;
    let maild = crate::lab::cargo_build_bins(&["fulmar-maild"], true)?.join("fulmar-maild");
    let spec = LabSpec::lan(&[
        ("cl", &format!("{CLIENT}/24")),
        ("fm", &format!("{MAILD}/24")),
        ("dv", &format!("{DOVECOT}/24")),
        ("dir", &format!("{DIRECTORY}/24")),
    ]);
    let mut lab = Lab::build(&spec).context("building the bench lab")?;
    let work = lab.log_dir().join("bench");
    let directory = crate::lab::one_account_directory(
        BASE,
        "proxy-secret",
        "bench",
        PASSWORD,
        ADDRESS,
        "mail1",
    );
    mail::start_slapd(&mut lab, "dir", DIRECTORY, &work.join("ldap"), &directory)?;
    let dovecot_pid = mail::start_dovecot(
        &mut lab,
        "dv",
        DOVECOT,
        &work.join("dovecot"),
        &[],
        mail::Passwords::Own(&[(ADDRESS, PASSWORD)]),
        None,
    )?;
    let root = work.join("maild");
    std::fs::create_dir_all(root.join("config"))?;
    std::fs::write(root.join("config/ldap.secret"), "proxy-secret")?;
    std::fs::write(
        root.join("config/mail.toml"),
        format!(
            "instance = \"mail1\"\nlmtp = \"{MAILD}:24\"\nimap = \"{MAILD}:143\"\n\
             [directory]\nurls = [\"ldap://{DIRECTORY}:389\"]\nbase_dn = \"{BASE}\"\n\
             bind_dn = \"cn=proxy,{BASE}\"\nbind_password_file = \"ldap.secret\"\n"
        ),
    )?;
    let root_arg = root.to_str().context("path")?;
    let maild_path = maild.to_str().context("path")?;
    let created = std::process::Command::new(maild_path)
        .args(["--root", root_arg, "account-create", ADDRESS])
        .status()?;
    if !created.success() {
        bail!("fulmar-maild account-create failed");
    }
    let maild_pid = lab.spawn("fm", "maild", maild_path, &["--root", root_arg, "run"])?;
    mail::wait_port(&lab, "fm", MAILD, 24)?;
    mail::wait_port(&lab, "fm", MAILD, 143)?;

    let servers = [("fulmar-maild", MAILD), ("Dovecot", DOVECOT)];
    let mut delivered = [Vec::new(), Vec::new()];
    let mut fetched = [Vec::new(), Vec::new()];
    let mut mixed_runs = [Vec::new(), Vec::new()];
    let (n, c) = (args.messages, args.concurrency);
    // Warm both (process pools, page cache) before anything counts.
    for (_, addr) in servers {
        let lmtp: SocketAddr = format!("{addr}:24").parse()?;
        lab.in_host("cl", move || deliver(lmtp, 50, c))??;
    }
    for round in 0..args.rounds {
        // Alternate who goes first, so neither always gets a warmer machine.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let addr = servers[i].1;
            let lmtp: SocketAddr = format!("{addr}:24").parse()?;
            let imap: SocketAddr = format!("{addr}:143").parse()?;
            delivered[i].push(lab.in_host("cl", move || deliver(lmtp, n, c))??);
            fetched[i].push(lab.in_host("cl", move || fetch(imap, c))??);
            let sessions = args.sessions;
            mixed_runs[i].push(lab.in_host("cl", move || mixed::run(imap, c, sessions))??);
        }
    }
    let pids = [maild_pid, dovecot_pid];
    let mut idle_kib = [0.0; 2];
    for (i, (_, addr)) in servers.iter().enumerate() {
        let imap: SocketAddr = format!("{addr}:143").parse()?;
        let (root, n) = (pids[i], args.idle);
        idle_kib[i] = lab.in_host("cl", move || memory::per_idle_session(imap, root, n))??;
    }
    let median = |v: &mut Vec<Rate>| {
        v.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
        v[v.len() / 2]
    };
    let d = [median(&mut delivered[0]), median(&mut delivered[1])];
    let f = [median(&mut fetched[0]), median(&mut fetched[1])];
    println!(
        "LMTP: {n} deliveries of {} bytes per round over {c} connections; IMAP: {c} sessions \
         each FETCH 1:* (BODY.PEEK[]); median of {} alternating rounds\n",
        message(0).len(),
        args.rounds
    );
    println!(
        "{:<14} {:>14} {:>16} {:>12}",
        "server", "deliveries/s", "FETCH msgs/s", "FETCH MiB/s"
    );
    for (i, (name, _)) in servers.iter().enumerate() {
        println!(
            "{name:<14} {:>14.0} {:>16.0} {:>12.1}",
            d[i].per_second,
            f[i].per_second,
            f[i].bytes_per_second / (1 << 20) as f64
        );
    }
    println!(
        "{:<14} {:>13.2}× {:>15.2}×   (target: deliveries/s >= Dovecot's)",
        "maild/Dovecot",
        d[0].per_second / d[1].per_second,
        f[0].per_second / f[1].per_second
    );
    let by_rate = |v: &mut Vec<mixed::Mixed>| {
        v.sort_by(|a, b| a.commands_per_second.total_cmp(&b.commands_per_second));
        v[v.len() / 2]
    };
    let m = [by_rate(&mut mixed_runs[0]), by_rate(&mut mixed_runs[1])];
    println!(
        "\nMixed IMAP: {c} clients, each {} sessions per round of LOGIN, SELECT, FETCH 1:10 \
         (FLAGS RFC822.SIZE ENVELOPE), FETCH (BODY.PEEK[]), STORE, APPEND, UID STORE, \
         UID EXPUNGE, LOGOUT; median round. Idle: {} sessions logged in on INBOX, \
         PSS of the server's processes per session.\n",
        args.sessions, args.idle
    );
    println!(
        "{:<14} {:>12} {:>9} {:>9} {:>16}",
        "server", "commands/s", "p50 ms", "p99 ms", "KiB/idle session"
    );
    for (i, (name, _)) in servers.iter().enumerate() {
        println!(
            "{name:<14} {:>12.0} {:>9.2} {:>9.2} {:>16.1}",
            m[i].commands_per_second, m[i].p50_ms, m[i].p99_ms, idle_kib[i]
        );
    }
    let names: Vec<String> = mixed::NAMES.iter().map(|n| format!("{n:>10}")).collect();
    let by_command = |m: &mixed::Mixed| -> String {
        m.p50_by_command
            .iter()
            .map(|ms| format!("{ms:>10.2}"))
            .collect()
    };
    println!("\nmedian ms by command\n{:<14}{}", "server", names.concat());
    for (i, (name, _)) in servers.iter().enumerate() {
        println!("{name:<14}{}", by_command(&m[i]));
    }
    println!(
        "\n{:<14} {:>11.2}× {:>8.2}× {:>8.2}× {:>15.2}×   (target: commands/s >= 1×, p99 <= 1×)",
        "maild/Dovecot",
        m[0].commands_per_second / m[1].commands_per_second,
        m[0].p50_ms / m[1].p50_ms,
        m[0].p99_ms / m[1].p99_ms,
        idle_kib[0] / idle_kib[1]
    );
    Ok(())
}

#[derive(Clone, Copy)]
struct Rate {
    per_second: f64,
    bytes_per_second: f64,
}

/// A ~4 KiB text message.
fn message(i: usize) -> String {
    let mut m = format!(
        "From: load@elsewhere.test\r\nTo: {ADDRESS}\r\nSubject: bench {i}\r\n\
         Message-ID: <{i}.{}@bench.test>\r\n\r\n",
        std::process::id()
    );
    for line in 0..56 {
        m += &format!("line {line:02} of message {i:08}: the quick brown fox jumps over\r\n");
    }
    m
}

async fn reply(conn: &mut BufReader<TcpStream>, line: &mut String) -> Result<String> {
    loop {
        line.clear();
        if conn.read_line(line).await? == 0 {
            bail!("connection closed");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.clone());
        }
    }
}

/// `n` deliveries over `c` LMTP connections; each counts at its 250.
fn deliver(to: SocketAddr, n: usize, c: usize) -> Result<Rate> {
    let runtime = crate::lab::client_runtime()?;
    runtime.block_on(async move {
        let started = Instant::now();
        let mut workers = Vec::new();
        for w in 0..c {
            let count = n / c + usize::from(w < n % c);
            workers.push(tokio::spawn(async move {
                let tcp = TcpStream::connect(to).await?;
                tcp.set_nodelay(true)?;
                let mut conn = BufReader::new(tcp);
                let mut line = String::new();
                reply(&mut conn, &mut line).await?;
                conn.get_mut().write_all(b"LHLO bench.test\r\n").await?;
                reply(&mut conn, &mut line).await?;
                let mut bytes = 0usize;
                for i in 0..count {
                    let body = message(w * 1_000_000 + i);
                    let data = format!(
                        "MAIL FROM:<load@elsewhere.test>\r\nRCPT TO:<{ADDRESS}>\r\nDATA\r\n"
                    );
                    conn.get_mut().write_all(data.as_bytes()).await?;
                    for step in ["MAIL", "RCPT", "DATA"] {
                        let r = reply(&mut conn, &mut line).await?;
                        if !(r.starts_with('2') || r.starts_with('3')) {
                            bail!("{step}: {}", r.trim_end());
                        }
                    }
                    conn.get_mut()
                        .write_all(format!("{body}.\r\n").as_bytes())
                        .await?;
                    let r = reply(&mut conn, &mut line).await?;
                    if !r.starts_with("250") {
                        bail!("delivery: {}", r.trim_end());
                    }
                    bytes += body.len();
                }
                conn.get_mut().write_all(b"QUIT\r\n").await?;
                Ok::<_, anyhow::Error>(bytes)
            }));
        }
        let mut bytes = 0;
        for w in workers {
            bytes += w.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(Rate {
            per_second: n as f64 / secs,
            bytes_per_second: bytes as f64 / secs,
        })
    })
}

/// `c` sessions, each fetching every message of the INBOX whole.
fn fetch(to: SocketAddr, c: usize) -> Result<Rate> {
    let runtime = crate::lab::client_runtime()?;
    runtime.block_on(async move {
        let mut sessions = Vec::new();
        for _ in 0..c {
            let tcp = TcpStream::connect(to).await?;
            tcp.set_nodelay(true)?;
            let mut conn = BufReader::new(tcp);
            command(&mut conn, "", "").await?;
            command(&mut conn, "a", &format!("LOGIN {ADDRESS} {PASSWORD}")).await?;
            command(&mut conn, "b", "SELECT INBOX").await?;
            sessions.push(conn);
        }
        let started = Instant::now();
        let mut workers = Vec::new();
        for mut conn in sessions {
            workers.push(tokio::spawn(async move {
                let counted = command(&mut conn, "f", "FETCH 1:* (BODY.PEEK[])").await?;
                command(&mut conn, "z", "LOGOUT").await?;
                Ok::<_, anyhow::Error>(counted)
            }));
        }
        let (mut messages, mut bytes) = (0, 0);
        for w in workers {
            let (m, b) = w.await??;
            messages += m;
            bytes += b;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(Rate {
            per_second: messages as f64 / secs,
            bytes_per_second: bytes as f64 / secs,
        })
    })
}

/// Sends a command (none for the greeting) and reads to its tagged reply,
/// skipping literals by their length. Returns (FETCH responses, literal bytes).
async fn command(conn: &mut BufReader<TcpStream>, tag: &str, text: &str) -> Result<(usize, usize)> {
    answer(conn, tag, text).await.map(|a| (a.fetches, a.bytes))
}

/// What a command was answered.
struct Answer {
    fetches: usize,
    bytes: usize,
    /// The tagged line (the greeting for none).
    tagged: String,
}

/// `command`, keeping the tagged line.
async fn answer(conn: &mut BufReader<TcpStream>, tag: &str, text: &str) -> Result<Answer> {
    if !tag.is_empty() {
        conn.get_mut()
            .write_all(format!("{tag} {text}\r\n").as_bytes())
            .await?;
    }
    let (mut fetches, mut bytes) = (0, 0);
    let mut line = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        line.clear();
        if conn.read_until(b'\n', &mut line).await? == 0 || Instant::now() > deadline {
            bail!("no answer to {tag} {text}");
        }
        if line.starts_with(b"* ") && line.windows(7).any(|w| w == b" FETCH ") {
            fetches += 1;
        }
        // A literal: `{N}\r\n` at the end of the line, then N bytes.
        if let Some(open) = line.iter().rposition(|&b| b == b'{')
            && line.ends_with(b"}\r\n")
            && let Ok(n) = std::str::from_utf8(&line[open + 1..line.len() - 3])
                .unwrap_or("")
                .parse::<usize>()
        {
            let mut skip = vec![0u8; n];
            conn.read_exact(&mut skip).await?;
            bytes += n;
            continue;
        }
        if tag.is_empty() || line.starts_with(format!("{tag} ").as_bytes()) {
            if !tag.is_empty() && !line.starts_with(format!("{tag} OK").as_bytes()) {
                bail!(
                    "{tag} {text}: {}",
                    String::from_utf8_lossy(&line).trim_end()
                );
            }
            return Ok(Answer {
                fetches,
                bytes,
                tagged: String::from_utf8_lossy(&line).into_owned(),
            });
        }
    }
}
