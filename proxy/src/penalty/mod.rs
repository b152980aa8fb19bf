//! Throttling password guesses, per client address and per account, as
//! Dovecot's auth penalty does, but as a schedule rather than a sleep: every
//! login reserves the time at which its password may be checked, so a
//! hundred parallel connections from one address (or fifty addresses
//! against one account) get no more checks than one connection would.
//!
//! Each key (an address, an account) has its failures, the logins in
//! flight, and the earliest time of its next check. The first
//! `free_failures` checks run at once; after that each is spaced from the
//! previous by 1 s, doubling per failure up to `max_delay`. A login that
//! would wait longer than `max_wait` is refused unchecked (no directory
//! work at all). A success clears its account's record (the owner proved
//! the password) but not its address's: one working account must not buy
//! an address fresh guesses. A key quiet for `forget_after` starts afresh.
//!
//! A tier of proxies shares one schedule ([`sync`]): every reservation,
//! failure and success here is sent to the peers, which apply it to their
//! own records, so a guesser spread over N proxies gets one proxy's
//! guesses, not N times as many.
pub mod sync;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Keys tracked per kind before quiet ones are dropped; past it, new keys
/// go untracked (the other kind still throttles).
const MAX_KEYS: usize = 65_536;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyConfig {
    /// Checks per address and per account before any spacing.
    #[serde(default = "default_free")]
    pub free_failures: u32,
    /// The spacing grows from 1 s, doubling, up to this.
    #[serde(default = "default_max_delay", with = "humantime_serde")]
    pub max_delay: Duration,
    /// A login that would wait longer is refused without a check.
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// A key with no failure for this long starts afresh.
    #[serde(default = "default_forget", with = "humantime_serde")]
    pub forget_after: Duration,
    /// Where this proxy hears its peers' penalty events (UDP); with
    /// `peers` and `sync_key_file`.
    #[serde(default)]
    pub sync_address: Option<SocketAddr>,
    /// The other proxies' `sync_address`es.
    #[serde(default)]
    pub peers: Vec<SocketAddr>,
    /// A key shared by the tier (at least 32 characters): events are
    /// authenticated with HMAC-SHA256 under it.
    #[serde(default)]
    pub sync_key_file: Option<PathBuf>,
}

impl PenaltyConfig {
    /// What serde cannot check: sync is all set or not at all.
    pub fn validate(&self) -> Result<(), String> {
        let set = [
            self.sync_address.is_some(),
            !self.peers.is_empty(),
            self.sync_key_file.is_some(),
        ];
        if set.iter().any(|s| *s) && !set.iter().all(|s| *s) {
            return Err(
                "session.auth_penalty: sync_address, peers and sync_key_file go \
                        together"
                    .into(),
            );
        }
        Ok(())
    }
}

impl Default for PenaltyConfig {
    fn default() -> Self {
        Self {
            free_failures: default_free(),
            max_delay: default_max_delay(),
            max_wait: default_max_wait(),
            forget_after: default_forget(),
            sync_address: None,
            peers: Vec::new(),
            sync_key_file: None,
        }
    }
}

fn default_free() -> u32 {
    3
}
fn default_max_delay() -> Duration {
    Duration::from_secs(15)
}
fn default_max_wait() -> Duration {
    Duration::from_secs(60)
}
fn default_forget() -> Duration {
    Duration::from_secs(15 * 60)
}

/// What one proxy tells the others, as it happens here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key's next check is not before this long from now.
    Reserved(Key, Duration),
    /// A check of the key failed.
    Failed(Key),
    /// The account's owner logged in: its failures are forgiven.
    Cleared(Key),
}

/// Events are dropped rather than queued past this (a peer that cannot
/// keep up throttles with what it has).
const EVENT_QUEUE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Address(IpAddr),
    /// The login name, lower case.
    Account(String),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    in_flight: u32,
    next_check: Instant,
    last_failure: Instant,
}

impl Record {
    fn fresh(now: Instant) -> Record {
        Record {
            failures: 0,
            in_flight: 0,
            next_check: now,
            last_failure: now,
        }
    }

    /// A check of the key failed.
    fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
    }

    /// The account's owner proved the password: its failures are forgiven.
    fn cleared(&mut self, now: Instant) {
        self.failures = 0;
        if self.in_flight == 0 {
            self.next_check = now;
        }
    }
}

/// How a checked login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
    /// Not decided (the directory was down): counts neither way.
    Undecided,
}

pub struct Penalties {
    config: PenaltyConfig,
    records: Mutex<HashMap<Key, Record>>,
    /// To the peers ([`sync`]), when the tier shares its schedule.
    events: Option<mpsc::Sender<Event>>,
}

impl Penalties {
    pub fn new(config: PenaltyConfig) -> Self {
        Self {
            config,
            records: Mutex::new(HashMap::new()),
            events: None,
        }
    }

