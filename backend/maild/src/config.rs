//! `ROOT/config/mail.toml`: the instance's own config, on its volume so it
//! moves with it.
//!
//! ```toml
//! instance = "mail1"
//! lmtp = "198.18.0.21:24"          # on the instance's virtual IP
//! max_message_size = "50 MiB"      # optional; SIZE and DATA refuse larger
//! max_recipients = 100             # optional
//! imap = "198.18.0.21:143"         # optional: IMAP on the instance VIP
//! pop3 = "198.18.0.21:110"         # optional: POP3 on the instance VIP
//! smtp = "198.18.0.21:25"          # optional: SMTP delivery on the instance VIP
//! imaps = "198.18.0.21:993"        # optional: IMAP in implicit TLS (needs [tls])
//! pop3s = "198.18.0.21:995"        # optional: POP3 in implicit TLS (needs [tls])
//! lmtps = "198.18.0.21:2424"       # optional: LMTP in implicit TLS (needs [tls]),
//!                                  # for proxies with backend.tls
//! metrics = "198.18.0.21:9423"     # optional: Prometheus GET /metrics
//! max_line = 65536                 # optional: longest IMAP/POP3 command line (at least 32768)
//! max_prelogin_bytes = 65536       # optional: IMAP literals of one command
//!                                  # before login (after it: max_message_size)
//! prelogin_timeout = "1m"          # optional: IMAP/POP3 logged in by then
//! delivery_idle_timeout = "5m"     # optional: silent LMTP/SMTP clients get 421
//! max_mime_depth = 100             # optional: BODYSTRUCTURE nesting shown
//! max_mime_parts = 10000           # optional: BODYSTRUCTURE parts shown
//! max_mailboxes = 1000             # optional: per account
//! max_subscriptions = 1000         # optional: per account
//! quota = "1 GiB"                  # optional: per-account limit unless the
//!                                  # account has its own (`fulmar-maild quota`)
//! # Proxies whose IMAP ID x-originating-ip and XCLIENT are believed (CIDR).
//! trusted_networks = ["198.18.0.0/24"]
//!
//! [directory]                      # logins are checked by LDAP bind
//! urls = ["ldaps://198.18.0.5", "ldaps://198.18.0.6"]  # tried in order
//! tls_ca = "ldap-ca.pem"           # optional: checks ldaps:// certificates
//! base_dn = "dc=example,dc=test"
//! bind_dn = "cn=proxy,dc=example,dc=test"   # reads the account entries
//! bind_password_file = "ldap.secret"        # relative to ROOT/config
//! outage_ttl = "1h"                # optional: while the directory is down, a
//!                                  # login it accepted lately still works
//!
//! [master]                         # SASL PLAIN authzid for provisioning
//! user = "provision"
//! password_file = "master.secret"
//! networks = ["198.18.0.9/32"]     # where it may log in from (required)
//!
//! [tls]                            # STARTTLS, and the implicit-TLS listeners
//! certificate = "cert.pem"
//! key = "key.pem"
//! ```
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use fulmar_daemon::config::{self as config_file, ConfigError};
pub use fulmar_daemon::network::Network;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The instance's name: in the lock, the log name and the greeting.
    pub instance: String,
    /// Where LMTP listens (the instance VIP, port 24 by convention).
    pub lmtp: SocketAddr,
    #[serde(default = "default_max_message_size", deserialize_with = "size")]
    pub max_message_size: u64,
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Where IMAP listens (the instance VIP, port 143 by convention).
    pub imap: Option<SocketAddr>,
    /// Where POP3 listens (the instance VIP, port 110 by convention).
    pub pop3: Option<SocketAddr>,
    /// Where SMTP delivery listens (the instance VIP, port 25 by convention).
    pub smtp: Option<SocketAddr>,
    /// IMAP in implicit TLS (993 by convention): what a proxy with
    /// `backend.tls` connects to.
    #[serde(default)]
    pub imaps: Option<SocketAddr>,
    /// POP3 in implicit TLS (995 by convention).
    #[serde(default)]
    pub pop3s: Option<SocketAddr>,
    /// LMTP in implicit TLS: a proxy's deliveries with `backend.tls`.
    #[serde(default)]
    pub lmtps: Option<SocketAddr>,
    /// Prometheus text at `GET /metrics`: sessions, deliveries, APPENDs,
    /// store latency, quota use.
    pub metrics: Option<SocketAddr>,
    /// The default per-account quota; none: unlimited.
    #[serde(default, deserialize_with = "optional_size")]
    pub quota: Option<u64>,
    #[serde(default = "default_max_line")]
    pub max_line: usize,
    /// What one IMAP command may carry in literals before login (LOGIN,
    /// AUTHENTICATE and ID need little).
    #[serde(default = "default_max_prelogin_bytes")]
    pub max_prelogin_bytes: usize,
    /// IMAP and POP3 clients must have logged in this long after they connected;
    /// until then it also bounds each read, write and TLS handshake.
    #[serde(default = "default_prelogin_timeout", with = "humantime_serde")]
    pub prelogin_timeout: std::time::Duration,
    /// An LMTP or SMTP client silent this long (between commands, or
    /// within DATA) is told 421 and closed: RFC 5321 §4.5.3.2.7's five
    /// minutes by default.
    #[serde(default = "default_delivery_idle", with = "humantime_serde")]
    pub delivery_idle_timeout: std::time::Duration,
    /// How much of a message's MIME structure BODYSTRUCTURE shows: nesting
    /// levels, and parts in all (`imap::mime::Shape`).
    #[serde(default = "default_mime_depth")]
    pub max_mime_depth: usize,
    #[serde(default = "default_mime_parts")]
    pub max_mime_parts: usize,
    /// Mailboxes and subscriptions one account may have.
    #[serde(default = "default_max_mailboxes")]
    pub max_mailboxes: usize,
    #[serde(default = "default_max_mailboxes")]
    pub max_subscriptions: usize,
    #[serde(default)]
    pub trusted_networks: Vec<Network>,
    pub directory: Option<DirectoryConfig>,
    pub master: Option<MasterConfig>,
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Tried in order; the next one when a server is down.
    pub urls: Vec<String>,
    /// The CAs (PEM, relative to `ROOT/config`) that `ldaps://` servers'
    /// certificates are checked against; unset, the system's roots.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    pub base_dn: String,
    pub bind_dn: String,
    pub bind_password_file: PathBuf,
    /// `%u` is the login name, RFC 4515-escaped.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// The attribute naming the account's mailbox here: the login name
    /// when it is one of its values, else the first value.
    #[serde(default = "default_account_attribute")]
    pub account_attribute: String,
    /// While the directory cannot answer (down, or moving to another
    /// node), a login it accepted within this long with the same password
    /// (kept as a keyed hash, never the password) is let in again; 0
    /// turns this off.
    #[serde(default = "default_outage_ttl", with = "humantime_serde")]
    pub outage_ttl: std::time::Duration,
}

