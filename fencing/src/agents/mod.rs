//! The built-in agents and the runner for external fence agents.
pub mod external;
pub mod io_barrier;
pub mod ipmi;
pub mod lab_host;
pub mod redfish;
