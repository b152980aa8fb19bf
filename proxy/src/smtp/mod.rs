//! SMTP in: the client's session is held on the proxy. Each recipient is
//! looked up in the directory at RCPT; at DATA the message streams to every
//! involved instance at once (one transaction each), and the client gets
//! 250 only when all of them accepted it.
pub mod data;
mod delivery;

use std::{collections::BTreeMap, io, sync::Arc};

use delivery::Reply;

use crate::{
    config::{DeliveryProtocol, Listener, Protocol},
    conn::{Conn, Line},
    directory::Recipient,
    session::{
        Ctx, Login, Peer, PlainAnswer, connect_backend, login, read_plain, too_many_failures,
    },
    stream::Stream,
};
use data::Scanner;
use delivery::{Delivery, Envelope};

/// A kicked session's last words (RFC 5321 §3.8: 421 may come at any
/// time when the service must close).
const KICKED: &[u8] = b"421 4.3.2 Session ended by the administrator, please reconnect\r\n";

/// RFC 5321: 512 octets per command line; AUTH lines carry more.
const MAX_COMMAND: usize = 4096;

/// Where a group of recipients is delivered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Destination {
    /// A back-end instance (by `mailHost`), over the configured protocol.
    Instance(String),
    /// The outbound relay (`host:port`), over SMTP.
    Relay(String),
}

struct Transaction {
    from: String,
    size: Option<u64>,
    eight_bit: bool,
    rcpts: BTreeMap<Destination, Vec<String>>,
    count: usize,
}

pub async fn serve(
    ctx: Arc<Ctx>,
    listener: Listener,
    client: Stream,
    peer: Peer,
) -> io::Result<()> {
    let conn = Conn::new(client, ctx.config.session.prelogin_idle_timeout);
    let session = Session {
        ctx,
        listener,
        conn,
        peer,
        helo: None,
        user: None,
        tx: None,
        auth_failures: 0,
    };
    session.run().await
}

struct Session {
    ctx: Arc<Ctx>,
    listener: Listener,
    conn: Conn,
    peer: Peer,
    helo: Option<String>,
    /// The authenticated user (submission only).
    user: Option<String>,
    tx: Option<Transaction>,
    auth_failures: u32,
}

impl Session {
    fn submission(&self) -> bool {
        self.listener.protocol == Protocol::Submission
    }

    fn auth_offered(&self) -> bool {
        self.submission()
            && self.user.is_none()
            && self.ctx.login_allowed(&self.listener, self.conn.is_tls())
    }

    async fn reply(&mut self, text: &str) -> io::Result<()> {
        self.conn.queue(format!("{text}\r\n").as_bytes()).await?;
        self.conn.flush_if_idle().await
    }