impl DirectoryConfig {
    /// The default filter and account attribute.
    pub fn new(url: &str, base_dn: &str, bind_dn: &str, bind_password_file: PathBuf) -> Self {
        DirectoryConfig {
            urls: vec![url.into()],
            tls_ca: None,
            base_dn: base_dn.into(),
            bind_dn: bind_dn.into(),
            bind_password_file,
            user_filter: default_user_filter(),
            account_attribute: default_account_attribute(),
            outage_ttl: default_outage_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MasterConfig {
    pub user: String,
    pub password_file: PathBuf,
    /// Where the master user may log in from (the provisioning hosts);
    /// required, so a leaked master password is not enough from anywhere.
    pub networks: Vec<Network>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// The shortest `max_line`: a full-size RFC 2971 ID line (30 pairs of a
/// 30-byte name and a 1024-byte value, quoted) is about 31.8 KiB.
pub const MIN_LINE: usize = 32 * 1024;

fn default_max_line() -> usize {
    64 * 1024
}
fn default_max_prelogin_bytes() -> usize {
    64 * 1024
}
fn default_mime_depth() -> usize {
    crate::imap::mime::Shape::default().depth
}
fn default_mime_parts() -> usize {
    crate::imap::mime::Shape::default().parts
}
fn default_max_mailboxes() -> usize {
    1000
}
fn default_prelogin_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}
fn default_delivery_idle() -> std::time::Duration {
    std::time::Duration::from_secs(5 * 60)
}

fn default_user_filter() -> String {
    "(&(objectClass=inetLocalMailRecipient)(|(uid=%u)(mailLocalAddress=%u)))".into()
}

fn default_outage_ttl() -> std::time::Duration {
    std::time::Duration::from_secs(3600)
}

fn default_account_attribute() -> String {
    "mailLocalAddress".into()
}

fn default_max_message_size() -> u64 {
    50 << 20
}

fn default_max_recipients() -> usize {
    100
}

fn optional_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    size(d).map(Some)
}

/// "123", "64 KiB", "50 MiB", "1 GiB".
fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 50 MiB)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => return Err(format!("unknown size unit {other:?} (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl MailConfig {
    /// An instance listening for LMTP only, everything else at its default
    /// (what a config file naming only these two keys gives).
    pub fn new(instance: impl Into<String>, lmtp: SocketAddr) -> Self {
        MailConfig {
            instance: instance.into(),
            lmtp,
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            imap: None,
            pop3: None,
            smtp: None,
            imaps: None,
            pop3s: None,
            lmtps: None,
            metrics: None,
            quota: None,
            max_line: default_max_line(),
            max_prelogin_bytes: default_max_prelogin_bytes(),
            prelogin_timeout: default_prelogin_timeout(),
            delivery_idle_timeout: default_delivery_idle(),
            max_mime_depth: default_mime_depth(),
            max_mime_parts: default_mime_parts(),
            max_mailboxes: default_max_mailboxes(),
            max_subscriptions: default_max_mailboxes(),
            trusted_networks: Vec::new(),
            directory: None,
            master: None,
            tls: None,
        }
    }
    pub const RELATIVE_PATH: &'static str = "config/mail.toml";

    pub fn mime_shape(&self) -> crate::imap::mime::Shape {
        crate::imap::mime::Shape {
            depth: self.max_mime_depth,
            parts: self.max_mime_parts,
        }
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = config_file::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// What serde cannot check.
    fn validate(&self) -> Result<(), String> {
        if self.instance.is_empty()
            || !self
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "instance {:?}: letters, digits, '-' and '_' only (it names the log file)",
                self.instance
            ));
        }
        if self.max_recipients == 0 || self.max_message_size == 0 {
            return Err("max_recipients and max_message_size must be above zero".into());
        }
        let implicit = [self.imaps, self.pop3s, self.lmtps];
        if self.tls.is_none() && implicit.iter().any(Option::is_some) {
            return Err("imaps, pop3s and lmtps need a [tls] section (certificate and key)".into());
        }
        if self.max_line < MIN_LINE {
            return Err(format!(
                "max_line must be at least {MIN_LINE}: an RFC 2971 ID command (30 fields of \
                 1024 bytes, sent before login) must fit"
            ));
        }
        if self.master.as_ref().is_some_and(|m| m.networks.is_empty()) {
            return Err("master.networks: name where the master user logs in from".into());
        }
        if let Some(d) = &self.directory {
            if !d.user_filter.contains("%u") {
                return Err("directory.user_filter must contain %u".into());
            }
            fulmar_directory::check_urls(&d.urls, d.tls_ca.is_some())?;
        }
        Ok(())
    }