    /// Like `new`, also handing every event to the returned receiver
    /// (what [`sync::run`] sends to the peers).
    pub fn shared(config: PenaltyConfig) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let mut p = Self::new(config);
        p.events = Some(tx);
        (p, rx)
    }

    /// Hands an event to the sync, made only when there is one.
    fn tell(&self, event: impl FnOnce() -> Event) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(event());
        }
    }

    /// A peer's event, applied as if it had happened here (without the
    /// logins in flight, which only the peer can end).
    pub fn apply(&self, event: Event, now: Instant) {
        let mut records = self.records.lock().expect("penalties");
        let key = match &event {
            Event::Reserved(k, _) | Event::Failed(k) | Event::Cleared(k) => k,
        };
        if !records.contains_key(key) {
            if matches!(event, Event::Cleared(_)) || records.len() >= MAX_KEYS {
                return;
            }
            records.insert(key.clone(), Record::fresh(now));
        }
        let r = records.get_mut(key).expect("inserted");
        match event {
            Event::Reserved(_, after) => r.next_check = r.next_check.max(now + after),
            Event::Failed(_) => r.failed(now),
            Event::Cleared(_) => r.cleared(now),
        }
    }

    /// Reserves a check for a login under `keys`: how long to wait before
    /// checking, or None to refuse it unchecked. Every admitted login must
    /// be [`finish`](Self::finish)ed.
    pub fn admit(&self, keys: &[Key], now: Instant) -> Option<Duration> {
        let mut records = self.records.lock().expect("penalties");
        let fresh = Record::fresh(now);
        for key in keys {
            if let Some(r) = records.get_mut(key)
                && r.in_flight == 0
                && now.duration_since(r.last_failure) >= self.config.forget_after
            {
                *r = fresh;
            }
        }
        let slot = keys
            .iter()
            .filter_map(|k| records.get(k))
            .map(|r| r.next_check.max(now))
            .max()
            .unwrap_or(now);
        if slot - now > self.config.max_wait {
            return None;
        }
        for key in keys {
            if !records.contains_key(key) {
                if records.len() >= MAX_KEYS {
                    let forget = self.config.forget_after;
                    records.retain(|_, r| {
                        r.in_flight > 0 || now.duration_since(r.last_failure) < forget
                    });
                }
                if records.len() >= MAX_KEYS {
                    continue;
                }
                records.insert(key.clone(), fresh);
            }
            let r = records.get_mut(key).expect("inserted");
            r.in_flight += 1;
            // Each login in flight counts as a failure until it ends, so
            // parallel logins are spaced as a run of failures would be.
            r.next_check = slot + self.spacing(r.failures + r.in_flight);
            self.tell(|| Event::Reserved(key.clone(), r.next_check - now));
        }
        Some(slot - now)
    }

    /// Records how an admitted login ended.
    pub fn finish(&self, keys: &[Key], outcome: Outcome, now: Instant) {
        let mut records = self.records.lock().expect("penalties");
        for key in keys {
            let Some(r) = records.get_mut(key) else {
                continue;
            };
            r.in_flight = r.in_flight.saturating_sub(1);
            match (outcome, key) {
                (Outcome::Failed, _) => {
                    r.failed(now);
                    self.tell(|| Event::Failed(key.clone()));
                }
                (Outcome::Ok, Key::Account(_)) => {
                    r.cleared(now);
                    self.tell(|| Event::Cleared(key.clone()));
                }
                _ => {}
            }
        }
    }

    /// The gap after the `n`-th check: none within the free ones, then
    /// 1 s doubling up to `max_delay`.
    fn spacing(&self, n: u32) -> Duration {
        let Some(over) = n.checked_sub(self.config.free_failures) else {
            return Duration::ZERO;
        };
        let doubled = Duration::from_secs(1u64 << over.min(20));
        doubled.min(self.config.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn penalties() -> Penalties {
        Penalties::new(PenaltyConfig {
            free_failures: 2,
            max_delay: Duration::from_secs(8),
            max_wait: Duration::from_secs(30),
            forget_after: Duration::from_secs(600),
            ..PenaltyConfig::default()
        })
    }

    fn address(n: u8) -> Key {
        Key::Address(IpAddr::from([198, 18, 0, n]))
    }

    /// Fires `n` logins at once (all admitted before any finishes) and
    /// returns their waits in seconds, `None` for refused ones.
    fn burst(p: &Penalties, keys: &[Key], n: usize, now: Instant) -> Vec<Option<u64>> {
        let waits: Vec<_> = (0..n).map(|_| p.admit(keys, now)).collect();
        for w in &waits {
            if w.is_some() {
                p.finish(keys, Outcome::Failed, now);
            }
        }
        waits.iter().map(|w| w.map(|d| d.as_secs())).collect()
    }

    #[test]
    fn parallel_guesses_are_spaced_like_serial_ones() {
        let p = penalties();
        let keys = [address(1), Key::Account("ann".into())];
        let now = Instant::now();
        // Two free, then spaced 1, 2, 4, 8, 8 s after each other; past
        // 30 s of waiting, refused.
        assert_eq!(
            burst(&p, &keys, 9, now),
            [
                Some(0),
                Some(0),
                Some(1),
                Some(3),
                Some(7),
                Some(15),
                Some(23),
                None,
                None
            ]
        );
    }

    #[test]
    fn an_account_is_throttled_across_addresses() {
        let p = penalties();
        let now = Instant::now();
        let waits: Vec<_> = (0..6)
            .map(|i| {
                let keys = [address(i), Key::Account("ann".into())];
                let w = p.admit(&keys, now).map(|d| d.as_secs());
                p.finish(&keys, Outcome::Failed, now);
                w
            })
            .collect();
        assert_eq!(
            waits,
            [Some(0), Some(0), Some(1), Some(3), Some(7), Some(15)]
        );
        // Another account from a fresh address is not slowed.
        let other = [address(99), Key::Account("bob".into())];
        assert_eq!(p.admit(&other, now), Some(Duration::ZERO));
    }

    #[test]
    fn success_clears_the_account_not_the_address() {
        let p = penalties();
        let now = Instant::now();
        let keys = [address(1), Key::Account("ann".into())];
        burst(&p, &keys, 4, now);
        let later = now + Duration::from_secs(60);
        assert_eq!(p.admit(&keys, later), Some(Duration::ZERO));
        p.finish(&keys, Outcome::Ok, later);
        // The account is clear; the address still pays for its failures.
        let fresh = [address(2), Key::Account("ann".into())];
        assert_eq!(p.admit(&fresh, later), Some(Duration::ZERO));
        p.finish(&fresh, Outcome::Ok, later);
        let same = [address(1), Key::Account("bob".into())];
        assert!(p.admit(&same, later).unwrap() > Duration::ZERO);
    }

    /// Guesses alternating between two proxies whose events reach each
    /// other get the schedule of one proxy; without the events, twice the
    /// free checks at once.
    #[test]
    fn a_tier_shares_one_schedule() {
        let now = Instant::now();
        let keys = [address(1), Key::Account("ann".into())];
        let guess = |p: &Penalties, peer: &Penalties, rx: &mut mpsc::Receiver<Event>| {
            let w = p.admit(&keys, now).map(|d| d.as_secs());
            p.finish(&keys, Outcome::Failed, now);
            while let Ok(e) = rx.try_recv() {
                peer.apply(e, now);
            }
            w
        };
        let ((a, mut a_rx), (b, mut b_rx)) = (
            Penalties::shared(penalties().config),
            Penalties::shared(penalties().config),
        );
        let waits: Vec<_> = (0..6)
            .map(|i| match i % 2 {
                0 => guess(&a, &b, &mut a_rx),
                _ => guess(&b, &a, &mut b_rx),
            })
            .collect();
        assert_eq!(
            waits,
            [Some(0), Some(0), Some(1), Some(3), Some(7), Some(15)]
        );
        // Two proxies that do not talk: each gives its own free checks.
        let (c, d) = (penalties(), penalties());
        let unshared: Vec<_> = (0..4)
            .map(|i| {
                let p = if i % 2 == 0 { &c } else { &d };
                let w = p.admit(&keys, now).map(|d| d.as_secs());
                p.finish(&keys, Outcome::Failed, now);
                w
            })
            .collect();
        assert_eq!(unshared, [Some(0), Some(0), Some(0), Some(0)]);
        // The owner's login on one proxy clears the account on the other.
        let later = now + Duration::from_secs(120);
        let owner = [address(2), Key::Account("ann".into())];
        a.admit(&owner, later);
        a.finish(&owner, Outcome::Ok, later);
        while let Ok(e) = a_rx.try_recv() {
            b.apply(e, later);
        }
        // Uncleared, ann's six failures would space b's second check 8 s.
        assert_eq!(b.admit(&owner, later), Some(Duration::ZERO));
        assert_eq!(b.admit(&owner, later), Some(Duration::ZERO));
    }

    #[test]
    fn sync_settings_go_together() {
        assert!(PenaltyConfig::default().validate().is_ok());
        let half = PenaltyConfig {
            sync_address: Some("198.18.1.11:7072".parse().unwrap()),
            peers: vec!["198.18.1.12:7072".parse().unwrap()],
            ..PenaltyConfig::default()
        };
        assert!(half.validate().unwrap_err().contains("sync_key_file"));
        let whole = PenaltyConfig {
            sync_key_file: Some("/etc/fulmar/penalty.key".into()),
            ..half
        };
        assert!(whole.validate().is_ok());
    }

    #[test]
    fn quiet_keys_are_forgotten() {
        let p = penalties();
        let now = Instant::now();
        let keys = [address(1)];
        burst(&p, &keys, 8, now);
        assert_eq!(p.admit(&keys, now), None);
        let much_later = now + Duration::from_secs(3600);
        assert_eq!(p.admit(&keys, much_later), Some(Duration::ZERO));
    }
}
