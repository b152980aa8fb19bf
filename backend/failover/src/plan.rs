//! The leader's decisions, as a pure function of the cluster state: which
//! node to fence, where each instance goes, what must stop. The leader
//! applies them; tests check them without a cluster.
//!
//! Rules:
//! - A placement whose incarnation is alive holds the instance. It is asked
//!   to stop when the instance is disabled, asked to relocate, its node is in
//!   standby or not allowed, or (not sticky) a preferred node is free.
//! - A placement whose node reported it stopped or failed frees it; one
//!   whose volume needs repair stays down until an operator repaired it
//!   (every node would find the same damage).
//! - A placement whose incarnation is gone frees it only once a fence
//!   covering that incarnation succeeded (or an operator confirmed one).
//!   Until then the instance stays down and `why` says what it waits for.
//! - A free, enabled instance goes to its relocation target, else its first
//!   live preferred node, else the live allowed node with the fewest
//!   instances (spread, leaving the spare node of an N+1 cluster free);
//!   nodes in standby are skipped. The generation goes up by one.
//! - A node the instance failed on is avoided for `failure_backoff`,
//!   doubled per further failure there up to `failure_timeout`, and its
//!   failures are forgotten `failure_timeout` after the last one: when
//!   every node failed it, it is retried where the backoff ends first,
//!   never given up for good.
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    config::{ClusterConfig, Timing},
    state::{Avoid, Placement, RunState, Snapshot},
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
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    for p in s.placement.values() {
        if s.incarnation(&p.node) == Some(p.incarnation) && !p.stop {
            *load.entry(p.node.clone()).or_default() += 1;
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
                if status.is_some_and(|st| st.state == RunState::NeedsRepair) {
                    free = false;
                    why = format!(
                        "its volume needs repair (found on {}); after a look: \
                         fulmar instance repair {name}",
                        p.node
                    );
                } else if status.is_some_and(|st| st.state.down()) {
                    if let Some(st) = status.filter(|st| st.state == RunState::Failed) {
                        failed_on = Some((p.node.clone(), st.at_ms));
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
                let avoid = avoid_list(
                    &config.timing,
                    placement.map(|p| p.avoid.as_slice()).unwrap_or_default(),
                    failed_on,
                    s.now_ms,
                );
                let avoided = |n: &str| avoid.iter().any(|a| a.node == n && a.until_ms > s.now_ms);
                let from = admin.relocate.as_ref().map(|r| r.from.as_str());
                let target = admin.relocate.as_ref().and_then(|r| r.to.as_deref());
                let candidate = |n: &str| usable(n) && !avoided(n) && Some(n) != from;
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
                                .min_by_key(|n| load.get(*n).copied().unwrap_or(0))
                                .cloned()
                        }),
                };
                match node {
                    Some(node) => {
                        *load.entry(node.clone()).or_default() += 1;
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
                        let waits: Vec<String> = avoid
                            .iter()
                            .filter(|a| a.until_ms > s.now_ms)
                            // Stable while it waits: `why` is rewritten
                            // (and logged) only when it changes.
                            .map(|a| {
                                format!(
                                    "{} after {} failure(s), for {}s",
                                    a.node,
                                    a.failures,
                                    a.until_ms.saturating_sub(a.last_ms).div_ceil(1000)
                                )
                            })
                            .collect();
                        why = format!(
                            "no node can run it now (live: {}; backing off: {})",
                            list(s.alive.keys()),
                            if waits.is_empty() {
                                "none".into()
                            } else {
                                waits.join("; ")
                            }
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

/// The avoid list for the next placement: the last one's, with a failure
/// on `failed_on` (node, when) counted in and forgotten failures dropped.
/// A pure function of its inputs, so planning every tick counts a failure
/// once (it enters the list only when a placement is written).
fn avoid_list(
    timing: &Timing,
    previous: &[Avoid],
    failed_on: Option<(String, u64)>,
    now_ms: u64,
) -> Vec<Avoid> {
    let forget = timing.failure_timeout.as_millis() as u64;
    let mut avoid: Vec<Avoid> = previous
        .iter()
        .filter(|a| now_ms < a.last_ms.saturating_add(forget))
        .cloned()
        .collect();
    if let Some((node, at_ms)) = failed_on {
        let failures = match avoid.iter().position(|a| a.node == node) {
            Some(i) => avoid.remove(i).failures + 1,
            None => 1,
        };
        let backoff = timing
            .failure_backoff
            .saturating_mul(1 << (failures - 1).min(16))
            .min(timing.failure_timeout);
        avoid.push(Avoid {
            node,
            failures,
            last_ms: at_ms,
            until_ms: at_ms + backoff.as_millis() as u64,
        });
    }
    avoid
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use fulmar_fencing::{Outcome, Record};

    use super::*;
    use crate::state::{Fence, InstanceAdmin, NodeAdmin, Relocate, Status};

    fn config(sticky: bool) -> ClusterConfig {
        ClusterConfig::parse(&format!(
            r#"
            [etcd]
            endpoints = ["http://198.18.9.1:2379"]
            [node.node1]
            [node.node2]
            [node.node3]
            [instance.mail1]
            address = "198.18.9.100/24"
            interface = "eth0"
            volume = "/v1"
            mountpoint = "/m1"
            start = ["true"]
            preferred = ["node1"]
            sticky = {sticky}
            [instance.mail2]
            address = "198.18.9.101/24"
            interface = "eth0"
            volume = "/v2"
            mountpoint = "/m2"
            start = ["true"]
            allowed = ["node2", "node3"]
            "#
        ))
        .unwrap()
    }

    fn alive(nodes: &[(&str, i64)]) -> Snapshot {
        Snapshot {
            revision: 100,
            alive: nodes
                .iter()
                .map(|(n, i)| (n.to_string(), (*i, 1)))
                .collect(),
            ..Snapshot::default()
        }
    }

    fn placed(s: &mut Snapshot, instance: &str, node: &str, incarnation: i64, generation: u64) {
        s.placement.insert(
            instance.into(),
            Placement {
                node: node.into(),
                incarnation,
                generation,
                stop: false,
                avoid: vec![],
            },
        );
    }

    fn places(d: &[Decision]) -> Vec<(String, String, u64)> {
        d.iter()
            .filter_map(|d| match d {
                Decision::Place {
                    instance,
                    placement,
                } => Some((
                    instance.clone(),
                    placement.node.clone(),
                    placement.generation,
                )),
                _ => None,
            })
            .collect()
    }

    fn record(outcome: Outcome) -> Record {
        Record {
            node: "node1".into(),
            started_ms: 1,
            delay_ms: 0,
            duration_ms: 5,
            levels: vec![],
            outcome,
        }
    }

    #[test]
    fn first_placement_prefers_then_spreads() {
        let s = alive(&[("node1", 10), ("node2", 11), ("node3", 12)]);
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert_eq!(
            places(&d),
            [
                ("mail1".into(), "node1".into(), 1),
                ("mail2".into(), "node2".into(), 1)
            ]
        );
    }

    #[test]
    fn a_lost_node_is_fenced_before_anything_moves() {
        let mut s = alive(&[("node2", 11), ("node3", 12)]);
        placed(&mut s, "mail1", "node1", 10, 4);
        placed(&mut s, "mail2", "node2", 11, 1);
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert!(places(&d).is_empty(), "{d:?}");
        assert!(d.contains(&Decision::Fence {
            node: "node1".into(),
            incarnation: 10
        }));
        // While the fence runs: no second fence, still no move.
        let fencing = BTreeSet::from(["node1".to_string()]);
        let d = plan(&config(true), &s, &fencing);
        assert!(!d.iter().any(|d| matches!(d, Decision::Fence { .. })));
        assert!(places(&d).is_empty());
        // Fenced: it moves with the next generation, away from mail2's node.
        s.fence.insert(
            "node1".into(),
            Fence {
                incarnation: 10,
                record: record(Outcome::Fenced { level: 1 }),
                unfenced: false,
            },
        );
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert_eq!(places(&d), [("mail1".into(), "node3".into(), 5)]);
    }

    #[test]
    fn a_fence_of_an_older_incarnation_does_not_count() {
        let mut s = alive(&[("node2", 11)]);
        placed(&mut s, "mail1", "node1", 20, 2);
        placed(&mut s, "mail2", "node2", 11, 1);
        s.fence.insert(
            "node1".into(),
            Fence {
                incarnation: 10,
                record: record(Outcome::Fenced { level: 1 }),
                unfenced: true,
            },
        );
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert!(places(&d).is_empty());
        assert!(d.contains(&Decision::Fence {
            node: "node1".into(),
            incarnation: 20
        }));
    }

    #[test]
    fn unfenceable_waits_for_a_confirmation() {
        let mut s = alive(&[("node2", 11)]);
        placed(&mut s, "mail1", "node1", 10, 2);
        placed(&mut s, "mail2", "node2", 11, 1);
        s.fence.insert(
            "node1".into(),
            Fence {
                incarnation: 10,
                record: record(Outcome::Unfenceable {
                    reasons: vec!["level 1 bmc: timed out".into()],
                }),
                unfenced: false,
            },
        );
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert!(places(&d).is_empty());
        assert!(!d.iter().any(|d| matches!(d, Decision::Fence { .. })));
        let why = d
            .iter()
            .find_map(|d| match d {
                Decision::Why { instance, reason } if instance == "mail1" => Some(reason.clone()),
                _ => None,
            })
            .unwrap();
        assert!(why.contains("fulmar node confirm node1"), "{why}");
        s.fence.get_mut("node1").unwrap().record =
            record(Outcome::ManuallyConfirmed { by: "ops".into() });
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert_eq!(places(&d)[0], ("mail1".into(), "node2".into(), 3));
    }

    #[test]
    fn stopped_or_failed_frees_without_a_fence() {
        let mut s = alive(&[("node1", 10), ("node2", 11), ("node3", 12)]);
        placed(&mut s, "mail1", "node1", 10, 2);
        s.status.insert(
            "mail1".into(),
            Status {
                node: "node1".into(),
                generation: 2,
                state: RunState::Failed,
                detail: "probe".into(),
                steps: vec![],
                at_ms: 0,
            },
        );
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert!(!d.iter().any(|d| matches!(d, Decision::Fence { .. })));
        let Some(Decision::Place { placement, .. }) =
            d.iter().find(|d| matches!(d, Decision::Place { .. }))
        else {
            panic!("{d:?}")
        };
        assert_ne!(placement.node, "node1", "a failed node is avoided");
        assert_eq!(placement.avoid.len(), 1);
        assert_eq!(placement.avoid[0].node, "node1");
        assert_eq!(placement.avoid[0].until_ms, 2_000, "the first backoff");
        assert_eq!(placement.generation, 3);
    }

    /// A failure bans a node for a backoff that doubles per failure there
    /// and is forgotten after failure_timeout; with every node failed, the
    /// instance waits for the first backoff to end instead of giving up.
    #[test]
    fn failed_nodes_back_off_and_are_retried() {
        let config = config(true);
        let t = &config.timing;
        let fail =
            |prev: &[Avoid], node: &str, at| avoid_list(t, prev, Some((node.into(), at)), at);
        let a = fail(&[], "node1", 10_000);
        assert_eq!((a[0].failures, a[0].until_ms), (1, 12_000));
        let a = fail(&a, "node1", 13_000);
        assert_eq!((a[0].failures, a[0].until_ms), (2, 17_000), "doubled");
        let a = fail(&a, "node1", 18_000);
        assert_eq!((a[0].failures, a[0].until_ms), (3, 26_000));
        // Forgotten failure_timeout after the last failure.
        let later = 18_000 + t.failure_timeout.as_millis() as u64;
        assert!(avoid_list(t, &a, None, later).is_empty());
        // The backoff never exceeds failure_timeout.
        let mut b = vec![];
        for i in 0..20 {
            b = fail(&b, "node2", i * 1000);
        }
        assert_eq!(b[0].until_ms - 19_000, t.failure_timeout.as_millis() as u64);

        // Failed on the only allowed nodes: waits, says why, then retries.
        let mut s = alive(&[("node1", 10), ("node2", 11), ("node3", 12)]);
        placed(&mut s, "mail2", "node2", 11, 4);
        s.placement.get_mut("mail2").unwrap().avoid = fail(&[], "node3", 1_000);
        s.status.insert(
            "mail2".into(),
            Status {
                node: "node2".into(),
                generation: 4,
                state: RunState::Failed,
                detail: "start".into(),
                steps: vec![],
                at_ms: 1_500,
            },
        );
        s.now_ms = 1_600;
        let d = plan(&config, &s, &BTreeSet::new());
        assert!(!places(&d).iter().any(|p| p.0 == "mail2"), "{d:?}");
        let why = d
            .iter()
            .find_map(|d| match d {
                Decision::Why { instance, reason } if instance == "mail2" => Some(reason.clone()),
                _ => None,
            })
            .unwrap();
        assert!(why.contains("node3 after 1 failure(s), for 2s"), "{why}");
        assert!(why.contains("node2 after 1 failure(s), for 2s"), "{why}");
        s.now_ms = 3_001;
        let d = plan(&config, &s, &BTreeSet::new());
        let moved: Vec<_> = places(&d).into_iter().filter(|p| p.0 == "mail2").collect();
        assert_eq!(moved, [("mail2".into(), "node3".into(), 5)]);
    }

    #[test]
    fn operators_move_instances() {
        let mut s = alive(&[("node1", 10), ("node2", 11), ("node3", 12)]);
        placed(&mut s, "mail1", "node1", 10, 1);
        placed(&mut s, "mail2", "node2", 11, 1);
        // relocate asks the holder to stop first.
        s.instance_admin.insert(
            "mail1".into(),
            InstanceAdmin {
                relocate: Some(Relocate {
                    from: "node1".into(),
                    to: Some("node3".into()),
                }),
                ..InstanceAdmin::default()
            },
        );
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert!(d.contains(&Decision::Stop {
            instance: "mail1".into()
        }));
        s.status.insert(
            "mail1".into(),
            Status {
                node: "node1".into(),
                generation: 1,
                state: RunState::Stopped,
                detail: String::new(),
                steps: vec![],
                at_ms: 0,
            },
        );
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert_eq!(places(&d), [("mail1".into(), "node3".into(), 2)]);
        assert!(d.contains(&Decision::Relocated {
            instance: "mail1".into()
        }));
        // standby empties a node; frozen instances stay put.
        let mut s = alive(&[("node1", 10), ("node2", 11), ("node3", 12)]);
        placed(&mut s, "mail2", "node2", 11, 1);
        s.node_admin
            .insert("node2".into(), NodeAdmin { standby: true });
        placed(&mut s, "mail1", "node1", 10, 1);
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert!(d.contains(&Decision::Stop {
            instance: "mail2".into()
        }));
        s.instance_admin.insert(
            "mail2".into(),
            InstanceAdmin {
                frozen: true,
                ..InstanceAdmin::default()
            },
        );
        let d = plan(&config(true), &s, &BTreeSet::new());
        assert!(!d.contains(&Decision::Stop {
            instance: "mail2".into()
        }));
    }

    #[test]
    fn failback_only_when_not_sticky() {
        let mut s = alive(&[("node1", 10), ("node2", 11), ("node3", 12)]);
        placed(&mut s, "mail1", "node2", 11, 3);
        let stop = Decision::Stop {
            instance: "mail1".into(),
        };
        assert!(!plan(&config(true), &s, &BTreeSet::new()).contains(&stop));
        assert!(plan(&config(false), &s, &BTreeSet::new()).contains(&stop));
    }
}
