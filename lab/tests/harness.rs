//! The lab builds the reference topology for real and leaves nothing behind.
use std::panic;

use fulmar_lab::{HostSpec, Lab, LabSpec, leftovers, topology};

fn ping(lab: &Lab, from: &str, to: &str) -> bool {
    lab.exec(from, "ping", &["-c", "1", "-W", "2", to])
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn reference_topology_routes_between_subnets_and_tears_down() {
    let prefix;
    {
        let lab = Lab::build(&topology::reference()).expect("build");
        prefix = lab.prefix().to_string();
        assert!(
            ping(&lab, "client", "198.18.1.11"),
            "client → proxy1 through the router"
        );
        assert!(ping(&lab, "client", "198.18.2.20"), "client → directory");
        assert!(
            ping(&lab, "client", "2001:db8:2::b"),
            "client → node1 over IPv6"
        );
        assert!(ping(&lab, "proxy3", "198.18.2.13"), "front end → standby");
        assert_eq!(
            lab.check("router", "sysctl", &["-n", "net.ipv4.ip_forward"])
                .unwrap()
                .trim(),
            "1"
        );
        assert_eq!(
            lab.check("proxy1", "sysctl", &["-n", "net.ipv4.conf.all.arp_ignore"])
                .unwrap()
                .trim(),
            "1"
        );
        assert!(
            lab.mac("balancer", "eth0")
                .unwrap()
                .starts_with(|c: char| c.is_ascii_hexdigit())
        );
    }
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}

#[test]
fn processes_run_inside_hosts_log_and_die_with_the_lab() {
    let spec = LabSpec::lan(&[("a", "198.18.5.1/24"), ("b", "198.18.5.2/24")]);
    let pid;
    let log_dir;
    {
        let mut lab = Lab::build(&spec).unwrap();
        log_dir = lab.log_dir().to_path_buf();
        pid = lab
            .spawn(
                "a",
                "talker",
                "sh",
                &["-c", "ip -o -4 addr show eth0; sleep 60"],
            )
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !lab.log("a", "talker").contains("198.18.5.1") {
            assert!(
                std::time::Instant::now() < deadline,
                "log: {:?}",
                lab.log("a", "talker")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The process sees host a's interfaces only.
        assert!(!lab.log("a", "talker").contains("198.18.5.2"));
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived the lab"
    );
    assert!(!log_dir.exists());
}

#[test]
fn a_failing_test_leaves_nothing_behind() {
    let spec = topology::reference();
    let result = panic::catch_unwind(|| {
        let mut lab = Lab::build(&spec).unwrap();
        let pins = format!("/sys/fs/bpf/{}-pins", lab.prefix());
        std::fs::create_dir_all(&pins).unwrap();
        lab.register_pin_dir(&pins);
        lab.spawn("proxy1", "sleeper", "sleep", &["60"]).unwrap();
        // Smuggle the prefix out through the panic message.
        panic!("on purpose: {}", lab.prefix());
    });
    let message = *result
        .expect_err("must panic")
        .downcast::<String>()
        .unwrap();
    let prefix = message.trim_start_matches("on purpose: ");
    assert!(prefix.starts_with(fulmar_lab::NETNS_PREFIX));
    assert_eq!(leftovers(prefix), Vec::<String>::new());
}

#[test]
fn specs_outside_the_address_plan_are_refused() {
    let spec = LabSpec::lan(&[("a", "10.0.0.1/24")]);
    let err = Lab::build(&spec).err().expect("refused").to_string();
    assert!(err.contains("198.18.0.0/15"), "{err}");
    let bad_name = LabSpec {
        hosts: vec![HostSpec::new("no spaces")],
        ..Default::default()
    };
    assert!(Lab::build(&bad_name).is_err());
}
