//! The admin endpoint through fulmar-proxyd on a real site (slapd,
//! fulmar-maild as ann's home and as bob's): sessions listed, kicked
//! by account, by back-end and all, each ended with its protocol's
//! goodbye at a command boundary; the TLS door refuses a wrong token; a
//! drain ends every session within its window and the agent says drain.
mod support;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use fulmar_daemon::secret::Secret;
use fulmar_proxy::admin::{Reply, Request, Selector, SessionInfo, Status, client::Door};
use support::{ANN, BE1, BE2, BOB, Options, PROXY, Raw, Site};

const TOKEN: &str = "a-long-enough-admin-token";

struct Admin {
    socket: PathBuf,
    token_file: PathBuf,
    cert: PathBuf,
}

impl Admin {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fulmar-admin-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        Admin {
            socket: dir.join("admin.sock"),
            token_file,
            cert: PathBuf::new(),
        }
    }

    fn config(&self) -> String {
        format!(
            "[admin]\nsocket = \"{}\"\naddress = \"{PROXY}:7071\"\ntoken_file = \"{}\"\nname = \"px1\"\n",
            self.socket.display(),
            self.token_file.display()
        )
    }

    /// Through the Unix socket, from this host.
    fn local(&self, request: Request) -> Reply {
        let door = Door::Unix(self.socket.clone());
        runtime().block_on(door.ask(&request)).unwrap()
    }

    /// Through the TLS door from the client host, with `token`.
    fn remote(&self, site: &Site, token: &str, request: Request) -> Result<Reply, String> {
        let cert = self.cert.clone();
        let token = Secret::new(token);
        site.lab
            .in_host("cl", move || {
                let connector = fulmar_proxy::stream::connector(&cert).unwrap();
                let door = Door::Tls {
                    address: format!("{PROXY}:7071").parse().unwrap(),
                    name: "mail.fulmar.test".into(),
                    connector,
                    token,
                };
                runtime().block_on(door.ask(&request))
            })
            .unwrap()
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        match self.local(Request::List) {
            Reply::Sessions(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn status(&self) -> Status {
        match self.local(Request::Status) {
            Reply::Status(s) => s,
            other => panic!("{other:?}"),
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.token_file.parent().unwrap());
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn start() -> (Site, Admin) {
    let mut admin = Admin::new();
    let site = Site::start(Options {
        maild_be1: true,
        maild_be2: true,
        extra_proxy_config: admin.config(),
        ..Options::default()
    });
    admin.cert = site.work.join("proxy/cert.pem");
    (site, admin)
}

fn imap_login(site: &Site, user: &str, password: &str) -> Raw {
    let mut c = site.connect(1143);
    c.line();
    c.send(format!("a LOGIN {user} \"{password}\"\r\nb SELECT INBOX\r\n").as_bytes());
    let lines = c.until("b ");
    assert!(lines.last().unwrap().starts_with("b OK"), "{lines:?}");
    c
}

/// Everything the proxy still sends, up to its close.
fn rest(c: &mut Raw) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = c.line();
        if line.is_empty() {
            return lines;
        }
        lines.push(line);
    }
}

/// Waits (bounded) until the proxy lists `n` sessions.
fn wait_sessions(admin: &Admin, n: usize) -> Vec<SessionInfo> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = admin.sessions();
        if s.len() == n || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sessions_are_listed_and_kicked_by_account_back_end_and_all() {
    let (site, admin) = start();
    // ann: one IMAP session in IDLE, one idle after SELECT, one POP3; bob
    // on the other back-end; one client that has not logged in.
    let mut idling = imap_login(&site, ANN.0, ANN.1);
    idling.send(b"c IDLE\r\n");
    idling.until("+ ");
    let mut quiet = imap_login(&site, ANN.0, ANN.1);
    let mut pop = site.connect(1110);
    pop.line();
    pop.send(format!("USER {}\r\nPASS {}\r\n", ANN.0, ANN.1).as_bytes());
    pop.line();
    assert!(pop.line().starts_with("+OK"));
    let mut bob = imap_login(&site, BOB.0, &BOB.1.replace('"', "\\\""));
    let mut anonymous = site.connect(1143);
    anonymous.line();

    let listed = wait_sessions(&admin, 5);
    let of = |account: &str| {
        listed
            .iter()
            .filter(|s| s.account.as_deref() == Some(account))
            .collect::<Vec<_>>()
    };
    let anns = of("ann@mail.test");
    assert_eq!(anns.len(), 3, "{listed:?}");
    assert!(
        anns.iter().all(|s| s.backend.as_deref() == Some(BE1)),
        "{anns:?}"
    );
    assert_eq!(of("bob@mail.test")[0].backend.as_deref(), Some(BE2));
    assert!(listed.iter().any(|s| s.account.is_none()), "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|s| s.client.ip().to_string() == support::CLIENT)
    );

    // The TLS door wants the token.
    let refused = admin.remote(&site, "not-the-token-at-all", Request::List);
    assert!(refused.unwrap_err().contains("token"));
    let kicked = Instant::now();
    let reply = admin.remote(
        &site,
        TOKEN,
        Request::Kick {
            select: Selector::Account("ANN@mail.test".into()),
        },
    );
    assert_eq!(reply, Ok(Reply::Kicked(3)));
    for c in [&mut idling, &mut quiet] {
        let bye = rest(c);
        assert_eq!(bye.len(), 1, "{bye:?}");
        assert!(bye[0].starts_with("* BYE [UNAVAILABLE]"), "{bye:?}");
    }
    let bye = rest(&mut pop);
    assert!(
        bye.len() == 1 && bye[0].starts_with("-ERR [SYS/TEMP]"),
        "{bye:?}"
    );
    let took = kicked.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "ann's sessions took {took:?} to end"
    );

    // Nobody else noticed.
    bob.send(b"n NOOP\r\n");
    assert!(bob.until("n ").last().unwrap().starts_with("n OK"));
    anonymous.send(b"n NOOP\r\n");
    assert!(anonymous.until("n ").last().unwrap().starts_with("n OK"));
    assert_eq!(wait_sessions(&admin, 2).len(), 2);

    // By back-end, then everything (the one not logged in gets BYE too).
    let by_backend = Request::Kick {
        select: Selector::Backend(BE2.into()),
    };
    assert_eq!(admin.local(by_backend), Reply::Kicked(1));
    assert!(rest(&mut bob)[0].starts_with("* BYE [UNAVAILABLE]"));
    // A kick counts sessions still ending again; wait until bob's is gone.
    assert_eq!(wait_sessions(&admin, 1).len(), 1);
    let all = Request::Kick {
        select: Selector::All,
    };
    assert_eq!(admin.local(all), Reply::Kicked(1));
    assert!(rest(&mut anonymous)[0].starts_with("* BYE [UNAVAILABLE]"));
    assert!(wait_sessions(&admin, 0).is_empty());
}

#[test]
fn a_drain_ends_every_session_within_its_window_and_undrain_restores() {
    let (site, admin) = start();
    let mut clients: Vec<Raw> = (0..6).map(|_| imap_login(&site, ANN.0, ANN.1)).collect();
    assert_eq!(wait_sessions(&admin, 6).len(), 6);
    assert_eq!(site.connect(7070).line(), "up ready\n");
    let started = Instant::now();
    let window = Duration::from_secs(2);
    let reply = admin.local(Request::Drain {
        within_ms: window.as_millis() as u64,
    });
    assert!(
        matches!(reply, Reply::Status(Status { draining: true, .. })),
        "{reply:?}"
    );
    assert_eq!(site.connect(7070).line(), "drain\n");
    // Spread over the window, not all at once: a third of the way in,
    // at most a third of them were asked (when the machine let us look
    // in time).
    std::thread::sleep(window / 3);
    let early = admin.status();
    if started.elapsed() < window / 2 {
        assert!(early.sessions >= 3, "{early:?}");
    }
    for c in &mut clients {
        let bye = rest(c);
        assert!(
            bye.last().unwrap().starts_with("* BYE [UNAVAILABLE]"),
            "{bye:?}"
        );
    }
    let took = started.elapsed();
    assert!(took < window + Duration::from_secs(2), "{took:?}");
    assert_eq!(admin.status().sessions, 0);
    // A session that arrives while draining is asked to leave too.
    let mut late = site.connect(1143);
    let lines = rest(&mut late);
    assert!(
        lines.last().unwrap().starts_with("* BYE [UNAVAILABLE]"),
        "{lines:?}"
    );
    admin.local(Request::Undrain);
    assert_eq!(site.connect(7070).line(), "up ready\n");
    let mut after = imap_login(&site, ANN.0, ANN.1);
    after.send(b"n NOOP\r\n");
    assert!(after.until("n ").last().unwrap().starts_with("n OK"));
}

/// A session with COMPRESS on (answered by the proxy itself) is kicked
/// like any other: at a command boundary, with a goodbye the client reads
/// through its DEFLATE stream.
#[test]
fn a_compressed_session_gets_its_goodbye_compressed() {
    const CLIENT_PY: &str = include_str!("../../backend/maild/tests/support/deflate_client.py");
    let (site, admin) = start();
    let marker = site.work.join("compressed");
    let script = format!(
        "{CLIENT_PY}\nPROXY = '{PROXY}'\nMARKER = '{}'\nANN = '{}'\n{}",
        marker.display(),
        ANN.1,
        r#"
p = Plain(PROXY, 1143)
p.cmd("a", f"LOGIN ann {ANN}")
p.cmd("b", "SELECT INBOX")
answer, z = compress(p, "c")
assert z, answer
print("noop", z.cmd("d", "NOOP")[-1][:4])
open(MARKER, "w").close()
z.s.settimeout(20)
print("bye", z.line())
try:
    print("after", z.line())
except EOFError:
    print("after", "closed")
"#
    );
    std::thread::scope(|s| {
        let client = s.spawn(|| site.python(&script));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !marker.exists() {
            assert!(Instant::now() < deadline, "COMPRESS never came on");
            assert!(!client.is_finished(), "the client ended early");
            std::thread::sleep(Duration::from_millis(20));
        }
        let reply = admin.local(Request::Kick {
            select: Selector::All,
        });
        assert_eq!(reply, Reply::Kicked(1));
        let out = client.join().unwrap();
        assert!(out.contains("noop d OK"), "{out}");
        assert!(
            out.contains("bye * BYE [UNAVAILABLE]"),
            "{out}\n{}",
            site.proxy_log()
        );
        assert!(out.contains("after closed"), "{out}");
    });
}
