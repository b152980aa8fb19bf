//! LMTP (RFC 2033) for the proxies' and MTAs' deliveries: LHLO, MAIL, RCPT,
//! DATA with one reply per accepted recipient, RSET, NOOP, VRFY, QUIT.
//! A recipient gets 250 only after its copy is durable (see `maildir`).
//! Command lines are bounded (`MAX_LINE`), messages by `max_message_size`
//! (SIZE= refused up front, DATA read to its end and then refused).
use std::sync::Arc;

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpListener,
};

use super::{config::MailConfig, maildir::Store};

/// Longest command line accepted (RFC 5321 asks for at least 512).
const MAX_LINE: usize = 4096;

pub struct Lmtp {
    pub store: Arc<Store>,
    pub config: MailConfig,
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, lmtp: Arc<Lmtp>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        // Replies are small writes: without this, Nagle and the client's
        // delayed ACK cost ~40 ms per pipelined transaction.
        let _ = stream.set_nodelay(true);
        let lmtp = lmtp.clone();
        tokio::spawn(async move {
            let (read, write) = stream.into_split();
            if let Err(e) = lmtp.session(read, write).await {
                tracing::debug!(%peer, error = %e, "LMTP session ended");
            }
        });
    }
}

/// A line as read: its bytes (CRLF kept) and whether it was complete.
struct Line {
    bytes: Vec<u8>,
    complete: bool,
}

/// Reads up to and including `\n`, at most `max` bytes; `None` at EOF.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut bytes = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!bytes.is_empty()).then_some(Line {
                bytes,
                complete: false,
            }));
        }
        let room = max - bytes.len();
        let take = buf.len().min(room);
        match buf[..take].iter().position(|&b| b == b'\n') {
            Some(i) => {
                bytes.extend_from_slice(&buf[..=i]);
                r.consume(i + 1);
                return Ok(Some(Line {
                    bytes,
                    complete: true,
                }));
            }
            None => {
                bytes.extend_from_slice(&buf[..take]);
                r.consume(take);
                if bytes.len() == max {
                    return Ok(Some(Line {
                        bytes,
                        complete: false,
                    }));
                }
            }
        }
    }
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
    rcpts: Vec<String>,
}

impl Lmtp {
    pub async fn session<R, W>(&self, read: R, mut write: W) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut r = BufReader::new(read);
        let name = &self.config.instance;
        write
            .write_all(format!("220 {name} fulmar LMTP ready\r\n").as_bytes())
            .await?;
        let mut greeted = false;
        let mut env = Envelope::default();
        loop {
            let Some(line) = read_line(&mut r, MAX_LINE).await? else {
                return Ok(());
            };
            if !line.complete {
                // Skip the rest of the over-long line before answering.
                let mut complete = false;
                while !complete {
                    match read_line(&mut r, MAX_LINE).await? {
                        Some(more) => complete = more.complete,
                        None => return Ok(()),
                    }
                }
                write.write_all(b"500 5.5.2 line too long\r\n").await?;
                continue;
            }
            let text = String::from_utf8_lossy(&line.bytes);
            let text = text.trim_end_matches(['\r', '\n']);
            let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
            let reply = match verb.to_ascii_uppercase().as_str() {
                "LHLO" if rest.trim().is_empty() => "501 5.5.4 LHLO needs a host name\r\n".into(),
                "LHLO" => {
                    greeted = true;
                    env = Envelope::default();
                    format!(
                        "250-{name}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n\
                         250-8BITMIME\r\n250 SIZE {}\r\n",
                        self.config.max_message_size
                    )
                }
                "HELO" | "EHLO" => "500 5.5.1 this is LMTP: use LHLO\r\n".into(),
                "MAIL" if !greeted => "503 5.5.1 LHLO first\r\n".into(),
                "MAIL" if env.from.is_some() => "503 5.5.1 nested MAIL\r\n".into(),
                "MAIL" => match path_arg(rest, "FROM:") {
                    None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into(),
                    Some((from, params)) => match declared_size(params) {
                        Some(size) if size > self.config.max_message_size => format!(
                            "552 5.3.4 message size {size} exceeds the limit {}\r\n",
                            self.config.max_message_size
                        ),
                        _ => {
                            env.from = Some(from.to_string());
                            "250 2.1.0 sender ok\r\n".into()
                        }
                    },
                },
                "RCPT" if env.from.is_none() => "503 5.5.1 MAIL first\r\n".into(),
                "RCPT" => match path_arg(rest, "TO:") {
                    None => "501 5.5.4 syntax: RCPT TO:<address>\r\n".into(),
                    Some(_) if env.rcpts.len() >= self.config.max_recipients => {
                        "452 4.5.3 too many recipients\r\n".into()
                    }
                    Some((to, _)) if self.store.has_account(to) => {
                        env.rcpts.push(to.to_ascii_lowercase());
                        "250 2.1.5 recipient ok\r\n".into()
                    }
                    Some((to, _)) => format!("550 5.1.1 <{to}>: no such mailbox here\r\n"),
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
                    let from = env.from.take().unwrap_or_default();
                    let rcpts = std::mem::take(&mut env.rcpts);
                    self.deliver_all(&from, &rcpts, body).await
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

    /// The message up to the lone dot, unstuffed; `Err(size)` when it
    /// outgrew the limit (read to its end all the same); `None` at EOF.
    async fn read_data<R: AsyncRead + Unpin>(
        &self,
        r: &mut BufReader<R>,
    ) -> std::io::Result<Option<Result<Vec<u8>, u64>>> {
        let max = self.config.max_message_size as usize;
        let mut body = Vec::new();
        let mut seen: u64 = 0;
        let mut at_line_start = true;
        loop {
            let Some(line) = read_line(r, MAX_LINE.max(64 << 10)).await? else {
                return Ok(None);
            };
            let mut bytes = &line.bytes[..];
            if at_line_start {
                if bytes == b".\r\n" || bytes == b".\n" {
                    break;
                }
                if bytes.first() == Some(&b'.') {
                    bytes = &bytes[1..];
                }
            }
            at_line_start = line.complete;
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

    /// One reply per recipient, in RCPT order.
    async fn deliver_all(
        &self,
        from: &str,
        rcpts: &[String],
        body: Result<Vec<u8>, u64>,
    ) -> String {
        let body = match body {
            Ok(body) => Arc::new(body),
            Err(size) => {
                let line = format!(
                    "552 5.3.4 message size {size} exceeds the limit {}\r\n",
                    self.config.max_message_size
                );
                return line.repeat(rcpts.len());
            }
        };
        let mut replies = String::new();
        for rcpt in rcpts {
            let store = self.store.clone();
            let mut copy =
                format!("Return-Path: <{from}>\r\nDelivered-To: {rcpt}\r\n").into_bytes();
            copy.extend_from_slice(&body);
            let to = rcpt.clone();
            let done = tokio::task::spawn_blocking(move || store.deliver(&to, &copy)).await;
            let stored = match done {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            replies += &match stored {
                Ok(()) => format!("250 2.0.0 <{rcpt}> delivered\r\n"),
                Err(error) => {
                    tracing::error!(rcpt, error, "delivery failed");
                    format!("451 4.3.0 <{rcpt}> not stored, try again later\r\n")
                }
            };
        }
        replies
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
