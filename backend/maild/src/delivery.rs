//! Delivery into the instance's maildirs, in two dialects on separate
//! listeners: LMTP (RFC 2033: LHLO, one reply per accepted recipient after
//! DATA) and SMTP (RFC 5321: EHLO/HELO, one reply per message), both with
//! PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES and XCLIENT.
//!
//! - A recipient gets 250 only after its copy is durable (see `maildir`).
//! - XCLIENT (Postfix's) is offered to and accepted from trusted networks
//!   only: a proxy names the real client, which goes into the Received line.
//! - Quota: a full mailbox is refused at RCPT, and a message that would
//!   overfill one at DATA (552 5.2.2). An SMTP DATA has one reply for all
//!   recipients, so the message is stored for none of them when it fits
//!   not all; LMTP answers each.
//! - Command lines are bounded (`MAX_LINE`), messages by `max_message_size`
//!   (SIZE= refused up front, DATA read to its end and then refused).
use std::{net::SocketAddr, sync::Arc};

use fulmar_mailproto::xclient::{self, Forwarded};

use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpListener,
};

use crate::{
    Service,
    net::{self, read_line, skip_line},
    store::StoreError,
};

/// Longest command line accepted (RFC 5321 asks for at least 512).
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Lmtp,
    Smtp,
}

impl Dialect {
    /// The protocol as the Received line names it.
    fn name(self) -> &'static str {
        match self {
            Dialect::Lmtp => "LMTP",
            Dialect::Smtp => "ESMTP",
        }
    }

    /// The protocol's label in logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Dialect::Lmtp => "lmtp",
            Dialect::Smtp => "smtp",
        }
    }

    fn hello_verb(self) -> &'static str {
        match self {
            Dialect::Lmtp => "LHLO",
            Dialect::Smtp => "EHLO",
        }
    }
}

pub struct Delivery {
    /// The store, the config and who may send XCLIENT.
    pub service: Arc<Service>,
    pub dialect: Dialect,
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, delivery: Arc<Delivery>) -> std::io::Result<()> {
    net::accept(listener, delivery.dialect.label(), |socket, peer| {
        let delivery = delivery.clone();
        async move {
            let (read, write) = socket.into_split();
            delivery.session(read, write, peer).await
        }
    })
    .await
}

/// LMTP (or SMTP) inside TLS from the first byte: what a proxy with
/// `backend.tls` speaks to the delivery port.
pub async fn serve_tls(
    listener: TcpListener,
    delivery: Arc<Delivery>,
    acceptor: tokio_rustls::TlsAcceptor,
) -> std::io::Result<()> {
    let handshake = delivery.service.config.delivery_idle_timeout;
    let protocol = match delivery.dialect {
        Dialect::Lmtp => "lmtps",
        Dialect::Smtp => "smtps",
    };
    net::accept_tls(listener, protocol, acceptor, handshake, move |tls, peer| {
        let delivery = delivery.clone();
        async move {
            let (read, write) = tokio::io::split(tls);
            delivery.session(read, write, peer).await
        }
    })
    .await
}

/// The address inside `<...>` after `FROM:` / `TO:`, and the parameters.
fn path_arg<'a>(rest: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

#[derive(Default)]
struct Envelope {
    from: Option<String>,
    size: Option<u64>,
    rcpts: Vec<String>,
}

/// Who is on the other end, as the Received line tells it.
struct Client {
    helo: Option<String>,
    addr: String,
    /// XCLIENT named the real client's HELO: the proxy's own EHLO that
    /// follows does not replace it.
    helo_forwarded: bool,
}

impl Delivery {
    fn greeting(&self) -> String {
        let name = &self.service.config.instance;
        format!("220 {name} fulmar {} ready\r\n", self.dialect.name())
    }

