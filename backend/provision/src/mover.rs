//! `account move`: copy a mailbox to another instance, switch `mailHost`,
//! then keep copying until the old instance stops receiving.
//!
//! 1. Refuse unless the destination holds no messages for the account.
//! 2. Copy every folder (messages with flags and internal dates). New UIDs
//!    and a new UIDVALIDITY on the destination tell clients to resync.
//! 3. Switch the account's `mailHost` to the destination.
//! 4. For `route_cache_ttl` (how long proxies may still route to the old
//!    instance) keep copying new messages and flag changes.
//! 5. Remove the copied messages from the source by UID and look again:
//!    a delivery that landed meanwhile is copied in the next round. Only
//!    messages known to be on the destination are ever removed.
//!
//! A failure before step 3 removes the copies, so nothing changed; after
//! it, the error says what is left where.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    config::ProvisionConfig,
    directory::Directory,
    imap::{ImapError, Session},
    mailbox,
};

/// Rounds of "remove the copied, look again" before giving up on a source
/// that keeps receiving.
const FINAL_ROUNDS: usize = 20;

#[derive(Debug, Default, Serialize)]
pub struct MoveReport {
    pub folders: usize,
    pub copied: u64,
    /// Copied after the `mailHost` switch (deliveries during the move).
    pub copied_late: u64,
    pub flag_updates: u64,
    pub ms_copy: u64,
    pub ms_total: u64,
}

/// Source UID → destination UID and the flags as copied, per folder.
type Copied = BTreeMap<String, BTreeMap<u32, (u32, Vec<String>)>>;

pub async fn move_account(
    config: &ProvisionConfig,
    dir: &mut Directory,
    dn: &str,
    user: &str,
    from: &str,
    to: &str,
) -> Result<MoveReport, String> {
    let started = Instant::now();
    let to_host = config.instance[to].mail_host.clone();
    let mut src = mailbox::open(config, from, user).await?;
    let mut dst = mailbox::open(config, to, user).await?;
    let mut report = MoveReport::default();
    let held: u32 = mailbox::folders_in(&mut dst)
        .await
        .map_err(|e| format!("instance {to}: {user}: {e}"))?
        .iter()
        .map(|f| f.messages)
        .sum();
    if held > 0 {
        return Err(format!(
            "instance {to} already holds {held} messages for {user}; a move needs an empty mailbox there"
        ));
    }
    let mut copied = Copied::new();
    let first = sync(&mut src, &mut dst, &mut copied, &mut report).await;
    if let Err(e) = first {
        let cleaned = undo(&mut dst, &copied).await;
        return Err(format!("{e}; nothing switched ({cleaned})"));
    }
    report.copied = report.copied_late;
    report.copied_late = 0;
    report.ms_copy = started.elapsed().as_millis() as u64;
    if let Err(e) = dir.set_host(dn, Some(&to_host)).await {
        let cleaned = undo(&mut dst, &copied).await;
        return Err(format!("{e}; nothing switched ({cleaned})"));
    }
    let after_switch = |e: String| {
        format!(
            "{e}. {user}'s mailHost already names {to}; messages not yet copied are still \
             on {from}: run the move again once {from} answers"
        )
    };
    // Proxies may still route to the old instance until their caches
    // expire; keep up with what arrives there meanwhile.
    let settle = Instant::now() + config.directory.route_cache_ttl + Duration::from_secs(1);
    while Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(250)).await;
        sync(&mut src, &mut dst, &mut copied, &mut report)
            .await
            .map_err(after_switch)?;
    }
    for _ in 0..FINAL_ROUNDS {
        sync(&mut src, &mut dst, &mut copied, &mut report)
            .await
            .map_err(after_switch)?;
        let left = clear_source(&mut src, &mut copied)
            .await
            .map_err(after_switch)?;
        if left == 0 {
            report.ms_total = started.elapsed().as_millis() as u64;
            src.logout().await;
            dst.logout().await;
            return Ok(report);
        }
    }
    Err(after_switch(format!(
        "{from} kept receiving for {user} after {FINAL_ROUNDS} rounds"
    )))
}

