//! Escaping: a value from the network or the command line never changes
//! the shape of a filter (RFC 4515) or a DN (RFC 4514).
pub use ldap3::{dn_escape, ldap_escape};

/// Puts an escaped `value` (`%u`) and its escaped domain (`%d`) into a
/// filter template.
pub fn fill(template: &str, value: &str) -> String {
    let domain = domain_of(value).unwrap_or_default();
    template
        .replace("%u", &ldap_escape(value))
        .replace("%d", &ldap_escape(domain))
}

/// The domain of an address, lower case; None without one.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metacharacters_never_change_the_filter() {
        let t = "(&(objectClass=inetLocalMailRecipient)(|(uid=%u)(mailLocalAddress=%u)))";
        assert_eq!(
            fill(t, "*"),
            "(&(objectClass=inetLocalMailRecipient)(|(uid=\\2a)(mailLocalAddress=\\2a)))"
        );
        let f = fill("(uid=%u)", "a)(uid=*");
        assert_eq!(f, "(uid=a\\29\\28uid=\\2a)");
        assert_eq!(fill("(uid=%u)", "x\\y\0"), "(uid=x\\5cy\\00)");
        assert_eq!(fill("(d=%d)", "u@ex*.test"), "(d=ex\\2a.test)");
    }

    #[test]
    fn dn_values_cannot_add_components() {
        assert_eq!(dn_escape("a,b=c+d"), "a\\2cb\\3dc\\2bd");
    }

    #[test]
    fn domains() {
        assert_eq!(
            domain_of("Ann@Example.TEST").as_deref(),
            Some("example.test")
        );
        assert_eq!(domain_of("ann"), None);
        assert_eq!(domain_of("ann@"), None);
    }
}
