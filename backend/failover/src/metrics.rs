//! `GET /metrics` of fulmar-noded. Every node reports itself: its lease
//! (held, incarnation, renewal latency), whether it leads, the instances it
//! runs and their volumes' space. Only the leader reports the cluster (who
//! is a member, each instance's phase, node and generation, fence attempts,
//! fence devices' monitor results), so each cluster-wide series comes from
//! one place and an alert on it fires once. The instance label is
//! `fulmar_instance`: Prometheus keeps `instance` for the scrape target.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use fulmar_daemon::metrics::{Histogram, Kind, Text};

use fulmar_fencing::Outcome;

use crate::{
    config::ClusterConfig,
    heartbeat::Heartbeats,
    state::{RunState, Snapshot},
};

/// Lease renewals answer in milliseconds; one near TTL/4 is a warning.
static RENEW_BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5];
/// Fencing takes from well under a second (a local agent) to a BMC's tens.
static FENCE_BUCKETS: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Every phase an instance can be in, as the leader sees it.
pub const PHASES: [&str; 13] = [
    "running",
    "starting",
    "restarting",
    "stopping",
    "stopped",
    "failed",
    "needs_repair",
    "fencing",
    "awaiting_fence_confirmation",
    "fenced",
    "unplaced",
    "disabled",
    "frozen",
];

/// The leader's view of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub phase: &'static str,
    pub node: Option<String>,
    pub generation: u64,
}

