//! Loading a config file the same way in every fulmar program: read it,
//! parse the TOML into the program's own type, check what serde cannot,
//! and name the file in every error.
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML, or not the program's shape (unknown key, wrong type).
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// Parsed, but a value is not acceptable (why, naming the key).
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    In {
        path: PathBuf,
        source: Box<ConfigError>,
    },
}

/// Checks written as `Err(format!(..))` become [`ConfigError::Invalid`].
impl From<String> for ConfigError {
    fn from(why: String) -> Self {
        ConfigError::Invalid(why)
    }
}

/// For callers that report errors as text.
impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}

/// Parses TOML into `T`.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    Ok(toml::from_str(text)?)
}

/// Reads `path` and parses it with `parse`; every error names the file.
pub fn load<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse(&text).map_err(|e| ConfigError::In {
        path: path.into(),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        port: u16,
    }

    fn parse(text: &str) -> Result<Sample, ConfigError> {
        let s: Sample = from_toml(text)?;
        if s.port == 0 {
            return Err(format!("port: {} is not a port", s.port).into());
        }
        Ok(s)
    }

    #[test]
    fn every_error_names_the_file_and_the_reason() {
        let dir = std::env::temp_dir().join(format!("fulmar-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.toml");
        let err = load(&path, parse).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        for (text, want) in [
            ("port = \"a\"", "invalid type"),
            ("prot = 1", "unknown field"),
            ("port = 0", "not a port"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = load(&path, parse).unwrap_err().to_string();
            assert!(
                err.starts_with(&path.display().to_string()) && err.contains(want),
                "{err}"
            );
        }
        std::fs::write(&path, "port = 25").unwrap();
        assert!(load(&path, parse).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
