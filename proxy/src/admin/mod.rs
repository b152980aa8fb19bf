//! The admin endpoint: list sessions, kick them, drain the proxy.
//!
//! One JSON request per line, one JSON reply per line. Two doors: a Unix
//! socket (whoever can open it is trusted: root, or the daemon's own user,
//! in a directory of mode 0700), and for `fulmar` on another host a TLS
//! listener with the proxy's certificate where every request carries the
//! shared token. Neither is open unless `[admin]` asks for it.
pub mod client;
pub(crate) mod drain;
pub mod server;

use serde::{Deserialize, Serialize};

pub use crate::registry::{Selector, SessionInfo};

/// What `fulmar` may ask.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Status,
    List,
    /// End the sessions picked, each at its next command boundary.
    Kick {
        select: Selector,
    },
    /// Answer `drain` to the balancer's agent check and end every session
    /// spread over `within_ms`.
    Drain {
        within_ms: u64,
    },
    Undrain,
}

/// A request as sent: the token is needed on the TLS door only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// `admin.name`: how `fulmar proxy` names this proxy.
    pub name: String,
    /// Logged-in sessions: what a drain waits for.
    pub sessions: usize,
    /// Connections not logged in yet (health checks among them); a
    /// draining proxy ends them at once.
    #[serde(default)]
    pub connecting: usize,
    /// Sessions not yet asked to end.
    pub not_kicked: usize,
    pub draining: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    Status(Status),
    Sessions(Vec<SessionInfo>),
    /// How many sessions were asked to end.
    Kicked(usize),
    Error(String),
}

/// Longest request line read.
pub const MAX_REQUEST: usize = 4096;
