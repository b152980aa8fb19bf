//! What can go wrong talking to the cluster's etcd.

/// An etcd request failed, or what it holds cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A request (what it was) that etcd did not answer or refused.
    #[error("etcd{what}: {source}")]
    Etcd {
        what: &'static str,
        source: etcd_client::Error,
    },
    #[error("etcd {endpoints}: {source}")]
    Connect {
        endpoints: String,
        source: etcd_client::Error,
    },
    /// Every member, each with why.
    #[error("no etcd member answers: {}", .0.join("; "))]
    NoMember(Vec<String>),
    /// A value nobody can read: reported, never skipped, since a silent
    /// skip would hide a placement.
    #[error("{key}: {reason}")]
    Garbled { key: String, reason: String },
    #[error("node {0:?} is not in the cluster config")]
    UnknownNode(String),
    /// The alive key of an earlier run of this node has not expired yet.
    #[error("{key} is still held by an earlier incarnation of {node}; waiting for it to go")]
    StillHeld { key: String, node: String },
}

impl ClusterError {
    pub(crate) fn etcd(what: &'static str) -> impl FnOnce(etcd_client::Error) -> ClusterError {
        move |source| ClusterError::Etcd { what, source }
    }
}

impl From<ClusterError> for String {
    fn from(e: ClusterError) -> String {
        e.to_string()
    }
}
