//! Developer and lab tasks: `cargo xtask <command>`.
mod attach;
mod attack;
mod bench;
mod build;
mod failover_bench;
mod lab;
mod mail_bench;
mod proxy_bench;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "fulmar build, attach and lab tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the XDP object (the same build lb-userspace embeds) and print its path.
    BuildEbpf(build::Args),
    /// Load the balancer, attach it to an interface and pin it under /sys/fs/bpf/fulmar/.
    Attach(attach::AttachArgs),
    /// Remove the attachment; with no attachment left, remove every pinned object.
    Detach(attach::DetachArgs),
    /// Bring the lab (the reference topology with every built tier) up or down.
    Lab(lab::Args),
    /// Measure the data path: ns/packet by BPF_PROG_TEST_RUN and Mpps over veth.
    Bench(bench::Args),
    /// Measure the proxy: IMAP sessions/s and latency vs direct, memory per idle session.
    ProxyBench(proxy_bench::Args),
    /// Measure failover: node failures in a lab cluster, detection/fencing/start vs a planned move.
    FailoverBench(failover_bench::Args),
    /// Measure the mail service: LMTP deliveries/s and IMAP FETCH vs Dovecot, same run.
    MailBench(mail_bench::Args),
    /// Run the hostile-client suite against the lab through the VIP: what
    /// each attack got and what it cost.
    Attack(attack::Args),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::BuildEbpf(args) => build::run(args),
        Command::Attach(args) => attach::attach(args),
        Command::Detach(args) => attach::detach(args),
        Command::Lab(args) => lab::run(args),
        Command::Bench(args) => bench::run(args),
        Command::ProxyBench(args) => proxy_bench::run(args),
        Command::FailoverBench(args) => failover_bench::run(args),
        Command::MailBench(args) => mail_bench::run(args),
        Command::Attack(args) => attack::run(args),
    }
}