    pub async fn session<R, W>(
        &self,
        read: R,
        mut write: W,
        peer: SocketAddr,
    ) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut r = BufReader::new(read);
        let name = &self.service.config.instance;
        let trusted = self.service.trusts(peer.ip());
        write.write_all(self.greeting().as_bytes()).await?;
        let mut client = Client {
            helo: None,
            addr: peer.ip().to_string(),
            helo_forwarded: false,
        };
        let mut greeted = false;
        let mut env = Envelope::default();
        let idle = self.service.config.delivery_idle_timeout;
        let idle_out = format!("421 4.4.2 {name} idle for too long, closing\r\n");
        loop {
            let Ok(line) = tokio::time::timeout(idle, read_line(&mut r, MAX_LINE)).await else {
                write.write_all(idle_out.as_bytes()).await?;
                return Ok(());
            };
            let Some(line) = line? else {
                return Ok(());
            };
            if !line.complete {
                // Skip the rest of the over-long line before answering.
                if !skip_line(&mut r, MAX_LINE).await? {
                    return Ok(());
                }
                write.write_all(b"500 5.5.2 line too long\r\n").await?;
                continue;
            }
            let text = line.text();
            let (verb, rest) = text.split_once(' ').unwrap_or((&text, ""));
            let verb = verb.to_ascii_uppercase();
            let hello = match (self.dialect, verb.as_str()) {
                (Dialect::Lmtp, "LHLO") | (Dialect::Smtp, "EHLO" | "HELO") => true,
                (Dialect::Lmtp, "HELO" | "EHLO") => {
                    write
                        .write_all(b"500 5.5.1 this is LMTP: use LHLO\r\n")
                        .await?;
                    continue;
                }
                (Dialect::Smtp, "LHLO") => {
                    write
                        .write_all(b"500 5.5.1 this is SMTP: use EHLO\r\n")
                        .await?;
                    continue;
                }
                _ => false,
            };
            let reply = match verb.as_str() {
                _ if hello && rest.trim().is_empty() => {
                    format!("501 5.5.4 {verb} needs a host name\r\n")
                }
                _ if hello => {
                    greeted = true;
                    if !client.helo_forwarded {
                        client.helo = Some(rest.trim().to_string());
                    }
                    env = Envelope::default();
                    if verb == "HELO" {
                        format!("250 {name}\r\n")
                    } else {
                        self.extensions(trusted)
                    }
                }
                "XCLIENT" if !trusted => {
                    tracing::info!(%peer, "refused XCLIENT from an untrusted peer");
                    "550 5.7.0 XCLIENT is not allowed from here\r\n".into()
                }
                "XCLIENT" if env.from.is_some() => {
                    "503 5.5.1 XCLIENT inside a mail transaction\r\n".into()
                }
                "XCLIENT" => match xclient::parse(rest) {
                    Some(Forwarded { addr, helo }) => {
                        client = Client {
                            addr: addr.unwrap_or(client.addr),
                            helo_forwarded: helo.is_some() || client.helo_forwarded,
                            helo: helo.or(client.helo),
                        };
                        greeted = false;
                        // As Postfix does: a fresh greeting, then EHLO again.
                        self.greeting()
                    }
                    None => "501 5.5.4 syntax: XCLIENT NAME=value ...\r\n".into(),
                },
                "MAIL" if !greeted => {
                    format!("503 5.5.1 {} first\r\n", self.dialect.hello_verb())
                }
                "MAIL" if env.from.is_some() => "503 5.5.1 nested MAIL\r\n".into(),
                "MAIL" => match path_arg(rest, "FROM:") {
                    None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into(),
                    Some((from, params)) => match declared_size(params) {
                        Some(size) if size > self.service.config.max_message_size => format!(
                            "552 5.3.4 message size {size} exceeds the limit {}\r\n",
                            self.service.config.max_message_size
                        ),
                        size => {
                            env.from = Some(from.to_string());
                            env.size = size;
                            "250 2.1.0 sender ok\r\n".into()
                        }
                    },
                },
                "RCPT" if env.from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
                "RCPT" => match path_arg(rest, "TO:") {
                    None => "501 5.5.4 syntax: RCPT TO:<address>\r\n".into(),
                    Some(_) if env.rcpts.len() >= self.service.config.max_recipients => {
                        "452 4.5.3 too many recipients\r\n".into()
                    }
                    Some((to, _)) => self.recipient(to, &mut env),
                },
                "DATA" if env.rcpts.is_empty() => "503 5.5.1 no valid recipients\r\n".into(),
                "DATA" => {
                    write
                        .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    write.flush().await?;
                    let Some(body) = self.read_data(&mut r).await? else {
                        return Ok(());
                    };
                    let env = std::mem::take(&mut env);
                    self.deliver_all(&client, &env, body).await
                }
                "RSET" => {
                    env = Envelope::default();
                    "250 2.0.0 ok\r\n".into()
                }
                "NOOP" => "250 2.0.0 ok\r\n".into(),
                "VRFY" => "252 2.5.0 send some mail, we will try\r\n".into(),
                "QUIT" => {
                    write
                        .write_all(format!("221 2.0.0 {name} closing\r\n").as_bytes())
                        .await?;
                    return write.flush().await;
                }
                _ => "500 5.5.2 unknown command\r\n".into(),
            };
            write.write_all(reply.as_bytes()).await?;
            // Pipelined commands are answered together once nothing is pending.
            if r.buffer().is_empty() {
                write.flush().await?;
            }
        }
    }

    /// The LHLO/EHLO reply: XCLIENT only for a peer allowed to use it.
    fn extensions(&self, trusted: bool) -> String {
        let mut lines = vec![
            self.service.config.instance.clone(),
            "PIPELINING".into(),
            "ENHANCEDSTATUSCODES".into(),
            "8BITMIME".into(),
        ];
        if trusted {
            lines.push("XCLIENT ADDR PORT HELO NAME LOGIN PROTO TTL".into());
        }
        lines.push(format!("SIZE {}", self.service.config.max_message_size));
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
            .collect()
    }

    /// RCPT: an account here with room for (what MAIL said of) the message.
    fn recipient(&self, to: &str, env: &mut Envelope) -> String {
        if !self.service.store.has_account(to) {
            return format!("550 5.1.1 <{to}>: no such mailbox here\r\n");
        }
        let size = env.size.unwrap_or(0);
        match tokio::task::block_in_place(|| self.service.store.check_quota(to, size)) {
            Ok(()) => {
                env.rcpts.push(to.to_ascii_lowercase());
                "250 2.1.5 recipient ok\r\n".into()
            }
            Err(e @ StoreError::OverQuota { .. }) => format!("552 5.2.2 <{to}>: {e}\r\n"),
            Err(e) => {
                tracing::error!(rcpt = to, "quota: {e}");
                format!("451 4.3.0 <{to}>: try again later\r\n")
            }
        }
    }

    /// The message up to the lone dot (`CRLF.CRLF`), unstuffed; `Err(size)` when it
    /// outgrew the limit (read to its end all the same); `None` at EOF.
    async fn read_data<R: AsyncRead + Unpin>(
        &self,
        r: &mut BufReader<R>,
    ) -> std::io::Result<Option<Result<Vec<u8>, u64>>> {
        let max = self.service.config.max_message_size as usize;
        let mut body = Vec::new();
        let mut seen: u64 = 0;
        let mut at_line_start = true;
        let idle = self.service.config.delivery_idle_timeout;
        loop {
            // Silent within DATA: as good as gone; nothing is delivered.
            let Ok(line) = tokio::time::timeout(idle, read_line(r, MAX_LINE.max(64 << 10))).await
            else {
                return Ok(None);
            };
            let Some(line) = line? else {
                return Ok(None);
            };
            let mut bytes = &line.bytes[..];
            if at_line_start {
                if bytes == b".\r\n" {
                    break;
                }
                if bytes.first() == Some(&b'.') {
                    bytes = &bytes[1..];
                }
            }
            // RFC 5321 §2.3.8: only CRLF ends a line, so only `CRLF.CRLF`
            // ends the message; a bare LF (`.LF` included) is data. What
            // follows a bare-LF dot is never read as commands (smuggling).
            at_line_start = line.complete && line.bytes.ends_with(b"\r\n");
            seen += bytes.len() as u64;
            if body.len() + bytes.len() <= max {
                body.extend_from_slice(bytes);
            } else {
                body = Vec::new();
            }
        }
        Ok(Some(if seen as usize > max {
            Err(seen)
        } else {
            Ok(body)
        }))
    }

    /// LMTP: one reply per recipient, in RCPT order. SMTP: one reply; the
    /// message is stored for all recipients or, when one has no room,
    /// for none.
    async fn deliver_all(
        &self,
        client: &Client,
        env: &Envelope,
        body: Result<Vec<u8>, u64>,
    ) -> String {
        let rcpts = &env.rcpts;
        let smtp = self.dialect == Dialect::Smtp;
        let body = match body {
            Ok(body) => Arc::new(body),
            Err(size) => {
                let line = format!(
                    "552 5.3.4 message size {size} exceeds the limit {}\r\n",
                    self.service.config.max_message_size
                );
                return if smtp { line } else { line.repeat(rcpts.len()) };
            }
        };
        if smtp {
            let len = body.len() as u64;
            for rcpt in rcpts {
                match tokio::task::block_in_place(|| self.service.store.check_quota(rcpt, len)) {
                    Ok(()) => {}
                    Err(e @ StoreError::OverQuota { .. }) => {
                        return format!("552 5.2.2 <{rcpt}>: {e}; not delivered to anyone\r\n");
                    }
                    Err(e) => {
                        tracing::error!(rcpt, "quota: {e}");
                        return "451 4.3.0 not stored, try again later\r\n".into();
                    }
                }
            }
        }
        let from = env.from.as_deref().unwrap_or_default();
        let mut replies = String::new();
        let mut failed = None;
        for rcpt in rcpts {
            let mut copy = format!(
                "Return-Path: <{from}>\r\nDelivered-To: {rcpt}\r\n{}",
                self.received(client, rcpt)
            )
            .into_bytes();
            copy.extend_from_slice(&body);
            let store = self.service.store.clone();
            let to = rcpt.clone();
            let started = std::time::Instant::now();
            let done = tokio::task::spawn_blocking(move || store.deliver(&to, &copy)).await;
            let took = started.elapsed();
            let stored = match done {
                Ok(result) => result,
                Err(e) => Err(StoreError::Refused(if e.is_panic() {
                    "delivery panicked"
                } else {
                    "delivery cancelled"
                })),
            };
            let result = match &stored {
                Ok(()) => "ok",
                Err(StoreError::OverQuota { .. }) => "over_quota",
                Err(_) => "failed",
            };
            crate::metrics::METRICS.delivery(self.dialect.label(), result, took);
            let reply = match stored {
                Ok(()) => format!("250 2.0.0 <{rcpt}> delivered\r\n"),
                Err(e @ StoreError::OverQuota { .. }) => format!("552 5.2.2 <{rcpt}>: {e}\r\n"),
                Err(error) => {
                    tracing::error!(rcpt, %error, "delivery failed");
                    format!("451 4.3.0 <{rcpt}> not stored, try again later\r\n")
                }
            };
            if !reply.starts_with('2') && failed.is_none() {
                failed = Some(reply.clone());
            }
            replies += &reply;
        }
        match (smtp, failed) {
            (false, _) => replies,
            // The sender will try again; copies already stored may then
            // arrive twice, which mail allows and loss does not.
            (true, Some(reply)) => reply,
            (true, None) => format!("250 2.0.0 delivered to {} recipients\r\n", rcpts.len()),
        }
    }

    /// The trace line (RFC 5321 §4.4) naming the client, as XCLIENT told it.
    fn received(&self, client: &Client, rcpt: &str) -> String {
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S +0000");
        format!(
            "Received: from {} ([{}])\r\n\tby {} (fulmar-maild) with {}\r\n\tfor <{rcpt}>; {date}\r\n",
            client.helo.as_deref().unwrap_or("unknown"),
            client.addr,
            self.service.config.instance,
            self.dialect.name()
        )
    }
}

/// `SIZE=n` among MAIL parameters.
fn declared_size(params: &str) -> Option<u64> {
    params.split_whitespace().find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.eq_ignore_ascii_case("SIZE").then(|| v.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_and_rcpt_arguments() {
        assert_eq!(
            path_arg("FROM:<a@x.test> SIZE=10", "FROM:"),
            Some(("a@x.test", "SIZE=10"))
        );
        assert_eq!(path_arg("from: <>", "FROM:"), Some(("", "")));
        assert_eq!(path_arg("TO:a@x.test", "TO:"), None);
        assert_eq!(declared_size("BODY=8BITMIME size=123"), Some(123));
        assert_eq!(declared_size("SIZE=lots"), None);
    }
}
