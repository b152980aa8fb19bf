//! The account operations behind the CLI: add (directory entry, then
//! mailbox, the entry rolled back if the mailbox fails), delete, bulk
//! import (placement planned in order, applied concurrently).
use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use serde::Serialize;

use crate::{
    address,
    config::{ProvisionConfig, unknown_instance},
    directory::{self, Directory, NewAccount},
    error::ProvisionError,
    import::{Candidate, Password},
    mailbox,
    placement::{Algorithm, Placement, Placer},
};

#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub address: String,
    pub instance: String,
    pub via_domain: bool,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub instance: String,
    pub before: usize,
    pub added: usize,
    pub after: usize,
}

#[derive(Debug, Serialize)]
pub struct ImportReport {
    pub placement: Algorithm,
    pub dry_run: bool,
    pub accounts: Vec<Planned>,
    pub summary: Vec<Summary>,
    /// (address, error) for accounts that were not created.
    pub failed: Vec<(String, String)>,
}

/// Reads the directory's domains (and its accounts, when least-used
/// placement needs their counts or `all_addresses` the taken addresses)
/// and sets up a placer.
async fn placer(
    config: &ProvisionConfig,
    dir: &mut Directory,
    algorithm: Algorithm,
    seed: Option<u64>,
    all_addresses: bool,
) -> Result<(Placer, BTreeSet<String>), ProvisionError> {
    let accounts = if all_addresses || algorithm == Algorithm::LeastUsed {
        dir.accounts().await?
    } else {
        Vec::new()
    };
    let domains = dir.domains().await?;
    let (counts, _) = directory::usage(config, &accounts, &domains);
    let table = directory::domain_table(config, &domains);
    let taken = accounts
        .iter()
        .flat_map(|a| a.addresses.iter().chain([&a.uid]))
        .map(|a| a.to_ascii_lowercase())
        .collect();
    Ok((Placer::new(config, algorithm, counts, table, seed), taken))
}

/// Plans every candidate in order (so least-used sees the earlier ones),
/// refusing addresses that exist or repeat.
fn plan(
    config: &ProvisionConfig,
    placer: &mut Placer,
    taken: &mut BTreeSet<String>,
    candidates: &[Candidate],
) -> Result<Vec<Planned>, ProvisionError> {
    let mut out = Vec::new();
    for c in candidates {
        for a in [&c.address].into_iter().chain(&c.aliases) {
            if !taken.insert(a.clone()) {
                let exists = ProvisionError::Exists {
                    address: a.clone(),
                    account: None,
                };
                return Err(exists.at_row(&c.origin));
            }
        }
        let p = match &c.instance {
            Some(i) => {
                if !config.instance.contains_key(i) {
                    return Err(unknown_instance(config, i));
                }
                placer.record(i);
                Placement {
                    instance: i.clone(),
                    via_domain: false,
                }
            }
            None => placer
                .place(address::domain_of(&c.address))
                .map_err(|e| e.at_row(&c.origin))?,
        };
        out.push(Planned {
            address: c.address.clone(),
            instance: p.instance,
            via_domain: p.via_domain,
        });
    }
    Ok(out)
}

/// Writes one account: the entry, then the mailbox; the entry is removed
/// again if the mailbox cannot be created.
async fn create(
    config: &ProvisionConfig,
    dir: &mut Directory,
    c: &Candidate,
    p: &Planned,
) -> Result<(), ProvisionError> {
    let hash = match &c.password {
        Password::Clear(p) => address::hash_password(p)?,
        Password::Hash(h) => h.clone(),
    };
    let host = (!p.via_domain).then(|| config.instance[&p.instance].mail_host.as_str());
    let dn = dir
        .add_account(&NewAccount {
            address: &c.address,
            aliases: &c.aliases,
            name: c.name.as_deref(),
            password_hash: &hash,
            mail_host: host,
        })
        .await?;
    if let Err(e) = mailbox::create(config, &p.instance, &c.address).await {
        return Err(ProvisionError::EntryRolledBack {
            source: Box::new(e),
            left: dir.delete(&dn).await.err(),
        });
    }
    Ok(())
}

/// `account add`: one candidate, placed by `algorithm` unless it names
/// its instance.
pub async fn add(
    config: &ProvisionConfig,
    candidate: Candidate,
    algorithm: Algorithm,
    seed: Option<u64>,
) -> Result<Planned, ProvisionError> {
    let mut dir = directory::connect(config).await?;
    for a in [&candidate.address].into_iter().chain(&candidate.aliases) {
        if let Some(other) = dir.find_account(a).await? {
            return Err(ProvisionError::Exists {
                address: a.clone(),
                account: Some(other.uid),
            });
        }
    }
    // Its addresses were looked up one by one above.
    let (mut placer, mut taken) = placer(config, &mut dir, algorithm, seed, false).await?;
    let planned = plan(
        config,
        &mut placer,
        &mut taken,
        std::slice::from_ref(&candidate),
    )?
    .remove(0);
    create(config, &mut dir, &candidate, &planned).await?;
    dir.unbind().await;
    Ok(planned)
}

