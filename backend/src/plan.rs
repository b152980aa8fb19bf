//! The leader's decisions, as a pure function of the cluster state: which
//! node to fence, where each instance goes, what must stop. The leader
//! applies them; tests check them without a cluster.
//!
//! Rules:
//! - A placement whose incarnation is alive holds the instance. It is asked
//!   to stop when the instance is disabled, asked to relocate, its node is in
//!   standby or not allowed, or (not sticky) a preferred node is free.
//! - A placement whose node reported it stopped or failed frees it.
//! - A placement whose incarnation is gone frees it only once a fence
//!   covering that incarnation succeeded (or an operator confirmed one).
//!   Until then the instance stays down and `why` says what it waits for.
//! - A free, enabled instance goes to its relocation target, else its first
//!   live preferred node, else the live allowed node with the fewest
//!   instances (spread, leaving the spare node of an N+1 cluster free);
//!   nodes in standby or on its avoid list are skipped. The generation goes
//!   up by one.
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    config::ClusterConfig,
    state::{Placement, RunState, Snapshot},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Fence `node` up to `incarnation`.
    Fence { node: String, incarnation: i64 },
    /// Lift the I/O barriers of a node that came back after a fence.
    Unfence { node: String },
    Place {
        instance: String,
        placement: Placement,
    },
    /// Ask the holder to stop it.
    Stop { instance: String },
    /// Why it is not running (empty: clear).
    Why { instance: String, reason: String },
    /// The relocation request is done.
    Relocated { instance: String },
}

/// `fencing`: nodes with a fence in progress.
pub fn plan(config: &ClusterConfig, s: &Snapshot, fencing: &BTreeSet<String>) -> Vec<Decision> {
    let mut out = Vec::new();
    let mut fence_wanted = BTreeMap::new();
    // Instances per node, counting what this round places.
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for p in s.placement.values() {
        if s.incarnation(&p.node) == Some(p.incarnation) && !p.stop {
            *load.entry(p.node.as_str()).or_default() += 1;
        }
    }

    for (name, spec) in &config.instance {
        let admin = s.instance_admin.get(name).cloned().unwrap_or_default();
        let placement = s.placement.get(name);
        let mut why = String::new();
        let allowed = |n: &str| spec.allowed.is_empty() || spec.allowed.iter().any(|a| a == n);
        let rank = |n: &str| {
            spec.preferred
                .iter()
                .position(|p| p == n)
                .unwrap_or(usize::MAX)
        };
        let usable = |n: &str| {
            config.node.contains_key(n) && allowed(n) && s.alive.contains_key(n) && !s.standby(n)
        };

        if admin.frozen {
            why = "frozen: the cluster leaves it alone".into();
        } else {
            // Is it held, and by whom?
            let mut free = true;
            let mut failed_on = None;
            if let Some(p) = placement {
                let status = s.current_status(name);
                if status.is_some_and(|st| st.state.down()) {
                    if status.is_some_and(|st| st.state == RunState::Failed) {
                        failed_on = Some(p.node.clone());
                    }
                } else if s.incarnation(&p.node) == Some(p.incarnation) {
                    free = false;
                    let leave = if admin.disabled {
                        Some("disabled")
                    } else if admin.relocate.as_ref().is_some_and(|r| r.from == p.node) {
                        Some("relocating")
                    } else if s.standby(&p.node) {
                        Some("node in standby")
                    } else if !allowed(&p.node) {
                        Some("node not allowed")
                    } else if !spec.sticky
                        && let Some(best) = spec.preferred.iter().position(|n| usable(n))
                        && rank(&p.node) > best
                    {
                        Some("failing back to a preferred node")
                    } else {
                        None
                    };
                    if let Some(reason) = leave {
                        if !p.stop {
                            out.push(Decision::Stop {
                                instance: name.clone(),
                            });
                        }
                        why = format!("stopping on {} ({reason})", p.node);
                    }
                } else {
                    // Its incarnation is gone: only a fence frees it.
                    let fence = s
                        .fence
                        .get(&p.node)
                        .filter(|f| f.incarnation >= p.incarnation);
                    match fence {
                        Some(f) if f.record.safe_to_take_over() => {}
                        Some(f) if !fencing.contains(&p.node) => {
                            free = false;
                            why = format!(
                                "node {} lost and {}; after checking it is off: \
                                 fulmar node confirm {}",
                                p.node,
                                f.record.summary(),
                                p.node
                            );
                        }
                        _ => {
                            free = false;
                            why = format!("node {} lost: fencing it", p.node);
                            let want = fence_wanted.entry(p.node.clone()).or_insert(p.incarnation);
                            *want = (*want).max(p.incarnation);
                        }
                    }
                }
            }

            if free && admin.disabled {
                why = "disabled".into();
            } else if free {
                let mut avoid: Vec<String> = placement.map(|p| p.avoid.clone()).unwrap_or_default();
                if let Some(n) = failed_on
                    && !avoid.contains(&n)
                {
                    avoid.push(n);
                }
                let from = admin.relocate.as_ref().map(|r| r.from.as_str());
                let target = admin.relocate.as_ref().and_then(|r| r.to.as_deref());
                let candidate =
                    |n: &str| usable(n) && !avoid.iter().any(|a| a == n) && Some(n) != from;
                let node = match target {
                    Some(t) if usable(t) => Some(t.to_string()),
                    _ => spec
                        .preferred
                        .iter()
                        .find(|n| candidate(n))
                        .cloned()
                        .or_else(|| {
                            config
                                .node
                                .keys()
                                .filter(|n| candidate(n))
                                .min_by_key(|n| load.get(n.as_str()).copied().unwrap_or(0))
                                .cloned()
                        }),
                };
                match node {
                    Some(node) => {
                        *load
                            .entry(config.node.get_key_value(&node).unwrap().0)
                            .or_default() += 1;
                        out.push(Decision::Place {
                            instance: name.clone(),
                            placement: Placement {
                                incarnation: s.incarnation(&node).expect("usable nodes are alive"),
                                node,
                                generation: placement.map(|p| p.generation).unwrap_or(0) + 1,
                                stop: false,
                                avoid,
                            },
                        });
                        if admin.relocate.is_some() {
                            out.push(Decision::Relocated {
                                instance: name.clone(),
                            });
                        }
                    }
                    None => {
                        why = format!(
                            "no node can run it (live: {}; avoided after failures: {})",
                            list(s.alive.keys()),
                            list(avoid.iter())
                        );
                    }
                }
            }
        }
        if s.why.get(name).map(String::as_str).unwrap_or("") != why {
            out.push(Decision::Why {
                instance: name.clone(),
                reason: why,
            });
        }
    }

    for (node, incarnation) in fence_wanted {
        if !fencing.contains(&node) {
            out.push(Decision::Fence { node, incarnation });
        }
    }
    // A node back after a fence: lift its I/O barriers so it can mount.
    for (node, (incarnation, _)) in &s.alive {
        if let Some(f) = s.fence.get(node)
            && f.incarnation < *incarnation
            && f.record.safe_to_take_over()
            && !f.unfenced
            && !fencing.contains(node)
        {
            out.push(Decision::Unfence { node: node.clone() });
        }
    }
    out
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
