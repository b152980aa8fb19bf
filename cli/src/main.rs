//! fulmar: the operator's tool, in the shape of iproute2's `ip`.
//!
//! One module per group of objects: [`balancer`] (service, real, flow,
//! stats, attach, save, monitor: sent to fulmar-lbd's socket),
//! [`realserver`], [`fence`], [`cluster`] (cluster, instance, node: etcd),
//! [`account`] (account, domain: the directory and the instances),
//! [`proxy`] and [`session`] (every proxy's admin endpoint, found through
//! the balancer's reals), and [`status`] (every tier at once).
#![forbid(unsafe_code)]
mod account;
mod balancer;
mod cluster;
mod fence;
mod proxy;
mod realserver;
mod session;
mod status;

use std::{path::PathBuf, process::ExitCode};

use fulmar_daemon::grammar::keyword;
use fulmar_lb::{command, config::DEFAULT_SOCKET, rows::Request};

const USAGE: &str = "\
Usage: fulmar [ OPTIONS ] OBJECT { COMMAND | help }
       fulmar [ -s ] -batch FILE
OBJECT := { service | real | flow | stats | attach | save | monitor | realserver | fence |
           cluster | instance | node | account | domain | proxy | session | status }
OPTIONS := { -j[son] | -p[retty] | -s[tatistics] (twice for more) |
             -b[atch] FILE (all lines or none; - reads stdin) |
             -S PATH | -so[cket] PATH (default /run/fulmar/lb.sock) |
             -F PATH | -fe[ncing] PATH (default /etc/fulmar/fencing.toml) |
             -C PATH | -cl[uster] PATH (default /etc/fulmar/cluster.toml) |
             -P PATH | -pro[vision] PATH (default /etc/fulmar/provision.toml) |
             -A PATH | -ad[min] PATH (default /etc/fulmar/admin.toml) | -V[ersion] | -h[elp] }
Every keyword may be shortened to an unambiguous prefix: fulmar ser sh, fulmar real se SVC REAL w 2.";

pub(crate) struct Options {
    pub(crate) json: bool,
    pub(crate) pretty: bool,
    pub(crate) stats: u8,
    pub(crate) batch: Option<String>,
    pub(crate) socket: PathBuf,
    pub(crate) fencing: PathBuf,
    pub(crate) cluster: PathBuf,
    pub(crate) provision: PathBuf,
    /// How to reach the proxies' admin endpoints.
    pub(crate) admin: PathBuf,
}

/// Runs a command's async work on a one-thread runtime.
pub(crate) fn block_on<T>(
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(work)
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut opts = Options {
        json: false,
        pretty: false,
        stats: 0,
        batch: None,
        socket: DEFAULT_SOCKET.into(),
        fencing: fulmar_fencing::config::DEFAULT_PATH.into(),
        cluster: fulmar_failover::config::DEFAULT_PATH.into(),
        provision: fulmar_provision::config::DEFAULT_PATH.into(),
        admin: fulmar_proxy::admin::client::DEFAULT_CLIENT_CONFIG.into(),
    };
    let mut rest = args.as_slice();
    while let Some(first) = rest.first().filter(|a| a.starts_with('-') && a.len() > 1) {
        let name = first.trim_start_matches('-');
        // One letter is the short option (-s, -S); longer words are prefixes.
        let option = match name {
            "j" => "json",
            "p" => "pretty",
            "s" => "statistics",
            "b" => "batch",
            "S" => "socket",
            "F" => "fencing",
            "C" => "cluster",
            "P" => "provision",
            "A" => "admin",
            "V" => "Version",
            "h" => "help",
            word => keyword(
                word,
                &[
                    "json",
                    "pretty",
                    "statistics",
                    "batch",
                    "socket",
                    "fencing",
                    "cluster",
                    "provision",
                    "admin",
                    "Version",
                    "help",
                ],
                "option",
            )?,
        };
        rest = &rest[1..];
        let mut value = || -> Result<String, String> {
            let v = rest
                .first()
                .cloned()
                .ok_or_else(|| format!("-{option} needs a value"))?;
            rest = &rest[1..];
            Ok(v)
        };
        match option {
            "json" => opts.json = true,
            "pretty" => opts.pretty = true,
            "statistics" => opts.stats = opts.stats.saturating_add(1),
            "batch" => opts.batch = Some(value()?),
            "socket" => opts.socket = value()?.into(),
            "fencing" => opts.fencing = value()?.into(),
            "cluster" => opts.cluster = value()?.into(),
            "provision" => opts.provision = value()?.into(),
            "admin" => opts.admin = value()?.into(),
            "Version" => {
                println!("fulmar {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            _ => {
                println!("{USAGE}");
                return Ok(());
            }
        }
    }
    if let Some(file) = &opts.batch {
        return balancer::batch(&opts, file);
    }
    let Some(object) = rest.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    if object == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    let mut objects = command::OBJECTS.to_vec();
    objects.extend([
        "realserver",
        "fence",
        "cluster",
        "instance",
        "node",
        "account",
        "domain",
        "proxy",
        "session",
        "status",
    ]);
    match keyword(object, &objects, "object")? {
        "realserver" => return realserver::run(&rest[1..]),
        // Local, like realserver: fencing needs no balancer daemon.
        "fence" => return fence::run(&rest[1..], &opts.fencing, opts.json),
        // The failover manager's objects talk to etcd, not to a daemon here.
        object @ ("cluster" | "instance" | "node") => {
            return cluster::run(object, &rest[1..], &opts.cluster, opts.json);
        }
        // The proxies' admin endpoints, found through the balancer.
        "proxy" => return proxy::run(&opts, &rest[1..]),
        "session" => return session::run(&opts, &rest[1..]),
        // Every tier, each from its own source.
        "status" => return status::run(&opts, &rest[1..]),
        // Provisioning talks to the directory and the instances.
        object @ ("account" | "domain") => {
            return account::run(object, &rest[1..], &opts);
        }
        _ => {}
    }
    // Parse here first: a typo is reported even when the daemon is down.
    let parsed = command::parse(rest)?;
    if let command::Command::Help(object) = parsed {
        println!("{}", command::usage(object));
        return Ok(());
    }
    let request = Request::Command {
        argv: rest.to_vec(),
        stats: opts.stats,
    };
    let monitor = parsed == command::Command::Monitor;
    balancer::exchange(&opts, &request, monitor)
}
