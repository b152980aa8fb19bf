//! The balancer as an operator runs it: `fulmar-lbd` attached for real in
//! the reference lab, the client connecting to the VIPs, three proxy hosts
//! prepared with `fulmar realserver prepare` and running greeting servers,
//! every change made with the `fulmar` CLI.
//!
//! One scenario, in order: lc and wlc distribution of 300 long-lived
//! connections each; weight 0 and drain; save / -batch round trip; a proxy
//! host dies (detection within 1 s, RST to its clients); it returns (slow
//! start); `kill -9` of the daemon and a restart; a proxy's MAC changes.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    time::{Duration, Instant},
};

use fulmar_lab::{Lab, topology};
use fulmar_lb::{Balancer, LoadOptions, PinLayout};

const LBD: &str = env!("CARGO_BIN_EXE_fulmar-lbd");

/// The operator's tool (package fulmar-cli).
fn tool() -> String {
    fulmar_lab::dist::built("fulmar").display().to_string()
}

const IMAP: &str = "198.18.1.100:143";
const SMTP6: &str = "[2001:db8:1::100]:25";
const SLOW_START: Duration = Duration::from_secs(5);

/// Greets like a mail server naming its host, answers EHLO, and echoes
/// every other line, until the client leaves.
fn greeter(lab: &Lab, host: &'static str, port: u16) {
    let listener = lab
        .in_host(host, move || TcpListener::bind(("::", port)).unwrap())
        .unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut write = conn.try_clone().unwrap();
                let banner = if port == 25 {
                    format!("220 {host} ESMTP\r\n")
                } else {
                    format!("* OK {host} IMAP\r\n")
                };
                if write.write_all(banner.as_bytes()).is_err() {
                    return;
                }
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let reply = if line.starts_with("EHLO") {
                        format!("250 {host}\r\n")
                    } else if line.ends_with("LOGOUT") || line == "QUIT" {
                        return;
                    } else {
                        format!("{line}\n")
                    };
                    if write.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

struct Conn {
    proxy: String,
    stream: TcpStream,
}

impl Conn {
    /// One request/response over the connection.
    fn echo(&mut self) -> Result<(), String> {
        self.stream
            .write_all(b"ping\n")
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(&self.stream)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line == "ping\n" {
            Ok(())
        } else {
            Err(format!("got {line:?}"))
        }
    }
}

/// Connects from the client and reads the greeting.
fn open(lab: &Lab, to: &str, timeout: Duration) -> Result<Conn, String> {
    let to: SocketAddr = to.parse().unwrap();
    let stream = lab
        .in_host("client", move || TcpStream::connect_timeout(&to, timeout))
        .unwrap()
        .map_err(|e| format!("connect {to}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut banner = String::new();
    BufReader::new(&stream)
        .read_line(&mut banner)
        .map_err(|e| format!("greeting from {to}: {e}"))?;
    let proxy = banner
        .split_whitespace()
        .find(|w| w.starts_with("proxy"))
        .ok_or_else(|| format!("greeting {banner:?}"))?
        .to_string();
    Ok(Conn { proxy, stream })
}

fn tally<'a>(conns: impl IntoIterator<Item = &'a Conn>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in conns {
        *out.entry(c.proxy.clone()).or_default() += 1;
    }
    out
}

struct Setup {
    lab: Lab,
    dir: PathBuf,
    socket: String,
    daemon: u32,
}

impl Setup {
    fn fulmar(&self, args: &[&str]) -> String {
        let mut all = vec!["-S", &self.socket];
        all.extend_from_slice(args);
        self.lab
            .check("balancer", &tool(), &all)
            .unwrap_or_else(|e| panic!("fulmar {args:?}: {e}"))
    }

    fn reals(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.fulmar(&["-j", "real", "show"])).unwrap()
    }

    fn real(&self, service: &str, real: &str) -> serde_json::Value {
        let service: fulmar_lb::model::ServiceAddr = service.parse().unwrap();
        self.reals()
            .into_iter()
            .find(|r| r["service"] == service.to_string() && r["real"] == real)
            .unwrap_or_else(|| panic!("no real {real} of {service}"))
    }

    /// Waits until `cond` holds on the real rows, or panics after `limit`.
    fn wait_reals(&self, what: &str, limit: Duration, cond: impl Fn(&[serde_json::Value]) -> bool) {
        let start = Instant::now();
        loop {
            if self.answers() && cond(&self.reals()) {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{what} not reached in {limit:?}: {}\n{}",
                self.fulmar(&["-s", "-s", "real", "show"]),
                self.lab.log("balancer", "lbd")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answers(&self) -> bool {
        self.lab
            .exec("balancer", &tool(), &["-S", &self.socket, "attach", "show"])
            .is_ok_and(|o| o.status.success())
    }

    fn start_daemon(&mut self, name: &str) {
        let config = self.dir.join("lb.toml");
        self.daemon = self
            .lab
            .spawn(
                "balancer",
                name,
                LBD,
                &["--config", config.to_str().unwrap()],
            )
            .unwrap();
    }
}

fn setup() -> Setup {
    let mut lab = Lab::build(&topology::reference()).expect("lab");
    for proxy in topology::PROXIES {
        let out = lab
            .check(
                proxy,
                &tool(),
                &["realserver", "prepare", topology::VIP4, topology::VIP6],
            )
            .unwrap();
        assert!(out.contains("ready for direct routing"), "{out}");
        // A dead host's link goes down: keep its IPv6 address for the return.
        lab.sysctl(proxy, "net.ipv6.conf.eth0.keep_addr_on_down", "1")
            .unwrap();
        greeter(&lab, proxy, 143);
        greeter(&lab, proxy, 25);
    }
    let shown = lab
        .check("proxy1", &tool(), &["realserver", "show"])
        .unwrap();
    assert!(
        shown.contains("arp_ignore = 1") && shown.contains("198.18.1.100"),
        "{shown}"
    );

    let dir = lab.log_dir().join("lb");
    std::fs::create_dir_all(&dir).unwrap();
    let pin_dir = format!("/sys/fs/bpf/{}-lbd", lab.prefix());
    lab.register_pin_dir(&pin_dir);
    let socket = dir.join("lb.sock").display().to_string();
    std::fs::write(
        dir.join("lb.toml"),
        format!(
            "interface = \"eth0\"\nmode = \"native\"\npin_dir = \"{pin_dir}\"\n\
             flow_capacity = 16384\nservices_file = \"{}\"\ncontrol_socket = \"{socket}\"\n\
             [health]\nslow_start = \"{}s\"\n",
            dir.join("services.conf").display(),
            SLOW_START.as_secs()
        ),
    )
    .unwrap();
    // The services file as an operator would write it, abbreviations and all.
    std::fs::write(
        dir.join("services.conf"),
        "# mail VIPs\n\
         service add 198.18.1.100:143 sched lc\n\
         real add 198.18.1.100:143 198.18.1.11\n\
         real add 198.18.1.100:143 198.18.1.12\n\
         real add 198.18.1.100:143 198.18.1.13\n\
         service add [2001:db8:1::100]:25 sched wlc\n\
         real add [2001:db8:1::100]:25 2001:db8:1::b weight 1\n\
         real add [2001:db8:1::100]:25 2001:db8:1::c weight 2\n\
         real add [2001:db8:1::100]:25 2001:db8:1::d weight 3\n",
    )
    .unwrap();

    // A veth delivers XDP_TX frames only to a peer with an XDP program:
    // the lab's stand-in for a NIC. The daemon reuses the maps this pins.
    let port = lab.fabric_port("balancer", "eth0").unwrap();
    let pins = PinLayout::new(&pin_dir);
    lab.in_host("fabric", move || {
        let mut lb = Balancer::load(
            &pins,
            &LoadOptions {
                flow_capacity: 16384,
            },
        )
        .unwrap();
        lb.attach_veth_peer(&port).unwrap();
    })
    .unwrap();

    let mut setup = Setup {
        lab,
        dir,
        socket,
        daemon: 0,
    };
    setup.start_daemon("lbd");
    setup.wait_reals("every real up", Duration::from_secs(10), |rows| {
        rows.len() == 6 && rows.iter().all(|r| r["state_live"] == "up")
    });
    setup
}

#[test]
fn the_balancer_daemon_under_an_operator() {
    let mut s = setup();
    let addrs = s
        .lab
        .check("balancer", "ip", &["addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(
        addrs.contains("198.18.1.100/32") && addrs.contains("2001:db8:1::100/128"),
        "the daemon adds its VIPs: {addrs}"
    );
    let attach = s.fulmar(&["attach", "show"]);
    assert!(attach.contains("eth0: xdp native"), "{attach}");
    // The control socket is root's alone, and its staging directory gone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let stray: Vec<_> = std::fs::read_dir(&s.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".lb.sock"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    let socket = s.socket.clone();
    s.lab
        .spawn("balancer", "monitor", &tool(), &["-S", &socket, "monitor"])
        .unwrap();

    // 1. Distribution of long-lived connections: lc evenly, wlc by weight.
    let mut imap: Vec<Conn> = (0..300)
        .map(|_| open(&s.lab, IMAP, Duration::from_secs(2)).unwrap())
        .collect();
    let mut smtp: Vec<Conn> = (0..300)
        .map(|_| open(&s.lab, SMTP6, Duration::from_secs(2)).unwrap())
        .collect();
    let (lc, wlc) = (tally(&imap), tally(&smtp));
    println!("lc 300: {lc:?}\nwlc 1:2:3 300: {wlc:?}");
    for (proxy, want) in [("proxy1", 50usize), ("proxy2", 100), ("proxy3", 150)] {
        assert!(lc[proxy].abs_diff(100) <= 2, "lc {lc:?}");
        assert!(wlc[proxy].abs_diff(want) <= 2, "wlc {wlc:?}");
    }
    let services: Vec<serde_json::Value> =
        serde_json::from_str(&s.fulmar(&["-j", "service", "show"])).unwrap();
    assert!(services.iter().all(|r| r["active"] == 300), "{services:?}");

    // 2. Weight 0 and drain through the CLI: new flows at once, old ones stay.
    s.fulmar(&["real", "set", SMTP6, "2001:db8:1::d", "weight", "0"]);
    s.fulmar(&["real", "se", SMTP6, "2001:db8:1::b", "st", "drain"]);
    let fresh: Vec<Conn> = (0..20)
        .map(|_| open(&s.lab, SMTP6, Duration::from_secs(2)).unwrap())
        .collect();
    assert_eq!(tally(&fresh), BTreeMap::from([("proxy2".to_string(), 20)]));
    for conn in smtp.iter_mut() {
        conn.echo().expect("existing flows stay where they are");
    }
    s.fulmar(&["real", "set", SMTP6, "2001:db8:1::d", "weight", "3"]);
    s.fulmar(&["real", "set", SMTP6, "2001:db8:1::b", "state", "up"]);
    smtp.extend(fresh);

    // save prints a batch that -batch restores exactly, without touching flows.
    let saved = s.fulmar(&["save"]);
    let saved_file = s.dir.join("saved.batch");
    std::fs::write(&saved_file, &saved).unwrap();
    s.fulmar(&["-batch", saved_file.to_str().unwrap()]);
    assert_eq!(s.fulmar(&["save"]), saved);
    let counts = s.fulmar(&["flow", "count"]);
    assert!(
        counts.contains("flows 300 active 300") && counts.contains("flows 320 active 320"),
        "{counts}"
    );
    let err = s
        .lab
        .exec(
            "balancer",
            &tool(),
            &["-S", &s.socket, "real", "add", IMAP, "198.18.1.11"],
        )
        .unwrap();
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(
        err.contains("real set"),
        "a duplicate says what to type: {err}"
    );

    // 3. proxy2's host dies. New connections stop reaching it within 1 s.
    s.lab
        .check("proxy2", "ip", &["link", "set", "eth0", "down"])
        .unwrap();
    let death = Instant::now();
    let mut attempts = Vec::new();
    while death.elapsed() < Duration::from_secs(2) {
        let started = death.elapsed();
        let result = open(&s.lab, IMAP, Duration::from_millis(400));
        attempts.push((
            started,
            result
                .as_ref()
                .map(|c| c.proxy.clone())
                .map_err(|e| e.clone()),
        ));
        if let Ok(conn) = result {
            imap.push(conn);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let failed: Vec<_> = attempts.iter().filter(|(_, r)| r.is_err()).collect();
    let late: Vec<_> = failed
        .iter()
        .filter(|(t, _)| *t >= Duration::from_secs(1))
        .collect();
    println!(
        "proxy2 dead: {} of {} new connections failed, all inside the detection window (last started at {:?})",
        failed.len(),
        attempts.len(),
        failed.last().map(|(t, _)| *t)
    );
    assert!(
        late.is_empty(),
        "new connections failed more than 1 s after the death: {late:?}"
    );
    let row = s.real(IMAP, "198.18.1.12");
    assert_eq!(
        (row["state_live"].as_str(), row["reason"].as_str()),
        (Some("down"), Some("check failed")),
        "{row}"
    );

    let events = s.lab.log("balancer", "monitor");
    assert!(
        events.contains("real 198.18.1.12:143 of 198.18.1.100:143/tcp: up -> down (check failed)")
            && events.contains("real [2001:db8:1::b]:25 of [2001:db8:1::100]:25/tcp: up -> drain"),
        "fulmar monitor streams the changes: {events}"
    );

    // Its clients get a RST built in XDP once the service asks for it.
    s.fulmar(&["service", "set", IMAP, "reset-on-down", "on"]);
    let (dead, mut alive): (Vec<Conn>, Vec<Conn>) =
        imap.into_iter().partition(|c| c.proxy == "proxy2");
    let start = Instant::now();
    for mut conn in dead {
        let e = conn
            .echo()
            .expect_err("a connection to a dead proxy cannot echo");
        assert!(e.contains("reset"), "{e}");
    }
    println!(
        "100 clients of the dead proxy reset in {:?}",
        start.elapsed()
    );
    let others = smtp.iter_mut().filter(|c| c.proxy != "proxy2");
    for conn in alive.iter_mut().chain(others) {
        conn.echo()
            .expect("connections on the other proxies are untouched");
    }
    let row = s.real(IMAP, "198.18.1.12");
    // Closed by the RSTs; the SYNs that hit it before detection stay
    // half-open until the SYN timeout.
    let half_open = failed.len() as u64;
    assert_eq!(
        (row["active"].as_u64(), row["inactive"].as_u64()),
        (Some(half_open), Some(100)),
        "{row}"
    );

    // 4. It returns: its share ramps instead of jumping to every new flow.
    s.lab
        .check("proxy2", "ip", &["link", "set", "eth0", "up"])
        .unwrap();
    s.lab
        .check(
            "proxy2",
            "ip",
            &["route", "replace", "default", "via", "198.18.1.1"],
        )
        .unwrap();
    s.lab
        .check(
            "proxy2",
            "ip",
            &["-6", "route", "replace", "default", "via", "2001:db8:1::1"],
        )
        .unwrap();
    s.wait_reals("proxy2 back", Duration::from_secs(5), |rows| {
        rows.iter()
            .any(|r| r["real"] == "198.18.1.12" && r["state_live"] == "up")
    });
    let up = Instant::now();
    let services = s.fulmar(&["service", "show", IMAP]);
    assert!(
        services.contains("lc (live wlc)"),
        "lc ramps as wlc: {services}"
    );
    let burst = |s: &Setup| -> Vec<Conn> {
        (0..60)
            .map(|_| open(&s.lab, IMAP, Duration::from_secs(2)).unwrap())
            .collect()
    };
    let early = burst(&s);
    let early_share = tally(&early).get("proxy2").copied().unwrap_or(0);
    std::thread::sleep(
        (up + SLOW_START + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    );
    let late = burst(&s);
    let late_share = tally(&late).get("proxy2").copied().unwrap_or(0);
    println!(
        "slow start: proxy2 took {early_share}/60 new connections at once, {late_share}/60 after {SLOW_START:?}"
    );
    assert!(
        early_share <= 20,
        "without slow start lc would give it all 60: {early_share}"
    );
    assert!(
        late_share >= 50,
        "after the ramp it catches up: {late_share}"
    );
    assert!(
        s.fulmar(&["service", "show", IMAP]).contains("lc forward"),
        "back to plain lc"
    );
    alive.extend(early);
    alive.extend(late);
    // The SMTP service keeps a dead real's flows (no reset-on-down): its
    // idle sessions on proxy2 carry on after the return.
    for conn in smtp.iter_mut().filter(|c| c.proxy == "proxy2") {
        conn.echo().expect("kept flows resume");
    }

    // 5. kill -9 of the daemon: the data path carries on; a restart takes over.
    let flows_before = s.fulmar(&["flow", "count"]);
    s.lab
        .check("balancer", "kill", &["-9", &s.daemon.to_string()])
        .unwrap();
    for conn in alive.iter_mut().chain(smtp.iter_mut()) {
        conn.echo()
            .expect("established flows work without the daemon");
    }
    s.start_daemon("lbd2");
    let restart = Instant::now();
    while !s.answers() {
        assert!(
            restart.elapsed() < Duration::from_secs(10),
            "{}",
            s.lab.log("balancer", "lbd2")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Health is taken over from the maps: nothing flaps down on a restart.
    assert!(
        s.reals().iter().all(|r| r["state_live"] == "up"),
        "{}",
        s.fulmar(&["real", "show"])
    );
    assert_eq!(s.fulmar(&["flow", "count"]), flows_before);
    for conn in alive.iter_mut().chain(smtp.iter_mut()) {
        conn.echo()
            .expect("established flows work after the restart");
    }
    let log = s.lab.log("balancer", "lbd2");
    assert!(log.contains("keeping it, with its flows"), "{log}");
    let total = alive.len() + smtp.len();
    println!("kill -9 and restart: {total}/{total} established connections kept working");

    // 6. proxy3 moves to a new MAC: the daemon follows it, flows stay.
    let new_mac = "02:0f:00:00:00:13";
    s.lab
        .check(
            "proxy3",
            "ip",
            &["link", "set", "dev", "eth0", "address", new_mac],
        )
        .unwrap();
    s.wait_reals("proxy3's new MAC", Duration::from_secs(5), |rows| {
        rows.iter()
            .filter(|r| r["real"] == "198.18.1.13" || r["real"] == "2001:db8:1::d")
            .all(|r| r["mac"] == new_mac)
    });
    for conn in alive.iter_mut().chain(smtp.iter_mut()) {
        conn.echo()
            .expect("flows of a real that moved keep working");
    }
    let monitor_log = s.lab.log("balancer", "lbd2");
    assert!(
        monitor_log.contains(&format!("is at {new_mac}")),
        "{monitor_log}"
    );
    let stats = s.fulmar(&["-s", "-s", "real", "show", IMAP]);
    assert!(
        stats.contains("packets") && stats.contains("last check: ok"),
        "{stats}"
    );
}
