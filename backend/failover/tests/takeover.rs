//! An instance moves between two lab nodes: volume through each node's
//! access path, address via rtnetlink, gratuitous ARP / unsolicited NA
//! (the client's neighbour entry switches at once), service, probe; the
//! generation on the volume refuses a superseded start; a failed start
//! rolls back to nothing.
use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use fulmar_failover::{
    instance::InstanceSpec,
    takeover::{self, vip::Netlink},
};
use fulmar_fencing::{
    Action, Device,
    agents::io_barrier::{disk, grant},
    config::{DeviceConfig, IoBarrierConfig},
};
use fulmar_lab::{Attachment, HostSpec, Lab, LabSpec, SegmentSpec, mounted};

const VIP: &str = "198.18.9.100";
const VIP6: &str = "2001:db8:9::100";

fn lab() -> Lab {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "needs root (CI runs as root)"
    );
    let members = [
        ("client", "198.18.9.10/24", "2001:db8:9::10/64"),
        ("node1", "198.18.9.11/24", "2001:db8:9::11/64"),
        ("node2", "198.18.9.12/24", "2001:db8:9::12/64"),
    ];
    Lab::build(&LabSpec {
        hosts: members.iter().map(|(h, _, _)| HostSpec::new(h)).collect(),
        segments: vec![SegmentSpec {
            name: "lan".into(),
            members: members
                .iter()
                .map(|(h, v4, v6)| Attachment::new(h, "eth0", &[v4, v6]))
                .collect(),
        }],
        routes: Vec::new(),
    })
    .expect("lab")
}

fn volume(dir: &Path) -> PathBuf {
    let volume = dir.join("volume");
    fs::create_dir_all(&volume).unwrap();
    fs::File::create(disk(&volume))
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(disk(&volume))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    volume
}

fn spec(volume: &Path, mountpoint: &Path, start: &[&str]) -> InstanceSpec {
    InstanceSpec {
        address: format!("{VIP}/24"),
        interface: "eth0".into(),
        volume: volume.to_path_buf(),
        mountpoint: mountpoint.to_path_buf(),
        start: start.iter().map(|s| s.to_string()).collect(),
        stop: None,
        probe_ports: vec![8080],
        run_dirs: vec![],
        start_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(5),
        allowed: vec![],
        preferred: vec![],
        sticky: true,
    }
}

fn on<T: Send + 'static>(
    lab: &Lab,
    host: &str,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    lab.in_host(host, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .unwrap()
}

/// GET a file from the instance, from the client.
fn fetch(lab: &Lab, file: &str) -> String {
    let target: SocketAddr = format!("{VIP}:8080").parse().unwrap();
    let request = format!("GET /{file} HTTP/1.0\r\n\r\n");
    lab.in_host("client", move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .expect("connect to the VIP");
        s.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    })
    .unwrap()
}

/// The MAC the client has cached for `addr` (no lookup is triggered).
fn cached_mac(lab: &Lab, addr: &str) -> String {
    let out = lab.check("client", "ip", &["neigh", "show", addr]).unwrap();
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or("none")
        .to_string()
}

