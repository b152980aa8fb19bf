//! What every protocol's session shares: the daemon's context, who the
//! client is, the login decision and the connection to a back-end.
use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use fulmar_daemon::secret::Secret;
use fulmar_mailproto::sasl::Plain;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{
    config::{Listener, ListenerTls, Protocol, ProxyConfig},
    conn::{Conn, Line},
    connections::Connections,
    directory::Directory,
    liveness,
    metrics::{LoginResult, Metrics},
    penalty::{Key, Outcome, Penalties},
    registry::{Handle, Registry},
    relay::{End, Relay, Tracker},
    stream::{ServerTls, Stream, tls_to},
};

pub struct Ctx {
    pub config: ProxyConfig,
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
    pub tls: Option<ServerTls>,
    pub backend_tls: Option<TlsConnector>,
    /// Set on shutdown: the agent reports `drain`, sessions may finish.
    pub draining: AtomicBool,
    /// Failed logins per client address and per account.
    pub penalties: Arc<Penalties>,
    /// Open client connections, in all and per address.
    pub connections: Connections,
    /// Every open session, for the admin endpoint's list and kick.
    pub registry: Arc<Registry>,
    /// How `fulmar proxy` names this proxy (`admin.name`).
    pub admin_name: String,
    /// Bumped by each drain and undrain: an older drain's task stops.
    pub drain_epoch: AtomicU64,
}

impl Ctx {
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// STARTTLS / STLS is offered on a plain connection to a `starttls`
    /// listener when a certificate is configured.
    pub fn starttls_offered(&self, listener: &Listener, tls_active: bool) -> bool {
        !tls_active && listener.tls == ListenerTls::Starttls && self.tls.is_some()
    }

    /// STARTTLS / STLS: sends `go_ahead` in plain text, then does the
    /// handshake. False when TLS is not offered here; the caller refuses in
    /// its protocol's words.
    pub async fn starttls(
        &self,
        listener: &Listener,
        conn: &mut Conn,
        go_ahead: &[u8],
    ) -> io::Result<bool> {
        if !self.starttls_offered(listener, conn.is_tls()) {
            return Ok(false);
        }
        conn.send(go_ahead).await?;
        let acceptor = self
            .tls
            .as_ref()
            .expect("offered, so configured")
            .acceptor();
        conn.starttls(acceptor).await?;
        Ok(true)
    }

    /// Plain-text logins are refused before STARTTLS where it is offered
    /// and `tls.require_for_auth` asks for it.
    pub fn login_allowed(&self, listener: &Listener, tls_active: bool) -> bool {
        !self.starttls_offered(listener, tls_active)
            || !self.config.tls.as_ref().is_some_and(|t| t.require_for_auth)
    }
}

/// The client as the back-end should see it, and the session's entry in
/// the registry.
#[derive(Debug)]
pub struct Peer {
    /// The client (from PROXY v2 when the listener expects it).
    pub client: SocketAddr,
    /// The address the client connected to (the VIP in DR mode).
    pub local: SocketAddr,
    /// Logged on both tiers so one session can be followed through.
    pub session_id: String,
    /// Listed by the admin endpoint until the session ends; kicked there.
    pub session: Handle,
}

impl Peer {
    pub fn new(ctx: &Ctx, protocol: Protocol, client: SocketAddr, local: SocketAddr) -> Self {
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: logs,
        // ID and XCLIENT name them as the IPv4 address they are.
        let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let client = canonical(client);
        let session_id = format!("{:016x}", rand::random::<u64>());
        Self {
            session: ctx.registry.register(&session_id, protocol, client),
            client,
            local: canonical(local),
            session_id,
        }
    }
}

/// A login's outcome, decided on the proxy.
#[derive(Debug)]
pub enum Login {
    /// Open the session on this host as `user` (the account's canonical
    /// name, or the login as typed when the directory has none); `verified`
    /// says the proxy checked the password (false: the default back-end will).
    Home {
        host: String,
        user: String,
        verified: bool,
    },
    /// Wrong password or unknown user: the protocol's normal failure.
    Failed,
    /// The directory could not say: a temporary failure, never a guess.
    Unavailable(String),
    /// Refused unchecked: too many failures from the address or for the
    /// account (`crate::penalty`).
    Throttled,
}

