//! Health probes of a real: TCP connect, or the mail protocol's greeting
//! (SMTP `220` + EHLO + QUIT, IMAP `* OK` + LOGOUT, POP3 `+OK` + QUIT),
//! optionally inside TLS; and the HAProxy-style agent check.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::{
    effective::AgentVerdict,
    model::{CheckConf, CheckKind},
};

/// Longest line a probe reads: a greeting is one short line.
const MAX_LINE: usize = 1024;

/// Why a real failed its check (the text goes to `fulmar real show`).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// connect, TLS handshake, read or write.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("closed without a greeting")]
    Closed,
    /// The server answered, but not as the protocol's healthy server does.
    #[error("{protocol} {got:?}, expected {expected}")]
    Answer {
        protocol: &'static str,
        got: String,
        expected: &'static str,
    },
    #[error("SMTP reply of more than 64 lines")]
    Endless,
}

impl From<CheckError> for String {
    fn from(e: CheckError) -> String {
        e.to_string()
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> CheckError {
    move |source| CheckError::Io { what, source }
}

/// Runs one probe within the check's timeout; Err says what failed.
pub async fn probe(endpoint: SocketAddr, check: &CheckConf) -> Result<(), CheckError> {
    match tokio::time::timeout(check.timeout, probe_inner(endpoint, check)).await {
        Ok(result) => result,
        Err(_) => Err(CheckError::Timeout(check.timeout)),
    }
}

async fn probe_inner(endpoint: SocketAddr, check: &CheckConf) -> Result<(), CheckError> {
    if check.kind == CheckKind::None {
        return Ok(());
    }
    let tcp = TcpStream::connect(endpoint).await.map_err(io("connect"))?;
    let _ = tcp.set_nodelay(true);
    if check.tls {
        let server_name = rustls::pki_types::ServerName::IpAddress(endpoint.ip().into());
        let tls = tls_connector()
            .connect(server_name, tcp)
            .await
            .map_err(io("TLS handshake"))?;
        converse(tls, check.kind).await
    } else {
        converse(tcp, check.kind).await
    }
}

/// The protocol exchange after connect (and TLS).
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    kind: CheckKind,
) -> Result<(), CheckError> {
    let mut stream = BufReader::new(stream);
    match kind {
        CheckKind::None | CheckKind::Tcp => Ok(()),
        CheckKind::Smtp => {
            expect_reply(&mut stream, "220").await?;
            send(&mut stream, "EHLO fulmar-check\r\n").await?;
            expect_reply(&mut stream, "250").await?;
            // Polite, but the verdict is already in.
            let _ = send(&mut stream, "QUIT\r\n").await;
            Ok(())
        }
        CheckKind::Imap => {
            let line = read_line(&mut stream).await?;
            if !line.starts_with("* OK") {
                return Err(CheckError::Answer {
                    protocol: "IMAP greeting",
                    got: line,
                    expected: "\"* OK\"",
                });
            }
            let _ = send(&mut stream, "fc LOGOUT\r\n").await;
            Ok(())
        }
        CheckKind::Pop3 => {
            let line = read_line(&mut stream).await?;
            if !line.starts_with("+OK") {
                return Err(CheckError::Answer {
                    protocol: "POP3 greeting",
                    got: line,
                    expected: "\"+OK\"",
                });
            }
            let _ = send(&mut stream, "QUIT\r\n").await;
            Ok(())
        }
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    text: &str,
) -> Result<(), CheckError> {
    let inner = stream.get_mut();
    inner
        .write_all(text.as_bytes())
        .await
        .map_err(io("write"))?;
    inner.flush().await.map_err(io("write"))
}

async fn read_line<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Result<String, CheckError> {
    let mut line = Vec::new();
    let n = (&mut *stream)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(io("read"))?;
    if n == 0 {
        return Err(CheckError::Closed);
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// Reads an SMTP reply (continuation lines `CODE-`) and checks its code.
async fn expect_reply<S: AsyncRead + Unpin>(
    stream: &mut BufReader<S>,
    code: &'static str,
) -> Result<(), CheckError> {
    for _ in 0..64 {
        let line = read_line(stream).await?;
        if !line.starts_with(code) {
            return Err(CheckError::Answer {
                protocol: "SMTP reply",
                got: line,
                expected: code,
            });
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
    Err(CheckError::Endless)
}

/// Asks the real's agent for its state (HAProxy agent-check words: `up`,
/// `ready`, `drain`, `down`, `failed`, `stopped`, `maint`, `N%`). An agent
/// that cannot be reached says nothing: the health check judges liveness.
pub async fn ask_agent(addr: SocketAddr, timeout: Duration) -> Option<AgentVerdict> {
    let exchange = async {
        let mut conn = TcpStream::connect(addr).await.ok()?;
        let mut buf = Vec::new();
        (&mut conn)
            .take(MAX_LINE as u64)
            .read_to_end(&mut buf)
            .await
            .ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(timeout, exchange).await.ok()??;
    parse_agent(&text)
}

/// The verdict in an agent's answer; None when it says nothing we know.
pub fn parse_agent(text: &str) -> Option<AgentVerdict> {
    let line = text.lines().next().unwrap_or("");
    let mut state = None;
    let mut percent = None;
    for word in line.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
        let word = word.to_ascii_lowercase();
        match word.as_str() {
            "up" | "ready" => state = Some("up"),
            "drain" => state = Some("drain"),
            "down" | "failed" | "stopped" | "maint" => state = Some("down"),
            w => {
                if let Some(n) = w.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()) {
                    percent = Some(n.min(100));
                }
            }
        }
    }
    match (state, percent) {
        (Some("down"), _) => Some(AgentVerdict::Down),
        (Some("drain"), _) => Some(AgentVerdict::Drain),
        (Some(_), p) => Some(AgentVerdict::Ready {
            percent: p.unwrap_or(100),
        }),
        // HAProxy: a bare "0%" drains.
        (None, Some(0)) => Some(AgentVerdict::Drain),
        (None, Some(p)) => Some(AgentVerdict::Ready { percent: p }),
        (None, None) => None,
    }
}

/// TLS for probes: the handshake must complete, but the certificate is not
/// verified, since a proxy's certificate names the mail domain, not the
/// address the balancer probes. Liveness of the TLS stack is what counts.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONNECTOR: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        })
        .clone()
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    // Signatures are still checked: the peer must hold the key it shows.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_words() {
        assert_eq!(
            parse_agent("up\n"),
            Some(AgentVerdict::Ready { percent: 100 })
        );
        assert_eq!(
            parse_agent("ready 75%\n"),
            Some(AgentVerdict::Ready { percent: 75 })
        );
        assert_eq!(
            parse_agent("50%"),
            Some(AgentVerdict::Ready { percent: 50 })
        );
        assert_eq!(parse_agent("DRAIN"), Some(AgentVerdict::Drain));
        assert_eq!(parse_agent("0%"), Some(AgentVerdict::Drain));
        assert_eq!(parse_agent("maint,80%"), Some(AgentVerdict::Down));
        assert_eq!(parse_agent("stopped#maintenance"), None);
        assert_eq!(parse_agent("hello"), None);
        assert_eq!(
            parse_agent("250%"),
            Some(AgentVerdict::Ready { percent: 100 })
        );
    }
}