    /// A path from the config, relative to `ROOT/config`.
    pub fn path(root: &Path, path: &Path) -> PathBuf {
        root.join("config").join(path)
    }

    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        config_file::load(&root.join(Self::RELATIVE_PATH), Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_config_reads_back_the_same() {
        let mut c = MailConfig::new("mail1", "198.18.0.1:24".parse().unwrap());
        c.quota = Some(1 << 30);
        c.trusted_networks = vec![Network::parse("198.18.1.0/24").unwrap()];
        c.directory = Some(DirectoryConfig::new(
            "ldap://198.18.2.20",
            "dc=t",
            "cn=p,dc=t",
            "ldap.secret".into(),
        ));
        let text = toml::to_string(&c).unwrap();
        let back = MailConfig::parse(&text).unwrap();
        assert_eq!(toml::to_string(&back).unwrap(), text);
        assert_eq!(back.quota, Some(1 << 30));
        assert_eq!(back.max_message_size, 50 << 20);
    }

    #[test]
    fn sizes_and_bad_configs() {
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("7"), Ok(7));
        assert!(
            parse_size("5 parsecs")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
        let ok = MailConfig::parse("instance = \"mail1\"\nlmtp = \"198.18.0.1:24\"\n").unwrap();
        assert_eq!((ok.max_message_size, ok.max_recipients), (50 << 20, 100));
        let sized = "instance = \"m\"\nlmtp = \"198.18.0.1:24\"\nmax_message_size = \"1 MiB\"\n";
        assert_eq!(MailConfig::parse(sized).unwrap().max_message_size, 1 << 20);
        assert_eq!(ok.quota, None);
        let quota = "instance = \"m\"\nlmtp = \"198.18.0.1:24\"\nquota = \"2 GiB\"\n";
        assert_eq!(MailConfig::parse(quota).unwrap().quota, Some(2 << 30));
        let bad_quota = "instance = \"m\"\nlmtp = \"198.18.0.1:24\"\nquota = \"lots\"\n";
        assert!(
            MailConfig::parse(bad_quota)
                .unwrap_err()
                .to_string()
                .contains("size")
        );
        assert!(
            MailConfig::parse("instance = \"../x\"\nlmtp = \"198.18.0.1:24\"\n")
                .unwrap_err()
                .to_string()
                .contains("letters")
        );
        assert!(MailConfig::parse("instance = \"m\"\nlmtp = \"nowhere\"\n").is_err());
        let trusted = "instance = \"m\"\nlmtp = \"198.18.0.1:24\"\ntrusted_networks = [\"198.18.0.0/15\", \"2001:db8::/32\"]\n";
        let nets = MailConfig::parse(trusted).unwrap().trusted_networks;
        assert!(nets[0].contains("198.19.255.1".parse().unwrap()));
        assert!(!nets[0].contains("198.20.0.1".parse().unwrap()));
        assert!(nets[0].contains("::ffff:198.18.0.9".parse().unwrap()));
        assert!(nets[1].contains("2001:db8:1::1".parse().unwrap()));
        assert!(!nets[1].contains("2001:db9::1".parse().unwrap()));
        let bad =
            "instance = \"m\"\nlmtp = \"198.18.0.1:24\"\ntrusted_networks = [\"198.18.0.0/33\"]\n";
        assert!(
            MailConfig::parse(bad)
                .unwrap_err()
                .to_string()
                .contains("network")
        );
        assert!(
            MailConfig::parse("instance = \"m\"\nlmtp = \"198.18.0.1:24\"\nextra = 1\n")
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
    }
}
