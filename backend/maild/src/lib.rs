//! The built-in back-end mail service (`fulmar-maild`): one instance's
//! volume, its owner lock, crash-safe maildir storage with quota, delivery
//! by LMTP and SMTP, and IMAP and POP3 for the clients (through the
//! proxies). Everything lives under the instance's root (its mounted
//! volume):
//!
//! ```text
//! ROOT/config/mail.toml     the instance's config (see `config`)
//! ROOT/mail/ACCOUNT/INBOX/  maildirs: tmp/ new/ cur/ and the UID list
//! ROOT/mail/ACCOUNT/quota   the account's own limit, if any (see `store::quota`)
//! ROOT/run/lock             owner node, generation and pid (see `store::lock`)
//! ROOT/log/INSTANCE.log     the service's log
//! ```
//!
//! - [`store::lock`]: one live owner per volume; a start with an older generation
//!   than the volume has seen is refused (the failover manager's fencing token).
//! - [`store`]: tmp → new by rename after fsync of the file and directory;
//!   UIDs, UIDVALIDITY and flags kept in a UID list replaced atomically.
//! - [`delivery`]: LMTP (a status per recipient) and SMTP, 250 only when
//!   durable; XCLIENT from trusted networks.
//! - [`imap`], [`pop3`]: the reading protocols, logins by LDAP bind ([`auth`]).
//! - [`metrics`]: Prometheus text at `GET /metrics` (`metrics` in mail.toml).
pub mod auth;
pub mod config;
pub mod delivery;
pub mod imap;
pub mod metrics;
pub mod net;
pub mod pop3;
pub mod store;

use std::{net::IpAddr, sync::Arc};

use auth::Authenticator;
use config::MailConfig;
use store::Store;

/// What every protocol of the instance shares: the store, the config,
/// who may log in (IMAP, POP3), TLS for STARTTLS/STLS, and whose forwarded
/// client address is believed (ID, XCLIENT).
pub struct Service {
    pub store: Arc<Store>,
    pub config: MailConfig,
    pub auth: Authenticator,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Service {
    /// Whether `peer` may forward a client's address (IMAP ID, XCLIENT).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        fulmar_daemon::network::any_contains(&self.config.trusted_networks, peer)
    }
}
