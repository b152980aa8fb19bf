//! `fulmar status`: one view over every tier. The balancer's reals (the
//! proxies as it sees them), the proxies' own view, the failover manager's
//! nodes and instances, and every fence device, each read from its own
//! source. A tier that cannot be reached is named and the others still
//! show; the command then fails, so a script sees it.
use std::collections::BTreeMap;

use fulmar_lb::rows::Reply;

use crate::{Options, balancer, cluster, fence, proxy};

pub const USAGE: &str = "\
Usage: fulmar status
Shows the balancer's reals, the proxies, the cluster's nodes and instances
and the fence devices (-S, -A, -C and -F say where each is reached).";

/// Prints one tier's view.
type Section<'a> = dyn Fn() -> Result<(), String> + 'a;

pub fn run(opts: &Options, args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        None => {}
        Some("help") => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(_) => return Err(USAGE.into()),
    }
    if opts.json {
        return Err(
            "status has no JSON form: ask each tier (real show, proxy list, \
                    cluster status, fence status) with -j"
                .into(),
        );
    }
    let list = |s: &str| vec![s.to_string()];
    let sections: [(&str, Box<Section>); 4] = [
        ("balancer", Box::new(|| reals(opts))),
        ("proxies", Box::new(|| proxy::run(opts, &list("list")))),
        (
            "cluster",
            Box::new(|| cluster::run("cluster", &list("status"), &opts.cluster, false)),
        ),
        (
            "fence devices",
            Box::new(|| fence::run(&list("status"), &opts.fencing, false)),
        ),
    ];
    let mut failed = Vec::new();
    for (name, show) in sections {
        println!("== {name}");
        if let Err(e) = show() {
            println!("unreachable: {e}");
            failed.push(name);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("not shown: {}", failed.join(", ")))
    }
}

/// One line per real over all services: how many it is up in, and its
/// flows; a real down anywhere says where and why.
fn reals(opts: &Options) -> Result<(), String> {
    let Reply::Reals(rows) = balancer::request(opts, &["real", "show"])? else {
        return Err("fulmar-lbd answered real show with something else".into());
    };
    let services: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.service.as_str()).collect();
    println!("{} services", services.len());
    let mut by_real: BTreeMap<&str, (usize, usize, u64, u64)> = BTreeMap::new();
    let mut down = Vec::new();
    for r in &rows {
        let e = by_real.entry(&r.real).or_default();
        e.1 += 1;
        e.2 += r.active;
        e.3 += r.inactive;
        if r.state_live == "up" {
            e.0 += 1;
        } else {
            let why = if r.reason.is_empty() { "" } else { ": " };
            down.push(format!(
                "  {} in {} is {}{why}{}",
                r.real, r.service, r.state_live, r.reason
            ));
        }
    }
    for (real, (up, of, active, inactive)) in by_real {
        println!(
            "real {real:<20} up in {up}/{of} services, flows active {active} inactive {inactive}"
        );
    }
    for line in down {
        println!("{line}");
    }
    Ok(())
}
