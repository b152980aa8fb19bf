//! IMAP: everything before login happens on the proxy: each command is
//! framed within `max_prelogin_bytes` (`fulmar_mailproto::imap::frame`),
//! then imap-codec parses it whole; after LOGIN on the home
//! instance, the two connections are spliced and bytes pass untouched.
use std::{io, sync::Arc, time::Instant};

use fulmar_daemon::secret::Secret;
use fulmar_mailproto::imap::frame::{self, Frame, Framer, Limits, Over};
use fulmar_mailproto::imap::{Received, Wire, WireError};
use imap_codec::{
    AuthenticateDataCodec, CommandCodec, ResponseCodec,
    decode::Decoder,
    encode::Encoder,
    imap_types::{
        auth::{AuthMechanism, AuthenticateData},
        command::{Command, CommandBody},
        core::{IString, NString, Tag},
        response::{GreetingKind, Response, Status, StatusKind},
    },
};

use crate::{
    config::{Listener, Protocol},
    conn::{Conn, Line},
    relay::{self, Tracker},
    session::{Ctx, Login, Peer, Spliced, login, login_backend, sasl_plain, too_many_failures},
    stream::Stream,
};

/// Our tags towards the back-end.
const ID_TAG: &str = "F1";
const LOGIN_TAG: &str = "F2";

/// A pre-login command, parsed and copied out of the input buffer.
enum Action {
    Capability(String),
    Noop(String),
    Logout(String),
    StartTls(String),
    Login {
        tag: String,
        user: Vec<u8>,
        pass: Vec<u8>,
    },
    Authenticate {
        tag: String,
        plain: bool,
        initial: Option<Vec<u8>>,
    },
    Id {
        tag: String,
        ttl: Option<u8>,
    },
    /// Valid IMAP that needs a logged-in session.
    NotYet {
        tag: String,
        name: &'static str,
    },
}

pub async fn serve(
    ctx: Arc<Ctx>,
    listener: Listener,
    client: Stream,
    peer: Peer,
) -> io::Result<()> {
    let ttl = ctx.config.backend.proxy_ttl;
    let idle = ctx.config.session.prelogin_idle_timeout;
    let prelogin = ctx.config.session.prelogin_timeout;
    let session = PreLogin {
        ctx,
        listener,
        conn: Conn::new(client, idle).with_deadline(Instant::now() + prelogin),
        framer: Framer::new(),
        peer,
        ttl,
        auth_failures: 0,
    };
    session.run().await
}

struct PreLogin {
    ctx: Arc<Ctx>,
    listener: Listener,
    conn: Conn,
    /// Where the command at the front of the input ends.
    framer: Framer,
    peer: Peer,
    /// Hops left before a proxy loop is declared.
    ttl: u8,
    auth_failures: u32,
}

