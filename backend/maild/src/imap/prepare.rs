//! What imap-codec is given for a command whose extensions it does not
//! parse (ESEARCH's RETURN clause, LIST-EXTENDED, MULTIAPPEND, SEARCHRES's
//! `$`), and what was taken off it for the session to apply.
use std::borrow::Cow;

use super::{esearch, listext, listext::ListExt, multiappend, searchres};

#[derive(Default)]
pub struct Taken {
    /// SEARCH RETURN's options.
    pub search_return: Option<esearch::Return>,
    /// An extended LIST's request.
    pub list_ext: Option<ListExt>,
    /// The messages after the first of a MULTIAPPEND, each an APPEND.
    pub more_appends: Vec<Vec<u8>>,
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
    if let Some(marked) = searchres::mark(&input) {
        input = Cow::Owned(marked);
        taken.dollar = true;
    }
    (input, taken)
}