    async fn run(mut self) -> io::Result<()> {
        let greeting = format!("220 {} ESMTP fulmar", self.ctx.config.smtp.hostname);
        self.reply(&greeting).await?;
        loop {
            // Kicked (an operator's kick, a drain): between transactions
            // the client is told 421 and the session ends.
            let read = self.conn.read_line(MAX_COMMAND);
            let line = tokio::select! {
                line = read => line?,
                _ = self.peer.session.kicked(), if self.tx.is_none() => {
                    self.conn.send(KICKED).await?;
                    return Ok(());
                }
            };
            let line = match line {
                Line::Text(l) => String::from_utf8_lossy(&l).into_owned(),
                Line::TooLong => {
                    self.reply("500 5.5.2 Line too long").await?;
                    continue;
                }
                Line::End => return Ok(()),
            };
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            let arg = arg.trim();
            match verb.to_ascii_uppercase().as_str() {
                "EHLO" | "HELO" if arg.is_empty() => {
                    self.reply("501 5.5.4 Say who you are").await?
                }
                // RFC 5321 §4.1.1.1: a domain or an address literal; a
                // name with spaces or control characters is neither, and
                // goes on to the back-end in XCLIENT and Received.
                "EHLO" | "HELO" if !helo_name(arg) => {
                    self.reply("501 5.5.2 Invalid EHLO/HELO name").await?
                }
                "EHLO" => self.ehlo(arg).await?,
                "HELO" => {
                    self.helo = Some(arg.to_string());
                    self.tx = None;
                    let text = format!("250 {}", self.ctx.config.smtp.hostname);
                    self.reply(&text).await?;
                }
                "STARTTLS" => {
                    let go_ahead = b"220 2.0.0 Ready to start TLS\r\n";
                    if self
                        .ctx
                        .starttls(&self.listener, &mut self.conn, go_ahead)
                        .await?
                    {
                        // RFC 3207: the session starts over.
                        self.helo = None;
                        self.tx = None;
                    } else {
                        self.reply("502 5.5.1 STARTTLS not available here").await?;
                    }
                }
                "AUTH" => self.auth(arg).await?,
                "MAIL" => self.mail(arg).await?,
                "RCPT" => self.rcpt(arg).await?,
                "DATA" => self.data().await?,
                "RSET" => {
                    self.tx = None;
                    self.reply("250 2.0.0 Ok").await?;
                }
                "NOOP" => self.reply("250 2.0.0 Ok").await?,
                "VRFY" => {
                    self.reply("252 2.5.0 Cannot verify, send some mail")
                        .await?
                }
                "QUIT" => {
                    self.conn.send(b"221 2.0.0 Bye\r\n").await?;
                    return Ok(());
                }
                _ => self.reply("500 5.5.2 Command not recognised").await?,
            }
        }
    }

