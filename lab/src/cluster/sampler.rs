//! The split-brain sampler: two holders of the VIP or the volume at once.
use std::{
    collections::BTreeSet,
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
/// nodes hold the VIP or have the volume mounted.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(usize, Vec<String>)>>,
}

impl Sampler {
    pub fn start(cluster: &ClusterLab, period: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let netns: Vec<(String, String)> = NODES
            .iter()
            .map(|n| (n.to_string(), cluster.lab.netns(n)))
            .collect();
        let volume = cluster.volume.clone();
        let thread = thread::spawn(move || {
            let mut samples = 0;
            let mut violations = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let mut vip = BTreeSet::new();
                for (node, ns) in &netns {
                    let out = Command::new("ip")
                        .args(["-n", ns, "-o", "-4", "addr", "show", "to"])
                        .arg(format!("{VIP}/32"))
                        .output();
                    if out.is_ok_and(|o| !o.stdout.is_empty()) {
                        vip.insert(node.clone());
                    }
                }
                // Attached, not only mounted: a lazily unmounted file
                // system on a device that lingers can still write.
                let attached: BTreeSet<String> = attachments(&volume)
                    .iter()
                    .filter_map(|a| a.node())
                    .collect();
                samples += 1;
                if vip.len() > 1 || attached.len() > 1 {
                    violations.push(format!("VIP on {vip:?}, volume attached by {attached:?}"));
                }
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
