//! The balancer attached for real (native XDP on a veth) in the reference
//! lab: TCP connections from the client reach the proxies through direct
//! routing and NAT, over IPv4 and IPv6; the kernels' TCP stacks on both
//! ends validate every rewritten checksum.
mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use fulmar_lab::{Lab, topology};
use fulmar_lb::{
    AttachMode, Balancer, Forwarding, LoadOptions, PinLayout, RealSpec, RealState, Scheduler,
    ServiceSpec,
};

/// Serves `name\n` to every connection on `port` in `host`, then echoes
/// one line back, until `stop`.
fn serve(lab: &Lab, host: &'static str, port: u16, stop: Arc<AtomicBool>) {
    // "::" is dual-stack here: one listener takes IPv4 and IPv6.
    let listener = lab
        .in_host(host, move || TcpListener::bind(("::", port)).unwrap())
        .unwrap();
    {
        listener.set_nonblocking(true).unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let _ = conn.write_all(format!("{host}\n").as_bytes());
                        let mut reader = BufReader::new(conn.try_clone().unwrap());
                        let mut line = String::new();
                        let _ = reader.read_line(&mut line);
                        let _ = conn.write_all(line.as_bytes());
                        // Hold the connection until the client closes it: a
                        // NAT balancer sees the server's FIN too.
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut reader, &mut std::io::sink());
                            drop(conn);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    }
}

