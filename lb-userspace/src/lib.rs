//! fulmar balancer userspace: loads the embedded XDP object, pins programs,
//! links and maps under `/sys/fs/bpf/fulmar/`, and manages the maps
//! (services, reals, flows, counters) the data plane reads.
pub mod balancer;
pub mod error;
pub mod frames;
pub mod object;
pub mod pins;
pub mod services;
pub mod sweep;
pub mod test_run;

pub use balancer::{AttachMode, Balancer, LoadOptions};
pub use error::LbError;
pub use pins::PinLayout;
pub use services::{Forwarding, RealSpec, RealState, Scheduler, ServiceSpec};
