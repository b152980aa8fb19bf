//! Logging in: LOGIN, AUTHENTICATE PLAIN (with SASL-IR), STARTTLS, and ID,
//! through which a trusted proxy names the end client; and the other layer
//! a connection can take on, COMPRESS.
use std::{io, net::IpAddr, time::Duration};

use imap_codec::{
    AuthenticateDataCodec,
    decode::{AuthenticateDataDecodeError, Decoder},
    imap_types::{auth::AuthenticateData, core::Tag},
};

use fulmar_mailproto::deflate::Deflated;

use crate::auth::AuthError;
use crate::imap::session::{Flow, MAX_AUTH_FAILURES, Session};

impl Session {
    /// ID: a trusted proxy's `x-originating-ip` becomes the client address
    /// (logged); anyone else's is ignored.
    pub(in crate::imap) fn id(
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
    pub(in crate::imap) async fn starttls(&mut self, tag: &Tag<'static>) -> io::Result<Flow> {
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
        let limit = self.patience(Duration::ZERO);
        let tls = tokio::time::timeout(limit, acceptor.accept(io))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
        self.io = Some(Box::new(tls));
        self.tls = true;
        Ok(Flow::Continue)
    }

    /// COMPRESS DEFLATE (RFC 4978), the only algorithm there is: after the
    /// OK both directions are DEFLATE streams. What the client sent
    /// behind the command is the start of its stream.
    pub(in crate::imap) async fn compress(&mut self, tag: &Tag<'static>) -> io::Result<Flow> {
        if self.compressed {
            self.tagged(tag, "NO [COMPRESSIONACTIVE] DEFLATE is on already");
            return Ok(Flow::Continue);
        }
        self.tagged(tag, "OK DEFLATE active");
        self.flush().await?;
        let io = self.io.take().ok_or(io::ErrorKind::NotConnected)?;
        let pending = std::mem::take(&mut self.buf);
        self.io = Some(Box::new(Deflated::new(io, pending)));
        self.compressed = true;
        Ok(Flow::Continue)
    }

    /// The client's answer to an empty AUTHENTICATE challenge; None when
    /// it cancels.
    pub(in crate::imap) async fn sasl_continuation(&mut self) -> io::Result<Option<Vec<u8>>> {
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

    pub(in crate::imap) async fn logged_in(
        &mut self,
        tag: &Tag<'static>,
        user: &str,
        result: Result<String, AuthError>,
    ) -> io::Result<Flow> {
        match result {
            Ok(account) if self.service.store.has_account(&account) => {
                tracing::info!(user, account, peer = %self.peer, client = %self.client, tls = self.tls, "imap login");
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
}
