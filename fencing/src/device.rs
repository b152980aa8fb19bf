//! What every fencing device can be asked, and the one type that runs any
//! of them.
use std::{fmt, time::Duration};

use serde::Serialize;

use crate::{
    agents::{
        external::ExternalAgent, io_barrier::IoBarrier, ipmi::Ipmi, lab_host::LabHost,
        redfish::Redfish,
    },
    config::DeviceConfig,
};

/// The fence-agents actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    On,
    Off,
    Reboot,
    Status,
    Monitor,
    List,
    Metadata,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::On,
        Action::Off,
        Action::Reboot,
        Action::Status,
        Action::Monitor,
        Action::List,
        Action::Metadata,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::On => "on",
            Action::Off => "off",
            Action::Reboot => "reboot",
            Action::Status => "status",
            Action::Monitor => "monitor",
            Action::List => "list",
            Action::Metadata => "metadata",
        }
    }

    pub fn parse(word: &str) -> Result<Action, UnknownAction> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == word)
            .ok_or_else(|| UnknownAction(word.into()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown action {0:?}; expected one of: on, off, reboot, status, monitor, list, metadata")]
pub struct UnknownAction(pub String);

/// A device whose config cannot be used; its levels fail until it is fixed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceConfigError {
    #[error("fence agent {0} not found in /usr/sbin, /sbin or PATH (package fence-agents?)")]
    AgentNotFound(String),
    #[error("agent options may not set action or password (use password/password_file)")]
    ReservedOption,
    #[error("redfish address {0:?} must start with https://")]
    Address(String),
    /// The CA file, or the HTTP client built on it.
    #[error("{what}: {reason}")]
    Tls { what: String, reason: String },
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
}

impl From<UnknownAction> for String {
    fn from(e: UnknownAction) -> String {
        e.to_string()
    }
}

impl From<DeviceConfigError> for String {
    fn from(e: DeviceConfigError) -> String {
        e.to_string()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    On,
    Off,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::On => "on",
            PowerState::Off => "off",
        })
    }
}

/// What an action answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// on / off / reboot / monitor succeeded.
    Done,
    Power(PowerState),
    /// `list`: the plugs (or systems) the device controls.
    Plugs(Vec<String>),
    /// `metadata`: the agent's XML.
    Text(String),
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    #[error("{0}")]
    Failed(String),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("action {0} is not supported by this device")]
    Unsupported(Action),
}

pub type DeviceResult = Result<Answer, DeviceError>;

pub fn failed(message: impl Into<String>) -> DeviceError {
    DeviceError::Failed(message.into())
}

/// A configured device, ready to run actions.
#[derive(Debug)]
pub enum Device {
    External(ExternalAgent),
    Redfish(Redfish),
    Ipmi(Ipmi),
    LabHost(LabHost),
    IoBarrier(IoBarrier),
}

impl Device {
    pub fn new(config: &DeviceConfig) -> Result<Device, DeviceConfigError> {
        Ok(match config {
            DeviceConfig::Agent(c) => Device::External(ExternalAgent::new(c)?),
            DeviceConfig::Redfish(c) => Device::Redfish(Redfish::new(c)?),
            DeviceConfig::Ipmi(c) => Device::Ipmi(Ipmi::new(c)?),
            DeviceConfig::LabHost(c) => Device::LabHost(LabHost::new(c)),
            DeviceConfig::IoBarrier(c) => Device::IoBarrier(IoBarrier::new(c)),
        })
    }

    /// Runs `action`, failing with `TimedOut` when it takes longer than
    /// `timeout` (an external agent is killed then).
    pub async fn run(&self, action: Action, timeout: Duration) -> DeviceResult {
        let work = async {
            match self {
                Device::External(d) => d.run(action).await,
                Device::Redfish(d) => d.run(action).await,
                Device::Ipmi(d) => d.run(action).await,
                Device::LabHost(d) => d.run(action).await,
                Device::IoBarrier(d) => d.run(action).await,
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(DeviceError::TimedOut(timeout)))
    }

    /// The power state, as the `status` action reports it.
    pub async fn status(&self, timeout: Duration) -> Result<PowerState, DeviceError> {
        match self.run(Action::Status, timeout).await? {
            Answer::Power(p) => Ok(p),
            other => Err(failed(format!("status answered {other:?}"))),
        }
    }
}
