//! `fulmar session list|kick`: every proxy's sessions (the proxies being
//! the balancer's reals), listed or ended.
use fulmar_daemon::grammar::keyword;
use fulmar_proxy::admin::{Reply, Request, Selector, SessionInfo};
use serde_json::json;

use crate::{Options, proxy::Inventory};

pub const USAGE: &str = "\
Usage: fulmar session [ list ] [ account ACCOUNT | backend HOST ] [ proxy NAME ]
       fulmar session kick { account ACCOUNT | backend HOST | all } [ proxy NAME ]
kick ends each session at its next command boundary: IMAP gets
* BYE [UNAVAILABLE], POP3 -ERR [SYS/TEMP], SMTP 421 after its transaction.
ACCOUNT is the name the back-end knows (fulmar-maild: the address).";

struct Filter {
    select: Selector,
    proxy: Option<String>,
}

fn parse(args: &[String], kick: bool) -> Result<Filter, String> {
    let mut filter = Filter {
        select: Selector::All,
        proxy: None,
    };
    let mut chosen = false;
    let mut rest = args;
    while let Some(word) = rest.first() {
        let what = keyword(
            word,
            &["account", "backend", "all", "proxy"],
            "session filter",
        )?;
        let value = || {
            rest.get(1)
                .cloned()
                .ok_or(format!("{what} needs a value\n{USAGE}"))
        };
        match what {
            "all" => {
                chosen = true;
                rest = &rest[1..];
                continue;
            }
            "account" => filter.select = Selector::Account(value()?),
            "backend" => filter.select = Selector::Backend(value()?),
            _ => filter.proxy = Some(value()?),
        }
        chosen |= what != "proxy";
        rest = &rest[2..];
    }
    if kick && !chosen {
        return Err(format!("kick what? account, backend or all\n{USAGE}"));
    }
    Ok(filter)
}

pub fn run(opts: &Options, args: &[String]) -> Result<(), String> {
    let (kick, args) = match args.first().map(String::as_str) {
        Some(w) if !matches!(w, "account" | "backend" | "all" | "proxy") => {
            match keyword(w, &["list", "kick", "help"], "session command")? {
                "help" => {
                    println!("{USAGE}");
                    return Ok(());
                }
                verb => (verb == "kick", &args[1..]),
            }
        }
        _ => (false, args),
    };
    let filter = parse(args, kick)?;
    crate::block_on(async {
        let inventory = Inventory::take(opts).await?;
        if kick {
            let n = kick_sessions(&inventory, &filter.select, filter.proxy.as_deref()).await?;
            if opts.json {
                println!("{}", json!({"kicked": n}));
            } else {
                println!("{n} sessions asked to end");
            }
        } else {
            list(opts, &inventory, &filter).await?;
        }
        if inventory.warn_unreachable() && kick {
            return Err("some proxies did not answer: their sessions were not kicked".into());
        }
        Ok(())
    })
}

/// Asks every proxy (or the one named) to end the sessions `select`
/// picks; returns how many were asked.
pub async fn kick_sessions(
    inventory: &Inventory,
    select: &Selector,
    only: Option<&str>,
) -> Result<usize, String> {
    let mut n = 0;
    for p in &inventory.proxies {
        if only.is_some_and(|name| name != p.name) {
            continue;
        }
        let request = Request::Kick {
            select: select.clone(),
        };
        match inventory.doors.at(p.addresses[0]).ask(&request).await? {
            Reply::Kicked(k) => n += k,
            other => return Err(format!("{}: unexpected answer {other:?}", p.name)),
        }
    }
    Ok(n)
}

async fn list(opts: &Options, inventory: &Inventory, filter: &Filter) -> Result<(), String> {
    let mut rows: Vec<(String, SessionInfo)> = Vec::new();
    for p in &inventory.proxies {
        if filter.proxy.as_ref().is_some_and(|name| *name != p.name) {
            continue;
        }
        match inventory
            .doors
            .at(p.addresses[0])
            .ask(&Request::List)
            .await?
        {
            Reply::Sessions(s) => rows.extend(s.into_iter().map(|s| (p.name.clone(), s))),
            other => return Err(format!("{}: unexpected answer {other:?}", p.name)),
        }
    }
    rows.retain(|(_, s)| filter.select.matches(s));
    if opts.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(proxy, s)| {
                let mut v = serde_json::to_value(s).expect("sessions serialize");
                v["proxy"] = proxy.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::Value::from(rows));
        return Ok(());
    }
    println!(
        "{:<12} {:<16} {:<10} {:<28} {:<40} {:<16} {:>7}",
        "PROXY", "SESSION", "PROTOCOL", "ACCOUNT", "CLIENT", "BACKEND", "AGE"
    );
    for (proxy, s) in &rows {
        println!(
            "{:<12} {:<16} {:<10} {:<28} {:<40} {:<16} {:>6}s{}",
            proxy,
            s.id,
            s.protocol.name(),
            s.account.as_deref().unwrap_or("-"),
            s.client,
            s.backend.as_deref().unwrap_or("-"),
            s.age_seconds,
            if s.kicked { " (ending)" } else { "" }
        );
    }
    Ok(())
}
