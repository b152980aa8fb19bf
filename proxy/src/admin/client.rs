//! The side `fulmar` uses: one request, one reply, through either door.
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use fulmar_daemon::{config as config_file, secret::Secret};
use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpStream, UnixStream},
};
use tokio_rustls::TlsConnector;

use super::{Envelope, Reply, Request};
use crate::{
    config::MIN_TOKEN,
    stream::{connector, tls_to},
};

pub const DEFAULT_CLIENT_CONFIG: &str = "/etc/fulmar/admin.toml";

/// `/etc/fulmar/admin.toml`: how `fulmar` reaches every proxy's TLS door
/// (`admin.address` on the proxies).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The port of `admin.address` on every proxy.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The CA that signed the proxies' certificates.
    pub ca: PathBuf,
    /// The name those certificates carry (the proxies are reached by
    /// their real addresses, which certificates seldom name).
    pub tls_name: String,
    /// The proxies' `admin.token_file`, the same token.
    pub token_file: PathBuf,
}

fn default_port() -> u16 {
    7071
}

/// Opens the TLS door of the proxy at any address.
pub struct Doors {
    port: u16,
    name: String,
    connector: TlsConnector,
    token: Secret,
}

impl ClientConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        Ok(config_file::load(path, config_file::from_toml)?)
    }

    pub fn doors(&self) -> Result<Doors, String> {
        let token = Secret::from_file(&self.token_file).map_err(String::from)?;
        if token.expose().len() < MIN_TOKEN {
            return Err(format!(
                "{}: the admin token must be at least {MIN_TOKEN} characters",
                self.token_file.display()
            ));
        }
        Ok(Doors {
            port: self.port,
            name: self.tls_name.clone(),
            connector: connector(&self.ca).map_err(|e| e.to_string())?,
            token,
        })
    }
}

impl Doors {
    pub fn at(&self, ip: IpAddr) -> Door {
        Door::Tls {
            address: SocketAddr::new(ip, self.port),
            name: self.name.clone(),
            connector: self.connector.clone(),
            token: self.token.clone(),
        }
    }
}

/// A proxy that does not answer within this is reported, not waited for.
const TIMEOUT: Duration = Duration::from_secs(5);

pub enum Door {
    Unix(PathBuf),
    Tls {
        address: SocketAddr,
        /// The name the proxy's certificate must carry.
        name: String,
        connector: TlsConnector,
        token: Secret,
    },
}

impl Door {
    pub fn describe(&self) -> String {
        match self {
            Door::Unix(path) => path.display().to_string(),
            Door::Tls { address, .. } => address.to_string(),
        }
    }

    /// Sends `request`; an error reply comes back as Err.
    pub async fn ask(&self, request: &Request) -> Result<Reply, String> {
        let what = self.describe();
        let exchange = async {
            match self {
                Door::Unix(path) => {
                    let stream = UnixStream::connect(path).await.map_err(|e| e.to_string())?;
                    exchange(stream, None, request).await
                }
                Door::Tls {
                    address,
                    name,
                    connector,
                    token,
                } => {
                    let tcp = TcpStream::connect(address)
                        .await
                        .map_err(|e| e.to_string())?;
                    let tls = tls_to(connector, name, tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    exchange(tls, Some(token), request).await
                }
            }
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Err(_) => Err(format!("{what}: no answer within {TIMEOUT:?}")),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Ok(Ok(Reply::Error(e))) => Err(format!("{what}: {e}")),
            Ok(Ok(reply)) => Ok(reply),
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    token: Option<&Secret>,
    request: &Request,
) -> Result<Reply, String> {
    let envelope = Envelope {
        token: token.map(|t| t.expose().to_string()),
        request: request.clone(),
    };
    let mut line = serde_json::to_string(&envelope).expect("requests serialize");
    line.push('\n');
    let (read, mut write) = tokio::io::split(stream);
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&answer).map_err(|e| format!("garbled answer: {e}"))
}
