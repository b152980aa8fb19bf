//! fulmar-maild: a back-end mail service instance (see `fulmar_backend::mail`).
use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fulmar_backend::mail::{
    config::MailConfig,
    lmtp::{self, Lmtp},
    lock::VolumeLock,
    maildir::{INBOX, Store},
};

/// fulmar back-end mail service: one instance on its own volume (ROOT, the
/// mounted volume: config/mail.toml, mail/, run/lock, log/INSTANCE.log).
/// `run` takes the volume's lock (refused while another process holds it, or
/// when the volume has seen a newer generation) and delivers by LMTP on the
/// instance address into crash-safe maildirs.
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
        /// This node's name, recorded in the lock [default: the host name].
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
        Command::MailboxShow { address } => {
            let mailbox = Store::open(&root)?.sync(&address, INBOX)?;
            println!(
                "uidvalidity {} uidnext {}",
                mailbox.uid_validity, mailbox.next_uid
            );
            for m in mailbox.messages {
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
    let node = match node {
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
    let store = Arc::new(Store::open(&root)?);
    let runtime = fulmar_daemon::runtime()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.lmtp)
            .await
            .with_context(|| format!("LMTP on {}", config.lmtp))?;
        tracing::info!(instance = %config.instance, lmtp = %config.lmtp, node = %lock.owner.node, generation = lock.owner.generation, "serving");
        eprintln!("fulmar-maild: {} serving LMTP on {}", config.instance, config.lmtp);
        fulmar_daemon::notify("READY=1");
        let lmtp = Arc::new(Lmtp { store, config });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            served = lmtp::serve(listener, lmtp) => served.context("LMTP listener")?,
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        }
        drop(lock);
        Ok(())
    })
}
