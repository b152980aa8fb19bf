//! The fault suite (CTS-like): a three-node cluster with a 3-member etcd
//! in the lab, one fulmar-maild instance, a client delivering mail over LMTP the
//! whole time. Each fault is injected while deliveries run; a sampler
//! checks that no two nodes ever hold the VIP or have the volume mounted,
//! and every acknowledged message must be in the mailbox afterwards.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

mod support;

use fulmar_lab::cluster::{ClusterLab, Deliverer, Fencing, NODES, Sampler};
use support::cluster;

/// The faults share the two cores with three etcds and three agents: one
/// cluster at a time keeps lease timing honest.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Waits for the instance, then starts the client and the sampler and
/// waits for the first delivery: (where it runs, client, sampler).
fn under_load(c: &ClusterLab) -> ((String, u64), Deliverer, Sampler) {
    let running = c
        .wait_running(Duration::from_secs(30), |_, _| true)
        .expect("instance starts");
    let client = Deliverer::start(&c.lab, Duration::from_millis(10));
    let sampler = Sampler::start(c, Duration::from_millis(20));
    assert!(
        client
            .wait_ack_after(Instant::now(), Duration::from_secs(10))
            .is_some()
    );
    (running, client, sampler)
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
    let ((first, g1), client, sampler) = under_load(&c);
    assert_eq!(first, "node1", "goes to its preferred node");

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

    // 3. the leader killed; it must not be the holder, so move the
    // instance off it first if need be.
    let leader = c.leader().expect("a leader");
    let mut holder = (third, g3);
    if leader == holder.0 {
        let to = NODES.iter().find(|n| **n != leader).unwrap();
        c.fulmar(
            &fulmar_lab::dist::built("fulmar"),
            &["instance", "relocate", "mail1", "to", to],
        )
        .unwrap();
        let from = holder.0.clone();
        holder = c
            .wait_running(Duration::from_secs(30), |n, _| n != from)
            .expect("relocated off the leader");
    }
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
        Some(holder),
        "the instance stayed where it was"
    );
    verdict(&c, client, sampler);
}

/// SIGTERM, what `systemctl stop fulmar-noded` sends: the agent stops its
/// instance, revokes its lease and exits 0; the leader moves the instance
/// with no fence (the node said it left), nobody else holds the VIP or the
/// volume meanwhile, and every acknowledged delivery is stored.
#[test]
fn a_stopped_agent_hands_its_instance_over_unfenced() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = cluster(Fencing::Lab);
    let ((first, g1), client, sampler) = under_load(&c);
    let fault = Instant::now();
    let status = c.stop_agent(&first, Duration::from_secs(30)).unwrap();
    let exited = fault.elapsed();
    assert!(
        status.success(),
        "{first}'s agent: {status}\n{}",
        c.agent_logs()
    );
    assert!(
        c.lab.log(&first, "noded1").contains("left the cluster"),
        "{}",
        c.agent_logs()
    );
    let (second, _) = c
        .wait_running(Duration::from_secs(30), |n, g| n != first && g > g1)
        .expect("taken over after the agent stopped");
    serving_again(&client, fault, "SIGTERM of the holder's agent");
    assert_eq!(
        c.record(&format!("fence/{first}")),
        None,
        "a node that left cleanly was fenced"
    );
    let (vip, mounted) = c.holders();
    let only: std::collections::BTreeSet<String> = [second.clone()].into();
    assert_eq!((&vip, &mounted), (&only, &only));
    assert!(!c.attached().contains(&first), "{:?}", c.attached());
    eprintln!("{first}'s agent exited {exited:?} after SIGTERM; running on {second}");
    verdict(&c, client, sampler);
}

#[test]
fn service_killed_restarts_in_place_then_relocates() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster(Fencing::Lab);
    let ((node, generation), client, sampler) = under_load(&c);

    // Two service deaths: restarted in place, same node, same generation.
    for attempt in 1..=2 {
        let pid = c.service_pid().expect("fulmar-maild runs");
        let fault = Instant::now();
        // SAFETY: kill(2) has no memory effects.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = c.record("status/mail1").unwrap_or_default();
            if status["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("restarted in place ({attempt})")))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no restart {attempt}: {status}\n{}",
                c.agent_logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(c.running(), Some((node.clone(), generation)));
        serving_again(&client, fault, &format!("service killed ({attempt})"));
    }
    // The third within the window: given up here and relocated.
    let pid = c.service_pid().expect("fulmar-maild runs");
    let fault = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let (moved, g) = c
        .wait_running(Duration::from_secs(30), |n, g| n != node && g > generation)
        .expect("relocated after the threshold");
    serving_again(&client, fault, "service killed past the threshold");
    let placement = c.record("placement/mail1").unwrap();
    assert_eq!(placement["avoid"][0]["node"], node.as_str(), "{placement}");
    eprintln!("moved from {node} to {moved} (generation {g})");
    verdict(&c, client, sampler);
}