impl PreLogin {
    fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 SASL-IR ID LITERAL+");
        if self
            .ctx
            .starttls_offered(&self.listener, self.conn.is_tls())
        {
            caps.push_str(" STARTTLS");
        }
        caps.push_str(
            if self.ctx.login_allowed(&self.listener, self.conn.is_tls()) {
                " AUTH=PLAIN"
            } else {
                " LOGINDISABLED"
            },
        );
        caps
    }

    async fn send(&mut self, text: &str) -> io::Result<()> {
        self.conn.send(text.as_bytes()).await
    }

    async fn run(mut self) -> io::Result<()> {
        let greeting = format!(
            "* OK [CAPABILITY {}] fulmar ready.\r\n",
            self.capabilities()
        );
        self.send(&greeting).await?;
        loop {
            let Some(action) = self.next_command().await? else {
                return Ok(());
            };
            match action {
                Action::Capability(tag) => {
                    let text = format!(
                        "* CAPABILITY {}\r\n{tag} OK Capability completed.\r\n",
                        self.capabilities()
                    );
                    self.send(&text).await?;
                }
                Action::Noop(tag) => self.send(&format!("{tag} OK NOOP completed.\r\n")).await?,
                Action::Logout(tag) => {
                    self.send(&format!(
                        "* BYE Logging out.\r\n{tag} OK Logout completed.\r\n"
                    ))
                    .await?;
                    return Ok(());
                }
                Action::StartTls(tag) => {
                    let go_ahead = format!("{tag} OK Begin TLS negotiation now.\r\n");
                    if !self
                        .ctx
                        .starttls(&self.listener, &mut self.conn, go_ahead.as_bytes())
                        .await?
                    {
                        self.send(&format!("{tag} BAD STARTTLS not available here.\r\n"))
                            .await?;
                    }
                }
                Action::Id { tag, ttl } => {
                    if let Some(t) = ttl {
                        self.ttl = self.ttl.min(t);
                    }
                    self.send(&format!(
                        "* ID (\"name\" \"fulmar\")\r\n{tag} OK ID completed.\r\n"
                    ))
                    .await?;
                }
                Action::NotYet { tag, name } => {
                    self.send(&format!("{tag} BAD {name} needs a logged-in session.\r\n"))
                        .await?;
                }
                Action::Login { tag, user, pass } => {
                    let pass = Secret::from_utf8(pass);
                    if let Some(home) = self.try_login(&tag, &user, pass.as_ref()).await? {
                        return self.splice(home).await;
                    }
                }
                Action::Authenticate {
                    tag,
                    plain,
                    initial,
                } => {
                    if !plain {
                        self.send(&format!(
                            "{tag} NO Unsupported authentication mechanism.\r\n"
                        ))
                        .await?;
                        continue;
                    }
                    let data = match initial {
                        Some(d) => d,
                        None => match self.sasl_response(&tag).await? {
                            Some(d) => d,
                            None => continue,
                        },
                    };
                    match sasl_plain(&data) {
                        Some((user, pass)) => {
                            let home = self.try_login(&tag, user.as_bytes(), Some(&pass)).await?;
                            if let Some(home) = home {
                                return self.splice(home).await;
                            }
                        }
                        None => {
                            self.send(&format!("{tag} BAD Invalid PLAIN response.\r\n"))
                                .await?;
                        }
                    }
                }
            }
        }
    }

    /// Reads the client's answer to `+ ` (one line, within
    /// `max_prelogin_bytes`); None when it cancelled or erred (already
    /// answered).
    async fn sasl_response(&mut self, tag: &str) -> io::Result<Option<Vec<u8>>> {
        self.send("+ \r\n").await?;
        let max = self.ctx.config.session.max_prelogin_bytes;
        let mut line = match self.conn.read_line_or_stop(max).await? {
            Line::Text(line) => line,
            Line::TooLong => {
                self.send("* BYE Command too long before login.\r\n")
                    .await?;
                return Err(io::ErrorKind::InvalidData.into());
            }
            Line::End => return Err(io::ErrorKind::UnexpectedEof.into()),
        };
        line.extend_from_slice(b"\r\n");
        let (answer, why) = match AuthenticateDataCodec::default().decode(&line) {
            Ok((_, AuthenticateData::Continue(secret))) => (Some(secret.declassify().to_vec()), ""),
            Ok((_, AuthenticateData::Cancel)) => (None, "Authentication cancelled"),
            Err(_) => (None, "Invalid base64 response"),
        };
        if answer.is_none() {
            self.send(&format!("{tag} BAD {why}.\r\n")).await?;
        }
        Ok(answer)
    }

    /// Logs in on the home instance; Some once the back-end accepted (the
    /// failures are answered here).
    async fn try_login(
        &mut self,
        tag: &str,
        user: &[u8],
        pass: Option<&Secret>,
    ) -> io::Result<Option<Home>> {
        if !self.ctx.login_allowed(&self.listener, self.conn.is_tls()) {
            self.send(&format!(
                "{tag} NO [PRIVACYREQUIRED] Use STARTTLS first.\r\n"
            ))
            .await?;
            return Ok(None);
        }
        let (Ok(user), Some(pass)) = (std::str::from_utf8(user), pass) else {
            self.send(&format!(
                "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
            ))
            .await?;
            return Ok(None);
        };
        if self.ttl == 0 {
            tracing::warn!(user, client = %self.peer.client, "proxy loop: no hops left");
            self.send(&format!("{tag} NO [UNAVAILABLE] Proxy loop detected.\r\n"))
                .await?;
            return Ok(None);
        }
        let client = self.peer.client.ip();
        let (host, user) = match login(&self.ctx, Protocol::Imap, client, user, pass).await {
            Login::Home { host, user, .. } => (host, user),
            Login::Failed => {
                self.send(&format!(
                    "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                ))
                .await?;
                self.auth_failures += 1;
                if self.auth_failures >= self.ctx.config.session.auth_failures_per_connection {
                    self.send("* BYE Too many failed logins.\r\n").await?;
                    return Err(too_many_failures());
                }
                return Ok(None);
            }
            Login::Throttled => {
                self.send(&format!(
                    "{tag} NO [UNAVAILABLE] Too many failed logins; try again later.\r\n"
                ))
                .await?;
                return Ok(None);
            }
            Login::Unavailable(_) => {
                self.send(&format!(
                    "{tag} NO [UNAVAILABLE] Account directory unavailable, try again later.\r\n"
                ))
                .await?;
                return Ok(None);
            }
        };
        let port = self.ctx.config.backend.imap_port;
        let unavailable =
            format!("{tag} NO [UNAVAILABLE] Mail store unavailable, try again later.\r\n");
        let (peer, ttl, timeout) = (
            &self.peer,
            self.ttl - 1,
            self.ctx.config.backend.login_timeout,
        );
        let (user_ref, pass) = (user.as_str(), pass.expose());
        let attempt = |stream| async move {
            let mut backend = Backend {
                wire: Wire::new(stream, BACKEND_MAX_RESPONSE, Some(timeout)),
            };
            let reply = backend.login(peer, ttl, user_ref, pass, tag).await?;
            Ok((backend, reply))
        };
        let target = (host.as_str(), port);
        let login = login_backend(&self.ctx, Protocol::Imap, &user, target, attempt).await;
        let Ok((backend, reply)) = login else {
            self.send(&unavailable).await?;
            return Ok(None);
        };
        if !reply.ok {
            self.conn.send(&reply.to_client).await?;
            return Ok(None);
        }
        tracing::info!(user, %host, client = %self.peer.client, session = %self.peer.session_id, "imap login");
        Ok(Some(Home {
            backend,
            reply: reply.to_client,
            user,
            host,
        }))
    }

    /// Commands the client pipelined behind LOGIN go on to the back-end.
    async fn splice(self, home: Home) -> io::Result<()> {
        let (client, pending) = self.conn.into_parts();
        let (backend, buffered) = home.backend.wire.into_parts();
        let spliced = Spliced {
            ctx: &self.ctx,
            peer: &self.peer,
            account: &home.user,
            host: &home.host,
        };
        spliced
            .relay(
                relay::Imap::default(),
                (client, &home.reply, &pending),
                (backend, &buffered),
            )
            .await
    }

    /// The next complete command, answering sync-literal continuations and
    /// syntax errors on the way; None at end of input. Every command, its
    /// literals included, fits in `max_prelogin_bytes`: nothing more is
    /// ever buffered for a client that has not logged in.
    async fn next_command(&mut self) -> io::Result<Option<Action>> {
        let max = self.ctx.config.session.max_prelogin_bytes;
        let limits = Limits {
            line: max,
            literal: max as u64,
            command: max as u64,
        };
        loop {
            match self.framer.next(&self.conn.buf, &limits) {
                Frame::Command(n) => {
                    let action = match CommandCodec::default().decode(&self.conn.buf[..n]) {
                        Ok((&[], command)) => Some(action(command)),
                        _ => None,
                    };
                    if let Some(action) = action {
                        self.conn.buf.drain(..n);
                        return Ok(Some(action));
                    }
                    let tag = frame::tag(&self.conn.buf).unwrap_or_else(|| "*".into());
                    self.conn.buf.drain(..n);
                    self.send(&format!("{tag} BAD Syntax error.\r\n")).await?;
                }
                Frame::More => {
                    let filled = tokio::select! {
                        filled = self.conn.fill() => filled?,
                        _ = self.peer.session.kicked() => {
                            self.conn.send(relay::Imap::default().goodbye()).await?;
                            return Ok(None);
                        }
                    };
                    if !filled {
                        return Ok(None);
                    }
                }
                Frame::Continue => self.send("+ Ready for literal data.\r\n").await?,
                Frame::Discard(n) => {
                    self.conn.buf.drain(..n);
                }
                Frame::Refuse { tag, over, close } => {
                    let why = match over {
                        Over::Line => "Command too long before login.",
                        Over::Literal(_) | Over::Command => "Literal too large before login.",
                    };
                    if close {
                        self.send(&format!("* BYE {why}\r\n")).await?;
                        return Ok(None);
                    }
                    let tag = tag.unwrap_or_else(|| "*".into());
                    self.send(&format!("{tag} BAD {why}\r\n")).await?;
                }
            }
        }
    }
}

fn action(command: Command<'_>) -> Action {
    let tag = command.tag.as_ref().to_string();
    match command.body {
        CommandBody::Capability => Action::Capability(tag),
        CommandBody::Noop => Action::Noop(tag),
        CommandBody::Logout => Action::Logout(tag),
        CommandBody::StartTLS => Action::StartTls(tag),
        CommandBody::Login { username, password } => Action::Login {
            tag,
            user: username.as_ref().to_vec(),
            pass: password.declassify().as_ref().to_vec(),
        },
        CommandBody::Authenticate {
            mechanism,
            initial_response,
        } => Action::Authenticate {
            tag,
            plain: mechanism == AuthMechanism::Plain,
            initial: initial_response.map(|r| r.declassify().to_vec()),
        },
        CommandBody::Id { parameters } => {
            let ttl = parameters.unwrap_or_default().iter().find_map(|(k, v)| {
                let key: &[u8] = k.as_ref();
                let value: &[u8] = v.0.as_ref()?.as_ref();
                key.eq_ignore_ascii_case(b"x-proxy-ttl")
                    .then(|| std::str::from_utf8(value).ok()?.parse().ok())
                    .flatten()
            });
            Action::Id { tag, ttl }
        }
        other => Action::NotYet {
            tag,
            name: other.name(),
        },
    }
}

/// A back-end that accepted the login, and its reply for the client.
struct Home {
    backend: Backend,
    reply: Vec<u8>,
    user: String,
    host: String,
}

/// What the back-end said to our LOGIN, ready for the client.
struct LoginReply {
    ok: bool,
    /// Untagged responses, then the tagged one under the client's tag.
    to_client: Vec<u8>,
}

/// Greeting, ID and LOGIN answers are small: more is a broken back-end.
const BACKEND_MAX_RESPONSE: usize = 1 << 20;

struct Backend {
    wire: Wire<Stream>,
}

/// One decoded back-end response: its bytes, and for a tagged status its
/// tag, kind and the same response re-encoded under another tag.
struct Reply {
    raw: Vec<u8>,
    tagged: Option<(String, StatusKind, Vec<u8>)>,
}

impl Backend {
    /// Greeting, ID with the client's address and our session id, LOGIN.
    async fn login(
        &mut self,
        peer: &Peer,
        ttl: u8,
        user: &str,
        pass: &str,
        client_tag: &str,
    ) -> io::Result<LoginReply> {
        self.greeting().await?;
        let client_ip = peer.client.ip().to_string();
        let client_port = peer.client.port().to_string();
        let local_ip = peer.local.ip().to_string();
        let local_port = peer.local.port().to_string();
        let ttl = ttl.to_string();
        let fields = [
            ("x-originating-ip", client_ip.as_str()),
            ("x-originating-port", client_port.as_str()),
            ("x-connected-ip", local_ip.as_str()),
            ("x-connected-port", local_port.as_str()),
            ("x-session-ext-id", peer.session_id.as_str()),
            ("x-proxy-ttl", ttl.as_str()),
        ];
        let mut parameters = Vec::new();
        for (k, v) in fields {
            parameters.push((
                IString::try_from(k).map_err(invalid)?,
                NString(Some(IString::try_from(v).map_err(invalid)?)),
            ));
        }
        let id = Command::new(
            ID_TAG,
            CommandBody::Id {
                parameters: Some(parameters),
            },
        )
        .map_err(invalid)?;
        self.command(&id).await?;
        loop {
            let reply = self.reply(client_tag).await?;
            if reply.tagged.is_some_and(|(t, _, _)| t == ID_TAG) {
                break;
            }
        }
        let body = CommandBody::login(user, pass).map_err(|_| invalid("login not encodable"))?;
        let login = Command::new(LOGIN_TAG, body).map_err(invalid)?;
        self.command(&login).await?;
        let mut to_client = Vec::new();
        loop {
            let reply = self.reply(client_tag).await?;
            match reply.tagged {
                Some((tag, kind, retagged)) if tag == LOGIN_TAG => {
                    to_client.extend_from_slice(&retagged);
                    return Ok(LoginReply {
                        ok: kind == StatusKind::Ok,
                        to_client,
                    });
                }
                _ => to_client.extend_from_slice(&reply.raw),
            }
        }
    }

    async fn greeting(&mut self) -> io::Result<()> {
        let greeting = self.wire.greeting().await.map_err(wire_error)?;
        if greeting.kind != GreetingKind::Ok {
            return Err(io::Error::other(format!(
                "back-end greeting is {:?}",
                greeting.kind
            )));
        }
        Ok(())
    }

    /// Sends a command, waiting for `+` before each synchronising literal.
    async fn command(&mut self, command: &Command<'_>) -> io::Result<()> {
        self.wire.command(command).await.map_err(wire_error)
    }

    /// The next response; a tagged status is also re-encoded under the
    /// client's tag.
    async fn reply(&mut self, client_tag: &str) -> io::Result<Reply> {
        let Received { response, raw } = self.wire.response().await.map_err(wire_error)?;
        let tagged = match response {
            Response::Status(Status::Tagged(mut tagged)) => {
                let tag = tagged.tag.as_ref().to_string();
                let kind = tagged.body.kind;
                tagged.tag = Tag::try_from(client_tag.to_string()).unwrap_or(tagged.tag);
                let bytes = ResponseCodec::default()
                    .encode(&Response::Status(Status::Tagged(tagged)))
                    .dump();
                Some((tag, kind, bytes))
            }
            _ => None,
        };
        Ok(Reply { raw, tagged })
    }
}

fn wire_error(e: WireError) -> io::Error {
    match e {
        WireError::Io(e) => e,
        WireError::Closed => io::ErrorKind::UnexpectedEof.into(),
        other => io::Error::other(format!("back-end: {other}")),
    }
}

fn invalid(e: impl std::fmt::Debug) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}"))
}
