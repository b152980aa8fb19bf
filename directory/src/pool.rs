//! Connections to the directory: searches run on a few shared connections
//! bound as the service DN; a user's password is checked by a bind on a
//! separate connection (one bind at a time on each). Every connect tries
//! the URLs in order, starting from the one that answered last, and every
//! operation has a timeout. An operation that waits out its timeout, or
//! finds no URL answering, trips the [`Breaker`]: the rest fail at once
//! until a background probe binds again.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use fulmar_daemon::secret::Secret;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::{
    Entry, INVALID_CREDENTIALS,
    breaker::{self, Breaker},
};

/// The directory could not answer: callers answer with a temporary failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("directory unavailable: {0}")]
pub struct Unavailable(pub String);

/// Where the directory is and who the service binds as.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Tried in order; the next one when a server is down.
    pub urls: Vec<String>,
    pub bind_dn: String,
    pub bind_password: Secret,
    /// For connecting and for each operation.
    pub timeout: Duration,
    /// Connections kept open per pool (searches; binds).
    pub pool_size: usize,
    /// How `ldaps://` URLs check the server's certificate (the configured
    /// CA, `fulmar_daemon::tls_client_config`); None: the system's roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What every tier checks of the directory URLs its config names: at
/// least one, each `ldap://` or `ldaps://`, and a CA (`has_ca`) only where
/// one of them is `ldaps://`.
pub fn check_urls(urls: &[String], has_ca: bool) -> Result<(), String> {
    if urls.is_empty() {
        return Err("directory.urls is empty".into());
    }
    if let Some(url) = urls
        .iter()
        .find(|u| !(u.starts_with("ldap://") || u.starts_with("ldaps://")))
    {
        return Err(format!(
            "directory url {url:?}: expected ldap:// or ldaps://"
        ));
    }
    if has_ca && !urls.iter().any(|u| u.starts_with("ldaps://")) {
        return Err("directory.tls_ca is set but no url is ldaps://".into());
    }
    Ok(())
}

pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    /// Shared, multiplexed search connections bound as the service DN.
    search: Vec<Mutex<Option<Ldap>>>,
    next_search: AtomicUsize,
    /// Idle connections for user binds.
    bind_idle: Mutex<Vec<Ldap>>,
    /// The URL that answered last; connecting starts there.
    preferred_url: AtomicUsize,
    breaker: Breaker,
}

impl Pool {
    pub fn new(connection: Connection) -> Self {
        let size = connection.pool_size.max(1);
        Self {
            inner: Arc::new(Inner {
                search: (0..size).map(|_| Mutex::new(None)).collect(),
                connection,
                next_search: AtomicUsize::new(0),
                bind_idle: Mutex::new(Vec::new()),
                preferred_url: AtomicUsize::new(0),
                breaker: Breaker::default(),
            }),
        }
    }

    pub fn connection(&self) -> &Connection {
        &self.inner.connection
    }

    /// A subtree search under `base`. A shared connection may have died
    /// since its last use (a restarted server closed it): one retry on a
    /// fresh one before the directory counts as down. One that waited out
    /// its timeout is not retried: the directory counts as down at once.
    pub async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<Entry>, Unavailable> {
        let inner = &self.inner;
        inner.breaker.gate()?;
        let timeout = inner.connection.timeout;
        let slot = inner.next_search.fetch_add(1, Ordering::Relaxed) % inner.search.len();
        let mut last = String::new();
        for attempt in 0..2 {
            let pooled = inner.search[slot].lock().expect("search pool").clone();
            let mut ldap = match pooled {
                Some(l) if attempt == 0 => l,
                _ => {
                    let l = inner.bound_connection(timeout).await?;
                    *inner.search[slot].lock().expect("search pool") = Some(l.clone());
                    l
                }
            };
            let result = ldap
                .with_timeout(timeout)
                .search(base, Scope::Subtree, filter, attrs.to_vec())
                .await;
            match result.and_then(|r| r.success()) {
                Ok((entries, _)) => {
                    return Ok(entries
                        .into_iter()
                        .map(|e| SearchEntry::construct(e).into())
                        .collect());
                }
                // The directory answered: with an error, not with silence.
                Err(e) if !breaker::no_answer(&e) => return Err(Unavailable(e.to_string())),
                Err(e) => {
                    *inner.search[slot].lock().expect("search pool") = None;
                    if breaker::timed_out(&e) {
                        return Err(inner.down(e.to_string()));
                    }
                    last = e.to_string();
                }
            }
        }
        Err(inner.down(last))
    }

