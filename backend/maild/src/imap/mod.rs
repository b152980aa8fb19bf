//! IMAP4rev1 (RFC 3501) on the instance's maildirs, with LITERAL+, SASL-IR,
//! ID, NAMESPACE, UIDPLUS, MOVE, IDLE, UNSELECT, SPECIAL-USE and STARTTLS.
//!
//! imap-codec parses every command (literals included); the session keeps
//! the selected mailbox's view (UIDs in sequence order) and brings it up to
//! date whenever the store says something changed: other sessions' flag
//! changes and expunges and new deliveries reach a session at its next
//! command, or at once while it IDLEs. Input is bounded: a command line by
//! `max_line`, a literal by `max_message_size`.
pub mod mime;
pub mod search;
pub mod wire;

use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use bounded_static::IntoBoundedStatic;
use fulmar_daemon::secret::Secret;
use imap_codec::{
    AuthenticateDataCodec, CommandCodec, IdleDoneCodec,
    decode::{AuthenticateDataDecodeError, CommandDecodeError, Decoder, IdleDoneDecodeError},
    imap_types::{
        auth::{AuthMechanism, AuthenticateData},
        command::{Command, CommandBody},
        core::{LiteralMode, Tag},
        fetch::{Macro, MacroOrMessageDataItemNames, MessageDataItemName, Section},
        flag::{Flag, StoreResponse, StoreType},
        mailbox::{ListMailbox, Mailbox},
        search::SearchKey,
        sequence::SequenceSet,
        status::StatusDataItemName,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::watch,
};

use crate::{
    Service,
    auth::AuthError,
    maildir::{INBOX, Message, SPECIAL_USE, StoreError},
    net::{self, Io},
};
use search::{Bounds, Candidate, in_set};
use wire::{PERMANENT_FLAGS, flags_from_letters, internal_date, letter, literal, nliteral, string};

/// Before login a client gets a minute; after, RFC 3501's 30 minutes.
const PRELOGIN_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Failed logins on one connection before it is closed.
const MAX_AUTH_FAILURES: u32 = 3;

pub async fn serve(listener: TcpListener, service: Arc<Service>) -> io::Result<()> {
    net::accept(listener, "imap", |socket, peer| {
        let mut session = Session::new(service.clone(), Box::new(socket), peer);
        async move { session.run().await }
    })
    .await
}

/// The selected mailbox as this session last told its client.
struct Selected {
    name: String,
    read_only: bool,
    uid_validity: u32,
    /// In sequence-number order (= UID order).
    view: Vec<Message>,
}

enum Flow {
    Continue,
    Close,
}

struct Session {
    service: Arc<Service>,
    io: Option<Box<dyn Io>>,
    buf: Vec<u8>,
    out: Vec<u8>,
    peer: SocketAddr,
    /// The end client: the peer, or what a trusted proxy says in ID.
    client: IpAddr,
    tls: bool,
    account: Option<String>,
    selected: Option<Selected>,
    changes: watch::Receiver<u64>,
    auth_failures: u32,
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
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some((b'%', rest)) => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'/')
            .any(|i| wildcard(rest, &name[i..])),
        Some((c, rest)) => name
            .split_first()
            .is_some_and(|(n, nrest)| n == c && wildcard(rest, nrest)),
    }
}

fn store_error(e: &StoreError) -> String {
    match e {
        StoreError::NoMailbox(_) => format!("NO [NONEXISTENT] {e}"),
        StoreError::MailboxExists(_) => format!("NO [ALREADYEXISTS] {e}"),
        StoreError::Refused(_) | StoreError::BadAddress(_) => format!("NO [CANNOT] {e}"),
        StoreError::Gone => format!("NO [EXPUNGEISSUEDALREADY] {e}"),
        StoreError::OverQuota { .. } => format!("NO [OVERQUOTA] {e}"),
        StoreError::NoAccount(_) | StoreError::Io { .. } => {
            tracing::error!("store: {e}");
            "NO [SERVERBUG] The store failed; the error is logged".into()
        }
    }
}

/// A UID set in the short form UIDPLUS answers use.
fn uid_set(uids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    out.join(",")
}

impl Session {
    fn new(service: Arc<Service>, io: Box<dyn Io>, peer: SocketAddr) -> Self {
        let changes = service.store.watch();
        Self {
            service,
            io: Some(io),
            buf: Vec::new(),
            out: Vec::new(),
            peer,
            client: peer.ip(),
            tls: false,
            account: None,
            selected: None,
            changes,
            auth_failures: 0,
        }
    }

    fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 LITERAL+ SASL-IR ID NAMESPACE UIDPLUS MOVE IDLE UNSELECT SPECIAL-USE ENABLE \
             QUOTA QUOTA=RES-STORAGE",
        );
        if self.account.is_none() {
            if self.service.tls.is_some() && !self.tls {
                caps += " STARTTLS";
            }
            caps += " AUTH=PLAIN";
        }
        caps
    }

    fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn tagged(&mut self, tag: &Tag, text: &str) {
        self.line(&format!("{} {text}", tag.as_ref()));
    }

    async fn flush(&mut self) -> io::Result<()> {
        if let Some(io) = self.io.as_mut() {
            io.write_all(&self.out).await?;
            io.flush().await?;
        }
        self.out.clear();
        Ok(())
    }

    /// Reads more input; false at end of input or on the idle timeout.
    async fn fill(&mut self) -> io::Result<bool> {
        let limit = if self.account.is_some() {
            IDLE_TIMEOUT
        } else {
            PRELOGIN_TIMEOUT
        };
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
                self.line("* BYE Autologout; idle for too long");
                self.flush().await?;
                Ok(false)
            }
        }
    }

    async fn run(&mut self) -> io::Result<()> {
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

    async fn linger(&mut self) {
        if let Some(io) = self.io.take() {
            net::linger(io).await;
        }
    }

    /// The next complete command, answering literal continuations and
    /// syntax errors on the way; None at end of input.
    async fn next_command(&mut self) -> io::Result<Option<Command<'static>>> {
        let max_line = self.service.config.max_line;
        let max_literal = self.service.config.max_message_size;
        // What this command may still buffer: its lines plus its literals.
        let mut allowed = max_line;
        loop {
            match CommandCodec::default().decode(&self.buf) {
                Ok((rest, command)) => {
                    let consumed = self.buf.len() - rest.len();
                    if consumed > allowed {
                        // It came in one read, but is still over the limit.
                        let tag = command.tag.as_ref().to_string();
                        self.buf.drain(..consumed);
                        self.line(&format!("{tag} BAD Command line too long"));
                        self.flush().await?;
                        allowed = max_line;
                        continue;
                    }
                    let command = command.into_static();
                    self.buf.drain(..consumed);
                    return Ok(Some(command));
                }
                Err(CommandDecodeError::LiteralFound { tag, length, mode }) => {
                    if u64::from(length) > max_literal {
                        let tag = tag.as_ref().to_string();
                        self.buf.clear();
                        if mode == LiteralMode::Sync {
                            // The client sends nothing of it without our "+".
                            self.line(&format!(
                                "{tag} NO [TOOBIG] Literal of {length} bytes is over the limit of {max_literal}"
                            ));
                            self.flush().await?;
                            continue;
                        }
                        self.line("* BYE [TOOBIG] Literal over the size limit");
                        self.flush().await?;
                        return Ok(None);
                    }
                    allowed = self.buf.len() + length as usize + max_line;
                    if mode == LiteralMode::Sync {
                        self.line("+ Ready for literal data");
                        self.flush().await?;
                    }
                    if !self.fill_bounded(allowed).await? {
                        return Ok(None);
                    }
                }
                Err(CommandDecodeError::Incomplete) => {
                    if !self.fill_bounded(allowed).await? {
                        return Ok(None);
                    }
                }
                Err(CommandDecodeError::Failed) => {
                    let tag = self.buf.split(|b| *b == b' ').next().and_then(|t| {
                        std::str::from_utf8(t)
                            .ok()
                            .filter(|t| Tag::try_from(*t).is_ok())
                            .map(str::to_string)
                    });
                    let tag = tag.unwrap_or_else(|| "*".into());
                    let long = self
                        .buf
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .is_none_or(|end| end > max_line);
                    if !self.drop_line().await? {
                        return Ok(None);
                    }
                    let why = if long {
                        "Command line too long"
                    } else {
                        "Syntax error in command"
                    };
                    self.line(&format!("{tag} BAD {why}"));
                    self.flush().await?;
                    allowed = max_line;
                }
            }
        }
    }

    /// Reads more, unless the buffer is already over `allowed`: then the
    /// client is told and the connection ends (bounded memory).
    async fn fill_bounded(&mut self, allowed: usize) -> io::Result<bool> {
        if self.buf.len() > allowed {
            self.line("* BYE Command line too long");
            self.flush().await?;
            return Ok(false);
        }
        self.fill().await
    }

    /// Drops input up to and including the next CRLF.
    async fn drop_line(&mut self) -> io::Result<bool> {
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

    async fn handle(&mut self, command: Command<'static>) -> io::Result<Flow> {
        let tag = command.tag.clone();
        let authenticated = self.account.is_some();
        let selected = self.selected.is_some();
        match command.body {
            CommandBody::Capability => {
                let caps = format!("* CAPABILITY {}", self.capabilities());
                self.line(&caps);
                self.tagged(&tag, "OK CAPABILITY completed");
            }
            CommandBody::Noop | CommandBody::Check => {
                self.refresh(true);
                self.tagged(&tag, "OK Completed");
            }
            CommandBody::Logout => {
                self.line("* BYE Logging out");
                self.tagged(&tag, "OK LOGOUT completed");
                return Ok(Flow::Close);
            }
            CommandBody::Id { parameters } => {
                self.id(parameters.unwrap_or_default());
                self.line("* ID (\"name\" \"fulmar-maild\")");
                self.tagged(&tag, "OK ID completed");
            }
            CommandBody::StartTLS => return self.starttls(&tag).await,
            CommandBody::Login { username, password } if !authenticated => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = Secret::new(String::from_utf8_lossy(password.declassify().as_ref()));
                let result = self.service.auth.login(&user, &password).await;
                return self.logged_in(&tag, &user, result).await;
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if !authenticated => {
                if mechanism != AuthMechanism::Plain {
                    self.tagged(&tag, "NO [CANNOT] Only AUTHENTICATE PLAIN is offered");
                    return Ok(Flow::Continue);
                }
                let data = match initial_response {
                    Some(r) => r.declassify().to_vec(),
                    None => match self.sasl_continuation().await? {
                        Some(d) => d,
                        None => {
                            self.tagged(&tag, "BAD Authentication cancelled");
                            return Ok(Flow::Continue);
                        }
                    },
                };
                let who = data
                    .split(|b| *b == 0)
                    .nth(1)
                    .map(|u| String::from_utf8_lossy(u).into_owned())
                    .unwrap_or_default();
                let result = match Secret::from_utf8(data) {
                    Some(message) => self.service.auth.plain(&message).await,
                    None => Err(AuthError::Failed),
                };
                return self.logged_in(&tag, &who, result).await;
            }
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                self.tagged(&tag, "BAD Already logged in");
            }
            _ if !authenticated => self.tagged(&tag, "BAD Log in first"),
            CommandBody::Namespace => {
                self.line("* NAMESPACE ((\"\" \"/\")) NIL NIL");
                self.tagged(&tag, "OK NAMESPACE completed");
            }
            CommandBody::GetQuotaRoot { mailbox } => {
                let name = mailbox_name(&mailbox);
                self.quota(&tag, Some(&name));
            }
            CommandBody::GetQuota { root } => {
                let root: &[u8] = root.as_ref();
                if root.is_empty() {
                    self.quota(&tag, None);
                } else {
                    self.tagged(&tag, "NO [NONEXISTENT] The only quota root is \"\"");
                }
            }
            CommandBody::SetQuota { .. } => {
                self.tagged(&tag, "NO [NOPERM] Quotas are set by the operator");
            }
            CommandBody::Enable { .. } => {
                self.line("* ENABLED");
                self.tagged(&tag, "OK ENABLE completed");
            }
            CommandBody::Select { mailbox, .. } => {
                self.select(&tag, &mailbox_name(&mailbox), false)
            }
            CommandBody::Examine { mailbox, .. } => {
                self.select(&tag, &mailbox_name(&mailbox), true)
            }
            CommandBody::Create { mailbox } => {
                let name = mailbox_name(&mailbox);
                let r = self.service.store.create_mailbox(self.account(), &name);
                self.done(&tag, "CREATE", r);
            }
            CommandBody::Delete { mailbox } => {
                let name = mailbox_name(&mailbox);
                let r = self.service.store.delete_mailbox(self.account(), &name);
                self.done(&tag, "DELETE", r);
            }
            CommandBody::Rename { from, to } => {
                let (from, to) = (mailbox_name(&from), mailbox_name(&to));
                let r = self
                    .service
                    .store
                    .rename_mailbox(self.account(), &from, &to);
                self.done(&tag, "RENAME", r);
            }
            CommandBody::Subscribe { mailbox } => {
                let name = mailbox_name(&mailbox);
                let r = self
                    .service
                    .store
                    .set_subscribed(self.account(), &name, true);
                self.done(&tag, "SUBSCRIBE", r);
            }
            CommandBody::Unsubscribe { mailbox } => {
                let name = mailbox_name(&mailbox);
                let r = self
                    .service
                    .store
                    .set_subscribed(self.account(), &name, false);
                self.done(&tag, "UNSUBSCRIBE", r);
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, false),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, true),
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(&tag, &mailbox_name(&mailbox), &item_names),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let data: &[u8] = match &message {
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => {
                        l.as_ref()
                    }
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => {
                        l.data.as_ref()
                    }
                };
                let letters: String = flags.iter().filter_map(letter).collect();
                let when = date.map(|d| SystemTime::from(*d.as_ref()));
                let name = mailbox_name(&mailbox);
                let account = self.account().to_string();
                let r = tokio::task::block_in_place(|| {
                    self.service
                        .store
                        .append(&account, &name, data, &letters, when)
                });
                match r {
                    Ok((validity, uid)) => {
                        self.refresh(true);
                        self.tagged(
                            &tag,
                            &format!("OK [APPENDUID {validity} {uid}] APPEND completed"),
                        );
                    }
                    Err(StoreError::NoMailbox(_)) => {
                        self.tagged(&tag, "NO [TRYCREATE] No such mailbox")
                    }
                    Err(e) => self.tagged(&tag, &store_error(&e)),
                }
            }
            _ if !selected => self.tagged(&tag, "BAD Select a mailbox first"),
            CommandBody::Close => {
                if !self.selected().read_only {
                    self.expunge(None, false);
                }
                self.selected = None;
                self.tagged(&tag, "OK CLOSE completed");
            }
            CommandBody::Unselect => {
                self.selected = None;
                self.tagged(&tag, "OK UNSELECT completed");
            }
            CommandBody::Expunge => {
                self.refresh(true);
                if self.read_only(&tag) {
                    return Ok(Flow::Continue);
                }
                self.expunge(None, true);
                self.tagged(&tag, "OK EXPUNGE completed");
            }
            CommandBody::ExpungeUid { sequence_set } => {
                self.refresh(true);
                if self.read_only(&tag) {
                    return Ok(Flow::Continue);
                }
                self.expunge(Some(&sequence_set), true);
                self.tagged(&tag, "OK UID EXPUNGE completed");
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                self.refresh(uid);
                let charset_ok = charset.as_ref().is_none_or(|c| {
                    let c = c.as_ref().to_ascii_uppercase();
                    c == "US-ASCII" || c == "UTF-8"
                });
                if !charset_ok {
                    self.tagged(&tag, "NO [BADCHARSET (US-ASCII UTF-8)] Unknown charset");
                    return Ok(Flow::Continue);
                }
                let key = SearchKey::And(criteria);
                let found = self.search(&key, uid);
                let list: String = found.iter().map(|n| format!(" {n}")).collect();
                self.line(&format!("* SEARCH{list}"));
                self.tagged(&tag, "OK SEARCH completed");
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                self.refresh(uid);
                let items = match macro_or_item_names {
                    MacroOrMessageDataItemNames::Macro(m) => {
                        let mut items = vec![
                            MessageDataItemName::Flags,
                            MessageDataItemName::InternalDate,
                            MessageDataItemName::Rfc822Size,
                        ];
                        if matches!(m, Macro::All | Macro::Full) {
                            items.push(MessageDataItemName::Envelope);
                        }
                        if matches!(m, Macro::Full) {
                            items.push(MessageDataItemName::Body);
                        }
                        items
                    }
                    MacroOrMessageDataItemNames::MessageDataItemNames(items) => items,
                };
                match self.targets(&sequence_set, uid) {
                    Some(targets) => {
                        self.fetch(&targets, &items, uid).await?;
                        self.tagged(&tag, "OK FETCH completed");
                    }
                    None => self.tagged(&tag, "BAD No such message"),
                }
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => {
                self.refresh(uid);
                if self.read_only(&tag) {
                    return Ok(Flow::Continue);
                }
                match self.targets(&sequence_set, uid) {
                    Some(targets) => {
                        self.store(&targets, kind, response, &flags, uid);
                        self.tagged(&tag, "OK STORE completed");
                    }
                    None => self.tagged(&tag, "BAD No such message"),
                }
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.refresh(uid);
                self.copy(&tag, &sequence_set, &mailbox_name(&mailbox), uid, false);
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.refresh(uid);
                if self.read_only(&tag) {
                    return Ok(Flow::Continue);
                }
                self.copy(&tag, &sequence_set, &mailbox_name(&mailbox), uid, true);
            }
            CommandBody::Idle => return self.idle(&tag).await,
            _ => self.tagged(&tag, "BAD Command not supported"),
        }
        Ok(Flow::Continue)
    }

    fn account(&self) -> &str {
        self.account.as_deref().unwrap_or_default()
    }

    fn selected(&self) -> &Selected {
        self.selected.as_ref().expect("a mailbox is selected")
    }

    fn read_only(&mut self, tag: &Tag) -> bool {
        let ro = self.selected.as_ref().is_some_and(|s| s.read_only);
        if ro {
            self.tagged(tag, "NO [READ-ONLY] The mailbox was opened with EXAMINE");
        }
        ro
    }

    fn done(&mut self, tag: &Tag, what: &str, result: Result<(), StoreError>) {
        match result {
            Ok(()) => self.tagged(tag, &format!("OK {what} completed")),
            Err(e) => self.tagged(tag, &store_error(&e)),
        }
    }

    /// ID: a trusted proxy's `x-originating-ip` becomes the client address
    /// (logged); anyone else's is ignored.
    fn id(
        &mut self,
        parameters: Vec<(
            imap_codec::imap_types::core::IString,
            imap_codec::imap_types::core::NString,
        )>,
    ) {
        let trusted = self.service.trusts(self.peer.ip());
        for (key, value) in parameters {
            let key: &[u8] = key.as_ref();
            if !key.eq_ignore_ascii_case(b"x-originating-ip") {
                continue;
            }
            let Some(value) = value
                .0
                .as_ref()
                .map(|v| String::from_utf8_lossy(v.as_ref()).into_owned())
            else {
                continue;
            };
            match (trusted, value.parse::<IpAddr>()) {
                (true, Ok(ip)) => self.client = ip.to_canonical(),
                _ => {
                    tracing::info!(peer = %self.peer, claimed = value, "ignored ID x-originating-ip from an untrusted peer")
                }
            }
        }
    }

    /// GETQUOTAROOT (with the mailbox) or GETQUOTA: one root, "", for the
    /// whole account, with its STORAGE in KiB (RFC 9208); none when the
    /// account is unlimited.
    fn quota(&mut self, tag: &Tag, mailbox: Option<&str>) {
        let usage = match self.service.store.quota(self.account()) {
            Ok(usage) => usage,
            Err(e) => return self.tagged(tag, &store_error(&e)),
        };
        if let Some(name) = mailbox {
            let mut line = b"* QUOTAROOT ".to_vec();
            string(&mut line, name.as_bytes());
            if usage.is_some() {
                line.extend_from_slice(b" \"\"");
            }
            self.out.extend_from_slice(&line);
            self.line("");
        }
        match usage {
            Some(u) => {
                self.line(&format!(
                    "* QUOTA \"\" (STORAGE {} {})",
                    u.used.div_ceil(1024),
                    u.limit / 1024
                ));
                self.tagged(tag, "OK Quota reported");
            }
            None if mailbox.is_some() => self.tagged(tag, "OK No quota applies"),
            None => self.tagged(tag, "NO [NONEXISTENT] No quota applies"),
        }
    }

    async fn starttls(&mut self, tag: &Tag<'static>) -> io::Result<Flow> {
        let acceptor = match (&self.service.tls, self.tls, &self.account) {
            (Some(a), false, None) => a.clone(),
            _ => {
                self.tagged(tag, "BAD STARTTLS is not available now");
                return Ok(Flow::Continue);
            }
        };
        self.tagged(tag, "OK Begin TLS negotiation now");
        self.flush().await?;
        // Anything pipelined behind STARTTLS came in clear: drop it.
        self.buf.clear();
        let io = self.io.take().ok_or(io::ErrorKind::NotConnected)?;
        let tls = acceptor.accept(io).await?;
        self.io = Some(Box::new(tls));
        self.tls = true;
        Ok(Flow::Continue)
    }

    /// The client's answer to an empty AUTHENTICATE challenge; None when
    /// it cancels.
    async fn sasl_continuation(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.line("+ ");
        self.flush().await?;
        loop {
            match AuthenticateDataCodec::default().decode(&self.buf) {
                Ok((rest, data)) => {
                    let consumed = self.buf.len() - rest.len();
                    let data = match data {
                        AuthenticateData::Continue(d) => Some(d.declassify().to_vec()),
                        AuthenticateData::Cancel => None,
                    };
                    self.buf.drain(..consumed);
                    return Ok(data);
                }
                Err(AuthenticateDataDecodeError::Incomplete) => {
                    if !self.fill_bounded(self.service.config.max_line).await? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(AuthenticateDataDecodeError::Failed) => {
                    self.drop_line().await?;
                    return Ok(None);
                }
            }
        }
    }

    async fn logged_in(
        &mut self,
        tag: &Tag<'static>,
        user: &str,
        result: Result<String, AuthError>,
    ) -> io::Result<Flow> {
        match result {
            Ok(account) if self.service.store.has_account(&account) => {
                tracing::info!(user, account, peer = %self.peer, client = %self.client, "imap login");
                self.account = Some(account);
                let caps = self.capabilities();
                self.tagged(tag, &format!("OK [CAPABILITY {caps}] Logged in"));
            }
            Ok(account) => {
                tracing::warn!(user, account, "imap login: the account has no mailbox here");
                self.tagged(tag, "NO [UNAVAILABLE] The account is not served here");
            }
            Err(AuthError::Unavailable(e)) => {
                tracing::error!(user, "imap login: {e}");
                self.tagged(
                    tag,
                    "NO [UNAVAILABLE] The directory cannot be reached; try later",
                );
            }
            Err(AuthError::Failed) => {
                tracing::info!(user, peer = %self.peer, client = %self.client, "imap login failed");
                self.auth_failures += 1;
                self.tagged(tag, "NO [AUTHENTICATIONFAILED] Authentication failed");
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.line("* BYE Too many failed logins");
                    return Ok(Flow::Close);
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn select(&mut self, tag: &Tag, name: &str, read_only: bool) {
        self.selected = None;
        let listed = match self.service.store.sync(self.account(), name) {
            Ok(l) => l,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        self.changes.mark_unchanged();
        self.line(&format!("* FLAGS {PERMANENT_FLAGS}"));
        if read_only {
            self.line("* OK [PERMANENTFLAGS ()] Read-only mailbox");
        } else {
            self.line(&format!(
                "* OK [PERMANENTFLAGS {PERMANENT_FLAGS}] Flags permitted"
            ));
        }
        self.line(&format!("* {} EXISTS", listed.messages.len()));
        self.line("* 0 RECENT");
        if let Some(first) = listed.messages.iter().position(|m| !m.flags.contains('S')) {
            self.line(&format!("* OK [UNSEEN {}] First unseen", first + 1));
        }
        self.line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            listed.uid_validity
        ));
        self.line(&format!(
            "* OK [UIDNEXT {}] Predicted next UID",
            listed.next_uid
        ));
        let access = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        self.tagged(
            tag,
            &format!(
                "OK [{access}] {} completed",
                if read_only { "EXAMINE" } else { "SELECT" }
            ),
        );
        self.selected = Some(Selected {
            name: name.to_string(),
            read_only,
            uid_validity: listed.uid_validity,
            view: listed.messages,
        });
    }

    fn list(&mut self, tag: &Tag, reference: &Mailbox, pattern: &ListMailbox, subscribed: bool) {
        let reference = match reference {
            Mailbox::Inbox => INBOX.to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref()).into_owned(),
        };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let command = if subscribed { "LSUB" } else { "LIST" };
        if pattern.is_empty() && !subscribed {
            self.line("* LIST (\\Noselect) \"/\" \"\"");
            self.tagged(tag, "OK LIST completed");
            return;
        }
        let full = format!("{reference}{pattern}");
        let names = if subscribed {
            self.service.store.subscriptions(self.account())
        } else {
            self.service.store.mailboxes(self.account())
        };
        let names = match names {
            Ok(n) => n,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        for name in names {
            let matched = if name == INBOX {
                wildcard(full.to_ascii_uppercase().as_bytes(), b"INBOX")
            } else {
                wildcard(full.as_bytes(), name.as_bytes())
            };
            if !matched {
                continue;
            }
            let special = SPECIAL_USE
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, attr)| *attr);
            let mut line = format!("* {command} ({}) \"/\" ", special.unwrap_or("")).into_bytes();
            string(&mut line, name.as_bytes());
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b"\r\n");
        }
        self.tagged(tag, &format!("OK {command} completed"));
    }

    fn status(&mut self, tag: &Tag, name: &str, items: &[StatusDataItemName]) {
        let listed = match self.service.store.sync(self.account(), name) {
            Ok(l) => l,
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        let values: Vec<String> = items
            .iter()
            .filter_map(|item| match item {
                StatusDataItemName::Messages => Some(format!("MESSAGES {}", listed.messages.len())),
                StatusDataItemName::Recent => Some("RECENT 0".into()),
                StatusDataItemName::UidNext => Some(format!("UIDNEXT {}", listed.next_uid)),
                StatusDataItemName::UidValidity => {
                    Some(format!("UIDVALIDITY {}", listed.uid_validity))
                }
                StatusDataItemName::Unseen => Some(format!(
                    "UNSEEN {}",
                    listed
                        .messages
                        .iter()
                        .filter(|m| !m.flags.contains('S'))
                        .count()
                )),
                _ => None,
            })
            .collect();
        let mut line = b"* STATUS ".to_vec();
        string(&mut line, name.as_bytes());
        line.extend_from_slice(format!(" ({})\r\n", values.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        self.tagged(tag, "OK STATUS completed");
    }

    /// Brings the view up to date with the store and tells the client:
    /// flag changes, new messages (EXISTS) and, when `expunges` (not
    /// during FETCH, STORE or SEARCH by number), removed messages.
    fn refresh(&mut self, expunges: bool) {
        if !self.changes.has_changed().unwrap_or(false) {
            return;
        }
        let Some(sel) = self.selected.as_ref() else {
            self.changes.mark_unchanged();
            return;
        };
        self.changes.mark_unchanged();
        let listed = match self.service.store.sync(self.account(), &sel.name) {
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
        let sel = self.selected.as_mut().expect("selected");
        let mut lines = Vec::new();
        let now: std::collections::HashMap<u32, &Message> =
            listed.messages.iter().map(|m| (m.uid, m)).collect();
        if expunges {
            for seq in (1..=sel.view.len()).rev() {
                if !now.contains_key(&sel.view[seq - 1].uid) {
                    sel.view.remove(seq - 1);
                    lines.push(format!("* {seq} EXPUNGE"));
                }
            }
        }
        for (i, m) in sel.view.iter_mut().enumerate() {
            if let Some(fresh) = now.get(&m.uid) {
                if fresh.flags != m.flags {
                    lines.push(format!(
                        "* {} FETCH (UID {} FLAGS {})",
                        i + 1,
                        m.uid,
                        flags_from_letters(&fresh.flags)
                    ));
                }
                m.flags = fresh.flags.clone();
                m.path = fresh.path.clone();
            }
        }
        let last = sel.view.last().map_or(0, |m| m.uid);
        let before = sel.view.len();
        sel.view
            .extend(listed.messages.iter().filter(|m| m.uid > last).cloned());
        if sel.view.len() != before {
            lines.push(format!("* {} EXISTS", sel.view.len()));
        }
        for l in lines {
            self.line(&l);
        }
    }

    /// Indices into the view that a set names; None when a sequence
    /// number is past the end (a UID set just names fewer).
    fn targets(&self, set: &SequenceSet, uid: bool) -> Option<Vec<usize>> {
        let view = &self.selected().view;
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

    fn search(&self, key: &SearchKey, uid: bool) -> Vec<u32> {
        let view = &self.selected().view;
        let bounds = Bounds {
            seq: view.len() as u32,
            uid: view.last().map_or(0, |m| m.uid),
        };
        view.iter()
            .enumerate()
            .filter(|(i, m)| search::matches(key, &Candidate::new(*i as u32 + 1, m), bounds))
            .map(|(i, m)| if uid { m.uid } else { i as u32 + 1 })
            .collect()
    }

    async fn fetch(
        &mut self,
        targets: &[usize],
        items: &[MessageDataItemName<'_>],
        uid: bool,
    ) -> io::Result<()> {
        let needs_content = items.iter().any(|i| {
            !matches!(
                i,
                MessageDataItemName::Flags
                    | MessageDataItemName::Uid
                    | MessageDataItemName::InternalDate
                    | MessageDataItemName::Rfc822Size
            )
        });
        let marks_seen = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::BodyExt { peek: false, .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Text
            )
        });
        for &i in targets {
            let read_only = self.selected().read_only;
            let mut message = self.selected().view[i].clone();
            let mut flags_changed = false;
            if marks_seen && !read_only && !message.flags.contains('S') {
                let letters = format!("{}S", message.flags);
                if let Ok(updated) =
                    tokio::task::block_in_place(|| self.service.store.set_flags(&message, &letters))
                {
                    message = updated;
                    let sel = self.selected.as_mut().expect("selected");
                    sel.view[i] = message.clone();
                    flags_changed = true;
                }
            }
            let raw = if needs_content {
                match std::fs::read(&message.path) {
                    Ok(r) => Some(r),
                    // Expunged by another session since the view was made:
                    // RFC 3501 lets us answer with nothing for it.
                    Err(_) => continue,
                }
            } else {
                None
            };
            let parsed = raw.as_deref().map(mime::parse);
            let mut out = format!("* {} FETCH (", i + 1).into_bytes();
            let mut first = true;
            let mut sep = |out: &mut Vec<u8>| {
                if !first {
                    out.push(b' ');
                }
                first = false;
            };
            if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
                sep(&mut out);
                out.extend_from_slice(format!("UID {}", message.uid).as_bytes());
            }
            for item in items {
                sep(&mut out);
                match item {
                    MessageDataItemName::Uid => {
                        out.extend_from_slice(format!("UID {}", message.uid).as_bytes())
                    }
                    MessageDataItemName::Flags => out.extend_from_slice(
                        format!("FLAGS {}", flags_from_letters(&message.flags)).as_bytes(),
                    ),
                    MessageDataItemName::InternalDate => out.extend_from_slice(
                        format!(
                            "INTERNALDATE {}",
                            internal_date(search::internal_time(&message))
                        )
                        .as_bytes(),
                    ),
                    MessageDataItemName::Rfc822Size => {
                        out.extend_from_slice(format!("RFC822.SIZE {}", message.size).as_bytes())
                    }
                    MessageDataItemName::Envelope => {
                        out.extend_from_slice(b"ENVELOPE ");
                        mime::envelope(&mut out, parsed.as_ref().expect("content"));
                    }
                    MessageDataItemName::BodyStructure => {
                        out.extend_from_slice(b"BODYSTRUCTURE ");
                        mime::body_structure(&mut out, parsed.as_ref().expect("content"), true);
                    }
                    MessageDataItemName::Body => {
                        out.extend_from_slice(b"BODY ");
                        mime::body_structure(&mut out, parsed.as_ref().expect("content"), false);
                    }
                    MessageDataItemName::Rfc822 => {
                        out.extend_from_slice(b"RFC822 ");
                        literal(&mut out, raw.as_deref().unwrap_or_default());
                    }
                    MessageDataItemName::Rfc822Header => {
                        out.extend_from_slice(b"RFC822.HEADER ");
                        let header = mime::section(
                            parsed.as_ref().expect("content"),
                            Some(&Section::Header(None)),
                        );
                        nliteral(&mut out, header.as_deref());
                    }
                    MessageDataItemName::Rfc822Text => {
                        out.extend_from_slice(b"RFC822.TEXT ");
                        let text = mime::section(
                            parsed.as_ref().expect("content"),
                            Some(&Section::Text(None)),
                        );
                        nliteral(&mut out, text.as_deref());
                    }
                    MessageDataItemName::BodyExt {
                        section, partial, ..
                    } => {
                        let data =
                            mime::section(parsed.as_ref().expect("content"), section.as_ref());
                        out.extend_from_slice(
                            format!("BODY[{}]", section_spec(section.as_ref())).as_bytes(),
                        );
                        let data = match (partial, data) {
                            (Some((origin, count)), Some(d)) => {
                                out.extend_from_slice(format!("<{origin}>").as_bytes());
                                let start = (*origin as usize).min(d.len());
                                let end = start.saturating_add(count.get() as usize).min(d.len());
                                Some(d[start..end].to_vec())
                            }
                            (_, d) => d,
                        };
                        out.push(b' ');
                        nliteral(&mut out, data.as_deref());
                    }
                    _ => out.extend_from_slice(b"X-UNSUPPORTED NIL"),
                }
            }
            if flags_changed
                && !items
                    .iter()
                    .any(|i| matches!(i, MessageDataItemName::Flags))
            {
                out.extend_from_slice(
                    format!(" FLAGS {}", flags_from_letters(&message.flags)).as_bytes(),
                );
            }
            out.extend_from_slice(b")\r\n");
            self.out.extend_from_slice(&out);
            // Large fetches stream out instead of growing one buffer.
            if self.out.len() > 256 * 1024 {
                self.flush().await?;
            }
        }
        Ok(())
    }

    fn store(
        &mut self,
        targets: &[usize],
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag],
        uid: bool,
    ) {
        let given: String = flags.iter().filter_map(letter).collect();
        for &i in targets {
            let message = self.selected().view[i].clone();
            let letters = match kind {
                StoreType::Replace => given.clone(),
                StoreType::Add => format!("{}{given}", message.flags),
                StoreType::Remove => message
                    .flags
                    .chars()
                    .filter(|c| !given.contains(*c))
                    .collect(),
            };
            let result =
                tokio::task::block_in_place(|| self.service.store.set_flags(&message, &letters));
            match result {
                Ok(updated) => self.selected.as_mut().expect("selected").view[i] = updated,
                // Expunged elsewhere: it goes at the next refresh.
                Err(StoreError::Gone) => continue,
                Err(e) => {
                    tracing::error!("store flags: {e}");
                    continue;
                }
            }
            if response == StoreResponse::Answer {
                let m = &self.selected().view[i];
                let uid_part = if uid {
                    format!("UID {} ", m.uid)
                } else {
                    String::new()
                };
                let line = format!(
                    "* {} FETCH ({uid_part}FLAGS {})",
                    i + 1,
                    flags_from_letters(&m.flags)
                );
                self.line(&line);
            }
        }
        // Our own renames are not news to us.
        self.changes.mark_unchanged();
    }

    /// Removes \Deleted messages (only those in `uids` when given).
    fn expunge(&mut self, uids: Option<&SequenceSet>, tell: bool) {
        let sel = self.selected.as_mut().expect("selected");
        let largest = sel.view.last().map_or(0, |m| m.uid);
        let doomed: Vec<usize> = (0..sel.view.len())
            .filter(|&i| {
                sel.view[i].flags.contains('T')
                    && uids.is_none_or(|set| in_set(set, sel.view[i].uid, largest))
            })
            .collect();
        let messages: Vec<&Message> = doomed.iter().map(|&i| &sel.view[i]).collect();
        if let Err(e) = tokio::task::block_in_place(|| self.service.store.expunge(&messages)) {
            tracing::error!("expunge: {e}");
            return;
        }
        for &i in doomed.iter().rev() {
            sel.view.remove(i);
            if tell {
                self.out
                    .extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
            }
        }
        self.changes.mark_unchanged();
    }

    fn copy(&mut self, tag: &Tag, set: &SequenceSet, target: &str, uid: bool, moving: bool) {
        let Some(targets) = self.targets(set, uid) else {
            self.tagged(tag, "BAD No such message");
            return;
        };
        let what = if moving { "MOVE" } else { "COPY" };
        let messages: Vec<Message> = targets
            .iter()
            .map(|&i| self.selected().view[i].clone())
            .collect();
        if messages.is_empty() {
            self.tagged(tag, &format!("OK {what} completed (nothing to do)"));
            return;
        }
        let account = self.account().to_string();
        let copied =
            tokio::task::block_in_place(|| self.service.store.copy(&account, &messages, target));
        let (validity, new_uids) = match copied {
            Ok(c) => c,
            Err(StoreError::NoMailbox(_)) => {
                self.tagged(tag, "NO [TRYCREATE] No such mailbox");
                return;
            }
            Err(e) => {
                self.tagged(tag, &store_error(&e));
                return;
            }
        };
        let old: Vec<u32> = messages.iter().map(|m| m.uid).collect();
        let code = format!(
            "COPYUID {validity} {} {}",
            uid_set(&old),
            uid_set(&new_uids)
        );
        if !moving {
            self.refresh(uid);
            self.tagged(tag, &format!("OK [{code}] COPY completed"));
            return;
        }
        self.line(&format!("* OK [{code}] Moved"));
        let refs: Vec<&Message> = messages.iter().collect();
        if let Err(e) = tokio::task::block_in_place(|| self.service.store.expunge(&refs)) {
            self.tagged(tag, &store_error(&e));
            return;
        }
        let sel = self.selected.as_mut().expect("selected");
        for &i in targets.iter().rev() {
            sel.view.remove(i);
            self.out
                .extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
        }
        self.changes.mark_unchanged();
        self.tagged(tag, "OK MOVE completed");
    }

    /// IDLE (RFC 2177): updates go out as they happen until DONE.
    async fn idle(&mut self, tag: &Tag<'static>) -> io::Result<Flow> {
        self.line("+ idling");
        self.refresh(true);
        self.flush().await?;
        let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
        loop {
            match IdleDoneCodec::default().decode(&self.buf) {
                Ok((rest, _)) => {
                    let consumed = self.buf.len() - rest.len();
                    self.buf.drain(..consumed);
                    self.tagged(tag, "OK IDLE terminated");
                    return Ok(Flow::Continue);
                }
                Err(IdleDoneDecodeError::Failed) => {
                    self.drop_line().await?;
                    self.tagged(tag, "BAD Expected DONE");
                    return Ok(Flow::Continue);
                }
                Err(IdleDoneDecodeError::Incomplete) => {}
            }
            if self.buf.len() > self.service.config.max_line {
                self.line("* BYE Command line too long");
                return Ok(Flow::Close);
            }
            let io = self.io.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let mut chunk = [0u8; 1024];
            tokio::select! {
                read = io.read(&mut chunk) => match read? {
                    0 => return Ok(Flow::Close),
                    n => self.buf.extend_from_slice(&chunk[..n]),
                },
                changed = self.changes.changed() => {
                    if changed.is_err() {
                        return Ok(Flow::Close);
                    }
                    // `changed` marked it seen; mark it new again for refresh.
                    self.changes.mark_changed();
                    self.refresh(true);
                    self.flush().await?;
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.line("* BYE Autologout; idle for too long");
                    return Ok(Flow::Close);
                }
            }
        }
    }
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
    }

    #[test]
    fn uid_sets_are_compressed() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
    }
}
