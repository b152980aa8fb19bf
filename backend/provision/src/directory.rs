//! The directory as provisioning uses it: the entries it writes
//! (`fulmar_directory::admin`), connected as the config's admin DN, and
//! accounts counted per instance by the one routing rule
//! ([`fulmar_directory::home`]).
use std::collections::BTreeMap;

pub use fulmar_directory::admin::{AccountEntry, Directory, DomainEntry, NewAccount, WriteError};
use fulmar_directory::{Connection, Pool, admin::Layout, home};

use crate::{config::ProvisionConfig, error::ProvisionError};

/// Connects and binds as the admin DN.
pub async fn connect(config: &ProvisionConfig) -> Result<Directory, ProvisionError> {
    let d = &config.directory;
    let tls = match &d.tls_ca {
        Some(ca) => Some(fulmar_daemon::tls_client_config(ca)?),
        None => None,
    };
    let pool = Pool::new(Connection {
        urls: vec![d.url.clone()],
        bind_dn: d.admin_dn.clone(),
        bind_password: config.admin_password()?,
        timeout: d.timeout,
        pool_size: 1,
        tls,
    });
    let layout = Layout {
        people: d.people.clone(),
        domains: d.domains.clone(),
        host_attribute: d.host_attribute.clone(),
    };
    Directory::connect(&pool, layout)
        .await
        .map_err(|source| ProvisionError::Connect {
            url: d.url.clone(),
            source,
        })
}

/// Accounts per configured instance, each counted where it is routed: its
/// own `mailHost`, else its domain's. Accounts routed nowhere we know are
/// counted under `None`.
pub fn usage(
    config: &ProvisionConfig,
    accounts: &[AccountEntry],
    domains: &[DomainEntry],
) -> (BTreeMap<String, usize>, usize) {
    let by_domain: BTreeMap<&str, &str> = domains
        .iter()
        .filter_map(|d| Some((d.domain.as_str(), d.mail_host.as_deref()?)))
        .collect();
    let mut counts: BTreeMap<String, usize> =
        config.instance.keys().map(|n| (n.clone(), 0)).collect();
    let mut elsewhere = 0;
    for a in accounts {
        let host = home(a.mail_host.clone(), || {
            let domain = a.domain()?;
            by_domain.get(domain.as_str()).map(|h| h.to_string())
        });
        match host.as_deref().and_then(|h| config.instance_by_host(h)) {
            Some(i) => *counts.get_mut(i).expect("configured") += 1,
            None => elsewhere += 1,
        }
    }
    (counts, elsewhere)
}

/// Domain (lower case) → instance, for the domains whose entry names a
/// configured instance.
pub fn domain_table(config: &ProvisionConfig, domains: &[DomainEntry]) -> BTreeMap<String, String> {
    domains
        .iter()
        .filter_map(|d| {
            let i = config.instance_by_host(d.mail_host.as_deref()?)?;
            Some((d.domain.clone(), i.to_string()))
        })
        .collect()
}
