//! POP3 (RFC 1939) on the account's INBOX, with CAPA and response codes
//! (RFC 2449), STLS (RFC 2595), AUTH PLAIN with an initial response
//! (RFC 5034) and XCLIENT from trusted proxies.
//!
//! The maildrop is the INBOX as it was at login: message numbers stay
//! fixed for the session, DELE only marks, and QUIT removes the marked
//! messages and sets \Seen on the retrieved ones. A session that ends
//! without QUIT changes nothing. UIDL is the IMAP UIDVALIDITY and UID, so
//! it is stable across sessions and the same message keeps it.
use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use fulmar_daemon::secret::Secret;
use fulmar_mailproto::xclient::{self, Forwarded};
use tokio::{io::BufReader, net::TcpListener};

use crate::{
    Service,
    auth::AuthError,
    net::{self, Io, read_line, skip_line},
    store::{FlagChange, INBOX, Message, StoreError},
};

/// RFC 1939 asks for an autologout timer of at least ten minutes (after
/// login; before it, `prelogin_timeout` bounds the whole phase).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// A client that reads nothing this long after login is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const MAX_AUTH_FAILURES: u32 = 3;

pub async fn serve(listener: TcpListener, service: Arc<Service>) -> io::Result<()> {
    net::accept(listener, "pop3", |socket, peer| {
        let mut session = Session::new(service.clone(), Box::new(socket), peer);
        async move { session.run().await }
    })
    .await
}

/// POP3S: POP3 inside TLS from the first byte (RFC 8314).
pub async fn serve_tls(
    listener: TcpListener,
    service: Arc<Service>,
    acceptor: tokio_rustls::TlsAcceptor,
) -> io::Result<()> {
    let handshake = service.config.prelogin_timeout;
    net::accept_tls(listener, "pop3s", acceptor, handshake, move |tls, peer| {
        let mut session = Session::new(service.clone(), Box::new(tls), peer);
        session.tls = true;
        async move { session.run().await }
    })
    .await
}

/// The maildrop of a logged-in session.
struct Maildrop {
    account: String,
    uid_validity: u32,
    messages: Arc<Vec<Message>>,
    deleted: Vec<bool>,
    retrieved: Vec<bool>,
}

impl Maildrop {
    /// Message `arg` (1-based), unless it does not exist or is deleted.
    fn message(&self, arg: &str) -> Result<usize, &'static str> {
        let n: usize = arg.parse().map_err(|_| "-ERR Not a message number")?;
        if n == 0 || n > self.messages.len() {
            return Err("-ERR No such message");
        }
        if self.deleted[n - 1] {
            return Err("-ERR Message already deleted");
        }
        Ok(n - 1)
    }

    fn uidl(&self, i: usize) -> String {
        format!("{:08x}{:08x}", self.uid_validity, self.messages[i].uid)
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Message)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
    }
}

enum Flow {
    Continue,
    Close,
}

struct Session {
    service: Arc<Service>,
    io: Option<BufReader<Box<dyn Io>>>,
    out: Vec<u8>,
    peer: SocketAddr,
    /// The end client: the peer, or what a trusted proxy says in XCLIENT.
    client: String,
    tls: bool,
    user: Option<String>,
    drop: Option<Maildrop>,
    auth_failures: u32,
    deadline: net::Deadline,
}

impl Session {
    fn new(service: Arc<Service>, io: Box<dyn Io>, peer: SocketAddr) -> Self {
        let deadline = net::Deadline::after(service.config.prelogin_timeout);
        Self {
            service,
            io: Some(BufReader::new(io)),
            out: Vec::new(),
            peer,
            client: peer.ip().to_string(),
            tls: false,
            user: None,
            drop: None,
            auth_failures: 0,
            deadline,
        }
    }

    /// How long a read, a write or a TLS handshake may wait: before login
    /// what is left of `prelogin_timeout`.
    fn patience(&self, after_login: Duration) -> Duration {
        self.deadline.patience(self.drop.is_some(), after_login)
    }

    fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> io::Result<()> {
        let limit = self.patience(WRITE_TIMEOUT);
        if let Some(io) = self.io.as_mut() {
            net::write_within(io.get_mut(), &self.out, limit).await?;
        }
        self.out.clear();
        Ok(())
    }

