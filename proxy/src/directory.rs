//! The LDAP directory: who an account is, where it lives, and whether its
//! password is right. Every value from a client goes into a filter through
//! RFC 4515 escaping, so a login can never change a filter's shape.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use fulmar_daemon::secret::Secret;
pub use fulmar_directory::Unavailable;
use fulmar_directory::{
    Connection, Entry, Pool,
    accepted::{Accepted, Recalled},
    domain_of, fill, home,
};

use crate::{config::DirectoryConfig, metrics::Metrics};

/// The cache is cleared rather than grown past this many entries.
const CACHE_LIMIT: usize = 100_000;

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

/// A lookup's answer as the cache holds it.
trait Cacheable: Clone {
    fn into_cached(self) -> Cached;
    fn from_cached(c: Cached) -> Option<Self>;
}

impl Cacheable for Option<Account> {
    fn into_cached(self) -> Cached {
        Cached::Account(self)
    }
    fn from_cached(c: Cached) -> Option<Self> {
        match c {
            Cached::Account(a) => Some(a),
            _ => None,
        }
    }
}

impl Cacheable for Recipient {
    fn into_cached(self) -> Cached {
        Cached::Recipient(self)
    }
    fn from_cached(c: Cached) -> Option<Self> {
        match c {
            Cached::Recipient(r) => Some(r),
            _ => None,
        }
    }
}

impl Cacheable for Option<Option<String>> {
    fn into_cached(self) -> Cached {
        Cached::Domain(self)
    }
    fn from_cached(c: Cached) -> Option<Self> {
        match c {
            Cached::Domain(d) => Some(d),
            _ => None,
        }
    }
}

/// The proxy's lookups (with a short cache) over the shared LDAP layer.
pub struct Directory {
    config: DirectoryConfig,
    pool: Pool,
    cache: Mutex<HashMap<String, (Instant, Cached)>>,
    /// Passwords the directory accepted, by DN, for while it is down.
    accepted: Accepted<()>,
    metrics: Arc<Metrics>,
}

