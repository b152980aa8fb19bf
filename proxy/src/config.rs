//! The proxy daemon's configuration (`/etc/fulmar/proxy.toml`): listeners,
//! TLS, the directory, the back-end ports and the agent/metrics endpoints.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use fulmar_daemon::config::{self as config_file, ConfigError};
use fulmar_daemon::network::Network;

use crate::penalty::PenaltyConfig;
use fulmar_daemon::secret::{self, Secret, SecretError};
use serde::{Deserialize, Serialize};

pub const DEFAULT_CONFIG: &str = "/etc/fulmar/proxy.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
    /// Mail from other MTAs (port 25): local recipients only, unless the
    /// sender authenticated.
    Smtp,
    /// Mail from users (587, 465): AUTH offered, relaying once authenticated.
    Submission,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// Plain text, no STARTTLS offered.
    None,
    /// Plain text with STARTTLS / STLS offered.
    #[default]
    Starttls,
    /// TLS from the first byte (993, 995, 465).
    Implicit,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub protocol: Protocol,
    pub address: SocketAddr,
    #[serde(default)]
    pub tls: ListenerTls,
    /// Expect a PROXY protocol v2 header first (NAT-mode balancers,
    /// other proxies in front); the client address is taken from it.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Who may send that header: connections from elsewhere are closed
    /// (anyone could otherwise claim any client address). Required with
    /// `proxy_protocol`.
    #[serde(default)]
    pub proxy_protocol_from: Vec<Network>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain and key; re-read on SIGHUP.
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// Before STARTTLS, refuse plain-text logins (IMAP LOGINDISABLED, no
    /// AUTH advertised) everywhere but on port-25 SMTP.
    #[serde(default = "yes")]
    pub require_for_auth: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Tried in order; the next one when a server is down.
    pub urls: Vec<String>,
    pub bind_dn: String,
    /// The service password, or a file holding it (first line).
    /// Never written back out (a serialised config holds no secret).
    #[serde(default, skip_serializing)]
    pub bind_password: Option<Secret>,
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    pub base_dn: String,
    /// `%u` is the login as typed, `%d` its domain; both RFC 4515-escaped.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Finds the account that receives mail for `%u`.
    #[serde(default = "default_recipient_filter")]
    pub recipient_filter: String,
    /// A domain's own entry: its `mailHost` routes accounts that carry none
    /// (domain-based placement), and it makes the domain local for SMTP.
    #[serde(default = "default_domain_filter")]
    pub domain_filter: String,
    #[serde(default = "default_host_attribute")]
    pub host_attribute: String,
    /// The account's name on its back-end (IMAP/POP3 login, LMTP
    /// recipient), whatever alias the client typed.
    #[serde(default = "default_user_attribute")]
    pub user_attribute: String,
    #[serde(default = "default_ldap_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connections kept open per pool (searches; user binds).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long a lookup result is reused; 0 turns the cache off.
    /// Passwords are never cached: every login binds (see `outage_ttl`
    /// for while the directory cannot answer).
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// While the directory cannot answer (down, or moving to another
    /// node), what it said within this long still routes, and a login it
    /// accepted within this long with the same password (kept as a keyed
    /// hash, never the password) is let in again; 0 turns this off.
    #[serde(default = "default_outage_ttl", with = "humantime_serde")]
    pub outage_ttl: Duration,
    /// The CAs (PEM) that `ldaps://` servers' certificates are checked
    /// against; unset, the system's roots.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryProtocol {
    #[default]
    Lmtp,
    Smtp,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    #[serde(default = "default_imap_port")]
    pub imap_port: u16,
    #[serde(default = "default_pop3_port")]
    pub pop3_port: u16,
    /// How SMTP-in hands messages to an instance.
    #[serde(default)]
    pub delivery: DeliveryProtocol,
    #[serde(default = "default_delivery_port")]
    pub delivery_port: u16,
    /// Speak TLS to the back-end (implicit TLS on the ports above),
    /// checking its certificate against the CAs in `tls_ca`.
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// How long a connection to a back-end may take. Within it the proxy
    /// tries afresh every 100 ms (and 50 ms after a refusal): a login
    /// that arrives while an instance moves waits for its new home.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A back-end that has not answered a step of the login (greeting,
    /// ID/XCLIENT, LOGIN) in this long is given up: the client hears
    /// UNAVAILABLE rather than waiting on a hung instance.
    #[serde(default = "default_login_timeout", with = "humantime_serde")]
    pub login_timeout: Duration,
    /// Where accounts the directory does not know go (the back-end then
    /// authenticates them). Off unless set.
    #[serde(default)]
    pub default_host: Option<String>,
    /// Loop guard: sessions arriving with this many proxy hops are refused.
    #[serde(default = "default_ttl")]
    pub proxy_ttl: u8,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Delay before answering a failed login (slows guessing).
    #[serde(default = "default_auth_delay", with = "humantime_serde")]
    pub auth_failure_delay: Duration,
    /// A session that says nothing this long before login is closed; a
    /// client that reads nothing this long too (writes, TLS handshakes).
    #[serde(default = "default_prelogin_idle", with = "humantime_serde")]
    pub prelogin_idle_timeout: Duration,
    /// IMAP and POP3 clients must have logged in this long after they
    /// connected, however busy they keep the connection.
    #[serde(default = "default_prelogin_total", with = "humantime_serde")]
    pub prelogin_timeout: Duration,
    /// Connections at once, in all and from one client address (after the
    /// PROXY header, when there is one); more are told so and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Largest command (with its literals) accepted before login.
    #[serde(default = "default_prelogin_bytes")]
    pub max_prelogin_bytes: usize,
    /// On shutdown, sessions may finish for this long.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// A kicked session (an operator's kick, a drain) that reaches no
    /// command boundary this long (a client stalled inside an APPEND) is
    /// cut.
    #[serde(default = "default_kick_grace", with = "humantime_serde")]
    pub kick_grace: Duration,
    /// Failed logins one connection may make before it is closed.
    #[serde(default = "default_failures_per_connection")]
    pub auth_failures_per_connection: u32,
    /// Guesses per client address and per account (`crate::penalty`).
    #[serde(default)]
    pub auth_penalty: PenaltyConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The name in the greeting and EHLO reply.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// SIZE limit in bytes.
    #[serde(default = "default_max_size")]
    pub max_message_size: u64,
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Where authenticated senders' mail to non-local recipients goes
    /// (an outbound MTA, `host:port`). Without it such recipients are refused.
    #[serde(default)]
    pub outbound_relay: Option<String>,
}

