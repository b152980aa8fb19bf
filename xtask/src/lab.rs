//! `cargo xtask lab up|down`: the reference topology with every tier built
//! so far, left running so an operator can poke at it.
//!
//! Built: the XDP balancer run by `fulmar-lbd` on the shipped config and
//! the units' kernel tuning, `fulmar-proxyd` on the three proxy hosts,
//! authenticating against a real slapd on the directory host, and two
//! `fulmar-maild` instances as the accounts' homes: mail1 on node1 and
//! mail2 on node2, each on its own VIP and volume.
use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv6Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use fulmar_lab::{Lab, LabState, mail, teardown, topology};
use fulmar_lb::{Balancer, LoadOptions, PinLayout, config::DaemonConfig};
use fulmar_maild::config::{
    DirectoryConfig as MailDirectory, MailConfig, Network, TlsConfig as MailTls,
};
use fulmar_proxy::config::ProxyConfig;

/// Mail ports the balancer serves (SMTP, POP3, IMAP and their TLS ports).
pub const MAIL_PORTS: [u16; 7] = [25, 110, 143, 465, 587, 993, 995];
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
struct Bins {
    lbd: String,
    fulmar: String,
    proxyd: String,
    maild: String,
}

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
    let path =
        |name: &str| -> Result<String> { Ok(dir.join(name).to_str().context("path")?.to_string()) };
    Ok(Bins {
        lbd: path("fulmar-lbd")?,
        fulmar: path("fulmar")?,
        proxyd: path("fulmar-proxyd")?,
        maild: path("fulmar-maild")?,
    })
}

/// Builds the packages' binaries (in xtask's profile, or release) and
/// returns the directory that holds them.
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

/// The back-end mail instances: (name, node, VIP).
const INSTANCES: [(&str, &str, &str); 2] = [
    ("mail1", "node1", "198.18.2.21"),
    ("mail2", "node2", "198.18.2.22"),
];
/// Accounts of the lab's directory: (uid, password, home instance VIP).
const ACCOUNTS: [(&str, &str, &str); 2] = [
    ("ann", "ann-secret", "198.18.2.21"),
    ("bob", "bob-secret", "198.18.2.22"),
];
const DIRECTORY: &str = "198.18.2.20";
const PROXY_ADDRS: [&str; 3] = ["198.18.1.11", "198.18.1.12", "198.18.1.13"];

/// The directory, the back-end instances and a proxy on each proxy host.
fn start_mail_tiers(lab: &mut Lab, bins: &Bins) -> Result<()> {
    let work = Path::new(LAB_DIR);
    let directory = mail::Directory {
        base: "dc=fulmar,dc=test",
        service_password: "proxy-secret",
        accounts: ACCOUNTS
            .iter()
            .map(|(uid, password, host)| mail::Account {
                uid,
                password,
                addresses: vec![format!("{uid}@mail.test")],
                mail_host: Some(host),
            })
            .collect(),
        domains: vec![("mail.test", "198.18.2.22")],
        admin_password: None,
    };
    mail::start_slapd(lab, "directory", DIRECTORY, &work.join("ldap"), &directory)?;
    let cert = rcgen::generate_simple_self_signed(vec!["mail.fulmar.test".into()])?;
    std::fs::write(work.join("proxy.crt"), cert.cert.pem())?;
    std::fs::write(work.join("proxy.key"), cert.signing_key.serialize_pem())?;
    for instance in INSTANCES {
        start_instance(lab, &bins.maild, instance, &cert)?;
    }
    std::fs::write(work.join("ldap.secret"), "proxy-secret\n")?;
    // The shipped proxy.toml with the lab's addresses, paths and directory.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/dist/proxy.toml");
    let mut config = ProxyConfig::load(&shipped).map_err(anyhow::Error::msg)?;
    config.agent_address = Some("[::]:7070".parse()?);
    for listener in &mut config.listen {
        listener.address = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), listener.address.port());
    }
    if let Some(tls) = &mut config.tls {
        tls.certificate = work.join("proxy.crt");
        tls.key = work.join("proxy.key");
        // lab only: lets the demo log in without TLS
        tls.require_for_auth = false;
    }
    let d = &mut config.directory;
    d.urls = vec![format!("ldap://{DIRECTORY}")];
    d.bind_dn = "cn=proxy,dc=fulmar,dc=test".into();
    d.bind_password = None;
    d.bind_password_file = Some(work.join("ldap.secret"));
    d.base_dn = "dc=fulmar,dc=test".into();
    // fulmar-maild names accounts by address
    d.user_attribute = "mailLocalAddress".into();
    config.smtp.hostname = "mx.fulmar.test".into();
    let mut listed: Vec<u16> = config.listen.iter().map(|l| l.address.port()).collect();
    listed.sort_unstable();
    if listed != MAIL_PORTS {
        bail!(
            "{}: listens on {listed:?}, the lab balances {MAIL_PORTS:?}",
            shipped.display()
        );
    }
    let config = toml::to_string(&config)?;
    let path = work.join("proxy.toml");
    std::fs::write(&path, config)?;
    let path = path.to_str().context("path")?;
    for proxy in topology::PROXIES {
        lab.spawn(proxy, "fulmar-proxyd", &bins.proxyd, &["--config", path])?;
    }
    for (proxy, addr) in topology::PROXIES.iter().zip(PROXY_ADDRS) {
        mail::wait_port(lab, proxy, addr, 143)?;
    }
    Ok(())
}

