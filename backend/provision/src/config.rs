//! The provisioning config (`/etc/fulmar/provision.toml`): the directory
//! it writes, the mail instances accounts are placed on, and how it logs in
//! to an instance to create or move a mailbox.
//!
//! ```toml
//! placement = "least-used"
//!
//! [directory]
//! url = "ldaps://198.18.21.10/"
//! tls_ca = "/etc/fulmar/ldap-ca.pem"
//! admin_dn = "cn=admin,dc=example,dc=com"
//! admin_password_file = "/etc/fulmar/ldap-admin.secret"
//! people = "ou=people,dc=example,dc=com"
//! domains = "ou=domains,dc=example,dc=com"
//!
//! [imap]
//! master_user = "provision"
//! master_password_file = "/etc/fulmar/provision.secret"
//!
//! [instance.mail1]
//! mail_host = "198.18.21.21"
//! weight = 2
//! ```
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use fulmar_daemon::config::{self as config_file, ConfigError};
use fulmar_daemon::secret::{self, Secret, SecretError};
use serde::Deserialize;

use crate::{error::ProvisionError, placement::Algorithm};

pub const DEFAULT_PATH: &str = "/etc/fulmar/provision.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionConfig {
    /// The algorithm when a command names none.
    #[serde(default)]
    pub placement: Algorithm,
    /// Folders every new mailbox gets besides INBOX.
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    pub directory: DirectoryConfig,
    pub imap: ImapConfig,
    pub instance: BTreeMap<String, InstanceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    pub url: String,
    /// The CAs (PEM) that an `ldaps://` server's certificate is checked
    /// against; unset, the system's roots.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// A DN that may add, change and delete account and domain entries.
    pub admin_dn: String,
    #[serde(default)]
    pub admin_password: Option<Secret>,
    #[serde(default)]
    pub admin_password_file: Option<PathBuf>,
    /// Where account entries live (`uid=ADDRESS,<people>`).
    pub people: String,
    /// Where domain entries live (`dc=DOMAIN,<domains>`).
    pub domains: String,
    #[serde(default = "default_host_attribute")]
    pub host_attribute: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The proxies' lookup cache lifetime (their `cache_ttl`): a move
    /// waits this long after switching `mailHost` before its last pass, so
    /// no delivery still routed to the old instance is missed.
    #[serde(default = "default_route_cache_ttl", with = "humantime_serde")]
    pub route_cache_ttl: Duration,
}

/// How provisioning reaches an instance's mailboxes: IMAP, logged in with
/// SASL PLAIN as a master user acting for the account (authzid), so no
/// account password is needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub master_user: String,
    #[serde(default)]
    pub master_password: Option<Secret>,
    #[serde(default)]
    pub master_password_file: Option<PathBuf>,
    #[serde(default = "default_imap_port")]
    pub port: u16,
    /// Implicit TLS (`port` then 993, fulmar-maild's imaps), each
    /// instance's certificate checked against these CAs (PEM): the master
    /// password never crosses the network in plain text.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The value written to `mailHost`: where the proxies connect (the
    /// instance's VIP or a name for it).
    pub mail_host: String,
    /// Its share under weighted random placement (0: never chosen).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Where provisioning connects for IMAP, when not `mail_host:port`.
    #[serde(default)]
    pub imap_address: Option<String>,
    /// Closed to new accounts (still counted, still a move source).
    #[serde(default)]
    pub closed: bool,
}

