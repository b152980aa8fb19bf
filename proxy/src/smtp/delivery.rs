//! One SMTP/LMTP transaction on one back-end instance (or the outbound
//! relay): greeting, LHLO/EHLO, XCLIENT with the client's identity, MAIL,
//! RCPT, DATA; then the message streams through and the replies decide.
use std::{io, time::Duration};

use fulmar_mailproto::xclient;

use crate::{
    config::DeliveryProtocol,
    conn::{Conn, Line},
    stream::Stream,
};

/// RFC 5321 reply lines are at most 512 octets; allow servers some slack.
const MAX_REPLY_LINE: usize = 2048;
/// A back-end that stays silent this long has failed the transaction.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    /// Every line's text, without the code.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    pub fn text(&self) -> String {
        self.lines.last().cloned().unwrap_or_default()
    }
    fn local(code: u16, text: &str) -> Self {
        Self {
            code,
            lines: vec![text.into()],
        }
    }
}

/// What the proxy tells the back-end about the session.
pub struct Envelope<'a> {
    pub client_ip: String,
    pub client_port: u16,
    pub helo: &'a str,
    pub login: Option<&'a str>,
    pub ttl: u8,
    pub our_name: &'a str,
    pub from: &'a str,
    /// SIZE the client declared, BODY=8BITMIME if it asked.
    pub size: Option<u64>,
    pub eight_bit: bool,
}

pub struct Delivery {
    /// None when the connection never came up.
    conn: Option<Conn>,
    protocol: DeliveryProtocol,
    /// Recipients the back-end accepted at RCPT (LMTP answers each after DATA).
    accepted: usize,
    /// Set when a step failed: the reply that explains it.
    pub failure: Option<Reply>,
}

impl Delivery {
    /// Runs the transaction up to and including DATA's 354. A refusal or
    /// broken connection leaves `failure` set instead of erring.
    pub async fn open(
        stream: Stream,
        protocol: DeliveryProtocol,
        env: &Envelope<'_>,
        rcpts: &[String],
    ) -> Self {
        let mut d = Self {
            conn: Some(Conn::new(stream, REPLY_TIMEOUT)),
            protocol,
            accepted: 0,
            failure: None,
        };
        if let Err(e) = d.start(env, rcpts).await {
            d.fail(Reply::local(
                451,
                &format!("4.4.2 back-end conversation failed: {e}"),
            ));
        }
        d
    }

    /// A group whose back-end could not be reached.
    pub fn failed(reply: Reply) -> Self {
        Self {
            conn: None,
            protocol: DeliveryProtocol::Smtp,
            accepted: 0,
            failure: Some(reply),
        }
    }

