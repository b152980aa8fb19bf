//! fulmar-maild: a back-end mail service instance (see the `fulmar_maild` library).
use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fulmar_maild::{
    Service,
    auth::Authenticator,
    config::MailConfig,
    delivery::{self, Delivery, Dialect},
    imap,
    metrics::METRICS,
    pop3,
    store::{INBOX, Store, lock::VolumeLock},
};
use tokio::net::TcpListener;

/// fulmar back-end mail service: one instance on its own volume (ROOT, the
/// mounted volume: config/mail.toml, mail/, run/lock, log/INSTANCE.log).
/// `run` takes the volume's lock (refused while another process holds it, or
/// when the volume has seen a newer generation), delivers by LMTP and SMTP
/// on the instance address into crash-safe maildirs and serves them by IMAP
/// and POP3 (logins checked by LDAP bind); Prometheus metrics at
/// `GET /metrics` on `metrics` when set.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The instance root [default: $FULMAR_MOUNT, set by fulmar-noded].
    #[arg(long, short = 'r')]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the instance until SIGTERM.
    Run {
        /// This node's name, recorded in the lock [default: $FULMAR_NODE,
        /// set by fulmar-noded, else the host name].
        #[arg(long)]
        node: Option<String>,
        /// The takeover generation [default: $FULMAR_GENERATION, else 0].
        #[arg(long)]
        generation: Option<u64>,
    },
    /// Create an account's mailbox (idempotent).
    AccountCreate { address: String },
    /// List an account's INBOX: UIDVALIDITY, then UID, flags and size per message.
    MailboxShow { address: String },
    /// Show an account's quota usage; with LIMIT, first give it its own
    /// limit (`2 GiB`, `none` for unlimited, `default` for the instance's).
    Quota {
        address: String,
        limit: Option<String>,
    },
    /// Health: each listener greets (LMTP and SMTP 220, IMAP * OK, POP3
    /// +OK) within 2 s and the volume takes a durable write. Exit status 0
    /// when healthy.
    Probe,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = match args.root {
        Some(root) => root,
        None => std::env::var_os("FULMAR_MOUNT")
            .map(PathBuf::from)
            .context("no --root and no FULMAR_MOUNT")?,
    };
    match args.command {
        Command::Run { node, generation } => run(root, node, generation),
        Command::AccountCreate { address } => {
            Store::open(&root)?.create_account(&address)?;
            println!("{address}: mailbox ready");
            Ok(())
        }
        Command::Probe => {
            let config = MailConfig::load(&root).map_err(anyhow::Error::msg)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                greets(config.lmtp, b"220").await?;
                let optional = [
                    (config.smtp, &b"220"[..]),
                    (config.imap, b"* OK"),
                    (config.pop3, b"+OK"),
                ];
                for (addr, greeting) in optional {
                    if let Some(addr) = addr {
                        greets(addr, greeting).await?;
                    }
                }
                // Implicit TLS greets only after a handshake: accepting is
                // what the probe can see without the client's trust.
                for addr in [config.imaps, config.pop3s, config.lmtps]
                    .into_iter()
                    .flatten()
                {
                    let connect = tokio::net::TcpStream::connect(addr);
                    match tokio::time::timeout(std::time::Duration::from_secs(2), connect).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => anyhow::bail!("{addr}: {e}"),
                        Err(_) => anyhow::bail!("{addr}: not accepting in 2s"),
                    }
                }
                Ok::<_, anyhow::Error>(())
            })?;
            fulmar_daemon::durable::storage_writable(&root).map_err(anyhow::Error::msg)?;
            println!("{}: healthy", config.instance);
            Ok(())
        }
        Command::Quota { address, limit } => {
            let config = MailConfig::load(&root).map_err(anyhow::Error::msg)?;
            let store = Store::open(&root)?.with_default_quota(config.quota);
            if let Some(limit) = limit {
                store.set_quota(
                    &address,
                    Some(&limit).filter(|l| *l != "default").map(String::as_str),
                )?;
            }
            match store.quota(&address)? {
                Some(u) => println!("{address}: {} of {} bytes used", u.used, u.limit),
                None => println!("{address}: unlimited"),
            }
            Ok(())
        }
        Command::MailboxShow { address } => {
            let mailbox = Store::open(&root)?.sync(&address, INBOX)?;
            println!(
                "uidvalidity {} uidnext {}",
                mailbox.uid_validity, mailbox.next_uid
            );
            for m in mailbox.messages.iter() {
                println!(
                    "{} {} {}",
                    m.uid,
                    if m.flags.is_empty() { "-" } else { &m.flags },
                    m.size
                );
            }
            Ok(())
        }
    }
}

