//! Mail addresses as account names, and the password hash slapd checks.
use rand::RngCore;
use sha_crypt::{CustomizedPasswordHasher, Params, ShaCrypt};

use crate::error::ProvisionError;

/// Checks `addr` is `local@domain` with a dot-atom local part and a DNS
/// domain, and returns it in lower case (the account's uid).
pub fn normalize(addr: &str) -> Result<String, ProvisionError> {
    let bad = |why: &str| ProvisionError::Address {
        address: addr.to_string(),
        why: why.to_string(),
    };
    let (local, domain) = addr.rsplit_once('@').ok_or_else(|| bad("no @"))?;
    if local.is_empty() || local.len() > 64 {
        return Err(bad("the local part must be 1 to 64 characters"));
    }
    // RFC 5322 dot-atom: atext runs separated by single dots. Quoted local
    // parts are refused; they are never worth their trouble.
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    if local
        .split('.')
        .any(|run| run.is_empty() || !run.chars().all(atext))
    {
        return Err(bad("the local part is not a dot-atom"));
    }
    domain_name(domain).map_err(|e| bad(&e.to_string()))?;
    Ok(addr.to_ascii_lowercase())
}

/// Checks a DNS domain name (at least two labels) and returns it in lower
/// case.
pub fn domain_name(domain: &str) -> Result<String, ProvisionError> {
    let labels: Vec<&str> = domain.split('.').collect();
    if domain.len() > 253 || labels.len() < 2 {
        return Err(ProvisionError::Domain {
            domain: domain.to_string(),
        });
    }
    for l in &labels {
        let ok = !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(ProvisionError::DomainLabel {
                domain: domain.to_string(),
                label: l.to_string(),
            });
        }
    }
    Ok(domain.to_ascii_lowercase())
}

pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// `{CRYPT}` SHA-512-crypt with a random salt: glibc's crypt(3) in slapd
/// verifies it, and it costs more to brute-force than `{SSHA}`.
pub fn hash_password(password: &str) -> Result<String, ProvisionError> {
    if password.is_empty() {
        return Err(ProvisionError::EmptyPassword);
    }
    // 12 bytes encode to 16 salt characters, crypt(3)'s maximum.
    let mut salt = [0u8; 12];
    rand::rng().fill_bytes(&mut salt);
    let hash = ShaCrypt::SHA512
        .hash_password_customized(password.as_bytes(), &salt, None, None, Params::RECOMMENDED)
        .map_err(|e| ProvisionError::Hash(e.to_string()))?;
    Ok(format!("{{CRYPT}}{hash}"))
}

/// A value that is already a hash slapd understands (`{SCHEME}...`).
pub fn is_hash(value: &str) -> bool {
    const SCHEMES: [&str; 9] = [
        "{CRYPT}",
        "{SSHA}",
        "{SHA}",
        "{SMD5}",
        "{MD5}",
        "{SSHA256}",
        "{SSHA512}",
        "{ARGON2}",
        "{PBKDF2",
    ];
    let upper = value.to_ascii_uppercase();
    SCHEMES.iter().any(|s| upper.starts_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            normalize("Ann.Lee+tag@Example.TEST").unwrap(),
            "ann.lee+tag@example.test"
        );
        for bad in [
            "ann",
            "@example.test",
            "ann@",
            "ann@localhost",
            "a..b@example.test",
            ".a@example.test",
            "ann@exa_mple.test",
            "ann@-x.test",
            "a(b)@example.test",
            "a*)(uid=*@example.test",
            "ann@example.test\r\nx",
            "\"a b\"@example.test",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        assert!(normalize(&format!("{}@example.test", "a".repeat(65))).is_err());
    }

    #[test]
    fn hashes_are_salted_sha512_crypt() {
        let a = hash_password("secret").unwrap();
        let b = hash_password("secret").unwrap();
        assert!(a.starts_with("{CRYPT}$6$"), "{a}");
        assert_ne!(a, b);
        assert!(is_hash(&a) && is_hash("{ssha}abc") && !is_hash("secret"));
        assert!(hash_password("").is_err());
    }
}
