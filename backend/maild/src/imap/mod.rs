//! IMAP4rev1 (RFC 3501) on the instance's maildirs, with the extensions
//! `Session::capabilities` lists (COMPRESS=DEFLATE's streams are
//! `fulmar_mailproto::deflate`).
//!
//! Where a command ends is found first (`fulmar_mailproto::imap::frame`:
//! each byte looked at once), then imap-codec parses it whole; the session keeps
//! the selected mailbox's view (UIDs in sequence order) and brings it up to
//! date whenever the store says something changed: other sessions' flag
//! changes and expunges and new deliveries reach a session at its next
//! command, or at once while it IDLEs. Input is bounded before it is
//! buffered: a command line by `max_line`, a command's literals by
//! `max_prelogin_bytes` before login and by `max_message_size` after it.
//!
//! - [`session`]: the connection, its bounds and its view; `dispatch`:
//!   which command runs in which state; `op`: the command groups.
//! - [`mime`], [`search`], [`wire`]: message structure, search keys, the
//!   response syntax.
pub mod binary;
pub mod catenate;
mod dispatch;
pub mod esearch;
mod lex;
pub mod listext;
pub mod mime;
pub mod multiappend;
pub mod mutf7;
mod op;
pub mod prepare;
pub mod ranges;
pub mod search;
pub mod searchres;
mod session;
pub mod sort;
pub mod thread;
pub mod wire;

use std::{io, sync::Arc};

use imap_codec::imap_types::{fetch::Section, mailbox::Mailbox};
use tokio::net::TcpListener;

use crate::{
    Service, net,
    store::{INBOX, StoreError},
};
use session::Session;
use wire::string;

pub async fn serve(listener: TcpListener, service: Arc<Service>) -> io::Result<()> {
    net::accept(listener, "imap", |socket, peer| {
        let mut session = Session::new(service.clone(), Box::new(socket), peer);
        async move { session.run().await }
    })
    .await
}

/// IMAPS: IMAP inside TLS from the first byte (RFC 8314).
pub async fn serve_tls(
    listener: TcpListener,
    service: Arc<Service>,
    acceptor: tokio_rustls::TlsAcceptor,
) -> io::Result<()> {
    let handshake = service.config.prelogin_timeout;
    net::accept_tls(listener, "imaps", acceptor, handshake, move |tls, peer| {
        let mut session = Session::new(service.clone(), Box::new(tls), peer);
        session.tls = true;
        async move { session.run().await }
    })
    .await
}

fn mailbox_name(m: &Mailbox) -> String {
    match m {
        Mailbox::Inbox => INBOX.into(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref())
            .trim_end_matches('/')
            .to_string(),
    }
}

/// LIST wildcards: `*` matches anything, `%` anything but the delimiter.
/// One pass per pattern byte over the name's positions (O(pattern ×
/// name)): backtracking would be exponential in the number of wildcards.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // at[i]: the pattern so far can match name[..i].
    let mut at = vec![false; name.len() + 1];
    at[0] = true;
    let mut next = at.clone();
    for (k, &p) in pattern.iter().enumerate() {
        // `**`, `%*` and `*%` match what `*` alone does.
        if p == b'*' && k > 0 && pattern[k - 1] == b'*' {
            continue;
        }
        match p {
            b'*' | b'%' => {
                let mut on = false;
                for i in 0..=name.len() {
                    if p == b'%' && i > 0 && name[i - 1] == b'/' {
                        on = false;
                    }
                    on |= at[i];
                    next[i] = on;
                }
            }
            c => {
                next[0] = false;
                for i in 0..name.len() {
                    next[i + 1] = at[i] && name[i] == c;
                }
            }
        }
        std::mem::swap(&mut at, &mut next);
        if !at.contains(&true) {
            return false;
        }
    }
    at[name.len()]
}

fn store_error(e: &StoreError) -> String {
    match e {
        StoreError::NoMailbox(_) => format!("NO [NONEXISTENT] {e}"),
        StoreError::MailboxExists(_) => format!("NO [ALREADYEXISTS] {e}"),
        StoreError::Refused(_) | StoreError::BadAddress(_) => format!("NO [CANNOT] {e}"),
        StoreError::Gone => format!("NO [EXPUNGEISSUEDALREADY] {e}"),
        StoreError::OverQuota { .. } => format!("NO [OVERQUOTA] {e}"),
        StoreError::Limit { .. } => format!("NO [LIMIT] {e}"),
        StoreError::NoAccount(_) | StoreError::Io { .. } => {
            tracing::error!("store: {e}");
            "NO [SERVERBUG] The store failed; the error is logged".into()
        }
    }
}

/// A UID set in the short form UIDPLUS answers use.
fn uid_set(uids: &[u32]) -> String {
    ranges::render(&ranges::runs(uids))
}

/// A section as the FETCH response names it: `1.2.HEADER.FIELDS (A B)`.
fn section_spec(section: Option<&Section>) -> String {
    use imap_codec::imap_types::{core::AString, fetch::Part};
    let part = |p: &Part| {
        p.0.as_ref()
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(".")
    };
    let with = |p: &Option<Part>, what: &str| match p {
        Some(p) => format!("{}.{what}", part(p)),
        None => what.to_string(),
    };
    let names = |n: &[AString]| {
        n.iter()
            .map(|a| {
                let mut out = Vec::new();
                let bytes: &[u8] = a.as_ref();
                if bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                {
                    out.extend_from_slice(bytes);
                } else {
                    string(&mut out, bytes);
                }
                String::from_utf8_lossy(&out).into_owned()
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    match section {
        None => String::new(),
        Some(Section::Part(p)) => part(p),
        Some(Section::Header(p)) => with(p, "HEADER"),
        Some(Section::Text(p)) => with(p, "TEXT"),
        Some(Section::Mime(p)) => format!("{}.MIME", part(p)),
        Some(Section::HeaderFields(p, n)) => {
            format!("{} ({})", with(p, "HEADER.FIELDS"), names(n.as_ref()))
        }
        Some(Section::HeaderFieldsNot(p, n)) => {
            format!("{} ({})", with(p, "HEADER.FIELDS.NOT"), names(n.as_ref()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        assert!(wildcard(b"*", b"Archive/2024"));
        assert!(!wildcard(b"%", b"Archive/2024"));
        assert!(wildcard(b"%", b"Archive"));
        assert!(wildcard(b"Archive/%", b"Archive/2024"));
        assert!(wildcard(b"A*4", b"Archive/2024"));
        assert!(!wildcard(b"Sent", b"Sent Items"));
        assert!(wildcard(b"%/%", b"Archive/2024"));
        assert!(!wildcard(b"%/%", b"Archive/2024/05"));
        assert!(wildcard(b"*/05", b"Archive/2024/05"));
        assert!(wildcard(b"Arch%", b"Archive"));
        assert!(!wildcard(b"", b"Archive"));
        assert!(wildcard(b"", b""));
        assert!(wildcard(b"%*%", b"a/b"));
        // Many wildcards and a miss at the end: linear, not exponential.
        let name = [b'a'; 200];
        let pattern = [b"*a".repeat(60), b"x".to_vec()].concat();
        assert!(!wildcard(&pattern, &name));
        assert!(wildcard(&b"*a".repeat(60), &name));
    }
}
