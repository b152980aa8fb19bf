//! The LDAP directory: who an account is, where it lives, and whether its
//! password is right. Every value from a client goes into a filter through
//! RFC 4515 escaping, so a login can never change a filter's shape.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};

use crate::{config::DirectoryConfig, metrics::Metrics};

/// LDAP result code for a wrong password (or unknown DN) on bind.
const INVALID_CREDENTIALS: u32 = 49;
/// The cache is cleared rather than grown past this many entries.
const CACHE_LIMIT: usize = 100_000;

/// The directory could not answer: callers answer with a temporary failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("directory unavailable: {0}")]
pub struct Unavailable(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub dn: String,
    /// Its name on the back-end (`user_attribute`).
    pub user: Option<String>,
    /// The home instance (`mailHost`), the account's own or its domain's.
    pub host: Option<String>,
}

/// Where SMTP-in sends mail for one recipient address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A known account: the instance it lives on (`None`: the directory
    /// names none, neither on the account nor on its domain) and its name
    /// there.
    Local {
        host: Option<String>,
        user: Option<String>,
    },
    /// The domain is ours but no account takes this address.
    UnknownLocal,
    /// Not one of our domains.
    Remote,
}

#[derive(Clone)]
enum Cached {
    Account(Option<Account>),
    Recipient(Recipient),
    Domain(Option<Option<String>>),
}

pub struct Directory {
    config: DirectoryConfig,
    bind_password: String,
    /// Shared, multiplexed search connections bound as the service DN.
    search: Vec<Mutex<Option<Ldap>>>,
    next_search: AtomicUsize,
    /// Idle connections for user binds: one bind at a time on each.
    auth_idle: Mutex<Vec<Ldap>>,
    /// The URL that answered last; connecting starts there.
    preferred_url: AtomicUsize,
    cache: Mutex<HashMap<String, (Instant, Cached)>>,
    metrics: Arc<Metrics>,
}

