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

/// What a password given while the directory is down amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recalled<T> {
    /// The directory accepted this very password this long ago: what the
    /// login resolved to then.
    Same(T, Duration),
    /// It accepted another one lately: a failed guess, to be counted as one
    /// (else a directory outage would be a free round of guessing).
    Other,
    /// Nothing known of the name within the ttl.
    Unknown,
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

    /// What the directory last accepted for `name`, against `password`.
    pub fn recall(&self, name: &str, password: &Secret) -> Recalled<T> {
        let entries = self.entries.lock().expect("accepted");
        let Some(e) = entries.get(name).filter(|e| e.at.elapsed() < self.ttl) else {
            return Recalled::Unknown;
        };
        // hmac::verify compares in equal time.
        match hmac::verify(&self.key, &Self::message(name, password), e.tag.as_ref()) {
            Ok(()) => Recalled::Same(e.value.clone(), e.at.elapsed()),
            Err(_) => Recalled::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_password_within_the_ttl() {
        let a = Accepted::new(Duration::from_secs(60));
        a.remember("ann", &Secret::new("right"), "ann@mail.test");
        assert!(matches!(
            a.recall("ann", &Secret::new("right")),
            Recalled::Same("ann@mail.test", _)
        ));
        assert_eq!(a.recall("ann", &Secret::new("wrong")), Recalled::Other);
        assert_eq!(a.recall("bob", &Secret::new("right")), Recalled::Unknown);
        // The name and the password are not run together: "an" + "nright".
        assert_eq!(a.recall("an", &Secret::new("nright")), Recalled::Unknown);
        let off = Accepted::new(Duration::ZERO);
        off.remember("ann", &Secret::new("right"), 1);
        assert_eq!(off.recall("ann", &Secret::new("right")), Recalled::Unknown);
        let short = Accepted::new(Duration::from_millis(1));
        short.remember("ann", &Secret::new("right"), 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            short.recall("ann", &Secret::new("right")),
            Recalled::Unknown
        );
    }
}
