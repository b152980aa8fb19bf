//! `cargo xtask lab up|down`: the reference topology with every tier built
//! so far, left running so an operator can poke at it.
//!
//! Built so far: the XDP balancer (issue 3). The proxy tier (issue 5) is
//! not, so each proxy host runs a stand-in listener that greets with its
//! host name: what it shows is the balancer's distribution, nothing more.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use fulmar_common::IPPROTO_TCP;
use fulmar_lab::{Lab, LabState, teardown, topology};
use fulmar_lb::{
    AttachMode, Balancer, Forwarding, LoadOptions, PinLayout, RealSpec, RealState, Scheduler,
    ServiceSpec,
};

/// Mail ports the balancer serves (SMTP, POP3, IMAP and their TLS ports).
pub const MAIL_PORTS: [u16; 7] = [25, 110, 143, 465, 587, 993, 995];
const STATE_FILE: &str = "/run/fulmar-lab/state.json";

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Build the lab, start every tier, show it working, and leave it up.
    Up,
    /// Tear down the lab `up` made.
    Down,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long)]
    name: String,
    #[arg(long = "port", required = true)]
    ports: Vec<u16>,
}

pub fn run(args: Args) -> Result<()> {
    match args.action {
        Action::Up => up(),
        Action::Down => down(),
    }
}

