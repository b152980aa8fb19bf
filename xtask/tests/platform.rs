//! The whole platform keeps mail flowing while back-end nodes die, as a
//! client sees it through the balancer's VIP and a proxy: node1 (mail1)
//! dies, is fenced by its BMC, and mail1 runs again elsewhere; the BMC
//! powers node1 on and it rejoins; then node2 dies with
//! mail2 and the directory (ldap) on it, and an account seen lately keeps
//! logging in while the directory moves. Every message acknowledged with
//! 250 is in its mailbox exactly once.
mod support;

use std::time::Duration;

use fulmar_lab::platform::{
    chaos::fenced_at,
    workload::{self, Workload, now},
};
use support::platform;

const USERS: [(&str, &str); 2] = [("ann", "ann-secret"), ("bob", "bob-secret")];

#[test]
fn dead_nodes_are_fenced_and_mail_flows_again_through_the_balancer() {
    let (work, mut front) = platform("platform");
    let (lab, p) = (&mut front.lab, front.platform.as_mut().unwrap());
    let client = Workload::start(lab, &work.0, &USERS).expect("workload");
    let served = |user: &'static str, from: f64, n: usize| {
        move |e: &[workload::Event]| workload::logins_after(e, user, from).len() >= n
    };
    let t = Duration::from_secs(60);
    client
        .wait(lab, t, "both accounts served", |e| {
            served("ann", 0.0, 3)(e) && served("bob", 0.0, 3)(e)
        })
        .unwrap();

    // node1, the leader, dies: another agent deposes it, mail1 is fenced
    // first, then runs on another node.
    let (home, generation) = p.running(lab, "mail1").expect("mail1 runs");
    assert_eq!(home, "node1");
    let leader = p.state(lab).unwrap().get("leader").cloned();
    assert_eq!(
        leader.as_deref(),
        Some("node1"),
        "the platform starts with node1 leading"
    );
    let killed = now();
    p.kill_node(lab, "node1").unwrap();
    let (moved_to, _) = p
        .wait_running(lab, "mail1", t, |n, g| n != "node1" && g > generation)
        .unwrap();
    client
        .wait(
            lab,
            t,
            "ann served after node1's death",
            served("ann", killed, 3),
        )
        .unwrap();
    let events = client.events(lab);
    let (fenced, level) = fenced_at(&front, "node1", killed).expect("node1 was fenced");
    assert_eq!(level, 1, "the BMC fenced node1");
    // Found by its silence (suspect_after), not by its lease: a lease of
    // 2 s renewed every 0.5 s outlives the death by at least 1.5 s.
    assert!(
        fenced - killed < 1.5,
        "node1's fence ended {:.2} s after its death: as late as the lease",
        fenced - killed
    );
    let back = workload::logins_after(&events, "ann", killed)[0];
    assert!(
        fenced < back.0 + back.1,
        "ann was served at {back:?} before node1's fence ended at {fenced}"
    );
    let ann_outage = workload::outage(&events, "ann", killed, now()).unwrap();
    // bob's home is untouched: his logins go on.
    let bob_failed = workload::failed_logins(&events, "bob", killed, now());
    assert!(
        bob_failed == 0,
        "{bob_failed} of bob's logins failed while node1 died:\n{}\n{}",
        client.failures(&front.lab).join("\n"),
        front.platform.as_ref().unwrap().agent_logs(&front.lab)
    );
    eprintln!("node1 killed: mail1 on {moved_to}, ann served again after {ann_outage:.2} s");

    // node1 is powered on through its BMC (links, addresses, its agent)
    // and rejoins; then node2 dies with mail2 and the directory.
    front.fulmar(&["fence", "on", "node1-bmc"]).unwrap();
    let (lab, p) = (&mut front.lab, front.platform.as_mut().unwrap());
    let deadline = std::time::Instant::now() + t;
    while !p.state(lab).unwrap().contains_key("alive/node1") {
        assert!(
            std::time::Instant::now() < deadline,
            "node1 did not rejoin after power-on:\n{}",
            lab.log("node1", "noded-bmc")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ldap_home, ldap_gen) = p.running(lab, "ldap").expect("ldap runs");
    let (mail2_home, mail2_gen) = p.running(lab, "mail2").expect("mail2 runs");
    assert_eq!(
        (ldap_home.as_str(), mail2_home.as_str()),
        ("node2", "node2")
    );
    let killed = now();
    p.kill_node(lab, "node2").unwrap();
    p.wait_running(lab, "ldap", t, |n, g| n != "node2" && g > ldap_gen)
        .unwrap();
    p.wait_running(lab, "mail2", t, |n, g| n != "node2" && g > mail2_gen)
        .unwrap();
    client
        .wait(
            lab,
            t,
            "bob served after node2's death",
            served("bob", killed, 3),
        )
        .unwrap();
    let moved = now();
    // Settle: ann keeps logging in past the directory's move.
    client
        .wait(lab, t, "ann served after the move", served("ann", moved, 3))
        .unwrap();
    let run = client.run.clone();
    let failures = client.failures(lab);
    let events = client.stop(lab).unwrap();
    let bob_outage = workload::outage(&events, "bob", killed, now()).unwrap();
    let ann_failed = workload::failed_logins(&events, "ann", killed, moved);
    let ann_slowest = workload::logins_after(&events, "ann", killed)
        .iter()
        .map(|(_, secs)| *secs)
        .fold(0.0, f64::max);
    eprintln!(
        "node2 killed: bob served again after {bob_outage:.2} s; ann: {ann_failed} failed logins, slowest {ann_slowest:.2} s"
    );
    assert_eq!(
        ann_failed,
        0,
        "ann, seen lately, must get in while the directory moves:\n{}",
        failures.join("\n")
    );

    // Nothing acknowledged is lost or stored twice.
    for (user, password) in USERS {
        let acked = workload::acked(&events, user);
        let stored = workload::stored(&front.lab, &run, user, password).unwrap();
        let lost: Vec<u64> = acked
            .iter()
            .filter(|s| !stored.contains_key(s))
            .copied()
            .collect();
        let twice: Vec<(&u64, &usize)> = stored.iter().filter(|(_, n)| **n > 1).collect();
        eprintln!(
            "{user}: {} acknowledged, {} stored",
            acked.len(),
            stored.len()
        );
        assert!(
            acked.len() > 20,
            "{user}: too few deliveries to mean anything"
        );
        assert!(lost.is_empty(), "{user}: acknowledged but lost: {lost:?}");
        assert!(twice.is_empty(), "{user}: stored more than once: {twice:?}");
    }
}
