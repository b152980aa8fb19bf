//! The lab's Redfish BMC (`bmc.py`) on the monitor host: one system per
//! back-end node whose power is the node's real state (ForceOff kills the
//! node's processes and takes its links down; PowerState is Off only while
//! that holds; On boots it: links, addresses, routes, its agent). Level 1
//! of every node's fencing, before the lab power agent at level 2.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Result, bail};
use fulmar_fencing::config::{DeviceConfig, RedfishConfig};

use crate::{Lab, mail, topology};

const SCRIPT: &str = include_str!("bmc.py");
pub const PORT: u16 = 8443;
const USER: &str = "admin";

fn script(work: &Path) -> PathBuf {
    work.join("bmc.py")
}

/// The fencing device for `node`'s system on the board.
pub fn device(work: &Path, node: &str) -> DeviceConfig {
    DeviceConfig::Redfish(RedfishConfig {
        address: format!("https://{}:{PORT}", topology::MONITOR.1),
        username: USER.into(),
        password: None,
        password_file: Some(work.join("bmc.secret")),
        system: Some(format!("/redfish/v1/Systems/{node}")),
        ca: Some(work.join("ca.crt")),
        insecure: false,
        timeout: Duration::from_secs(5),
    })
}

/// What powering `node` on runs: its addresses and routes back, then its
/// agent (its log `NODE-noded-bmc.log` in the lab's log directory). The
/// agent enters only the node's network namespace: `ip netns exec` would
/// give it a mount namespace of its own, a copy holding every volume
/// mounted at that moment, and no barrier could then take a volume from
/// the node that had it (the fence says unfenceable, rightly).
fn boot_script(lab: &Lab, node: &str, noded: &Path, cluster_config: &Path) -> String {
    let ns = lab.netns(node);
    let mut script = String::new();
    for addr in &lab.state().addresses[node]["eth0"] {
        script += &format!("ip -n {ns} addr add {addr} dev eth0; ");
    }
    script += &format!(
        "ip -n {ns} route replace default via 198.18.2.1; \
         ip -n {ns} -6 route replace default via 2001:db8:2::1; \
         exec nsenter --net={} -- {} --config {} --node {node} >> {} 2>&1",
        lab.netns_path(node).display(),
        noded.display(),
        cluster_config.display(),
        lab.log_dir()
            .join(format!("{node}-noded-bmc.log"))
            .display()
    );
    script
}

/// Starts the board (again, after `stop`); returns once it listens.
pub fn start(lab: &mut Lab, work: &Path, noded: &Path, cluster_config: &Path) -> Result<()> {
    std::fs::write(script(work), SCRIPT)?;
    let secret = work.join("bmc.secret");
    if !secret.exists() {
        std::fs::write(&secret, "bmc-lab-secret\n")?;
    }
    let mut args = vec![
        script(work).to_string_lossy().into_owned(),
        topology::MONITOR.1.to_string(),
        PORT.to_string(),
        work.join("proxy.crt").to_string_lossy().into_owned(),
        work.join("proxy.key").to_string_lossy().into_owned(),
        USER.into(),
        secret.to_string_lossy().into_owned(),
    ];
    for node in topology::BACKEND_NODES {
        let boot = boot_script(lab, node, noded, cluster_config);
        args.push(format!("{node}={}={boot}", lab.netns(node)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(topology::MONITOR.0, "bmc", "python3", &args)?;
    mail::wait_port(lab, topology::MONITOR.0, topology::MONITOR.1, PORT)?;
    Ok(())
}

/// Kills the board (a BMC that stopped answering).
pub fn stop(lab: &Lab, work: &Path) -> Result<()> {
    let pattern = format!("python3 {}", script(work).display());
    let out = lab.exec(topology::MONITOR.0, "pkill", &["-KILL", "-f", &pattern])?;
    if !out.status.success() {
        bail!("no BMC ran ({pattern})");
    }
    Ok(())
}
