//! One IMAP connection: its state (the account, the selected mailbox's
//! view), reading commands within the line and literal bounds, writing
//! answers, and bringing the view up to date with the store.
use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bounded_static::IntoBoundedStatic;
use fulmar_mailproto::imap::frame::{self, Frame, Framer, Limits, Over};
use imap_codec::{
    CommandCodec,
    decode::Decoder,
    imap_types::{command::Command, core::Tag, sequence::SequenceSet},
};
use tokio::{io::AsyncReadExt, sync::watch};

use super::search::in_set;
use super::store_error;
use super::wire::{flag_list, mailbox_flags, permanent_flags};
use super::{esearch, listext, op::condstore::modseq_item, prepare};
use crate::{
    Service,
    net::{self, Io},
    store::{Message, StoreError},
};

/// After login a silent client gets RFC 3501's 30 minutes (before it,
/// `prelogin_timeout` bounds the whole phase).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A client that reads nothing this long after login is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Failed logins on one connection before it is closed.
pub(super) const MAX_AUTH_FAILURES: u32 = 3;

/// The selected mailbox as this session last told its client.
pub(super) struct Selected {
    pub(super) name: String,
    pub(super) read_only: bool,
    pub(super) uid_validity: u32,
    /// In sequence-number order (= UID order). While it is what the store
    /// lists, it is the store's listing itself, shared with every session
    /// that is up to date; a change of its own copies it first.
    pub(super) view: Arc<Vec<Message>>,
    /// The mailbox's keyword names by letter, as last told (FLAGS).
    pub(super) keywords: Vec<String>,
    /// UIDs that are \Recent for this session (RFC 3501 2.3.2).
    pub(super) recent: std::collections::HashSet<u32>,
    /// HIGHESTMODSEQ of the last sync whose changes were all told.
    pub(super) highest_modseq: u64,
}

impl Selected {
    /// The view to change: this session's own copy from here on.
    pub(super) fn view_mut(&mut self) -> &mut Vec<Message> {
        Arc::make_mut(&mut self.view)
    }

    /// A message's FLAGS as this session shows them.
    pub(super) fn flags(&self, m: &Message) -> String {
        flag_list(&m.flags, &self.keywords, self.recent.contains(&m.uid))
    }
}

pub(super) enum Flow {
    Continue,
    Close,
}

pub(super) struct Session {
    pub(super) service: Arc<Service>,
    pub(super) io: Option<Box<dyn Io>>,
    pub(super) buf: Vec<u8>,
    /// Where the command at the front of `buf` ends.
    framer: Framer,
    pub(super) out: Vec<u8>,
    pub(super) peer: SocketAddr,
    /// The end client: the peer, or what a trusted proxy says in ID.
    pub(super) client: IpAddr,
    pub(super) tls: bool,
    /// COMPRESS=DEFLATE is on.
    pub(super) compressed: bool,
    pub(super) account: Option<String>,
    pub(super) selected: Option<Selected>,
    pub(super) changes: watch::Receiver<u64>,
    pub(super) auth_failures: u32,
    /// The store lost a message of the view while this session could not
    /// say so (FETCH, STORE, SEARCH by number): the next command that may
    /// send EXPUNGE looks again even if nothing changed since.
    pub(super) owed_expunges: bool,
    /// The RETURN options of the SEARCH being handled (ESEARCH).
    pub(super) search_return: Option<esearch::Return>,
    /// The options of the extended LIST being handled (LIST-EXTENDED).
    pub(super) list_ext: Option<listext::ListExt>,
    /// The messages after the first of a MULTIAPPEND, each as an APPEND.
    pub(super) more_appends: Vec<Command<'static>>,
    /// CATENATE's parts of each message of the APPEND being handled.
    pub(super) catenated: Vec<Option<Vec<super::catenate::Part>>>,
    /// SEARCHRES: the UIDs `$` names (ascending), and whether the command
    /// being handled used it (as `searchres::MARK`).
    pub(super) saved: Vec<u32>,
    pub(super) dollar: bool,
    /// CONDSTORE is on: FETCH responses carry MODSEQ (RFC 7162 3.1).
    pub(super) condstore: bool,
    /// QRESYNC is on: VANISHED replaces EXPUNGE (RFC 7162 3.2.10).
    pub(super) qresync: bool,
    /// UTF8=ACCEPT is on: mailbox names are UTF-8 both ways (RFC 6855).
    pub(super) utf8: bool,
    /// IMAP4rev2 is on (RFC 9051): UTF-8 names, no \Recent, SEARCH
    /// answered by ESEARCH, SELECT tells the mailbox's LIST.
    pub(super) rev2: bool,
    deadline: net::Deadline,
}