/// Authenticates `user` from `client` against the directory and finds its
/// home, when the penalties let the password be checked at all (they may
/// make it wait first). A failed login is answered only after
/// `auth_failure_delay`.
pub async fn login(
    ctx: &Ctx,
    protocol: Protocol,
    client: IpAddr,
    user: &str,
    password: &Secret,
) -> Login {
    let keys = [
        Key::Address(client),
        Key::Account(user.to_ascii_lowercase()),
    ];
    let Some(wait) = ctx.penalties.admit(&keys, Instant::now()) else {
        tracing::warn!(user, %client, protocol = protocol.name(), "login throttled: too many failures");
        ctx.metrics.login(protocol, LoginResult::Throttled);
        // Answered no sooner than a failure: a refusal at once would let
        // a guesser loop as fast as it can connect (the CPU is ours).
        tokio::time::sleep(ctx.config.session.auth_failure_delay).await;
        return Login::Throttled;
    };
    if !wait.is_zero() {
        tracing::info!(user, %client, ?wait, "login waits for its check (earlier failures)");
        tokio::time::sleep(wait).await;
    }
    let outcome = decide(ctx, user, password).await;
    let (result, finished) = match &outcome {
        Login::Home { .. } => (LoginResult::Ok, Outcome::Ok),
        Login::Failed => (LoginResult::Failed, Outcome::Failed),
        Login::Unavailable(why) => {
            tracing::warn!(user, protocol = protocol.name(), "login unavailable: {why}");
            (LoginResult::Unavailable, Outcome::Undecided)
        }
        Login::Throttled => (LoginResult::Throttled, Outcome::Undecided),
    };
    ctx.penalties.finish(&keys, finished, Instant::now());
    ctx.metrics.login(protocol, result);
    if matches!(outcome, Login::Failed) {
        tracing::info!(user, %client, protocol = protocol.name(), "login failed");
        tokio::time::sleep(ctx.config.session.auth_failure_delay).await;
    }
    outcome
}

async fn decide(ctx: &Ctx, user: &str, password: &Secret) -> Login {
    let account = match ctx.directory.account(user).await {
        Ok(a) => a,
        Err(e) => return Login::Unavailable(e.to_string()),
    };
    tracing::debug!(user, ?account, "directory lookup");
    let Some(account) = account else {
        return match &ctx.config.backend.default_host {
            Some(host) if !password.is_empty() => Login::Home {
                host: host.clone(),
                user: user.to_string(),
                verified: false,
            },
            _ => Login::Failed,
        };
    };
    let verdict = ctx.directory.authenticate(&account.dn, password).await;
    tracing::debug!(dn = account.dn, ?verdict, "bind");
    match verdict {
        Err(e) => Login::Unavailable(e.to_string()),
        Ok(false) => Login::Failed,
        Ok(true) => match account
            .host
            .or_else(|| ctx.config.backend.default_host.clone())
        {
            Some(host) => Login::Home {
                host,
                user: account.user.unwrap_or_else(|| user.to_string()),
                verified: true,
            },
            None => Login::Unavailable(format!("{} has no {}", account.dn, "mailHost")),
        },
    }
}

/// Ends a session that reached `auth_failures_per_connection` (after its
/// goodbye was sent).
pub fn too_many_failures() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "too many failed logins on one connection",
    )
}

/// Connects to `host:port`, in TLS when the back-ends are configured so.
pub async fn connect_backend(
    ctx: &Ctx,
    protocol: Protocol,
    host: &str,
    port: u16,
) -> io::Result<Stream> {
    let result = async {
        let tcp = tcp_connect(host, port, ctx.config.backend.connect_timeout)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{host}:{port}: {e}")))?;
        tcp.set_nodelay(true)?;
        liveness::connected(&tcp)?;
        match &ctx.backend_tls {
            Some(connector) => tls_to(connector, host, tcp).await,
            None => Ok(Stream::Plain(tcp)),
        }
    }
    .await;
    if let Err(e) = &result {
        ctx.metrics.backend_error(protocol);
        tracing::warn!(protocol = protocol.name(), "back-end {host}:{port}: {e}");
    }
    result
}

/// Connects to the account's back-end and logs in there (`login`). A
/// connection that fails before the back-end answered (its node was cut
/// off mid-login: `crate::liveness` notices once the instance's address
/// has moved) is replaced once by a fresh one, within the login timeout:
/// a login is safe to repeat, and the client is served by the instance's
/// new home instead of told to come back. Failures are logged and
/// counted here.
pub async fn login_backend<T, F, Fut>(
    ctx: &Ctx,
    protocol: Protocol,
    user: &str,
    (host, port): (&str, u16),
    mut login: F,
) -> io::Result<T>
where
    F: FnMut(Stream) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let started = Instant::now();
    let stream = connect_backend(ctx, protocol, host, port).await?;
    let result = match login(stream).await {
        Err(e) if started.elapsed() < ctx.config.backend.login_timeout => {
            tracing::warn!(
                protocol = protocol.name(),
                user,
                %host,
                "back-end lost before it answered the login ({e}): once more on a fresh connection"
            );
            login(connect_backend(ctx, protocol, host, port).await?).await
        }
        result => result,
    };
    if let Err(e) = &result {
        ctx.metrics.backend_error(protocol);
        tracing::warn!(protocol = protocol.name(), user, %host, "back-end login: {e}");
    }
    result
}

/// How long one TCP connect to a back-end may wait before a fresh attempt:
/// while an instance's address moves between nodes its SYNs are lost, and
/// the kernel would wait a whole second to send another; a fresh attempt
/// reaches the new holder as soon as it has announced the address.
const CONNECT_ATTEMPT: Duration = Duration::from_millis(100);
/// The pause after a refused attempt: a node whose service died still
/// refuses for its address until the service restarts or the node is
/// fenced and another takes over.
const REFUSED_PAUSE: Duration = Duration::from_millis(50);

