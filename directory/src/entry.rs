//! A directory entry as the tiers read it.
use std::collections::HashMap;

use ldap3::SearchEntry;

/// One search result. Attribute names are case-insensitive in LDAP and
/// servers answer in their own case, so every read here ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    attrs: HashMap<String, Vec<String>>,
}

impl Entry {
    pub fn new(dn: impl Into<String>, attrs: HashMap<String, Vec<String>>) -> Self {
        Self {
            dn: dn.into(),
            attrs,
        }
    }

    /// Every value of `name` (empty when the entry has none).
    pub fn values(&self, name: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    }

    /// The first non-empty value of `name`.
    pub fn first(&self, name: &str) -> Option<String> {
        self.values(name).first().filter(|v| !v.is_empty()).cloned()
    }
}

impl From<SearchEntry> for Entry {
    fn from(e: SearchEntry) -> Self {
        Self::new(e.dn, e.attrs)
    }
}

/// The one routing rule: an account lives on its own `mailHost`
/// (`own`), else on its domain's (`domain`, the domain entry's host; only
/// asked for when the account names none).
pub fn home(own: Option<String>, domain: impl FnOnce() -> Option<String>) -> Option<String> {
    own.or_else(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_ignore_case_and_empty_values_are_none() {
        let e = Entry::new(
            "uid=a,dc=t",
            HashMap::from([
                ("MailHost".to_string(), vec!["mail1".to_string()]),
                ("uid".to_string(), vec![String::new()]),
            ]),
        );
        assert_eq!(e.first("mailhost").as_deref(), Some("mail1"));
        assert_eq!(e.first("MAILHOST").as_deref(), Some("mail1"));
        assert_eq!(e.first("uid"), None);
        assert!(e.values("cn").is_empty());
    }

    #[test]
    fn own_host_wins_and_the_domain_is_asked_only_without_one() {
        let mut asked = false;
        assert_eq!(
            home(Some("mail1".into()), || {
                asked = true;
                Some("mail2".into())
            }),
            Some("mail1".into())
        );
        assert!(!asked);
        assert_eq!(home(None, || Some("mail2".into())), Some("mail2".into()));
        assert_eq!(home(None, || None), None);
    }
}