/// How a session is told of messages gone from its view: `removed` are
/// (index, UID) in descending index order, as they were taken out.
pub(super) fn expunged_lines(qresync: bool, removed: &[(usize, u32)]) -> Vec<String> {
    if qresync && !removed.is_empty() {
        let mut uids: Vec<u32> = removed.iter().map(|r| r.1).collect();
        uids.sort_unstable();
        return vec![format!("* VANISHED {}", super::uid_set(&uids))];
    }
    removed
        .iter()
        .map(|(i, _)| format!("* {} EXPUNGE", i + 1))
        .collect()
}

impl Session {
    pub(super) fn new(service: Arc<Service>, io: Box<dyn Io>, peer: SocketAddr) -> Self {
        let deadline = net::Deadline::after(service.config.prelogin_timeout);
        let changes = service.store.watch();
        Self {
            service,
            io: Some(io),
            buf: Vec::new(),
            framer: Framer::new(),
            out: Vec::new(),
            peer,
            client: peer.ip(),
            tls: false,
            compressed: false,
            account: None,
            selected: None,
            changes,
            auth_failures: 0,
            owed_expunges: false,
            search_return: None,
            list_ext: None,
            more_appends: Vec::new(),
            catenated: Vec::new(),
            saved: Vec::new(),
            dollar: false,
            condstore: false,
            qresync: false,
            utf8: false,
            rev2: false,
            deadline,
        }
    }

