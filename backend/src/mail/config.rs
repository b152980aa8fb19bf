//! `ROOT/config/mail.toml`: the instance's own config, on its volume so it
//! moves with it.
//!
//! ```toml
//! instance = "mail1"
//! lmtp = "198.18.0.21:24"          # on the instance's virtual IP
//! max_message_size = "50 MiB"      # optional; SIZE and DATA refuse larger
//! max_recipients = 100             # optional
//! ```
use std::{net::SocketAddr, path::Path};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The instance's name: in the lock, the log name and the greeting.
    pub instance: String,
    /// Where LMTP listens (the instance VIP, port 24 by convention).
    pub lmtp: SocketAddr,
    #[serde(default = "default_max_message_size", deserialize_with = "size")]
    pub max_message_size: u64,
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
}

fn default_max_message_size() -> u64 {
    50 << 20
}

fn default_max_recipients() -> usize {
    100
}

/// "123", "64 KiB", "50 MiB", "1 GiB".
fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 50 MiB)"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => return Err(format!("unknown size unit {other:?} (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

impl MailConfig {
    pub const RELATIVE_PATH: &'static str = "config/mail.toml";

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.instance.is_empty()
            || !config
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "instance {:?}: letters, digits, '-' and '_' only (it names the log file)",
                config.instance
            ));
        }
        if config.max_recipients == 0 || config.max_message_size == 0 {
            return Err("max_recipients and max_message_size must be above zero".into());
        }
        Ok(config)
    }

    pub fn load(root: &Path) -> Result<Self, String> {
        let path = root.join(Self::RELATIVE_PATH);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bad_configs() {
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("7"), Ok(7));
        assert!(parse_size("5 parsecs").unwrap_err().contains("unit"));
        let ok = MailConfig::parse("instance = \"mail1\"\nlmtp = \"198.18.0.1:24\"\n").unwrap();
        assert_eq!((ok.max_message_size, ok.max_recipients), (50 << 20, 100));
        let sized = "instance = \"m\"\nlmtp = \"198.18.0.1:24\"\nmax_message_size = \"1 MiB\"\n";
        assert_eq!(MailConfig::parse(sized).unwrap().max_message_size, 1 << 20);
        assert!(
            MailConfig::parse("instance = \"../x\"\nlmtp = \"198.18.0.1:24\"\n")
                .unwrap_err()
                .contains("letters")
        );
        assert!(MailConfig::parse("instance = \"m\"\nlmtp = \"nowhere\"\n").is_err());
        assert!(
            MailConfig::parse("instance = \"m\"\nlmtp = \"198.18.0.1:24\"\nextra = 1\n")
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
