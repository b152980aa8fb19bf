//! `fulmar realserver`: prepares this host to accept directly routed
//! traffic for the VIPs (run on every proxy; see fulmar-realserver.service).
use std::net::IpAddr;

use fulmar_daemon::grammar::keyword;
use fulmar_lb::netlink;

const USAGE: &str = "\
Usage: fulmar realserver prepare VIP [ VIP ... ]
       fulmar realserver unprepare [ VIP ... ]
       fulmar realserver show
Puts each VIP on lo and sets arp_ignore=1, arp_announce=2, arp_notify=1 and
ndisc_notify=1,
so this host accepts directly routed traffic without claiming the VIP.";

pub fn run(args: &[String]) -> Result<(), String> {
    let Some(verb) = args.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    let verb = keyword(
        verb,
        &["prepare", "unprepare", "show", "help"],
        "realserver command",
    )
    .map_err(|e| format!("{e}\n{USAGE}"))?;
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
                return Err(format!("give the VIPs to accept\n{USAGE}"));
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
        _ => println!("{USAGE}"),
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
