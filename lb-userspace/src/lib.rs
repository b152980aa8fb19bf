//! fulmar balancer userspace: loads the embedded XDP object, pins programs,
//! links and maps under `/sys/fs/bpf/fulmar/`, and manages the maps
//! (services, reals, flows, counters) the data plane reads; the daemon
//! (`fulmar-lbd`) and the operator's tool (`fulmar`) are built on it.
pub mod balancer;
pub mod command;
pub mod config;
pub mod daemon;
pub mod edit;
pub mod effective;
pub mod error;
pub mod frames;
pub mod health;
pub mod model;
pub mod netlink;
pub mod object;
pub mod pins;
pub mod rows;
pub mod services;
pub mod sweep;
pub mod test_run;

pub use balancer::{AttachMode, Balancer, LoadOptions};
pub use error::LbError;
pub use pins::PinLayout;
pub use services::{Forwarding, RealSpec, RealState, Scheduler, ServiceSpec};
