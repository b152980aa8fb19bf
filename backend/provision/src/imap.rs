//! A small IMAP client for provisioning: log in to an instance as a master
//! user acting for an account (SASL PLAIN with an authorization identity),
//! create folders, and copy messages with their flags and dates, over the
//! shared client side of IMAP (`fulmar_mailproto::imap`).
use std::{num::NonZeroU32, time::Duration};

use fulmar_daemon::secret::Secret;
use fulmar_mailproto::imap::{Wire, WireError};
use imap_codec::imap_types::{
    IntoStatic,
    command::{Command, CommandBody},
    core::Vec1,
    datetime::DateTime,
    fetch::{MessageDataItem, MessageDataItemName},
    flag::{Flag, FlagFetch, StoreResponse, StoreType},
    mailbox::Mailbox,
    response::{Code, Data, Response, Status, StatusKind},
    sequence::SequenceSet,
    status::{StatusDataItem, StatusDataItemName},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    time::timeout,
};
use tokio_rustls::TlsConnector;

/// Plain TCP or TLS: the session reads and writes either the same way.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The host of `host:port` or `[v6]:port`, as its certificate names it.
fn host_of(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => address,
    }
}

/// Responses (and their literals) above this are refused: a provisioning
/// run must not be made to buffer without bound.
const MAX_RESPONSE: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("{0}")]
    Io(String),
    /// The server answered NO or BAD.
    #[error("{command} answered {kind:?}: {text}")]
    Refused {
        command: &'static str,
        kind: StatusKind,
        text: String,
        /// e.g. ALREADYEXISTS, NONEXISTENT, OVERQUOTA.
        code: Option<String>,
    },
}

/// A message as it sits in a folder.
pub struct MessageInfo {
    pub uid: u32,
    pub flags: Vec<Flag<'static>>,
}

pub struct Message {
    pub flags: Vec<Flag<'static>>,
    pub date: Option<DateTime>,
    pub body: Vec<u8>,
}

pub struct Session {
    wire: Wire<Box<dyn Io>>,
    next_tag: u32,
    address: String,
}

