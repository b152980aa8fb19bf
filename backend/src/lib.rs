//! The back-end node: a service instance is one unit (volume, virtual IP,
//! service) that the failover manager moves between nodes.
//!
//! - [`instance`]: what an instance is (TOML).
//! - [`volume`]: attach through this node's access path, mount, unmount;
//!   the generation written on the volume as fencing token.
//! - [`vip`]: the instance address via rtnetlink; [`announce`]: gratuitous
//!   ARP and unsolicited neighbour advertisements after a move.
//! - [`service`], [`probe`]: run the service; check it answers and the
//!   storage takes writes.
//! - [`takeover`]: the start order (mount, generation, VIP, announce,
//!   service, probe) with each step timed, rolled back in reverse on
//!   failure; stop in reverse.
//!
//! The failover manager on top, with its state in etcd:
//! - [`config`]: the cluster file; [`state`]: the keys in etcd.
//! - [`lease`]: membership and the self-fencing deadline.
//! - [`agent`]: runs what is placed on this node; [`leader`] applies the
//!   [`plan`] (placement, fencing before takeover).
//! - [`cli`]: `fulmar cluster|instance|node`.
//!
//! [`provision`]: `fulmar account|domain`, placing accounts on instances.
//!
//! [`mail`]: `fulmar-maild`, the built-in mail service of an instance.
pub mod agent;
pub mod announce;
pub mod cli;
pub mod config;
pub mod instance;
pub mod leader;
pub mod lease;
pub mod mail;
pub mod plan;
pub mod probe;
pub mod provision;
pub mod service;
pub mod stale;
pub mod state;
pub mod takeover;
pub mod vip;
pub mod volume;
