//! What a provisioning operation can fail with. The variants say which
//! side failed (the operator's input, the directory, an instance) and,
//! after a partial write, what was rolled back or is left where.
use fulmar_daemon::secret::SecretError;
use fulmar_directory::{Unavailable, admin::WriteError};

use crate::imap::ImapError;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("invalid address {address:?}: {why}")]
    Address { address: String, why: String },
    #[error("{domain:?} is not a domain name")]
    Domain { domain: String },
    #[error("{domain:?}: bad label {label:?}")]
    DomainLabel { domain: String, label: String },
    #[error("the password is empty")]
    EmptyPassword,
    #[error("hashing the password: {0}")]
    Hash(String),
    /// A CSV or LDIF file: where in it, and what is wrong there.
    #[error("{at}: {why}")]
    Import { at: String, why: String },
    /// An import row or entry whose account cannot be planned.
    #[error("{origin}: {source}")]
    Row {
        origin: String,
        source: Box<ProvisionError>,
    },
    #[error("unknown instance {name:?} (known: {known})")]
    UnknownInstance { name: String, known: String },
    #[error("address {address} exists{}", account.as_ref().map(|a| format!(" (account {a})")).unwrap_or_default())]
    Exists {
        address: String,
        account: Option<String>,
    },
    #[error("no account {0}")]
    NoAccount(String),
    #[error("unknown placement {0:?} (random, weighted, least-used, domain)")]
    UnknownPlacement(String),
    #[error("weighted placement: every open instance has weight 0")]
    NoWeight,
    #[error("domain {0} has no entry to place by (fulmar domain add {0} INSTANCE)")]
    NoDomainEntry(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A `tls_ca` (the directory's or the instances') that cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] fulmar_daemon::TlsError),
    #[error("{source} at {url}")]
    Connect { url: String, source: Unavailable },
    #[error(transparent)]
    Directory(#[from] WriteError),
    /// An instance's IMAP service, and what was being done there.
    #[error("instance {instance}: {doing}: {source}")]
    Instance {
        instance: String,
        doing: String,
        source: ImapError,
    },
    /// An instance's IMAP service during a move (the error names it).
    #[error(transparent)]
    Imap(#[from] ImapError),
    #[error(
        "{folder}: the destination's UIDVALIDITY equals the source's ({uidvalidity}); try again in a second"
    )]
    SameUidValidity { folder: String, uidvalidity: u32 },
    #[error("the destination does not report APPENDUID (UIDPLUS); cannot track copies")]
    NoUidPlus,
    /// `account add`: the mailbox failed, and the entry written before
    /// it was removed again (`left` is None) or could not be.
    #[error("{source}; {}", match left { None => "the directory entry was removed again".to_string(), Some(d) => format!("removing the directory entry failed too: {d}") })]
    EntryRolledBack {
        source: Box<ProvisionError>,
        left: Option<WriteError>,
    },
    #[error(
        "the directory entry is gone, but the mailbox on {instance} could not be removed: {source}"
    )]
    MailboxLeft {
        instance: String,
        source: Box<ProvisionError>,
    },
    #[error(
        "instance {instance} already holds {held} messages for {user}; a move needs an empty mailbox there"
    )]
    NotEmpty {
        instance: String,
        user: String,
        held: u32,
    },
    /// A move failed before `mailHost` was switched: nothing changed but
    /// what `cleanup` says.
    #[error("{source}; nothing switched ({cleanup})")]
    NothingSwitched {
        source: Box<ProvisionError>,
        cleanup: String,
    },
    #[error("{from} kept receiving for {user} after {rounds} rounds")]
    KeepsReceiving {
        from: String,
        user: String,
        rounds: usize,
    },
    /// A move failed after `mailHost` was switched: what is left where.
    #[error(
        "{source}. {user}'s mailHost already names {to}; messages not yet copied are still on {from}: run the move again once {from} answers"
    )]
    AfterSwitch {
        source: Box<ProvisionError>,
        user: String,
        from: String,
        to: String,
    },
}

impl ProvisionError {
    pub fn instance(instance: &str, doing: impl Into<String>) -> impl Fn(ImapError) -> Self {
        let (instance, doing) = (instance.to_string(), doing.into());
        move |source| Self::Instance {
            instance: instance.clone(),
            doing: doing.clone(),
            source,
        }
    }

    pub fn import(at: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Import {
            at: at.into(),
            why: why.into(),
        }
    }

    pub fn at_row(self, origin: &str) -> Self {
        Self::Row {
            origin: origin.to_string(),
            source: Box::new(self),
        }
    }
}

/// For the CLI, which reports errors as text.
impl From<ProvisionError> for String {
    fn from(e: ProvisionError) -> String {
        e.to_string()
    }
}
