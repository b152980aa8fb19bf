//! `fulmar cluster|instance|node ...`: the failover manager's commands.
//! They read and write the cluster state in etcd; the leader acts on them.
use std::path::Path;

use etcd_client::Client;
use fulmar_daemon::grammar::keyword;
use fulmar_fencing::{Fencer, FencingConfig, Record};
use serde_json::json;

use fulmar_failover::{
    agent::connect_any,
    config::ClusterConfig,
    state::{
        self, Fence, InstanceAdmin, Keys, NodeAdmin, Relocate, RunState, Snapshot, Status, encode,
    },
};

pub const USAGE: &str = "\
Usage: fulmar cluster status
       fulmar instance show
       fulmar instance { enable | disable | freeze | unfreeze } NAME
       fulmar instance relocate NAME [ to NODE ]
       fulmar instance repair NAME
       fulmar node show
       fulmar node { standby | online } NODE
       fulmar node fence NODE
       fulmar node confirm NODE
The cluster config is -C PATH (default /etc/fulmar/cluster.toml); it names
the etcd endpoints and the fencing config.
`enable` also forgets the nodes an instance failed on. `freeze` leaves an
instance where it is, unprobed and unmoved. `relocate` stops it and starts
it elsewhere (or on NODE) with the next generation. `repair` runs a full
e2fsck -fy of an instance's volume after a takeover's check found damage
(the instance waits in state needs-repair), then lets the cluster start it;
run it where the volume is reachable. `standby` moves a node's
instances away and places nothing on it. `fence` fences NODE now and records
it for the cluster; `confirm` records that an operator made sure NODE is off,
so its instances may be taken over after fencing failed.";

pub fn run(object: &str, args: &[String], config: &Path, json: bool) -> Result<(), String> {
    let verbs: &[&str] = match object {
        "cluster" => &["status", "help"],
        "instance" => &[
            "show", "enable", "disable", "freeze", "unfreeze", "relocate", "repair", "help",
        ],
        _ => &["show", "standby", "online", "fence", "confirm", "help"],
    };
    let verb = match args.first() {
        None if object == "cluster" => "status",
        None => "show",
        Some(v) => {
            keyword(v, verbs, &format!("{object} command")).map_err(|e| format!("{e}\n{USAGE}"))?
        }
    };
    if verb == "help" {
        println!("{USAGE}");
        return Ok(());
    }
    let config = ClusterConfig::load(config)?;
    let name = || {
        args.get(1)
            .cloned()
            .ok_or_else(|| format!("{object} {verb} needs a name\n{USAGE}"))
    };
    crate::block_on(async {
        let mut c = connect_any(&config).await?;
        let keys = Keys::new(&config.etcd.prefix);
        let s = state::load(&mut c, &keys).await?;
        match (object, verb) {
            ("cluster", _) | ("instance" | "node", "show") => {
                status(&config, &s, object, json);
                Ok(())
            }
            ("instance", "repair") => {
                let name = name()?;
                repair(&mut c, &keys, &config, &s, &name).await
            }
            ("instance", _) => {
                let name = name()?;
                if !config.instance.contains_key(&name) {
                    return Err(format!("no instance named {name:?}"));
                }
                let mut admin = s.instance_admin.get(&name).cloned().unwrap_or_default();
                match verb {
                    "enable" => {
                        admin = InstanceAdmin {
                            relocate: admin.relocate,
                            ..InstanceAdmin::default()
                        };
                        forget_failures(&mut c, &keys, &s, &name).await?;
                    }
                    "disable" => admin.disabled = true,
                    "freeze" => admin.frozen = true,
                    "unfreeze" => admin.frozen = false,
                    _ => admin.relocate = Some(relocation(&config, &s, &name, &args[2..])?),
                }
                put(&mut c, keys.instance_admin(&name), encode(&admin)).await?;
                println!("{name}: {verb} requested");
                Ok(())
            }
            (_, "standby" | "online") => {
                let node = known_node(&config, name()?)?;
                let admin = NodeAdmin {
                    standby: verb == "standby",
                };
                put(&mut c, keys.node_admin(&node), encode(&admin)).await?;
                println!("{node}: {verb}");
                Ok(())
            }
            (_, "fence") => {
                let node = known_node(&config, name()?)?;
                let fencer = Fencer::new(FencingConfig::load(&config.fencing)?);
                let record = fencer.fence(&node).await?;
                record_fence(&mut c, &keys, &s, &node, &record).await?;
                println!("{node}: {}", record.summary());
                if record.safe_to_take_over() {
                    Ok(())
                } else {
                    Err(format!("{node} is {}", record.summary()))
                }
            }
            _ => {
                let node = known_node(&config, name()?)?;
                if s.alive.contains_key(&node) {
                    return Err(format!(
                        "{node} holds its lease: it is a live member, there is nothing to confirm"
                    ));
                }
                let fencer = Fencer::new(FencingConfig::load(&config.fencing)?);
                let by = std::env::var("SUDO_USER")
                    .or_else(|_| std::env::var("USER"))
                    .unwrap_or_else(|_| "operator".into());
                let record = fencer.confirm_manual(&node, &by)?;
                record_fence(&mut c, &keys, &s, &node, &record).await?;
                println!("{node}: {}", record.summary());
                Ok(())
            }
        }
    })
}