/// One fulmar-maild instance, as the failover manager would start it: its
/// VIP on the node, its volume (here a directory of its own) with the
/// config, the accounts it is home to, then `fulmar-maild run`.
fn start_instance(
    lab: &mut Lab,
    maild: &str,
    (name, node, vip): (&str, &str, &str),
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> Result<()> {
    let root = Path::new(LAB_DIR).join("volumes").join(name);
    let config = root.join("config");
    std::fs::create_dir_all(&config)?;
    std::fs::write(config.join("ldap.secret"), "proxy-secret\n")?;
    std::fs::write(config.join("cert.pem"), cert.cert.pem())?;
    std::fs::write(config.join("key.pem"), cert.signing_key.serialize_pem())?;
    let mut mail = MailConfig::new(name, format!("{vip}:24").parse()?);
    mail.smtp = Some(format!("{vip}:25").parse()?);
    mail.imap = Some(format!("{vip}:143").parse()?);
    mail.pop3 = Some(format!("{vip}:110").parse()?);
    mail.quota = Some(1 << 30);
    // the proxies: their IMAP ID and XCLIENT name the real client
    mail.trusted_networks = vec![Network::parse("198.18.1.0/24").expect("a network")];
    mail.directory = Some(MailDirectory::new(
        &format!("ldap://{DIRECTORY}"),
        "dc=fulmar,dc=test",
        "cn=proxy,dc=fulmar,dc=test",
        "ldap.secret".into(),
    ));
    mail.tls = Some(MailTls {
        certificate: "cert.pem".into(),
        key: "key.pem".into(),
    });
    std::fs::write(config.join("mail.toml"), toml::to_string(&mail)?)?;
    let root_arg = root.to_str().context("path")?;
    for (uid, _, home) in ACCOUNTS {
        if home == vip {
            let address = format!("{uid}@mail.test");
            lab.check(
                node,
                maild,
                &["--root", root_arg, "account-create", &address],
            )?;
        }
    }
    lab.check(
        node,
        "ip",
        &["addr", "add", &format!("{vip}/32"), "dev", "eth0"],
    )?;
    lab.spawn(
        node,
        name,
        maild,
        &[
            "--root",
            root_arg,
            "run",
            "--node",
            node,
            "--generation",
            "1",
        ],
    )?;
    mail::wait_port(lab, "proxy1", vip, 110)?;
    Ok(())
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

/// The shipped dist/lb.toml with only its paths moved into the lab.
fn lab_config(prefix: &str) -> Result<DaemonConfig> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lb-userspace/dist/lb.toml");
    let mut config = DaemonConfig::load(&shipped).map_err(anyhow::Error::msg)?;
    config.pin_dir = format!("/sys/fs/bpf/{prefix}-fulmar").into();
    config.services_file = Path::new(LAB_DIR).join("lb-services.conf");
    config.control_socket = Path::new(LAB_DIR).join("lb.sock");
    Ok(config)
}

/// Every mail port on both VIPs, lc over the three proxies; the checks
/// speak TLS on the TLS ports and ask each proxy's agent for its state.
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
                let tls = if matches!(port, 465 | 993 | 995) {
                    "on"
                } else {
                    "off"
                };
                out += &format!("real add {svc} {real} tls {tls} agent 7070\n");
            }
        }
    }
    out
}

fn up() -> Result<()> {
    if Path::new(STATE_FILE).exists() {
        bail!("a lab is already up ({STATE_FILE}); run `cargo xtask lab down` first");
    }
    let bins = build_bins()?;
    let (lbd, fulmar) = (bins.lbd.as_str(), bins.fulmar.as_str());
    let mut lab = Lab::build(&topology::reference()).context("building the lab")?;
    std::fs::create_dir_all(LAB_DIR)?;

    // Proxies: what fulmar-realserver.service does on a proxy node, then
    // the directory, the back-end instances and fulmar-proxyd.
    for proxy in topology::PROXIES {
        lab.check(
            proxy,
            fulmar,
            &["realserver", "prepare", topology::VIP4, topology::VIP6],
        )?;
    }
    start_mail_tiers(&mut lab, &bins)?;

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
    const PROXY: (&str, &str) = ("front end", "fulmar-proxyd (IMAP/POP3/SMTP, LDAP routing)");
    const NODE1: &str = "fulmar-maild mail1 on VIP 198.18.2.21";
    const NODE2: &str = "fulmar-maild mail2 on VIP 198.18.2.22";
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
        ("node1", ("back-end node", NODE1)),
        ("node2", ("back-end node", NODE2)),
        ("standby", ("spare back-end node", "idle")),
        ("directory", ("directory", "slapd (misc.schema, mailHost)")),
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
        let lines = imap_login(&lab, to, user, password)?;
        let login = lines
            .iter()
            .find(|l| l.starts_with("a "))
            .cloned()
            .unwrap_or_default();
        let login: String = login.chars().take(60).collect();
        println!("client -> {to:<22} LOGIN {user:<4} (home {home}): {login}...");
    }
    println!();
    show_mail_flow(&lab)?;
    println!();
    println!("$ fulmar -s real show {}:143", topology::VIP4);
    print!(
        "{}",
        cli(&["-s", "real", "show", &format!("{}:143", topology::VIP4)])?
    );
    println!("$ fulmar flow count");
    print!("{}", cli(&["flow", "count"])?);

    let state = lab.persist();
    std::fs::write(STATE_FILE, serde_json::to_string_pretty(&state)?)?;
    println!(
        "\ntry: ip netns exec {}-client nc {} 143   (a LOGIN ann ann-secret)",
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
    // Configs, the directory's database and the instances' mail.
    std::fs::remove_dir_all(LAB_DIR)?;
    let left = fulmar_lab::leftovers(&state.prefix);
    if !left.is_empty() {
        bail!("left behind: {left:?}");
    }
    println!("lab {} is down", state.prefix);
    Ok(())
}
