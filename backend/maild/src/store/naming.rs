//! Names on disk: account directories from addresses, mailbox directories
//! from mailbox names (percent-encoded, so no name leaves its parent), and
//! maildir flag letters.
use super::{INBOX, StoreError};

/// The directory name of an address, or why it is not one.
pub fn account_dir_name(address: &str) -> Result<String, StoreError> {
    let lower = address.trim().to_ascii_lowercase();
    let bad = || StoreError::BadAddress(address.to_string());
    let (local, domain) = lower.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty() || domain.is_empty() || lower.len() > 254 || lower.contains(['\r', '\n']) {
        return Err(bad());
    }
    Ok(percent_encode(&lower, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'@' | b'+' | b'-')
    }))
}

/// `text` with every byte `plain` refuses, and a leading dot, as `%XX`:
/// the result is always one directory name.
fn percent_encode(text: &str, plain: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, b) in text.bytes().enumerate() {
        if plain(b) || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A mailbox's directory name: INBOX as is, other names percent-encoded
/// outside `A-Za-z0-9 _+-` and a non-leading `.`, so a name (hierarchy
/// delimiter `/` included) is always one directory inside the account.
pub fn mailbox_dir_name(name: &str) -> Result<String, StoreError> {
    if name.eq_ignore_ascii_case(INBOX) {
        return Ok(INBOX.into());
    }
    if name.is_empty() || name.len() > 255 || name.contains(['\r', '\n', '\0']) {
        return Err(StoreError::NoMailbox(name.to_string()));
    }
    Ok(percent_encode(name, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b' ' | b'_' | b'+' | b'-')
    }))
}

/// The mailbox name a directory holds, or None for anything else.
pub(super) fn mailbox_name(dir: &str) -> Option<String> {
    if dir.starts_with('.') {
        return None;
    }
    percent_decode(dir)
}

/// `%XX` escapes undone; None when one is broken or the result is not
/// UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Maildir flag letters sorted and without repeats (as the spec wants).
pub(super) fn sort_flags(flags: &str) -> String {
    let mut letters: Vec<char> = flags.chars().filter(char::is_ascii_alphabetic).collect();
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}
