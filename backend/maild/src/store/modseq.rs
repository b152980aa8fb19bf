//! Mod-sequences (CONDSTORE, RFC 7162): each message's MODSEQ, and the
//! mailbox's HIGHESTMODSEQ, which only grows. A maildir keeps flags in
//! file names, changed by whoever renames them; so the sync that lists a
//! mailbox compares each message's flags with those its MODSEQ was given
//! for, and a message that is new or whose flags differ gets the next
//! value. An expunge also takes one, so HIGHESTMODSEQ moves whenever the
//! mailbox does. Kept in `modseqs` (`fulmar-modseqs 1 HIGHEST`, then
//! `UID MODSEQ :FLAGS` per message), replaced whole by a rename.
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

#[derive(Debug, Default)]
struct Modseqs {
    highest: u64,
    /// (UID, MODSEQ, the flags it was given for), by UID.
    entries: Vec<(u32, u64, String)>,
}

fn parse(text: &str) -> Option<Modseqs> {
    let mut lines = text.lines();
    let highest = lines.next()?.strip_prefix(MAGIC)?.trim().parse().ok()?;
    let mut entries: Vec<(u32, u64, String)> = Vec::new();
    for line in lines {
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
    Some(Modseqs { highest, entries })
}

fn render(m: &Modseqs) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(32 + m.entries.len() * 32);
    let _ = writeln!(text, "{MAGIC} {}", m.highest);
    for (uid, modseq, flags) in &m.entries {
        let _ = writeln!(text, "{uid} {modseq} :{flags}");
    }
    text
}

/// Gives each of `messages` (by UID, as listed now) its MODSEQ and
/// returns HIGHESTMODSEQ. The caller holds the store's sync lock.
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
    cached.truncate(CACHED);
    result
}

fn read(dir: &Path) -> Result<Modseqs, StoreError> {
    let path = dir.join(MODSEQS);
    Ok(match fs::read_to_string(&path) {
        Ok(text) => parse(&text).unwrap_or_else(|| {
            // Replaced whole, so only outside damage gets here: every
            // message counts as changed (and takes a value above the
            // clock, so above any given before).
            tracing::warn!(path = %path.display(), "unreadable mod-sequences, starting over");
            Modseqs::default()
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let next = |highest: &mut u64| {
        *highest = (*highest + 1).max(now);
        *highest
    };
    // Both by UID: one walk, entries changed in place; UIDs not listed
    // any more are marked (0) and dropped after.
    let (entries, highest) = (&mut kept.entries, &mut kept.highest);
    let (mut i, mut gone, mut added) = (0, false, Vec::new());
    for m in messages.iter_mut() {
        while i < entries.len() && entries[i].0 < m.uid {
            entries[i].0 = 0;
            gone = true;
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
    if i < entries.len() {
        gone = true;
    }
    if gone {
        entries.retain(|e| e.0 != 0 && messages.binary_search_by_key(&e.0, |m| m.uid).is_ok());
        next(highest);
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
}
