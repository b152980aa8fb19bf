//! Mailboxes on instances, reached over IMAP as the master user: create a
//! new account's folders, empty a deleted account's, count messages.
use serde::Serialize;

use crate::{
    config::ProvisionConfig,
    error::ProvisionError,
    imap::{ImapError, Session},
};

/// Logs in to `instance` for `user`.
pub async fn open(
    config: &ProvisionConfig,
    instance: &str,
    user: &str,
) -> Result<Session, ProvisionError> {
    let address = config.imap_address(instance)?;
    let password = config.master_password()?;
    let fail = ProvisionError::instance(instance, format!("logging in at {address} for {user}"));
    let tls = match &config.imap.tls_ca {
        Some(ca) => Some(tokio_rustls::TlsConnector::from(
            fulmar_daemon::tls_client_config(ca)?,
        )),
        None => None,
    };
    let mut s = Session::connect(&address, config.imap.timeout, tls.as_ref())
        .await
        .map_err(&fail)?;
    s.login_as(user, &config.imap.master_user, &password)
        .await
        .map_err(&fail)?;
    Ok(s)
}

/// INBOX and the configured folders, so the account's first login finds
/// them (and a mail client its Sent and Trash).
pub async fn create(
    config: &ProvisionConfig,
    instance: &str,
    user: &str,
) -> Result<(), ProvisionError> {
    let mut s = open(config, instance, user).await?;
    let fail = ProvisionError::instance(instance, format!("creating {user}'s mailbox"));
    s.select("INBOX").await.map_err(&fail)?;
    for f in &config.folders {
        s.create(f).await.map_err(&fail)?;
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
) -> Result<Vec<Folder>, ProvisionError> {
    let mut s = open(config, instance, user).await?;
    let out = folders_in(&mut s).await.map_err(ProvisionError::instance(
        instance,
        format!("{user}'s folders"),
    ))?;
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
pub async fn remove(
    config: &ProvisionConfig,
    instance: &str,
    user: &str,
) -> Result<u64, ProvisionError> {
    let mut s = open(config, instance, user).await?;
    let fail = ProvisionError::instance(instance, format!("removing {user}'s mailbox"));
    let mut removed = 0u64;
    let mut names = s.list().await.map_err(&fail)?;
    // Children before parents.
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        s.select(&name).await.map_err(&fail)?;
        let uids: Vec<u32> = s
            .messages()
            .await
            .map_err(&fail)?
            .iter()
            .map(|m| m.uid)
            .collect();
        if !uids.is_empty() {
            s.remove(&uids).await.map_err(&fail)?;
            removed += uids.len() as u64;
        }
        if !name.eq_ignore_ascii_case("INBOX") {
            s.select("INBOX").await.map_err(&fail)?;
            s.delete(&name).await.map_err(&fail)?;
        }
    }
    s.logout().await;
    Ok(removed)
}
