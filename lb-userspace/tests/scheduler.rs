//! The balancer's scheduling, checked against an IPVS reference model on
//! the real program through BPF_PROG_TEST_RUN.
mod support;

use fulmar_common::{ConnCount, MAX_REALS, REAL_UP, Real};
use fulmar_lb::{Forwarding, RealState, Scheduler};
use support::{
    TestBalancer, VIP4, ip,
    packet::{ACK, FIN, SYN, Segment, frame, parse},
    real_mac, reals, service,
};

const XDP_DROP: u32 = 1;
const XDP_TX: u32 = 3;

/// IPVS lc/wlc: overhead = active*256 + inactive; the first strictly better
/// candidate from `start` on wins; weight 0 and not-up never.
fn model_pick(reals: &[Real], conns: &[ConnCount], start: usize, wlc: bool) -> Option<usize> {
    let n = reals.len();
    let mut best: Option<(usize, u64, u64)> = None;
    for i in 0..n {
        let slot = (start + i) % n;
        let real = &reals[slot];
        if real.state != REAL_UP || real.weight == 0 {
            continue;
        }
        let overhead = conns[slot].active * 256 + conns[slot].inactive;
        let weight = real.weight as u64;
        let better = match best {
            None => true,
            Some((_, b_oh, b_w)) if wlc => b_oh * weight > overhead * b_w,
            Some((_, b_oh, _)) => overhead < b_oh,
        };
        if better {
            best = Some((slot, overhead, weight));
        }
    }
    best.map(|(slot, _, _)| slot)
}

struct Harness {
    t: TestBalancer,
    id: u32,
    wlc: bool,
    next_port: u16,
}

impl Harness {
    fn new(scheduler: Scheduler, weights: &[u16], capacity: u32) -> Self {
        let mut t = TestBalancer::new(capacity);
        let svc =
            t.lb.apply_service(
                &service(VIP4, 143, scheduler, Forwarding::DirectRouting),
                &reals(false, 143, weights),
            )
            .expect("apply service");
        Self {
            t,
            id: svc.id,
            wlc: scheduler == Scheduler::Wlc,
            next_port: 1024,
        }
    }

    fn snapshot(&self) -> (Vec<Real>, Vec<ConnCount>, u64) {
        let svc = self.t.lb.services().unwrap()[0].1;
        let reals = self.t.lb.live_reals(&svc).unwrap();
        let conns = (0..svc.n_reals)
            .map(|s| self.t.lb.conns(self.id, s).unwrap())
            .collect();
        (reals, conns, self.t.lb.cursor(self.id).unwrap())
    }

    /// Opens a flow from a fresh client port; returns the slot it went to,
    /// after checking it is the one the model predicts.
    fn open(&mut self) -> Option<usize> {
        let (reals, conns, cursor) = self.snapshot();
        let expected = model_pick(
            &reals,
            &conns,
            (cursor % reals.len() as u64) as usize,
            self.wlc,
        );
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        let out = self.send(port, SYN);
        match expected {
            None => {
                assert_eq!(out.0, XDP_DROP, "no candidate: the SYN must be dropped");
                None
            }
            Some(slot) => {
                assert_eq!(out.0, XDP_TX);
                assert_eq!(out.1, real_mac(slot), "model picked slot {slot}");
                Some(slot)
            }
        }
    }

    fn send(&mut self, port: u16, flags: u8) -> (u32, [u8; 6]) {
        let seg = Segment::tcp(ip("198.18.200.1"), port, ip(VIP4), 143, flags);
        let out = self.t.lb.run_balancer(&frame(&seg), 1).unwrap();
        let mac = if out.action == XDP_TX {
            parse(&out.data).unwrap().dst_mac
        } else {
            [0; 6]
        };
        (out.action, mac)
    }

    fn actives(&self) -> Vec<u64> {
        self.snapshot().1.iter().map(|c| c.active).collect()
    }
}

#[test]
fn lc_ties_rotate_and_inactive_counts() {
    let mut h = Harness::new(Scheduler::Lc, &[1, 1, 1], 4096);
    let picks: Vec<_> = (0..6).map(|_| h.open().unwrap()).collect();
    // Equal overhead each round: every real takes one per round.
    assert_eq!(h.actives(), vec![2, 2, 2], "picks {picks:?}");
    // Close the flow on port 1024 (FIN): its real now has 1 active + 1 inactive,
    // overhead 257 < 512, so it takes the next flow whatever the cursor.
    let (_, mac) = h.send(1024, FIN | ACK);
    let closed_slot = (0..3).find(|&s| real_mac(s) == mac).unwrap();
    assert_eq!(h.open(), Some(closed_slot));
    for _ in 0..20 {
        h.open();
    }
}

