//! Who may log in: a password checked by binding to the LDAP directory as
//! the account's entry, or the configured master user acting for an
//! account (SASL PLAIN authorization identity, how provisioning reaches
//! mailboxes). A bare user name from the network is never enough.
use std::{net::IpAddr, path::Path, time::Duration};

use fulmar_daemon::{
    TlsError,
    network::{Network, any_contains},
    secret::{Secret, SecretError},
};
use fulmar_directory::{
    Connection, Pool,
    accepted::{Accepted, Recalled},
    fill,
};
use fulmar_mailproto::sasl::Plain;

use crate::config::{DirectoryConfig, MailConfig};

const LDAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept for searches, and as many for binds.
const LDAP_POOL: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong name or password: the client may try again.
    #[error("authentication failed")]
    Failed,
    /// The directory could not answer: a temporary failure.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// A secret or the directory's CA that the config names cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("directory tls_ca: {0}")]
    Tls(#[from] TlsError),
}

pub struct Authenticator {
    directory: Option<(DirectoryConfig, Pool)>,
    /// Logins the directory accepted, by name, for while it is down.
    accepted: Accepted<String>,
    master: Option<Master>,
}

struct Master {
    user: String,
    password: Secret,
    networks: Vec<Network>,
}

fn secret(root: &Path, path: &Path) -> Result<Secret, SecretError> {
    Secret::from_file(&MailConfig::path(root, path))
}

/// Equal-time comparison: how long it takes says nothing about the secret.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// Reads the secrets the config names (relative to `ROOT/config`).
    pub fn load(root: &Path, config: &MailConfig) -> Result<Self, LoadError> {
        let directory = match &config.directory {
            Some(d) => {
                let tls = match &d.tls_ca {
                    Some(ca) => Some(fulmar_daemon::tls_client_config(&MailConfig::path(
                        root, ca,
                    ))?),
                    None => None,
                };
                let pool = Pool::new(Connection {
                    urls: d.urls.clone(),
                    bind_dn: d.bind_dn.clone(),
                    bind_password: secret(root, &d.bind_password_file)?,
                    timeout: LDAP_TIMEOUT,
                    pool_size: LDAP_POOL,
                    tls,
                });
                Some((d.clone(), pool))
            }
            None => None,
        };
        let master = match &config.master {
            Some(m) => Some(Master {
                user: m.user.clone(),
                password: secret(root, &m.password_file)?,
                networks: m.networks.clone(),
            }),
            None => None,
        };
        let ttl = config
            .directory
            .as_ref()
            .map_or(std::time::Duration::ZERO, |d| d.outage_ttl);
        Ok(Self {
            directory,
            accepted: Accepted::new(ttl),
            master,
        })
    }

    /// The account `user` logs in to, once `password` is proven by a bind
    /// as its directory entry.
    ///
    /// While the directory cannot answer, a password it accepted for
    /// `user` within `outage_ttl` is accepted again, and another one
    /// refused as a failure.
    pub async fn login(&self, user: &str, password: &Secret) -> Result<String, AuthError> {
        let Some((config, pool)) = &self.directory else {
            return Err(AuthError::Failed);
        };
        // An empty password would be an anonymous bind, which succeeds.
        if user.is_empty() || password.is_empty() {
            return Err(AuthError::Failed);
        }
        let name = user.to_ascii_lowercase();
        match check(config, pool, user, password).await {
            Ok(account) => {
                self.accepted.remember(&name, password, account.clone());
                Ok(account)
            }
            Err(AuthError::Unavailable(why)) => match self.accepted.recall(&name, password) {
                Recalled::Same(account, age) => {
                    tracing::warn!(
                        user,
                        ?age,
                        "directory unavailable ({why}): a password it accepted lately"
                    );
                    Ok(account)
                }
                Recalled::Other => Err(AuthError::Failed),
                Recalled::Unknown => Err(AuthError::Unavailable(why)),
            },
            Err(e) => Err(e),
        }
    }

    /// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`. With an
    /// authorization identity the authcid must be the master user, and
    /// `peer` (the connection's own peer, never a forwarded address) one of
    /// its networks.
    pub async fn plain(&self, message: &[u8], peer: IpAddr) -> Result<String, AuthError> {
        let plain = Plain::decode(message).ok_or(AuthError::Failed)?;
        if !plain.acts_for_another() {
            return self.login(&plain.authcid, &plain.password).await;
        }
        match &self.master {
            Some(m)
                if same(m.user.as_bytes(), plain.authcid.as_bytes())
                    && same(
                        m.password.expose().as_bytes(),
                        plain.password.expose().as_bytes(),
                    ) =>
            {
                if !any_contains(&m.networks, peer) {
                    tracing::warn!(%peer, "master user login from outside master.networks refused");
                    return Err(AuthError::Failed);
                }
                Ok(plain.authzid.to_ascii_lowercase())
            }
            _ => Err(AuthError::Failed),
        }
    }
}

/// The directory's own verdict: the entry's search, then the bind.
async fn check(
    config: &DirectoryConfig,
    pool: &Pool,
    user: &str,
    password: &Secret,
) -> Result<String, AuthError> {
    let unavailable = |e: fulmar_directory::Unavailable| AuthError::Unavailable(e.0);
    let filter = fill(&config.user_filter, user);
    let attribute = config.account_attribute.as_str();
    let entries = pool
        .search(&config.base_dn, &filter, &[attribute])
        .await
        .map_err(unavailable)?;
    // None, or more than one: nobody can tell which one is meant.
    let [entry] = <[_; 1]>::try_from(entries).map_err(|_| AuthError::Failed)?;
    let values = entry.values(attribute);
    let account = values
        .iter()
        .find(|v| v.eq_ignore_ascii_case(user))
        .or_else(|| values.first())
        .cloned()
        .ok_or(AuthError::Failed)?;
    match pool.check_password(&entry.dn, password).await {
        Ok(true) => Ok(account.to_ascii_lowercase()),
        Ok(false) => Err(AuthError::Failed),
        Err(e) => Err(unavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn master_user_acts_for_an_account_and_nothing_else_passes() {
        let auth = Authenticator {
            directory: None,
            accepted: Accepted::new(Duration::from_secs(60)),
            master: Some(Master {
                user: "provision".into(),
                password: Secret::new("s3cret"),
                networks: vec![Network::parse("198.18.0.9/32").unwrap()],
            }),
        };
        let admin: IpAddr = "198.18.0.9".parse().unwrap();
        assert_eq!(
            auth.plain(b"Ann@X.test\0provision\0s3cret", admin)
                .await
                .unwrap(),
            "ann@x.test"
        );
        // The right password from elsewhere is not enough.
        let elsewhere: IpAddr = "198.18.0.10".parse().unwrap();
        assert!(matches!(
            auth.plain(b"ann@x.test\0provision\0s3cret", elsewhere)
                .await,
            Err(AuthError::Failed)
        ));
        for bad in [
            &b"ann@x.test\0provision\0wrong"[..],
            b"ann@x.test\0provisio\0s3cret",
            b"\0provision\0s3cret",
            b"ann@x.test\0ann@x.test\0pw",
            b"only-two\0fields",
            b"a\0b\0c\0d",
        ] {
            assert!(matches!(
                auth.plain(bad, admin).await,
                Err(AuthError::Failed)
            ));
        }
        // No directory configured: a plain login is refused, never trusted.
        assert!(matches!(
            auth.login("ann@x.test", &Secret::new("pw")).await,
            Err(AuthError::Failed)
        ));
    }
}