fn run(root: PathBuf, node: Option<String>, generation: Option<u64>) -> Result<()> {
    let config = MailConfig::load(&root).map_err(anyhow::Error::msg)?;
    let node = match node.or_else(|| std::env::var("FULMAR_NODE").ok()) {
        Some(n) => n,
        None => fulmar_daemon::host_name().context("reading the host name")?,
    };
    let generation = match generation {
        Some(g) => g,
        None => match std::env::var("FULMAR_GENERATION") {
            Ok(g) => g.parse().context("FULMAR_GENERATION is not a number")?,
            Err(_) => 0,
        },
    };
    // Refused before anything is written, the log included.
    let lock = VolumeLock::acquire(&root, &node, generation)?;
    let log_dir = root.join("log");
    std::fs::create_dir_all(&log_dir).with_context(|| log_dir.display().to_string())?;
    let log_path = log_dir.join(format!("{}.log", config.instance));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| log_path.display().to_string())?;
    fulmar_daemon::init_logging_to(log);
    if let Some(previous) = &lock.previous {
        tracing::info!(node = %previous.node, generation = previous.generation, pid = previous.pid, "took over from");
    }
    let store = Arc::new(
        Store::open(&root)?
            .with_default_quota(config.quota)
            .with_limits(config.max_mailboxes, config.max_subscriptions),
    );
    let auth = Authenticator::load(&root, &config).map_err(anyhow::Error::msg)?;
    let tls = match &config.tls {
        Some(t) => Some(
            fulmar_daemon::tls_acceptor(
                &MailConfig::path(&root, &t.certificate),
                &MailConfig::path(&root, &t.key),
            )
            .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    let runtime = fulmar_daemon::runtime()?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&config).await?;
        tracing::info!(instance = %config.instance, lmtp = %config.lmtp, smtp = ?config.smtp, imap = ?config.imap, pop3 = ?config.pop3, node = %lock.owner.node, generation = lock.owner.generation, "serving");
        eprintln!("fulmar-maild: {} serving {}", config.instance, listeners.describe(&config));
        fulmar_daemon::notify("READY=1");
        let service = Arc::new(Service {
            store,
            config: config.clone(),
            auth,
            tls,
        });
        let delivery = |dialect| {
            Arc::new(Delivery {
                service: service.clone(),
                dialect,
            })
        };
        let lmtp = delivery::serve(listeners.lmtp, delivery(Dialect::Lmtp));
        let smtp = optional(listeners.smtp, |l| delivery::serve(l, delivery(Dialect::Smtp)));
        let imap = optional(listeners.imap, |l| imap::serve(l, service.clone()));
        let pop3 = optional(listeners.pop3, |l| pop3::serve(l, service.clone()));
        // Implicit TLS: the config check made sure there is an acceptor.
        let acceptor = || service.tls.clone().expect("[tls] for implicit TLS");
        let imaps = optional(listeners.imaps, |l| imap::serve_tls(l, service.clone(), acceptor()));
        let pop3s = optional(listeners.pop3s, |l| pop3::serve_tls(l, service.clone(), acceptor()));
        let lmtps = optional(listeners.lmtps, |l| {
            delivery::serve_tls(l, delivery(Dialect::Lmtp), acceptor())
        });
        if let Some(listener) = listeners.metrics {
            let store = service.store.clone();
            let (instance, generation) = (config.instance.clone(), lock.owner.generation);
            let render = Arc::new(move || METRICS.render(&instance, generation, &store));
            tokio::spawn(fulmar_daemon::metrics::serve(listener, render));
        }
        let alive = alive(root.clone(), lock.owner.node.clone(), lock.owner.generation);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            served = lmtp => served.context("LMTP listener")?,
            served = smtp => served.context("SMTP listener")?,
            served = imap => served.context("IMAP listener")?,
            served = pop3 => served.context("POP3 listener")?,
            served = imaps => served.context("IMAPS listener")?,
            served = pop3s => served.context("POP3S listener")?,
            served = lmtps => served.context("LMTP (TLS) listener")?,
            _ = alive => {}
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        }
        drop(lock);
        Ok(())
    })
}

