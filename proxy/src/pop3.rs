//! POP3: USER/PASS, AUTH PLAIN, CAPA and STLS on the proxy; then XCLIENT
//! (when the back-end offers it) and AUTH PLAIN on the home instance, and a
//! splice. The credentials travel base64-encoded, so nothing a client
//! typed can become a second command line on the back-end.
use std::{io, sync::Arc};

use crate::{
    config::{Listener, Protocol},
    conn::{Conn, Line},
    relay,
    relay::Tracker,
    session::{
        Ctx, Login, Peer, PlainAnswer, Spliced, login, login_backend, read_plain, too_many_failures,
    },
    stream::Stream,
};
use fulmar_daemon::secret::Secret;
use fulmar_mailproto::{sasl, xclient};

/// RFC 1939 allows 255 octets; SASL responses and long passwords need more.
const MAX_LINE: usize = 4096;

pub async fn serve(
    ctx: Arc<Ctx>,
    listener: Listener,
    client: Stream,
    peer: Peer,
) -> io::Result<()> {
    let session = &ctx.config.session;
    let conn = Conn::new(client, session.prelogin_idle_timeout)
        .with_deadline(std::time::Instant::now() + session.prelogin_timeout);
    let session = Session {
        ctx,
        listener,
        conn,
        peer,
        user: None,
        auth_failures: 0,
    };
    session.run().await
}

struct Session {
    ctx: Arc<Ctx>,
    listener: Listener,
    conn: Conn,
    peer: Peer,
    /// From USER, waiting for PASS.
    user: Option<String>,
    auth_failures: u32,
}

impl Session {
    async fn reply(&mut self, text: &str) -> io::Result<()> {
        self.conn.queue(text.as_bytes()).await?;
        self.conn.flush_if_idle().await
    }