/// Repairs a volume the takeover check refused, then reports the instance
/// stopped so the leader places it again.
async fn repair(
    c: &mut Client,
    keys: &Keys,
    config: &ClusterConfig,
    s: &Snapshot,
    name: &str,
) -> Result<(), String> {
    let spec = config
        .instance
        .get(name)
        .ok_or_else(|| format!("no instance named {name:?}"))?;
    let waiting = s
        .current_status(name)
        .filter(|st| st.state == RunState::NeedsRepair)
        .cloned()
        .ok_or_else(|| {
            format!("{name} is not waiting for a repair (fulmar instance show says its state)")
        })?;
    let report =
        fulmar_failover::takeover::volume::repair(&spec.volume).map_err(|e| e.to_string())?;
    let summary = report.lines().last().unwrap_or("").trim().to_string();
    let status = Status {
        state: RunState::Stopped,
        detail: format!("repaired by fulmar instance repair: {summary}"),
        steps: vec![],
        at_ms: fulmar_fencing::history::now_ms(),
        ..waiting
    };
    put(c, keys.status(name), encode(&status)).await?;
    print!("{report}");
    println!("{name}: repaired; the cluster starts it again");
    Ok(())
}

fn known_node(config: &ClusterConfig, node: String) -> Result<String, String> {
    if config.node.contains_key(&node) {
        Ok(node)
    } else {
        Err(format!("no node named {node:?}"))
    }
}

fn relocation(
    config: &ClusterConfig,
    s: &Snapshot,
    name: &str,
    rest: &[String],
) -> Result<Relocate, String> {
    let p = s
        .placement
        .get(name)
        .filter(|p| !p.stop && s.incarnation(&p.node) == Some(p.incarnation))
        .ok_or_else(|| format!("{name} is not running anywhere; enable it instead"))?;
    let to = match rest {
        [] => None,
        [word, node] if keyword(word, &["to"], "relocate option").is_ok() => {
            Some(known_node(config, node.clone())?)
        }
        _ => return Err(format!("instance relocate NAME [ to NODE ]\n{USAGE}")),
    };
    if to.as_deref() == Some(p.node.as_str()) {
        return Err(format!("{name} already runs on {}", p.node));
    }
    Ok(Relocate {
        from: p.node.clone(),
        to,
    })
}

async fn forget_failures(
    c: &mut Client,
    keys: &Keys,
    s: &Snapshot,
    name: &str,
) -> Result<(), String> {
    if let Some(p) = s.placement.get(name).filter(|p| !p.avoid.is_empty()) {
        let mut p = p.clone();
        p.avoid.clear();
        put(c, keys.placement(name), encode(&p)).await?;
    }
    Ok(())
}