/// How often the service stamps the volume as alive.
const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Stamps `run/alive.NODE` with the generation and the wall clock (ms),
/// durably, every 250 ms while the service runs: after a fenced or
/// self-fenced handover the volume itself tells when the last holder last
/// wrote (the partition test checks it against the lease). A stamp that
/// fails is logged, not fatal: the probe's write check judges the storage.
async fn alive(root: std::path::PathBuf, node: String, generation: u64) {
    let path = root.join("run").join(format!("alive.{node}"));
    let mut tick = tokio::time::interval(ALIVE_EVERY);
    let mut failing = false;
    loop {
        tick.tick().await;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let stamp = format!("{generation} {ms}\n");
        let path = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            fulmar_daemon::durable::replace(&path, stamp.as_bytes())
        })
        .await;
        match written {
            Ok(Ok(())) => failing = false,
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!("alive stamp: {e}");
            }
            _ => {}
        }
    }
}

/// Every listener, bound before the instance says it is ready.
struct Listeners {
    lmtp: TcpListener,
    smtp: Option<TcpListener>,
    imap: Option<TcpListener>,
    pop3: Option<TcpListener>,
    imaps: Option<TcpListener>,
    pop3s: Option<TcpListener>,
    lmtps: Option<TcpListener>,
    metrics: Option<TcpListener>,
}

impl Listeners {
    async fn bind(config: &MailConfig) -> Result<Self> {
        async fn bind(what: &str, addr: Option<SocketAddr>) -> Result<Option<TcpListener>> {
            match addr {
                Some(addr) => Ok(Some(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("{what} on {addr}"))?,
                )),
                None => Ok(None),
            }
        }
        Ok(Self {
            lmtp: bind("LMTP", Some(config.lmtp))
                .await?
                .expect("always bound"),
            smtp: bind("SMTP", config.smtp).await?,
            imap: bind("IMAP", config.imap).await?,
            pop3: bind("POP3", config.pop3).await?,
            imaps: bind("IMAPS", config.imaps).await?,
            pop3s: bind("POP3S", config.pop3s).await?,
            lmtps: bind("LMTP (TLS)", config.lmtps).await?,
            metrics: bind("metrics", config.metrics).await?,
        })
    }

    fn describe(&self, config: &MailConfig) -> String {
        [
            ("LMTP", Some(config.lmtp)),
            ("SMTP", config.smtp),
            ("IMAP", config.imap),
            ("POP3", config.pop3),
            ("IMAPS", config.imaps),
            ("POP3S", config.pop3s),
            ("LMTP (TLS)", config.lmtps),
            ("metrics", config.metrics),
        ]
        .iter()
        .filter_map(|(what, addr)| addr.map(|a| format!("{what} on {a}")))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// Serves an optional listener; without one, never finishes.
async fn optional<F: std::future::Future<Output = std::io::Result<()>>>(
    listener: Option<TcpListener>,
    serve: impl FnOnce(TcpListener) -> F,
) -> std::io::Result<()> {
    match listener {
        Some(l) => serve(l).await,
        None => std::future::pending().await,
    }
}

/// Whether the listener at `addr` sends a greeting starting with `expect`.
async fn greets(addr: std::net::SocketAddr, expect: &[u8]) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut greeting = [0u8; 64];
        let mut got = 0;
        while got < expect.len() {
            match stream.read(&mut greeting[got..]).await? {
                0 => break,
                n => got += n,
            }
        }
        Ok::<_, std::io::Error>(greeting[..got].starts_with(expect))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), check).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => anyhow::bail!("{addr}: no {} greeting", String::from_utf8_lossy(expect)),
        Ok(Err(e)) => anyhow::bail!("{addr}: {e}"),
        Err(_) => anyhow::bail!("{addr}: no greeting in 2s"),
    }
}