    async fn ehlo(&mut self, name: &str) -> io::Result<()> {
        self.helo = Some(name.to_string());
        self.tx = None;
        let smtp = &self.ctx.config.smtp;
        let mut lines = vec![
            smtp.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", smtp.max_message_size),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self
            .ctx
            .starttls_offered(&self.listener, self.conn.is_tls())
        {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN".into());
        }
        let last = lines.len() - 1;
        let mut text = String::new();
        for (i, l) in lines.iter().enumerate() {
            text.push_str(&format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }));
        }
        self.conn.queue(text.as_bytes()).await?;
        self.conn.flush_if_idle().await
    }

    async fn auth(&mut self, arg: &str) -> io::Result<()> {
        if !self.submission() {
            return self
                .reply("502 5.5.1 AUTH is for the submission port")
                .await;
        }
        if self.user.is_some() {
            return self.reply("503 5.5.1 Already authenticated").await;
        }
        if !self.auth_offered() {
            return self
                .reply("530 5.7.0 Must issue a STARTTLS command first")
                .await;
        }
        if self.tx.is_some() {
            return self
                .reply("503 5.5.1 AUTH not allowed during a mail transaction")
                .await;
        }
        let (mech, initial) = arg.split_once(' ').unwrap_or((arg, ""));
        if !mech.eq_ignore_ascii_case("PLAIN") {
            return self.reply("504 5.5.4 Unsupported mechanism").await;
        }
        let (user, pass) = match read_plain(&mut self.conn, initial, b"334 \r\n", MAX_COMMAND)
            .await?
        {
            PlainAnswer::Credentials(u, p) => (u, p),
            PlainAnswer::Cancelled => {
                return self.reply("501 5.7.0 Authentication cancelled").await;
            }
            PlainAnswer::Invalid => return self.reply("501 5.5.2 Invalid PLAIN response").await,
            PlainAnswer::Closed => return Ok(()),
        };
        let client = self.peer.client.ip();
        match login(&self.ctx, Protocol::Submission, client, &user, &pass).await {
            // The default back-end cannot vouch for a submission login.
            Login::Home {
                verified: true,
                user: account,
                ..
            } => {
                tracing::info!(user, account, client = %self.peer.client, "smtp auth");
                self.peer.session.logged_in(&account, None);
                self.user = Some(account);
                self.reply("235 2.7.0 Authentication successful").await
            }
            Login::Home { .. } | Login::Failed => {
                self.auth_failures += 1;
                if self.auth_failures >= self.ctx.config.session.auth_failures_per_connection {
                    self.reply("421 4.7.0 Too many failed authentications, closing")
                        .await?;
                    return Err(too_many_failures());
                }
                self.reply("535 5.7.8 Authentication credentials invalid")
                    .await
            }
            Login::Throttled => {
                self.reply("454 4.7.0 Too many failed authentications, try again later")
                    .await
            }
            Login::Unavailable(_) => {
                self.reply("454 4.7.0 Temporary authentication failure")
                    .await
            }
        }
    }

    async fn mail(&mut self, arg: &str) -> io::Result<()> {
        if self.helo.is_none() {
            return self.reply("503 5.5.1 EHLO first").await;
        }
        if self.tx.is_some() {
            return self.reply("503 5.5.1 Nested MAIL command").await;
        }
        if self.submission() && self.user.is_none() {
            return self.reply("530 5.7.0 Authentication required").await;
        }
        let Some((from, params)) = path(arg, "FROM:") else {
            return self.reply("501 5.5.4 Syntax: MAIL FROM:<address>").await;
        };
        let mut size = None;
        let mut eight_bit = false;
        for p in params.split_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<u64>() {
                    Ok(n) => size = Some(n),
                    Err(_) => return self.reply("501 5.5.4 Bad SIZE").await,
                },
                "BODY" => eight_bit = v.eq_ignore_ascii_case("8BITMIME"),
                _ => return self.reply("555 5.5.4 Unsupported MAIL parameter").await,
            }
        }
        if self.submission() && !self.owns(&from).await? {
            return Ok(());
        }
        if size.is_some_and(|s| s > self.ctx.config.smtp.max_message_size) {
            return self
                .reply("552 5.3.4 Message size exceeds fixed limit")
                .await;
        }
        self.tx = Some(Transaction {
            from,
            size,
            eight_bit,
            rcpts: BTreeMap::new(),
            count: 0,
        });
        self.reply("250 2.1.0 Ok").await
    }

    /// Submission: the sender must be an address of the authenticated
    /// account (as the directory routes it), or the proxy would relay
    /// mail in anybody's name. False once the refusal is answered.
    async fn owns(&mut self, from: &str) -> io::Result<bool> {
        let owner = match self.ctx.directory.recipient(from).await {
            Ok(Recipient::Local { user, .. }) => user,
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(from, "sender lookup: {e}");
                self.reply("451 4.3.0 Directory unavailable, try again later")
                    .await?;
                return Ok(false);
            }
        };
        let user = self.user.as_deref().unwrap_or_default();
        if owner.is_some_and(|o| o.eq_ignore_ascii_case(user)) {
            return Ok(true);
        }
        tracing::warn!(user, from, client = %self.peer.client, "submission: sender not the account's");
        self.reply("553 5.7.1 Sender address not owned by the authenticated account")
            .await?;
        Ok(false)
    }

    async fn rcpt(&mut self, arg: &str) -> io::Result<()> {
        let Some(count) = self.tx.as_ref().map(|t| t.count) else {
            return self.reply("503 5.5.1 MAIL first").await;
        };
        let Some((mut address, params)) = path(arg, "TO:").filter(|(a, _)| !a.is_empty()) else {
            return self.reply("501 5.5.4 Syntax: RCPT TO:<address>").await;
        };
        if !params.trim().is_empty() {
            return self.reply("555 5.5.4 Unsupported RCPT parameter").await;
        }
        if count >= self.ctx.config.smtp.max_recipients {
            return self.reply("452 4.5.3 Too many recipients").await;
        }
        let destination = match self.ctx.directory.recipient(&address).await {
            Err(e) => {
                tracing::warn!(%address, "recipient lookup: {e}");
                return self
                    .reply("451 4.3.0 Directory unavailable, try again later")
                    .await;
            }
            Ok(Recipient::UnknownLocal) => {
                return self.reply("550 5.1.1 No such user here").await;
            }
            Ok(Recipient::Local { host, user }) => {
                match host.or_else(|| self.ctx.config.backend.default_host.clone()) {
                    // LMTP delivers to the account's name on the instance;
                    // SMTP leaves the address for the instance's MTA.
                    Some(h) => {
                        if let (Some(u), DeliveryProtocol::Lmtp) =
                            (user, self.ctx.config.backend.delivery)
                        {
                            address = u;
                        }
                        Destination::Instance(h)
                    }
                    None => return self.reply("451 4.3.0 No mail store for this user").await,
                }
            }
            Ok(Recipient::Remote) => match (&self.user, &self.ctx.config.smtp.outbound_relay) {
                (Some(_), Some(relay)) => Destination::Relay(relay.clone()),
                (Some(_), None) => {
                    return self.reply("554 5.7.1 No outbound relay configured").await;
                }
                (None, _) => return self.reply("554 5.7.1 Relay access denied").await,
            },
        };
        let tx = self.tx.as_mut().expect("transaction");
        tx.rcpts.entry(destination).or_default().push(address);
        tx.count += 1;
        self.reply("250 2.1.5 Ok").await
    }

    async fn data(&mut self) -> io::Result<()> {
        let Some(tx) = self.tx.take() else {
            return self.reply("503 5.5.1 MAIL first").await;
        };
        if tx.count == 0 {
            return self.reply("554 5.5.1 No valid recipients").await;
        }
        let mut deliveries = self.open_deliveries(&tx).await;
        if !deliveries.iter().any(Delivery::ready) {
            let worst = verdict(
                deliveries
                    .iter()
                    .filter_map(|d| d.failure.clone())
                    .collect(),
                0,
            );
            return self.reply(&worst).await;
        }
        self.conn
            .send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            .await?;
        let max = self.ctx.config.smtp.max_message_size;
        let mut too_big = false;
        // RFC 5321 §2.3.8: a line ends only at CRLF. A bare LF is refused,
        // never passed on: a back-end that ends lines at LF would take
        // `LF.LF` for the end of DATA and what follows for commands on our
        // trusted connection (SMTP smuggling).
        let mut scanner = Scanner::default();
        // Chunks are passed on from the input buffer itself, which keeps
        // its capacity from read to read.
        loop {
            if self.conn.buf.is_empty() && !self.conn.fill().await? {
                return Ok(()); // the client went away: nothing is delivered
            }
            let (body, end) = scanner.scan(&self.conn.buf);
            // The count includes the terminator's ".CRLF".
            if scanner.size.saturating_sub(3) > max {
                too_big = true;
            }
            if !too_big && !scanner.bare_lf {
                for d in deliveries.iter_mut() {
                    d.write(&self.conn.buf[..body]).await;
                }
            }
            if let Some(end) = end {
                // What follows the terminator is the next (pipelined) command.
                self.conn.buf.drain(..end);
                break;
            }
            self.conn.buf.clear();
        }
        let bare_lf = scanner.bare_lf;
        if too_big || bare_lf {
            // Dropping the back-end connections mid-DATA makes them discard it.
            drop(deliveries);
            if bare_lf {
                tracing::warn!(from = %tx.from, client = %self.peer.client, "smtp: bare LF in DATA refused");
                return self
                    .reply("550 5.5.2 Bare <LF> in DATA: lines end with <CR><LF>")
                    .await;
            }
            return self
                .reply("552 5.3.4 Message size exceeds fixed limit")
                .await;
        }
        let mut failures = Vec::new();
        for d in deliveries.iter_mut() {
            if let Err(reply) = d.finish().await {
                failures.push(reply);
            }
        }
        let text = verdict(failures, deliveries.len());
        tracing::info!(from = %tx.from, rcpts = tx.count, size = scanner.size, session = %self.peer.session_id, "smtp: {text}");
        self.reply(&text).await
    }

    async fn open_deliveries(&self, tx: &Transaction) -> Vec<Delivery> {
        let backend = &self.ctx.config.backend;
        let mut out = Vec::new();
        for (destination, rcpts) in &tx.rcpts {
            let (host, port, protocol) = match destination {
                Destination::Instance(h) => (h.clone(), backend.delivery_port, backend.delivery),
                Destination::Relay(r) => match r
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h, p.parse().ok()?)))
                {
                    Some((h, p)) => (
                        h.trim_matches(['[', ']']).to_string(),
                        p,
                        DeliveryProtocol::Smtp,
                    ),
                    None => (r.clone(), 25, DeliveryProtocol::Smtp),
                },
            };
            let env = Envelope {
                client_ip: self.peer.client.ip().to_string(),
                client_port: self.peer.client.port(),
                helo: self.helo.as_deref().unwrap_or(""),
                login: self.user.as_deref(),
                ttl: backend.proxy_ttl.saturating_sub(1),
                our_name: &self.ctx.config.smtp.hostname,
                from: &tx.from,
                size: tx.size,
                eight_bit: tx.eight_bit,
            };
            let delivery =
                match connect_backend(&self.ctx, self.listener.protocol, &host, port).await {
                    Ok(stream) => Delivery::open(stream, protocol, &env, rcpts).await,
                    Err(e) => Delivery::failed(Reply {
                        code: 451,
                        lines: vec![format!("4.4.1 {host}: {e}")],
                    }),
                };
            if let Some(f) = &delivery.failure {
                tracing::warn!(%host, "delivery refused: {} {}", f.code, f.text());
            }
            out.push(delivery);
        }
        out
    }
}