impl ProvisionConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        config_file::load(path, Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: ProvisionConfig = config_file::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let d = &self.directory;
        fulmar_directory::check_urls(std::slice::from_ref(&d.url), d.tls_ca.is_some())?;
        if self.instance.is_empty() {
            return Err("no [instance.NAME] to place accounts on".into());
        }
        let mut hosts = BTreeMap::new();
        for (name, i) in &self.instance {
            if i.mail_host.trim().is_empty() {
                return Err(format!("instance {name}: mail_host is empty"));
            }
            // mailHost → instance must be unambiguous, or counting and
            // moves would mix two instances up.
            if let Some(other) = hosts.insert(i.mail_host.to_ascii_lowercase(), name) {
                return Err(format!(
                    "instances {other} and {name} share mail_host {}",
                    i.mail_host
                ));
            }
        }
        if self.instance.values().all(|i| i.closed) {
            return Err("every instance is closed to new accounts".into());
        }
        if self.placement == Algorithm::Weighted
            && self.instance.values().all(|i| i.closed || i.weight == 0)
        {
            return Err("weighted placement: no open instance has a weight above 0".into());
        }
        // The files are read when needed: the config can be checked
        // where the secrets are not readable.
        given(
            &self.directory.admin_password,
            &self.directory.admin_password_file,
        )
        .map_err(|e| format!("directory: {e}"))?;
        given(&self.imap.master_password, &self.imap.master_password_file)
            .map_err(|e| format!("imap: {e}"))?;
        for f in &self.folders {
            if f.eq_ignore_ascii_case("INBOX") || f.is_empty() {
                return Err(format!("folders: {f:?} is not a folder to create"));
            }
        }
        Ok(())
    }

    // `validate` made sure exactly one of each pair is given.
    pub fn admin_password(&self) -> Result<Secret, SecretError> {
        secret::resolve(
            &self.directory.admin_password,
            &self.directory.admin_password_file,
        )
    }

    pub fn master_password(&self) -> Result<Secret, SecretError> {
        secret::resolve(&self.imap.master_password, &self.imap.master_password_file)
    }

    /// The instance whose `mail_host` is `host` (case-insensitive).
    pub fn instance_by_host(&self, host: &str) -> Option<&str> {
        self.instance
            .iter()
            .find(|(_, i)| i.mail_host.eq_ignore_ascii_case(host))
            .map(|(n, _)| n.as_str())
    }

    /// `host:port` for IMAP on the instance.
    pub fn imap_address(&self, instance: &str) -> Result<String, ProvisionError> {
        let i = self
            .instance
            .get(instance)
            .ok_or_else(|| unknown_instance(self, instance))?;
        Ok(match &i.imap_address {
            Some(a) => a.clone(),
            None if i.mail_host.contains(':') => format!("[{}]:{}", i.mail_host, self.imap.port),
            None => format!("{}:{}", i.mail_host, self.imap.port),
        })
    }
}

pub fn unknown_instance(config: &ProvisionConfig, name: &str) -> ProvisionError {
    let known: Vec<&str> = config.instance.keys().map(String::as_str).collect();
    ProvisionError::UnknownInstance {
        name: name.to_string(),
        known: known.join(", "),
    }
}

fn given(inline: &Option<Secret>, file: &Option<PathBuf>) -> Result<(), String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("give the password or its file, not both".into()),
        (None, None) => Err("no password".into()),
        _ => Ok(()),
    }
}

fn default_folders() -> Vec<String> {
    ["Sent", "Drafts", "Trash", "Junk"]
        .map(String::from)
        .to_vec()
}
fn default_host_attribute() -> String {
    "mailHost".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_route_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_imap_port() -> u16 {
    143
}
fn default_weight() -> u32 {
    1
}

/// A valid config for unit tests: instances mail1 and mail2 (weight 3),
/// then `extra`.
#[cfg(test)]
pub(crate) fn test_config(extra: &str) -> ProvisionConfig {
    ProvisionConfig::parse(&format!("{}{extra}", tests::BASE)).expect("test config")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const BASE: &str = r#"
[directory]
url = "ldap://198.18.9.20/"
admin_dn = "cn=admin,dc=fulmar,dc=test"
admin_password = "x"
people = "ou=people,dc=fulmar,dc=test"
domains = "ou=domains,dc=fulmar,dc=test"
[imap]
master_user = "provision"
master_password = "y"
[instance.mail1]
mail_host = "198.18.9.11"
[instance.mail2]
mail_host = "198.18.9.12"
weight = 3
"#;

    #[test]
    fn parses_with_defaults() {
        let c = ProvisionConfig::parse(BASE).unwrap();
        assert_eq!(c.placement, Algorithm::LeastUsed);
        assert_eq!(c.folders, ["Sent", "Drafts", "Trash", "Junk"]);
        assert_eq!(c.instance["mail1"].weight, 1);
        assert_eq!(c.imap_address("mail2").unwrap(), "198.18.9.12:143");
        assert_eq!(c.instance_by_host("198.18.9.12"), Some("mail2"));
        assert!(
            c.imap_address("mail9")
                .unwrap_err()
                .to_string()
                .contains("mail1, mail2")
        );
    }

    #[test]
    fn refuses_bad_config() {
        let bad = [
            (
                BASE.replace("198.18.9.12\"", "198.18.9.11\""),
                "share mail_host",
            ),
            (
                format!("placement = \"roulette\"\n{BASE}"),
                "unknown variant",
            ),
            (BASE.replace("admin_password = \"x\"", ""), "no password"),
            (format!("folders = [\"INBOX\"]\n{BASE}"), "INBOX"),
            (format!("{BASE}bogus = 1\n"), "unknown field"),
            (
                format!(
                    "placement = \"weighted\"\n{}",
                    BASE.replace("weight = 3", "weight = 0")
                )
                .replace("[instance.mail1]", "[instance.mail1]\nweight = 0"),
                "weight above 0",
            ),
        ];
        for (text, want) in bad {
            let e = ProvisionConfig::parse(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
