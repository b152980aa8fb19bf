//! Fencing a node: its delay, then its levels in order. A level succeeds
//! when every one of its devices switched the node off and a status query
//! confirmed it, within the device's timeout; otherwise the next level is
//! tried. When none succeeds the node is unfenceable and nobody may take
//! over its instances until an operator confirms a manual fence.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use futures::future::join_all;

use crate::{
    config::FencingConfig,
    device::{Action, Device, DeviceError, PowerState},
    history::{DeviceAttempt, History, HistoryError, LevelAttempt, Outcome, Record, now_ms},
};

#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("node {0:?} has no fencing configuration")]
    UnknownNode(String),
    #[error("no device named {0:?}")]
    UnknownDevice(String),
    /// Its config cannot be used (a missing password file, an agent not
    /// installed).
    #[error("device {name}: {reason}")]
    Unusable { name: String, reason: String },
    #[error(transparent)]
    Action(#[from] DeviceError),
    /// Devices that would not lift their barrier, each with why.
    #[error("{}", .0.join("; "))]
    Unfence(Vec<String>),
    /// The record could not be written; the fence itself happened.
    #[error(transparent)]
    History(#[from] HistoryError),
}

impl From<FenceError> for String {
    fn from(e: FenceError) -> String {
        e.to_string()
    }
}

pub struct Fencer {
    config: FencingConfig,
    devices: BTreeMap<String, Result<Device, String>>,
    history: History,
}

impl Fencer {
    /// Devices whose config cannot be used (a missing password file, an
    /// agent not installed) stay in as failures of their levels.
    pub fn new(config: FencingConfig) -> Self {
        let devices = config
            .device
            .iter()
            .map(|(name, c)| (name.clone(), Device::new(c).map_err(|e| e.to_string())))
            .collect();
        let history = History::new(&config.state_dir);
        Fencer {
            config,
            devices,
            history,
        }
    }

    pub fn config(&self) -> &FencingConfig {
        &self.config
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn device(&self, name: &str) -> Result<&Device, FenceError> {
        match self.devices.get(name) {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(FenceError::Unusable {
                name: name.into(),
                reason: e.clone(),
            }),
            None => Err(FenceError::UnknownDevice(name.into())),
        }
    }

    /// Runs one action on one device with its configured timeout.
    pub async fn device_action(
        &self,
        name: &str,
        action: Action,
    ) -> Result<crate::device::Answer, FenceError> {
        let device = self.device(name)?;
        let timeout = self.config.device[name].timeout();
        Ok(device.run(action, timeout).await?)
    }

    /// Fences `node`, records the result in the history, and returns it.
    pub async fn fence(&self, node: &str) -> Result<Record, FenceError> {
        let plan = self
            .config
            .node
            .get(node)
            .ok_or_else(|| FenceError::UnknownNode(node.into()))?;
        let started_ms = now_ms();
        let started = Instant::now();
        if !plan.delay.is_zero() {
            tracing::info!(node, delay = ?plan.delay, "fence delay");
            tokio::time::sleep(plan.delay).await;
        }
        let mut levels = Vec::new();
        let mut reasons = Vec::new();
        let mut outcome = None;
        for (i, devices) in plan.levels.iter().enumerate() {
            let level = i + 1;
            // All devices of a level at once: both PSUs go off together.
            let attempts = join_all(devices.iter().map(|d| self.off_and_confirm(d))).await;
            let ok = attempts.iter().all(|a| a.ok);
            for a in attempts.iter().filter(|a| !a.ok) {
                reasons.push(format!(
                    "level {level} {}: {}",
                    a.device,
                    a.error.as_deref().unwrap_or("failed")
                ));
            }
            tracing::info!(node, level, ok, "fence level");
            levels.push(LevelAttempt {
                level,
                ok,
                devices: attempts,
            });
            if ok {
                outcome = Some(Outcome::Fenced { level });
                break;
            }
        }
        let record = Record {
            node: node.to_string(),
            started_ms,
            delay_ms: plan.delay.as_millis() as u64,
            duration_ms: started.elapsed().as_millis() as u64,
            levels,
            outcome: outcome.unwrap_or(Outcome::Unfenceable { reasons }),
        };
        if !record.safe_to_take_over() {
            tracing::error!(node, "{}", record.summary());
        }
        self.history.append(&record)?;
        Ok(record)
    }

    /// Lifts the I/O barriers of a node that came back after a fence (the
    /// devices that revoke access rather than power, e.g. fence_scsi
    /// re-registers its key): every level's devices that unfence, `on`.
    pub async fn unfence(&self, node: &str) -> Result<(), FenceError> {
        let plan = self
            .config
            .node
            .get(node)
            .ok_or_else(|| FenceError::UnknownNode(node.into()))?;
        let devices: Vec<&String> = plan
            .levels
            .iter()
            .flatten()
            .filter(|d| self.config.device.get(*d).is_some_and(|c| c.unfences()))
            .collect();
        let results = join_all(devices.iter().map(|d| self.device_action(d, Action::On))).await;
        let errors: Vec<String> = devices
            .iter()
            .zip(results)
            .filter_map(|(d, r)| r.err().map(|e| format!("{d}: {e}")))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(FenceError::Unfence(errors))
        }
    }

    /// An operator's word that `node` is off (checked by hand).
    pub fn confirm_manual(&self, node: &str, by: &str) -> Result<Record, FenceError> {
        if !self.config.node.contains_key(node) {
            return Err(FenceError::UnknownNode(node.into()));
        }
        let record = Record {
            node: node.to_string(),
            started_ms: now_ms(),
            delay_ms: 0,
            duration_ms: 0,
            levels: Vec::new(),
            outcome: Outcome::ManuallyConfirmed { by: by.to_string() },
        };
        self.history.append(&record)?;
        Ok(record)
    }

    /// `off`, then `status` until it reports off, all within the device's
    /// timeout: an unconfirmed off is a failure.
    async fn off_and_confirm(&self, name: &str) -> DeviceAttempt {
        let started = Instant::now();
        let result = async {
            let device = self.device(name)?;
            let timeout = self.config.device[name].timeout();
            let deadline = started + timeout;
            device
                .run(Action::Off, timeout)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match device.status(left.max(Duration::from_millis(1))).await {
                    Ok(PowerState::Off) => return Ok(()),
                    Ok(PowerState::On) | Err(DeviceError::Failed(_))
                        if Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Ok(PowerState::On) => {
                        return Err(format!(
                            "off not confirmed within {timeout:?}: status still on"
                        ));
                    }
                    Err(e) => return Err(format!("off not confirmed: {e}")),
                }
            }
        }
        .await;
        let attempt = DeviceAttempt {
            device: name.to_string(),
            ok: result.is_ok(),
            error: result.err(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(device = name, ok = attempt.ok, ms = attempt.duration_ms, error = ?attempt.error, "fence device");
        attempt
    }
}
