//! `cargo xtask lab up|down`: the reference topology with every tier built
//! so far, left running so an operator can poke at it.
//!
//! Built so far: the XDP balancer (issue 3) run by `fulmar-lbd` on the
//! shipped config and units' kernel tuning (issue 4). The proxy tier
//! (issue 5) is not, so each proxy host runs a stand-in listener that greets
//! with its host name and answers the health checks.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use fulmar_lab::{Lab, LabState, teardown, topology};
use fulmar_lb::{Balancer, LoadOptions, PinLayout, config::DaemonConfig};

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

/// Where the lab keeps the balancer's files (the units use /etc/fulmar,
/// /var/lib/fulmar and /run/fulmar).
const LAB_DIR: &str = "/run/fulmar-lab";

/// The workspace's binaries, built now in xtask's own profile.
fn build_bins() -> Result<(PathBuf, PathBuf)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", "fulmar-lb", "--bins"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building fulmar-lbd and fulmar failed");
    }
    let dir = std::env::current_exe()?
        .parent()
        .context("xtask's directory")?
        .to_path_buf();
    Ok((dir.join("fulmar-lbd"), dir.join("fulmar")))
}

/// The shipped dist/lb.toml with only its paths moved into the lab.
fn lab_config(prefix: &str) -> Result<DaemonConfig> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lb-userspace/dist/lb.toml");
    let mut config = DaemonConfig::load(&shipped).map_err(anyhow::Error::msg)?;
    config.pin_dir = format!("/sys/fs/bpf/{prefix}-fulmar").into();
    config.services_file = Path::new(LAB_DIR).join("lb-services.conf");
    config.control_socket = Path::new(LAB_DIR).join("lb.sock");
    Ok(config)
}

/// Every mail port on both VIPs, lc over the three proxies. The stand-ins
/// speak plain text on the TLS ports too, so their checks do not use TLS.
fn lab_services() -> String {
    let mut out = String::from("# written by cargo xtask lab up\n");
    for (vip, net) in [
        (topology::VIP4, "198.18.1."),
        (topology::VIP6, "2001:db8:1::"),
    ] {
        for port in MAIL_PORTS {
            let svc = SocketAddr::new(vip.parse().expect("VIP"), port);
            out += &format!("service add {svc} scheduler lc\n");
            for id in ["11", "12", "13"] {
                let real = if vip.contains(':') {
                    format!("{net}{:x}", id.parse::<u8>().expect("id"))
                } else {
                    format!("{net}{id}")
                };
                out += &format!("real add {svc} {real} tls off\n");
            }
        }
    }
    out
}