    async fn run(mut self) -> io::Result<()> {
        self.conn.send(b"+OK fulmar ready.\r\n").await?;
        loop {
            let read = self.conn.read_line(MAX_LINE);
            let line = tokio::select! {
                line = read => line?,
                _ = self.peer.session.kicked() => {
                    self.conn.send(relay::Pop3::default().goodbye()).await?;
                    return Ok(());
                }
            };
            let line = match line {
                Line::Text(l) => l,
                Line::TooLong => {
                    self.reply("-ERR Line too long.\r\n").await?;
                    continue;
                }
                Line::End => return Ok(()),
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            match verb.to_ascii_uppercase().as_str() {
                "CAPA" => {
                    let mut caps = String::from(
                        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n",
                    );
                    if self.ctx.login_allowed(&self.listener, self.conn.is_tls()) {
                        caps.push_str("USER\r\nSASL PLAIN\r\n");
                    }
                    if self
                        .ctx
                        .starttls_offered(&self.listener, self.conn.is_tls())
                    {
                        caps.push_str("STLS\r\n");
                    }
                    caps.push_str(".\r\n");
                    self.reply(&caps).await?;
                }
                "STLS" => {
                    let tls = self.ctx.starttls(
                        &self.listener,
                        &mut self.conn,
                        b"+OK Begin TLS negotiation.\r\n",
                    );
                    if tls.await? {
                        self.user = None;
                    } else {
                        self.reply("-ERR STLS not available here.\r\n").await?;
                    }
                }
                "QUIT" => {
                    self.conn.send(b"+OK Bye.\r\n").await?;
                    return Ok(());
                }
                "USER" if !arg.is_empty() => {
                    if !self.ctx.login_allowed(&self.listener, self.conn.is_tls()) {
                        self.reply("-ERR [AUTH] Use STLS first.\r\n").await?;
                        continue;
                    }
                    self.user = Some(arg.to_string());
                    self.reply("+OK\r\n").await?;
                }
                "PASS" => {
                    let Some(user) = self.user.take() else {
                        self.reply("-ERR USER first.\r\n").await?;
                        continue;
                    };
                    if let Some(home) = self.try_login(&user, &Secret::new(arg)).await? {
                        return self.splice(home).await;
                    }
                }
                "AUTH" if arg.is_empty() => self.reply("+OK\r\nPLAIN\r\n.\r\n").await?,
                "AUTH" => {
                    let (mech, initial) = arg.split_once(' ').unwrap_or((arg, ""));
                    if !mech.eq_ignore_ascii_case("PLAIN") {
                        self.reply("-ERR Unsupported mechanism.\r\n").await?;
                        continue;
                    }
                    let answer = read_plain(&mut self.conn, initial, b"+ \r\n", MAX_LINE);
                    let (user, pass) = match answer.await? {
                        PlainAnswer::Credentials(u, p) => (u, p),
                        PlainAnswer::Cancelled => {
                            self.reply("-ERR Authentication cancelled.\r\n").await?;
                            continue;
                        }
                        PlainAnswer::Invalid => {
                            self.reply("-ERR Invalid PLAIN response.\r\n").await?;
                            continue;
                        }
                        PlainAnswer::Closed => return Ok(()),
                    };
                    if let Some(home) = self.try_login(&user, &pass).await? {
                        return self.splice(home).await;
                    }
                }
                _ => {
                    self.reply("-ERR Unknown command, or log in first.\r\n")
                        .await?
                }
            }
        }
    }

    async fn try_login(&mut self, user: &str, pass: &Secret) -> io::Result<Option<Home>> {
        if !self.ctx.login_allowed(&self.listener, self.conn.is_tls()) {
            self.reply("-ERR [AUTH] Use STLS first.\r\n").await?;
            return Ok(None);
        }
        let client = self.peer.client.ip();
        let (host, user) = match login(&self.ctx, Protocol::Pop3, client, user, pass).await {
            Login::Home { host, user, .. } => (host, user),
            Login::Failed => {
                self.auth_failures += 1;
                if self.auth_failures >= self.ctx.config.session.auth_failures_per_connection {
                    self.reply(
                        "-ERR [AUTH] Authentication failed; too many failures, closing.\r\n",
                    )
                    .await?;
                    return Err(too_many_failures());
                }
                self.reply("-ERR [AUTH] Authentication failed.\r\n").await?;
                return Ok(None);
            }
            Login::Throttled => {
                self.reply("-ERR [SYS/TEMP] Too many failed logins; try again later.\r\n")
                    .await?;
                return Ok(None);
            }
            Login::Unavailable(_) => {
                self.reply("-ERR [SYS/TEMP] Account directory unavailable, try again later.\r\n")
                    .await?;
                return Ok(None);
            }
        };
        let port = self.ctx.config.backend.pop3_port;
        let backend = &self.ctx.config.backend;
        let limits = (backend.proxy_ttl, backend.login_timeout);
        let (peer, user_ref) = (&self.peer, user.as_str());
        let attempt = |stream| backend_login(stream, peer, limits, user_ref, pass);
        let target = (host.as_str(), port);
        let result = login_backend(&self.ctx, Protocol::Pop3, &user, target, attempt).await;
        match result {
            Ok(Ok(mut home)) => {
                tracing::info!(%user, %host, client = %self.peer.client, session = %self.peer.session_id, "pop3 login");
                home.user = user;
                home.host = host;
                Ok(Some(home))
            }
            Ok(Err(refusal)) => {
                self.reply(&refusal).await?;
                Ok(None)
            }
            Err(_) => {
                self.reply("-ERR [SYS/TEMP] Mail store unavailable, try again later.\r\n")
                    .await?;
                Ok(None)
            }
        }
    }

    async fn splice(self, home: Home) -> io::Result<()> {
        let (client, pending) = self.conn.into_parts();
        let spliced = Spliced {
            ctx: &self.ctx,
            peer: &self.peer,
            account: &home.user,
            host: &home.host,
        };
        spliced
            .relay(
                relay::Pop3::default(),
                (client, &home.reply, &pending),
                (home.stream, &home.pending),
            )
            .await
    }
}

/// A back-end that accepted the login.
struct Home {
    stream: Stream,
    /// Its `+OK` to AUTH, for the client.
    reply: Vec<u8>,
    /// Bytes it sent after that.
    pending: Vec<u8>,
    /// The account and its instance, for the registry.
    user: String,
    host: String,
}

/// Logs in on the back-end. Ok(Err(line)): it refused, `line` is its answer.
async fn backend_login(
    stream: Stream,
    peer: &Peer,
    (ttl, timeout): (u8, std::time::Duration),
    user: &str,
    pass: &Secret,
) -> io::Result<Result<Home, String>> {
    let mut conn = Conn::new(stream, timeout);
    let greeting = response_line(&mut conn).await?;
    if !greeting.starts_with("+OK") {
        return Err(io::Error::other(format!("greeting {greeting:?}")));
    }
    // Dovecot announces XCLIENT in the greeting to trusted peers; others
    // may list it in CAPA.
    let mut xclient = greeting.contains("[XCLIENT]");
    if !xclient {
        conn.send(b"CAPA\r\n").await?;
    }
    if !xclient && response_line(&mut conn).await?.starts_with("+OK") {
        loop {
            let cap = response_line(&mut conn).await?;
            if cap == "." {
                break;
            }
            xclient |= cap
                .split(' ')
                .next()
                .is_some_and(|c| c.eq_ignore_ascii_case("XCLIENT"));
        }
    }
    if xclient {
        let (addr, port) = (peer.client.ip().to_string(), peer.client.port().to_string());
        let ttl = ttl.saturating_sub(1).to_string();
        // CAPA names XCLIENT without its attributes: send the four Dovecot takes.
        let attributes = [
            ("ADDR", addr.as_str()),
            ("PORT", &port),
            ("SESSION", &peer.session_id),
            ("TTL", &ttl),
        ];
        let names = attributes.map(|(n, _)| n);
        let line = xclient::line(&names, &attributes).expect("names offered");
        conn.send(format!("{line}\r\n").as_bytes()).await?;
        let answer = response_line(&mut conn).await?;
        if !answer.starts_with("+OK") {
            tracing::warn!("pop3 back-end refused XCLIENT: {answer}");
        }
    }
    let plain = sasl::plain_response("", user, pass);
    conn.send(format!("AUTH PLAIN {}\r\n", plain.expose()).as_bytes())
        .await?;
    let answer = response_line(&mut conn).await?;
    if !answer.starts_with("+OK") {
        return Ok(Err(format!("{answer}\r\n")));
    }
    let (stream, pending) = conn.into_parts();
    Ok(Ok(Home {
        stream,
        reply: format!("{answer}\r\n").into_bytes(),
        pending,
        user: String::new(),
        host: String::new(),
    }))
}

async fn response_line(conn: &mut Conn) -> io::Result<String> {
    match conn.read_line(MAX_LINE).await? {
        Line::Text(l) => Ok(String::from_utf8_lossy(&l).into_owned()),
        Line::TooLong => Err(io::Error::other("back-end line too long")),
        Line::End => Err(io::ErrorKind::UnexpectedEof.into()),
    }
}
