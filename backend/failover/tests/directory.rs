//! The directory as a clustered instance: slapd (back_mdb, no `dbnosync`)
//! on its own volume under fulmar-noded, a client adding entries through
//! the VIP the whole time. Its holder is killed (SIGKILL; fenced by power
//! and the I/O barrier), then the instance is relocated back: each time
//! slapd opens its database on the new node with nothing to repair, every
//! acknowledged add is there, no two nodes ever held the VIP or the
//! volume, and the stopped volume checks clean.
mod support;

use std::time::{Duration, Instant};

use fulmar_lab::cluster::{
    Fencing, Sampler, Service,
    ldap::{LdapWriter, stored},
};
use support::cluster_of;

const WITHIN: Duration = Duration::from_secs(30);

#[test]
fn slapd_moves_with_its_database_intact() {
    let mut c = cluster_of(Fencing::Lab, Service::Slapd);
    let fulmar = fulmar_lab::dist::built("fulmar");
    let (first, g1) = c.wait_running(WITHIN, |_, _| true).expect("slapd starts");
    let writer = LdapWriter::start(&c.lab, Duration::from_millis(10));
    let sampler = Sampler::start(&c, Duration::from_millis(20));
    // Adds flowing (and some maybe still in flight) when the fault comes.
    let flowing = |what: &str| {
        assert!(
            writer.wait_acks(30, WITHIN),
            "{what}: 30 adds not acknowledged within {WITHIN:?}"
        )
    };
    flowing("before the kill");

    // 1. Its node killed: fenced, then slapd opens the database elsewhere.
    let fault = Instant::now();
    c.kill_node(&first).unwrap();
    let (second, g2) = c
        .wait_running(WITHIN, |n, g| n != first && g > g1)
        .expect("taken over after kill -9");
    let back = writer
        .wait_ack_after(Instant::now(), WITHIN)
        .expect("adds acknowledged on the new node");
    eprintln!(
        "{first} killed: adds acknowledged again after {:?}",
        back - fault
    );
    flowing("after the takeover");
    let fence = c.record(&format!("fence/{first}")).expect("fence recorded");
    assert_eq!(fence["record"]["outcome"]["result"], "fenced", "{fence}");
    c.boot(&first).unwrap();

    // 2. Relocated back (a clean stop there, a start here).
    let fault = Instant::now();
    c.fulmar(&fulmar, &["instance", "relocate", "mail1", "to", &first])
        .unwrap();
    c.wait_running(WITHIN, |n, g| n == first && g > g2)
        .expect("relocated back");
    let back = writer
        .wait_ack_after(Instant::now(), WITHIN)
        .expect("adds acknowledged after the relocation");
    eprintln!(
        "relocated {second} → {first}: adds acknowledged again after {:?}",
        back - fault
    );
    flowing("after the relocation");

    let acked = writer.stop();
    let (samples, violations) = sampler.stop();
    assert!(
        violations.is_empty(),
        "two holders in {} of {samples} samples: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    let have = stored(&c.lab).expect("ldapsearch");
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !have.contains(n))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged adds missing: {lost:?} ({} acknowledged, {} stored)",
        acked.len(),
        have.len()
    );
    assert!(!acked.is_empty());
    assert_eq!(
        c.check_findings(),
        Vec::<String>::new(),
        "a takeover check repaired something"
    );
    let fsck = c.stop_and_check(&fulmar).unwrap();
    assert!(fsck.is_ok(), "e2fsck -fn: {fsck:?}");
    eprintln!(
        "{} adds acknowledged, all stored; {samples} samples",
        acked.len()
    );
}
