//! One stream type for both sides of a session: plain TCP, TLS as a server
//! (client side, implicit or after STARTTLS) or TLS as a client (to a
//! back-end). Also the certificate store that SIGHUP reloads.
use fulmar_daemon::{TlsError, tls_acceptor, tls_client_config};
use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::RwLock,
    task::{Context, Poll},
};

use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

pub enum Stream {
    Plain(TcpStream),
    Server(Box<server::TlsStream<TcpStream>>),
    Client(Box<client::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The TCP connection under any TLS.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Server(s) => s.get_ref().0,
            Stream::Client(s) => s.get_ref().0,
        }
    }

    /// STARTTLS / STLS: the handshake on the same connection.
    pub async fn accept_tls(self, acceptor: TlsAcceptor) -> io::Result<Stream> {
        match self {
            Stream::Plain(tcp) => Ok(Stream::Server(Box::new(acceptor.accept(tcp).await?))),
            _ => Err(io::Error::other("TLS is already active")),
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => $e,
            Stream::Server($s) => $e,
            Stream::Client($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The listeners' certificate, swapped whole on reload so a handshake in
/// progress keeps the one it started with.
pub struct ServerTls {
    certificate: PathBuf,
    key: PathBuf,
    acceptor: RwLock<TlsAcceptor>,
}

impl ServerTls {
    pub fn load(certificate: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            acceptor: RwLock::new(tls_acceptor(certificate, key)?),
            certificate: certificate.into(),
            key: key.into(),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().expect("tls").clone()
    }

    /// Re-reads the files; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = tls_acceptor(&self.certificate, &self.key)?;
        *self.acceptor.write().expect("tls") = fresh;
        Ok(())
    }
}

/// TLS to the back-ends, trusting the CAs in one PEM file.
pub fn connector(ca_file: &Path) -> Result<TlsConnector, TlsError> {
    Ok(TlsConnector::from(tls_client_config(ca_file)?))
}

/// Wraps a back-end connection in TLS, checking the certificate names `host`.
pub async fn tls_to(connector: &TlsConnector, host: &str, tcp: TcpStream) -> io::Result<Stream> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
    Ok(Stream::Client(Box::new(
        connector.connect(name, tcp).await?,
    )))
}