/// The client's reply from the groups' outcomes: 250 only if none failed;
/// if some instance already took the message, a temporary failure (the
/// client retries; duplicates beat loss); otherwise the failures decide.
fn verdict(failures: Vec<Reply>, groups: usize) -> String {
    if failures.is_empty() {
        return "250 2.0.0 Ok: delivered".into();
    }
    let delivered = groups.saturating_sub(failures.len());
    if delivered > 0 {
        return format!(
            "451 4.3.0 Delivered to {delivered} of {groups} mail stores; the others failed, try again later"
        );
    }
    match failures.iter().find(|f| f.transient()).or(failures.first()) {
        Some(f) if f.transient() => format!("451 4.3.0 Mail store failed: {}", f.text()),
        Some(f) => format!(
            "554 5.0.0 Mail store refused the message: {} {}",
            f.code,
            f.text()
        ),
        None => "451 4.3.0 Mail store failed".into(),
    }
}

/// `FROM:<a@b> PARAMS` → (`a@b`, `PARAMS`); `<>` is the null path.
fn path(arg: &str, keyword: &str) -> Option<(String, String)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let (address, params) = rest.split_once('>')?;
    if address.contains(['<', ' ', '\r', '\n']) {
        return None;
    }
    Some((address.to_string(), params.trim().to_string()))
}

/// A name EHLO/HELO may give: printable ASCII without spaces (a domain
/// or an address literal), at most 255 bytes.
fn helo_name(name: &str) -> bool {
    name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            path("FROM:<a@b.test> SIZE=10", "FROM:"),
            Some(("a@b.test".into(), "SIZE=10".into()))
        );
        assert_eq!(path("from: <>", "FROM:"), Some(("".into(), "".into())));
        assert_eq!(path("TO:a@b", "TO:"), None);
        assert_eq!(path("TO:<a@b", "TO:"), None);
    }

    #[test]
    fn verdicts() {
        let t = Reply {
            code: 452,
            lines: vec!["4.2.2 full".into()],
        };
        let p = Reply {
            code: 550,
            lines: vec!["5.1.1 gone".into()],
        };
        assert!(verdict(vec![], 2).starts_with("250"));
        assert!(
            verdict(vec![p.clone()], 2).starts_with("451"),
            "partial: retry"
        );
        assert!(verdict(vec![p.clone()], 1).starts_with("554"));
        assert!(verdict(vec![p, t], 2).starts_with("451"));
    }
}
