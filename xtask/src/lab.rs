//! `cargo xtask lab up|down`: the whole platform on the reference topology
//! (`fulmar_lab::front` with `fulmar_lab::platform`: the back end under the
//! failover manager), checked and left running so an operator can poke at
//! it.
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use fulmar_lab::{
    Lab, LabState,
    front::{self, ACCOUNTS, Bins, Front, MAIL_PORTS},
    mail, teardown, topology,
};

pub const STATE_FILE: &str = "/run/fulmar-lab/state.json";

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
    /// Inject faults into the running lab under a client workload through
    /// the VIP; print a timeline and a ledger; fail when an invariant breaks.
    Chaos(ChaosArgs),
}

#[derive(clap::Args)]
struct ChaosArgs {
    /// How many faults, one after another.
    #[arg(long, default_value_t = 20)]
    faults: usize,
    /// Draws the order and the targets (the same seed, the same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fault kinds, comma-separated (default: all): node-kill, partition,
    /// directory-kill, maild-crash, proxy-kill, balancer-kill, etcd-kill,
    /// relocation, standby.
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    match args.action {
        Action::Up => up(),
        Action::Down => down(),
        Action::Chaos(args) => chaos(args),
    }
}

/// Chaos on the lab `up` left running; the lab stays up afterwards.
fn chaos(args: ChaosArgs) -> Result<()> {
    use fulmar_lab::platform::chaos::{self, Kind};
    let kinds = if args.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.kinds
            .iter()
            .map(|k| Kind::parse(k))
            .collect::<Result<_>>()?
    };
    let text = std::fs::read_to_string(STATE_FILE)
        .with_context(|| format!("no lab is up ({STATE_FILE}): run `cargo xtask lab up` first"))?;
    let state: LabState = serde_json::from_str(&text).context("reading the lab state")?;
    let bins = build_bins()?;
    let mut front = Front::attach(state, Path::new(LAB_DIR), bins)?;
    println!(
        "chaos on lab {}: {} faults of {:?}, seed {}",
        front.lab.prefix(),
        args.faults,
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>(),
        args.seed
    );
    let ledger = chaos::run(&mut front, args.faults, args.seed, &kinds, &mut |line| {
        println!("{line}")
    })?;
    print!("{}", ledger.report());
    // The daemons chaos started again belong to the lab: `lab down` ends them.
    std::fs::write(STATE_FILE, serde_json::to_string_pretty(&front.persist())?)?;
    let broken = ledger.broken();
    if !broken.is_empty() {
        bail!("invariants broken:\n{}", broken.join("\n"));
    }
    Ok(())
}

/// Where the lab keeps the balancer's files (the units use /etc/fulmar,
/// /var/lib/fulmar and /run/fulmar).
const LAB_DIR: &str = "/run/fulmar-lab";

/// The workspace's binaries, built now in xtask's own profile.
fn build_bins() -> Result<Bins> {
    let dir = cargo_build_bins(
        &[
            "fulmar-lb",
            "fulmar-cli",
            "fulmar-proxy",
            "fulmar-maild",
            "fulmar-failover",
        ],
        false,
    )?;
    Ok(Bins::in_dir(&dir))
}

/// The benches build network namespaces: refuse early unless root.
pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} builds network namespaces: run as root");
    }
    Ok(())
}

/// A single-threaded runtime for a load generator: its sockets open on the
/// calling thread, which `Lab::in_host` has moved into the client's netns.
pub fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A bench directory: one account and the proxies' service password.
pub fn one_account_directory<'a>(
    base: &'a str,
    service_password: &'a str,
    uid: &'a str,
    password: &'a str,
    address: &str,
    mail_host: &'a str,
) -> mail::Directory<'a> {
    mail::Directory {
        base,
        service_password,
        accounts: vec![mail::Account {
            uid,
            password,
            addresses: vec![address.to_string()],
            mail_host: Some(mail_host),
        }],
        domains: vec![],
        admin_password: None,
        tls: None,
    }
}

pub fn cargo_build_bins(packages: &[&str], release: bool) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--quiet", "--bins"]);
    if release {
        command.arg("--release");
    }
    for p in packages {
        command.args(["-p", p]);
    }
    if !command.status().context("running cargo build")?.success() {
        bail!("building {packages:?} failed");
    }
    let dir = std::env::current_exe()?
        .parent()
        .context("xtask's directory")?
        .to_path_buf();
    Ok(if release {
        dir.parent().context("target directory")?.join("release")
    } else {
        dir
    })
}

