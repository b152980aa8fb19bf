//! The directory as provisioning writes it: account entries
//! (inetOrgPerson + inetLocalMailRecipient, `uid` = the address) under
//! `people`, domain entries (domain + domainRelatedObject +
//! inetLocalMailRecipient) under `domains`, read with paged searches.
//! Values go into filters through RFC 4515 escaping and into DNs through
//! RFC 4514 escaping.
use std::collections::HashSet;

use ldap3::{Ldap, Mod, Scope, SearchEntry, adapters::PagedResults};
use serde::Serialize;

use crate::{Entry, Pool, Unavailable, dn_escape, domain_of, ldap_escape};

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
        domain_of(self.addresses.first().unwrap_or(&self.uid))
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

/// A write or a search that failed, naming the operation and the entry.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("directory {url} ({what}): {detail}")]
    Failed {
        url: String,
        what: &'static str,
        detail: String,
    },
    /// The entry to add exists (an account or a domain, named).
    #[error("{0}")]
    Exists(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// For callers that report errors as text.
impl From<WriteError> for String {
    fn from(e: WriteError) -> String {
        e.to_string()
    }
}

/// Where provisioning keeps its entries.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The base of account entries.
    pub people: String,
    /// The base of domain entries.
    pub domains: String,
    /// The routing attribute (`mailHost`).
    pub host_attribute: String,
}

/// A connection bound as the directory's admin DN, for one operation.
#[derive(Clone)]
pub struct Directory {
    ldap: Ldap,
    people: String,
    domains: String,
    host_attribute: String,
    url: String,
}

impl Directory {
    /// Connects (URL failover, timeouts: [`Pool`]) and binds as the
    /// connection's DN, which must be allowed to write.
    pub async fn connect(pool: &Pool, layout: Layout) -> Result<Self, Unavailable> {
        let ldap = pool.bound_connection().await?;
        Ok(Self {
            ldap,
            people: layout.people,
            domains: layout.domains,
            host_attribute: layout.host_attribute,
            url: pool.connection().urls.join(" "),
        })
    }

    fn fail(&self, what: &'static str, e: impl std::fmt::Display) -> WriteError {
        WriteError::Failed {
            url: self.url.clone(),
            what,
            detail: e.to_string(),
        }
    }

    /// Ok on success, else an error naming the operation and the entry.
    fn done(&self, what: &'static str, dn: &str, r: ldap3::LdapResult) -> Result<(), WriteError> {
        match r.rc {
            0 => Ok(()),
            rc => Err(self.fail(what, format!("{dn}: {rc} {}", r.text))),
        }
    }

    /// The account that has `address` as its uid or one of its addresses.
    pub async fn find_account(
        &mut self,
        address: &str,
    ) -> Result<Option<AccountEntry>, WriteError> {
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
    pub async fn accounts(&mut self) -> Result<Vec<AccountEntry>, WriteError> {
        self.search_accounts("(&(objectClass=inetLocalMailRecipient)(uid=*))")
            .await
    }

    async fn search_accounts(&mut self, filter: &str) -> Result<Vec<AccountEntry>, WriteError> {
        let host = self.host_attribute.clone();
        let attrs = vec!["uid", "mailLocalAddress", host.as_str()];
        let entries = self.paged(&self.people.clone(), filter, attrs).await?;
        Ok(entries
            .into_iter()
            .map(|e| AccountEntry {
                uid: e.first("uid").unwrap_or_default(),
                addresses: e.values("mailLocalAddress").to_vec(),
                mail_host: e.first(&self.host_attribute),
                dn: e.dn,
            })
            .collect())
    }

    pub async fn domains(&mut self) -> Result<Vec<DomainEntry>, WriteError> {
        let host = self.host_attribute.clone();
        let attrs = vec!["associatedDomain", host.as_str()];
        let filter = "(&(objectClass=domainRelatedObject)(associatedDomain=*))";
        let entries = self.paged(&self.domains.clone(), filter, attrs).await?;
        let mut out = Vec::new();
        for e in entries {
            let host = e.first(&self.host_attribute);
            for d in e.values("associatedDomain") {
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
    ) -> Result<Vec<Entry>, WriteError> {
        let mut stream = self
            .ldap
            .streaming_search_with(PagedResults::new(PAGE), base, Scope::Subtree, filter, attrs)
            .await
            .map_err(|e| self.fail("search", e))?;
        let mut out = Vec::new();
        while let Some(entry) = stream.next().await.map_err(|e| self.fail("search", e))? {
            out.push(SearchEntry::construct(entry).into());
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

    pub async fn add_account(&mut self, a: &NewAccount<'_>) -> Result<String, WriteError> {
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
    ) -> Result<(), WriteError> {
        let r = self
            .ldap
            .add(dn, attrs)
            .await
            .map_err(|e| self.fail("add", e))?;
        match r.rc {
            ALREADY_EXISTS => Err(WriteError::Exists(exists())),
            _ => self.done("add", dn, r),
        }
    }

    pub async fn delete(&mut self, dn: &str) -> Result<(), WriteError> {
        let r = self
            .ldap
            .delete(dn)
            .await
            .map_err(|e| self.fail("delete", e))?;
        self.done("delete", dn, r)
    }

    /// Sets (or with None removes) an entry's `mailHost`.
    pub async fn set_host(&mut self, dn: &str, host: Option<&str>) -> Result<(), WriteError> {
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

    pub async fn add_domain(&mut self, domain: &str, host: &str) -> Result<(), WriteError> {
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
