//! Fencing for the failover manager: before another node takes over an
//! instance's storage, the failed node is made unable to write it.
//!
//! - [`device`]: the actions every device answers, run with a timeout.
//! - [`agents`]: any ClusterLabs `fence_*` agent, built-in Redfish and IPMI
//!   (through ipmitool), the lab host agent and the volume I/O barrier.
//! - [`topology`]: a node's delay and ordered levels, each action confirmed
//!   by a status query; "unfenceable" when every level failed.
//! - [`history`]: the fence history and operators' manual confirmations.
//! - [`convention`]: the fence-agents calling convention, used to run
//!   agents and by `fence_fulmar`, which offers the built-in agents to
//!   Pacemaker or anything else that speaks it.
pub mod agents;
pub mod config;
pub mod convention;
pub mod device;
pub mod history;
/// Passwords (shared with every fulmar program).
pub use fulmar_daemon::secret;
pub mod topology;

pub use config::FencingConfig;
pub use device::{Action, Answer, Device, DeviceError, PowerState};
pub use history::{Outcome, Record};
pub use topology::Fencer;
