//! The lab agent powers off a lab host: after `off`, no process of that
//! host survives (forking loops and detached daemons included) and its
//! links are down and have no address.
mod support;

use std::time::Duration;

use fulmar_fencing::{
    Action, Answer, Device,
    config::{DeviceConfig, LabHostConfig},
};
use support::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn off_leaves_nothing_running_and_links_down() {
    let mut site = Site::new();
    let lab = &mut site.lab;
    lab.spawn("victim", "sleeper", "sleep", &["1000"]).unwrap();
    // Forks a child every 50 ms: killing once is not enough.
    lab.spawn(
        "victim",
        "forker",
        "sh",
        &["-c", "while :; do sleep 0.05 & wait; done"],
    )
    .unwrap();
    // A daemon that detached from its parent and session.
    lab.spawn(
        "victim",
        "daemon",
        "sh",
        &["-c", "setsid sleep 1000 & sleep 1000"],
    )
    .unwrap();
    lab.spawn(
        "victim",
        "server",
        "python3",
        &["-m", "http.server", "--bind", VICTIM, "8080"],
    )
    .unwrap();
    fulmar_lab::mail::wait_port(lab, "ctl", VICTIM, 8080).unwrap();
    let netns = lab.netns("victim");
    let pids = |lab: &fulmar_lab::Lab| {
        lab.check("ctl", "ip", &["netns", "pids", &lab.netns("victim")])
            .unwrap()
    };
    assert!(pids(lab).lines().count() >= 5, "{}", pids(lab));

    let device = Device::new(&DeviceConfig::LabHost(LabHostConfig {
        netns: netns.clone(),
        timeout: T,
    }))
    .unwrap();
    let rt = support::runtime();
    support::power_off_checked(&rt, &device, T);
    // Checked independently of the agent: iproute2's view of the netns.
    assert_eq!(pids(&site.lab), "", "processes survived");
    let links = site
        .lab
        .check("ctl", "ip", &["-n", &netns, "-o", "link", "show", "up"])
        .unwrap();
    assert!(
        links.lines().all(|l| l.contains(": lo:")),
        "links still up: {links}"
    );
    // A powered-off host answers for no address: none is left but lo's.
    let addrs = site
        .lab
        .check(
            "ctl",
            "ip",
            &["-n", &netns, "-o", "addr", "show", "scope", "global"],
        )
        .unwrap();
    assert_eq!(addrs.trim(), "", "addresses survived");
    // The host is unreachable from its peers.
    let target: std::net::SocketAddr = format!("{VICTIM}:8080").parse().unwrap();
    let reached = site
        .lab
        .in_host("ctl", move || {
            std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500))
        })
        .unwrap();
    assert!(reached.is_err(), "the powered-off host still answers");
    // on: links come back, processes do not.
    assert_eq!(rt.block_on(device.run(Action::On, T)), Ok(Answer::Done));
    let links = site
        .lab
        .check("ctl", "ip", &["-n", &netns, "-o", "link", "show", "up"])
        .unwrap();
    assert!(links.lines().count() >= 2, "{links}");
    assert_eq!(pids(&site.lab), "");
}
