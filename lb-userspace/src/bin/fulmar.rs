//! fulmar: the operator's tool, in the shape of iproute2's `ip`.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::PathBuf,
    process::ExitCode,
};

use fulmar_lb::{
    command::{self, keyword},
    config::DEFAULT_SOCKET,
    netlink,
    rows::{Reply, Request, Response},
};

const USAGE: &str = "\
Usage: fulmar [ OPTIONS ] OBJECT { COMMAND | help }
       fulmar [ -s ] -batch FILE
OBJECT := { service | real | flow | stats | attach | save | monitor | realserver | fence |
           cluster | instance | node | account | domain }
OPTIONS := { -j[son] | -p[retty] | -s[tatistics] (twice for more) |
             -b[atch] FILE (all lines or none; - reads stdin) |
             -S PATH | -so[cket] PATH (default /run/fulmar/lb.sock) |
             -F PATH | -fe[ncing] PATH (default /etc/fulmar/fencing.toml) |
             -C PATH | -cl[uster] PATH (default /etc/fulmar/cluster.toml) |
             -P PATH | -pro[vision] PATH (default /etc/fulmar/provision.toml) | -V[ersion] | -h[elp] }
Every keyword may be shortened to an unambiguous prefix: fulmar ser sh, fulmar real se SVC REAL w 2.";

const REALSERVER_USAGE: &str = "\
Usage: fulmar realserver prepare VIP [ VIP ... ]
       fulmar realserver unprepare [ VIP ... ]
       fulmar realserver show
Puts each VIP on lo and sets arp_ignore=1, arp_announce=2, arp_notify=1 and
ndisc_notify=1,
so this host accepts directly routed traffic without claiming the VIP.";

struct Options {
    json: bool,
    pretty: bool,
    stats: u8,
    batch: Option<String>,
    socket: PathBuf,
    fencing: PathBuf,
    cluster: PathBuf,
    provision: PathBuf,
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
        cluster: fulmar_backend::config::DEFAULT_PATH.into(),
        provision: fulmar_backend::provision::config::DEFAULT_PATH.into(),
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
        return batch(&opts, file);
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
    ]);
    match keyword(object, &objects, "object")? {
        "realserver" => return realserver(&rest[1..]),
        // Local, like realserver: fencing needs no balancer daemon.
        "fence" => return fulmar_fencing::cli::run(&rest[1..], &opts.fencing, opts.json, keyword),
        // The failover manager's objects talk to etcd, not to a daemon here.
        object @ ("cluster" | "instance" | "node") => {
            return fulmar_backend::cli::run(object, &rest[1..], &opts.cluster, opts.json, keyword);
        }
        // Provisioning talks to the directory and the instances.
        object @ ("account" | "domain") => {
            return fulmar_backend::provision::cli::run(
                object,
                &rest[1..],
                &opts.provision,
                opts.json,
                keyword,
            );
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
    exchange(&opts, &request, monitor)
}

fn batch(opts: &Options, file: &str) -> Result<(), String> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading stdin: {e}"))?;
    } else {
        text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    }
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Check the grammar locally, for line numbers without a daemon.
    for (n, line) in lines.iter().enumerate() {
        let words = command::split_line(line);
        if !words.is_empty() {
            command::parse(&words).map_err(|e| format!("{file}: line {}: {e}", n + 1))?;
        }
    }
    exchange(opts, &Request::Batch { lines }, false).map_err(|e| format!("{file}: {e}"))
}

fn exchange(opts: &Options, request: &Request, stream: bool) -> Result<(), String> {
    let mut conn = UnixStream::connect(&opts.socket).map_err(|e| {
        format!(
            "cannot reach fulmar-lbd at {}: {e} (is it running? `systemctl status fulmar-lbd`)",
            opts.socket.display()
        )
    })?;
    let mut line = serde_json::to_string(request).expect("request serializes");
    line.push('\n');
    conn.write_all(line.as_bytes())
        .map_err(|e| format!("sending: {e}"))?;
    let reader = BufReader::new(conn);
    for line in reader.lines() {
        let line = line.map_err(|e| format!("reading the answer: {e}"))?;
        let response: Response = serde_json::from_str(&line)
            .map_err(|e| format!("garbled answer from fulmar-lbd: {e}"))?;
        match response {
            Response::Error(e) => return Err(e),
            Response::Ok(reply) => print(opts, &reply),
        }
        if !stream {
            return Ok(());
        }
    }
    if stream {
        Err("fulmar-lbd closed the monitor".into())
    } else {
        Err("fulmar-lbd did not answer".into())
    }
}

fn print(opts: &Options, reply: &Reply) {
    let mut out = std::io::stdout().lock();
    let text = if opts.json {
        if matches!(reply, Reply::Done(t) if t.is_empty()) {
            return;
        }
        format!("{}\n", reply.json(opts.pretty))
    } else {
        reply.text()
    };
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn realserver(args: &[String]) -> Result<(), String> {
    let Some(verb) = args.first() else {
        println!("{REALSERVER_USAGE}");
        return Ok(());
    };
    let verb = keyword(
        verb,
        &["prepare", "unprepare", "show", "help"],
        "realserver command",
    )
    .map_err(|e| format!("{e}\n{REALSERVER_USAGE}"))?;
    let vips: Vec<IpAddr> = args[1..]
        .iter()
        .map(|a| a.parse().map_err(|_| format!("{a:?} is not an IP address")))
        .collect::<Result<_, _>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match verb {
        "prepare" => {
            if vips.is_empty() {
                return Err(format!("give the VIPs to accept\n{REALSERVER_USAGE}"));
            }
            runtime
                .block_on(netlink::prepare_realserver(&vips))
                .map_err(|e| e.to_string())?;
            println!("ready for direct routing: {} on lo", list(&vips));
        }
        "unprepare" => {
            runtime
                .block_on(netlink::unprepare_realserver(&vips))
                .map_err(|e| e.to_string())?;
        }
        "show" => {
            for (name, want) in netlink::REALSERVER_SYSCTLS {
                let path = format!("/proc/sys/{}", name.replace('.', "/"));
                let have = std::fs::read_to_string(&path).unwrap_or_default();
                let mark = if have.trim() == want { "ok" } else { "NOT SET" };
                println!("{name} = {} (want {want}) {mark}", have.trim());
            }
            let owned = runtime
                .block_on(async {
                    let nl = netlink::Netlink::connect()?;
                    let lo = nl.ifindex("lo").await?;
                    nl.owned_addresses(lo).await
                })
                .map_err(|e| e.to_string())?;
            println!(
                "vips on lo: {}",
                list(&owned.into_iter().collect::<Vec<_>>())
            );
        }
        _ => println!("{REALSERVER_USAGE}"),
    }
    Ok(())
}

fn list(vips: &[IpAddr]) -> String {
    if vips.is_empty() {
        "none".into()
    } else {
        vips.iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}