#[test]
fn an_instance_moves_between_nodes() {
    let lab = lab();
    let dir = lab.log_dir().join("instance");
    let volume = volume(&dir);
    let mnt = dir.join("mnt");
    grant(&volume, "node1").unwrap();
    grant(&volume, "node2").unwrap();
    let server = [
        "python3",
        "-m",
        "http.server",
        "--bind",
        VIP,
        "8080",
        "--directory",
    ];
    let mut start: Vec<&str> = server.to_vec();
    let mnt_str = mnt.to_str().unwrap().to_string();
    start.push(&mnt_str);
    let spec = spec(&volume, &mnt, &start);

    // node1 starts generation 1.
    let s = spec.clone();
    let first = on(&lab, "node1", async move {
        takeover::start("mail1", &s, "node1", 1).await
    })
    .unwrap();
    let names: Vec<&str> = first.steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "check",
            "mount",
            "run state",
            "generation",
            "address",
            "announce",
            "service",
            "probe"
        ]
    );
    assert_eq!(fetch(&lab, ".fulmar-generation"), "1 node1\n");
    fs::write(mnt.join("acked"), "written on node1").unwrap();
    Command::new("sync").status().unwrap();
    let node1_mac = lab.mac("node1", "eth0").unwrap();
    let node2_mac = lab.mac("node2", "eth0").unwrap();
    assert_eq!(cached_mac(&lab, VIP), node1_mac);

    // node1 dies: its service is killed, its link goes down, and it is cut
    // off the volume (the failover manager fences before a takeover).
    // SAFETY: kill(2).
    unsafe { libc::kill(first.service_pid() as i32, libc::SIGKILL) };
    lab.check(
        "client",
        "ip",
        &["-n", &lab.netns("node1"), "link", "set", "eth0", "down"],
    )
    .unwrap();
    let barrier = Device::new(&DeviceConfig::IoBarrier(IoBarrierConfig {
        volume: volume.clone(),
        node: "node1".into(),
        timeout: Duration::from_secs(10),
    }))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(barrier.run(Action::Off, Duration::from_secs(10)))
        .unwrap();
    drop(first);
    // Linux ignores neighbour updates within locktime (1 s) of the last.
    std::thread::sleep(Duration::from_millis(1100));

    // node2 takes over with generation 2; the client's cache follows the
    // announcement before it sends anything.
    let s = spec.clone();
    let second = on(&lab, "node2", async move {
        takeover::start("mail1", &s, "node2", 2).await
    })
    .unwrap();
    assert_eq!(cached_mac(&lab, VIP), node2_mac, "gratuitous ARP not taken");
    assert_eq!(fetch(&lab, ".fulmar-generation"), "2 node2\n");
    assert_eq!(fetch(&lab, "acked"), "written on node1");

    // IPv6: an unsolicited NA moves the client's entry the same way.
    let nl_add = |host: &'static str| {
        on(&lab, host, async move {
            let nl = Netlink::connect().unwrap();
            let link = nl.link("eth0").await.unwrap();
            nl.add(link.index, VIP6.parse().unwrap(), 64).await.unwrap();
            fulmar_failover::takeover::announce::announce(
                link.index,
                link.mac,
                VIP6.parse().unwrap(),
            )
            .unwrap();
        })
    };
    lab.check(
        "client",
        "ip",
        &["-n", &lab.netns("node1"), "link", "set", "eth0", "up"],
    )
    .unwrap();
    nl_add("node1");
    lab.check("client", "ping", &["-6", "-c", "1", "-W", "2", VIP6])
        .unwrap();
    assert_eq!(cached_mac(&lab, VIP6), node1_mac);
    lab.check(
        "client",
        "ip",
        &[
            "-n",
            &lab.netns("node1"),
            "addr",
            "del",
            &format!("{VIP6}/64"),
            "dev",
            "eth0",
        ],
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    nl_add("node2");
    assert_eq!(
        cached_mac(&lab, VIP6),
        node2_mac,
        "unsolicited NA not taken"
    );

    // Stop runs in reverse and leaves nothing behind.
    let s = spec.clone();
    on(
        &lab,
        "node2",
        async move { takeover::stop(second, &s).await },
    )
    .unwrap();
    assert!(!mounted(&mnt));
    let has_vip = |host: &'static str| {
        on(&lab, host, async move {
            let nl = Netlink::connect().unwrap();
            let link = nl.link("eth0").await.unwrap();
            nl.has(link.index, VIP.parse().unwrap()).await.unwrap()
        })
    };
    assert!(!has_vip("node2"));

    // A start with an older generation is refused, and rolled back.
    let s = spec.clone();
    let stale = on(&lab, "node2", async move {
        takeover::start("mail1", &s, "node2", 1).await
    })
    .unwrap_err();
    assert!(stale.superseded && stale.step == "generation", "{stale}");
    assert!(
        stale
            .to_string()
            .contains("volume generation 2 (owner node2) is newer than ours (1)"),
        "{stale}"
    );
    assert!(!mounted(&mnt) && !has_vip("node2"));

    // A service that does not come up fails the probe; nothing is left.
    let broken = spec_with(&spec, &["sh", "-c", "exit 3"]);
    let failed = on(&lab, "node2", async move {
        takeover::start("mail1", &broken, "node2", 3).await
    })
    .unwrap_err();
    assert_eq!(failed.step, "probe", "{failed}");
    assert!(!mounted(&mnt) && !has_vip("node2"));

    // node1, fenced off the volume, cannot even attach it.
    let s = spec.clone();
    let fenced = on(&lab, "node1", async move {
        takeover::start("mail1", &s, "node1", 4).await
    })
    .unwrap_err();
    assert!(
        fenced.step == "check" && fenced.reason.contains("fenced off"),
        "{fenced}"
    );
}

fn spec_with(spec: &InstanceSpec, start: &[&str]) -> InstanceSpec {
    let mut s = spec.clone();
    s.start = start.iter().map(|a| a.to_string()).collect();
    s
}
