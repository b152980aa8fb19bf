//! The reference design re-addressed into the test ranges:
//!
//! ```text
//!  client ── outside 198.18.0.0/24 ── router ── frontend 198.18.1.0/24 ── balancer, proxy1..3
//!            2001:db8:0::/64            │       2001:db8:1::/64          (VIP 198.18.1.100)
//!                                       └──── backend 198.18.2.0/24 ── node1, node2, standby, directory
//!                                             2001:db8:2::/64
//! ```
//!
//! The platform (`platform`) has the whole back end under the failover
//! manager: no directory host (slapd floats as the `ldap` instance), three
//! etcd members (.31–.33) and a monitor (.30, Prometheus) instead.
use crate::spec::{Attachment, HostSpec, LabSpec, Route, SegmentSpec};

/// The balancer's virtual service address (IPv4 and IPv6).
pub const VIP4: &str = "198.18.1.100";
pub const VIP6: &str = "2001:db8:1::100";
pub const PROXIES: [&str; 3] = ["proxy1", "proxy2", "proxy3"];
pub const BACKEND_NODES: [&str; 3] = ["node1", "node2", "standby"];

/// `host`'s interface address on a /24 (and its IPv6 twin).
fn addrs(net: u8, host: u8) -> Vec<String> {
    vec![
        format!("198.18.{net}.{host}/24"),
        format!("2001:db8:{net}::{host:x}/64"),
    ]
}

fn attach(host: &str, net: u8, id: u8) -> Attachment {
    let a = addrs(net, id);
    Attachment::new(host, "eth0", &[&a[0], &a[1]])
}

/// The front path with the directory on a host of its own.
pub fn reference() -> LabSpec {
    build(&[("directory", 20)])
}

/// The etcd members of the platform: (host, address).
pub const ETCD: [(&str, &str); 3] = [
    ("etcd1", "198.18.2.31"),
    ("etcd2", "198.18.2.32"),
    ("etcd3", "198.18.2.33"),
];
/// Where the platform's Prometheus runs.
pub const MONITOR: (&str, &str) = ("monitor", "198.18.2.30");

/// The whole platform: the back-end nodes run every instance (the
/// directory too), beside three etcd members and a monitor.
pub fn platform() -> LabSpec {
    build(&[("monitor", 30), ("etcd1", 31), ("etcd2", 32), ("etcd3", 33)])
}

/// The reference shape with `services` (host, last octet) on the back-end
/// segment beside the nodes.
fn build(services: &[(&str, u8)]) -> LabSpec {
    let mut hosts = vec![
        HostSpec::new("client"),
        HostSpec::router("router"),
        HostSpec::new("balancer"),
    ];
    // Proxies take directly-routed traffic for the VIP, which they hold on
    // loopback: they must not answer ARP/ND for it (LVS-DR's arp_ignore/announce).
    for proxy in PROXIES {
        hosts.push(
            HostSpec::new(proxy)
                .sysctl("net.ipv4.conf.all.arp_ignore", "1")
                .sysctl("net.ipv4.conf.all.arp_announce", "2"),
        );
    }
    for node in BACKEND_NODES {
        hosts.push(HostSpec::new(node));
    }
    for (host, _) in services {
        hosts.push(HostSpec::new(host));
    }

    let mut frontend = vec![attach("router", 1, 1), attach("balancer", 1, 2)];
    for (i, proxy) in PROXIES.iter().enumerate() {
        frontend.push(attach(proxy, 1, 11 + i as u8));
    }
    let mut backend = vec![attach("router", 2, 1)];
    for (i, node) in BACKEND_NODES.iter().enumerate() {
        backend.push(attach(node, 2, 11 + i as u8));
    }
    for (host, id) in services {
        backend.push(attach(host, 2, *id));
    }
    // The router's second and third legs are eth1/eth2.
    frontend[0].iface = "eth1".into();
    backend[0].iface = "eth2".into();

    let mut routes = vec![
        Route::new("client", "default", "198.18.0.1"),
        Route::new("client", "default", "2001:db8:0::1"),
    ];
    for host in ["balancer", "proxy1", "proxy2", "proxy3"] {
        routes.push(Route::new(host, "default", "198.18.1.1"));
        routes.push(Route::new(host, "default", "2001:db8:1::1"));
    }
    let back = BACKEND_NODES.iter().chain(services.iter().map(|(h, _)| h));
    for host in back {
        routes.push(Route::new(host, "default", "198.18.2.1"));
        routes.push(Route::new(host, "default", "2001:db8:2::1"));
    }
    LabSpec {
        hosts,
        segments: vec![
            SegmentSpec {
                name: "outside".into(),
                members: vec![attach("client", 0, 10), attach("router", 0, 1)],
            },
            SegmentSpec {
                name: "frontend".into(),
                members: frontend,
            },
            SegmentSpec {
                name: "backend".into(),
                members: backend,
            },
        ],
        routes,
    }
}