impl Directory {
    /// `tls`: how `ldaps://` certificates are checked (from `tls_ca`).
    pub fn new(
        config: DirectoryConfig,
        bind_password: Secret,
        tls: Option<Arc<rustls::ClientConfig>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let pool = Pool::new(Connection {
            urls: config.urls.clone(),
            bind_dn: config.bind_dn.clone(),
            bind_password,
            timeout: config.timeout,
            pool_size: config.pool_size,
            tls,
        });
        Self {
            accepted: Accepted::new(config.outage_ttl),
            config,
            pool,
            cache: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The account a login names (uid or address), if exactly one matches.
    pub async fn account(&self, login: &str) -> Result<Option<Account>, Unavailable> {
        self.lookup(format!("a:{login}"), async {
            let filter = fill(&self.config.user_filter, login);
            let mut entries = self.search_entries(&filter).await?;
            Ok(match entries.len() {
                0 => None,
                1 => {
                    let entry = entries.remove(0);
                    let domain = domain_of(login).or_else(|| first_address_domain(&entry));
                    let host = self.home(&entry, domain.as_deref()).await?;
                    Some(Account {
                        user: entry.first(&self.config.user_attribute),
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
            })
        })
        .await
    }

    /// Routes one SMTP recipient address.
    pub async fn recipient(&self, address: &str) -> Result<Recipient, Unavailable> {
        let key = format!("r:{}", address.to_ascii_lowercase());
        self.lookup(key, async {
            let filter = fill(&self.config.recipient_filter, address);
            let entries = self.search_entries(&filter).await?;
            let domain = domain_of(address);
            Ok(if let Some(entry) = entries.first() {
                if entries.len() > 1 {
                    tracing::warn!(
                        address,
                        matches = entries.len(),
                        "address on several accounts"
                    );
                }
                Recipient::Local {
                    host: self.home(entry, domain.as_deref()).await?,
                    user: entry.first(&self.config.user_attribute),
                }
            } else {
                match &domain {
                    Some(d) if self.domain(d).await?.is_some() => Recipient::UnknownLocal,
                    _ => Recipient::Remote,
                }
            })
        })
        .await
    }

    /// `None`: not our domain; `Some(host)`: ours, with its `mailHost` if any.
    pub async fn domain(&self, domain: &str) -> Result<Option<Option<String>>, Unavailable> {
        let key = format!("d:{}", domain.to_ascii_lowercase());
        self.lookup(key, async {
            let filter = self
                .config
                .domain_filter
                .replace("%d", &fulmar_directory::ldap_escape(domain));
            let entries = self.search_entries(&filter).await?;
            Ok(entries
                .first()
                .map(|e| e.first(&self.config.host_attribute)))
        })
        .await
    }

    /// `key`'s answer: from the cache while fresh (`cache_ttl`), else
    /// from `ask`, stored; and while the directory cannot answer, what it
    /// said within `outage_ttl`.
    async fn lookup<T: Cacheable>(
        &self,
        key: String,
        ask: impl Future<Output = Result<T, Unavailable>>,
    ) -> Result<T, Unavailable> {
        if let Some(v) = self.cached(&key).and_then(T::from_cached) {
            return Ok(v);
        }
        match ask.await {
            Ok(v) => {
                self.store(key, v.clone().into_cached());
                Ok(v)
            }
            Err(e) => self.stale(&key).and_then(T::from_cached).ok_or(e),
        }
    }

    /// The account's home by the one rule: its own host attribute, else
    /// its domain's (looked up only when it names none).
    async fn home(
        &self,
        entry: &Entry,
        domain: Option<&str>,
    ) -> Result<Option<String>, Unavailable> {
        let own = entry.first(&self.config.host_attribute);
        let domain_host = match (&own, domain) {
            (None, Some(d)) => self.domain(d).await?.flatten(),
            _ => None,
        };
        Ok(home(own, || domain_host))
    }

    /// Binds as `dn` with `password`: Ok(true) only on success (an empty
    /// password is refused, since LDAP treats it as an anonymous bind).
    /// While the directory is unavailable, a password it accepted for `dn`
    /// within `outage_ttl` is accepted again, and another one refused.
    pub async fn authenticate(&self, dn: &str, password: &Secret) -> Result<bool, Unavailable> {
        let started = Instant::now();
        let verdict = self.pool.check_password(dn, password).await;
        match &verdict {
            Ok(true) => self.accepted.remember(dn, password, ()),
            Ok(false) => {}
            Err(e) => match self.accepted.recall(dn, password) {
                Recalled::Same((), age) => {
                    tracing::warn!(
                        dn,
                        ?age,
                        "directory unavailable ({e}): a password it accepted lately"
                    );
                    return Ok(true);
                }
                // Counted as the failed guess it is.
                Recalled::Other => return Ok(false),
                Recalled::Unknown => return verdict,
            },
        }
        self.metrics.directory_latency(started.elapsed());
        verdict
    }

    async fn search_entries(&self, filter: &str) -> Result<Vec<Entry>, Unavailable> {
        let started = Instant::now();
        let attrs = [
            self.config.host_attribute.as_str(),
            self.config.user_attribute.as_str(),
            "mailLocalAddress",
        ];
        let entries = self
            .pool
            .search(&self.config.base_dn, filter, &attrs)
            .await?;
        self.metrics.directory_latency(started.elapsed());
        Ok(entries)
    }

    /// What the directory said for `key` within `outage_ttl`: for when it
    /// cannot answer now.
    fn stale(&self, key: &str) -> Option<Cached> {
        let cache = self.cache.lock().expect("cache");
        let (at, value) = cache.get(key)?;
        let age = at.elapsed();
        (age < self.config.outage_ttl).then(|| {
            tracing::warn!(
                key,
                ?age,
                "directory unavailable: answered from what it said before"
            );
            value.clone()
        })
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

    /// Forgets what is cached for `account` (its back-end name or a login
    /// or address naming it): after a kick for an `account move`, the
    /// next login must find the new `mailHost`, not the cached old one.
    pub fn forget(&self, account: &str) {
        let mut cache = self.cache.lock().expect("cache");
        let named = |user: &Option<String>| {
            user.as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(account))
        };
        cache.retain(|key, (_, value)| {
            let by_key = key
                .split_once(':')
                .is_some_and(|(_, k)| k.eq_ignore_ascii_case(account));
            let by_value = match value {
                Cached::Account(Some(a)) => named(&a.user),
                Cached::Recipient(Recipient::Local { user, .. }) => named(user),
                _ => false,
            };
            !(by_key || by_value)
        });
    }

    fn store(&self, key: String, value: Cached) {
        if self.config.cache_ttl.is_zero() && self.config.outage_ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().expect("cache");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), value));
    }
}

fn first_address_domain(entry: &Entry) -> Option<String> {
    domain_of(&entry.first("mailLocalAddress")?)
}
