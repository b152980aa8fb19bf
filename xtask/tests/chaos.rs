//! A short chaos on every CI run: one fault of each kind (node kill,
//! partition, directory node kill, fulmar-maild crash, proxy kill,
//! balancer kill -9, etcd member kill, relocation, standby and back) in a
//! seeded order, under a client working through the balancer's VIP.
//! After each the platform must serve every account again within the
//! step deadline; at the end no acknowledged message is lost or stored
//! twice, no instant had two holders of a VIP or volume, no volume needs
//! repair and no daemon panicked.
mod support;

use fulmar_lab::platform::chaos::{self, Kind};
use support::platform;

#[test]
fn one_fault_of_each_kind_breaks_no_invariant() {
    let (_work, mut front) = platform("chaos");
    let ledger = chaos::run(&mut front, Kind::ALL.len(), 7, &Kind::ALL, &mut |line| {
        eprintln!("{line}")
    })
    .expect("every fault recovered from");
    eprint!("{}", ledger.report());
    assert_eq!(ledger.faults.len(), Kind::ALL.len());
    let broken = ledger.broken();
    assert!(
        broken.is_empty(),
        "broken invariants:\n{}",
        broken.join("\n")
    );
    for user in ["ann", "bob"] {
        assert!(
            ledger.acked[user] > 20,
            "{user}: too few deliveries to mean anything"
        );
    }
}
