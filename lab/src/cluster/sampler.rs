//! The split-brain sampler: two holders of an instance's VIP or volume at
//! once.
use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle, sleep},
    time::Duration,
};

use fulmar_fencing::agents::io_barrier::attachments;

use super::{ClusterLab, NODES, VIP};

/// Samples the holders every `period` and records any instant where two
/// nodes hold an instance's VIP or have its volume attached.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(usize, Vec<String>)>>,
}

impl Sampler {
    /// The cluster lab's instance.
    pub fn start(cluster: &ClusterLab, period: Duration) -> Sampler {
        let netns: Vec<(String, String)> = NODES
            .iter()
            .map(|n| (n.to_string(), cluster.lab.netns(n)))
            .collect();
        let instances = vec![(String::new(), VIP.to_string(), cluster.volume.clone())];
        Sampler::watch(netns, instances, period)
    }

    /// `instances` (name, VIP, volume) on `nodes` (name, netns).
    pub fn watch(
        nodes: Vec<(String, String)>,
        instances: Vec<(String, String, PathBuf)>,
        period: Duration,
    ) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            let mut samples = 0;
            let mut violations = Vec::new();
            while !s.load(Ordering::Relaxed) {
                for (name, vip, volume) in &instances {
                    if let Some(v) = two_holders(&nodes, vip, volume) {
                        violations.push(format!("{name} {v}"));
                    }
                }
                samples += 1;
                sleep(period);
            }
            (samples, violations)
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// (samples taken, violations seen).
    pub fn stop(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("sampler"))
            .unwrap_or_default()
    }
}

/// What is wrong when more than one node holds `vip` or has `volume`
/// attached.
fn two_holders(nodes: &[(String, String)], vip: &str, volume: &std::path::Path) -> Option<String> {
    let mut holders = BTreeSet::new();
    for (node, ns) in nodes {
        let out = Command::new("ip")
            .args(["-n", ns, "-o", "-4", "addr", "show", "to"])
            .arg(format!("{vip}/32"))
            .output();
        if out.is_ok_and(|o| !o.stdout.is_empty()) {
            holders.insert(node.clone());
        }
    }
    // Attached, not only mounted: a lazily unmounted file system on a
    // device that lingers can still write.
    let attached: BTreeSet<String> = attachments(volume)
        .iter()
        .filter_map(|a| a.node())
        .collect();
    (holders.len() > 1 || attached.len() > 1)
        .then(|| format!("VIP on {holders:?}, volume attached by {attached:?}"))
}
