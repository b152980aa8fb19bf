//! The operator's verbs against a real 3-member etcd and three agents, each
//! checked by what the cluster then does (placement, status, who holds the
//! VIP and the volume), not by what the command prints:
//! freeze → the instance stays put even when its node goes to standby;
//! unfreeze → it leaves the standby node; online → the node takes it again
//! (relocated there: the lab's instance is sticky); disable → stopped everywhere, VIP and volume released;
//! enable → running again.
use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

mod support;

use fulmar_lab::cluster::{ClusterLab, Fencing};
use support::cluster;

const WITHIN: Duration = Duration::from_secs(30);

/// Waits until `check` holds, up to `WITHIN`; its last complaint otherwise.
fn until(c: &ClusterLab, what: &str, check: impl Fn() -> Result<(), String>) {
    let deadline = Instant::now() + WITHIN;
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                panic!("{what}: {e}\n{}", c.agent_logs())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn freeze_standby_unfreeze_online_disable_enable() {
    let c = cluster(Fencing::Lab);
    let fulmar = fulmar_lab::dist::built("fulmar");
    let run = |args: &[&str]| {
        c.fulmar(&fulmar, args)
            .unwrap_or_else(|e| panic!("fulmar {args:?}: {e}"))
    };
    let (node, g1) = c
        .wait_running(WITHIN, |n, _| n == "node1")
        .expect("starts on its preferred node");
    assert_eq!(node, "node1");

    // Frozen, it stays on node1 although node1 goes to standby; the state
    // says why. The placement is re-read until the leader has seen both.
    run(&["instance", "freeze", "mail1"]);
    run(&["node", "standby", "node1"]);
    until(&c, "why says frozen", || {
        let why = c.state().map_err(|e| e.to_string())?;
        match why.get("why/mail1") {
            Some(w) if w.starts_with("frozen") => Ok(()),
            other => Err(format!("why: {other:?}")),
        }
    });
    // A few reconcile rounds (50 ms each) later it has not moved.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        assert_eq!(
            c.running(),
            Some(("node1".to_string(), g1)),
            "a frozen instance moved"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Unfrozen, it leaves the standby node with the next generation.
    run(&["instance", "unfreeze", "mail1"]);
    let (away, g2) = c
        .wait_running(WITHIN, |n, g| n != "node1" && g > g1)
        .expect("leaves node1 in standby");
    let show = run(&["node", "show"]);
    assert!(
        show.lines()
            .any(|l| l.starts_with("node node1 ") && l.ends_with(" standby")),
        "{show}"
    );

    // Online again, node1 may take instances; the lab's instance is
    // sticky, so it stays until it is relocated there.
    run(&["node", "online", "node1"]);
    let show = run(&["node", "show"]);
    assert!(
        show.lines()
            .any(|l| l.starts_with("node node1 ") && !l.contains("standby")),
        "{show}"
    );
    run(&["instance", "relocate", "mail1", "to", "node1"]);
    let (_, g3) = c
        .wait_running(WITHIN, |n, g| n == "node1" && g > g2)
        .expect("relocated back to node1");
    eprintln!("node1 → {away} (gen {g2}) → node1 (gen {g3})");

    // Disabled: stopped, and no node holds its VIP or its volume.
    run(&["instance", "disable", "mail1"]);
    until(&c, "disabled and released", || {
        let status = c.record("status/mail1").ok_or("no status")?;
        if status["state"] != "stopped" {
            return Err(format!("status {status}"));
        }
        let (vip, mounted) = c.holders();
        if !vip.is_empty() || !mounted.is_empty() || !c.attached().is_empty() {
            return Err(format!(
                "VIP on {vip:?}, mounted on {mounted:?}, attached {:?}",
                c.attached()
            ));
        }
        let why = c.state().map_err(|e| e.to_string())?;
        match why.get("why/mail1").map(String::as_str) {
            Some("disabled") => Ok(()),
            other => Err(format!("why: {other:?}")),
        }
    });
    let show = run(&["instance", "show"]);
    assert!(show.contains("disabled"), "{show}");

    // Enabled: running again, on node1, with one node holding it all.
    run(&["instance", "enable", "mail1"]);
    let (n, g4) = c
        .wait_running(WITHIN, |_, g| g > g3)
        .expect("runs again after enable");
    assert_eq!(n, "node1");
    let (vip, mounted) = c.holders();
    let one: BTreeSet<String> = ["node1".to_string()].into();
    assert_eq!((vip, mounted), (one.clone(), one), "gen {g4}");
}
