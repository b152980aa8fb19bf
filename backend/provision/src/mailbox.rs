//! Mailboxes on instances, reached over IMAP as the master user: create a
//! new account's folders, empty a deleted account's, count messages.
use serde::Serialize;

use crate::{
    config::ProvisionConfig,
    imap::{ImapError, Session},
};

/// Logs in to `instance` for `user`.
pub async fn open(config: &ProvisionConfig, instance: &str, user: &str) -> Result<Session, String> {
    let address = config.imap_address(instance)?;
    let password = config.master_password()?;
    let fail = |e: ImapError| format!("instance {instance} ({address}): {e}");
    let mut s = Session::connect(&address, config.imap.timeout)
        .await
        .map_err(fail)?;
    s.login_as(user, &config.imap.master_user, &password)
        .await
        .map_err(fail)?;
    Ok(s)
}

/// INBOX and the configured folders, so the account's first login finds
/// them (and a mail client its Sent and Trash).
pub async fn create(config: &ProvisionConfig, instance: &str, user: &str) -> Result<(), String> {
    let mut s = open(config, instance, user).await?;
    let fail = |e: ImapError| format!("instance {instance}: creating {user}'s mailbox: {e}");
    s.select("INBOX").await.map_err(fail)?;
    for f in &config.folders {
        s.create(f).await.map_err(fail)?;
    }
    s.logout().await;
    Ok(())
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Folder {
    pub name: String,
    pub messages: u32,
}

pub async fn folders(
    config: &ProvisionConfig,
    instance: &str,
    user: &str,
) -> Result<Vec<Folder>, String> {
    let mut s = open(config, instance, user).await?;
    let out = folders_in(&mut s)
        .await
        .map_err(|e| format!("instance {instance}: {user}: {e}"))?;
    s.logout().await;
    Ok(out)
}

/// Every folder of an open session, with its message count.
pub async fn folders_in(s: &mut Session) -> Result<Vec<Folder>, ImapError> {
    let mut out = Vec::new();
    for name in s.list().await? {
        let messages = s.count(&name).await?;
        out.push(Folder { name, messages });
    }
    Ok(out)
}

/// Removes every message and every folder but INBOX; returns how many
/// messages went.
pub async fn remove(config: &ProvisionConfig, instance: &str, user: &str) -> Result<u64, String> {
    let mut s = open(config, instance, user).await?;
    let fail = |e: ImapError| format!("instance {instance}: removing {user}'s mailbox: {e}");
    let mut removed = 0u64;
    let mut names = s.list().await.map_err(fail)?;
    // Children before parents.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        s.select(&name).await.map_err(fail)?;
        let uids: Vec<u32> = s
            .messages()
            .await
            .map_err(fail)?
            .iter()
            .map(|m| m.uid)
            .collect();
        if !uids.is_empty() {
            s.remove(&uids).await.map_err(fail)?;
            removed += uids.len() as u64;
        }
        if !name.eq_ignore_ascii_case("INBOX") {
            s.select("INBOX").await.map_err(fail)?;
            s.delete(&name).await.map_err(fail)?;
        }
    }
    s.logout().await;
    Ok(removed)
}
