//! The directory as provisioning writes it: account entries
//! (inetOrgPerson + inetLocalMailRecipient, `uid` = the address) under
//! `people`, domain entries (domain + domainRelatedObject +
//! inetLocalMailRecipient) under `domains`. Values from the command line go
//! into filters through RFC 4515 escaping and into DNs through RFC 4514
//! escaping.
use std::collections::{BTreeMap, HashSet};

use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry, adapters::PagedResults,
    dn_escape, ldap_escape,
};
use serde::Serialize;

use crate::config::ProvisionConfig;

/// LDAP result codes we answer by name.
const NO_SUCH_OBJECT: u32 = 32;
const ALREADY_EXISTS: u32 = 68;
const PAGE: i32 = 500;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AccountEntry {
    pub dn: String,
    pub uid: String,
    pub addresses: Vec<String>,
    /// Its own `mailHost`; None routes by the domain's entry.
    pub mail_host: Option<String>,
}

impl AccountEntry {
    /// The domain whose entry routes it when it has no `mailHost`.
    pub fn domain(&self) -> Option<String> {
        self.addresses
            .first()
            .or(Some(&self.uid))
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DomainEntry {
    pub dn: String,
    pub domain: String,
    pub mail_host: Option<String>,
}

/// What `account add` writes.
pub struct NewAccount<'a> {
    pub address: &'a str,
    pub aliases: &'a [String],
    pub name: Option<&'a str>,
    /// A hash slapd verifies ({CRYPT}, {SSHA}, ...).
    pub password_hash: &'a str,
    pub mail_host: Option<&'a str>,
}

#[derive(Clone)]
pub struct Directory {
    ldap: Ldap,
    people: String,
    domains: String,
    host_attribute: String,
    url: String,
}

impl Directory {
    /// Connects and binds as the admin DN.
    pub async fn connect(config: &ProvisionConfig) -> Result<Self, String> {
        let d = &config.directory;
        let down = |e: &dyn std::fmt::Display| format!("directory unavailable at {}: {e}", d.url);
        let settings = LdapConnSettings::new().set_conn_timeout(d.timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &d.url)
            .await
            .map_err(|e| down(&e))?;
        ldap3::drive!(conn);
        let password = config.admin_password()?;
        let bound = ldap
            .with_timeout(d.timeout)
            .simple_bind(&d.admin_dn, &password)
            .await
            .map_err(|e| down(&e))?;
        if bound.rc != 0 {
            return Err(format!(
                "directory refused the bind as {}: {} {}",
                d.admin_dn, bound.rc, bound.text
            ));
        }
        Ok(Self {
            ldap,
            people: d.people.clone(),
            domains: d.domains.clone(),
            host_attribute: d.host_attribute.clone(),
            url: d.url.clone(),
        })
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> String {
        format!("directory {} ({what}): {e}", self.url)
    }

    /// Ok on success, else an error naming the operation and the entry.
    fn done(&self, what: &str, dn: &str, r: ldap3::LdapResult) -> Result<(), String> {
        match r.rc {
            0 => Ok(()),
            rc => Err(self.fail(what, format!("{dn}: {rc} {}", r.text))),
        }
    }

    /// The account that has `address` as its uid or one of its addresses.
    pub async fn find_account(&mut self, address: &str) -> Result<Option<AccountEntry>, String> {
        let a = ldap_escape(address);
        let filter =
            format!("(&(objectClass=inetLocalMailRecipient)(|(uid={a})(mailLocalAddress={a})))");
        let mut found = self.search_accounts(&filter).await?;
        Ok(if found.is_empty() {
            None
        } else {
            Some(found.remove(0))
        })
    }

    /// Every account under `people`, paged.
    pub async fn accounts(&mut self) -> Result<Vec<AccountEntry>, String> {
        self.search_accounts("(&(objectClass=inetLocalMailRecipient)(uid=*))")
            .await
    }

    async fn search_accounts(&mut self, filter: &str) -> Result<Vec<AccountEntry>, String> {
        let host = self.host_attribute.clone();
        let attrs = vec!["uid", "mailLocalAddress", host.as_str()];
        let entries = self.paged(&self.people.clone(), filter, attrs).await?;
        Ok(entries
            .into_iter()
            .map(|e| AccountEntry {
                uid: first(&e, "uid").unwrap_or_default(),
                addresses: e.attrs.get("mailLocalAddress").cloned().unwrap_or_default(),
                mail_host: first(&e, &self.host_attribute),
                dn: e.dn,
            })
            .collect())
    }

    pub async fn domains(&mut self) -> Result<Vec<DomainEntry>, String> {
        let host = self.host_attribute.clone();
        let attrs = vec!["associatedDomain", host.as_str()];
        let filter = "(&(objectClass=domainRelatedObject)(associatedDomain=*))";
        let entries = self.paged(&self.domains.clone(), filter, attrs).await?;
        let mut out = Vec::new();
        for e in entries {
            let host = first(&e, &self.host_attribute);
            for d in e.attrs.get("associatedDomain").into_iter().flatten() {
                out.push(DomainEntry {
                    dn: e.dn.clone(),
                    domain: d.to_ascii_lowercase(),
                    mail_host: host.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn paged(
        &mut self,
        base: &str,
        filter: &str,
        attrs: Vec<&str>,
    ) -> Result<Vec<SearchEntry>, String> {
        let mut stream = self
            .ldap
            .streaming_search_with(PagedResults::new(PAGE), base, Scope::Subtree, filter, attrs)
            .await
            .map_err(|e| self.fail("search", e))?;
        let mut out = Vec::new();
        while let Some(entry) = stream.next().await.map_err(|e| self.fail("search", e))? {
            out.push(SearchEntry::construct(entry));
        }
        let done = stream.finish().await;
        match done.rc {
            0 => Ok(out),
            // The base itself is missing: nothing provisioned yet.
            NO_SUCH_OBJECT => Err(self.fail("search", format!("{base} does not exist"))),
            rc => Err(self.fail("search", format!("{rc} {}", done.text))),
        }
    }

    pub fn account_dn(&self, address: &str) -> String {
        format!("uid={},{}", dn_escape(address), self.people)
    }

    pub async fn add_account(&mut self, a: &NewAccount<'_>) -> Result<String, String> {
        let host_attribute = self.host_attribute.clone();
        let dn = self.account_dn(a.address);
        let local = a.address.split('@').next().unwrap_or(a.address);
        let mut addresses: HashSet<&str> = a.aliases.iter().map(String::as_str).collect();
        addresses.insert(a.address);
        let mut attrs: Vec<(&str, HashSet<&str>)> = vec![
            (
                "objectClass",
                ["inetOrgPerson", "inetLocalMailRecipient"].into(),
            ),
            ("uid", [a.address].into()),
            ("cn", [a.name.unwrap_or(a.address)].into()),
            ("sn", [a.name.unwrap_or(local)].into()),
            ("userPassword", [a.password_hash].into()),
            ("mailLocalAddress", addresses),
        ];
        if let Some(h) = a.mail_host {
            attrs.push((host_attribute.as_str(), [h].into()));
        }
        self.add(&dn, attrs, || format!("account {} exists", a.address))
            .await?;
        Ok(dn)
    }

    /// Adds an entry; `exists` words the error when the DN is taken.
    async fn add(
        &mut self,
        dn: &str,
        attrs: Vec<(&str, HashSet<&str>)>,
        exists: impl FnOnce() -> String,
    ) -> Result<(), String> {
        let r = self
            .ldap
            .add(dn, attrs)
            .await
            .map_err(|e| self.fail("add", e))?;
        match r.rc {
            ALREADY_EXISTS => Err(exists()),
            _ => self.done("add", dn, r),
        }
    }

    pub async fn delete(&mut self, dn: &str) -> Result<(), String> {
        let r = self
            .ldap
            .delete(dn)
            .await
            .map_err(|e| self.fail("delete", e))?;
        self.done("delete", dn, r)
    }

    /// Sets (or with None removes) an entry's `mailHost`.
    pub async fn set_host(&mut self, dn: &str, host: Option<&str>) -> Result<(), String> {
        let attr = self.host_attribute.clone();
        let change = match host {
            Some(h) => Mod::Replace(attr.as_str(), [h].into()),
            None => Mod::Replace(attr.as_str(), HashSet::new()),
        };
        let r = self
            .ldap
            .modify(dn, vec![change])
            .await
            .map_err(|e| self.fail("modify", e))?;
        self.done("modify", dn, r)
    }

    pub async fn add_domain(&mut self, domain: &str, host: &str) -> Result<(), String> {
        let host_attribute = self.host_attribute.clone();
        let dn = format!("dc={},{}", dn_escape(domain), self.domains);
        let attrs: Vec<(&str, HashSet<&str>)> = vec![
            (
                "objectClass",
                ["domain", "domainRelatedObject", "inetLocalMailRecipient"].into(),
            ),
            ("dc", [domain].into()),
            ("associatedDomain", [domain].into()),
            (host_attribute.as_str(), [host].into()),
        ];
        self.add(&dn, attrs, || format!("domain {domain} exists"))
            .await
    }

    pub async fn unbind(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

fn first(e: &SearchEntry, attr: &str) -> Option<String> {
    e.attrs.get(attr).and_then(|v| v.first()).cloned()
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
        let host = match &a.mail_host {
            Some(h) => Some(h.clone()),
            None => a
                .domain()
                .and_then(|d| by_domain.get(d.as_str()).map(|h| h.to_string())),
        };
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
