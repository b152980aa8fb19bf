//! What imap-codec is given for a command whose extensions it does not
//! parse (ESEARCH's RETURN clause, LIST-EXTENDED, MULTIAPPEND, CATENATE,
//! SEARCHRES's `$`), and what was taken off it for the session to apply.
use std::borrow::Cow;

use super::{catenate, esearch, listext, listext::ListExt, multiappend, searchres};

#[derive(Default)]
pub struct Taken {
    /// SEARCH RETURN's options.
    pub search_return: Option<esearch::Return>,
    /// An extended LIST's request.
    pub list_ext: Option<ListExt>,
    /// The messages after the first of a MULTIAPPEND, each an APPEND.
    pub more_appends: Vec<Vec<u8>>,
    /// CATENATE's parts of each message of an APPEND (the first, then
    /// `more_appends`'), None for one given whole.
    pub catenated: Vec<Option<Vec<catenate::Part>>>,
    /// A `$` stood where a set goes (`searchres::MARK` now).
    pub dollar: bool,
}

pub fn prepare(command: &[u8]) -> (Cow<'_, [u8]>, Taken) {
    let mut taken = Taken::default();
    let mut input = Cow::Borrowed(command);
    if let Some((plain, options)) = esearch::split(command) {
        input = Cow::Owned(plain);
        taken.search_return = Some(options);
    } else if let Some((plain, ext)) = listext::split(command) {
        input = Cow::Owned(plain);
        taken.list_ext = Some(ext);
    } else if let Some(mut parts) = multiappend::split(command) {
        input = Cow::Owned(parts.remove(0));
        taken.more_appends = parts;
    }
    // RFC 6855's UTF8 wrapper is only a literal8's.
    if let Some(plain) = multiappend::unwrap_utf8(&input) {
        input = Cow::Owned(plain);
    }
    for append in &mut taken.more_appends {
        if let Some(plain) = multiappend::unwrap_utf8(append) {
            *append = plain;
        }
    }
    if let Some((plain, parts)) = catenate::split(&input) {
        input = Cow::Owned(plain);
        taken.catenated.push(Some(parts));
    } else {
        taken.catenated.push(None);
    }
    for append in &mut taken.more_appends {
        let parts = catenate::split(append).map(|(plain, parts)| {
            *append = plain;
            parts
        });
        taken.catenated.push(parts);
    }
    if let Some(marked) = searchres::mark(&input) {
        input = Cow::Owned(marked);
        taken.dollar = true;
    }
    (input, taken)
}
