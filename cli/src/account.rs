//! `fulmar account ...` and `fulmar domain ...`.
use std::io::BufRead;

use fulmar_daemon::grammar::keyword;
use serde_json::json;

use fulmar_provision::{
    accounts, address,
    config::{ProvisionConfig, unknown_instance},
    directory,
    import::{self, Candidate, Password},
    mover,
    placement::Algorithm,
};
use fulmar_proxy::admin::Selector;

use crate::{Options, proxy::Inventory, session::kick_sessions};

pub const USAGE: &str = "\
Usage: fulmar account add ADDRESS { password PASS | password-file FILE }
                  [ alias ADDRESS ]... [ name NAME ]
                  [ instance NAME | placement ALGORITHM ] [ seed N ]
       fulmar account del ADDRESS [ keep-mail ]
       fulmar account show ADDRESS
       fulmar account list [ instance NAME ]
       fulmar account move ADDRESS to INSTANCE
       fulmar account import FILE [ format { csv | ldif } ] [ placement ALGORITHM ]
                  [ seed N ] [ jobs N ] [ dry-run ]
       fulmar domain add DOMAIN INSTANCE
       fulmar domain del DOMAIN
       fulmar domain show [ DOMAIN ]
ALGORITHM := { random | weighted | least-used | domain } (default: the config's)
The provisioning config is -P PATH (default /etc/fulmar/provision.toml).
`password-file -` reads the password from stdin (`password PASS` shows in
ps; keep it for scripts on single-user hosts). `add` writes the directory
entry, then creates the mailbox on the chosen instance; if that fails the
entry is removed again. `move` copies the mailbox (new UIDs, new
UIDVALIDITY), switches mailHost (the account's own from then on), ends the
account's sessions on every proxy the balancer knows (-S, -A: they reconnect
to the new instance), and keeps copying for the proxies' cache lifetime so
deliveries during the move are not lost. `import` reads CSV
(header: address, password | password_hash, aliases, name, instance) or
LDIF; `dry-run` prints the placement and the accounts per instance.";

pub fn run(object: &str, args: &[String], opts: &Options) -> Result<(), String> {
    let (config_path, json) = (opts.provision.as_path(), opts.json);
    let verbs: &[&str] = match object {
        "account" => &["add", "del", "show", "list", "move", "import", "help"],
        _ => &["add", "del", "show", "help"],
    };
    let verb = match args.first() {
        None => "show",
        Some(v) => {
            keyword(v, verbs, &format!("{object} command")).map_err(|e| format!("{e}\n{USAGE}"))?
        }
    };
    if verb == "help" || (object == "account" && args.is_empty()) {
        println!("{USAGE}");
        return Ok(());
    }
    let config = ProvisionConfig::load(config_path)?;
    let args = &args[1..];
    crate::block_on(async {
        match (object, verb) {
            ("account", "add") => add(&config, args, json).await,
            ("account", "del") => {
                let keep = match args.get(1) {
                    None => false,
                    Some(k) => keyword(k, &["keep-mail"], "account del option")? == "keep-mail",
                };
                let d = accounts::delete(&config, need(args, 0, "ADDRESS")?, keep).await?;
                if json {
                    println!("{}", json!(d));
                } else {
                    match d.messages_removed {
                        Some(n) => println!("{}: deleted, {n} messages removed", d.uid),
                        None => println!("{}: deleted, mailbox kept", d.uid),
                    }
                }
                Ok(())
            }
            ("account", "show") => {
                let s = accounts::show(&config, need(args, 0, "ADDRESS")?).await?;
                if json {
                    println!("{}", json!(s));
                    return Ok(());
                }
                let e = &s.entry;
                println!("{}  dn {}", e.uid, e.dn);
                println!("  addresses {}", e.addresses.join(" "));
                let route = match (&s.instance, s.via_domain) {
                    (Some(i), true) => format!("{i} (by its domain's entry)"),
                    (Some(i), false) => i.clone(),
                    (None, _) => "no configured instance".into(),
                };
                println!("  instance {route}");
                match (&s.folders, &s.mailbox_error) {
                    (Some(f), _) => {
                        for f in f {
                            println!("  folder {} messages {}", f.name, f.messages);
                        }
                    }
                    (None, Some(e)) => println!("  mailbox unavailable: {e}"),
                    _ => {}
                }
                Ok(())
            }
            ("account", "list") => list(&config, args, json).await,
            ("account", "move") => {
                let user = need(args, 0, "ADDRESS")?;
                match args.get(1).map(String::as_str) {
                    Some("to" | "--to") => {}
                    _ => return Err(format!("account move ADDRESS to INSTANCE\n{USAGE}")),
                }
                let to = need(args, 2, "INSTANCE")?;
                if !config.instance.contains_key(to) {
                    return Err(unknown_instance(&config, to).into());
                }
                let mut dir = directory::connect(&config).await?;
                let (entry, from, _) = accounts::locate(&config, &mut dir, user).await?;
                let from = from.ok_or_else(|| {
                    format!("{user} is routed to no configured instance; nothing to move from")
                })?;
                if from == to {
                    return Err(format!("{user} already lives on {to}"));
                }
                // The proxies record the name the back-end knows: the uid or
                // one of the addresses, depending on their user_attribute.
                let mut names = vec![entry.uid.clone()];
                names.extend(entry.addresses.iter().cloned());
                names.sort_by_key(|n| n.to_ascii_lowercase());
                names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
                let kick = async || kick_everywhere(opts, &names).await;
                let r =
                    mover::move_account(&config, &mut dir, &entry.dn, &entry.uid, &from, to, kick)
                        .await?;
                if json {
                    println!(
                        "{}",
                        json!({"account": entry.uid, "from": from, "to": to, "report": r})
                    );
                } else {
                    println!(
                        "{}: moved {from} → {to}: {} folders, {} messages, {} more during the move, \
                         {} flag updates; copy {} ms, total {} ms",
                        entry.uid,
                        r.folders,
                        r.copied,
                        r.copied_late,
                        r.flag_updates,
                        r.ms_copy,
                        r.ms_total
                    );
                    match (&r.kicked, &r.kick_error) {
                        (Some(n), _) => println!(
                            "{}: {n} sessions on the proxies ended after the switch; they reconnect to {to}",
                            entry.uid
                        ),
                        (_, Some(e)) => eprintln!(
                            "warning: {}: sessions were NOT kicked ({e}); those still open keep \
                             using {from}: fulmar session kick account {}",
                            entry.uid, entry.uid
                        ),
                        _ => {}
                    }
                }
                Ok(())
            }
            ("account", _) => import_file(&config, args, json).await,
            ("domain", "add") => {
                let domain = address::domain_name(need(args, 0, "DOMAIN")?)?;
                let instance = need(args, 1, "INSTANCE")?;
                let spec = config
                    .instance
                    .get(instance)
                    .ok_or_else(|| unknown_instance(&config, instance))?;
                let mut dir = directory::connect(&config).await?;
                dir.add_domain(&domain, &spec.mail_host).await?;
                println!("{domain}: placed on {instance} ({})", spec.mail_host);
                Ok(())
            }
            ("domain", "del") => {
                let domain = address::domain_name(need(args, 0, "DOMAIN")?)?;
                let mut dir = directory::connect(&config).await?;
                let entry = dir
                    .domains()
                    .await?
                    .into_iter()
                    .find(|d| d.domain == domain)
                    .ok_or_else(|| format!("no domain {domain}"))?;
                // Accounts without a mailHost of their own route by it.
                let routed = dir
                    .accounts()
                    .await?
                    .iter()
                    .filter(|a| a.mail_host.is_none() && a.domain().as_deref() == Some(&domain))
                    .count();
                if routed > 0 {
                    return Err(format!(
                        "{routed} accounts route by {domain}'s entry; move or delete them first"
                    ));
                }
                dir.delete(&entry.dn).await?;
                println!("{domain}: deleted");
                Ok(())
            }
            _ => {
                let mut dir = directory::connect(&config).await?;
                let mut domains = dir.domains().await?;
                if let Some(d) = args.first() {
                    let d = d.to_ascii_lowercase();
                    domains.retain(|e| e.domain == d);
                    if domains.is_empty() {
                        return Err(format!("no domain {d}"));
                    }
                }
                let rows: Vec<_> = domains
                    .iter()
                    .map(|d| {
                        let i = d
                            .mail_host
                            .as_deref()
                            .and_then(|h| config.instance_by_host(h));
                        (d, i)
                    })
                    .collect();
                if json {
                    let v: Vec<_> = rows
                        .iter()
                        .map(|(d, i)| json!({"domain": d.domain, "mail_host": d.mail_host, "instance": i}))
                        .collect();
                    println!("{}", json!(v));
                } else {
                    for (d, i) in rows {
                        println!(
                            "{} instance {} mailHost {}",
                            d.domain,
                            i.unwrap_or("-"),
                            d.mail_host.as_deref().unwrap_or("-")
                        );
                    }
                }
                Ok(())
            }
        }
    })
}

fn need<'a>(args: &'a [String], i: usize, what: &str) -> Result<&'a str, String> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("{what} is missing\n{USAGE}"))
}

