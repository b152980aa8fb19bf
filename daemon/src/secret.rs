//! Passwords: read from the config or a file, never printed.
use std::{fmt, path::Path};

use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("password file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("set password or password_file, not both")]
    Both,
}

/// For callers that report errors as text.
impl From<SecretError> for String {
    fn from(e: SecretError) -> String {
        e.to_string()
    }
}

/// A password. `Debug` and `Display` print stars, so a config or device
/// that ends up in a log line or an error message leaks nothing.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The first line of `path` (a trailing newline is not part of it).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            path: path.into(),
            source,
        })?;
        Ok(Secret(text.lines().next().unwrap_or("").to_string()))
    }

    /// A secret received as bytes (a SASL message): None unless UTF-8.
    pub fn from_utf8(bytes: Vec<u8>) -> Option<Self> {
        String::from_utf8(bytes).ok().map(Secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares with what a client sent in time that does not depend on
    /// where they differ (only the length shows).
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `password` or `password_file` from a device's config.
pub fn resolve(
    password: &Option<Secret>,
    file: &Option<std::path::PathBuf>,
) -> Result<Secret, SecretError> {
    match (password, file) {
        (Some(_), Some(_)) => Err(SecretError::Both),
        (Some(p), None) => Ok(p.clone()),
        (None, Some(f)) => Secret::from_file(f),
        (None, None) => Ok(Secret::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "\"********\" ********");
        assert_eq!(s.expose(), "hunter2");
    }
}
