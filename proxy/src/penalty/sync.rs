//! The tier's shared schedule on the wire: each proxy sends its penalty
//! events to every peer in UDP datagrams, one event each, authenticated by
//! HMAC-SHA256 under a key the tier shares. Loss only weakens the
//! throttle towards one proxy's (each still keeps its own schedule);
//! nothing is retried or acknowledged, so a dead peer costs nothing.
//!
//! Datagram (version 1), big-endian:
//! `version u8 | kind u8 | sent_unix_ms u64 | after_ms u32 | key_kind u8 |
//! key_len u8 | key | hmac[32]`. kind: 1 reserved, 2 failed, 3 cleared;
//! key_kind: 4 an IPv4 address, 6 an IPv6 address, 1 an account.
//! A datagram older than [`MAX_AGE`] (or as much in the future) is
//! dropped, which bounds replays to that window; a replay within it only
//! repeats a penalty.
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use fulmar_daemon::secret::Secret;
use ring::hmac;
use tokio::{net::UdpSocket, sync::mpsc};

use super::{Event, Key, Penalties};
use crate::metrics::Metrics;

const VERSION: u8 = 1;
const TAG: usize = 32;
const HEADER: usize = 1 + 1 + 8 + 4 + 1 + 1;
/// Longer account names are not sent (they are not real logins).
const MAX_KEY: usize = 255;
/// Events older (or newer) than this are dropped: the replay window.
pub const MAX_AGE: Duration = Duration::from_secs(10);
/// A shared key shorter than this is refused.
pub const MIN_KEY: usize = 32;

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("malformed")]
    Malformed,
    #[error("bad tag")]
    Tag,
    #[error("unknown version")]
    Version,
    #[error("too old or in the future")]
    Stale,
}