/// `account import`: plan all, print or apply with `jobs` at a time.
pub async fn import(
    config: &ProvisionConfig,
    candidates: Vec<Candidate>,
    algorithm: Algorithm,
    seed: Option<u64>,
    dry_run: bool,
    jobs: usize,
) -> Result<ImportReport, ProvisionError> {
    let mut dir = directory::connect(config).await?;
    let (mut placer, mut taken) = placer(config, &mut dir, algorithm, seed, true).await?;
    let before = placer.counts().clone();
    let planned = plan(config, &mut placer, &mut taken, &candidates)?;
    let mut failed = Vec::new();
    if !dry_run {
        let results: Vec<(String, Result<(), ProvisionError>)> =
            stream::iter(candidates.iter().zip(&planned))
                .map(|(c, p)| {
                    let mut dir = dir.clone();
                    async move { (c.address.clone(), create(config, &mut dir, c, p).await) }
                })
                .buffer_unordered(jobs.max(1))
                .collect()
                .await;
        failed = results
            .into_iter()
            .filter_map(|(a, r)| r.err().map(|e| (a, e.to_string())))
            .collect();
        failed.sort();
    }
    let failed_set: BTreeSet<&str> = failed.iter().map(|(a, _)| a.as_str()).collect();
    let mut added: BTreeMap<&str, usize> = BTreeMap::new();
    for p in planned
        .iter()
        .filter(|p| !failed_set.contains(p.address.as_str()))
    {
        *added.entry(p.instance.as_str()).or_default() += 1;
    }
    let summary = before
        .iter()
        .map(|(i, b)| {
            let a = added.get(i.as_str()).copied().unwrap_or(0);
            Summary {
                instance: i.clone(),
                before: *b,
                added: a,
                after: b + a,
            }
        })
        .collect();
    dir.unbind().await;
    Ok(ImportReport {
        placement: algorithm,
        dry_run,
        accounts: planned,
        summary,
        failed,
    })
}

#[derive(Debug, Serialize)]
pub struct Shown {
    #[serde(flatten)]
    pub entry: directory::AccountEntry,
    /// The instance it is routed to, and whether by its domain's entry.
    pub instance: Option<String>,
    pub via_domain: bool,
    pub folders: Option<Vec<mailbox::Folder>>,
    /// Why `folders` is missing (the instance did not answer).
    pub mailbox_error: Option<String>,
}

/// Finds an account and where it is routed.
pub async fn locate(
    config: &ProvisionConfig,
    dir: &mut Directory,
    address: &str,
) -> Result<(directory::AccountEntry, Option<String>, bool), ProvisionError> {
    let entry = dir
        .find_account(&address.to_ascii_lowercase())
        .await?
        .ok_or_else(|| ProvisionError::NoAccount(address.to_string()))?;
    let (host, via_domain) = match &entry.mail_host {
        Some(h) => (Some(h.clone()), false),
        None => {
            let domains = dir.domains().await?;
            let d = entry.domain();
            let h = domains
                .into_iter()
                .find(|e| Some(&e.domain) == d.as_ref())
                .and_then(|e| e.mail_host);
            (h, true)
        }
    };
    let instance = host
        .as_deref()
        .and_then(|h| config.instance_by_host(h))
        .map(String::from);
    Ok((entry, instance, via_domain))
}

pub async fn show(config: &ProvisionConfig, address: &str) -> Result<Shown, ProvisionError> {
    let mut dir = directory::connect(config).await?;
    let (entry, instance, via_domain) = locate(config, &mut dir, address).await?;
    dir.unbind().await;
    let (folders, mailbox_error) = match &instance {
        Some(i) => match mailbox::folders(config, i, &entry.uid).await {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, Some("routed to no configured instance".into())),
    };
    Ok(Shown {
        entry,
        instance,
        via_domain,
        folders,
        mailbox_error,
    })
}

#[derive(Debug, Serialize)]
pub struct Deleted {
    pub uid: String,
    pub instance: Option<String>,
    pub messages_removed: Option<u64>,
}

/// `account del`: the entry first (mail stops routing there), then the
/// mailbox unless `keep_mail`.
pub async fn delete(
    config: &ProvisionConfig,
    address: &str,
    keep_mail: bool,
) -> Result<Deleted, ProvisionError> {
    let mut dir = directory::connect(config).await?;
    let (entry, instance, _) = locate(config, &mut dir, address).await?;
    dir.delete(&entry.dn).await?;
    dir.unbind().await;
    let messages_removed = match (&instance, keep_mail) {
        (Some(i), false) => Some(mailbox::remove(config, i, &entry.uid).await.map_err(|e| {
            ProvisionError::MailboxLeft {
                instance: i.clone(),
                source: Box::new(e),
            }
        })?),
        _ => None,
    };
    Ok(Deleted {
        uid: entry.uid,
        instance,
        messages_removed,
    })
}
