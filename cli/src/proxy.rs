//! `fulmar proxy list|drain|undrain`: the proxies are the balancer's reals
//! (one proxy may be a real by several addresses: IPv4 and IPv6), each
//! asked through its admin endpoint's TLS door who it is.
use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use fulmar_daemon::grammar::keyword;
use fulmar_lb::rows::{RealRow, Reply as LbReply};
use fulmar_proxy::admin::{
    Reply, Request, Status,
    client::{ClientConfig, Doors},
};
use serde_json::json;

use crate::{Options, balancer};

pub const USAGE: &str = "\
Usage: fulmar proxy [ list ]
       fulmar proxy drain NAME [ within DURATION ]
       fulmar proxy undrain NAME
The proxies are the balancer's reals, named by their admin endpoints
(-A FILE: port, CA, certificate name and token; default /etc/fulmar/admin.toml).
drain: the balancer sends the proxy no new flows, the proxy ends its
sessions one by one over DURATION (default 1m; IMAP BYE, POP3 -ERR, SMTP
421, each at a command boundary) and the command waits until it holds none.";

/// A proxy: its name, the real addresses it answers on, its state.
pub struct Proxy {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub status: Status,
}

pub struct Inventory {
    pub reals: Vec<RealRow>,
    pub proxies: Vec<Proxy>,
    /// Reals whose admin endpoint did not answer, and why.
    pub unreachable: Vec<(IpAddr, String)>,
    pub doors: Doors,
}

fn real_ip(real: &str) -> Option<IpAddr> {
    real.parse::<SocketAddr>()
        .map(|a| a.ip())
        .ok()
        .or_else(|| real.trim_matches(['[', ']']).parse().ok())
}

impl Inventory {
    pub async fn take(opts: &Options) -> Result<Inventory, String> {
        let doors = ClientConfig::load(&opts.admin)?.doors()?;
        let reals = match balancer::request(opts, &["real", "show"])? {
            LbReply::Reals(rows) => rows,
            _ => return Err("fulmar-lbd answered `real show` with something else".into()),
        };
        let mut ips: Vec<IpAddr> = reals.iter().filter_map(|r| real_ip(&r.real)).collect();
        ips.sort();
        ips.dedup();
        let mut asks = tokio::task::JoinSet::new();
        for ip in ips {
            let door = doors.at(ip);
            asks.spawn(async move { (ip, door.ask(&Request::Status).await) });
        }
        let mut by_name: BTreeMap<String, Proxy> = BTreeMap::new();
        let mut unreachable = Vec::new();
        while let Some(answer) = asks.join_next().await {
            let (ip, answer) = answer.map_err(|e| e.to_string())?;
            match answer {
                Ok(Reply::Status(status)) => {
                    let proxy = by_name.entry(status.name.clone()).or_insert(Proxy {
                        name: status.name.clone(),
                        addresses: Vec::new(),
                        status,
                    });
                    proxy.addresses.push(ip);
                    proxy.addresses.sort();
                }
                Ok(other) => unreachable.push((ip, format!("unexpected answer {other:?}"))),
                Err(e) => unreachable.push((ip, e)),
            }
        }
        unreachable.sort();
        Ok(Inventory {
            reals,
            proxies: by_name.into_values().collect(),
            unreachable,
            doors,
        })
    }

    pub fn find(&self, name: &str) -> Result<&Proxy, String> {
        self.proxies.iter().find(|p| p.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.proxies.iter().map(|p| p.name.as_str()).collect();
            format!("no proxy named {name} among the balancer's reals (known: {known:?})")
        })
    }

    /// Warns about reals that did not answer (their sessions are not
    /// seen); true when there were any.
    pub fn warn_unreachable(&self) -> bool {
        for (ip, why) in &self.unreachable {
            eprintln!("warning: real {ip}: admin endpoint: {why}");
        }
        !self.unreachable.is_empty()
    }
}

pub fn run(opts: &Options, args: &[String]) -> Result<(), String> {
    let verb = match args.first() {
        None => "list",
        Some(word) => keyword(word, &["list", "drain", "undrain", "help"], "proxy command")?,
    };
    if verb == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    crate::block_on(async {
        let inventory = Inventory::take(opts).await?;
        match verb {
            "list" => {
                list(opts, &inventory);
                Ok(())
            }
            "drain" => {
                let name = args.get(1).ok_or(USAGE)?;
                let within = match args.get(2).map(|w| w.trim_start_matches('-')) {
                    None => Duration::from_secs(60),
                    Some(w) if keyword(w, &["within"], "drain option").is_ok() => {
                        let d = args.get(3).ok_or("within needs a duration (20s, 5m)")?;
                        humantime::parse_duration(d).map_err(|e| format!("within {d}: {e}"))?
                    }
                    Some(other) => return Err(format!("unexpected {other:?}\n{USAGE}")),
                };
                drain(opts, &inventory, name, within).await
            }
            _ => {
                let name = args.get(1).ok_or(USAGE)?;
                undrain(opts, &inventory, name).await
            }
        }
    })
}