#[test]
fn wlc_follows_weights_exactly() {
    let mut h = Harness::new(Scheduler::Wlc, &[1, 2, 3, 4], 16384);
    for _ in 0..10_000 {
        h.open();
    }
    let actives = h.actives();
    assert_eq!(actives.iter().sum::<u64>(), 10_000);
    for (i, &active) in actives.iter().enumerate() {
        let ideal = 10_000 * (i as u64 + 1) / 10;
        assert!(
            active.abs_diff(ideal) <= 1,
            "real {i}: {active} active, ideal {ideal}: {actives:?}"
        );
    }
}

#[test]
fn weight_zero_down_and_drain_take_no_new_flows() {
    let mut h = Harness::new(Scheduler::Wlc, &[5, 0, 5, 5, 5], 4096);
    let mut pool = reals(false, 143, &[5, 0, 5, 5, 5]);
    pool[2].state = RealState::Down;
    pool[3].state = RealState::Drain;
    h.t.lb
        .apply_service(
            &service(VIP4, 143, Scheduler::Wlc, Forwarding::DirectRouting),
            &pool,
        )
        .unwrap();
    for _ in 0..50 {
        let slot = h.open().unwrap();
        assert!(slot == 0 || slot == 4, "slot {slot} must not be picked");
    }
    // Everything out: new flows are dropped and counted.
    for real in pool.iter_mut() {
        real.state = RealState::Down;
    }
    h.t.lb
        .apply_service(
            &service(VIP4, 143, Scheduler::Wlc, Forwarding::DirectRouting),
            &pool,
        )
        .unwrap();
    assert_eq!(h.open(), None);
    assert_eq!(h.t.lb.service_stats(h.id).unwrap().drop_no_real, 1);
}

#[test]
fn one_real_and_a_full_pool() {
    let mut one = Harness::new(Scheduler::Lc, &[1], 1024);
    for _ in 0..10 {
        assert_eq!(one.open(), Some(0));
    }
    let weights: Vec<u16> = (0..MAX_REALS).map(|i| 1 + (i % 7) as u16).collect();
    let mut full = Harness::new(Scheduler::Wlc, &weights, 8192);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        seen.insert(full.open().unwrap());
    }
    assert_eq!(
        seen.len(),
        MAX_REALS as usize,
        "every real of a 256-pool takes flows"
    );
}

#[test]
fn established_packets_stay_with_their_real() {
    let mut h = Harness::new(Scheduler::Lc, &[1, 1, 1, 1], 1024);
    let first = h.open().unwrap();
    for _ in 0..10 {
        h.open();
    }
    // The flow on port 1024 keeps its real whatever the counts now say.
    for _ in 0..5 {
        let (action, mac) = h.send(1024, ACK);
        assert_eq!(action, XDP_TX);
        assert_eq!(mac, real_mac(first));
    }
}

#[test]
fn a_closed_port_reused_toward_a_drained_real_is_scheduled_afresh() {
    let mut h = Harness::new(Scheduler::Lc, &[1, 1, 1], 1024);
    let first = h.open().unwrap();
    let (_, mac) = h.send(1024, FIN | ACK);
    assert_eq!(mac, real_mac(first));
    // While its real takes new flows, the closed 4-tuple reopens there.
    assert_eq!(h.send(1024, SYN).1, real_mac(first));
    h.send(1024, FIN | ACK);
    let mut pool = reals(false, 143, &[1, 1, 1]);
    pool[first].state = RealState::Drain;
    h.t.lb
        .apply_service(
            &service(VIP4, 143, Scheduler::Lc, Forwarding::DirectRouting),
            &pool,
        )
        .unwrap();
    // The client reuses the port at once (the server closed first): a new
    // connection, which the drained real must not get.
    let (action, mac) = h.send(1024, SYN);
    assert_eq!(action, XDP_TX);
    let moved = (0..3).find(|&s| real_mac(s) == mac).unwrap();
    assert_ne!(moved, first, "a new connection went to the drained real");
    // Its next packets follow it; the drained real holds no flow.
    assert_eq!(h.send(1024, ACK).1, real_mac(moved));
    let (_, conns, _) = h.snapshot();
    assert_eq!((conns[first].active, conns[first].inactive), (0, 0));
    assert_eq!(conns[moved].active, 1);
}
