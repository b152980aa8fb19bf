//! The balancer program on crafted packets (BPF_PROG_TEST_RUN): documented
//! verdicts for odd input, RST on down, NAT rewrites, and exact counts
//! through opens, closes, resets, expiry, eviction and removal.
mod support;

use std::{collections::HashMap, net::IpAddr};

use fulmar_common::{Config, FLOW_ACTIVE, FLOW_INACTIVE, IPPROTO_UDP, SWEEP_REMOVED, global_stat};
use fulmar_lb::{Forwarding, RealState, Scheduler, ServiceSpec};
use rand::{Rng, SeedableRng, rngs::StdRng};
use support::{
    TestBalancer, VIP4, VIP6, ip,
    packet::{ACK, CLIENT_MAC, FIN, LB_MAC, PSH, RST, SYN, Segment, frame, parse},
    real_mac, reals, service,
};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const SEC: u64 = 1_000_000_000;

fn global(t: &TestBalancer, name: &str) -> u64 {
    t.lb.global_stats()
        .unwrap()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
}

fn client(i: u32) -> IpAddr {
    IpAddr::from([198, 19, (i >> 8) as u8, i as u8])
}

fn v4_service(t: &mut TestBalancer, n: usize) -> u32 {
    t.lb.apply_service(
        &service(VIP4, 143, Scheduler::Lc, Forwarding::DirectRouting),
        &reals(false, 143, &vec![1; n]),
    )
    .unwrap()
    .id
}

/// Counts per (service, slot) recomputed from the flow table.
fn recount(t: &TestBalancer) -> HashMap<(u32, u32), (u64, u64)> {
    let mut counts: HashMap<(u32, u32), (u64, u64)> = HashMap::new();
    for (_, flow) in t.lb.flows().unwrap() {
        let entry = counts.entry((flow.service, flow.slot)).or_default();
        match flow.state {
            FLOW_ACTIVE => entry.0 += 1,
            FLOW_INACTIVE => entry.1 += 1,
            other => panic!("flow left in state {other}"),
        }
    }
    counts
}

fn assert_counts_exact(t: &TestBalancer, id: u32, n: u32) {
    let expected = recount(t);
    for slot in 0..n {
        let c = t.lb.conns(id, slot).unwrap();
        let want = expected.get(&(id, slot)).copied().unwrap_or((0, 0));
        assert_eq!((c.active, c.inactive), want, "slot {slot}");
    }
}

#[test]
fn odd_packets_get_their_documented_verdicts() {
    let mut t = TestBalancer::new(1024);
    v4_service(&mut t, 2);
    let syn = frame(&Segment::tcp(client(1), 1000, ip(VIP4), 143, SYN));
    let mut run = |f: &[u8]| t.lb.run_balancer(f, 1).unwrap().action;

    let mut arp = syn[..42].to_vec();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    assert_eq!(run(&arp), XDP_PASS);
    assert_eq!(run(&syn[..14]), XDP_DROP, "Ethernet only, IPv4 ethertype");
    assert_eq!(run(&syn[..30]), XDP_DROP, "IPv4 header cut");
    assert_eq!(
        run(&syn[..44]),
        XDP_DROP,
        "TCP header cut (total length says more)"
    );
    let mut bad_len = syn.clone();
    bad_len[16..18].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(run(&bad_len), XDP_DROP, "total length beyond the frame");
    let mut bad_ihl = syn.clone();
    bad_ihl[14] = 0x44;
    assert_eq!(run(&bad_ihl), XDP_DROP, "IHL below 5");

    let mut fragment = syn.clone();
    fragment[20] = 0x20; // MF
    assert_eq!(run(&fragment), XDP_PASS);
    let mut icmp = syn.clone();
    icmp[23] = 1;
    assert_eq!(run(&icmp), XDP_PASS);
    let other_port = frame(&Segment::tcp(client(1), 1000, ip(VIP4), 144, SYN));
    assert_eq!(run(&other_port), XDP_PASS);
    let hop_by_hop = {
        let mut f = frame(&Segment::tcp(ip("2001:db8:9::1"), 1000, ip(VIP6), 143, SYN));
        f[20] = 0;
        f
    };
    assert_eq!(run(&hop_by_hop), XDP_PASS);

    // IPv4 options: balanced like any SYN.
    let mut with_options = syn[..34].to_vec();
    with_options[14] = 0x46;
    with_options.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    with_options.extend_from_slice(&syn[34..]);
    let tot = u16::from_be_bytes([with_options[16], with_options[17]]) + 4;
    with_options[16..18].copy_from_slice(&tot.to_be_bytes());
    with_options[24..26].copy_from_slice(&[0, 0]);
    assert_eq!(run(&with_options), XDP_TX);

    // TCP without a flow: RST/FIN dropped, anything else forwarded unpinned.
    let rst = frame(&Segment::tcp(client(2), 1000, ip(VIP4), 143, RST));
    assert_eq!(run(&rst), XDP_DROP);
    let ack = frame(&Segment::tcp(client(2), 1001, ip(VIP4), 143, ACK));
    assert_eq!(run(&ack), XDP_TX);

    for (name, count) in [
        ("pass_not_ip", 1),
        ("drop_truncated", 5),
        ("pass_fragment", 1),
        ("pass_other_proto", 1),
        ("pass_no_service", 1),
        ("pass_ipv6_ext", 1),
        ("ip_options", 1),
        ("drop_close_no_flow", 1),
        ("unpinned_midstream", 1),
    ] {
        assert_eq!(global(&t, name), count, "{name}");
    }
    assert_eq!(
        t.lb.flows().unwrap().len(),
        1,
        "only the SYN with options opened a flow"
    );
    assert_eq!(global_stat::NAMES.len(), global_stat::COUNT as usize);
}

