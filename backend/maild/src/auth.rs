//! Who may log in: a password checked by binding to the LDAP directory as
//! the account's entry, or the configured master user acting for an
//! account (SASL PLAIN authorization identity, how provisioning reaches
//! mailboxes). A bare user name from the network is never enough.
use std::{path::Path, time::Duration};

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};

use crate::config::{DirectoryConfig, MailConfig};

/// LDAP result code for a wrong password (or unknown DN) on bind.
const INVALID_CREDENTIALS: u32 = 49;
const LDAP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong name or password: the client may try again.
    #[error("authentication failed")]
    Failed,
    /// The directory could not answer: a temporary failure.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

pub struct Authenticator {
    directory: Option<(DirectoryConfig, String)>,
    master: Option<(String, String)>,
}

fn secret(root: &Path, path: &Path) -> Result<String, String> {
    let path = MailConfig::path(root, path);
    std::fs::read_to_string(&path)
        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Equal-time comparison: how long it takes says nothing about the secret.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// Reads the secrets the config names (relative to `ROOT/config`).
    pub fn load(root: &Path, config: &MailConfig) -> Result<Self, String> {
        let directory = match &config.directory {
            Some(d) => Some((d.clone(), secret(root, &d.bind_password_file)?)),
            None => None,
        };
        let master = match &config.master {
            Some(m) => Some((m.user.clone(), secret(root, &m.password_file)?)),
            None => None,
        };
        Ok(Self { directory, master })
    }

    /// The account `user` logs in to, once `password` is proven by a bind
    /// as its directory entry.
    pub async fn login(&self, user: &str, password: &str) -> Result<String, AuthError> {
        let Some((config, service_password)) = &self.directory else {
            return Err(AuthError::Failed);
        };
        // An empty password would be an anonymous bind, which succeeds.
        if user.is_empty() || password.is_empty() {
            return Err(AuthError::Failed);
        }
        let settings = LdapConnSettings::new().set_conn_timeout(LDAP_TIMEOUT);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &config.url)
            .await
            .map_err(|e| AuthError::Unavailable(format!("{}: {e}", config.url)))?;
        ldap3::drive!(conn);
        ldap.with_timeout(LDAP_TIMEOUT)
            .simple_bind(&config.bind_dn, service_password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| AuthError::Unavailable(format!("service bind: {e}")))?;
        let filter = config.user_filter.replace("%u", &ldap_escape(user));
        let attribute = config.account_attribute.as_str();
        let (entries, _) = ldap
            .with_timeout(LDAP_TIMEOUT)
            .search(&config.base_dn, Scope::Subtree, &filter, vec![attribute])
            .await
            .and_then(|r| r.success())
            .map_err(|e| AuthError::Unavailable(format!("search: {e}")))?;
        // None, or more than one: nobody can tell which one is meant.
        let [entry] = <[_; 1]>::try_from(entries).map_err(|_| AuthError::Failed)?;
        let entry = SearchEntry::construct(entry);
        let values = entry.attrs.get(attribute).cloned().unwrap_or_default();
        let account = values
            .iter()
            .find(|v| v.eq_ignore_ascii_case(user))
            .or_else(|| values.first())
            .cloned()
            .ok_or(AuthError::Failed)?;
        let bound = ldap
            .with_timeout(LDAP_TIMEOUT)
            .simple_bind(&entry.dn, password)
            .await
            .map_err(|e| AuthError::Unavailable(format!("bind: {e}")))?;
        let _ = ldap.unbind().await;
        match bound.rc {
            0 => Ok(account.to_ascii_lowercase()),
            INVALID_CREDENTIALS => Err(AuthError::Failed),
            rc => Err(AuthError::Unavailable(format!("bind: result {rc}"))),
        }
    }

    /// SASL PLAIN (RFC 4616): `authzid NUL authcid NUL password`. With an
    /// authorization identity the authcid must be the master user.
    pub async fn plain(&self, message: &[u8]) -> Result<String, AuthError> {
        let mut fields = message.split(|b| *b == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(AuthError::Failed);
        };
        let (Ok(authzid), Ok(authcid), Ok(password)) = (
            std::str::from_utf8(authzid),
            std::str::from_utf8(authcid),
            std::str::from_utf8(password),
        ) else {
            return Err(AuthError::Failed);
        };
        if authzid.is_empty() || authzid == authcid {
            return self.login(authcid, password).await;
        }
        match &self.master {
            Some((user, secret))
                if same(user.as_bytes(), authcid.as_bytes())
                    && same(secret.as_bytes(), password.as_bytes()) =>
            {
                Ok(authzid.to_ascii_lowercase())
            }
            _ => Err(AuthError::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn master_user_acts_for_an_account_and_nothing_else_passes() {
        let auth = Authenticator {
            directory: None,
            master: Some(("provision".into(), "s3cret".into())),
        };
        assert_eq!(
            auth.plain(b"Ann@X.test\0provision\0s3cret").await.unwrap(),
            "ann@x.test"
        );
        for bad in [
            &b"ann@x.test\0provision\0wrong"[..],
            b"ann@x.test\0provisio\0s3cret",
            b"\0provision\0s3cret",
            b"ann@x.test\0ann@x.test\0pw",
            b"only-two\0fields",
            b"a\0b\0c\0d",
        ] {
            assert!(matches!(auth.plain(bad).await, Err(AuthError::Failed)));
        }
        // No directory configured: a plain login is refused, never trusted.
        assert!(matches!(
            auth.login("ann@x.test", "pw").await,
            Err(AuthError::Failed)
        ));
    }
}