struct ClusterView {
    nodes: BTreeMap<String, (bool, bool)>,
    instances: BTreeMap<String, InstanceView>,
    /// From the fence log in etcd, so a new leader reports every fence
    /// (node, result) → count, and their durations.
    fences: BTreeMap<(String, &'static str), u64>,
    fence_seconds: Histogram,
}

impl ClusterView {
    fn of(config: &ClusterConfig, s: &Snapshot) -> Self {
        let nodes = config
            .node
            .keys()
            .map(|n| (n.clone(), (s.alive.contains_key(n), s.standby(n))))
            .collect();
        let instances = config
            .instance
            .keys()
            .map(|name| (name.clone(), view(s, name)))
            .collect();
        let mut fences = BTreeMap::new();
        let fence_seconds = Histogram::new(&FENCE_BUCKETS);
        for r in &s.fencelog {
            let result = match r.outcome {
                Outcome::Fenced { .. } => "fenced",
                Outcome::Unfenceable { .. } => "failed",
                Outcome::ManuallyConfirmed { .. } => "confirmed_by_hand",
            };
            *fences.entry((r.node.clone(), result)).or_default() += 1;
            if !matches!(r.outcome, Outcome::ManuallyConfirmed { .. }) {
                fence_seconds.observe(Duration::from_millis(r.delay_ms + r.duration_ms));
            }
        }
        ClusterView {
            nodes,
            instances,
            fences,
            fence_seconds,
        }
    }
}

pub struct Metrics {
    node: Mutex<String>,
    lease_held: AtomicBool,
    incarnation: AtomicI64,
    renew: Histogram,
    renew_failures: AtomicU64,
    leader: AtomicBool,
    /// Instances running here → (generation, mountpoint).
    local: Mutex<BTreeMap<String, (u64, PathBuf)>>,
    /// The leader's latest snapshot; read into a view only when scraped.
    cluster: Mutex<Option<(Arc<ClusterConfig>, Snapshot)>>,
    /// device → monitor passed
    devices: Mutex<BTreeMap<String, bool>>,
    heartbeats: Mutex<Option<Arc<Heartbeats>>>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    node: Mutex::default(),
    lease_held: AtomicBool::new(false),
    incarnation: AtomicI64::new(0),
    renew: Histogram::new(&RENEW_BUCKETS),
    renew_failures: AtomicU64::new(0),
    leader: AtomicBool::new(false),
    local: Mutex::default(),
    cluster: Mutex::default(),
    devices: Mutex::default(),
    heartbeats: Mutex::default(),
});

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn set_node(&self, node: &str) {
        *lock(&self.node) = node.to_string();
    }

    pub fn lease(&self, held: bool, incarnation: i64) {
        self.lease_held.store(held, Relaxed);
        self.incarnation.store(incarnation, Relaxed);
    }

    /// A keep-alive answered after `took`, or (None) did not.
    pub fn renewal(&self, took: Option<Duration>) {
        match took {
            Some(d) => self.renew.observe(d),
            None => {
                self.renew_failures.fetch_add(1, Relaxed);
            }
        }
    }

    /// Leading or not; a node that stops leading drops the cluster view.
    pub fn leading(&self, yes: bool) {
        self.leader.store(yes, Relaxed);
        if !yes {
            *lock(&self.cluster) = None;
            lock(&self.devices).clear();
        }
    }

    pub fn running_here(&self, instance: &str, generation: u64, mountpoint: &Path) {
        lock(&self.local).insert(instance.into(), (generation, mountpoint.into()));
    }

    pub fn gone_here(&self, instance: &str) {
        lock(&self.local).remove(instance);
    }

    /// The snapshot the leader just planned from.
    pub fn cluster(&self, config: Arc<ClusterConfig>, s: Snapshot) {
        *lock(&self.cluster) = Some((config, s));
    }

    /// Where the ages of the other nodes' heartbeats are read.
    pub fn heartbeats(&self, h: Arc<Heartbeats>) {
        *lock(&self.heartbeats) = Some(h);
    }

    pub fn device_monitor(&self, device: &str, ok: bool) {
        lock(&self.devices).insert(device.into(), ok);
    }

    pub fn render(&self) -> String {
        let mut t = Text::default();
        let node = lock(&self.node).clone();
        t.family("fulmar_node_info", Kind::Gauge, "This node's name.")
            .sample("fulmar_node_info", &[("node", &node)], 1);
        t.single(
            "fulmar_node_lease_held",
            Kind::Gauge,
            "1 while this node holds its membership lease.",
            u8::from(self.lease_held.load(Relaxed)),
        );
        t.single(
            "fulmar_node_incarnation",
            Kind::Gauge,
            "The lease's incarnation (the alive key's create revision).",
            self.incarnation.load(Relaxed),
        );
        let name = "fulmar_node_lease_renew_seconds";
        t.family(
            name,
            Kind::Histogram,
            "Time for a lease keep-alive to be answered.",
        );
        self.renew.render(&mut t, name, &[]);
        t.single(
            "fulmar_node_lease_renew_failures_total",
            Kind::Counter,
            "Keep-alives not answered in time.",
            self.renew_failures.load(Relaxed),
        );
        t.single(
            "fulmar_node_leader",
            Kind::Gauge,
            "1 while this node leads the cluster.",
            u8::from(self.leader.load(Relaxed)),
        );
        let ages = lock(&self.heartbeats)
            .as_ref()
            .map(|h| h.ages())
            .unwrap_or_default();
        let age = (
            "fulmar_node_heartbeat_age_seconds",
            Kind::Gauge,
            "Since this node last heard each other node's heartbeat (the leader fences one past timing.suspect_after).",
        );
        t.by(
            age,
            "peer",
            ages.iter().map(|(n, d)| (n.as_str(), d.as_secs_f64())),
        );
        self.local_text(&mut t);
        self.cluster_text(&mut t);
        t.finish()
    }

    fn local_text(&self, t: &mut Text) {
        let local = lock(&self.local).clone();
        let name = "fulmar_node_instance_running";
        t.family(
            name,
            Kind::Gauge,
            "Instances running on this node, with their generation.",
        );
        for (instance, (generation, _)) in &local {
            t.sample(
                name,
                &[
                    ("fulmar_instance", instance),
                    ("generation", &generation.to_string()),
                ],
                1,
            );
        }
        let space: Vec<(&str, (u64, u64))> = local
            .iter()
            .filter_map(|(i, (_, m))| volume_space(m).map(|s| (i.as_str(), s)))
            .collect();
        let size = (
            "fulmar_node_volume_size_bytes",
            Kind::Gauge,
            "Size of the instance's mounted volume.",
        );
        t.by(
            size,
            "fulmar_instance",
            space.iter().map(|(i, s)| (*i, s.0)),
        );
        let avail = (
            "fulmar_node_volume_avail_bytes",
            Kind::Gauge,
            "Bytes of the volume still free to the service.",
        );
        t.by(
            avail,
            "fulmar_instance",
            space.iter().map(|(i, s)| (*i, s.1)),
        );
    }

    fn cluster_text(&self, t: &mut Text) {
        let view = lock(&self.cluster)
            .as_ref()
            .map(|(config, s)| ClusterView::of(config, s));
        if let Some(c) = &view {
            let member = (
                "fulmar_cluster_node_member",
                Kind::Gauge,
                "1 while the node holds a lease (leader's view).",
            );
            let nodes = || c.nodes.iter().map(|(n, v)| (n.as_str(), v));
            t.by(member, "node", nodes().map(|(n, v)| (n, u8::from(v.0))));
            let standby = (
                "fulmar_cluster_node_standby",
                Kind::Gauge,
                "1 while the node is in standby.",
            );
            t.by(standby, "node", nodes().map(|(n, v)| (n, u8::from(v.1))));
            let name = "fulmar_cluster_instance_phase";
            t.family(
                name,
                Kind::Gauge,
                "1 for the phase the instance is in (leader's view).",
            );
            for (i, v) in &c.instances {
                for phase in PHASES {
                    t.sample(
                        name,
                        &[("fulmar_instance", i), ("phase", phase)],
                        u8::from(v.phase == phase),
                    );
                }
            }
            let generation = (
                "fulmar_cluster_instance_generation",
                Kind::Gauge,
                "The instance's generation (it grows with every move).",
            );
            let instances = c.instances.iter().map(|(i, v)| (i.as_str(), v.generation));
            t.by(generation, "fulmar_instance", instances);
            let name = "fulmar_cluster_instance_node";
            t.family(
                name,
                Kind::Gauge,
                "1 for the node the instance is placed on.",
            );
            for (i, v) in &c.instances {
                if let Some(n) = &v.node {
                    t.sample(name, &[("fulmar_instance", i), ("node", n)], 1);
                }
            }
            let name = "fulmar_cluster_fence_attempts_total";
            t.family(
                name,
                Kind::Counter,
                "Fencing runs in the cluster's fence log, by node and result.",
            );
            for ((n, result), v) in &c.fences {
                t.sample(name, &[("node", n), ("result", result)], v);
            }
            let name = "fulmar_cluster_fence_seconds";
            t.family(
                name,
                Kind::Histogram,
                "How long those fencing runs took (delay included).",
            );
            c.fence_seconds.render(t, name, &[]);
        }
        if self.leader.load(Relaxed) {
            let name = "fulmar_cluster_fence_device_up";
            t.family(
                name,
                Kind::Gauge,
                "1 when the fence device's last monitor passed.",
            );
            for (d, ok) in lock(&self.devices).iter() {
                t.sample(name, &[("device", d)], u8::from(*ok));
            }
        }
    }
}

