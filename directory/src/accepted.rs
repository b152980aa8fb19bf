//! Logins the directory accepted lately, for when it cannot answer: a
//! directory that dies (or moves to another node) must not lock out the
//! accounts that were just using their mail. Each is kept as an
//! HMAC-SHA256 of name and password under a key made at start and never
//! written anywhere, so memory holds no password and nothing that checks
//! one outside this process. Used only while the directory is
//! unavailable; a password the directory changed meanwhile still works
//! until the entry is `ttl` old (as Dovecot's auth cache).
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use fulmar_daemon::secret::Secret;
use ring::{hmac, rand::SystemRandom};

/// Past this many names the oldest half is dropped.
const LIMIT: usize = 100_000;

struct Entry<T> {
    at: Instant,
    tag: hmac::Tag,
    value: T,
}

pub struct Accepted<T> {
    key: hmac::Key,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry<T>>>,
}

impl<T: Clone> Accepted<T> {
    /// `ttl` zero keeps nothing.
    pub fn new(ttl: Duration) -> Self {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .expect("the system's random source");
        Self {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// What is signed: the name, a NUL (no name holds one), the password.
    fn message(name: &str, password: &Secret) -> Vec<u8> {
        [name.as_bytes(), &[0], password.expose().as_bytes()].concat()
    }

    /// The directory accepted `password` for `name`; `value` is what the
    /// login resolved to.
    pub fn remember(&self, name: &str, password: &Secret, value: T) {
        if self.ttl.is_zero() {
            return;
        }
        let entry = Entry {
            at: Instant::now(),
            tag: hmac::sign(&self.key, &Self::message(name, password)),
            value,
        };
        let mut entries = self.entries.lock().expect("accepted");
        if entries.len() >= LIMIT && !entries.contains_key(name) {
            let mut ages: Vec<Instant> = entries.values().map(|e| e.at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            entries.retain(|_, e| e.at > cut);
        }
        entries.insert(name.to_string(), entry);
    }

    /// What `name` resolved to when the directory last accepted this very
    /// password, and how long ago, if within `ttl`.
    pub fn recall(&self, name: &str, password: &Secret) -> Option<(T, Duration)> {
        let entries = self.entries.lock().expect("accepted");
        let e = entries.get(name)?;
        let age = e.at.elapsed();
        // hmac::verify compares in equal time.
        let same = hmac::verify(&self.key, &Self::message(name, password), e.tag.as_ref());
        (age < self.ttl && same.is_ok()).then(|| (e.value.clone(), age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_password_within_the_ttl() {
        let a = Accepted::new(Duration::from_secs(60));
        a.remember("ann", &Secret::new("right"), "ann@mail.test");
        assert_eq!(
            a.recall("ann", &Secret::new("right")).map(|(v, _)| v),
            Some("ann@mail.test")
        );
        assert!(a.recall("ann", &Secret::new("wrong")).is_none());
        assert!(a.recall("bob", &Secret::new("right")).is_none());
        // The name and the password are not run together: "an" + "nright".
        assert!(a.recall("an", &Secret::new("nright")).is_none());
        let off = Accepted::new(Duration::ZERO);
        off.remember("ann", &Secret::new("right"), 1);
        assert!(off.recall("ann", &Secret::new("right")).is_none());
        let short = Accepted::new(Duration::from_millis(1));
        short.remember("ann", &Secret::new("right"), 1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.recall("ann", &Secret::new("right")).is_none());
    }
}
