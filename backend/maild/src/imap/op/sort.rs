//! SORT and THREAD over the selected view: the search keys pick the
//! messages (as SEARCH would), `imap::sort` orders them and
//! `imap::thread` threads them.
use imap_codec::imap_types::{
    core::Charset,
    extensions::{sort::SortCriterion, thread::ThreadingAlgorithm},
    search::SearchKey,
};

use crate::imap::{
    mime,
    search::internal_time,
    session::Session,
    sort::{self, Keys},
    thread,
};

/// RFC 5256: a server must take US-ASCII and UTF-8.
fn charset_ok(charset: &Charset) -> bool {
    let c = charset.as_ref().to_ascii_uppercase();
    c == "US-ASCII" || c == "UTF-8"
}

impl Session {
    /// The sort keys of the messages `key` matches (one expunged meanwhile
    /// sorts with empty headers: its file is gone).
    fn keyed(&self, key: &SearchKey<'static>, uid: bool) -> Vec<Keys> {
        let sel = self.selected();
        self.matching(key)
            .into_iter()
            .map(|i| {
                let m = &sel.view[i];
                let raw = std::fs::read(&m.path).unwrap_or_default();
                let parsed = mime::parse(&raw);
                let id = if uid { m.uid } else { i as u32 + 1 };
                Keys::of(id, i, internal_time(m), m.size, &parsed)
            })
            .collect()
    }

    pub(in crate::imap) fn sort(
        &mut self,
        tag: &imap_codec::imap_types::core::Tag,
        criteria: &[SortCriterion],
        charset: &Charset,
        search: SearchKey<'static>,
        uid: bool,
    ) {
        if !charset_ok(charset) {
            self.tagged(tag, "NO [BADCHARSET (US-ASCII UTF-8)] Unknown charset");
            return;
        }
        let mut keyed = tokio::task::block_in_place(|| self.keyed(&search, uid));
        sort::sort(&mut keyed, criteria);
        let list: String = keyed.iter().map(|k| format!(" {}", k.id)).collect();
        self.line(&format!("* SORT{list}"));
        self.tagged(tag, "OK SORT completed");
    }

    pub(in crate::imap) fn thread(
        &mut self,
        tag: &imap_codec::imap_types::core::Tag,
        algorithm: &ThreadingAlgorithm,
        charset: &Charset,
        search: SearchKey<'static>,
        uid: bool,
    ) {
        let thread = match algorithm {
            ThreadingAlgorithm::OrderedSubject => thread::ordered_subject,
            ThreadingAlgorithm::References => thread::references,
            _ => {
                self.tagged(
                    tag,
                    "BAD Offered: THREAD=ORDEREDSUBJECT and THREAD=REFERENCES",
                );
                return;
            }
        };
        if !charset_ok(charset) {
            self.tagged(tag, "NO [BADCHARSET (US-ASCII UTF-8)] Unknown charset");
            return;
        }
        let keyed = tokio::task::block_in_place(|| self.keyed(&search, uid));
        let threads = thread(keyed);
        self.line(format!("* THREAD {threads}").trim_end());
        self.tagged(tag, "OK THREAD completed");
    }
}
