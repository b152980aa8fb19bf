//! `account move`: copy a mailbox to another instance, switch `mailHost`,
//! then keep copying until the old instance stops receiving.
//!
//! 1. Refuse unless the destination holds no messages for the account.
//! 2. Copy every folder (messages with flags and internal dates). New UIDs
//!    and a new UIDVALIDITY on the destination tell clients to resync.
//! 3. Switch the account's `mailHost` to the destination, then end the
//!    account's sessions on the proxies (`kick`): each reconnects to the
//!    destination, so no client keeps changing flags on the source after
//!    the copy's last pass. A kick that fails does not undo the move; the
//!    report says so.
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
    config::ProvisionConfig, directory::Directory, error::ProvisionError, imap::Session, mailbox,
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
    /// Sessions the proxies were asked to end after the switch.
    pub kicked: Option<usize>,
    /// Why they could not be (sessions may still use the old instance).
    pub kick_error: Option<String>,
}

/// Source UID → destination UID and the flags as copied, per folder.
type Copied = BTreeMap<String, BTreeMap<u32, (u32, Vec<String>)>>;

/// `kick` ends the account's sessions on the proxies and says how many.
pub async fn move_account(
    config: &ProvisionConfig,
    dir: &mut Directory,
    dn: &str,
    user: &str,
    from: &str,
    to: &str,
    kick: impl AsyncFnOnce() -> Result<usize, String>,
) -> Result<MoveReport, ProvisionError> {
    let started = Instant::now();
    let to_host = config.instance[to].mail_host.clone();
    let mut src = mailbox::open(config, from, user).await?;
    let mut dst = mailbox::open(config, to, user).await?;
    let mut report = MoveReport::default();
    let held: u32 = mailbox::folders_in(&mut dst)
        .await
        .map_err(ProvisionError::instance(to, format!("{user}'s folders")))?
        .iter()
        .map(|f| f.messages)
        .sum();
    if held > 0 {
        return Err(ProvisionError::NotEmpty {
            instance: to.to_string(),
            user: user.to_string(),
            held,
        });
    }
    let mut copied = Copied::new();
    let first = sync(&mut src, &mut dst, &mut copied, &mut report).await;
    if let Err(e) = first {
        let cleanup = undo(&mut dst, &copied).await;
        return Err(ProvisionError::NothingSwitched {
            source: Box::new(e),
            cleanup,
        });
    }
    report.copied = report.copied_late;
    report.copied_late = 0;
    report.ms_copy = started.elapsed().as_millis() as u64;
    if let Err(e) = dir.set_host(dn, Some(&to_host)).await {
        let cleanup = undo(&mut dst, &copied).await;
        return Err(ProvisionError::NothingSwitched {
            source: Box::new(e.into()),
            cleanup,
        });
    }
    match kick().await {
        Ok(n) => report.kicked = Some(n),
        Err(e) => report.kick_error = Some(e),
    }
    let after_switch = |e: ProvisionError| ProvisionError::AfterSwitch {
        source: Box::new(e),
        user: user.to_string(),
        from: from.to_string(),
        to: to.to_string(),
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
    Err(after_switch(ProvisionError::KeepsReceiving {
        from: from.to_string(),
        user: user.to_string(),
        rounds: FINAL_ROUNDS,
    }))
}

/// Copies what is new in every source folder and carries flag changes and
/// expunges of already-copied messages over.
async fn sync(
    src: &mut Session,
    dst: &mut Session,
    copied: &mut Copied,
    report: &mut MoveReport,
) -> Result<(), ProvisionError> {
    for folder in src.list().await? {
        if !copied.contains_key(&folder) {
            if !folder.eq_ignore_ascii_case("INBOX") {
                dst.create(&folder).await?;
            }
            let old = src.select(&folder).await?;
            let mut new = dst.select(&folder).await?;
            // Same UIDVALIDITY with new UIDs would make clients trust
            // stale caches. Servers that take it from the clock (Dovecot)
            // give two folders first opened in the same second the same
            // one: make the still-empty copy again a second later.
            if old == new && !folder.eq_ignore_ascii_case("INBOX") {
                dst.select("INBOX").await?;
                dst.delete(&folder).await?;
                tokio::time::sleep(Duration::from_millis(1100)).await;
                dst.create(&folder).await?;
                new = dst.select(&folder).await?;
            }
            if old == new {
                return Err(ProvisionError::SameUidValidity {
                    folder,
                    uidvalidity: old,
                });
            }
            copied.insert(folder.clone(), BTreeMap::new());
            report.folders += 1;
        }
        let done = copied.get_mut(&folder).expect("inserted");
        src.select(&folder).await?;
        dst.select(&folder).await?;
        let now = src.messages().await?;
        for m in &now {
            let flags = flag_names(&m.flags);
            match done.get_mut(&m.uid) {
                Some((dst_uid, was)) if *was != flags => {
                    dst.set_flags(*dst_uid, &m.flags).await?;
                    *was = flags;
                    report.flag_updates += 1;
                }
                Some(_) => {}
                None => {
                    // Expunged between LIST and FETCH: nothing to copy.
                    let Some(message) = src.fetch(m.uid).await? else {
                        continue;
                    };
                    let dst_uid = dst
                        .append(&folder, &message)
                        .await?
                        .ok_or(ProvisionError::NoUidPlus)?;
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
            dst.remove(&dst_uids).await?;
            for u in gone {
                done.remove(&u);
            }
        }
    }
    Ok(())
}

/// Removes the copied messages from the source; returns how many messages
/// it still holds (arrived since the last copy).
async fn clear_source(src: &mut Session, copied: &mut Copied) -> Result<usize, ProvisionError> {
    let mut left = 0;
    for (folder, done) in copied.iter_mut() {
        src.select(folder).await?;
        let uids: Vec<u32> = done.keys().copied().collect();
        if !uids.is_empty() {
            src.remove(&uids).await?;
        }
        done.clear();
        left += src.messages().await?.len();
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
