//! The command grammar every fulmar tool shares (iproute2's): a keyword may
//! be shortened to any prefix that names only one choice.

/// Picks the keyword `word` abbreviates: an exact match, else the only
/// keyword it prefixes.
pub fn keyword<'a>(word: &str, choices: &[&'a str], what: &str) -> Result<&'a str, KeywordError> {
    if let Some(exact) = choices.iter().find(|c| **c == word) {
        return Ok(exact);
    }
    let hits: Vec<&str> = choices
        .iter()
        .copied()
        .filter(|c| !word.is_empty() && c.starts_with(word))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(KeywordError::Unknown {
            what: what.into(),
            word: word.into(),
            choices: choices.join(", "),
        }),
        many => Err(KeywordError::Ambiguous {
            what: what.into(),
            word: word.into(),
            matches: many.join(", "),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeywordError {
    #[error("unknown {what} {word:?}; expected one of: {choices}")]
    Unknown {
        what: String,
        word: String,
        choices: String,
    },
    #[error("{what} {word:?} is ambiguous: {matches}; type more letters")]
    Ambiguous {
        what: String,
        word: String,
        matches: String,
    },
}

/// For the tools' parsers, which report errors as text.
impl From<KeywordError> for String {
    fn from(e: KeywordError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::keyword;

    #[test]
    fn exact_prefix_ambiguous_unknown() {
        let choices = ["show", "set", "status"];
        assert_eq!(keyword("show", &choices, "verb"), Ok("show"));
        assert_eq!(keyword("sh", &choices, "verb"), Ok("show"));
        assert!(
            keyword("s", &choices, "verb")
                .unwrap_err()
                .to_string()
                .contains("ambiguous")
        );
        assert!(
            keyword("x", &choices, "verb")
                .unwrap_err()
                .to_string()
                .contains("unknown verb")
        );
        assert!(keyword("", &choices, "verb").is_err());
    }
}