    async fn run(&mut self) -> io::Result<()> {
        let greeting = format!(
            "+OK fulmar-maild {} POP3 ready",
            self.service.config.instance
        );
        self.line(&greeting);
        self.flush().await?;
        let max = self.service.config.max_line;
        loop {
            let limit = self.patience(IDLE_TIMEOUT);
            let io = self.io.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let line = match tokio::time::timeout(limit, read_line(io, max)).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    self.line("-ERR Autologout; idle for too long");
                    break;
                }
            };
            if !line.complete {
                if line.bytes.len() < max || !skip_line(io, max).await? {
                    break;
                }
                self.line("-ERR Command line too long");
                self.flush().await?;
                continue;
            }
            let flow = self.handle(&line.text()).await?;
            // Pipelined commands (RFC 2449 PIPELINING) are answered together.
            let pending = self.io.as_ref().is_some_and(|io| !io.buffer().is_empty());
            if matches!(flow, Flow::Close) || !pending {
                self.flush().await?;
            }
            if let Flow::Close = flow {
                break;
            }
        }
        self.flush().await?;
        if let Some(io) = self.io.take() {
            net::linger(io.into_inner()).await;
        }
        Ok(())
    }

    fn capabilities(&self) -> Vec<String> {
        let mut caps: Vec<String> = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
            .map(String::from)
            .into();
        if self.drop.is_none() {
            caps.push("USER".into());
            caps.push("SASL PLAIN".into());
            if self.service.tls.is_some() && !self.tls {
                caps.push("STLS".into());
            }
            if self.service.trusts(self.peer.ip()) {
                caps.push("XCLIENT".into());
            }
        }
        caps.push("IMPLEMENTATION fulmar-maild".into());
        caps
    }

    async fn handle(&mut self, text: &str) -> io::Result<Flow> {
        let (verb, args) = text.split_once(' ').unwrap_or((text, ""));
        let verb = verb.to_ascii_uppercase();
        let args: Vec<&str> = args.split_whitespace().collect();
        if verb == "CAPA" {
            self.line("+OK Capability list follows");
            for cap in self.capabilities() {
                self.line(&cap);
            }
            self.line(".");
            return Ok(Flow::Continue);
        }
        if verb == "QUIT" {
            self.quit().await;
            return Ok(Flow::Close);
        }
        if self.drop.is_none() {
            return self.authorization(&verb, &args).await;
        }
        let reply = self.transaction(&verb, &args).await;
        if let Err(text) = reply {
            self.line(&text);
        }
        Ok(Flow::Continue)
    }

    /// Commands before login.
    async fn authorization(&mut self, verb: &str, args: &[&str]) -> io::Result<Flow> {
        match (verb, args) {
            ("USER", [name]) => {
                self.user = Some(name.to_string());
                self.line("+OK Send your password");
            }
            ("PASS", _) if self.user.is_none() => self.line("-ERR USER first"),
            ("PASS", _) => {
                // The password may contain spaces: it is the rest of the line.
                let password = Secret::new(args.join(" "));
                let user = self.user.take().unwrap_or_default();
                let result = self.service.auth.login(&user, &password).await;
                return self.logged_in(&user, result).await;
            }
            ("AUTH", []) => {
                self.line("+OK Mechanisms follow");
                self.line("PLAIN");
                self.line(".");
            }
            ("AUTH", [mechanism, rest @ ..]) if mechanism.eq_ignore_ascii_case("PLAIN") => {
                let response = match rest {
                    [initial] => Some(initial.to_string()),
                    [] => {
                        self.line("+ ");
                        self.flush().await?;
                        self.sasl_response().await?
                    }
                    _ => None,
                };
                let decoded = match response.as_deref() {
                    // "*" cancels (RFC 5034); "=" is an empty response.
                    Some("*") | None => {
                        self.line("-ERR [AUTH] Authentication cancelled");
                        return Ok(Flow::Continue);
                    }
                    Some("=") => Some(Vec::new()),
                    Some(b64) => BASE64.decode(b64).ok(),
                };
                let Some(message) = decoded else {
                    self.line("-ERR [AUTH] Not base64");
                    return Ok(Flow::Continue);
                };
                let result = self.service.auth.plain(&message, self.peer.ip()).await;
                return self.logged_in("(sasl)", result).await;
            }
            ("AUTH", _) => self.line("-ERR [AUTH] Only PLAIN is offered"),
            ("STLS", []) => return self.stls().await,
            ("XCLIENT", _) => self.forwarded_client(args),
            ("APOP", _) => self.line("-ERR [AUTH] APOP is not offered"),
            ("STAT" | "LIST" | "RETR" | "DELE" | "NOOP" | "RSET" | "TOP" | "UIDL" | "LAST", _) => {
                self.line("-ERR Log in first")
            }
            _ => self.line("-ERR Unknown command or wrong arguments"),
        }
        Ok(Flow::Continue)
    }

    /// The client's line after a `+ ` challenge; None at end of input.
    async fn sasl_response(&mut self) -> io::Result<Option<String>> {
        let max = self.service.config.max_line;
        let limit = self.patience(IDLE_TIMEOUT);
        let io = self.io.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        match tokio::time::timeout(limit, read_line(io, max)).await {
            Ok(Ok(Some(line))) if line.complete => Ok(Some(line.text())),
            Ok(Ok(_)) | Err(_) => Ok(None),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn logged_in(
        &mut self,
        user: &str,
        result: Result<String, AuthError>,
    ) -> io::Result<Flow> {
        let account = match result {
            Ok(account) if self.service.store.has_account(&account) => account,
            Ok(account) => {
                tracing::warn!(user, account, "pop3 login: the account has no mailbox here");
                self.line("-ERR [SYS/PERM] The account is not served here");
                return Ok(Flow::Continue);
            }
            Err(AuthError::Unavailable(e)) => {
                tracing::error!(user, "pop3 login: {e}");
                self.line("-ERR [SYS/TEMP] The directory cannot be reached; try later");
                return Ok(Flow::Continue);
            }
            Err(AuthError::Failed) => {
                tracing::info!(user, peer = %self.peer, client = %self.client, "pop3 login failed");
                self.auth_failures += 1;
                self.line("-ERR [AUTH] Authentication failed");
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    return Ok(Flow::Close);
                }
                return Ok(Flow::Continue);
            }
        };
        let store = self.service.store.clone();
        let synced = tokio::task::block_in_place(|| store.sync(&account, INBOX));
        match synced {
            Ok(inbox) => {
                tracing::info!(account, peer = %self.peer, client = %self.client, tls = self.tls, "pop3 login");
                let n = inbox.messages.len();
                self.line(&format!("+OK Logged in; {n} messages"));
                self.drop = Some(Maildrop {
                    account,
                    uid_validity: inbox.uid_validity,
                    messages: inbox.messages,
                    deleted: vec![false; n],
                    retrieved: vec![false; n],
                });
            }
            Err(e) => {
                tracing::error!(account, "pop3 maildrop: {e}");
                self.line("-ERR [SYS/TEMP] The mailbox cannot be read now");
            }
        }
        Ok(Flow::Continue)
    }

    async fn stls(&mut self) -> io::Result<Flow> {
        let acceptor = match (&self.service.tls, self.tls) {
            (Some(a), false) => a.clone(),
            _ => {
                self.line("-ERR STLS is not available now");
                return Ok(Flow::Continue);
            }
        };
        self.line("+OK Begin TLS negotiation now");
        self.flush().await?;
        // Anything pipelined behind STLS came in clear: the reader and
        // its buffer are dropped.
        let io = self.io.take().ok_or(io::ErrorKind::NotConnected)?;
        let limit = self.patience(Duration::ZERO);
        let tls = tokio::time::timeout(limit, acceptor.accept(io.into_inner()))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
        self.io = Some(BufReader::new(Box::new(tls)));
        self.tls = true;
        self.user = None;
        Ok(Flow::Continue)
    }

    /// `XCLIENT ADDR=… PORT=… SESSION=… TTL=…`: a trusted proxy names its
    /// client (logged with the login); from anyone else it is refused.
    fn forwarded_client(&mut self, args: &[&str]) {
        if !self.service.trusts(self.peer.ip()) {
            tracing::info!(peer = %self.peer, "refused XCLIENT from an untrusted peer");
            self.line("-ERR You are not allowed to use XCLIENT");
            return;
        }
        if let Some(Forwarded {
            addr: Some(addr), ..
        }) = xclient::parse(&args.join(" "))
        {
            self.client = addr;
        }
        self.line("+OK");
    }

    /// Commands after login; Err is the -ERR line.
    async fn transaction(&mut self, verb: &str, args: &[&str]) -> Result<(), String> {
        let drop = self.drop.as_mut().expect("logged in");
        match (verb, args) {
            ("STAT", []) => {
                let (count, size) = drop
                    .live()
                    .fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size));
                self.line(&format!("+OK {count} {size}"));
            }
            ("LIST", []) => {
                let rows: Vec<String> = drop
                    .live()
                    .map(|(i, m)| format!("{} {}", i + 1, m.size))
                    .collect();
                self.line(&format!("+OK {} messages", rows.len()));
                rows.iter().for_each(|r| self.line(r));
                self.line(".");
            }
            ("LIST", [n]) => {
                let i = drop.message(n)?;
                let size = drop.messages[i].size;
                self.line(&format!("+OK {} {size}", i + 1));
            }
            ("UIDL", []) => {
                let rows: Vec<String> = drop
                    .live()
                    .map(|(i, _)| format!("{} {}", i + 1, drop.uidl(i)))
                    .collect();
                self.line("+OK Unique-ID listing follows");
                rows.iter().for_each(|r| self.line(r));
                self.line(".");
            }
            ("UIDL", [n]) => {
                let i = drop.message(n)?;
                let id = drop.uidl(i);
                self.line(&format!("+OK {} {id}", i + 1));
            }
            ("RETR", [n]) => {
                let i = drop.message(n)?;
                drop.retrieved[i] = true;
                let path = drop.messages[i].path.clone();
                self.send_message(&path, None)?;
            }
            ("TOP", [n, lines]) => {
                let i = drop.message(n)?;
                let lines: usize = lines.parse().map_err(|_| "-ERR Not a line count")?;
                let path = drop.messages[i].path.clone();
                self.send_message(&path, Some(lines))?;
            }
            ("DELE", [n]) => {
                let i = drop.message(n)?;
                drop.deleted[i] = true;
                self.line(&format!("+OK Message {} deleted", i + 1));
            }
            ("RSET", []) => {
                drop.deleted.fill(false);
                let count = drop.messages.len();
                self.line(&format!("+OK {count} messages"));
            }
            ("NOOP", []) => self.line("+OK"),
            ("STLS" | "USER" | "PASS" | "AUTH" | "XCLIENT", _) => {
                return Err("-ERR Already logged in".into());
            }
            _ => return Err("-ERR Unknown command or wrong arguments".into()),
        }
        Ok(())
    }

    /// `+OK`, the message (or its header and first `top` body lines),
    /// dot-stuffed, and the terminating dot.
    fn send_message(&mut self, path: &std::path::Path, top: Option<usize>) -> Result<(), String> {
        let data = match std::fs::read(path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err("-ERR Message was removed by another session".into());
            }
            Err(e) => {
                tracing::error!(path = %path.display(), "pop3 read: {e}");
                return Err("-ERR [SYS/TEMP] Message cannot be read now".into());
            }
        };
        self.line("+OK Message follows");
        let mut in_body = false;
        let mut body_lines = 0;
        for line in data.split_inclusive(|&b| b == b'\n') {
            if in_body && top.is_some_and(|max| body_lines >= max) {
                break;
            }
            let content = line
                .strip_suffix(b"\n")
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .unwrap_or(line);
            if line.first() == Some(&b'.') {
                self.out.push(b'.');
            }
            self.out.extend_from_slice(content);
            self.out.extend_from_slice(b"\r\n");
            if in_body {
                body_lines += 1;
            } else if content.is_empty() {
                in_body = true;
            }
        }
        self.line(".");
        Ok(())
    }

    /// QUIT: in the TRANSACTION state, the UPDATE state (RFC 1939 §6).
    async fn quit(&mut self) {
        let Some(drop) = self.drop.take() else {
            self.line("+OK Bye");
            return;
        };
        let store = self.service.store.clone();
        let updated = tokio::task::block_in_place(|| {
            // Another session may have renamed a file since login (a flag
            // change): act on the messages as they are now, by UID.
            let now = store.sync(&drop.account, INBOX)?;
            // Listed by UID: a binary search each, not a scan.
            let current = |m: &Message| {
                let i = now.messages.binary_search_by_key(&m.uid, |c| c.uid).ok()?;
                Some(&now.messages[i])
            };
            let gone: Vec<&Message> = drop
                .messages
                .iter()
                .zip(&drop.deleted)
                .filter(|(_, deleted)| **deleted)
                .filter_map(|(m, _)| current(m))
                .collect();
            store.expunge(&gone, false)?;
            for (i, m) in drop.live() {
                match current(m) {
                    Some(m) if drop.retrieved[i] && !m.flags.contains('S') => {
                        match store.set_flags(m, &FlagChange::Add("S".into())) {
                            Ok(_) | Err(StoreError::Gone) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    _ => {}
                }
            }
            Ok::<_, StoreError>(gone.len())
        });
        match updated {
            Ok(n) => {
                tracing::info!(account = drop.account, deleted = n, "pop3 logout");
                self.line(&format!("+OK Bye; {n} messages deleted"));
            }
            Err(e) => {
                tracing::error!(account = drop.account, "pop3 update: {e}");
                self.line("-ERR [SYS/TEMP] Some deleted messages were not removed");
            }
        }
    }
}
