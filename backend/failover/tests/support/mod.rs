//! The cluster lab as the failover suites start it: three agents on the
//! lab's timing, fenced as `fencing` says.
use fulmar_lab::cluster::{ClusterLab, Fencing, Options, Service};

// Each suite is its own crate: the directory suite uses only cluster_of.
#[allow(dead_code)]
pub fn cluster(fencing: Fencing) -> ClusterLab {
    cluster_of(fencing, Service::Maild)
}

/// The same cluster with `service` on the instance's volume.
pub fn cluster_of(fencing: Fencing, service: Service) -> ClusterLab {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "needs root (CI runs as root)"
    );
    let mut c = ClusterLab::build(Options {
        service,
        noded: env!("CARGO_BIN_EXE_fulmar-noded").into(),
        maild: fulmar_lab::dist::built("fulmar-maild"),
        // 2 s - 400 ms covers a renewal (500 ms) and a split etcd election
        // (2 × 500 ms): losing the etcd leader must not self-fence.
        lease_ttl_secs: 2,
        self_fence_margin_ms: 400,
        fencing,
        allowed: vec![],
    })
    .expect("cluster lab");
    c.start_agents().expect("agents");
    c
}