    /// The bind check: binds as `dn` with `password`; Ok(true) only on
    /// success. An empty DN or password is refused here, since LDAP treats
    /// it as an anonymous bind, which succeeds.
    pub async fn check_password(&self, dn: &str, password: &Secret) -> Result<bool, Unavailable> {
        if password.is_empty() || dn.is_empty() {
            return Ok(false);
        }
        let inner = &self.inner;
        inner.breaker.gate()?;
        let timeout = inner.connection.timeout;
        let mut last = String::new();
        for attempt in 0..2 {
            // A kept connection may have died with the server (a restart
            // kills them all): the retry is on a fresh one.
            let pooled = match attempt {
                0 => inner.bind_idle.lock().expect("bind pool").pop(),
                _ => None,
            };
            let mut ldap = match pooled {
                Some(l) => l,
                None => inner.connect(timeout).await?,
            };
            match ldap
                .with_timeout(timeout)
                .simple_bind(dn, password.expose())
                .await
            {
                Ok(result) => {
                    let mut idle = inner.bind_idle.lock().expect("bind pool");
                    if idle.len() < inner.search.len() {
                        idle.push(ldap);
                    }
                    return match result.rc {
                        0 => Ok(true),
                        INVALID_CREDENTIALS => Ok(false),
                        rc => Err(Unavailable(format!("bind answered {rc}: {}", result.text))),
                    };
                }
                Err(e) => {
                    // Its siblings are most likely dead too.
                    inner.bind_idle.lock().expect("bind pool").clear();
                    if breaker::timed_out(&e) {
                        return Err(inner.down(e.to_string()));
                    }
                    last = e.to_string();
                }
            }
        }
        Err(inner.down(last))
    }

    /// A new connection bound as the service DN (its own, unpooled: for
    /// writers that hold it for a whole operation).
    pub async fn bound_connection(&self) -> Result<Ldap, Unavailable> {
        self.inner.breaker.gate()?;
        self.inner
            .bound_connection(self.inner.connection.timeout)
            .await
    }
}

impl Inner {
    /// A new connection bound as the service DN, each step within `timeout`.
    async fn bound_connection(self: &Arc<Self>, timeout: Duration) -> Result<Ldap, Unavailable> {
        let c = &self.connection;
        let mut ldap = self.connect(timeout).await?;
        let bound = ldap
            .with_timeout(timeout)
            .simple_bind(&c.bind_dn, c.bind_password.expose())
            .await
            .map_err(|e| self.down(e.to_string()))?;
        if bound.rc != 0 {
            return Err(Unavailable(format!(
                "service bind as {} answered {}: {}",
                c.bind_dn, bound.rc, bound.text
            )));
        }
        Ok(ldap)
    }

    /// A new connection to the first URL that answers within `timeout`,
    /// starting from the one that answered last. None answering trips the
    /// breaker.
    async fn connect(self: &Arc<Self>, timeout: Duration) -> Result<Ldap, Unavailable> {
        let urls = &self.connection.urls;
        if urls.is_empty() {
            return Err(Unavailable("no directory URL configured".into()));
        }
        let first = self.preferred_url.load(Ordering::Relaxed) % urls.len();
        let mut errors = Vec::new();
        for i in 0..urls.len() {
            let index = (first + i) % urls.len();
            let mut settings = LdapConnSettings::new().set_conn_timeout(timeout);
            if let Some(tls) = &self.connection.tls {
                settings = settings.set_config(tls.clone());
            }
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
        Err(self.down(errors.join("; ")))
    }

    /// The directory did not answer (`why`): later operations fail at once
    /// until the probe reconnects. Kept connections are dropped: they
    /// reach the server that stopped answering.
    fn down(self: &Arc<Self>, why: String) -> Unavailable {
        for slot in &self.search {
            *slot.lock().expect("search pool") = None;
        }
        self.bind_idle.lock().expect("bind pool").clear();
        if self.breaker.trip(&why) {
            self.probe();
        }
        Unavailable(why)
    }

    /// Reconnects in the background, each attempt within PROBE_ATTEMPT,
    /// until one binds; its connection serves the next search. Stops when
    /// the pool is dropped.
    fn probe(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.breaker.reset();
            return;
        };
        let pool = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let Some(inner) = pool.upgrade() else { return };
                let within = breaker::PROBE_ATTEMPT.min(inner.connection.timeout);
                if let Ok(ldap) = inner.bound_connection(within).await {
                    *inner.search[0].lock().expect("search pool") = Some(ldap);
                    inner.breaker.close();
                    return;
                }
                drop(inner);
                tokio::time::sleep(breaker::PROBE_PAUSE).await;
            }
        });
    }
}