/// The admin endpoint (`crate::admin`): off unless this section is there.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// For `fulmar` on this host: whoever can open the socket is trusted,
    /// so it is made mode 0600 (keep it in a directory of mode 0700).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// For `fulmar` elsewhere (`fulmar session`, `fulmar proxy drain`
    /// reach every proxy the balancer lists): TLS with the `[tls]`
    /// certificate, every request carrying the token in `token_file`.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// How `fulmar proxy` names this proxy (default: the host name).
    #[serde(default = "default_hostname")]
    pub name: String,
}

/// A shorter token is refused: it is the only key to every session.
pub const MIN_TOKEN: usize = 16;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub listen: Vec<Listener>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    pub directory: DirectoryConfig,
    #[serde(default = "default_backend")]
    pub backend: BackendConfig,
    #[serde(default = "default_session")]
    pub session: SessionConfig,
    #[serde(default = "default_smtp")]
    pub smtp: SmtpConfig,
    /// The balancer's agent check connects here (`agent-port`).
    #[serde(default)]
    pub agent_address: Option<SocketAddr>,
    /// Prometheus text metrics at `/metrics`.
    #[serde(default)]
    pub metrics_address: Option<SocketAddr>,
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

impl ProxyConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        config_file::load(path, Self::parse)
    }

    /// Parses and checks what serde cannot: TLS present where a listener
    /// needs it, filters that use their placeholders, a password source.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: ProxyConfig = config_file::from_toml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// TLS present where a listener needs it, filters that use their
    /// placeholders, a password source.
    fn validate(&self) -> Result<(), String> {
        self.session.auth_penalty.validate()?;
        if self.listen.is_empty() {
            return Err("no [[listen]] entries: the proxy would serve nothing".into());
        }
        let needs_tls = self.listen.iter().find(|l| l.tls != ListenerTls::None);
        if let (None, Some(l)) = (&self.tls, needs_tls) {
            return Err(format!(
                "listener {} ({}) uses TLS but there is no [tls] section",
                l.address,
                l.protocol.name()
            ));
        }
        if let Some(l) = self
            .listen
            .iter()
            .find(|l| l.proxy_protocol && l.proxy_protocol_from.is_empty())
        {
            return Err(format!(
                "listener {}: proxy_protocol needs proxy_protocol_from (the balancers' or \
                 proxies' networks)",
                l.address
            ));
        }
        if self.backend.tls && self.backend.tls_ca.is_none() {
            return Err(
                "backend.tls needs backend.tls_ca (the CA that signed the back-ends)".into(),
            );
        }
        let dir = &self.directory;
        fulmar_directory::check_urls(&dir.urls, dir.tls_ca.is_some())?;
        if !dir.user_filter.contains("%u") || !dir.recipient_filter.contains("%u") {
            return Err("directory user_filter and recipient_filter must contain %u".into());
        }
        if !dir.domain_filter.contains("%d") {
            return Err("directory domain_filter must contain %d".into());
        }
        if dir.bind_password.is_some() == dir.bind_password_file.is_some() {
            return Err("directory: set exactly one of bind_password, bind_password_file".into());
        }
        if dir.pool_size == 0 {
            return Err("directory.pool_size must be at least 1".into());
        }
        if let Some(admin) = &self.admin {
            if admin.socket.is_none() && admin.address.is_none() {
                return Err("[admin] opens nothing: set socket, address or both".into());
            }
            if admin.address.is_some() && (admin.token_file.is_none() || self.tls.is_none()) {
                return Err(
                    "admin.address needs admin.token_file and a [tls] section (the endpoint \
                     speaks TLS with the proxy's certificate)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The admin token, when the TLS door is configured: read and checked.
    pub fn admin_token(&self) -> Result<Option<Secret>, String> {
        let Some(path) = self.admin.as_ref().and_then(|a| a.token_file.as_ref()) else {
            return Ok(None);
        };
        let token = Secret::from_file(path).map_err(String::from)?;
        if token.expose().len() < MIN_TOKEN {
            return Err(format!(
                "{}: the admin token must be at least {MIN_TOKEN} characters",
                path.display()
            ));
        }
        Ok(Some(token))
    }

    /// The service password (`validate` made sure exactly one source is set).
    pub fn bind_password(&self) -> Result<Secret, SecretError> {
        secret::resolve(
            &self.directory.bind_password,
            &self.directory.bind_password_file,
        )
    }
}

fn yes() -> bool {
    true
}
fn default_user_filter() -> String {
    "(&(objectClass=inetLocalMailRecipient)(|(uid=%u)(mailLocalAddress=%u)))".into()
}
fn default_recipient_filter() -> String {
    "(&(objectClass=inetLocalMailRecipient)(mailLocalAddress=%u))".into()
}
fn default_domain_filter() -> String {
    "(&(objectClass=inetLocalMailRecipient)(associatedDomain=%d))".into()
}
fn default_host_attribute() -> String {
    "mailHost".into()
}
/// fulmar-maild names accounts by address.
fn default_user_attribute() -> String {
    "mailLocalAddress".into()
}
fn default_ldap_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_pool_size() -> usize {
    8
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_outage_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_imap_port() -> u16 {
    143
}
fn default_pop3_port() -> u16 {
    110
}
fn default_delivery_port() -> u16 {
    24
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_ttl() -> u8 {
    5
}
fn default_auth_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_prelogin_idle() -> Duration {
    Duration::from_secs(180)
}
fn default_prelogin_bytes() -> usize {
    64 * 1024
}
fn default_prelogin_total() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_max_connections() -> usize {
    20_000
}
fn default_max_connections_per_ip() -> usize {
    200
}
fn default_failures_per_connection() -> u32 {
    3
}
fn default_login_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_kick_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_hostname() -> String {
    fulmar_daemon::host_name().unwrap_or_else(|_| "localhost".into())
}
fn default_max_size() -> u64 {
    50 * 1024 * 1024
}
fn default_max_recipients() -> usize {
    1000
}
fn default_backend() -> BackendConfig {
    toml::from_str("").expect("backend defaults")
}
fn default_session() -> SessionConfig {
    toml::from_str("").expect("session defaults")
}
fn default_smtp() -> SmtpConfig {
    toml::from_str("").expect("smtp defaults")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[listen]]
        protocol = "imap"
        address = "198.18.1.11:143"
        tls = "none"
        [directory]
        urls = ["ldap://198.18.2.20"]
        bind_dn = "cn=proxy,dc=fulmar,dc=test"
        bind_password = "x"
        base_dn = "dc=fulmar,dc=test"
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = ProxyConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.backend.imap_port, 143);
        assert_eq!(c.backend.delivery, DeliveryProtocol::Lmtp);
        assert!(
            c.backend.default_host.is_none(),
            "default route is off unless set"
        );
        assert_eq!(c.directory.host_attribute, "mailHost");
    }

    #[test]
    fn bad_configs_are_named() {
        let no_tls = MINIMAL.replace("tls = \"none\"", "tls = \"implicit\"");
        assert!(
            ProxyConfig::parse(&no_tls)
                .unwrap_err()
                .to_string()
                .contains("no [tls] section")
        );
        let typo = MINIMAL.replace("base_dn", "basedn");
        assert!(
            ProxyConfig::parse(&typo)
                .unwrap_err()
                .to_string()
                .contains("basedn")
        );
        let url = MINIMAL.replace("ldap://198", "http://198");
        assert!(
            ProxyConfig::parse(&url)
                .unwrap_err()
                .to_string()
                .contains("ldap://")
        );
        let admin = format!("{MINIMAL}\n[admin]\naddress = \"198.18.1.11:7071\"\n");
        assert!(
            ProxyConfig::parse(&admin)
                .unwrap_err()
                .to_string()
                .contains("token_file")
        );
        let filter = MINIMAL.replace("base_dn = ", "user_filter = \"(uid=*)\"\nbase_dn = ");
        assert!(
            ProxyConfig::parse(&filter)
                .unwrap_err()
                .to_string()
                .contains("%u")
        );
    }
}