#[test]
fn fencing_level_fallback_and_unfenceable_node() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = cluster(Fencing::Varied);
    let prometheus = c.start_prometheus().expect("prometheus");
    let fulmar = fulmar_lab::dist::built("fulmar");
    c.wait_running(Duration::from_secs(30), |_, _| true)
        .expect("instance starts");
    let client = Deliverer::start(&c.lab, Duration::from_millis(10));
    let sampler = Sampler::start(&c, Duration::from_millis(20));

    // node2: level 1 (a BMC that never answers) fails, level 2 fences.
    c.fulmar(&fulmar, &["instance", "relocate", "mail1", "to", "node2"])
        .unwrap();
    let (_, g) = c
        .wait_running(Duration::from_secs(30), |n, _| n == "node2")
        .expect("relocated to node2");
    let fault = Instant::now();
    c.kill_node("node2").unwrap();
    let (_, g2) = c
        .wait_running(Duration::from_secs(30), |n, g2| n != "node2" && g2 > g)
        .expect("taken over from node2");
    serving_again(&client, fault, "node2 killed (fence level 2)");
    let fence = c.record("fence/node2").unwrap();
    assert_eq!(fence["record"]["outcome"]["level"], 2, "{fence}");
    assert_eq!(fence["record"]["levels"][0]["ok"], false, "{fence}");

    // node3: its only level fails. Nothing takes over; the state says why.
    c.fulmar(&fulmar, &["instance", "relocate", "mail1", "to", "node3"])
        .unwrap();
    let (_, g3) = c
        .wait_running(Duration::from_secs(30), |n, g| n == "node3" && g > g2)
        .expect("relocated to node3");
    c.kill_node("node3").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let why = loop {
        let why = c
            .state()
            .unwrap()
            .get("why/mail1")
            .cloned()
            .unwrap_or_default();
        if why.contains("unfenceable") {
            break why;
        }
        assert!(
            Instant::now() < deadline,
            "no unfenceable state: {why}\n{}",
            c.agent_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(why.contains("fulmar node confirm node3"), "{why}");
    // It stays down: no other node took over while node3 may still write.
    std::thread::sleep(Duration::from_secs(3));
    let placement = c.record("placement/mail1").unwrap();
    assert_eq!(placement["node"], "node3", "{placement}");
    assert_eq!(placement["generation"], g3, "{placement}");
    let status = c.fulmar(&fulmar, &["cluster", "status"]).unwrap();
    assert!(status.contains("unfenceable"), "{status}");
    metrics_while_waiting_for_a_confirmation(&c, &prometheus);

    // The operator pulls the plug, then confirms: the instance comes back.
    let fault = Instant::now();
    c.unplug("node3").unwrap();
    let out = c.fulmar(&fulmar, &["node", "confirm", "node3"]).unwrap();
    assert!(out.contains("manual fence confirmed"), "{out}");
    let (n, _) = c
        .wait_running(Duration::from_secs(30), |n, g| n != "node3" && g > g3)
        .expect("taken over after the confirmation");
    serving_again(&client, fault, "node3 after manual confirmation");
    eprintln!("running on {n} after the confirmation");
    verdict(&c, client, sampler);
}

/// What a real Prometheus scraping the agents shows while mail1 waits for
/// an operator: the leader's phase for it and the pending alert, node2's
/// fence by level 2, and the monitors of the fence devices (the lab's BMC
/// address answers nothing; its power and I/O-barrier devices work).
fn metrics_while_waiting_for_a_confirmation(
    c: &ClusterLab,
    p: &fulmar_lab::prometheus::Prometheus,
) {
    let within = Duration::from_secs(20);
    let wait = |expr: &str, n: usize, ok: &dyn Fn(f64) -> bool| {
        p.wait_for(&c.lab, expr, n, |(_, v)| ok(*v), within)
            .unwrap_or_else(|e| panic!("{e}\n{}", c.agent_logs()))
    };
    // node1 alone is left: one agent up, and it leads.
    wait("up{job=\"fulmar-noded\"} == 1", 1, &|_| true);
    wait("fulmar_node_leader == 1", 1, &|_| true);
    let phase = wait("fulmar_cluster_instance_phase == 1", 1, &|_| true);
    assert_eq!(
        phase[0].0["phase"], "awaiting_fence_confirmation",
        "{phase:?}"
    );
    assert_eq!(phase[0].0["fulmar_instance"], "mail1", "{phase:?}");
    wait(
        "ALERTS{alertname=\"FulmarInstanceAwaitingFenceConfirmation\"}",
        1,
        &|_| true,
    );
    // From the fence log in etcd: whichever node leads now reports them.
    wait(
        "fulmar_cluster_fence_attempts_total{node=\"node2\",result=\"fenced\"}",
        1,
        &|v| v == 1.0,
    );
    wait(
        "fulmar_cluster_fence_attempts_total{node=\"node3\",result=\"failed\"}",
        1,
        &|v| v >= 1.0,
    );
    let devices = wait("fulmar_cluster_fence_device_up", 9, &|_| true);
    for (labels, v) in devices {
        let bmc = labels["device"].ends_with("-bmc");
        assert_eq!(v, if bmc { 0.0 } else { 1.0 }, "{labels:?}");
    }
    wait("fulmar_cluster_node_member == 0", 2, &|_| true);
}

/// Wall-clock milliseconds: what fulmar-maild's alive stamps and the fence
/// records use.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Self-fencing proven from the volume: node3, which no fence device can
/// reach, is cut off while it runs the instance. Nothing kills it; its own
/// agent must stop the service and let go of the volume when it can no
/// longer renew its lease. fulmar-maild's alive stamp on the volume (every
/// 250 ms, durable) says when node3 last wrote: after the cut (it was
/// alive and writing), before the leader saw its lease expire, and within
/// the lease TTL of the cut. Only after that does anyone else start it.
#[test]
fn a_cut_off_node_stops_writing_before_its_lease_can_expire() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster(Fencing::Varied);
    let fulmar = fulmar_lab::dist::built("fulmar");
    c.wait_running(Duration::from_secs(30), |_, _| true)
        .expect("instance starts");
    c.fulmar(&fulmar, &["instance", "relocate", "mail1", "to", "node3"])
        .unwrap();
    let (_, g3) = c
        .wait_running(Duration::from_secs(30), |n, _| n == "node3")
        .expect("relocated to node3");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.alive_stamp("node3").is_none_or(|(g, _)| g != g3) {
        assert!(Instant::now() < deadline, "node3 never stamped the volume");
        std::thread::sleep(Duration::from_millis(50));
    }

    let cut_ms = wall_ms();
    c.cut("node3").unwrap();
    // The leader sees the lease expire, and no fence device can act.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .state()
        .unwrap()
        .get("why/mail1")
        .is_some_and(|w| w.contains("unfenceable"))
    {
        assert!(
            Instant::now() < deadline,
            "not unfenceable\n{}",
            c.agent_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let fence = c.record("fence/node3").expect("a fence attempt");
    let detected_ms = fence["record"]["started_ms"].as_u64().expect("started_ms");
    // node3 let go of the volume by itself: no loop device of it is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.attached().contains("node3") {
        assert!(
            Instant::now() < deadline,
            "node3 still has the volume attached\n{}",
            c.agent_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still down everywhere else: nobody took over from an unfenced node.
    let placement = c.record("placement/mail1").unwrap();
    assert_eq!(placement["node"], "node3", "{placement}");
    assert!(c.attached().is_empty(), "{:?}", c.attached());

    // The operator confirms; a survivor takes over, and its mount (a
    // journal replay) shows what node3 got onto the disk.
    c.fulmar(&fulmar, &["node", "confirm", "node3"]).unwrap();
    let (n, g) = c
        .wait_running(Duration::from_secs(30), |n, g| n != "node3" && g > g3)
        .expect("taken over after the confirmation");
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_ms = loop {
        if let Some((_, ms)) = c.alive_stamp(&n).filter(|(sg, _)| *sg == g) {
            break ms;
        }
        assert!(Instant::now() < deadline, "{n} never stamped the volume");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (generation, last_ms) = c.alive_stamp("node3").expect("node3's stamp");
    assert_eq!(generation, g3);
    let ttl_ms = 2000;
    eprintln!(
        "node3 cut at {cut_ms}: last wrote {} ms later; the leader saw the lease expire {} ms \
         after the cut; {n} first wrote {} ms after it",
        last_ms as i64 - cut_ms as i64,
        detected_ms as i64 - cut_ms as i64,
        first_ms as i64 - cut_ms as i64,
    );
    assert!(
        last_ms > cut_ms,
        "it stopped at the cut, not by itself: {last_ms} <= {cut_ms}"
    );
    assert!(
        last_ms < detected_ms,
        "node3 wrote at {last_ms}, after the leader saw its lease expire at {detected_ms}"
    );
    assert!(
        last_ms < cut_ms + ttl_ms,
        "node3 wrote {} ms after the cut, past the lease TTL",
        last_ms - cut_ms
    );
    assert!(
        first_ms > last_ms,
        "{n} at {first_ms}, node3 last at {last_ms}"
    );
}

#[test]
fn etcd_member_lost() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster(Fencing::Lab);
    let (running, client, sampler) = under_load(&c);
    // The leader is the hard case: renewals wait for an election.
    let leader = c.etcd_leader().unwrap();
    let fault = Instant::now();
    c.kill_etcd(leader).unwrap();
    // Leases ride through on the two members left: nothing moves, nobody
    // self-fences, and the tool still answers.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(c.running(), Some(running), "{}", c.agent_logs());
    assert!(
        !c.agent_logs().contains("self-fencing"),
        "{}",
        c.agent_logs()
    );
    let status = c
        .fulmar(&fulmar_lab::dist::built("fulmar"), &["cluster", "status"])
        .unwrap();
    assert!(status.contains("instance mail1 running on"), "{status}");
    let gap = client.longest_gap_after(fault);
    eprintln!("etcd leader (member {leader}) lost: longest pause in deliveries {gap:?}");
    assert!(gap < Duration::from_secs(2), "deliveries stalled {gap:?}");
    verdict(&c, client, sampler);
}

/// Handovers under a continuous delivery load: fenced takeovers of a dead
/// node (kill -9 of all its processes, one of which holds its mount of
/// the volume for 3 s more, past the fence), of a cut-off node (its link down:
/// it self-fences while it is fenced, so its processes are still dying
/// when the barrier runs) and planned relocations in turn. No takeover's check may find damage (the instance would wait in
/// needs-repair) or repair anything, the sampler never sees the volume
/// attached by two nodes, every acknowledged message is stored, and at
/// the end a full `e2fsck -fn` of the stopped volume finds nothing.
/// `FULMAR_HANDOVERS` sets the count (the bench runs 50).
#[test]
fn handovers_under_load_leave_a_clean_volume() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rounds: usize = std::env::var("FULMAR_HANDOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let mut c = cluster(Fencing::Lab);
    let fulmar = fulmar_lab::dist::built("fulmar");
    let ((mut holder, mut generation), client, sampler) = under_load(&c);
    for round in 1..=rounds {
        let fault = Instant::now();
        let what = match round % 3 {
            1 => "fenced takeover of a dead node",
            2 => "fenced takeover of a cut-off node",
            _ => "relocation",
        };
        match round % 3 {
            // A process of the dead node holds its mount for a moment
            // after the kill: the barrier must wait for its device to go.
            1 => c
                .kill_node_leaving_a_holder(&holder, Duration::from_secs(3))
                .unwrap(),
            2 => c.cut(&holder).unwrap(),
            _ => {
                c.fulmar(&fulmar, &["instance", "relocate", "mail1"])
                    .unwrap();
            }
        }
        let from = holder.clone();
        let (to, g) = c
            .wait_running(Duration::from_secs(30), |n, g| n != from && g > generation)
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", c.agent_logs()));
        serving_again(
            &client,
            fault,
            &format!("round {round}, {what} {from} → {to}"),
        );
        if round % 3 != 0 {
            c.boot(&from).unwrap();
        }
        (holder, generation) = (to, g);
    }
    let findings = c.check_findings();
    assert!(findings.is_empty(), "{findings:?}");
    verdict(&c, client, sampler);

    // Stopped everywhere, the volume gets the full check.
    if let Err(report) = c.stop_and_check(&fulmar).unwrap() {
        panic!("after {rounds} handovers e2fsck -fn finds: {report}");
    }
    eprintln!("{rounds} handovers under load: volume clean (e2fsck -fn)");
}