/// A fence done from the command line covers every incarnation of the
/// node seen so far.
async fn record_fence(
    c: &mut Client,
    keys: &Keys,
    s: &Snapshot,
    node: &str,
    record: &Record,
) -> Result<(), String> {
    let incarnation = s
        .placement
        .values()
        .filter(|p| p.node == node)
        .map(|p| p.incarnation)
        .chain(s.incarnation(node))
        .max()
        .unwrap_or(0);
    let fence = Fence {
        incarnation,
        record: record.clone(),
        unfenced: false,
    };
    put(c, keys.fence(node), encode(&fence)).await?;
    put(c, keys.fencelog(record), encode(record)).await
}

async fn put(c: &mut Client, key: String, value: Vec<u8>) -> Result<(), String> {
    c.put(key, value, None)
        .await
        .map(|_| ())
        .map_err(|e| format!("etcd: {e}"))
}

/// One line per instance: where it runs, or why it does not.
pub fn instance_line(s: &Snapshot, name: &str) -> String {
    let admin = s.instance_admin.get(name).cloned().unwrap_or_default();
    let mut flags = String::new();
    if admin.disabled {
        flags.push_str(" disabled");
    }
    if admin.frozen {
        flags.push_str(" frozen");
    }
    let state = match (s.placement.get(name), s.current_status(name)) {
        (Some(p), Some(st)) => format!(
            "{} on {} generation {}{}",
            serde_json::to_value(st.state)
                .unwrap()
                .as_str()
                .unwrap_or("?"),
            p.node,
            p.generation,
            if st.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", st.detail)
            }
        ),
        (Some(p), None) => format!("placed on {} generation {}", p.node, p.generation),
        (None, _) => "never placed".into(),
    };
    let why = s
        .why
        .get(name)
        .map(|w| format!("; {w}"))
        .unwrap_or_default();
    format!("{name} {state}{flags}{why}")
}

fn status(config: &ClusterConfig, s: &Snapshot, object: &str, json: bool) {
    if json {
        let nodes: Vec<_> = config
            .node
            .keys()
            .map(|n| {
                json!({
                    "node": n,
                    "alive": s.alive.contains_key(n),
                    "incarnation": s.incarnation(n),
                    "standby": s.standby(n),
                    "leader": s.leader.as_ref().is_some_and(|(l, _)| l == n),
                    "fence": s.fence.get(n).map(|f| f.record.summary()),
                })
            })
            .collect();
        let instances: Vec<_> = config
            .instance
            .keys()
            .map(|i| {
                json!({
                    "instance": i,
                    "placement": s.placement.get(i),
                    "status": s.current_status(i),
                    "admin": s.instance_admin.get(i),
                    "why": s.why.get(i),
                })
            })
            .collect();
        let value = match object {
            "instance" => json!(instances),
            "node" => json!(nodes),
            _ => json!({
                "revision": s.revision,
                "leader": s.leader.as_ref().map(|(l, _)| l),
                "nodes": nodes,
                "instances": instances,
                "fence_history": s.fencelog,
            }),
        };
        println!("{value}");
        return;
    }
    if object == "cluster" {
        println!(
            "cluster {} revision {} leader {}",
            config.etcd.prefix,
            s.revision,
            s.leader.as_ref().map(|(l, _)| l.as_str()).unwrap_or("none")
        );
    }
    if object != "instance" {
        for n in config.node.keys() {
            let mut line = match s.incarnation(n) {
                Some(i) => format!("node {n} online incarnation {i}"),
                None => format!("node {n} offline"),
            };
            if s.standby(n) {
                line.push_str(" standby");
            }
            if let Some(f) = s.fence.get(n) {
                line.push_str(&format!("; last fence: {}", f.record.summary()));
            }
            println!("{line}");
        }
    }
    if object != "node" {
        for i in config.instance.keys() {
            println!("instance {}", instance_line(s, i));
        }
    }
    if object == "cluster" {
        for r in s.fencelog.iter().rev().take(10) {
            println!(
                "fence {} {} started_ms {} took {} ms",
                r.node,
                r.summary(),
                r.started_ms,
                r.duration_ms
            );
        }
    }
}