/// Copies what is new in every source folder and carries flag changes and
/// expunges of already-copied messages over.
async fn sync(
    src: &mut Session,
    dst: &mut Session,
    copied: &mut Copied,
    report: &mut MoveReport,
) -> Result<(), String> {
    let e = |e: ImapError| e.to_string();
    for folder in src.list().await.map_err(e)? {
        if !copied.contains_key(&folder) {
            if !folder.eq_ignore_ascii_case("INBOX") {
                dst.create(&folder).await.map_err(e)?;
            }
            let old = src.select(&folder).await.map_err(e)?;
            let mut new = dst.select(&folder).await.map_err(e)?;
            // Same UIDVALIDITY with new UIDs would make clients trust
            // stale caches. Servers that take it from the clock (Dovecot)
            // give two folders first opened in the same second the same
            // one: make the still-empty copy again a second later.
            if old == new && !folder.eq_ignore_ascii_case("INBOX") {
                dst.select("INBOX").await.map_err(e)?;
                dst.delete(&folder).await.map_err(e)?;
                tokio::time::sleep(Duration::from_millis(1100)).await;
                dst.create(&folder).await.map_err(e)?;
                new = dst.select(&folder).await.map_err(e)?;
            }
            if old == new {
                return Err(format!(
                    "{folder}: the destination's UIDVALIDITY equals the source's ({old}); try again in a second"
                ));
            }
            copied.insert(folder.clone(), BTreeMap::new());
            report.folders += 1;
        }
        let done = copied.get_mut(&folder).expect("inserted");
        src.select(&folder).await.map_err(e)?;
        dst.select(&folder).await.map_err(e)?;
        let now = src.messages().await.map_err(e)?;
        for m in &now {
            let flags = flag_names(&m.flags);
            match done.get_mut(&m.uid) {
                Some((dst_uid, was)) if *was != flags => {
                    dst.set_flags(*dst_uid, &m.flags).await.map_err(e)?;
                    *was = flags;
                    report.flag_updates += 1;
                }
                Some(_) => {}
                None => {
                    // Expunged between LIST and FETCH: nothing to copy.
                    let Some(message) = src.fetch(m.uid).await.map_err(e)? else {
                        continue;
                    };
                    let dst_uid = dst.append(&folder, &message).await.map_err(e)?.ok_or(
                        "the destination does not report APPENDUID (UIDPLUS); cannot track copies",
                    )?;
                    done.insert(m.uid, (dst_uid, flag_names(&message.flags)));
                    report.copied_late += 1;
                }
            }
        }
        // Expunged on the source after we copied them.
        let gone: Vec<u32> = done
            .keys()
            .filter(|&&u| now.binary_search_by_key(&u, |m| m.uid).is_err())
            .copied()
            .collect();
        if !gone.is_empty() {
            let dst_uids: Vec<u32> = gone.iter().map(|u| done[u].0).collect();
            dst.remove(&dst_uids).await.map_err(e)?;
            for u in gone {
                done.remove(&u);
            }
        }
    }
    Ok(())
}

/// Removes the copied messages from the source; returns how many messages
/// it still holds (arrived since the last copy).
async fn clear_source(src: &mut Session, copied: &mut Copied) -> Result<usize, String> {
    let e = |e: ImapError| e.to_string();
    let mut left = 0;
    for (folder, done) in copied.iter_mut() {
        src.select(folder).await.map_err(e)?;
        let uids: Vec<u32> = done.keys().copied().collect();
        if !uids.is_empty() {
            src.remove(&uids).await.map_err(e)?;
        }
        done.clear();
        left += src.messages().await.map_err(e)?.len();
    }
    Ok(left)
}

/// Removes what a failed first pass copied; says how that went.
async fn undo(dst: &mut Session, copied: &Copied) -> String {
    let mut failed = 0;
    for (folder, done) in copied {
        let uids: Vec<u32> = done.values().map(|(d, _)| *d).collect();
        if uids.is_empty() {
            continue;
        }
        let ok = dst.select(folder).await.is_ok() && dst.remove(&uids).await.is_ok();
        if !ok {
            failed += uids.len();
        }
    }
    if failed == 0 {
        "the partial copy was removed".into()
    } else {
        format!("{failed} copied messages could not be removed from the destination")
    }
}

fn flag_names(flags: &[imap_codec::imap_types::flag::Flag<'_>]) -> Vec<String> {
    let mut v: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    v.sort();
    v
}