/// What phase `name` is in: the plan's own reading of the snapshot.
pub fn view(s: &Snapshot, name: &str) -> InstanceView {
    let admin = s.instance_admin.get(name).cloned().unwrap_or_default();
    let Some(p) = s.placement.get(name) else {
        let phase = if admin.frozen {
            "frozen"
        } else if admin.disabled {
            "disabled"
        } else {
            "unplaced"
        };
        return InstanceView {
            phase,
            node: None,
            generation: 0,
        };
    };
    let status = s.current_status(name);
    let phase = if admin.frozen {
        "frozen"
    } else if s.incarnation(&p.node) != Some(p.incarnation)
        && !status.is_some_and(|st| st.state.down())
    {
        // Its holder is gone and may still write: only a fence frees it.
        match s
            .fence
            .get(&p.node)
            .filter(|f| f.incarnation >= p.incarnation)
        {
            Some(f) if f.record.safe_to_take_over() => "fenced",
            Some(_) => "awaiting_fence_confirmation",
            None => "fencing",
        }
    } else {
        match status.map(|st| st.state) {
            None => "starting",
            Some(RunState::Starting) => "starting",
            Some(RunState::Running) => "running",
            Some(RunState::Restarting) => "restarting",
            Some(RunState::Stopping) => "stopping",
            Some(RunState::Stopped) if admin.disabled => "disabled",
            Some(RunState::Stopped) => "stopped",
            Some(RunState::Failed) => "failed",
            Some(RunState::NeedsRepair) => "needs_repair",
        }
    };
    InstanceView {
        phase,
        node: Some(p.node.clone()),
        generation: p.generation,
    }
}

/// (size, available to unprivileged writers) of the file system at `path`.
fn volume_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `s` points to memory
    // statvfs fills in full when it returns 0.
    let s = unsafe {
        if libc::statvfs(c.as_ptr(), s.as_mut_ptr()) != 0 {
            return None;
        }
        s.assume_init()
    };
    let frag = s.f_frsize;
    Some((s.f_blocks * frag, s.f_bavail * frag))
}

#[cfg(test)]
mod tests {
    use fulmar_fencing::{Outcome, Record};

    use super::*;
    use crate::state::{Fence, Placement, Status};

