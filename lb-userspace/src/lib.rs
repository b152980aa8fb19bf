//! fulmar balancer userspace: loads the embedded XDP object, pins it, and
//! manages its maps.
pub mod object;