    pub(super) fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID NAMESPACE UIDPLUS MOVE IDLE UNSELECT SPECIAL-USE ENABLE \
             QUOTA QUOTA=RES-STORAGE CHILDREN SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES BINARY ESEARCH CONDSTORE QRESYNC LIST-EXTENDED LIST-STATUS MULTIAPPEND CATENATE SEARCHRES UTF8=ACCEPT STATUS=SIZE",
        );
        if self.account.is_some() && !self.compressed {
            caps += " COMPRESS=DEFLATE";
        }
        if self.account.is_none() {
            if self.service.tls.is_some() && !self.tls {
                caps += " STARTTLS";
            }
            caps += " AUTH=PLAIN";
        }
        caps
    }

    /// A mailbox name as the client gave it, as the store keeps it
    /// (modified UTF-7).
    pub(super) fn name_of(&self, mailbox: &imap_codec::imap_types::mailbox::Mailbox) -> String {
        let name = super::mailbox_name(mailbox);
        if self.utf8 {
            super::mutf7::encode(&name)
        } else {
            name
        }
    }

    /// Writes a mailbox name as the client reads it: UTF-8 once it enabled
    /// UTF8=ACCEPT (a name that is not valid modified UTF-7 as it is).
    pub(super) fn write_name(&self, out: &mut Vec<u8>, name: &str) {
        match super::mutf7::decode(name).filter(|_| self.utf8) {
            Some(utf8) => super::wire::utf8_string(out, &utf8),
            None => super::wire::string(out, name.as_bytes()),
        }
    }

    pub(super) fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub(super) fn tagged(&mut self, tag: &Tag, text: &str) {
        self.line(&format!("{} {text}", tag.as_ref()));
    }

    /// How long a read, a write or a TLS handshake may wait: before login
    /// what is left of `prelogin_timeout` (a client must log in by then,
    /// however busy it keeps the connection).
    pub(super) fn patience(&self, after_login: Duration) -> Duration {
        self.deadline.patience(self.account.is_some(), after_login)
    }

    pub(super) async fn flush(&mut self) -> io::Result<()> {
        let limit = self.patience(WRITE_TIMEOUT);
        if let Some(io) = self.io.as_mut() {
            net::write_within(io, &self.out, limit).await?;
        }
        self.out.clear();
        Ok(())
    }

    /// Reads more input; false at end of input or on the idle timeout.
    pub(super) async fn fill(&mut self) -> io::Result<bool> {
        let limit = self.patience(IDLE_TIMEOUT);
        let io = self.io.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(limit, io.read(&mut chunk)).await {
            Ok(Ok(0)) => Ok(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.line(if self.account.is_some() {
                    "* BYE Autologout; idle for too long"
                } else {
                    "* BYE Autologout; too long without logging in"
                });
                self.flush().await?;
                Ok(false)
            }
        }
    }

    pub(super) async fn run(&mut self) -> io::Result<()> {
        let greeting = format!(
            "* OK [CAPABILITY {}] fulmar-maild {} ready",
            self.capabilities(),
            self.service.config.instance
        );
        self.line(&greeting);
        self.flush().await?;
        while let Some(command) = self.next_command().await? {
            let flow = self.handle(command).await?;
            self.flush().await?;
            if let Flow::Close = flow {
                break;
            }
        }
        self.flush().await?;
        self.linger().await;
        Ok(())
    }

    pub(super) async fn linger(&mut self) {
        if let Some(io) = self.io.take() {
            net::linger(io).await;
        }
    }

    /// What one command may hold: before login only what LOGIN,
    /// AUTHENTICATE or ID need; after it, a message (APPEND) and its line.
    fn limits(&self) -> Limits {
        let c = &self.service.config;
        let literal = if self.account.is_some() {
            c.max_message_size
        } else {
            c.max_prelogin_bytes as u64
        };
        Limits {
            line: c.max_line,
            literal,
            command: literal + c.max_line as u64,
        }
    }

    /// The next complete command, answering literal continuations and
    /// refusing what is over the bounds or does not parse; None at end of
    /// input.
    pub(super) async fn next_command(&mut self) -> io::Result<Option<Command<'static>>> {
        loop {
            let limits = self.limits();
            match self.framer.next(&self.buf, &limits) {
                Frame::Command(n) => {
                    // What imap-codec cannot parse is taken off first.
                    let (input, taken) = prepare::prepare(&self.buf[..n]);
                    let decode = |input: &[u8]| match CommandCodec::default().decode(input) {
                        Ok((&[], command)) => Some(command.into_static()),
                        _ => None,
                    };
                    let more: Option<Vec<_>> =
                        taken.more_appends.iter().map(|a| decode(a)).collect();
                    let parsed = decode(&input).filter(|_| more.is_some());
                    self.search_return = taken.search_return;
                    self.list_ext = taken.list_ext;
                    self.more_appends = more.unwrap_or_default();
                    self.catenated = taken.catenated;
                    self.dollar = taken.dollar;
                    if let Some(command) = parsed {
                        self.buf.drain(..n);
                        return Ok(Some(command));
                    }
                    let tag = frame::tag(&self.buf).unwrap_or_else(|| "*".into());
                    self.buf.drain(..n);
                    self.line(&format!("{tag} BAD Syntax error in command"));
                    self.flush().await?;
                }
                Frame::More => {
                    if !self.fill().await? {
                        return Ok(None);
                    }
                }
                Frame::Continue => {
                    self.line("+ Ready for literal data");
                    self.flush().await?;
                }
                Frame::Discard(n) => {
                    self.buf.drain(..n);
                }
                Frame::Refuse { tag, over, close } => {
                    let why = match over {
                        Over::Line => "BAD Command line too long".to_string(),
                        Over::Literal(n) => format!(
                            "NO [TOOBIG] Literal of {n} bytes is over the limit of {}",
                            limits.literal
                        ),
                        Over::Command => format!(
                            "NO [TOOBIG] Command over the limit of {} bytes",
                            limits.command
                        ),
                    };
                    if close {
                        let why = why.split_once(' ').map_or("", |(_, w)| w);
                        self.line(&format!("* BYE {why}"));
                        self.flush().await?;
                        return Ok(None);
                    }
                    let tag = tag.unwrap_or_else(|| "*".into());
                    self.line(&format!("{tag} {why}"));
                    self.flush().await?;
                }
            }
        }
    }

    /// Reads more, unless the buffer is already over `allowed`: then the
    /// client is told and the connection ends (bounded memory).
    pub(super) async fn fill_bounded(&mut self, allowed: usize) -> io::Result<bool> {
        if self.buf.len() > allowed {
            self.line("* BYE Command line too long");
            self.flush().await?;
            return Ok(false);
        }
        self.fill().await
    }

    /// Drops input up to and including the next CRLF.
    pub(super) async fn drop_line(&mut self) -> io::Result<bool> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                self.buf.drain(..pos + 2);
                return Ok(true);
            }
            self.buf.clear();
            if !self.fill().await? {
                return Ok(false);
            }
        }
    }
    pub(super) fn account(&self) -> &str {
        self.account.as_deref().unwrap_or_default()
    }

    pub(super) fn selected(&self) -> &Selected {
        self.selected.as_ref().expect("a mailbox is selected")
    }

    pub(super) fn read_only(&mut self, tag: &Tag) -> bool {
        let ro = self.selected.as_ref().is_some_and(|s| s.read_only);
        if ro {
            self.tagged(tag, "NO [READ-ONLY] The mailbox was opened with EXAMINE");
        }
        ro
    }

    pub(super) fn done(&mut self, tag: &Tag, what: &str, result: Result<(), StoreError>) {
        match result {
            Ok(()) => self.tagged(tag, &format!("OK {what} completed")),
            Err(e) => self.tagged(tag, &store_error(&e)),
        }
    }
    /// Brings the view up to date with the store and tells the client:
    /// flag changes, new messages (EXISTS) and, when `expunges` (not
    /// during FETCH, STORE or SEARCH by number), removed messages.
    pub(super) fn refresh(&mut self, expunges: bool) {
        let owed = expunges && self.owed_expunges;
        if !self.changes.has_changed().unwrap_or(false) && !owed {
            return;
        }
        let Some(sel) = self.selected.as_ref() else {
            self.changes.mark_unchanged();
            return;
        };
        self.changes.mark_unchanged();
        let store = &self.service.store;
        // A scan and a UID list write: off the runtime's threads.
        let listed = match tokio::task::block_in_place(|| {
            if sel.read_only {
                store.sync(self.account(), &sel.name)
            } else {
                store.sync_claiming_recent(self.account(), &sel.name)
            }
        }) {
            Ok(l) => l,
            Err(StoreError::NoMailbox(_)) => {
                self.line("* BYE The selected mailbox was deleted");
                self.selected = None;
                return;
            }
            Err(e) => {
                tracing::error!("refresh: {e}");
                return;
            }
        };
        if listed.uid_validity != sel.uid_validity {
            // Its UIDs were renumbered (a damaged UID list): the client
            // must start over with this mailbox.
            self.line("* BYE [UNAVAILABLE] The mailbox was renumbered; select it again");
            self.selected = None;
            return;
        }
        let mut lines = Vec::new();
        self.tell_keywords(listed.keywords.clone());
        let condstore = self.condstore;
        let sel = self.selected.as_mut().expect("selected");
        let now: std::collections::HashMap<u32, &Message> =
            listed.messages.iter().map(|m| (m.uid, m)).collect();
        if expunges {
            let removed: Vec<(usize, u32)> = (0..sel.view.len())
                .rev()
                .map(|i| (i, sel.view[i].uid))
                .filter(|(_, uid)| !now.contains_key(uid))
                .collect();
            if !removed.is_empty() {
                sel.view_mut().retain(|m| now.contains_key(&m.uid));
            }
            lines = expunged_lines(self.qresync, &removed);
            self.owed_expunges = false;
        } else if sel.view.iter().any(|m| !now.contains_key(&m.uid)) {
            self.owed_expunges = true;
        }
        // What is told from here is all there is up to this value, unless
        // an expunge waits (a client resyncing from a value above it
        // would never learn of it: RFC 7162 3.2, errata 1810).
        if !self.owed_expunges {
            sel.highest_modseq = listed.highest_modseq;
        }
        for (i, m) in sel.view.iter().enumerate() {
            if let Some(fresh) = now.get(&m.uid).filter(|f| f.flags != m.flags) {
                let modseq = modseq_item(condstore, fresh);
                lines.push(format!(
                    "* {} FETCH (UID {} FLAGS {}{modseq})",
                    i + 1,
                    m.uid,
                    sel.flags(fresh)
                ));
            }
        }
        let last = sel.view.last().map_or(0, |m| m.uid);
        let before = sel.view.len();
        // Told all: the view is the listing (the messages up to `last`, as
        // they are now, then the new ones), so it becomes the listing.
        sel.view = if self.owed_expunges {
            let mut view: Vec<Message> = sel
                .view
                .iter()
                .map(|m| now.get(&m.uid).map_or(m, |fresh| *fresh).clone())
                .collect();
            view.extend(listed.messages.iter().filter(|m| m.uid > last).cloned());
            Arc::new(view)
        } else {
            listed.messages.clone()
        };
        // IMAP4rev2 has no \Recent.
        if !self.rev2 {
            sel.recent.extend(
                listed
                    .messages
                    .iter()
                    .map(|m| m.uid)
                    .filter(|&u| u >= listed.first_recent && (!sel.read_only || u > last)),
            );
        }
        sel.recent.retain(|u| now.contains_key(u));
        if sel.view.len() != before {
            lines.push(format!("* {} EXISTS", sel.view.len()));
            if !self.rev2 {
                lines.push(format!("* {} RECENT", sel.recent.len()));
            }
        }
        for l in lines {
            self.line(&l);
        }
    }

    /// Takes the mailbox's keyword table; when it grew, tells the client
    /// (FLAGS, PERMANENTFLAGS) before any FETCH shows a new keyword.
    pub(super) fn tell_keywords(&mut self, table: Vec<String>) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if table == sel.keywords {
            return;
        }
        sel.keywords = table;
        let permanent = if sel.read_only {
            "()".to_string()
        } else {
            permanent_flags(&sel.keywords)
        };
        let flags = mailbox_flags(&sel.keywords);
        self.line(&format!("* FLAGS {flags}"));
        self.line(&format!(
            "* OK [PERMANENTFLAGS {permanent}] Flags permitted"
        ));
    }

    /// Indices into the view that a set names; None when a sequence
    /// number is past the end (a UID set just names fewer).
    pub(super) fn targets(&self, set: &SequenceSet, uid: bool) -> Option<Vec<usize>> {
        let view = &self.selected().view;
        if let Some(saved) = self.saved_set(set) {
            // `$`: what is left of the saved messages, by number or UID.
            return Some(
                (0..view.len())
                    .filter(|&i| saved.binary_search(&view[i].uid).is_ok())
                    .collect(),
            );
        }
        if uid {
            let largest = view.last().map_or(0, |m| m.uid);
            return Some(
                (0..view.len())
                    .filter(|&i| in_set(set, view[i].uid, largest))
                    .collect(),
            );
        }
        let largest = view.len() as u32;
        for s in set.0.as_ref() {
            use imap_codec::imap_types::sequence::{SeqOrUid, Sequence};
            let too_big = |v: &SeqOrUid| matches!(v, SeqOrUid::Value(n) if n.get() > largest);
            let bad = match s {
                Sequence::Single(v) => too_big(v),
                Sequence::Range(a, b) => too_big(a) || too_big(b),
            };
            if bad || largest == 0 {
                return None;
            }
        }
        Some(
            (0..view.len())
                .filter(|&i| in_set(set, i as u32 + 1, largest))
                .collect(),
        )
    }
}