pub struct Codec {
    key: hmac::Key,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Codec {
    pub fn new(secret: &[u8]) -> Codec {
        Codec {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Reads the shared key (its first line) from `path`.
    pub fn load(path: &Path) -> Result<Codec, String> {
        let secret = Secret::from_file(path).map_err(|e| e.to_string())?;
        if secret.expose().len() < MIN_KEY {
            return Err(format!(
                "{}: the penalty sync key must be at least {MIN_KEY} characters",
                path.display()
            ));
        }
        Ok(Codec::new(secret.expose().as_bytes()))
    }

    /// The datagram for `event`, None for a key too long to send.
    pub fn encode(&self, event: &Event, sent: SystemTime) -> Option<Vec<u8>> {
        let (kind, key, after) = match event {
            Event::Reserved(k, after) => (1u8, k, *after),
            Event::Failed(k) => (2, k, Duration::ZERO),
            Event::Cleared(k) => (3, k, Duration::ZERO),
        };
        let (key_kind, bytes) = match key {
            Key::Address(IpAddr::V4(a)) => (4u8, a.octets().to_vec()),
            Key::Address(IpAddr::V6(a)) => (6, a.octets().to_vec()),
            Key::Account(name) => (1, name.as_bytes().to_vec()),
        };
        if bytes.len() > MAX_KEY {
            return None;
        }
        let mut out = Vec::with_capacity(HEADER + bytes.len() + TAG);
        out.push(VERSION);
        out.push(kind);
        out.extend_from_slice(&unix_ms(sent).to_be_bytes());
        let after_ms = u32::try_from(after.as_millis()).unwrap_or(u32::MAX);
        out.extend_from_slice(&after_ms.to_be_bytes());
        out.push(key_kind);
        out.push(bytes.len() as u8);
        out.extend_from_slice(&bytes);
        let tag = hmac::sign(&self.key, &out);
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// The event in a datagram received at `now`, checked.
    pub fn decode(&self, datagram: &[u8], now: SystemTime) -> Result<Event, Rejected> {
        if datagram.len() < HEADER + TAG {
            return Err(Rejected::Malformed);
        }
        let (body, tag) = datagram.split_at(datagram.len() - TAG);
        hmac::verify(&self.key, body, tag).map_err(|_| Rejected::Tag)?;
        if body[0] != VERSION {
            return Err(Rejected::Version);
        }
        let sent = u64::from_be_bytes(body[2..10].try_into().expect("8 bytes"));
        let at = unix_ms(now);
        if at.abs_diff(sent) > MAX_AGE.as_millis() as u64 {
            return Err(Rejected::Stale);
        }
        let after = u32::from_be_bytes(body[10..14].try_into().expect("4 bytes"));
        let len = usize::from(body[15]);
        let bytes = body.get(HEADER..).filter(|b| b.len() == len);
        let key = match (body[14], bytes) {
            (4, Some(b)) => Key::Address(IpAddr::from(
                <[u8; 4]>::try_from(b).map_err(|_| Rejected::Malformed)?,
            )),
            (6, Some(b)) => Key::Address(IpAddr::from(
                <[u8; 16]>::try_from(b).map_err(|_| Rejected::Malformed)?,
            )),
            (1, Some(b)) => Key::Account(
                std::str::from_utf8(b)
                    .map_err(|_| Rejected::Malformed)?
                    .to_string(),
            ),
            _ => return Err(Rejected::Malformed),
        };
        match body[1] {
            1 => Ok(Event::Reserved(
                key,
                Duration::from_millis(u64::from(after)),
            )),
            2 => Ok(Event::Failed(key)),
            3 => Ok(Event::Cleared(key)),
            _ => Err(Rejected::Malformed),
        }
    }
}

/// Counts for the metrics: events sent, received and applied, dropped.
#[derive(Default)]
pub struct SyncCounts {
    pub sent: AtomicU64,
    pub applied: AtomicU64,
    pub rejected: AtomicU64,
}

/// Sends this proxy's events to `peers` and applies theirs, on `socket`,
/// until the event channel closes.
pub async fn run(
    socket: UdpSocket,
    peers: Vec<SocketAddr>,
    codec: Codec,
    penalties: Arc<Penalties>,
    mut events: mpsc::Receiver<Event>,
    metrics: Arc<Metrics>,
) {
    let socket = Arc::new(socket);
    let codec = Arc::new(codec);
    let receiver = {
        let (socket, codec, metrics) = (socket.clone(), codec.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (n, from) = match socket.recv_from(&mut buf).await {
                    Ok(got) => got,
                    Err(e) => {
                        // Not a busy loop on a socket that keeps failing.
                        tracing::warn!("penalty sync: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match codec.decode(&buf[..n], SystemTime::now()) {
                    Ok(event) => {
                        penalties.apply(event, Instant::now());
                        metrics.penalty_sync.applied.fetch_add(1, Relaxed);
                    }
                    Err(why) => {
                        metrics.penalty_sync.rejected.fetch_add(1, Relaxed);
                        tracing::warn!(%from, "penalty sync datagram dropped: {why}");
                    }
                }
            }
        })
    };
    while let Some(event) = events.recv().await {
        let Some(datagram) = codec.encode(&event, SystemTime::now()) else {
            continue;
        };
        for peer in &peers {
            if socket.send_to(&datagram, peer).await.is_ok() {
                metrics.penalty_sync.sent.fetch_add(1, Relaxed);
            }
        }
    }
    receiver.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Codec {
        Codec::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn events_round_trip() {
        let now = SystemTime::now();
        for event in [
            Event::Reserved(
                Key::Address("198.18.5.1".parse().unwrap()),
                Duration::from_millis(1500),
            ),
            Event::Failed(Key::Address("2001:db8::7".parse().unwrap())),
            Event::Cleared(Key::Account("ann@mail.test".into())),
        ] {
            let d = codec().encode(&event, now).unwrap();
            assert_eq!(codec().decode(&d, now), Ok(event));
        }
    }

    #[test]
    fn forged_stale_and_truncated_datagrams_are_dropped() {
        let now = SystemTime::now();
        let event = Event::Failed(Key::Account("ann".into()));
        let good = codec().encode(&event, now).unwrap();
        let other = Codec::new(b"another key of at least 32 bytes!");
        assert_eq!(other.decode(&good, now), Err(Rejected::Tag));
        let mut flipped = good.clone();
        flipped[HEADER] ^= 1;
        assert_eq!(codec().decode(&flipped, now), Err(Rejected::Tag));
        let later = now + MAX_AGE + Duration::from_secs(1);
        assert_eq!(codec().decode(&good, later), Err(Rejected::Stale));
        for n in 0..good.len() {
            assert!(codec().decode(&good[..n], now).is_err(), "{n} bytes");
        }
        // A well-signed datagram whose key length lies is still refused.
        let mut lying = good[..good.len() - TAG].to_vec();
        lying[15] = 200;
        let tag = hmac::sign(&codec().key, &lying);
        lying.extend_from_slice(tag.as_ref());
        assert_eq!(codec().decode(&lying, now), Err(Rejected::Malformed));
        let long = Event::Failed(Key::Account("x".repeat(256)));
        assert_eq!(codec().encode(&long, now), None);
    }
}