/// Connects from the client, returns the proxy that answered after a full
/// request/response exchange, and leaves the connection open.
fn connect(lab: &Lab, to: SocketAddr) -> (String, TcpStream) {
    let conn = lab
        .in_host("client", move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(3))
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("connect {to}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut banner = String::new();
    reader.read_line(&mut banner).unwrap();
    (&conn).write_all(b"hello through the balancer\n").unwrap();
    let mut echo = String::new();
    reader.read_line(&mut echo).unwrap();
    assert_eq!(echo, "hello through the balancer\n");
    (banner.trim().to_string(), conn)
}

#[test]
fn direct_routing_and_nat_carry_tcp_over_ipv4_and_ipv6() {
    let mut lab = Lab::build(&topology::reference()).expect("lab");
    // The balancer owns the VIPs on its link; the proxies hold them on
    // loopback for direct routing (arp_ignore/announce come with the topology).
    lab.check(
        "balancer",
        "ip",
        &["addr", "add", "198.18.1.100/32", "dev", "eth0"],
    )
    .unwrap();
    lab.check(
        "balancer",
        "ip",
        &["addr", "add", "2001:db8:1::100/128", "dev", "eth0", "nodad"],
    )
    .unwrap();
    for proxy in topology::PROXIES {
        lab.check(
            proxy,
            "ip",
            &["addr", "add", "198.18.1.100/32", "dev", "lo"],
        )
        .unwrap();
        lab.check(
            proxy,
            "ip",
            &["addr", "add", "2001:db8:1::100/128", "dev", "lo"],
        )
        .unwrap();
        // Replies of the NAT service (port 2525) go back through the balancer;
        // direct-routing replies go straight to the router.
        for (family, via) in [("-4", "198.18.1.2"), ("-6", "2001:db8:1::2")] {
            lab.check(
                proxy,
                "ip",
                &[
                    family, "rule", "add", "ipproto", "tcp", "sport", "2525", "table", "100",
                ],
            )
            .unwrap();
            lab.check(
                proxy,
                "ip",
                &[
                    family, "route", "add", "default", "via", via, "table", "100",
                ],
            )
            .unwrap();
        }
    }
    // NAT needs forwarding on the balancer (bpf_fib_lookup honours it, as
    // IPVS-NAT does), and its next hop resolved once so replies find a MAC.
    lab.sysctl("balancer", "net.ipv4.ip_forward", "1").unwrap();
    lab.sysctl("balancer", "net.ipv6.conf.all.forwarding", "1")
        .unwrap();
    lab.check("balancer", "ping", &["-c", "1", "-W", "2", "198.18.1.1"])
        .unwrap();
    lab.check("balancer", "ping", &["-c", "1", "-W", "2", "2001:db8:1::1"])
        .unwrap();

    let pins = PinLayout::new(format!("/sys/fs/bpf/{}-lb", lab.prefix()));
    lab.register_pin_dir(&pins.root);
    let attach_pins = pins.clone();
    let mut lb = lab
        .in_host("balancer", move || -> Balancer {
            let mut lb = Balancer::load(
                &attach_pins,
                &LoadOptions {
                    flow_capacity: 4096,
                },
            )
            .unwrap();
            lb.attach("eth0", AttachMode::Native).unwrap();
            lb
        })
        .unwrap();
    // A veth delivers XDP_TX frames only to a peer with an XDP program.
    let port = lab.fabric_port("balancer", "eth0").unwrap();
    let mut lb = lab
        .in_host("fabric", move || {
            lb.attach_veth_peer(&port).unwrap();
            lb
        })
        .unwrap();
    let ip_link = lab
        .check("balancer", "ip", &["link", "show", "eth0"])
        .unwrap();
    assert!(
        ip_link.contains("xdp"),
        "ip link shows the program: {ip_link}"
    );

    let macs: Vec<[u8; 6]> = topology::PROXIES
        .iter()
        .map(|p| lab.mac_bytes(p, "eth0").unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    for proxy in topology::PROXIES {
        serve(&lab, proxy, 143, stop.clone());
        serve(&lab, proxy, 2525, stop.clone());
    }
    let cases = [
        (
            "198.18.1.100",
            Forwarding::DirectRouting,
            143u16,
            "198.18.1.",
        ),
        (
            "2001:db8:1::100",
            Forwarding::DirectRouting,
            143,
            "2001:db8:1::",
        ),
        ("198.18.1.100", Forwarding::Nat, 2525, "198.18.1."),
        ("2001:db8:1::100", Forwarding::Nat, 2525, "2001:db8:1::"),
    ];
    for (vip, forwarding, port, net) in cases {
        let spec = ServiceSpec {
            vip: vip.parse().unwrap(),
            port,
            proto: fulmar_common::IPPROTO_TCP,
            scheduler: Scheduler::Lc,
            forwarding,
            reset_on_down: false,
        };
        let reals: Vec<RealSpec> = (0..3)
            .map(|i| RealSpec {
                addr: format!(
                    "{net}{}",
                    if net.contains(':') {
                        format!("{:x}", 11 + i)
                    } else {
                        (11 + i).to_string()
                    }
                )
                .parse()
                .unwrap(),
                port,
                mac: macs[i],
                weight: 1,
                state: RealState::Up,
            })
            .collect();
        let svc = lb.apply_service(&spec, &reals).unwrap();

        let target = SocketAddr::new(spec.vip, port);
        let mut seen = BTreeMap::new();
        let mut open = Vec::new();
        for _ in 0..6 {
            let (proxy, conn) = connect(&lab, target);
            *seen.entry(proxy).or_insert(0) += 1;
            open.push(conn);
        }
        // Least connection over three idle proxies: two each.
        assert_eq!(
            seen.values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2],
            "{vip} {forwarding:?}: {seen:?}"
        );
        let active: u64 = (0..3).map(|s| lb.conns(svc.id, s).unwrap().active).sum();
        assert_eq!(active, 6, "{vip} {forwarding:?}");
        for conn in &open {
            conn.shutdown(Shutdown::Both).unwrap();
        }
        drop(open);
        // The FINs move every flow to inactive.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            let counts: Vec<_> = (0..3).map(|s| lb.conns(svc.id, s).unwrap()).collect();
            if counts.iter().all(|c| c.active == 0 && c.inactive == 2) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{vip} {forwarding:?}: {counts:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let stats = lb.global_stats().unwrap();
    let nat_replies = stats.iter().find(|(n, _)| *n == "nat_reply").unwrap().1;
    assert!(nat_replies > 0, "NAT replies went through XDP: {stats:?}");
    stop.store(true, Ordering::Relaxed);
}