/// Options after the positional arguments: `word value` pairs and flags.
fn options<'a>(
    args: &'a [String],
    known: &[&'static str],
    flags: &[&'static str],
) -> Result<Vec<(&'static str, &'a str)>, String> {
    let all: Vec<&'static str> = known.iter().chain(flags).copied().collect();
    let mut out = Vec::new();
    let mut rest = args.iter();
    while let Some(word) = rest.next() {
        let k = keyword(word, &all, "option").map_err(|e| format!("{e}\n{USAGE}"))?;
        if flags.contains(&k) {
            out.push((k, ""));
        } else {
            let v = rest.next().ok_or_else(|| format!("{k} needs a value"))?;
            out.push((k, v.as_str()));
        }
    }
    Ok(out)
}

fn placement_options(
    config: &ProvisionConfig,
    opts: &[(&str, &str)],
) -> Result<(Algorithm, Option<u64>), String> {
    let mut algorithm = config.placement;
    let mut seed = None;
    for (k, v) in opts {
        match *k {
            "placement" => algorithm = v.parse()?,
            "seed" => {
                seed = Some(
                    v.parse()
                        .map_err(|_| format!("seed {v:?} is not a number"))?,
                )
            }
            _ => {}
        }
    }
    Ok((algorithm, seed))
}

async fn add(config: &ProvisionConfig, args: &[String], json: bool) -> Result<(), String> {
    let addr = address::normalize(need(args, 0, "ADDRESS")?)?;
    let opts = options(
        &args[1..],
        &[
            "password",
            "password-file",
            "alias",
            "name",
            "instance",
            "placement",
            "seed",
        ],
        &[],
    )?;
    let mut password = None;
    let mut aliases = Vec::new();
    let mut name = None;
    let mut instance = None;
    for (k, v) in &opts {
        match *k {
            "password" => password = Some(v.to_string()),
            "password-file" => password = Some(read_password(v)?),
            "alias" => aliases.push(address::normalize(v)?),
            "name" => name = Some(v.to_string()),
            "instance" => {
                if !config.instance.contains_key(*v) {
                    return Err(unknown_instance(config, v).into());
                }
                instance = Some(v.to_string())
            }
            _ => {}
        }
    }
    let password = password.ok_or("give password PASS or password-file FILE")?;
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let (algorithm, seed) = placement_options(config, &opts)?;
    let candidate = Candidate {
        address: addr,
        aliases,
        name,
        password: Password::Clear(password),
        instance,
        origin: "command line".into(),
    };
    let p = accounts::add(config, candidate, algorithm, seed).await?;
    if json {
        println!("{}", json!(p));
    } else {
        let how = if p.via_domain {
            " (by its domain's entry)"
        } else {
            ""
        };
        println!("{}: created on {}{how}", p.address, p.instance);
    }
    Ok(())
}

fn read_password(path: &str) -> Result<String, String> {
    let mut line = String::new();
    if path == "-" {
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("stdin: {e}"))?;
    } else {
        line = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(line.lines().next().unwrap_or("").to_string())
}

async fn list(config: &ProvisionConfig, args: &[String], json: bool) -> Result<(), String> {
    let opts = options(args, &["instance"], &[])?;
    let only = opts.iter().find(|(k, _)| *k == "instance").map(|(_, v)| *v);
    if let Some(i) = only
        && !config.instance.contains_key(i)
    {
        return Err(unknown_instance(config, i).into());
    }
    let mut dir = directory::connect(config).await?;
    let all = dir.accounts().await?;
    let domains = dir.domains().await?;
    let table = directory::domain_table(config, &domains);
    let mut rows: Vec<(String, Option<String>, bool)> = all
        .iter()
        .map(|a| match &a.mail_host {
            Some(h) => (
                a.uid.clone(),
                config.instance_by_host(h).map(String::from),
                false,
            ),
            None => (
                a.uid.clone(),
                a.domain().and_then(|d| table.get(&d).cloned()),
                true,
            ),
        })
        .filter(|(_, i, _)| only.is_none() || i.as_deref() == only)
        .collect();
    rows.sort();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(u, i, d)| json!({"account": u, "instance": i, "via_domain": d}))
            .collect();
        println!("{}", json!(v));
    } else {
        for (u, i, d) in rows {
            let how = if d { " (domain)" } else { "" };
            println!("{u} instance {}{how}", i.as_deref().unwrap_or("-"));
        }
    }
    Ok(())
}