#[test]
fn random_and_truncated_packets_get_only_documented_verdicts() {
    let mut t = TestBalancer::new(4096);
    let id = v4_service(&mut t, 4);
    t.lb.apply_service(
        &service(VIP6, 143, Scheduler::Wlc, Forwarding::Nat),
        &reals(true, 143, &[1, 2]),
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let valid = [
        frame(&Segment::tcp(client(1), 1000, ip(VIP4), 143, SYN)),
        frame(&Segment::tcp(ip("2001:db8:9::1"), 1000, ip(VIP6), 143, SYN)),
        frame(&Segment::udp(client(1), 53, ip(VIP4), 143)),
    ];
    // BPF_PROG_TEST_RUN takes no XDP frame shorter than an Ethernet header.
    const MIN: usize = 14;
    for base in &valid {
        for len in MIN..base.len() {
            let action = t.lb.run_balancer(&base[..len], 1).unwrap().action;
            assert!(
                matches!(action, XDP_DROP | XDP_PASS | XDP_TX),
                "len {len}: {action}"
            );
        }
    }
    for _ in 0..20_000 {
        let mut f = valid[rng.random_range(0..valid.len())].clone();
        // Corrupt a few bytes, sometimes cut the tail.
        for _ in 0..rng.random_range(1..6) {
            let at = rng.random_range(0..f.len());
            f[at] = rng.random();
        }
        if rng.random_bool(0.3) {
            f.truncate(rng.random_range(MIN..f.len()));
        }
        let action = t.lb.run_balancer(&f, 1).unwrap().action;
        assert_ne!(action, XDP_ABORTED);
    }
    assert_counts_exact(&t, id, 4);
}

#[test]
fn randomised_drift_ends_with_exact_counts() {
    let mut t = TestBalancer::new(512);
    let id = v4_service(&mut t, 5);
    let mut rng = StdRng::seed_from_u64(42);
    let mut ports: Vec<u16> = Vec::new();
    let mut next_port = 1024u16;
    let mut clock = 0u64;
    for step in 0..6000 {
        let send = |t: &mut TestBalancer, port: u16, flags: u8| {
            let f = frame(&Segment::tcp(client(9), port, ip(VIP4), 143, flags));
            t.lb.run_balancer(&f, 1).unwrap().action
        };
        match rng.random_range(0..100) {
            0..=34 => {
                send(&mut t, next_port, SYN);
                ports.push(next_port);
                next_port = next_port.wrapping_add(1).max(1024);
            }
            35..=54 if !ports.is_empty() => {
                let port = ports[rng.random_range(0..ports.len())];
                send(&mut t, port, ACK | PSH);
            }
            55..=69 if !ports.is_empty() => {
                let port = ports[rng.random_range(0..ports.len())];
                send(&mut t, port, FIN | ACK);
            }
            70..=79 if !ports.is_empty() => {
                let port = ports[rng.random_range(0..ports.len())];
                send(&mut t, port, RST);
            }
            80..=84 if !ports.is_empty() => {
                // Reopen a closed 4-tuple.
                let port = ports[rng.random_range(0..ports.len())];
                send(&mut t, port, SYN);
            }
            85..=89 => {
                // Time passes; idle flows expire.
                clock += rng.random_range(1..200) * SEC;
                t.lb.expire_flows(clock).unwrap();
            }
            90..=92 => {
                t.lb.evict_oldest(rng.random_range(1..20)).unwrap();
            }
            _ => {} // abandoned: nothing more is ever sent on some flows
        }
        if step % 500 == 0 {
            assert_counts_exact(&t, id, 5);
        }
    }
    assert_counts_exact(&t, id, 5);
    // Everything idle long enough goes, and every count with it.
    t.lb.expire_flows(clock + 10_000 * SEC).unwrap();
    assert!(t.lb.flows().unwrap().is_empty());
    for slot in 0..5 {
        let c = t.lb.conns(id, slot).unwrap();
        assert_eq!((c.active, c.inactive), (0, 0), "slot {slot}");
    }
}

#[test]
fn timeouts_follow_protocol_and_state() {
    let mut t = TestBalancer::new(1024);
    let id = v4_service(&mut t, 1);
    t.lb.apply_service(
        &ServiceSpec {
            proto: IPPROTO_UDP,
            ..service(VIP4, 143, Scheduler::Lc, Forwarding::DirectRouting)
        },
        &reals(false, 143, &[1]),
    )
    .unwrap();
    let send =
        |t: &mut TestBalancer, seg: Segment| t.lb.run_balancer(&frame(&seg), 1).unwrap().action;
    send(&mut t, Segment::tcp(client(1), 2000, ip(VIP4), 143, SYN)); // SYN only
    send(&mut t, Segment::tcp(client(1), 2001, ip(VIP4), 143, SYN));
    send(&mut t, Segment::tcp(client(1), 2001, ip(VIP4), 143, ACK)); // established
    send(&mut t, Segment::tcp(client(1), 2002, ip(VIP4), 143, SYN));
    send(
        &mut t,
        Segment::tcp(client(1), 2002, ip(VIP4), 143, FIN | ACK),
    ); // closing
    send(&mut t, Segment::udp(client(1), 2003, ip(VIP4), 143));
    let ports = |t: &TestBalancer| {
        let mut p: Vec<u16> =
            t.lb.flows()
                .unwrap()
                .iter()
                .map(|(k, _)| u16::from_be(k.sport_be))
                .collect();
        p.sort();
        p
    };
    assert_eq!(ports(&t), vec![2000, 2001, 2002, 2003]);
    t.lb.expire_flows(61 * SEC).unwrap();
    assert_eq!(
        ports(&t),
        vec![2001, 2002, 2003],
        "SYN-only gone after 60 s"
    );
    t.lb.expire_flows(121 * SEC).unwrap();
    assert_eq!(ports(&t), vec![2001, 2003], "closed gone after 120 s");
    t.lb.expire_flows(301 * SEC).unwrap();
    assert_eq!(ports(&t), vec![2001], "UDP gone after 300 s");
    t.lb.expire_flows(30 * 60 * SEC).unwrap();
    assert_eq!(
        ports(&t),
        vec![2001],
        "established survives an IMAP IDLE period"
    );
    t.lb.expire_flows(8101 * SEC).unwrap();
    assert!(ports(&t).is_empty());
    assert_eq!(t.lb.conns(id, 0).unwrap().active, 0);

    // Configurable.
    let config = Config {
        tcp_established_ns: 10 * SEC,
        ..Config::default()
    };
    t.lb.set_config(&config).unwrap();
    send(&mut t, Segment::tcp(client(1), 2004, ip(VIP4), 143, SYN));
    send(&mut t, Segment::tcp(client(1), 2004, ip(VIP4), 143, ACK));
    t.lb.expire_flows(11 * SEC).unwrap();
    assert!(ports(&t).is_empty());
}

#[test]
fn a_full_table_drops_new_flows_until_eviction_makes_room() {
    let mut t = TestBalancer::new(64);
    let id = v4_service(&mut t, 2);
    for port in 0..64 {
        let f = frame(&Segment::tcp(client(1), 3000 + port, ip(VIP4), 143, SYN));
        assert_eq!(t.lb.run_balancer(&f, 1).unwrap().action, XDP_TX);
    }
    let overflow = frame(&Segment::tcp(client(1), 4000, ip(VIP4), 143, SYN));
    assert_eq!(t.lb.run_balancer(&overflow, 1).unwrap().action, XDP_DROP);
    assert_eq!(t.lb.service_stats(id).unwrap().drop_table_full, 1);
    let report = t.lb.evict_oldest(16).unwrap();
    assert_eq!(report.removed, 16);
    assert_counts_exact(&t, id, 2);
    assert_eq!(t.lb.run_balancer(&overflow, 1).unwrap().action, XDP_TX);
    let total: u64 = (0..2).map(|s| t.lb.conns(id, s).unwrap().active).sum();
    assert_eq!(total, 49);
}

#[test]
fn a_real_marked_down_keeps_or_resets_its_flows_per_service() {
    for reset in [false, true] {
        let mut t = TestBalancer::new(1024);
        let spec = ServiceSpec {
            reset_on_down: reset,
            ..service(VIP4, 143, Scheduler::Lc, Forwarding::DirectRouting)
        };
        let mut pool = reals(false, 143, &[1, 1]);
        let id = t.lb.apply_service(&spec, &pool).unwrap().id;
        let syn = Segment::tcp(client(1), 5000, ip(VIP4), 143, SYN);
        let out = t.lb.run_balancer(&frame(&syn), 1).unwrap();
        let slot = (0..2)
            .find(|&s| parse(&out.data).unwrap().dst_mac == real_mac(s))
            .unwrap();
        pool[slot].state = RealState::Down;
        t.lb.apply_service(&spec, &pool).unwrap();

        let data = Segment {
            flags: ACK | PSH,
            seq: 7000,
            ack: 9000,
            payload: b"a1 NOOP\r\n".to_vec(),
            ..syn.clone()
        };
        let out = t.lb.run_balancer(&frame(&data), 1).unwrap();
        assert_eq!(out.action, XDP_TX);
        let seen = parse(&out.data).unwrap();
        if !reset {
            assert_eq!(seen.dst_mac, real_mac(slot), "kept on its real");
            assert_eq!(t.lb.conns(id, slot as u32).unwrap().active, 1);
            continue;
        }
        // An RST back to the client, checksums verified by parse().
        assert_eq!(seen.dst_mac, CLIENT_MAC);
        assert_eq!(seen.src_mac, LB_MAC);
        assert_eq!((seen.seg.src, seen.seg.dst), (ip(VIP4), client(1)));
        assert_eq!((seen.seg.sport, seen.seg.dport), (143, 5000));
        assert_eq!(seen.seg.flags, RST);
        assert_eq!(seen.seg.seq, 9000, "RST carries the segment's ACK number");
        assert!(seen.seg.payload.is_empty());
        assert_eq!(t.lb.conns(id, slot as u32).unwrap().active, 0);
        assert_eq!(t.lb.conns(id, slot as u32).unwrap().inactive, 1);
        assert_eq!(t.lb.service_stats(id).unwrap().rst_sent, 1);
        // A new SYN avoids the down real.
        let new = frame(&Segment::tcp(client(1), 5001, ip(VIP4), 143, SYN));
        let out = t.lb.run_balancer(&new, 1).unwrap();
        assert_eq!(parse(&out.data).unwrap().dst_mac, real_mac(1 - slot));
    }
}

#[test]
fn rst_answers_ipv6_and_syn_segments_too() {
    let mut t = TestBalancer::new(1024);
    let spec = ServiceSpec {
        reset_on_down: true,
        ..service(VIP6, 143, Scheduler::Lc, Forwarding::DirectRouting)
    };
    let mut pool = reals(true, 143, &[1]);
    t.lb.apply_service(&spec, &pool).unwrap();
    let syn = Segment {
        seq: 100,
        ..Segment::tcp(ip("2001:db8:9::1"), 6000, ip(VIP6), 143, SYN)
    };
    t.lb.run_balancer(&frame(&syn), 1).unwrap();
    pool[0].state = RealState::Down;
    t.lb.apply_service(&spec, &pool).unwrap();
    // A retransmitted SYN (no ACK): RST|ACK acknowledging seq + 1.
    let out = t.lb.run_balancer(&frame(&syn), 1).unwrap();
    assert_eq!(out.action, XDP_TX);
    let seen = parse(&out.data).unwrap();
    assert_eq!(seen.seg.flags, RST | ACK);
    assert_eq!((seen.seg.seq, seen.seg.ack), (0, 101));
    assert_eq!(seen.seg.dst, ip("2001:db8:9::1"));
}

#[test]
fn nat_rewrites_keep_every_checksum_valid() {
    let mut t = TestBalancer::new(1024);
    for (vip, v6) in [(VIP4, false), (VIP6, true)] {
        for proto in [fulmar_common::IPPROTO_TCP, IPPROTO_UDP] {
            let spec = ServiceSpec {
                proto,
                ..service(vip, 2525, Scheduler::Lc, Forwarding::Nat)
            };
            let pool = reals(v6, 10025, &[1]);
            t.lb.apply_service(&spec, &pool).unwrap();
            let src = if v6 { ip("2001:db8:9::1") } else { client(1) };
            let mut seg = if proto == IPPROTO_UDP {
                Segment::udp(src, 7000, ip(vip), 2525)
            } else {
                Segment::tcp(src, 7000, ip(vip), 2525, SYN)
            };
            seg.payload = b"some payload bytes".to_vec();
            let out = t.lb.run_balancer(&frame(&seg), 1).unwrap();
            assert_eq!(out.action, XDP_TX, "{vip} {proto}");
            let seen = parse(&out.data).unwrap_or_else(|e| panic!("{vip} proto {proto}: {e}"));
            assert_eq!(seen.seg.dst, pool[0].addr);
            assert_eq!(seen.seg.dport, 10025);
            assert_eq!(seen.seg.src, src);
            assert_eq!(seen.seg.payload, b"some payload bytes");
        }
    }
    // An IPv4 UDP datagram without a checksum keeps none.
    let mut f = frame(&Segment::udp(client(2), 7001, ip(VIP4), 2525));
    f[40..42].copy_from_slice(&[0, 0]);
    let out = t.lb.run_balancer(&f, 1).unwrap();
    assert_eq!(&out.data[40..42], &[0, 0]);
    parse(&out.data).unwrap();
}

#[test]
fn removing_a_real_removes_its_flows_and_counts() {
    let mut t = TestBalancer::new(1024);
    let spec = service(VIP4, 143, Scheduler::Lc, Forwarding::DirectRouting);
    let pool = reals(false, 143, &[1, 1, 1]);
    let id = t.lb.apply_service(&spec, &pool).unwrap().id;
    for port in 0..30 {
        t.lb.run_balancer(
            &frame(&Segment::tcp(client(1), 8000 + port, ip(VIP4), 143, SYN)),
            1,
        )
        .unwrap();
    }
    let before: Vec<_> =
        t.lb.live_reals(&t.lb.service(&spec.key()).unwrap().unwrap())
            .unwrap();
    // Drop the middle real: the others keep their slots and flows.
    let kept = vec![pool[0].clone(), pool[2].clone()];
    t.lb.apply_service(&spec, &kept).unwrap();
    let svc = t.lb.service(&spec.key()).unwrap().unwrap();
    let after = t.lb.live_reals(&svc).unwrap();
    assert_eq!(after[0], before[0]);
    assert_eq!(after[2], before[2]);
    assert_eq!(after[1].state, fulmar_common::REAL_EMPTY);
    assert_eq!(t.lb.conns(id, 1).unwrap().active, 0);
    assert_eq!(t.lb.flows().unwrap().len(), 20);
    assert_counts_exact(&t, id, 3);
    // A new real reuses the slot with a new generation.
    let mut readd = kept.clone();
    readd.push(support::reals(false, 143, &[1, 1, 1, 1])[3].clone());
    t.lb.apply_service(&spec, &readd).unwrap();
    let svc = t.lb.service(&spec.key()).unwrap().unwrap();
    assert_eq!(
        t.lb.live_reals(&svc).unwrap()[1].generation,
        before[1].generation + 2
    );
    // The sweeper reports each key once.
    let keys: Vec<_> = t.lb.flows().unwrap().into_iter().map(|(k, _)| k).collect();
    let results = t.lb.sweep_keys(true, &keys[..3], 0).unwrap();
    assert!(results.iter().all(|&r| r == SWEEP_REMOVED));
    assert!(
        t.lb.sweep_keys(true, &keys[..3], 0)
            .unwrap()
            .iter()
            .all(|&r| r == fulmar_common::SWEEP_NOT_FOUND)
    );
}

/// Keeps this test's runs on CPU 0: the flow cache is per CPU, and a hit
/// is only predictable when every run sees the same CPU's cache.
fn stay_on_cpu0() {
    // SAFETY: sched_setaffinity(2) on this thread with a set we fill in.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

#[test]
fn the_flow_cache_forwards_established_packets_and_never_outlives_a_change() {
    stay_on_cpu0();
    let mut t = TestBalancer::new(1024);
    let spec = ServiceSpec {
        reset_on_down: true,
        ..service(VIP4, 143, Scheduler::Lc, Forwarding::DirectRouting)
    };
    let mut pool = reals(false, 143, &[1, 1]);
    let id = t.lb.apply_service(&spec, &pool).unwrap().id;
    let hits = |t: &TestBalancer| t.lb.service_stats(id).unwrap().flow_cache_hits;
    let send = |t: &mut TestBalancer, port: u16, flags: u8| {
        let out =
            t.lb.run_balancer(
                &frame(&Segment::tcp(client(7), port, ip(VIP4), 143, flags)),
                1,
            )
            .unwrap();
        (out.action, parse(&out.data).unwrap())
    };
    // Opens a flow; returns its real's slot after one established ACK.
    let open = |t: &mut TestBalancer, port: u16| -> usize {
        let (_, seen) = send(t, port, SYN);
        let slot = (0..2).find(|&s| seen.dst_mac == real_mac(s)).unwrap();
        send(t, port, ACK);
        slot
    };

    // Established ACKs after the first come from the cache, to the flow's
    // real, counted per service and per real; FIN still closes the flow.
    let a = open(&mut t, 6000);
    let before = (hits(&t), t.lb.real_stats(id, a as u32).unwrap().packets);
    for _ in 0..5 {
        let (action, seen) = send(&mut t, 6000, ACK | PSH);
        assert_eq!(
            (action, seen.dst_mac, seen.src_mac),
            (XDP_TX, real_mac(a), LB_MAC)
        );
    }
    assert_eq!(hits(&t), before.0 + 5);
    assert_eq!(t.lb.real_stats(id, a as u32).unwrap().packets, before.1 + 5);
    send(&mut t, 6000, FIN | ACK);
    assert_eq!(hits(&t), before.0 + 5, "FIN takes the full path");
    assert_eq!(t.lb.conns(id, a as u32).unwrap().inactive, 1);
    assert_counts_exact(&t, id, 2);

    // A cached flow still moves FLOWS' last_seen (the cache is trusted for
    // 25 jiffies, at most 250 ms).
    open(&mut t, 6001);
    send(&mut t, 6001, ACK);
    let last_seen = |t: &TestBalancer| {
        t.lb.flows()
            .unwrap()
            .into_iter()
            .find(|(k, _)| u16::from_be(k.sport_be) == 6001)
            .unwrap()
            .1
            .last_seen_ns
    };
    let seen_before = last_seen(&t);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let h = hits(&t);
    send(&mut t, 6001, ACK);
    assert_eq!(hits(&t), h, "a stale entry is rechecked");
    assert!(last_seen(&t) > seen_before);
    send(&mut t, 6001, ACK);
    assert_eq!(hits(&t), h + 1, "and cached again");

    // An expired flow is not forwarded from the cache.
    t.lb.expire_flows(8101 * SEC).unwrap();
    assert!(t.lb.flows().unwrap().is_empty());
    let (h, midstream) = (hits(&t), global(&t, "unpinned_midstream"));
    send(&mut t, 6001, ACK);
    assert_eq!(hits(&t), h);
    assert_eq!(global(&t, "unpinned_midstream"), midstream + 1);

    // A real marked down: the next packet of its cached flow gets the RST.
    let c = open(&mut t, 6002);
    send(&mut t, 6002, ACK);
    let h = hits(&t);
    pool[c].state = RealState::Down;
    t.lb.apply_service(&spec, &pool).unwrap();
    let (action, seen) = send(&mut t, 6002, ACK);
    assert_eq!((action, seen.seg.flags), (XDP_TX, RST));
    assert_eq!(hits(&t), h);
    assert_counts_exact(&t, id, 2);

    // A deleted service: its cached flows pass untouched.
    pool[c].state = RealState::Up;
    t.lb.apply_service(&spec, &pool).unwrap();
    open(&mut t, 6003);
    send(&mut t, 6003, ACK);
    t.lb.delete_service(&spec.key()).unwrap();
    let passed = global(&t, "pass_no_service");
    let (action, _) = send(&mut t, 6003, ACK);
    assert_eq!(action, XDP_PASS);
    assert_eq!(global(&t, "pass_no_service"), passed + 1);
}