impl Directory {
    pub fn new(config: DirectoryConfig, bind_password: String, metrics: Arc<Metrics>) -> Self {
        Self {
            search: (0..config.pool_size).map(|_| Mutex::new(None)).collect(),
            config,
            bind_password,
            next_search: AtomicUsize::new(0),
            auth_idle: Mutex::new(Vec::new()),
            preferred_url: AtomicUsize::new(0),
            cache: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The account a login names (uid or address), if exactly one matches.
    pub async fn account(&self, login: &str) -> Result<Option<Account>, Unavailable> {
        let cache_key = format!("a:{login}");
        if let Some(Cached::Account(a)) = self.cached(&cache_key) {
            return Ok(a);
        }
        let filter = fill(&self.config.user_filter, login);
        let mut entries = self.search_entries(&filter).await?;
        let account = match entries.len() {
            0 => None,
            1 => {
                let entry = entries.remove(0);
                let host = match self.host_of(&entry) {
                    Some(h) => Some(h),
                    None => match domain_of(login).or_else(|| first_address_domain(&entry)) {
                        Some(d) => self.domain(&d).await?.flatten(),
                        None => None,
                    },
                };
                Some(Account {
                    user: self.attr(&entry, &self.config.user_attribute),
                    dn: entry.dn,
                    host,
                })
            }
            n => {
                tracing::warn!(
                    login,
                    matches = n,
                    "login matches several accounts; refused"
                );
                None
            }
        };
        self.store(cache_key, Cached::Account(account.clone()));
        Ok(account)
    }

    /// Routes one SMTP recipient address.
    pub async fn recipient(&self, address: &str) -> Result<Recipient, Unavailable> {
        let cache_key = format!("r:{}", address.to_ascii_lowercase());
        if let Some(Cached::Recipient(r)) = self.cached(&cache_key) {
            return Ok(r);
        }
        let filter = fill(&self.config.recipient_filter, address);
        let entries = self.search_entries(&filter).await?;
        let domain = domain_of(address);
        let route = if let Some(entry) = entries.first() {
            if entries.len() > 1 {
                tracing::warn!(
                    address,
                    matches = entries.len(),
                    "address on several accounts"
                );
            }
            let host = match (self.host_of(entry), &domain) {
                (Some(h), _) => Some(h),
                (None, Some(d)) => self.domain(d).await?.flatten(),
                (None, None) => None,
            };
            Recipient::Local {
                host,
                user: self.attr(entry, &self.config.user_attribute),
            }
        } else {
            match &domain {
                Some(d) if self.domain(d).await?.is_some() => Recipient::UnknownLocal,
                _ => Recipient::Remote,
            }
        };
        self.store(cache_key, Cached::Recipient(route.clone()));
        Ok(route)
    }

    /// `None`: not our domain; `Some(host)`: ours, with its `mailHost` if any.
    pub async fn domain(&self, domain: &str) -> Result<Option<Option<String>>, Unavailable> {
        let cache_key = format!("d:{}", domain.to_ascii_lowercase());
        if let Some(Cached::Domain(d)) = self.cached(&cache_key) {
            return Ok(d);
        }
        let filter = self
            .config
            .domain_filter
            .replace("%d", &ldap_escape(domain));
        let entries = self.search_entries(&filter).await?;
        let found = entries.first().map(|e| self.host_of(e));
        self.store(cache_key, Cached::Domain(found.clone()));
        Ok(found)
    }

    /// Binds as `dn` with `password`: Ok(true) only on success. An empty
    /// password is refused here, since LDAP treats it as an anonymous bind.
    pub async fn authenticate(&self, dn: &str, password: &str) -> Result<bool, Unavailable> {
        if password.is_empty() || dn.is_empty() {
            return Ok(false);
        }
        let started = Instant::now();
        let mut last = Unavailable("no attempt".into());
        // A pooled connection may have died since its last use: one retry
        // on a fresh connection before calling the directory down.
        for _ in 0..2 {
            let pooled = self.auth_idle.lock().expect("auth pool").pop();
            let mut ldap = match pooled {
                Some(l) => l,
                None => self.connect().await?,
            };
            match ldap
                .with_timeout(self.config.timeout)
                .simple_bind(dn, password)
                .await
            {
                Ok(result) => {
                    self.metrics.directory_latency(started.elapsed());
                    let mut idle = self.auth_idle.lock().expect("auth pool");
                    if idle.len() < self.config.pool_size {
                        idle.push(ldap);
                    }
                    return match result.rc {
                        0 => Ok(true),
                        INVALID_CREDENTIALS => Ok(false),
                        rc => Err(Unavailable(format!("bind answered {rc}: {}", result.text))),
                    };
                }
                Err(e) => last = Unavailable(e.to_string()),
            }
        }
        Err(last)
    }

    async fn search_entries(&self, filter: &str) -> Result<Vec<SearchEntry>, Unavailable> {
        let started = Instant::now();
        let attrs = [
            self.config.host_attribute.as_str(),
            self.config.user_attribute.as_str(),
            "mailLocalAddress",
        ];
        let slot = self.next_search.fetch_add(1, Ordering::Relaxed) % self.search.len();
        let mut last = Unavailable("no attempt".into());
        for attempt in 0..2 {
            let pooled = self.search[slot].lock().expect("search pool").clone();
            let mut ldap = match pooled {
                Some(l) if attempt == 0 => l,
                _ => {
                    let mut l = self.connect().await?;
                    let bound = l
                        .with_timeout(self.config.timeout)
                        .simple_bind(&self.config.bind_dn, &self.bind_password)
                        .await
                        .map_err(|e| Unavailable(e.to_string()))?;
                    if bound.rc != 0 {
                        return Err(Unavailable(format!(
                            "service bind as {} answered {}: {}",
                            self.config.bind_dn, bound.rc, bound.text
                        )));
                    }
                    *self.search[slot].lock().expect("search pool") = Some(l.clone());
                    l
                }
            };
            let result = ldap
                .with_timeout(self.config.timeout)
                .search(&self.config.base_dn, Scope::Subtree, filter, attrs)
                .await;
            match result.and_then(|r| r.success()) {
                Ok((entries, _)) => {
                    self.metrics.directory_latency(started.elapsed());
                    return Ok(entries.into_iter().map(SearchEntry::construct).collect());
                }
                Err(e) => {
                    last = Unavailable(e.to_string());
                    *self.search[slot].lock().expect("search pool") = None;
                }
            }
        }
        Err(last)
    }

    /// A new connection to the first URL that answers, starting from the
    /// one that answered last.
    async fn connect(&self) -> Result<Ldap, Unavailable> {
        let urls = &self.config.urls;
        let first = self.preferred_url.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..urls.len() {
            let index = (first + i) % urls.len();
            let settings = LdapConnSettings::new().set_conn_timeout(self.config.timeout);
            match LdapConnAsync::with_settings(settings, &urls[index]).await {
                Ok((conn, ldap)) => {
                    ldap3::drive!(conn);
                    if index != first {
                        tracing::warn!(url = %urls[index], "directory failover");
                        self.preferred_url.store(index, Ordering::Relaxed);
                    }
                    return Ok(ldap);
                }
                Err(e) => errors.push(format!("{}: {e}", urls[index])),
            }
        }
        Err(Unavailable(errors.join("; ")))
    }

    fn host_of(&self, entry: &SearchEntry) -> Option<String> {
        self.attr(entry, &self.config.host_attribute)
    }

    /// An attribute's first value; names are case-insensitive and servers
    /// echo their own case.
    fn attr(&self, entry: &SearchEntry, name: &str) -> Option<String> {
        entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .filter(|v| !v.is_empty())
            .cloned()
    }

    fn cached(&self, key: &str) -> Option<Cached> {
        if self.config.cache_ttl.is_zero() {
            return None;
        }
        let cache = self.cache.lock().expect("cache");
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.config.cache_ttl)
            .map(|(_, v)| v.clone())
    }

    fn store(&self, key: String, value: Cached) {
        if self.config.cache_ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().expect("cache");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), value));
    }
}

/// Puts an escaped `value` (and its escaped domain) into a filter template.
pub fn fill(template: &str, value: &str) -> String {
    let domain = domain_of(value).unwrap_or_default();
    template
        .replace("%u", &ldap_escape(value))
        .replace("%d", &ldap_escape(domain))
}

fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

fn first_address_domain(entry: &SearchEntry) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("mailLocalAddress"))
        .and_then(|(_, v)| v.first())
        .and_then(|a| domain_of(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metacharacters_never_change_the_filter() {
        let t = "(&(objectClass=inetLocalMailRecipient)(|(uid=%u)(mailLocalAddress=%u)))";
        assert_eq!(
            fill(t, "*"),
            "(&(objectClass=inetLocalMailRecipient)(|(uid=\\2a)(mailLocalAddress=\\2a)))"
        );
        let f = fill("(uid=%u)", "a)(uid=*");
        assert_eq!(f, "(uid=a\\29\\28uid=\\2a)");
        assert_eq!(fill("(uid=%u)", "x\\y\0"), "(uid=x\\5cy\\00)");
        assert_eq!(fill("(d=%d)", "u@ex*.test"), "(d=ex\\2a.test)");
    }
}
