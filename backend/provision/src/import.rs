//! Bulk import: accounts from CSV (a header row names the columns) or
//! LDIF (entries exported from another directory).
//!
//! CSV columns: `address` (required), `password` (clear text, hashed
//! here) or `password_hash` (`{SCHEME}...`, stored as given), `aliases`
//! (separated by spaces), `name`, `instance` (placement forced).
//!
//! LDIF: per entry the account address is `uid` when it is an address,
//! else the first `mailLocalAddress`, else `mail`; the other
//! `mailLocalAddress` values become aliases; `userPassword` is stored as
//! given when it is a hash and hashed otherwise; `cn` is the name; a
//! `mailHost` must name a configured instance and forces placement.
use base64::Engine;

use crate::{address, config::ProvisionConfig, error::ProvisionError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    Clear(String),
    Hash(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub address: String,
    pub aliases: Vec<String>,
    pub name: Option<String>,
    pub password: Password,
    pub instance: Option<String>,
    /// Where it came from, for error messages: "line 12", "entry 3".
    pub origin: String,
}

/// Checks a candidate's addresses and instance against the config.
fn finish(mut c: Candidate, config: &ProvisionConfig) -> Result<Candidate, ProvisionError> {
    c.address = address::normalize(&c.address).map_err(|e| e.at_row(&c.origin))?;
    for a in &mut c.aliases {
        *a = address::normalize(a).map_err(|e| e.at_row(&c.origin))?;
    }
    if let Some(i) = &c.instance
        && !config.instance.contains_key(i)
    {
        return Err(crate::config::unknown_instance(config, i).at_row(&c.origin));
    }
    match &c.password {
        Password::Clear(p) if p.is_empty() => {
            Err(ProvisionError::import(&c.origin, "empty password"))
        }
        Password::Hash(h) if !address::is_hash(h) => Err(ProvisionError::import(
            &c.origin,
            "password_hash is not {SCHEME}-prefixed",
        )),
        _ => Ok(c),
    }
}

pub fn csv(text: &str, config: &ProvisionConfig) -> Result<Vec<Candidate>, ProvisionError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| ProvisionError::import("CSV header", e.to_string()))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    const KNOWN: [&str; 6] = [
        "address",
        "password",
        "password_hash",
        "aliases",
        "name",
        "instance",
    ];
    if let Some(h) = headers.iter().find(|h| !KNOWN.contains(&h.as_str())) {
        return Err(ProvisionError::import(
            "CSV header",
            format!("unknown column {h:?} (known: {})", KNOWN.join(", ")),
        ));
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let address =
        col("address").ok_or_else(|| ProvisionError::import("CSV header", "no address column"))?;
    let (clear, hashed) = (col("password"), col("password_hash"));
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let origin = format!("line {}", n + 2);
        let record = record.map_err(|e| ProvisionError::import(&origin, e.to_string()))?;
        let get = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .filter(|v| !v.is_empty())
                .map(String::from)
        };
        let password = match (get(clear), get(hashed)) {
            (Some(p), None) => Password::Clear(p),
            (None, Some(h)) => Password::Hash(h),
            (Some(_), Some(_)) => {
                return Err(ProvisionError::import(
                    origin,
                    "both password and password_hash",
                ));
            }
            (None, None) => return Err(ProvisionError::import(origin, "no password")),
        };
        let candidate = Candidate {
            address: get(Some(address))
                .ok_or_else(|| ProvisionError::import(&origin, "no address"))?,
            aliases: get(col("aliases"))
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
            name: get(col("name")),
            password,
            instance: get(col("instance")),
            origin,
        };
        out.push(finish(candidate, config)?);
    }
    Ok(out)
}

pub fn ldif(text: &str, config: &ProvisionConfig) -> Result<Vec<Candidate>, ProvisionError> {
    let mut out = Vec::new();
    for (n, entry) in ldif_entries(text)?.into_iter().enumerate() {
        let origin = format!("entry {}", n + 1);
        let values = |attr: &str| -> Vec<String> {
            entry
                .iter()
                .filter(|(a, _)| a.eq_ignore_ascii_case(attr))
                .map(|(_, v)| v.clone())
                .collect()
        };
        if !values("changetype").is_empty() {
            return Err(ProvisionError::import(
                origin,
                "change records are not imported, only entries",
            ));
        }
        let mut locals = values("mailLocalAddress");
        let address = values("uid")
            .into_iter()
            .find(|u| u.contains('@'))
            .or_else(|| (!locals.is_empty()).then(|| locals[0].clone()))
            .or_else(|| values("mail").into_iter().next())
            .ok_or_else(|| {
                ProvisionError::import(&origin, "no address (uid, mailLocalAddress or mail)")
            })?;
        locals.retain(|a| !a.eq_ignore_ascii_case(&address));
        let password = values("userPassword")
            .into_iter()
            .next()
            .ok_or_else(|| ProvisionError::import(&origin, "no userPassword"))?;
        let password = if address::is_hash(&password) {
            Password::Hash(password)
        } else {
            Password::Clear(password)
        };
        let instance = match values("mailHost").first() {
            Some(h) => Some(
                config
                    .instance_by_host(h)
                    .ok_or_else(|| {
                        ProvisionError::import(
                            &origin,
                            format!("mailHost {h} is no configured instance"),
                        )
                    })?
                    .to_string(),
            ),
            None => None,
        };
        let candidate = Candidate {
            address,
            aliases: locals,
            name: values("cn").into_iter().next(),
            password,
            instance,
            origin,
        };
        out.push(finish(candidate, config)?);
    }
    Ok(out)
}

