//! The fault suite (CTS-like): a three-node cluster with a 3-member etcd
//! in the lab, one Dovecot instance, a client delivering mail over LMTP the
//! whole time. Each fault is injected while deliveries run; a sampler
//! checks that no two nodes ever hold the VIP or have the volume mounted,
//! and every acknowledged message must be in the mailbox afterwards.
use std::{
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use fulmar_lab::cluster::{ClusterLab, Deliverer, Fencing, Options, Sampler};

/// The faults share the two cores with three etcds and three agents: one
/// cluster at a time keeps lease timing honest.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn cluster(fencing: Fencing) -> ClusterLab {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root (CI runs as root)"
    );
    let mut c = ClusterLab::build(Options {
        noded: env!("CARGO_BIN_EXE_fulmar-noded").into(),
        lease_ttl_secs: 2,
        self_fence_margin_ms: 600,
        fencing,
        allowed: vec![],
    })
    .expect("cluster lab");
    c.start_agents().expect("agents");
    c
}

fn fulmar() -> &'static Path {
    // The operator's tool is built by the lb crate; tests run after
    // `cargo build --all-targets`.
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/debug/fulmar"
    ))
}

/// Ends a fault: stop the client and the sampler, then check the two
/// invariants.
fn verdict(c: &ClusterLab, client: Deliverer, sampler: Sampler) -> usize {
    let acked = client.stop();
    let (samples, violations) = sampler.stop();
    assert!(
        violations.is_empty(),
        "split brain in {} of {samples} samples: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    let stored = c.stored().expect("mailbox");
    let lost: Vec<u64> = acked
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !stored.contains(n))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but missing: {lost:?}; left in tmp/: {:?}; {} stored",
        c.stranded(),
        stored.len(),
    );
    assert!(!acked.is_empty(), "nothing was delivered");
    eprintln!(
        "{} deliveries acknowledged, all stored; {samples} samples",
        acked.len()
    );
    acked.len()
}

/// After the takeover: waits for deliveries to flow again and reports the
/// outage.
fn serving_again(client: &Deliverer, fault: Instant, what: &str) -> Duration {
    let resumed = Instant::now();
    client
        .wait_ack_after(resumed, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{what}: no delivery acknowledged within 30 s"));
    let took = client.outage_after(fault).expect("acknowledged");
    // Let deliveries run on the new holder before the next fault.
    std::thread::sleep(Duration::from_secs(1));
    eprintln!("{what}: serving again {took:?} after the fault");
    took
}

#[test]
fn node_killed_then_partitioned_then_leader_killed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = cluster(Fencing::Lab);
    let (first, g1) = c
        .wait_running(Duration::from_secs(30), |_, _| true)
        .expect("instance starts");
    assert_eq!(first, "node1", "goes to its preferred node");
    let client = Deliverer::start(&c.lab, Duration::from_millis(10));
    let sampler = Sampler::start(&c, Duration::from_millis(20));
    assert!(
        client
            .wait_ack_after(Instant::now(), Duration::from_secs(10))
            .is_some()
    );

    // 1. kill -9 of every process of the holder.
    let fault = Instant::now();
    c.kill_node(&first).unwrap();
    let (second, g2) = c
        .wait_running(Duration::from_secs(30), |n, g| n != first && g > g1)
        .expect("taken over after kill -9");
    serving_again(&client, fault, "kill -9 of node1");
    let fence = c.record(&format!("fence/{first}")).expect("fence recorded");
    assert_eq!(fence["record"]["outcome"]["result"], "fenced", "{fence}");
    c.boot(&first).unwrap();

    // 2. the holder's link cut: it self-fences, the leader fences it.
    let fault = Instant::now();
    c.cut(&second).unwrap();
    let (third, g3) = c
        .wait_running(Duration::from_secs(30), |n, g| n != second && g > g2)
        .expect("taken over after partition");
    serving_again(&client, fault, "partition of the holder");
    assert!(
        c.lab.log(&second, "noded1").contains("self-fencing"),
        "the cut-off node stopped its instance itself:\n{}",
        c.agent_logs()
    );
    c.boot(&second).unwrap();

    // 3. the leader killed (a node that does not hold the instance).
    let leader = c.leader().expect("a leader");
    if leader != third {
        let fault = Instant::now();
        c.kill_node(&leader).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.leader().is_none_or(|l| l == leader) {
            assert!(Instant::now() < deadline, "no new leader");
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "new leader {:?} {:?} after killing {leader}",
            c.leader(),
            fault.elapsed()
        );
        assert_eq!(
            c.running(),
            Some((third.clone(), g3)),
            "the instance did not move"
        );
    }
    verdict(&c, client, sampler);
}