/// Connects within `timeout`, attempt after attempt, so that a login or a
/// delivery arriving during a failover waits for the instance's new home
/// instead of failing.
async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(match last {
                Some(e) => e,
                None => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            });
        }
        let attempt = left.min(CONNECT_ATTEMPT);
        match tokio::time::timeout(attempt, TcpStream::connect((host, port))).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::HostUnreachable
                ) =>
            {
                last = Some(e);
                tokio::time::sleep(REFUSED_PAUSE.min(left)).await;
            }
            Ok(Err(e)) => return Err(e),
            // The attempt's SYN went unanswered: a fresh one.
            Err(_) => {}
        }
    }
}

/// A logged-in session on its home instance, ready to relay.
pub struct Spliced<'a> {
    pub ctx: &'a Ctx,
    pub peer: &'a Peer,
    pub account: &'a str,
    pub host: &'a str,
}

impl Spliced<'_> {
    /// Hands the session to the back-end: the login reply to the client,
    /// what each side sent early to the other, then bytes both ways
    /// (`crate::relay`). The session ends when the back-end closes (after
    /// LOGOUT, QUIT or its own timeout; a client's close is passed on and
    /// the back-end's last words still flow), or at a command boundary
    /// once it is kicked.
    pub async fn relay(
        self,
        tracker: impl Tracker,
        client: (Stream, &[u8], &[u8]),
        backend: (Stream, &[u8]),
    ) -> io::Result<()> {
        self.peer.session.logged_in(self.account, Some(self.host));
        let relay = Relay {
            tracker,
            handle: &self.peer.session,
            grace: self.ctx.config.session.kick_grace,
        };
        let (client, to_client, client_pending) = client;
        let (backend, backend_pending) = backend;
        let end = relay
            .run(client, to_client, client_pending, backend, backend_pending)
            .await?;
        if end != End::Closed {
            tracing::info!(user = self.account, session = %self.peer.session_id, ?end, "session ended by the administrator");
        }
        Ok(())
    }
}

/// The client's side of AUTH PLAIN on a line protocol (POP3, SMTP).
pub enum PlainAnswer {
    Credentials(String, Secret),
    Cancelled,
    Invalid,
    /// The client went away.
    Closed,
}

/// Reads AUTH PLAIN: the initial response if given, else `prompt` and the
/// client's next line; `*` cancels.
pub async fn read_plain(
    conn: &mut Conn,
    initial: &str,
    prompt: &[u8],
    max: usize,
) -> io::Result<PlainAnswer> {
    let response = if initial.is_empty() {
        conn.send(prompt).await?;
        match conn.read_line(max).await? {
            Line::Text(l) => String::from_utf8_lossy(&l).into_owned(),
            Line::TooLong => String::new(),
            Line::End => return Ok(PlainAnswer::Closed),
        }
    } else {
        initial.to_string()
    };
    let response = response.trim();
    if response == "*" {
        return Ok(PlainAnswer::Cancelled);
    }
    Ok(BASE64
        .decode(response)
        .ok()
        .and_then(|d| sasl_plain(&d))
        .map_or(PlainAnswer::Invalid, |(u, p)| {
            PlainAnswer::Credentials(u, p)
        }))
}

/// Decodes SASL PLAIN (`authzid NUL authcid NUL password`). An authzid
/// other than empty or the authcid is refused: no proxy authorization.
pub fn sasl_plain(data: &[u8]) -> Option<(String, Secret)> {
    let plain = Plain::decode(data)?;
    if plain.authcid.is_empty() || plain.acts_for_another() {
        return None;
    }
    Some((plain.authcid, plain.password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_plain_forms() {
        assert_eq!(
            sasl_plain(b"\0ann\0pw"),
            Some(("ann".into(), Secret::new("pw")))
        );
        assert_eq!(sasl_plain(b"ann\0ann\0pw").unwrap().0, "ann");
        assert_eq!(
            sasl_plain(b"root\0ann\0pw"),
            None,
            "no authorization as another user"
        );
        assert_eq!(sasl_plain(b"ann\0pw"), None);
        assert_eq!(sasl_plain(b"\0\0pw"), None);
        assert_eq!(sasl_plain(b"\0a\0b\0c"), None);
    }

    /// A back-end that refuses (its service restarting, its address not
    /// yet taken over) and listens a moment later is reached within the
    /// connect timeout; one that never comes back fails at the timeout
    /// with the last refusal.
    #[tokio::test]
    async fn a_connect_waits_for_a_back_end_that_comes_back() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let started = tokio::time::Instant::now();
        let back = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            l.accept().await.unwrap()
        });
        let tcp = tcp_connect("127.0.0.1", port, Duration::from_secs(5)).await;
        assert!(tcp.is_ok(), "{tcp:?}");
        assert!(started.elapsed() >= Duration::from_millis(600));
        back.await.unwrap();

        let never = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = never.local_addr().unwrap().port();
        drop(never);
        let err = tcp_connect("127.0.0.1", port, Duration::from_millis(400))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