fn list(opts: &Options, inventory: &Inventory) {
    if opts.json {
        let rows: Vec<_> = inventory
            .proxies
            .iter()
            .map(|p| {
                json!({"name": p.name, "addresses": p.addresses, "sessions": p.status.sessions,
                       "draining": p.status.draining})
            })
            .collect();
        println!("{}", serde_json::Value::from(rows));
    } else {
        println!("{:<16} {:<40} {:>8} STATE", "NAME", "ADDRESSES", "SESSIONS");
        for p in &inventory.proxies {
            let addresses: Vec<String> = p.addresses.iter().map(IpAddr::to_string).collect();
            let state = if p.status.draining {
                "draining"
            } else {
                "serving"
            };
            println!(
                "{:<16} {:<40} {:>8} {state}",
                p.name,
                addresses.join(","),
                p.status.sessions
            );
        }
    }
    inventory.warn_unreachable();
}

/// Sets the proxy's reals to `state` on every service of the balancer.
fn set_reals(
    opts: &Options,
    inventory: &Inventory,
    proxy: &Proxy,
    state: &str,
) -> Result<usize, String> {
    let mut n = 0;
    for row in &inventory.reals {
        if real_ip(&row.real).is_some_and(|ip| proxy.addresses.contains(&ip)) {
            balancer::request(
                opts,
                &["real", "set", &row.service, &row.real, "state", state],
            )?;
            n += 1;
        }
    }
    Ok(n)
}

async fn drain(
    opts: &Options,
    inventory: &Inventory,
    name: &str,
    within: Duration,
) -> Result<(), String> {
    let proxy = inventory.find(name)?;
    // First the balancer: no new flow may reach the proxy while it drains.
    let reals = set_reals(opts, inventory, proxy, "drain")?;
    let door = inventory.doors.at(proxy.addresses[0]);
    door.ask(&Request::Drain {
        within_ms: within.as_millis() as u64,
    })
    .await?;
    let started = Instant::now();
    let total = proxy.status.sessions.max(1);
    let terminal = !opts.json && std::io::stdout().is_terminal();
    if !opts.json {
        println!(
            "{name}: {reals} reals drained at the balancer; ending {} sessions within {within:?}",
            proxy.status.sessions
        );
    }
    // The proxy cuts a kicked session that reaches no boundary in its
    // kick grace (30 s by default): past that, something is wrong.
    let give_up = within + Duration::from_secs(120);
    let mut last_print = None;
    loop {
        let status = match door.ask(&Request::Status).await? {
            Reply::Status(s) => s,
            other => return Err(format!("unexpected answer {other:?}")),
        };
        let elapsed = started.elapsed();
        report(
            opts,
            terminal,
            name,
            &status,
            total,
            elapsed,
            &mut last_print,
        );
        if status.sessions == 0 {
            if terminal {
                println!();
            }
            if !opts.json {
                println!(
                    "{name}: drained in {:.1} s; `fulmar proxy undrain {name}` puts it back",
                    elapsed.as_secs_f64()
                );
            }
            return Ok(());
        }
        if elapsed > give_up {
            return Err(format!(
                "{name} still holds {} sessions after {elapsed:?}",
                status.sessions
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Progress: a bar on a terminal, JSON lines with -j, else a line when
/// the count changed (at most one a second).
fn report(
    opts: &Options,
    terminal: bool,
    name: &str,
    status: &Status,
    total: usize,
    elapsed: Duration,
    last: &mut Option<(usize, Instant)>,
) {
    if opts.json {
        println!(
            "{}",
            json!({"proxy": name, "sessions": status.sessions, "elapsed_ms": elapsed.as_millis() as u64})
        );
        return;
    }
    if terminal {
        let done = total.saturating_sub(status.sessions) * 30 / total;
        print!(
            "\r[{}{}] {:>6} sessions left  {:>6.1} s",
            "#".repeat(done),
            " ".repeat(30 - done),
            status.sessions,
            elapsed.as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        return;
    }
    let due =
        last.is_none_or(|(n, at)| n != status.sessions && at.elapsed() >= Duration::from_secs(1));
    if due {
        println!(
            "{name}: {} sessions left after {:.1} s",
            status.sessions,
            elapsed.as_secs_f64()
        );
        *last = Some((status.sessions, Instant::now()));
    }
}

async fn undrain(opts: &Options, inventory: &Inventory, name: &str) -> Result<(), String> {
    let proxy = inventory.find(name)?;
    inventory
        .doors
        .at(proxy.addresses[0])
        .ask(&Request::Undrain)
        .await?;
    let reals = set_reals(opts, inventory, proxy, "up")?;
    if !opts.json {
        println!("{name}: serving again; {reals} reals up at the balancer");
    }
    Ok(())
}
