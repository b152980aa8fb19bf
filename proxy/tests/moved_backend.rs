//! A back-end's node cut off while the proxy waits on it, and its address
//! taken over by another node, as the failover manager does: the proxy
//! must notice (nothing is in flight, so TCP alone would wait for ever)
//! and serve the client from the new home.
mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use fulmar_lab::freeze;
use support::*;

/// The processes in `host`'s namespace.
fn pids(site: &Site, host: &str) -> Vec<i32> {
    let out = Command::new("ip")
        .args(["netns", "pids", &site.lab.netns(host)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// On `host`, its established connections whose `side` (2: local, 3:
/// peer) is `end`: how many, and the sum of their `queue` (0: Recv-Q,
/// bytes not read yet; 1: Send-Q, bytes not acknowledged yet).
fn connections(site: &Site, host: &str, side: usize, end: &str, queue: usize) -> (usize, usize) {
    // "Recv-Q Send-Q Local:Port Peer:Port" per connection.
    let out = site
        .lab
        .check(host, "ss", &["-tnH", "state", "established"])
        .unwrap();
    let queues: Vec<usize> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[side] == end)
        .filter_map(|f| f[queue].parse().ok())
        .collect();
    (queues.len(), queues.iter().sum())
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_login_waiting_on_a_lost_node_is_served_by_the_instance_new_home() {
    let mut site = Site::start(Options {
        maild_be1: true,
        ..Options::default()
    });
    // The new home, ready before the cut: be2 holds BE1 on its loopback,
    // where it answers no ARP for it (arp_ignore) until the address moves
    // to its link.
    site.lab
        .sysctl("be2", "net.ipv4.conf.all.arp_ignore", "1")
        .unwrap();
    site.lab
        .check(
            "be2",
            "ip",
            &["addr", "add", &format!("{BE1}/32"), "dev", "lo"],
        )
        .unwrap();
    site.start_maild("be2", BE1, &["ann@mail.test"], false);

    // Two sessions on be1, one in IDLE, and be1's maild hung: a command
    // of the other reaches be1's kernel, which acknowledges it (nothing
    // is left to retransmit), and so does the proxy's connection for a
    // new login; no answer comes.
    let mut idle = site.connect(1143);
    idle.line();
    idle.send(format!("a LOGIN ann {}\r\nb SELECT INBOX\r\nc IDLE\r\n", ANN.1).as_bytes());
    let lines = idle.until("+ ");
    assert!(lines.iter().any(|l| l.starts_with("a OK")), "{lines:?}");
    let mut busy = site.connect(1143);
    busy.line();
    busy.send(format!("a LOGIN ann {}\r\nb SELECT INBOX\r\n", ANN.1).as_bytes());
    busy.until("b OK");
    for pid in pids(&site, "be1") {
        freeze::freeze(pid).unwrap();
    }
    busy.send(b"c NOOP\r\n");
    let mut login = site.connect(1143);
    login.line();
    login.send(format!("a LOGIN ann {}\r\n", ANN.1).as_bytes());
    wait_for(
        "the NOOP and the login's connection at be1",
        Duration::from_secs(10),
        || {
            let be1 = format!("{BE1}:143");
            let (accepted, unread) = connections(&site, "be1", 2, &be1, 0);
            let (_, unacknowledged) = connections(&site, "px", 3, &be1, 1);
            accepted >= 3 && unread > 0 && unacknowledged == 0
        },
    );

    // The cut, and the address on the new home: the proxy's neighbour
    // entry is dropped as the new holder's gratuitous ARP would replace it.
    let cut = Instant::now();
    site.lab
        .check("be1", "ip", &["link", "set", "eth0", "down"])
        .unwrap();
    site.lab
        .check(
            "be2",
            "ip",
            &["addr", "del", &format!("{BE1}/32"), "dev", "lo"],
        )
        .unwrap();
    site.lab
        .check(
            "be2",
            "ip",
            &["addr", "add", &format!("{BE1}/24"), "dev", "eth0"],
        )
        .unwrap();
    site.lab
        .check("px", "ip", &["neigh", "flush", "to", BE1])
        .unwrap();

    // Within the probes of an answer due (1 s of silence, then every
    // second), not the login timeout (30 s).
    login
        .stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let answer = login.line();
    let served = cut.elapsed();
    assert!(
        answer.starts_with("a OK"),
        "the login after the cut: {answer:?} after {served:?}\n{}",
        site.proxy_log()
    );
    eprintln!("login served by the new home {served:?} after the cut");
    assert!(
        site.proxy_log()
            .contains("back-end lost before it answered the login"),
        "{}",
        site.proxy_log()
    );

    // The session whose NOOP waits is ended by the probes of an answer
    // due (1 s of silence), for its client to reconnect to the new home;
    // not after the quiet session's 10 s.
    busy.stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    assert!(
        busy.ends(),
        "the session waiting on the lost node stayed open"
    );
    let busy_ended = cut.elapsed();
    eprintln!("the session waiting for an answer ended {busy_ended:?} after the cut");
    assert!(busy_ended < Duration::from_secs(8));

    // The IDLE session's back-end is gone: its client is told by the
    // quiet session's probes (10 s of silence, then every second), not
    // never.
    idle.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert!(idle.ends(), "the IDLE session on the lost node stayed open");
    eprintln!(
        "the IDLE session on the lost node ended {:?} after the cut",
        cut.elapsed()
    );
}
