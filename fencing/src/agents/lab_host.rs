//! Lab only: "power off" a host of the netns lab. Every process with a
//! thread in the host's network namespace is killed (SIGKILL, repeated
//! until none is left, so children forked meanwhile die too) and its links
//! go down and lose their addresses (a powered-off host answers for
//! nothing). `status` is off only when no process remains and every link
//! is down; `on` brings the links back (processes and addresses do not
//! come back: after a real power cycle the boot configuration does that).
use std::{fs, os::unix::fs::MetadataExt, path::PathBuf, time::Duration};

use tokio::process::Command;

use crate::{
    config::LabHostConfig,
    device::{Action, Answer, DeviceError, DeviceResult, PowerState, failed},
};

#[derive(Debug)]
pub struct LabHost {
    netns: String,
}

impl LabHost {
    pub fn new(config: &LabHostConfig) -> Self {
        LabHost {
            netns: config.netns.clone(),
        }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    pub async fn run(&self, action: Action) -> DeviceResult {
        match action {
            Action::Off => {
                loop {
                    let pids = self.pids()?;
                    if pids.is_empty() {
                        break;
                    }
                    for pid in pids {
                        // SAFETY: kill(2) has no memory effects.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.set_links("down").await?;
                Ok(Answer::Done)
            }
            Action::On => self.set_links("up").await.map(|_| Answer::Done),
            Action::Reboot => Err(DeviceError::Unsupported(action)),
            Action::Status => {
                let running = self.pids()?.len();
                let up = self
                    .links()
                    .await?
                    .into_iter()
                    .filter(|(_, up)| *up)
                    .count();
                Ok(Answer::Power(if running == 0 && up == 0 {
                    PowerState::Off
                } else {
                    PowerState::On
                }))
            }
            Action::Monitor => self.pids().map(|_| Answer::Done),
            Action::List => Ok(Answer::Plugs(vec![self.netns.clone()])),
            Action::Metadata => Err(DeviceError::Unsupported(action)),
        }
    }

    /// Processes with any thread in the namespace (not this process: a
    /// caller may have a thread visiting the host).
    fn pids(&self) -> Result<Vec<i32>, DeviceError> {
        let ns =
            fs::metadata(self.path()).map_err(|e| failed(format!("netns {}: {e}", self.netns)))?;
        let me = std::process::id() as i32;
        let mut pids = Vec::new();
        let proc = fs::read_dir("/proc").map_err(|e| failed(format!("/proc: {e}")))?;
        for entry in proc.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(tasks) = fs::read_dir(entry.path().join("task")) else {
                continue;
            };
            let inside = tasks.flatten().any(|task| {
                // Exited tasks (zombies) have no namespace left: ignored.
                fs::metadata(task.path().join("ns/net"))
                    .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev())
            });
            if inside {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// (name, administratively up) for every link but lo.
    async fn links(&self) -> Result<Vec<(String, bool)>, DeviceError> {
        let out = Command::new("ip")
            .args(["-n", &self.netns, "-o", "link", "show"])
            .output()
            .await
            .map_err(|e| failed(format!("ip: {e}")))?;
        if !out.status.success() {
            return Err(failed(format!(
                "ip -n {} link show: {}",
                self.netns,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                // "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu ..."
                let mut parts = line.splitn(3, ": ");
                let name = parts.nth(1)?.split('@').next()?.to_string();
                let flags = parts.next()?.split('>').next()?;
                let up = flags.trim_start_matches('<').split(',').any(|f| f == "UP");
                (name != "lo").then_some((name, up))
            })
            .collect())
    }

    async fn set_links(&self, state: &str) -> Result<(), DeviceError> {
        for (name, _) in self.links().await? {
            let status = Command::new("ip")
                .args(["-n", &self.netns, "link", "set", "dev", &name, state])
                .status()
                .await
                .map_err(|e| failed(format!("ip: {e}")))?;
            if !status.success() {
                return Err(failed(format!(
                    "ip -n {} link set {name} {state} failed",
                    self.netns
                )));
            }
            if state == "down" {
                let status = Command::new("ip")
                    .args(["-n", &self.netns, "address", "flush", "dev", &name])
                    .status()
                    .await
                    .map_err(|e| failed(format!("ip: {e}")))?;
                if !status.success() {
                    return Err(failed(format!(
                        "ip -n {} address flush dev {name} failed",
                        self.netns
                    )));
                }
            }
        }
        Ok(())
    }
}
