//! A mailbox's keywords, in Dovecot's maildir model: each keyword gets a
//! lowercase letter, `a` for the first one used, `b` for the next, kept in
//! the mailbox's `keywords` file (one name per line, the line number is
//! the letter); a message carries its keywords' letters in its file name
//! beside the system flags' capitals. 26 letters: a mailbox holds at most
//! 26 keywords, and says so (PERMANENTFLAGS loses `\*` when full).
use std::{fs, io, path::Path};

use super::{StoreError, io_at, replace_file};

pub(super) const FILE: &str = "keywords";
/// Letters `a` to `z`.
pub const MAX: usize = 26;

/// The letter of the keyword at `index` in the table.
fn letter(index: usize) -> char {
    (b'a' + index as u8) as char
}

/// The table of a mailbox directory: names by letter.
pub(super) fn read(dir: &Path) -> Result<Vec<String>, StoreError> {
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().take(MAX).map(str::to_string).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_at(&path)(e)),
    }
}

/// The letter a table gives `name` (keywords match without regard to case).
pub fn letter_of(table: &[String], name: &str) -> Option<char> {
    table
        .iter()
        .position(|k| k.eq_ignore_ascii_case(name))
        .map(letter)
}

/// The keyword names of a message's flag letters.
pub fn names<'t>(letters: &str, table: &'t [String]) -> impl Iterator<Item = &'t str> {
    letters
        .chars()
        .filter(char::is_ascii_lowercase)
        .filter_map(|c| table.get((c as u8 - b'a') as usize).map(String::as_str))
}

/// The letters of `names` in a mailbox directory, giving each new name the
/// next letter (the table written durably before any file uses it), and
/// the table as it now is. `Limit` when the mailbox already holds 26
/// keywords. Callers hold the mailbox's lock, so two sessions never
/// give one letter twice.
pub(super) fn assign(dir: &Path, names: &[&str]) -> Result<(String, Vec<String>), StoreError> {
    let mut table = read(dir)?;
    let before = table.len();
    let mut letters = String::new();
    for name in names {
        let c = match letter_of(&table, name) {
            Some(c) => c,
            None if table.len() < MAX => {
                table.push(name.to_string());
                letter(table.len() - 1)
            }
            None => {
                return Err(StoreError::Limit {
                    what: "keywords per mailbox",
                    limit: MAX,
                });
            }
        };
        letters.push(c);
    }
    if table.len() != before {
        let text: String = table.iter().map(|k| format!("{k}\n")).collect();
        replace_file(dir, FILE, text.as_bytes())?;
    }
    Ok((letters, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_letters_once_and_the_table_is_bounded() {
        let dir = std::env::temp_dir().join(format!("fulmar-keywords-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(assign(&dir, &["$Label1", "Work"]).unwrap().0, "ab");
        let (letters, told) = assign(&dir, &["work", "later"]).unwrap();
        assert_eq!(letters, "bc");
        let table = read(&dir).unwrap();
        assert_eq!(table, ["$Label1", "Work", "later"]);
        assert_eq!(told, table);
        assert_eq!(
            names("FSac", &table).collect::<Vec<_>>(),
            ["$Label1", "later"]
        );
        let many: Vec<String> = (0..23).map(|i| format!("k{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(assign(&dir, &many).unwrap().0.len(), 23);
        assert!(matches!(
            assign(&dir, &["one-too-many"]),
            Err(StoreError::Limit { .. })
        ));
        assert_eq!(assign(&dir, &["K0"]).unwrap().0, "d");
        fs::remove_dir_all(&dir).unwrap();
    }
}
