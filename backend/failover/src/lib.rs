//! The failover manager (`fulmar-noded`): a service instance is one unit
//! (volume, virtual IP, service) that it moves between nodes, fencing the
//! previous holder first.
//!
//! - [`instance`]: what an instance is (TOML).
//! - [`takeover`]: the start order with each step timed, rolled back in
//!   reverse on failure; stop in reverse. Its steps: [`takeover::volume`]
//!   (attach through this node's access path, check, mount; the generation
//!   on the volume as fencing token), [`takeover::stale`] (the previous
//!   holder's run state), [`takeover::vip`] and [`takeover::announce`]
//!   (the address, gratuitous ARP and unsolicited NA), [`takeover::service`]
//!   and [`takeover::probe`].
//!
//! The manager on top, with its state in etcd:
//! - [`config`]: the cluster file; [`state`]: the keys in etcd.
//! - [`lease`]: membership and the self-fencing deadline; [`heartbeat`]:
//!   the faster detector, whose suspicion leads to a fence.
//! - [`agent`]: runs what is placed on this node; [`leader`] applies the
//!   [`plan`] (placement, fencing before takeover).
//! - [`metrics`]: Prometheus text at `GET /metrics` (`node.NAME.metrics`).
pub mod agent;
pub mod config;
pub mod error;
pub mod heartbeat;
pub mod instance;
pub mod leader;
pub mod lease;
pub mod metrics;
pub mod plan;
pub mod state;
pub mod takeover;
