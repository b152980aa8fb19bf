//! What every fulmar program shares: how the daemons (`fulmar-lbd`,
//! `fulmar-proxyd`, `fulmar-noded`, `fulmar-maild`) start and stop,
//! one way to load a [`config`] file, [`durable`] file replacement,
//! [`secret`] passwords that never print, trusted [`network`]s, the
//! keyword [`grammar`] of the tools, and Prometheus [`metrics`].
#![forbid(unsafe_code)]

pub mod config;
pub mod durable;
pub mod grammar;
pub mod metrics;
pub mod network;
pub mod secret;

/// Logs to stderr at `RUST_LOG` (default info); colour only on a terminal,
/// so journald and log files get plain text.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Logs to `file` (appending, plain text) at `RUST_LOG` (default info): for
/// a service whose log lives on its own volume.
pub fn init_logging_to(file: std::fs::File) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .init();
}

/// The runtime every daemon serves on: two workers, I/O and timers.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// This machine's host name (the default node name).
pub fn host_name() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string())
}

/// systemd notification (Type=notify), e.g. `READY=1`; a no-op outside
/// systemd.
pub fn notify(state: &str) {
    if let (Some(path), Ok(sock)) = (
        std::env::var_os("NOTIFY_SOCKET"),
        std::os::unix::net::UnixDatagram::unbound(),
    ) {
        let _ = sock.send_to(state.as_bytes(), path);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file that cannot be read or used.
    #[error("{}: {reason}", path.display())]
    File {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// `path` (a certificate, key or CA file) cannot be used, and why.
    pub fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        TlsError::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// For callers that report errors as text.
impl From<TlsError> for String {
    fn from(e: TlsError) -> String {
        e.to_string()
    }
}

/// A TLS client configuration trusting only the CAs in one PEM file (ring,
/// TLS 1.2 and 1.3): how the tiers check the back-ends' and the
/// directory's certificates.
pub fn tls_client_config(
    ca_file: &std::path::Path,
) -> Result<std::sync::Arc<rustls::ClientConfig>, TlsError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let file = |e: String| TlsError::file(ca_file, e);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| file(e.to_string()))? {
        let cert = cert.map_err(|e| file(e.to_string()))?;
        roots.add(cert).map_err(|e| file(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(file("no certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// A TLS acceptor from a PEM certificate chain and key (ring, TLS 1.2 and
/// 1.3), for the daemons that terminate TLS.
pub fn tls_acceptor(
    certificate: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::file(certificate, e))?;
    if chain.is_empty() {
        return Err(TlsError::file(certificate, "no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::file(key, e))?;
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| TlsError::file(certificate, e))?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}