    fn conn(&mut self) -> io::Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| io::Error::other("no back-end connection"))
    }

    fn fail(&mut self, reply: Reply) {
        if self.failure.is_none() {
            self.failure = Some(reply);
        }
    }

    async fn start(&mut self, env: &Envelope<'_>, rcpts: &[String]) -> io::Result<()> {
        let greeting = self.read_reply().await?;
        if greeting.code != 220 {
            self.fail(greeting);
            return Ok(());
        }
        let mut caps = self.hello(env.our_name).await?;
        let offered: Option<Vec<&str>> = caps
            .iter()
            .find_map(|c| c.strip_prefix("XCLIENT "))
            .map(|attrs| attrs.split(' ').collect());
        if let Some(offered) = offered {
            let (port, ttl) = (env.client_port.to_string(), env.ttl.to_string());
            let attributes = [
                ("ADDR", env.client_ip.as_str()),
                ("PORT", &port),
                ("HELO", env.helo),
                ("LOGIN", env.login.unwrap_or("[UNAVAILABLE]")),
                ("TTL", &ttl),
            ];
            let line = xclient::line(&offered, &attributes).unwrap_or_else(|| "XCLIENT".into());
            self.command(&line).await?;
            let reply = self.read_reply().await?;
            // XCLIENT restarts the session with a fresh greeting. Refused,
            // the message would arrive with the proxy as its client: it
            // is not delivered (a temporary failure; the sender retries).
            if reply.code != 220 {
                tracing::warn!("back-end refused XCLIENT: {} {}", reply.code, reply.text());
                self.fail(Reply {
                    code: 451,
                    lines: vec!["4.7.0 The mail store refused the client's identity".into()],
                });
                return Ok(());
            }
            caps = self.hello(env.our_name).await?;
        }
        let has = |name: &str| caps.iter().any(|c| c.split(' ').next() == Some(name));
        let mut mail = format!("MAIL FROM:<{}>", env.from);
        if let (Some(size), true) = (env.size, has("SIZE")) {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if env.eight_bit && has("8BITMIME") {
            mail.push_str(" BODY=8BITMIME");
        }
        self.command(&mail).await?;
        let reply = self.read_reply().await?;
        if !reply.positive() {
            self.fail(reply);
            return Ok(());
        }
        for rcpt in rcpts {
            self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            let reply = self.read_reply().await?;
            if !reply.positive() {
                // The client already has our 250 for it: the whole group
                // fails with the back-end's reason.
                self.fail(reply);
                return Ok(());
            }
            self.accepted += 1;
        }
        self.command("DATA").await?;
        let reply = self.read_reply().await?;
        if reply.code != 354 {
            self.fail(reply);
        }
        Ok(())
    }

    /// LHLO or EHLO; the capability lines (upper-cased keyword first).
    async fn hello(&mut self, our_name: &str) -> io::Result<Vec<String>> {
        let verb = match self.protocol {
            DeliveryProtocol::Lmtp => "LHLO",
            DeliveryProtocol::Smtp => "EHLO",
        };
        self.command(&format!("{verb} {our_name}")).await?;
        let reply = self.read_reply().await?;
        if reply.code != 250 {
            return Err(io::Error::other(format!(
                "{verb} answered {} {}",
                reply.code,
                reply.text()
            )));
        }
        Ok(reply
            .lines
            .iter()
            .skip(1)
            .map(|l| match l.split_once(' ') {
                Some((k, rest)) => format!("{} {rest}", k.to_ascii_uppercase()),
                None => l.to_ascii_uppercase(),
            })
            .collect())
    }

    pub fn ready(&self) -> bool {
        self.failure.is_none()
    }

    /// Passes message bytes (still dot-stuffed, terminator included).
    pub async fn write(&mut self, data: &[u8]) {
        if !self.ready() {
            return;
        }
        let queued = match self.conn() {
            Ok(conn) => conn.queue(data).await,
            Err(e) => Err(e),
        };
        if let Err(e) = queued {
            self.fail(Reply::local(
                451,
                &format!("4.4.2 back-end connection lost: {e}"),
            ));
        }
    }

    /// After the terminator: the final verdict, one reply per recipient
    /// for LMTP; any refusal fails the group.
    pub async fn finish(&mut self) -> Result<(), Reply> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let replies = match self.protocol {
            DeliveryProtocol::Lmtp => self.accepted,
            DeliveryProtocol::Smtp => 1,
        };
        let flushed = match self.conn() {
            Ok(conn) => conn.send(b"").await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            return Err(Reply::local(
                451,
                &format!("4.4.2 back-end connection lost: {e}"),
            ));
        }
        for _ in 0..replies {
            match self.read_reply().await {
                Ok(r) if r.positive() => {}
                Ok(r) => self.fail(r),
                Err(e) => self.fail(Reply::local(
                    451,
                    &format!("4.4.2 no answer after DATA: {e}"),
                )),
            }
        }
        let _ = self.command("QUIT").await;
        match &self.failure {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }

    async fn command(&mut self, line: &str) -> io::Result<()> {
        self.conn()?.send(format!("{line}\r\n").as_bytes()).await
    }

    async fn read_reply(&mut self) -> io::Result<Reply> {
        read_reply(self.conn()?).await
    }
}

pub async fn read_reply(conn: &mut Conn) -> io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let line = match conn.read_line(MAX_REPLY_LINE).await? {
            Line::Text(l) => String::from_utf8_lossy(&l).into_owned(),
            Line::TooLong => return Err(io::Error::other("reply line too long")),
            Line::End => return Err(io::ErrorKind::UnexpectedEof.into()),
        };
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(io::Error::other(format!("not an SMTP reply: {line:?}")));
        };
        lines.push(line.get(4..).unwrap_or("").to_string());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply { code, lines });
        }
    }
}