impl Session {
    /// Connects to `address` (host:port) and reads the greeting; with
    /// `tls`, in implicit TLS with the certificate checked for the host.
    pub async fn connect(
        address: &str,
        limit: Duration,
        tls: Option<&TlsConnector>,
    ) -> Result<Self, ImapError> {
        let io = |e: std::io::Error| ImapError::Io(format!("{address}: {e}"));
        let tcp = timeout(limit, TcpStream::connect(address))
            .await
            .map_err(|_| ImapError::Io(format!("{address}: connect timed out")))?
            .map_err(io)?;
        let stream: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(connector) => {
                let host = host_of(address);
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| ImapError::Io(format!("{address}: {e}")))?;
                let tls = timeout(limit, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ImapError::Io(format!("{address}: TLS handshake timed out")))?
                    .map_err(io)?;
                Box::new(tls)
            }
        };
        let mut s = Self {
            wire: Wire::new(stream, MAX_RESPONSE, Some(limit)),
            next_tag: 1,
            address: address.to_string(),
        };
        s.wire.greeting().await.map_err(|e| s.wire_error(e))?;
        Ok(s)
    }

    /// Logs in as `master` acting for `user` (RFC 4616 authzid).
    pub async fn login_as(
        &mut self,
        user: &str,
        master: &str,
        password: &Secret,
    ) -> Result<(), ImapError> {
        let tag = self.tag();
        self.write(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())
            .await?;
        match self.response().await? {
            Response::CommandContinuationRequest(_) => {}
            other => return Err(self.io(format!("AUTHENTICATE: unexpected {other:?}"))),
        }
        let line = fulmar_mailproto::sasl::plain_response(user, master, password);
        self.write(format!("{}\r\n", line.expose()).as_bytes())
            .await?;
        self.until_tagged(&tag, "AUTHENTICATE").await.map(|_| ())
    }

    /// Every folder name (as the server spells it, modified UTF-7).
    pub async fn list(&mut self) -> Result<Vec<String>, ImapError> {
        let body = CommandBody::list("", "*").map_err(|e| self.io(format!("LIST: {e:?}")))?;
        let data = self.run(body, "LIST").await?;
        Ok(data
            .into_iter()
            .filter_map(|d| match d {
                Data::List { mailbox, .. } => Some(mailbox_name(&mailbox)),
                _ => None,
            })
            .collect())
    }

    /// Creates a folder; one that exists already is fine.
    pub async fn create(&mut self, name: &str) -> Result<(), ImapError> {
        let body = CommandBody::create(name).map_err(|e| self.io(format!("{name}: {e:?}")))?;
        match self.run(body, "CREATE").await {
            Err(ImapError::Refused { code: Some(c), .. }) if c == "ALREADYEXISTS" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    pub async fn delete(&mut self, name: &str) -> Result<(), ImapError> {
        let body = CommandBody::delete(name).map_err(|e| self.io(format!("{name}: {e:?}")))?;
        self.run(body, "DELETE").await.map(|_| ())
    }

    /// Selects a folder; returns its UIDVALIDITY.
    pub async fn select(&mut self, name: &str) -> Result<u32, ImapError> {
        let body = CommandBody::select(name).map_err(|e| self.io(format!("{name}: {e:?}")))?;
        let tag = self.send(body).await?;
        let mut validity = None;
        loop {
            match self.response().await? {
                Response::Status(Status::Untagged(s)) => {
                    if let Some(Code::UidValidity(v)) = s.code {
                        validity = Some(v.get());
                    }
                }
                Response::Status(Status::Tagged(t)) if t.tag.as_ref() == tag => {
                    check("SELECT", t.body.kind, t.body.code, &t.body.text)?;
                    return validity.ok_or_else(|| self.io("SELECT without UIDVALIDITY".into()));
                }
                _ => {}
            }
        }
    }

    /// Messages in the selected folder: UID and flags, by UID.
    pub async fn messages(&mut self) -> Result<Vec<MessageInfo>, ImapError> {
        let items = vec![MessageDataItemName::Uid, MessageDataItemName::Flags];
        let body =
            CommandBody::fetch("1:*", items, true).map_err(|e| self.io(format!("FETCH: {e:?}")))?;
        let mut out = Vec::new();
        for d in self.run(body, "FETCH").await? {
            if let Data::Fetch { items, .. } = d {
                let mut uid = None;
                let mut flags = Vec::new();
                for item in items.into_inner() {
                    match item {
                        MessageDataItem::Uid(u) => uid = Some(u.get()),
                        MessageDataItem::Flags(f) => flags = plain_flags(f),
                        _ => {}
                    }
                }
                if let Some(uid) = uid {
                    out.push(MessageInfo { uid, flags });
                }
            }
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// One message of the selected folder, in full, without setting \Seen.
    pub async fn fetch(&mut self, uid: u32) -> Result<Option<Message>, ImapError> {
        let items = vec![
            MessageDataItemName::Flags,
            MessageDataItemName::InternalDate,
            MessageDataItemName::BodyExt {
                section: None,
                partial: None,
                peek: true,
            },
        ];
        let set = uid_set(&[uid]).map_err(|e| self.io(e))?;
        let body =
            CommandBody::fetch(set, items, true).map_err(|e| self.io(format!("FETCH: {e:?}")))?;
        let mut found = None;
        for d in self.run(body, "FETCH").await? {
            if let Data::Fetch { items, .. } = d {
                let mut m = Message {
                    flags: Vec::new(),
                    date: None,
                    body: Vec::new(),
                };
                let mut has_body = false;
                for item in items.into_inner() {
                    match item {
                        MessageDataItem::Flags(f) => m.flags = plain_flags(f),
                        MessageDataItem::InternalDate(d) => m.date = Some(d),
                        MessageDataItem::BodyExt { data, .. } => {
                            if let Some(b) = data.0 {
                                m.body = b.as_ref().to_vec();
                                has_body = true;
                            }
                        }
                        _ => {}
                    }
                }
                if has_body {
                    found = Some(m);
                }
            }
        }
        Ok(found)
    }

    /// Appends a message; returns its new UID when the server says
    /// (UIDPLUS).
    pub async fn append(&mut self, folder: &str, m: &Message) -> Result<Option<u32>, ImapError> {
        let body = CommandBody::append(folder, m.flags.clone(), m.date.clone(), m.body.clone())
            .map_err(|e| self.io(format!("APPEND to {folder}: {e:?}")))?;
        let tag = self.send(body).await?;
        loop {
            if let Response::Status(Status::Tagged(t)) = self.response().await?
                && t.tag.as_ref() == tag
            {
                check("APPEND", t.body.kind, t.body.code.clone(), &t.body.text)?;
                return Ok(match t.body.code {
                    Some(Code::AppendUid { uid, .. }) => Some(uid.get()),
                    _ => None,
                });
            }
        }
    }

    /// Sets `flags` exactly on one message of the selected folder.
    pub async fn set_flags(&mut self, uid: u32, flags: &[Flag<'static>]) -> Result<(), ImapError> {
        let set = uid_set(&[uid]).map_err(|e| self.io(e))?;
        let body = CommandBody::store(
            set,
            StoreType::Replace,
            StoreResponse::Silent,
            flags.to_vec(),
            true,
        )
        .map_err(|e| self.io(format!("STORE: {e:?}")))?;
        self.run(body, "STORE").await.map(|_| ())
    }

    /// Removes exactly these messages of the selected folder (UID EXPUNGE),
    /// leaving any other message marked \Deleted alone.
    pub async fn remove(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        for chunk in uids.chunks(500) {
            let set = uid_set(chunk).map_err(|e| self.io(e))?;
            let store = CommandBody::store(
                set.clone(),
                StoreType::Add,
                StoreResponse::Silent,
                vec![Flag::Deleted],
                true,
            )
            .map_err(|e| self.io(format!("STORE: {e:?}")))?;
            self.run(store, "STORE").await?;
            self.run(CommandBody::ExpungeUid { sequence_set: set }, "UID EXPUNGE")
                .await?;
        }
        Ok(())
    }

    /// MESSAGES of a folder, without selecting it.
    pub async fn count(&mut self, name: &str) -> Result<u32, ImapError> {
        let body = CommandBody::status(name, vec![StatusDataItemName::Messages])
            .map_err(|e| self.io(format!("{name}: {e:?}")))?;
        for d in self.run(body, "STATUS").await? {
            if let Data::Status { items, .. } = d {
                for i in items.iter() {
                    if let StatusDataItem::Messages(n) = i {
                        return Ok(*n);
                    }
                }
            }
        }
        Err(self.io("STATUS without MESSAGES".into()))
    }

    pub async fn logout(mut self) {
        let _ = self.run(CommandBody::Logout, "LOGOUT").await;
    }

    // ---- plumbing ----

    fn tag(&mut self) -> String {
        let t = format!("P{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    fn io(&self, what: String) -> ImapError {
        ImapError::Io(format!("{}: {what}", self.address))
    }

    fn wire_error(&self, e: WireError) -> ImapError {
        match e {
            // NO or BAD to a literal: the command's own answer.
            WireError::LiteralRefused(answer) => match *answer {
                Response::Status(Status::Tagged(t)) => {
                    match check("literal", t.body.kind, t.body.code, &t.body.text) {
                        Err(refused) => refused,
                        Ok(()) => self.io("literal refused".into()),
                    }
                }
                other => self.io(format!("literal refused: {other:?}")),
            },
            other => self.io(other.to_string()),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ImapError> {
        let sent = self.wire.line(bytes).await;
        sent.map_err(|e| self.wire_error(e))
    }

    /// Sends a command, waiting for `+` before each synchronising literal.
    async fn send(&mut self, body: CommandBody<'_>) -> Result<String, ImapError> {
        let tag = self.tag();
        let command = Command::new(tag.as_str(), body).map_err(|e| self.io(format!("{e:?}")))?;
        let sent = self.wire.command(&command).await;
        sent.map_err(|e| self.wire_error(e))?;
        Ok(tag)
    }

    /// Sends a command and collects its untagged data until its tagged
    /// status; NO or BAD is an error.
    async fn run(
        &mut self,
        body: CommandBody<'_>,
        name: &'static str,
    ) -> Result<Vec<Data<'static>>, ImapError> {
        let tag = self.send(body).await?;
        self.until_tagged(&tag, name).await
    }

    async fn until_tagged(
        &mut self,
        tag: &str,
        name: &'static str,
    ) -> Result<Vec<Data<'static>>, ImapError> {
        let mut data = Vec::new();
        loop {
            match self.response().await? {
                Response::Data(d) => data.push(d),
                Response::Status(Status::Tagged(t)) if t.tag.as_ref() == tag => {
                    check(name, t.body.kind, t.body.code, &t.body.text)?;
                    return Ok(data);
                }
                Response::Status(Status::Bye(b)) if name != "LOGOUT" => {
                    return Err(self.io(format!("server said BYE: {}", b.text)));
                }
                _ => {}
            }
        }
    }

    async fn response(&mut self) -> Result<Response<'static>, ImapError> {
        let received = self.wire.response().await;
        received.map(|r| r.response).map_err(|e| self.wire_error(e))
    }
}

fn check(
    name: &'static str,
    kind: StatusKind,
    code: Option<Code<'_>>,
    text: &impl AsRef<str>,
) -> Result<(), ImapError> {
    if kind == StatusKind::Ok {
        return Ok(());
    }
    Err(ImapError::Refused {
        command: name,
        kind,
        text: text.as_ref().to_string(),
        code: code.map(|c| match c {
            Code::Other(o) => String::from_utf8_lossy(o.inner()).into_owned(),
            c => format!("{c:?}"),
        }),
    })
}

pub fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
    }
}

/// Flags that can be stored or appended (\Recent is the server's own).
fn plain_flags(flags: Vec<FlagFetch<'_>>) -> Vec<Flag<'static>> {
    flags
        .into_iter()
        .filter_map(|f| match f {
            FlagFetch::Flag(f) => Some(f.into_static()),
            FlagFetch::Recent => None,
        })
        .collect()
}

fn uid_set(uids: &[u32]) -> Result<SequenceSet, String> {
    let uids: Vec<NonZeroU32> = uids.iter().filter_map(|u| NonZeroU32::new(*u)).collect();
    let _ = Vec1::<NonZeroU32>::try_from(uids.clone()).map_err(|_| "no UIDs".to_string())?;
    SequenceSet::try_from(uids).map_err(|e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_and_flags() {
        assert!(uid_set(&[]).is_err());
        assert!(uid_set(&[3, 4, 9]).is_ok());
        let f = plain_flags(vec![FlagFetch::Recent, FlagFetch::Flag(Flag::Seen)]);
        assert_eq!(f, vec![Flag::Seen]);
    }
}
