//! Mod-sequences (CONDSTORE, RFC 7162): each message's MODSEQ, and the
//! mailbox's HIGHESTMODSEQ, which only grows. A maildir keeps flags in
//! file names, changed by whoever renames them; so the sync that lists a
//! mailbox compares each message's flags with those its MODSEQ was given
//! for, and a message that is new or whose flags differ gets the next
//! value. An expunge also takes one, so HIGHESTMODSEQ moves whenever the
//! mailbox does. Kept in `modseqs` (`fulmar-modseqs 1 HIGHEST FORGOTTEN`,
//! then `UID MODSEQ :FLAGS` per message, then `-FIRST:LAST MODSEQ` per run
//! of expunged UIDs), replaced whole by a rename.
//!
//! QRESYNC (RFC 7162 3.2) asks which UIDs vanished since a mod-sequence:
//! the expunged runs answer it, the last `KEPT_GONE` of them. FORGOTTEN is
//! the highest value of those dropped (or, in a file written before runs
//! were kept, its HIGHEST): a question from before it is answered with
//! every UID that is not there now, which the RFC allows (a client deletes
//! what it still has of them, nothing more).
//!
//! A value once given must never be given again, not even after a power
//! cut or a failover took the last writes of the file. Syncing it on
//! every flag change would double a STORE's cost (the imaplib stress
//! test took 53 s, then 113 s); instead a new value is at least the clock
//! in microseconds, so the values given after a lost write are above
//! every value given before it, as long as the nodes' clocks agree within
//! the time a failover takes (NTP keeps them within milliseconds).
use std::{
    collections::VecDeque,
    fs, io,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{Message, StoreError, io_at};

const MODSEQS: &str = "modseqs";
/// Mailboxes whose values are kept in memory (the busiest: every session
/// on one syncs it after each change).
const CACHED: usize = 64;
/// And their messages all (an entry is about 60 bytes: ~12 MB).
const CACHED_MESSAGES: usize = 200_000;

/// The values of the last mailboxes synced, as last written: one process
/// owns the volume (`lock`), so its own writes are all there is to read.
#[derive(Default)]
pub(super) struct Cache(Mutex<VecDeque<(PathBuf, Modseqs)>>);

impl Cache {
    /// After a mailbox was deleted or renamed: a directory name may now
    /// be another mailbox's, whose values are in its file.
    pub(super) fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
const MAGIC: &str = "fulmar-modseqs 1";
/// Runs of expunged UIDs kept: each a line in a file rewritten on every
/// change, so a bound keeps a STORE cheap however much was expunged.
const KEPT_GONE: usize = 1024;

#[derive(Debug, Default)]
struct Modseqs {
    highest: u64,
    /// Expunges at or below this value are no longer known one by one.
    forgotten: u64,
    /// (UID, MODSEQ, the flags it was given for), by UID.
    entries: Vec<(u32, u64, String)>,
    /// (first UID, last UID, MODSEQ of their expunge), oldest first.
    gone: Vec<(u32, u32, u64)>,
}

/// What vanished since a mod-sequence.
#[derive(Debug, PartialEq, Eq)]
pub enum Vanished {
    /// Exactly these UIDs (ascending).
    Known(Vec<u32>),
    /// Expunges that long ago are forgotten: every UID not listed now.
    Forgotten,
}

fn parse(text: &str) -> Option<Modseqs> {
    let mut lines = text.lines();
    let mut head = lines.next()?.strip_prefix(MAGIC)?.split_whitespace();
    let highest: u64 = head.next()?.parse().ok()?;
    let forgotten = match head.next() {
        Some(f) => f.parse().ok().filter(|f| *f <= highest)?,
        None => highest,
    };
    let mut entries: Vec<(u32, u64, String)> = Vec::new();
    let mut gone = Vec::new();
    for line in lines {
        if let Some(run) = line.strip_prefix('-') {
            let (uids, modseq) = run.split_once(' ')?;
            let (first, last) = uids.split_once(':').unwrap_or((uids, uids));
            let (first, last): (u32, u32) = (first.parse().ok()?, last.parse().ok()?);
            let modseq: u64 = modseq.parse().ok()?;
            if first > last || modseq > highest {
                return None;
            }
            gone.push((first, last, modseq));
            continue;
        }
        let mut words = line.splitn(3, ' ');
        let uid: u32 = words.next()?.parse().ok()?;
        let modseq: u64 = words.next()?.parse().ok()?;
        let flags = words.next()?.strip_prefix(':')?;
        let ordered = entries.last().is_none_or(|e| e.0 < uid);
        if modseq == 0 || modseq > highest || !ordered {
            return None;
        }
        entries.push((uid, modseq, flags.to_string()));
    }
    Some(Modseqs {
        highest,
        forgotten,
        entries,
        gone,
    })
}

fn render(m: &Modseqs) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(32 + m.entries.len() * 32);
    let _ = writeln!(text, "{MAGIC} {} {}", m.highest, m.forgotten);
    for (uid, modseq, flags) in &m.entries {
        let _ = writeln!(text, "{uid} {modseq} :{flags}");
    }
    for (first, last, modseq) in &m.gone {
        let _ = writeln!(text, "-{first}:{last} {modseq}");
    }
    text
}

/// Gives each of `messages` (by UID, as listed now) its MODSEQ and
/// returns HIGHESTMODSEQ. The caller holds the mailbox's lock.
pub(super) fn update(
    cache: &Cache,
    dir: &Path,
    messages: &mut [Message],
) -> Result<u64, StoreError> {
    let mut cached = cache.0.lock().unwrap_or_else(|e| e.into_inner());
    let mut kept = match cached.iter().position(|(d, _)| d == dir) {
        Some(i) => cached.remove(i).expect("present").1,
        None => read(dir)?,
    };
    let result = apply(dir, &mut kept, messages);
    // Kept also after a failed write: the values were given.
    cached.push_front((dir.to_path_buf(), kept));
    super::index::bound(&mut cached, CACHED, CACHED_MESSAGES, |(_, m)| {
        m.entries.len()
    });
    result
}

fn clock_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn read(dir: &Path) -> Result<Modseqs, StoreError> {
    let path = dir.join(MODSEQS);
    Ok(match fs::read_to_string(&path) {
        Ok(text) => parse(&text).unwrap_or_else(|| {
            // Replaced whole, so only outside damage gets here: every
            // message counts as changed (and takes a value above the
            // clock, so above any given before). What was expunged
            // before now is not known any more.
            tracing::warn!(path = %path.display(), "unreadable mod-sequences, starting over");
            Modseqs {
                forgotten: clock_micros(),
                ..Modseqs::default()
            }
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Modseqs::default(),
        Err(e) => return Err(io_at(&path)(e)),
    })
}

fn apply(dir: &Path, kept: &mut Modseqs, messages: &mut [Message]) -> Result<u64, StoreError> {
    // Most syncs find nothing changed: one pass, nothing allocated.
    let same = kept.entries.len() == messages.len()
        && kept
            .entries
            .iter()
            .zip(messages.iter())
            .all(|(e, m)| e.0 == m.uid && e.2 == m.flags);
    if same {
        for (e, m) in kept.entries.iter().zip(messages.iter_mut()) {
            m.modseq = e.1;
        }
        // An empty mailbox still answers a positive HIGHESTMODSEQ.
        return Ok(kept.highest.max(1));
    }
    let now = clock_micros();
    let next = |highest: &mut u64| {
        *highest = (*highest + 1).max(now);
        *highest
    };
    // Both by UID: one walk, entries changed in place; UIDs not listed
    // any more are collected and dropped after.
    let (entries, highest) = (&mut kept.entries, &mut kept.highest);
    let (mut i, mut expunged, mut added) = (0, Vec::new(), Vec::new());
    for m in messages.iter_mut() {
        while i < entries.len() && entries[i].0 < m.uid {
            expunged.push(entries[i].0);
            i += 1;
        }
        match entries.get_mut(i).filter(|e| e.0 == m.uid) {
            Some(e) => {
                if e.2 != m.flags {
                    e.1 = next(highest);
                    e.2.clone_from(&m.flags);
                }
                m.modseq = e.1;
                i += 1;
            }
            None => {
                m.modseq = next(highest);
                added.push((m.uid, m.modseq, m.flags.clone()));
            }
        }
    }
    expunged.extend(entries[i..].iter().map(|e| e.0));
    if !expunged.is_empty() {
        entries.retain(|e| expunged.binary_search(&e.0).is_err());
        let modseq = next(highest);
        remember_gone(&mut kept.gone, &mut kept.forgotten, &expunged, modseq);
    }
    if !added.is_empty() {
        entries.extend(added);
        entries.sort_unstable_by_key(|e| e.0);
    }
    let (path, tmp) = (dir.join(MODSEQS), dir.join(format!("{MODSEQS}.tmp")));
    fs::write(&tmp, render(kept))
        .and_then(|()| fs::rename(&tmp, &path))
        .map_err(io_at(&path))?;
    Ok(kept.highest.max(1))
}

/// Adds the runs of `uids` (ascending), expunged at `modseq`, forgetting
/// the oldest past `KEPT_GONE`.
fn remember_gone(gone: &mut Vec<(u32, u32, u64)>, forgotten: &mut u64, uids: &[u32], modseq: u64) {
    for &uid in uids {
        match gone.last_mut() {
            Some(run) if run.2 == modseq && run.1 + 1 == uid => run.1 = uid,
            _ => gone.push((uid, uid, modseq)),
        }
    }
    if gone.len() > KEPT_GONE {
        let dropped = gone.len() - KEPT_GONE;
        let last = gone.drain(..dropped).map(|r| r.2).max();
        *forgotten = (*forgotten).max(last.unwrap_or(0));
    }
}

/// The UIDs expunged after `since`, the caller holding the mailbox's lock.
pub(super) fn vanished(cache: &Cache, dir: &Path, since: u64) -> Result<Vanished, StoreError> {
    let cached = cache.0.lock().unwrap_or_else(|e| e.into_inner());
    let read;
    let kept = match cached.iter().find(|(d, _)| d == dir) {
        Some((_, k)) => k,
        None => {
            read = self::read(dir)?;
            &read
        }
    };
    if since < kept.forgotten {
        return Ok(Vanished::Forgotten);
    }
    let mut uids: Vec<u32> = kept
        .gone
        .iter()
        .filter(|r| r.2 > since)
        .flat_map(|r| r.0..=r.1)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    Ok(Vanished::Known(uids))
}

impl super::Store {
    /// The UIDs of a mailbox expunged after mod-sequence `since` (QRESYNC),
    /// and the last UID given: as of now, a sync first giving the latest
    /// expunges their value.
    pub fn vanished(
        &self,
        address: &str,
        mailbox: &str,
        since: u64,
    ) -> Result<(Vanished, u32), StoreError> {
        let dir = self.mailbox_dir(address, mailbox)?;
        let _guard = self.locks.of(&dir);
        let last = self.sync_dir(&dir, false)?.next_uid.saturating_sub(1);
        Ok((vanished(&self.modseqs, &dir, since)?, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages with these (UID, flags), as a sync lists them.
    fn listed(pairs: &[(u32, &str)]) -> Vec<Message> {
        pairs
            .iter()
            .map(|&(uid, flags)| Message {
                uid,
                path: PathBuf::new(),
                flags: flags.to_string(),
                size: 0,
                modseq: 0,
            })
            .collect()
    }

    fn run(cache: &Cache, dir: &Path, pairs: &[(u32, &str)]) -> (u64, Vec<u64>) {
        let mut messages = listed(pairs);
        let highest = update(cache, dir, &mut messages).unwrap();
        (highest, messages.iter().map(|m| m.modseq).collect())
    }

    #[test]
    fn changes_take_the_next_value_and_the_highest_only_grows() {
        let dir = std::env::temp_dir().join(format!("fulmar-modseq-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cache = Cache::default();
        let (h0, m) = run(&cache, &dir, &[(1, ""), (2, "S")]);
        let (one, two) = (m[0], m[1]);
        assert!(one < two && two == h0, "{m:?}");
        // Nothing changed: the same values.
        assert_eq!(
            run(&cache, &dir, &[(1, ""), (2, "S")]),
            (h0, vec![one, two])
        );
        // 1 flagged: a new value for 1 alone, the highest.
        let (h1, m) = run(&cache, &dir, &[(1, "F"), (2, "S")]);
        assert!(m[0] > h0 && m[0] == h1 && m[1] == two, "{m:?}");
        // 1 expunged: the highest still moves on.
        let (h2, m) = run(&cache, &dir, &[(2, "S")]);
        assert!(h2 > h1 && m == [two]);
        // What the file says is what a new process starts from.
        let (h, m) = run(&Cache::default(), &dir, &[(2, "S")]);
        assert_eq!((h, m), (h2, vec![two]));
        // The values follow the clock: a write lost with its file (here:
        // the file as it was before the flag change) is never reused.
        let before = format!("{MAGIC} {h0}\n1 {one} :\n2 {two} :S\n");
        fs::write(dir.join(MODSEQS), before).unwrap();
        let (h3, m) = run(&Cache::default(), &dir, &[(1, "F"), (2, "S")]);
        assert!(m[0] > h2 && h3 == m[0] && m[1] == two, "{m:?}");
        // A file claiming a value above its highest is damaged: every
        // message takes a new value, above every value given before.
        fs::write(dir.join(MODSEQS), format!("{MAGIC} 3\n2 9 :S\n")).unwrap();
        let (h4, m) = run(&Cache::default(), &dir, &[(2, "S")]);
        assert!(h4 > h3 && m == [h4], "{m:?}");
        // An empty mailbox answers 1.
        let empty = dir.join("empty");
        fs::create_dir_all(&empty).unwrap();
        assert_eq!(run(&cache, &empty, &[]), (1, vec![]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn expunges_are_kept_with_their_value_and_the_oldest_forgotten() {
        let dir = std::env::temp_dir().join(format!("fulmar-vanished-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cache = Cache::default();
        let all: Vec<(u32, &str)> = (1..=5).map(|u| (u, "")).collect();
        let (h0, _) = run(&cache, &dir, &all);
        assert_eq!(vanished(&cache, &dir, 1).unwrap(), Vanished::Known(vec![]));
        // 2 and 3 go in one sync, 5 in the next: each takes the next value.
        let (h1, _) = run(&cache, &dir, &[(1, ""), (4, ""), (5, "")]);
        let (h2, _) = run(&cache, &dir, &[(1, ""), (4, "")]);
        assert!(h0 < h1 && h1 < h2);
        let known = |since| vanished(&Cache::default(), &dir, since).unwrap();
        assert_eq!(known(h0), Vanished::Known(vec![2, 3, 5]));
        assert_eq!(known(h1), Vanished::Known(vec![5]));
        assert_eq!(known(h2), Vanished::Known(vec![]));
        let text = fs::read_to_string(dir.join(MODSEQS)).unwrap();
        assert!(text.contains(&format!("-2:3 {h1}\n")), "{text}");
        // A file from before runs were kept knows no expunge before its
        // highest.
        fs::write(
            dir.join(MODSEQS),
            format!("{MAGIC} {h2}\n1 {h0} :\n4 {h0} :\n"),
        )
        .unwrap();
        assert_eq!(known(h0), Vanished::Forgotten);
        assert_eq!(known(h2), Vanished::Known(vec![]));
        // Past KEPT_GONE runs the oldest are forgotten.
        let cache = Cache::default();
        let many: Vec<(u32, &str)> = (1..=2 * KEPT_GONE as u32 + 2).map(|u| (u, "")).collect();
        let (start, _) = run(&cache, &dir, &many);
        let mut rest = many.clone();
        let mut values = Vec::new();
        for uid in (2..=2 * KEPT_GONE as u32 + 2).step_by(2) {
            rest.retain(|&(u, _)| u != uid);
            values.push(run(&cache, &dir, &rest).0);
        }
        assert_eq!(known(start), Vanished::Forgotten);
        let recent = values[values.len() - 3];
        assert_eq!(
            known(recent),
            Vanished::Known(vec![2 * KEPT_GONE as u32, 2 * KEPT_GONE as u32 + 2])
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
