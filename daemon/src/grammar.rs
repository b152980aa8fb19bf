//! The command grammar every fulmar tool shares (iproute2's): a keyword may
//! be shortened to any prefix that names only one choice.

/// Picks the keyword `word` abbreviates: an exact match, else the only
/// keyword it prefixes.
pub fn keyword<'a>(word: &str, choices: &[&'a str], what: &str) -> Result<&'a str, String> {
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
        [] => Err(format!(
            "unknown {what} {word:?}; expected one of: {}",
            choices.join(", ")
        )),
        many => Err(format!(
            "{what} {word:?} is ambiguous: {}; type more letters",
            many.join(", ")
        )),
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
                .contains("ambiguous")
        );
        assert!(
            keyword("x", &choices, "verb")
                .unwrap_err()
                .contains("unknown verb")
        );
        assert!(keyword("", &choices, "verb").is_err());
    }
}