async fn import_file(config: &ProvisionConfig, args: &[String], json: bool) -> Result<(), String> {
    let file = need(args, 0, "FILE")?;
    let opts = options(
        &args[1..],
        &["format", "placement", "seed", "jobs"],
        &["dry-run"],
    )?;
    let (algorithm, seed) = placement_options(config, &opts)?;
    let mut format = if file.ends_with(".ldif") {
        "ldif"
    } else {
        "csv"
    };
    let mut jobs = 4;
    let mut dry_run = false;
    for (k, v) in &opts {
        match *k {
            "format" => format = keyword(v, &["csv", "ldif"], "format")?,
            "jobs" => {
                jobs = v
                    .parse()
                    .map_err(|_| format!("jobs {v:?} is not a number"))?
            }
            "dry-run" => dry_run = true,
            _ => {}
        }
    }
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?
    };
    let candidates = match format {
        "ldif" => import::ldif(&text, config)?,
        _ => import::csv(&text, config)?,
    };
    let r = accounts::import(config, candidates, algorithm, seed, dry_run, jobs).await?;
    if json {
        println!("{}", json!(r));
    } else {
        if dry_run {
            for p in &r.accounts {
                let how = if p.via_domain { " (domain)" } else { "" };
                println!("{} → {}{how}", p.address, p.instance);
            }
        }
        for (a, e) in &r.failed {
            println!("{a}: FAILED: {e}");
        }
        println!(
            "instance  before  added  after   ({}{})",
            r.placement,
            if dry_run { ", dry run" } else { "" }
        );
        for s in &r.summary {
            println!(
                "{:<9} {:>6} {:>6} {:>6}",
                s.instance, s.before, s.added, s.after
            );
        }
    }
    if r.failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} accounts failed (each rolled back)",
            r.failed.len(),
            r.accounts.len()
        ))
    }
}

/// Ends every session of the account (by any of `names`) on every proxy
/// the balancer knows; an unreachable proxy is an error, as its sessions
/// stay.
async fn kick_everywhere(opts: &Options, names: &[String]) -> Result<usize, String> {
    let inventory = Inventory::take(opts).await?;
    let mut n = 0;
    for name in names {
        n += kick_sessions(&inventory, &Selector::Account(name.clone()), None).await?;
    }
    if !inventory.unreachable.is_empty() {
        let which: Vec<String> = inventory
            .unreachable
            .iter()
            .map(|(ip, why)| format!("{ip}: {why}"))
            .collect();
        return Err(format!(
            "{n} kicked, but these proxies did not answer: {}",
            which.join("; ")
        ));
    }
    Ok(n)
}