    #[test]
    fn heartbeat_ages_are_shown_per_peer() {
        let h = Arc::new(Heartbeats::default());
        h.heard("node2");
        let m = fresh();
        m.heartbeats(h);
        let text = m.render();
        let line = text
            .lines()
            .find(|l| l.starts_with("fulmar_node_heartbeat_age_seconds{peer=\"node2\"}"))
            .unwrap_or_else(|| panic!("no age for node2 in:\n{text}"));
        let age: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.0..60.0).contains(&age), "{line}");
    }

    fn placed(state: Option<RunState>) -> Snapshot {
        let mut s = Snapshot::default();
        s.alive.insert("node1".into(), (5, 1));
        s.placement.insert(
            "mail1".into(),
            Placement {
                node: "node1".into(),
                incarnation: 5,
                generation: 3,
                stop: false,
                avoid: vec![],
            },
        );
        if let Some(state) = state {
            s.status.insert(
                "mail1".into(),
                Status {
                    node: "node1".into(),
                    generation: 3,
                    state,
                    detail: String::new(),
                    steps: vec![],
                    at_ms: 0,
                },
            );
        }
        s
    }

    fn fence(outcome: Outcome) -> Fence {
        Fence {
            incarnation: 5,
            record: Record {
                node: "node1".into(),
                started_ms: 0,
                delay_ms: 0,
                duration_ms: 0,
                levels: vec![],
                outcome,
            },
            unfenced: false,
        }
    }

    #[test]
    fn phases_follow_the_status_and_a_lost_holder_s_fence() {
        let phase = |s: &Snapshot| view(s, "mail1").phase;
        assert_eq!(phase(&Snapshot::default()), "unplaced");
        assert_eq!(phase(&placed(None)), "starting");
        let running = placed(Some(RunState::Running));
        assert_eq!(phase(&running), "running");
        assert_eq!(view(&running, "mail1").generation, 3);
        assert_eq!(view(&running, "mail1").node.as_deref(), Some("node1"));

        let mut lost = running.clone();
        lost.alive.clear();
        assert_eq!(phase(&lost), "fencing");
        lost.fence.insert(
            "node1".into(),
            fence(Outcome::Unfenceable {
                reasons: vec!["bmc timed out".into()],
            }),
        );
        assert_eq!(phase(&lost), "awaiting_fence_confirmation");
        lost.fence
            .insert("node1".into(), fence(Outcome::Fenced { level: 1 }));
        assert_eq!(phase(&lost), "fenced");
        // A fence of an older incarnation does not cover this placement.
        lost.fence.get_mut("node1").unwrap().incarnation = 4;
        assert_eq!(phase(&lost), "fencing");

        // It stopped before its node went: nothing to fence.
        let mut stopped = placed(Some(RunState::Failed));
        stopped.alive.clear();
        assert_eq!(phase(&stopped), "failed");
    }

    /// node1's metrics, holding its lease at incarnation 5.
    fn fresh() -> Metrics {
        Metrics {
            node: Mutex::new("node1".into()),
            lease_held: AtomicBool::new(true),
            incarnation: AtomicI64::new(5),
            renew: Histogram::new(&RENEW_BUCKETS),
            renew_failures: AtomicU64::new(0),
            leader: AtomicBool::new(false),
            local: Mutex::default(),
            cluster: Mutex::default(),
            devices: Mutex::default(),
            heartbeats: Mutex::default(),
        }
    }

    #[test]
    fn only_the_leader_reports_the_cluster() {
        let m = fresh();
        m.running_here("mail1", 3, Path::new("/"));
        let text = m.render();
        assert!(text.contains(
            "fulmar_node_instance_running{fulmar_instance=\"mail1\",generation=\"3\"} 1\n"
        ));
        assert!(text.contains("fulmar_node_volume_size_bytes{fulmar_instance=\"mail1\"} "));
        assert!(!text.contains("fulmar_cluster_"), "{text}");
        m.leading(true);
        let config: ClusterConfig = toml::from_str(
            "[etcd]\nendpoints = [\"http://x:2379\"]\n[node.node1]\n[instance.mail1]\n\
             address = \"198.18.0.1/24\"\ninterface = \"eth0\"\nvolume = \"/dev/x\"\n\
             mountpoint = \"/srv/mail1\"\nstart = [\"true\"]\nstop = [\"true\"]\n",
        )
        .unwrap();
        let mut s = placed(Some(RunState::Running));
        let mut record = fence(Outcome::Fenced { level: 2 }).record;
        record.node = "node2".into();
        record.duration_ms = 700;
        s.fencelog.push(record);
        m.cluster(Arc::new(config), s);
        m.device_monitor("bmc1", false);
        let text = m.render();
        assert!(text.contains(
            "fulmar_cluster_instance_phase{fulmar_instance=\"mail1\",phase=\"running\"} 1\n"
        ));
        assert!(text.contains(
            "fulmar_cluster_instance_phase{fulmar_instance=\"mail1\",phase=\"fencing\"} 0\n"
        ));
        assert!(text.contains("fulmar_cluster_node_member{node=\"node1\"} 1\n"));
        assert!(text.contains("fulmar_cluster_fence_device_up{device=\"bmc1\"} 0\n"));
        assert!(
            text.contains(
                "fulmar_cluster_fence_attempts_total{node=\"node2\",result=\"fenced\"} 1\n"
            )
        );
        assert!(
            text.contains("fulmar_cluster_fence_seconds_bucket{le=\"1\"} 1\n"),
            "{text}"
        );
        m.leading(false);
        assert!(!m.render().contains("fulmar_cluster_"));
    }
}