fn up() -> Result<()> {
    if Path::new(STATE_FILE).exists() {
        bail!("a lab is already up ({STATE_FILE}); run `cargo xtask lab down` first");
    }
    let (lbd, fulmar) = build_bins()?;
    let (lbd, fulmar) = (
        lbd.to_str().context("path")?,
        fulmar.to_str().context("path")?,
    );
    let mut lab = Lab::build(&topology::reference()).context("building the lab")?;
    std::fs::create_dir_all(LAB_DIR)?;

    // Proxies: what fulmar-realserver.service does on a proxy node.
    let exe = std::env::current_exe()?;
    for proxy in topology::PROXIES {
        lab.check(
            proxy,
            fulmar,
            &["realserver", "prepare", topology::VIP4, topology::VIP6],
        )?;
        let mut args = vec!["lab-serve".to_string(), "--name".into(), proxy.to_string()];
        for port in MAIL_PORTS {
            args.extend(["--port".into(), port.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(proxy, "stand-in", exe.to_str().context("exe path")?, &args)?;
    }

    // Balancer: the kernel-tuning drop-in, then fulmar-lbd on the shipped config.
    let tuning =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../lb-userspace/dist/60-fulmar-balancer.conf");
    // -e: net.core.bpf_jit_enable exists only in the root namespace.
    lab.check(
        "balancer",
        "sysctl",
        &["-e", "-q", &format!("--load={}", tuning.display())],
    )?;
    let config = lab_config(lab.prefix())?;
    let config_path = Path::new(LAB_DIR).join("lb.toml");
    std::fs::write(&config_path, toml::to_string(&config)?)?;
    std::fs::write(&config.services_file, lab_services())?;
    lab.register_pin_dir(&config.pin_dir);
    // A veth delivers XDP_TX frames only to a peer with an XDP program: the
    // lab's stand-in for a NIC. The daemon reuses the maps this pins.
    let port = lab
        .fabric_port("balancer", "eth0")
        .context("balancer port")?;
    let pins = PinLayout::new(&config.pin_dir);
    let capacity = config.flow_capacity;
    lab.in_host("fabric", move || -> Result<()> {
        let mut lb = Balancer::load(
            &pins,
            &LoadOptions {
                flow_capacity: capacity,
            },
        )?;
        lb.attach_veth_peer(&port)?;
        Ok(())
    })??;
    lab.spawn(
        "balancer",
        "fulmar-lbd",
        lbd,
        &["--config", config_path.to_str().context("path")?],
    )?;
    let socket = config.control_socket.to_str().context("path")?.to_string();
    let cli = |args: &[&str]| -> Result<String> {
        let mut all = vec!["-S", socket.as_str()];
        all.extend_from_slice(args);
        Ok(lab.check("balancer", fulmar, &all)?)
    };
    let started = std::time::Instant::now();
    loop {
        let up = cli(&["-j", "real", "show"])
            .ok()
            .and_then(|text| serde_json::from_str::<Vec<serde_json::Value>>(&text).ok())
            .is_some_and(|rows| !rows.is_empty() && rows.iter().all(|r| r["state_live"] == "up"));
        if up {
            break;
        }
        if started.elapsed() > Duration::from_secs(15) {
            bail!(
                "the reals did not all come up:\n{}\n{}",
                cli(&["real", "show"]).unwrap_or_default(),
                lab.log("balancer", "fulmar-lbd")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    println!("fulmar lab {} is up\n", lab.prefix());
    println!("{:<10} {:<16} {:<22} RUNNING", "HOST", "ADDRESS", "ROLE");
    const PROXY: (&str, &str) = (
        "front end",
        "stand-in listener (proxy: issue 5); realserver prepared",
    );
    const NODE: &str = "back-end tier: issues 6, 8";
    let roles = [
        ("client", ("client", "-")),
        ("router", ("router", "forwarding")),
        (
            "balancer",
            (
                "L4 balancer",
                "fulmar-lbd: XDP on eth0, VIPs, health checks",
            ),
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
    println!("\nconnections per proxy: {answered:?}\n");
    println!("$ fulmar -s real show {}:143", topology::VIP4);
    print!(
        "{}",
        cli(&["-s", "real", "show", &format!("{}:143", topology::VIP4)])?
    );
    println!("$ fulmar flow count");
    print!("{}", cli(&["flow", "count"])?);
    drop(held);

    let state = lab.persist();
    std::fs::write(STATE_FILE, serde_json::to_string_pretty(&state)?)?;
    println!(
        "\ntry: ip netns exec {}-client nc {} 143",
        state.prefix,
        topology::VIP4
    );
    println!("     {fulmar} -S {socket} service show");
    println!("     {fulmar} -S {socket} monitor");
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
                std::thread::spawn(move || answer(conn, &text, port));
            }
        }));
    }
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

/// Greets, then answers what the health checks send (EHLO, QUIT, LOGOUT);
/// anything else is swallowed until the client leaves.
fn answer(conn: TcpStream, greeting: &str, port: u16) {
    let mut write = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    if write.write_all(greeting.as_bytes()).is_err() {
        return;
    }
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let word = line
            .split_whitespace()
            .last()
            .unwrap_or("")
            .to_ascii_uppercase();
        let first = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = match (first.as_str(), word.as_str()) {
            ("EHLO" | "HELO", _) => "250 fulmar lab stand-in\r\n",
            ("QUIT", _) if matches!(port, 110 | 995) => "+OK bye\r\n",
            ("QUIT", _) => "221 bye\r\n",
            (_, "LOGOUT") => "* BYE\r\n",
            _ => continue,
        };
        if write.write_all(reply.as_bytes()).is_err()
            || reply.contains("bye")
            || reply.contains("BYE")
        {
            return;
        }
    }
}