/// Logs in over `to` as `user` and returns the server's lines.
fn imap_login(
    lab: &Lab,
    to: SocketAddr,
    user: &'static str,
    password: &'static str,
) -> Result<Vec<String>> {
    lab.in_host("client", move || -> Result<Vec<String>> {
        let conn = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut write = conn.try_clone()?;
        let mut read = BufReader::new(conn);
        let mut lines = Vec::new();
        let mut line = String::new();
        read.read_line(&mut line)?;
        lines.push(line.trim_end().to_string());
        write.write_all(format!("a LOGIN {user} {password}\r\nb LOGOUT\r\n").as_bytes())?;
        loop {
            line.clear();
            if read.read_line(&mut line)? == 0 {
                break;
            }
            lines.push(line.trim_end().to_string());
            if line.starts_with("b ") {
                break;
            }
        }
        Ok(lines)
    })?
}

/// Mail through the whole path: SMTP in through a VIP to both accounts
/// (the proxy finds each account's instance in LDAP and delivers by LMTP,
/// naming the client by XCLIENT), then POP3 and IMAP reading it back
/// through the other VIP and the first.
fn show_mail_flow(lab: &Lab) -> Result<()> {
    let script = format!(
        r#"
import imaplib, poplib, smtplib
VIP4, VIP6 = "{vip4}", "{vip6}"
s = smtplib.SMTP(VIP4, 25, local_hostname="client.test")
refused = s.sendmail("carl@elsewhere.test", ["ann@mail.test", "bob@mail.test"],
                     "From: carl@elsewhere.test\r\nSubject: hello from the lab\r\n\r\nhi\r\n")
s.quit()
print(f"client -> {{VIP4}}:25         SMTP to ann@mail.test, bob@mail.test: 250 (refused: {{refused or 'none'}})")
p = poplib.POP3(VIP6, 110)
p.user("bob"); p.pass_("bob-secret")
count, size = p.stat()
top = [l.decode() for l in p.top(count, 0)[1] if l.startswith(b"Subject")]
p.quit()
print(f"client -> [{{VIP6}}]:110 POP3 bob (home mail2): {{count}} message(s), {{top[0]}}")
m = imaplib.IMAP4(VIP4, 143)
m.login("ann", "ann-secret")
m.select("INBOX")
head = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (RECEIVED)])")[1][0][1].decode()
m.logout()
received = " ".join(head.split())
print(f"client -> {{VIP4}}:143        IMAP ann (home mail1): {{received[:96]}}...")
"#,
        vip4 = topology::VIP4,
        vip6 = topology::VIP6,
    );
    let out = lab.exec("client", "python3", &["-c", &script])?;
    if !out.status.success() {
        bail!(
            "mail through the lab failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

fn up() -> Result<()> {
    if Path::new(STATE_FILE).exists() {
        bail!("a lab is already up ({STATE_FILE}); run `cargo xtask lab down` first");
    }
    let bins = build_bins()?;
    let mut front = Front::start_platform(Path::new(LAB_DIR), bins)?;
    let lab = &front.lab;
    let platform = front.platform.as_ref().context("the platform")?;
    let cli = |args: &[&str]| front.fulmar(args);
    // What runs where, as the failover manager placed it.
    let mut placed: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, vip, _) in fulmar_lab::platform::INSTANCES {
        let (node, generation) = platform
            .running(lab, name)
            .with_context(|| format!("{name} is not running"))?;
        let what = if name == "ldap" {
            "slapd"
        } else {
            "fulmar-maild"
        };
        placed.entry(node).or_default().push(format!(
            "{what} {name} on VIP {vip} (generation {generation})"
        ));
    }
    let on = |node: &str| {
        let mut v = vec!["fulmar-noded".to_string()];
        v.extend(placed.get(node).cloned().unwrap_or_default());
        v.join(", ")
    };
    println!("fulmar lab {} is up\n", lab.prefix());
    println!("{:<10} {:<16} {:<22} RUNNING", "HOST", "ADDRESS", "ROLE");
    let proxy = "fulmar-proxyd (IMAP/POP3/SMTP, LDAP routing)".to_string();
    let roles = [
        ("client", ("client", "-".to_string())),
        ("router", ("router", "forwarding".to_string())),
        (
            "balancer",
            (
                "L4 balancer",
                "fulmar-lbd: XDP on eth0, VIPs, health checks".to_string(),
            ),
        ),
        ("proxy1", ("front end", proxy.clone())),
        ("proxy2", ("front end", proxy.clone())),
        ("proxy3", ("front end", proxy)),
        ("node1", ("back-end node", on("node1"))),
        ("node2", ("back-end node", on("node2"))),
        ("standby", ("spare back-end node", on("standby"))),
        ("etcd1", ("cluster state", "etcd".to_string())),
        ("etcd2", ("cluster state", "etcd".to_string())),
        ("etcd3", ("cluster state", "etcd".to_string())),
        ("monitor", ("monitoring", "prometheus".to_string())),
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

    // Show it working: logins from the client through the VIPs; the
    // balancer picks a proxy, the proxy asks LDAP and opens the session on
    // the account's home node.
    for (i, vip) in [topology::VIP4, topology::VIP6]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let (user, password, home) = ACCOUNTS[i % ACCOUNTS.len()];
        let to = SocketAddr::new(vip.parse()?, 143);
        let lines = imap_login(lab, to, user, password)?;
        let login = lines
            .iter()
            .find(|l| l.starts_with("a "))
            .cloned()
            .unwrap_or_default();
        if !login.starts_with("a OK") {
            bail!("LOGIN {user} through {to} failed: {lines:?}");
        }
        let login: String = login.chars().take(60).collect();
        println!("client -> {to:<22} LOGIN {user:<4} (home {home}): {login}...");
    }
    println!();
    show_mail_flow(lab)?;
    println!();
    println!("$ fulmar -s real show {}:143", topology::VIP4);
    print!(
        "{}",
        cli(&["-s", "real", "show", &format!("{}:143", topology::VIP4)])?
    );
    println!("$ fulmar flow count");
    print!("{}", cli(&["flow", "count"])?);

    println!("$ fulmar status");
    print!("{}", cli(&["status"])?);
    show_prometheus(&front)?;
    let (fulmar, socket, admin) = (
        front.bins.fulmar.display().to_string(),
        front.lb_socket.display().to_string(),
        front.admin_config.display().to_string(),
    );
    let state = front.persist();
    std::fs::write(STATE_FILE, serde_json::to_string_pretty(&state)?)?;
    println!(
        "\ntry: ip netns exec {}-client nc {} 143   (a LOGIN ann ann-secret)",
        state.prefix,
        topology::VIP4
    );
    println!("     {fulmar} -S {socket} service show");
    println!("     {fulmar} -S {socket} monitor");
    println!(
        "     ip netns exec {}-balancer {fulmar} -S {socket} -A {admin} session list",
        state.prefix
    );
    println!("down: cargo xtask lab down");
    Ok(())
}

/// Waits until the lab's Prometheus scrapes every daemon, and says where it is.
fn show_prometheus(front: &Front) -> Result<()> {
    let p = front.prometheus();
    let nodes = if front.platform.is_some() {
        topology::BACKEND_NODES.len()
    } else {
        0
    };
    let targets = 1 + front::PROXY_ADDRS.len() + front::INSTANCES.len() + nodes;
    let up = p
        .wait_for(
            &front.lab,
            "up{job=~\"fulmar-.*\"}",
            targets,
            |(_, v)| *v == 1.0,
            Duration::from_secs(30),
        )
        .map_err(anyhow::Error::msg)?;
    println!(
        "\nprometheus {} (in netns {}-monitor), rules loaded:",
        p.url(),
        front.lab.prefix()
    );
    for (labels, _) in up {
        println!("  up  {:<14} {}", labels["job"], labels["instance"]);
    }
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
    // The instances' volumes: unmounted and detached once their nodes'
    // processes are gone.
    fulmar_lab::platform::release_volumes(Path::new(LAB_DIR))?;
    // Configs, etcd's data and the volumes' images.
    std::fs::remove_dir_all(LAB_DIR)?;
    let left = fulmar_lab::leftovers(&state.prefix);
    if !left.is_empty() {
        bail!("left behind: {left:?}");
    }
    println!("lab {} is down", state.prefix);
    Ok(())
}