fn up() -> Result<()> {
    if Path::new(STATE_FILE).exists() {
        bail!("a lab is already up ({STATE_FILE}); run `cargo xtask lab down` first");
    }
    let mut lab = Lab::build(&topology::reference()).context("building the lab")?;
    // Direct routing: the balancer answers ARP/ND for the VIPs; the proxies
    // accept them on loopback (arp_ignore/announce are set by the topology).
    let vip4 = format!("{}/32", topology::VIP4);
    let vip6 = format!("{}/128", topology::VIP6);
    lab.check("balancer", "ip", &["addr", "add", &vip4, "dev", "eth0"])?;
    lab.check(
        "balancer",
        "ip",
        &["addr", "add", &vip6, "dev", "eth0", "nodad"],
    )?;
    for proxy in topology::PROXIES {
        lab.check(proxy, "ip", &["addr", "add", &vip4, "dev", "lo"])?;
        lab.check(proxy, "ip", &["addr", "add", &vip6, "dev", "lo"])?;
    }

    let pins = PinLayout::new(format!("/sys/fs/bpf/{}-fulmar", lab.prefix()));
    lab.register_pin_dir(&pins.root);
    let load_pins = pins.clone();
    let lb = lab.in_host("balancer", move || -> Result<Balancer> {
        let mut lb = Balancer::load(
            &load_pins,
            &LoadOptions {
                flow_capacity: 65536,
            },
        )?;
        lb.attach("eth0", AttachMode::Native)?;
        Ok(lb)
    })??;
    let port = lab
        .fabric_port("balancer", "eth0")
        .context("balancer port")?;
    let mut lb = lab.in_host("fabric", move || -> Result<Balancer> {
        let mut lb = lb;
        lb.attach_veth_peer(&port)?;
        Ok(lb)
    })??;

    let exe = std::env::current_exe()?;
    let mut proxies = Vec::new();
    for (i, proxy) in topology::PROXIES.iter().enumerate() {
        let mac = lab.mac_bytes(proxy, "eth0")?;
        let v4: IpAddr = format!("198.18.1.{}", 11 + i).parse()?;
        let v6: IpAddr = format!("2001:db8:1::{:x}", 11 + i).parse()?;
        proxies.push((proxy, mac, v4, v6));
        let mut args = vec!["lab-serve".to_string(), "--name".into(), proxy.to_string()];
        for port in MAIL_PORTS {
            args.extend(["--port".into(), port.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(proxy, "stand-in", exe.to_str().context("exe path")?, &args)?;
    }
    for vip in [topology::VIP4, topology::VIP6] {
        let vip: IpAddr = vip.parse()?;
        for port in MAIL_PORTS {
            let spec = ServiceSpec {
                vip,
                port,
                proto: IPPROTO_TCP,
                scheduler: Scheduler::Lc,
                forwarding: Forwarding::DirectRouting,
                reset_on_down: false,
            };
            let reals: Vec<RealSpec> = proxies
                .iter()
                .map(|(_, mac, v4, v6)| RealSpec {
                    addr: if vip.is_ipv4() { *v4 } else { *v6 },
                    port,
                    mac: *mac,
                    weight: 1,
                    state: RealState::Up,
                })
                .collect();
            lb.apply_service(&spec, &reals)?;
        }
    }
    std::thread::sleep(Duration::from_millis(300));

    println!("fulmar lab {} is up\n", lab.prefix());
    println!("{:<10} {:<16} {:<22} RUNNING", "HOST", "ADDRESS", "ROLE");
    const PROXY: (&str, &str) = ("front end", "stand-in listener; proxy tier: issue 5");
    const NODE: &str = "back-end tier: issues 6, 8";
    let roles = [
        ("client", ("client", "-")),
        ("router", ("router", "forwarding")),
        (
            "balancer",
            ("L4 balancer", "fulmar XDP (native) on eth0, VIPs on eth0"),
        ),
        ("proxy1", PROXY),
        ("proxy2", PROXY),
        ("proxy3", PROXY),
        ("node1", ("back-end node", NODE)),
        ("node2", ("back-end node", NODE)),
        ("standby", ("hot standby", NODE)),
        ("directory", ("directory", "LDAP: issue 5")),
    ];
    for (host, (role, running)) in roles {
        let addr = lab
            .state()
            .addresses
            .get(host)
            .and_then(|m| m.values().next())
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_default();
        println!("{host:<10} {addr:<16} {role:<22} {running}");
    }
    println!(
        "\nVIP {} and {} ports {MAIL_PORTS:?}: lc, direct routing to proxy1..3\n",
        topology::VIP4,
        topology::VIP6
    );

    // Show it working: connections from the client, the proxy that answered each.
    let mut answered: BTreeMap<String, u32> = BTreeMap::new();
    let mut held = Vec::new();
    for (vip, port) in [
        (topology::VIP4, 143u16),
        (topology::VIP6, 25),
        (topology::VIP4, 110),
    ] {
        for _ in 0..6 {
            let to = SocketAddr::new(vip.parse()?, port);
            let conn = lab.in_host("client", move || {
                TcpStream::connect_timeout(&to, Duration::from_secs(3))
            })??;
            conn.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut greeting = String::new();
            BufReader::new(conn.try_clone()?).read_line(&mut greeting)?;
            let who = greeting
                .split_whitespace()
                .find(|w| w.starts_with("proxy"))
                .unwrap_or("?")
                .to_string();
            println!(
                "client -> {to:<22} answered by {who}: {}",
                greeting.trim_end()
            );
            *answered.entry(who).or_default() += 1;
            held.push(conn);
        }
    }
    println!("\nconnections per proxy: {answered:?}");
    for (key, svc) in lb.services()? {
        let port = u16::from_be(key.port_be);
        if ![143, 25, 110].contains(&port) {
            continue;
        }
        let counts: Vec<String> = (0..svc.n_reals)
            .map(|s| {
                lb.conns(svc.id, s)
                    .map(|c| format!("{}/{}", c.active, c.inactive))
            })
            .collect::<Result<_, _>>()?;
        let vip = fulmar_lb::services::bytes_addr(&key.addr, key.family);
        println!(
            "balancer {vip}:{port} active/inactive per real: {}",
            counts.join(" ")
        );
    }
    drop(held);

    let state = lab.persist();
    std::fs::create_dir_all(Path::new(STATE_FILE).parent().unwrap())?;
    std::fs::write(STATE_FILE, serde_json::to_string_pretty(&state)?)?;
    println!(
        "\ntry: ip netns exec {}-client nc {} 143",
        state.prefix,
        topology::VIP4
    );
    println!(
        "     bpftool map dump pinned {}/CONNS | head",
        pins.root.display()
    );
    println!("down: cargo xtask lab down");
    Ok(())
}

fn down() -> Result<()> {
    let text = match std::fs::read_to_string(STATE_FILE) {
        Ok(text) => text,
        Err(_) => {
            println!("no lab is up ({STATE_FILE} is absent)");
            return Ok(());
        }
    };
    let state: LabState = serde_json::from_str(&text).context("reading the lab state")?;
    teardown(&state);
    std::fs::remove_file(STATE_FILE)?;
    let left = fulmar_lab::leftovers(&state.prefix);
    if !left.is_empty() {
        bail!("left behind: {left:?}");
    }
    println!("lab {} is down", state.prefix);
    Ok(())
}

/// The greeting a mail client expects on `port`, naming the stand-in.
fn greeting(name: &str, port: u16) -> String {
    match port {
        25 | 465 | 587 => format!("220 {name} fulmar lab stand-in ESMTP\r\n"),
        110 | 995 => format!("+OK {name} fulmar lab stand-in POP3\r\n"),
        _ => format!("* OK {name} fulmar lab stand-in IMAP\r\n"),
    }
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let mut threads = Vec::new();
    for port in args.ports {
        // Dual-stack: one socket takes IPv4 and IPv6.
        let listener =
            TcpListener::bind(("::", port)).with_context(|| format!("binding port {port}"))?;
        let name = args.name.clone();
        threads.push(std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let text = greeting(&name, port);
                std::thread::spawn(move || {
                    let mut conn = conn;
                    if conn.write_all(text.as_bytes()).is_ok() {
                        // Hold the connection until the client leaves.
                        let _ = std::io::copy(&mut conn, &mut std::io::sink());
                    }
                });
            }
        }));
    }
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}
