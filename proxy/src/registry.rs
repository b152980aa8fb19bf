//! Every open session, for the admin endpoint: who (account, client,
//! protocol, back-end, age) and the means to end it. A session registers
//! when it starts and leaves when its handle drops; a kick is a flag the
//! session watches and acts on at its next command boundary.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::Protocol;

/// One session as the admin endpoint lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionInfo {
    /// The id logged on the proxy and the back-end.
    pub id: String,
    pub protocol: Protocol,
    pub client: SocketAddr,
    /// The account, once logged in (submission: once authenticated).
    pub account: Option<String>,
    /// The home instance (`mailHost`) the session is relayed to.
    pub backend: Option<String>,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub age_seconds: u64,
    /// A kick or a drain asked it to end.
    pub kicked: bool,
}

/// Which sessions a kick ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Selector {
    /// Logged in as this account (compared without case).
    Account(String),
    /// Relayed to this back-end (`mailHost`).
    Backend(String),
    All,
}

impl Selector {
    pub fn matches(&self, s: &SessionInfo) -> bool {
        match self {
            Selector::All => true,
            Selector::Account(a) => s
                .account
                .as_ref()
                .is_some_and(|x| x.eq_ignore_ascii_case(a)),
            Selector::Backend(b) => s
                .backend
                .as_ref()
                .is_some_and(|x| x.eq_ignore_ascii_case(b)),
        }
    }
}

struct Entry {
    info: SessionInfo,
    since: Instant,
    kick: watch::Sender<bool>,
}

#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    sessions: Mutex<HashMap<u64, Entry>>,
}

/// A session's place in the registry; leaving it (drop) unregisters.
pub struct Handle {
    registry: Arc<Registry>,
    key: u64,
    kick: watch::Receiver<bool>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("key", &self.key).finish()
    }
}

impl Registry {
    pub fn register(self: &Arc<Self>, id: &str, protocol: Protocol, client: SocketAddr) -> Handle {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let (kick, watch) = watch::channel(false);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let info = SessionInfo {
            id: id.to_string(),
            protocol,
            client,
            account: None,
            backend: None,
            started,
            age_seconds: 0,
            kicked: false,
        };
        let entry = Entry {
            info,
            since: Instant::now(),
            kick,
        };
        self.lock().insert(key, entry);
        Handle {
            registry: self.clone(),
            key,
            kick: watch,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic elsewhere cannot leave the map half-changed: every
        // change is one insert, remove or field store.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let map = self.lock();
        let mut all: Vec<(Instant, SessionInfo)> = map
            .values()
            .map(|e| {
                let mut info = e.info.clone();
                info.age_seconds = e.since.elapsed().as_secs();
                (e.since, info)
            })
            .collect();
        all.sort_by_key(|(since, _)| *since);
        all.into_iter().map(|(_, info)| info).collect()
    }

    /// Asks the sessions `selector` picks to end; returns how many were
    /// asked (sessions already asked are counted again).
    pub fn kick(&self, selector: &Selector) -> usize {
        let mut map = self.lock();
        let mut n = 0;
        for e in map.values_mut().filter(|e| selector.matches(&e.info)) {
            e.info.kicked = true;
            e.kick.send_replace(true);
            n += 1;
        }
        n
    }

    /// Kicks the oldest session not yet asked; false when none is left.
    pub fn kick_one(&self) -> bool {
        let mut map = self.lock();
        let oldest = map
            .values_mut()
            .filter(|e| !e.info.kicked)
            .min_by_key(|e| e.since);
        match oldest {
            Some(e) => {
                e.info.kicked = true;
                e.kick.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Sessions that logged in (have an account), connections that have
    /// not yet, and those not yet asked to end, counted under one lock.
    pub fn counts(&self) -> (usize, usize, usize) {
        let entries = self.lock();
        let (mut logged_in, mut not_kicked) = (0, 0);
        for e in entries.values() {
            logged_in += usize::from(e.info.account.is_some());
            not_kicked += usize::from(!e.info.kicked);
        }
        (logged_in, entries.len() - logged_in, not_kicked)
    }

    /// Sessions not yet asked to end.
    pub fn not_kicked(&self) -> usize {
        self.lock().values().filter(|e| !e.info.kicked).count()
    }
}

impl Handle {
    /// Records the login: the account and the instance it is relayed to.
    pub fn logged_in(&self, account: &str, backend: Option<&str>) {
        if let Some(e) = self.registry.lock().get_mut(&self.key) {
            e.info.account = Some(account.to_string());
            e.info.backend = backend.map(str::to_string);
        }
    }

    pub fn is_kicked(&self) -> bool {
        *self.kick.borrow()
    }

    /// Resolves once the session is asked to end.
    pub async fn kicked(&self) {
        let mut kick = self.kick.clone();
        // The sender lives in the registry as long as this handle does.
        let _ = kick.wait_for(|k| *k).await;
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_register_leave_and_are_kicked_by_selector() {
        let r = Arc::new(Registry::default());
        let client: SocketAddr = "198.18.0.9:4000".parse().unwrap();
        let ann = r.register("a1", Protocol::Imap, client);
        ann.logged_in("Ann@mail.test", Some("mail1"));
        let bob = r.register("b1", Protocol::Pop3, client);
        bob.logged_in("bob@mail.test", Some("mail2"));
        let pre = r.register("p1", Protocol::Imap, client);
        assert_eq!(r.len(), 3);
        assert_eq!(r.kick(&Selector::Account("ann@mail.test".into())), 1);
        ann.kicked().await;
        assert!(!bob.is_kicked() && !pre.is_kicked());
        assert_eq!(r.kick(&Selector::Backend("mail2".into())), 1);
        assert!(bob.is_kicked() && !pre.is_kicked());
        assert!(r.kick_one());
        assert!(pre.is_kicked());
        assert!(!r.kick_one(), "all asked");
        drop(bob);
        assert_eq!(
            r.list().iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["a1", "p1"]
        );
    }
}