/// RFC 2849 content records: (attribute, value) pairs per entry, folded
/// lines joined, `::` values base64-decoded, comments dropped.
fn ldif_entries(text: &str) -> Result<Vec<Vec<(String, String)>>, ProvisionError> {
    let mut entries = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix(' ') {
            match lines.last_mut() {
                Some((_, l)) => l.push_str(rest),
                None => {
                    let at = format!("LDIF line {}", n + 1);
                    return Err(ProvisionError::import(at, "continuation of nothing"));
                }
            }
        } else {
            lines.push((n + 1, raw.to_string()));
        }
    }
    for (n, line) in lines {
        if line.is_empty() {
            if !current.is_empty() {
                entries.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with('#') || (current.is_empty() && line.starts_with("version:")) {
            continue;
        }
        let (attr, rest) = line
            .split_once(':')
            .ok_or_else(|| ProvisionError::import(format!("LDIF line {n}"), "no \"attribute:\""))?;
        let value = if let Some(b64) = rest.strip_prefix(':') {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    ProvisionError::import(format!("LDIF line {n}"), format!("base64: {e}"))
                })?;
            String::from_utf8(bytes).map_err(|_| {
                ProvisionError::import(format!("LDIF line {n}"), "value is not UTF-8")
            })?
        } else if rest.starts_with('<') {
            return Err(ProvisionError::import(
                format!("LDIF line {n}"),
                "URL values are not imported",
            ));
        } else {
            rest.trim_start().to_string()
        };
        current.push((attr.trim().to_string(), value));
    }
    if !current.is_empty() {
        entries.push(current);
    }
    if entries.is_empty() {
        return Err(ProvisionError::import("LDIF", "no LDIF entries"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProvisionConfig {
        crate::config::test_config("")
    }

    #[test]
    fn csv_rows() {
        let text = "address,password,aliases,instance\n\
                    Ann@Example.test, s3cret ,ann.lee@example.test a@example.test,mail1\n\
                    bob@example.test,\"with,comma\",,\n";
        let got = csv(text, &config()).unwrap();
        assert_eq!(got[0].address, "ann@example.test");
        assert_eq!(got[0].aliases.len(), 2);
        assert_eq!(got[0].password, Password::Clear("s3cret".into()));
        assert_eq!(got[0].instance.as_deref(), Some("mail1"));
        assert_eq!(got[1].password, Password::Clear("with,comma".into()));
        assert_eq!(got[1].instance, None);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let c = config();
        let cases = [
            ("address,pw\nx@y.test,1\n", "unknown column \"pw\""),
            ("password\nx\n", "no address column"),
            (
                "address,password\nnot-an-address,x\n",
                "line 2: invalid address",
            ),
            (
                "address,password\na@b.test,x\nc@d.test,\n",
                "line 3: no password",
            ),
            (
                "address,password,instance\na@b.test,x,zz\n",
                "unknown instance \"zz\"",
            ),
            ("address,password_hash\na@b.test,plain\n", "not {SCHEME}"),
        ];
        for (text, want) in cases {
            let e = csv(text, &c).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn ldif_entries_folded_and_base64() {
        let text = "version: 1\n# exported\n\
                    dn: uid=ann,ou=people,dc=old\nuid: ann\nmailLocalAddress: ann@example.test\n\
                    mailLocalAddress: ann.lee@exam\n ple.test\nuserPassword:: e1NTSEF9YWJj\n\
                    mailHost: 198.18.9.11\ncn: Ann Lee\n\n\
                    dn: uid=bob@example.test,ou=people,dc=old\nuid: bob@example.test\n\
                    userPassword: plain\n";
        let got = ldif(text, &config()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].address, "ann@example.test");
        assert_eq!(got[0].aliases, ["ann.lee@example.test"]);
        assert_eq!(got[0].password, Password::Hash("{SSHA}abc".into()));
        assert_eq!(got[0].instance.as_deref(), Some("mail1"));
        assert_eq!(got[0].name.as_deref(), Some("Ann Lee"));
        assert_eq!(got[1].password, Password::Clear("plain".into()));
    }

    #[test]
    fn ldif_errors() {
        let c = config();
        let cases = [
            ("dn: x\nuid: a@b.test\n", "no userPassword"),
            (
                "dn: x\nuid: a@b.test\nuserPassword: p\nmailHost: 198.18.9.99\n",
                "no configured",
            ),
            ("dn: x\nchangetype: delete\n", "change records"),
            ("dn: x\nuserPassword: p\n", "no address"),
            ("dn: x\nuid:: !!!\n", "base64"),
            ("", "no LDIF entries"),
        ];
        for (text, want) in cases {
            let e = ldif(text, &c).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
