//! IMAP through the proxy against a real slapd and real Dovecot back-ends.
mod support;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use support::*;

fn login_lines(site: &Site, host: &str, user: &str) -> Vec<String> {
    site.dovecot_log(host)
        .lines()
        .filter(|l| l.contains("imap-login: Info: Login:") && l.contains(&format!("user=<{user}>")))
        .map(str::to_string)
        .collect()
}

/// The login lines once there are at least `n`: Dovecot's log process
/// writes them a moment after the login's reply reached the client.
fn logins_at_least(site: &Site, host: &str, user: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let lines = login_lines(site, host, user);
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn routes_each_account_to_its_mail_host() {
    let site = Site::start(Options::default());
    // imaplib over STARTTLS (the 143 listener refuses plain-text logins).
    let script = format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for user, pw in [("ann", "{ann}"), ("ann.alias@mail.test", "{ann}"), ("bob", {bob:?}), ("carol", "{carol}")]:
    m = imaplib.IMAP4("{PROXY}", 143)
    assert "LOGINDISABLED" in m.capabilities, m.capabilities
    m.starttls(ssl_context=ctx)
    typ, _ = m.login(user, pw)
    assert typ == "OK"
    # After login the session is the back-end's: its capabilities, asked anew.
    typ, caps = m.capability()
    assert typ == "OK" and b"IDLE" in caps[0].split(), caps
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    m.logout()
    print("ok", user)
"#,
        ann = ANN.1,
        bob = BOB.1,
        carol = CAROL.1,
    );
    let out = site.python(&script);
    assert_eq!(out.lines().count(), 4, "{out}");
    // ann (and her alias) on be1; bob (own mailHost) and carol (her
    // domain's mailHost) on be2. The back-end saw the client's address.
    let ann = logins_at_least(&site, "be1", "ann", 2);
    assert_eq!(ann.len(), 2, "{}", site.dovecot_log("be1"));
    assert!(ann[0].contains(&format!("rip={CLIENT}")), "{}", ann[0]);
    assert!(login_lines(&site, "be2", "ann").is_empty());
    assert_eq!(logins_at_least(&site, "be2", "bob", 1).len(), 1);
    assert_eq!(logins_at_least(&site, "be2", "carol", 1).len(), 1);
    assert!(login_lines(&site, "be1", "bob").is_empty());
    assert!(
        site.proxy_log().contains("directory failover"),
        "{}",
        site.proxy_log()
    );
}

#[test]
fn refusals_wrong_password_metacharacters_and_directory_down() {
    let mut site = Site::start(Options::default());
    let mut c = site.connect(1143);
    assert!(c.line().starts_with("* OK [CAPABILITY IMAP4rev1"));
    c.send(b"a LOGIN ann wrong\r\n");
    assert_eq!(
        c.line(),
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    // Filter metacharacters match nobody, even with a real password.
    for login in ["*", "a)(uid=*", "*)(|(uid=*", "ann)(uid=*", "ann\\\\"] {
        c.send(format!("b LOGIN \"{login}\" {}\r\n", ANN.1).as_bytes());
        assert_eq!(
            c.line(),
            "b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
            "{login}"
        );
    }
    // An empty password is never an (anonymous) LDAP bind.
    c.send(b"c LOGIN ann \"\"\r\n");
    assert_eq!(
        c.line(),
        "c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    // Unknown user without a default route.
    c.send(b"d LOGIN nobody x\r\n");
    assert_eq!(
        c.line(),
        "d NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    assert!(login_lines(&site, "be1", "ann").is_empty());
    // The directory goes away: a temporary failure, never a login.
    site.stop_slapd();
    c.send(format!("e LOGIN ann {}\r\n", ANN.1).as_bytes());
    assert_eq!(
        c.line(),
        "e NO [UNAVAILABLE] Account directory unavailable, try again later.\r\n"
    );
    c.send(b"f LOGOUT\r\n");
    assert_eq!(
        c.until("f "),
        ["* BYE Logging out.\r\n", "f OK Logout completed.\r\n"]
    );
    let metrics = site.python(&format!(
        "import urllib.request; print(urllib.request.urlopen('http://{PROXY}:9425/metrics').read().decode())"
    ));
    assert!(
        metrics.contains("fulmar_proxy_logins_total{protocol=\"imap\",result=\"failed\"} 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fulmar_proxy_logins_total{protocol=\"imap\",result=\"unavailable\"} 1")
    );
}

#[test]
fn literals_pipelining_id_and_sasl_before_login() {
    let site = Site::start(Options::default());
    let mut c = site.connect(1143);
    c.line();
    // ID with a synchronising literal: the proxy asks for the data.
    c.send(b"a ID (\"name\" {6}\r\n");
    assert!(c.line().starts_with("+ "));
    c.send(b"tester \"x-proxy-ttl\" \"3\")\r\n");
    assert_eq!(
        c.until("a "),
        ["* ID (\"name\" \"fulmar\")\r\n", "a OK ID completed.\r\n"]
    );
    // Garbage gets BAD and the session stays in step.
    c.send(b"b FROB\r\n* bad tag\r\nc NOOP\r\n");
    assert_eq!(c.line(), "b BAD Syntax error.\r\n");
    assert_eq!(c.line(), "* BAD Syntax error.\r\n");
    assert_eq!(c.line(), "c OK NOOP completed.\r\n");
    c.send(b"d SELECT INBOX\r\n");
    assert_eq!(c.line(), "d BAD SELECT needs a logged-in session.\r\n");
    // A huge literal before login is refused without reading it.
    c.send(b"e LOGIN ann {999999999}\r\n");
    assert_eq!(c.line(), "e BAD Literal too large before login.\r\n");
    // LOGIN with non-synchronising literals, with SELECT and LOGOUT
    // pipelined behind it: they run on the back-end.
    let pw = ANN.1;
    c.send(
        format!(
            "f LOGIN {{3+}}\r\nann {{{}+}}\r\n{pw}\r\ng SELECT INBOX\r\nh LOGOUT\r\n",
            pw.len()
        )
        .as_bytes(),
    );
    let lines = c.until("h ");
    let login = lines
        .iter()
        .find(|l| l.starts_with("f "))
        .expect("tagged LOGIN reply");
    assert!(login.starts_with("f OK"), "{lines:?}");
    // The back-end's post-login capabilities reach the client.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("IDLE") && l.contains("MOVE")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("g OK")), "{lines:?}");
    assert!(lines.last().unwrap().starts_with("h OK"));

    // AUTHENTICATE PLAIN, with and without SASL-IR.
    let ir = BASE64.encode(format!("\0bob\0{}", BOB.1));
    let mut c = site.connect(1143);
    c.line();
    c.send(format!("a AUTHENTICATE PLAIN {ir}\r\n").as_bytes());
    let lines = c.until("a ");
    assert!(lines.last().unwrap().starts_with("a OK"), "{lines:?}");
    let mut c = site.connect(1143);
    c.line();
    c.send(b"a AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ \r\n");
    c.send(b"*\r\n");
    assert_eq!(c.line(), "a BAD Authentication cancelled.\r\n");
    c.send(b"b AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ \r\n");
    c.send(format!("{ir}\r\n").as_bytes());
    assert!(c.until("b ").last().unwrap().starts_with("b OK"));
    // Authorization as someone else is refused.
    let other = BASE64.encode(format!("ann\0bob\0{}", BOB.1));
    let mut c = site.connect(1143);
    c.line();
    c.send(format!("a AUTHENTICATE PLAIN {other}\r\n").as_bytes());
    assert_eq!(c.line(), "a BAD Invalid PLAIN response.\r\n");
}

/// Nothing a client sends before login is buffered past
/// `max_prelogin_bytes` (64 KiB here), whichever path it takes: an
/// AUTHENTICATE answer, a literal announced with LITERAL+, a line.
#[test]
fn every_prelogin_path_is_bounded() {
    let site = Site::start(Options::default());
    // One byte over: the proxy reads all of it, so it closes with a FIN
    // (unread input would make it a reset that can beat the BYE here).
    let over = vec![b'A'; 64 * 1024 + 1];
    let mut c = site.connect(1143);
    c.line();
    c.send(b"a AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line(), "+ \r\n");
    // No line end yet: refused once over the bound, not at the end.
    c.send(&over);
    assert_eq!(c.line(), "* BYE Command too long before login.\r\n");
    assert!(c.closed());

    let mut c = site.connect(1143);
    c.line();
    c.send(b"a LOGIN ann {100000+}\r\n");
    assert_eq!(c.line(), "* BYE Literal too large before login.\r\n");
    assert!(c.closed());

    let mut c = site.connect(1143);
    c.line();
    c.send(b"a NOOP ");
    c.send(&over[7..]);
    assert_eq!(c.line(), "* BYE Command too long before login.\r\n");
    assert!(c.closed());
}

/// Password guessing is bounded per client address and per account,
/// however many connections carry it: 8 parallel guessers from one address
/// against one account, then one guess each from 50 addresses against
/// another, each for 5 s. With 3 free checks and spacing of 1 s then 2 s,
/// checks can only start at 0, 0, 0, 1, 3, 5, 7 and 9 s (logins still
/// waiting at the end run within `max_wait`, 4 s): at most 8 per key,
/// where an unthrottled proxy checks hundreds. Meanwhile another account
/// from another address logs in at once, and one connection gets 3
/// failures before it is closed.
#[test]
fn guessing_is_throttled_per_address_and_per_account() {
    let site = Site::start(Options {
        session: Some(
            "auth_failures_per_connection = 3\n[session.auth_penalty]\nfree_failures = 3\n\
             max_delay = \"2s\"\nmax_wait = \"4s\"\n"
                .into(),
        ),
        ..Options::default()
    });
    // Source addresses for the client host: 198.18.5.100-149, and .99 for
    // the bystander.
    for n in 99..150 {
        site.lab
            .check(
                "cl",
                "ip",
                &["addr", "add", &format!("198.18.5.{n}/24"), "dev", "eth0"],
            )
            .unwrap();
    }
    let out = site.python(&format!(
        r#"
import socket, threading, time
def attempt(src, user, pw):
    s = socket.create_connection(("{PROXY}", 1143), timeout=20, source_address=(src, 0))
    f = s.makefile("rb"); f.readline()
    s.sendall(f"a LOGIN {{user}} {{pw}}\r\n".encode())
    r = f.readline().decode(); s.close(); return r
def attack(sources, user, threads):
    results = []
    def worker(k):
        i = k
        while time.time() < until:
            results.append(attempt(sources[i % len(sources)], user, "wrong")); i += threads
    until = time.time() + 5
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts: t.start()
    time.sleep(2)
    if user == "ann":
        t0 = time.time()
        ok = attempt("198.18.5.99", "carol", {carol:?})
        print("bystander", ok.split(" ")[1], time.time() - t0 < 2)
    for t in ts: t.join()
    checked = sum("AUTHENTICATIONFAILED" in r for r in results)
    throttled = sum("Too many failed logins" in r for r in results)
    print(user, "checked", checked, "throttled", throttled, "other", len(results) - checked - throttled)
attack(["{CLIENT}"], "ann", 8)
attack([f"198.18.5.{{n}}" for n in range(100, 150)], "bob", 8)
s = socket.create_connection(("{PROXY}", 1143), timeout=20, source_address=("198.18.5.99", 0))
f = s.makefile("rb"); f.readline()
for i in range(3):
    s.sendall(f"c{{i}} LOGIN nobody{{i}} wrong\r\n".encode())
print("per connection", [f.readline().decode().strip() for _ in range(4)], f.readline())
"#,
        carol = CAROL.1,
    ));
    let figures = |user: &str| -> (usize, usize) {
        let l = out
            .lines()
            .find(|l| l.starts_with(&format!("{user} checked")))
            .unwrap_or_else(|| panic!("{out}"));
        let w: Vec<&str> = l.split(' ').collect();
        (w[2].parse().unwrap(), w[4].parse().unwrap())
    };
    for user in ["ann", "bob"] {
        let (checked, throttled) = figures(user);
        println!("{user}: {checked} checked, {throttled} refused unchecked");
        assert!(checked <= 8 && throttled > 0, "{out}");
        assert!(
            out.contains(&format!(
                "{user} checked {checked} throttled {throttled} other 0"
            )),
            "{out}"
        );
    }
    assert!(out.contains("bystander OK True"), "{out}");
    assert!(
        out.contains(
            "per connection ['c0 NO [AUTHENTICATIONFAILED] Authentication failed.', \
             'c1 NO [AUTHENTICATIONFAILED] Authentication failed.', \
             'c2 NO [AUTHENTICATIONFAILED] Authentication failed.', \
             '* BYE Too many failed logins.'] b''"
        ),
        "{out}"
    );
}

/// Slow and crowding clients are bounded: connections per address are
/// capped (the one over is told so), a client kept busy with NOOPs must
/// still log in within `prelogin_timeout`, and one that sends but never
/// reads is dropped once a write has waited `prelogin_idle_timeout`.
#[test]
fn crowding_busy_and_deaf_clients_are_bounded() {
    let site = Site::start(Options {
        session: Some(
            "max_connections_per_ip = 3\nprelogin_timeout = \"2s\"\n\
             prelogin_idle_timeout = \"1s\"\n"
                .into(),
        ),
        ..Options::default()
    });
    let out = site.python(&format!(
        r#"
import socket, time, urllib.request
def greet():
    s = socket.create_connection(("{PROXY}", 1143), timeout=10)
    return s, s.makefile("rb").readline().decode().strip()
held = [greet() for _ in range(3)]
print("fourth", greet()[1])
for s, _ in held: s.close()
deadline = time.time() + 10
while greet()[1].startswith("* BYE") and time.time() < deadline: time.sleep(0.1)
print("after close", greet()[1][:4])

s, _ = greet()
t0 = time.time()
try:
    while time.time() - t0 < 10:
        s.sendall(b"a NOOP\r\n"); time.sleep(0.3)
except OSError:
    pass
print("busy closed after", 1.5 < time.time() - t0 < 8)

def active():
    text = urllib.request.urlopen("http://{PROXY}:9425/metrics").read().decode()
    return [l for l in text.splitlines() if l.startswith('fulmar_proxy_sessions_active{{protocol="imap"}}')][0].split()[1]
deaf = socket.socket()
deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
deaf.settimeout(10)
deaf.connect(("{PROXY}", 1143))
try:
    deaf.sendall(b"a CAPABILITY\r\n" * 50000)
except OSError:
    pass
deadline = time.time() + 15
while active() != "0" and time.time() < deadline: time.sleep(0.2)
print("deaf dropped", active())
"#
    ));
    assert!(
        out.contains("fourth * BYE [UNAVAILABLE] Too many connections, try again later."),
        "{out}"
    );
    assert!(out.contains("after close * OK"), "{out}");
    assert!(out.contains("busy closed after True"), "{out}");
    assert!(out.contains("deaf dropped 0"), "{out}");
}

/// A back-end that accepts connections but never answers (its processes
/// frozen here: the kernel still completes the handshake) is given up
/// after `backend.login_timeout`, for IMAP and POP3 alike: the client
/// hears UNAVAILABLE instead of waiting for ever.
#[test]
fn a_hung_back_end_is_given_up_after_the_login_timeout() {
    let site = Site::start(Options {
        backend_extra: "login_timeout = \"1s\"\n".into(),
        ..Options::default()
    });
    let netns = site.lab.netns("be1");
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", &netns])
        .output()
        .unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!pids.is_empty(), "be1 runs Dovecot");
    for pid in &pids {
        fulmar_lab::freeze::freeze(*pid).unwrap();
    }
    let mut c = site.connect(1143);
    c.line();
    c.send(format!("a LOGIN {} {}\r\n", ANN.0, ANN.1).as_bytes());
    assert_eq!(
        c.line(),
        "a NO [UNAVAILABLE] Mail store unavailable, try again later.\r\n"
    );
    let mut c = site.connect(1110);
    c.line();
    c.send(format!("USER {}\r\n", ANN.0).as_bytes());
    c.line();
    c.send(format!("PASS {}\r\n", ANN.1).as_bytes());
    let reply = c.line();
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "{reply}");
    for pid in &pids {
        fulmar_lab::freeze::thaw(*pid);
    }
}

#[test]
fn implicit_tls_proxy_protocol_default_route_and_agent() {
    let site = Site::start(Options {
        default_host: true,
        ..Options::default()
    });
    // Implicit TLS on 993; the legacy account (not in LDAP) goes to the
    // default back-end, which checks its password itself.
    let script = format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("{PROXY}", 993, ssl_context=ctx)
m.login("legacy", "{pw}"); m.logout()
m = imaplib.IMAP4_SSL("{PROXY}", 993, ssl_context=ctx)
try:
    m.login("legacy", "wrong"); print("accepted")
except imaplib.IMAP4.error as e:
    print("refused", e)
print(open("/dev/null").read() or "done")
"#,
        pw = LEGACY.1
    );
    let out = site.python(&script);
    assert!(out.contains("refused"), "{out}");
    assert_eq!(logins_at_least(&site, "be2", "legacy", 1).len(), 1);
    // PROXY v2: the back-end sees the address from the header.
    let mut c = site.connect(1144);
    let header = fulmar_proxy::proxy_protocol::header(
        "198.18.7.7:4242".parse().unwrap(),
        format!("{PROXY}:143").parse().unwrap(),
    );
    c.send(&header);
    c.line();
    c.send(format!("a LOGIN ann {}\r\nb LOGOUT\r\n", ANN.1).as_bytes());
    c.until("b ");
    let ann = logins_at_least(&site, "be1", "ann", 1);
    assert!(ann.last().unwrap().contains("rip=198.18.7.7"), "{ann:?}");
    // From outside proxy_protocol_from the same header is not believed:
    // the connection is closed before anything is read or answered.
    let hex: String = header.iter().map(|b| format!("{b:02x}")).collect();
    let out = site.lab.python(
        "be1",
        &format!(
            "import socket\ns = socket.create_connection(('{PROXY}', 1144), timeout=5)\n\
             s.sendall(bytes.fromhex('{hex}'))\n\
             try:\n    print('read', s.recv(100))\n\
             except ConnectionResetError:\n    print('read', b'')  # closed with our bytes unread\n"
        ),
        || site.proxy_log(),
    );
    assert!(out.contains("read b''"), "{out}");
    assert!(
        site.proxy_log()
            .contains("PROXY header from outside proxy_protocol_from"),
        "{}",
        site.proxy_log()
    );
    // The balancer's agent check.
    let mut agent = site.connect(7070);
    assert_eq!(agent.line(), "up ready\n");
}

#[test]
fn sighup_reloads_the_certificate_and_sigterm_drains() {
    let site = Site::start(Options::default());
    let fetch_cert =
        format!("import ssl; print(ssl.get_server_certificate((\"{PROXY}\", 993)).strip())");
    let before = site.python(&fetch_cert);
    let dir = site.work.join("proxy");
    let fresh = rcgen::generate_simple_self_signed(vec!["renewed.fulmar.test".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), fresh.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), fresh.signing_key.serialize_pem()).unwrap();
    let pid = site.lab.state().pids.last().copied().expect("proxy pid");
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = site.python(&fetch_cert);
    assert_ne!(before, after);
    assert_eq!(after.trim(), fresh.cert.pem().trim());

    // A logged-in session survives SIGTERM; the agent says drain.
    let mut c = site.connect(1143);
    c.line();
    c.send(format!("a LOGIN ann {}\r\n", ANN.1).as_bytes());
    assert!(c.until("a ").last().unwrap().starts_with("a OK"));
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(site.connect(7070).line(), "drain\n");
    c.send(b"b NOOP\r\n");
    assert!(c.until("b ").last().unwrap().starts_with("b OK"));
    c.send(b"c LOGOUT\r\n");
    c.until("c ");
    // With no sessions left (and the 1 s grace over), the daemon exits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid as i32, 0) } == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        site.proxy_log().contains("drain over"),
        "{}",
        site.proxy_log()
    );
}

#[test]
fn tls_to_the_back_ends_with_idle_and_delivery() {
    let site = Site::start(Options {
        backend_tls: true,
        ..Options::default()
    });
    // ann idles on be1 through the proxy (proxy → be1 in TLS, checked
    // against the test CA).
    let mut idle = site.connect(1143);
    idle.line();
    idle.send(format!("a LOGIN ann {}\r\nb SELECT INBOX\r\nc IDLE\r\n", ANN.1).as_bytes());
    let lines = idle.until("+ ");
    assert!(lines.iter().any(|l| l.starts_with("a OK")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("* 0 EXISTS")),
        "{lines:?}"
    );
    // A message for ann through SMTP in (proxy → be1 LMTP in TLS) must
    // reach the idling session at once; bob logs in to be2 over POP3.
    let script = format!(
        r#"
import smtplib, poplib
s = smtplib.SMTP("{PROXY}", 25); s.ehlo("cl.test")
print(s.sendmail("x@remote.test", ["ann@mail.test"], "Subject: idle\r\n\r\nwake up\r\n"))
s.quit()
p = poplib.POP3("{PROXY}", 1110); p.user("bob"); p.pass_({bob:?}); print("pop3", p.stat()); p.quit()
"#,
        bob = BOB.1,
    );
    let out = site.python(&script);
    assert!(out.contains("{}") && out.contains("pop3 (0, 0)"), "{out}");
    let woke = idle.until("* 1 EXISTS");
    assert!(!woke.is_empty());
    idle.send(b"DONE\r\nd FETCH 1 BODY[TEXT]\r\ne LOGOUT\r\n");
    let rest = idle.until("e OK");
    assert!(rest.iter().any(|l| l.starts_with("c OK")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("wake up")), "{rest:?}");
    // Dovecot marks logins made over TLS; every one here was. (Its LMTP
    // does not log TLS, but the proxy's connector speaks nothing else.)
    let ann = logins_at_least(&site, "be1", "ann", 1);
    let be1 = site.dovecot_log("be1");
    assert!(ann.len() == 1 && ann[0].contains("TLS"), "{be1}");
    assert!(
        be1.contains("lmtp(ann)") && be1.contains("saved mail to INBOX"),
        "{be1}"
    );
    let bob = site.dovecot_log("be2");
    assert!(
        bob.lines()
            .any(|l| l.contains("pop3-login") && l.contains("user=<bob>") && l.contains("TLS")),
        "{bob}"
    );
}

/// The product's own path end to end: client → fulmar-proxyd →
/// fulmar-maild, the proxy speaking implicit TLS to it (IMAPS, LMTP in
/// TLS) checked against the back-end CA. ann idles through the proxy, a
/// message for her arrives by SMTP through the proxy, and the idle hears it.
#[test]
fn tls_to_a_maild_back_end_with_idle_and_delivery() {
    let site = Site::start(Options {
        backend_tls: true,
        maild_be1: true,
        ..Options::default()
    });
    let mut idle = site.connect(1143);
    idle.line();
    idle.send(format!("a LOGIN ann {}\r\nb SELECT INBOX\r\nc IDLE\r\n", ANN.1).as_bytes());
    let lines = idle.until("+ ");
    let ok = lines.iter().find(|l| l.starts_with("a OK"));
    let ok = ok.unwrap_or_else(|| panic!("{lines:?}\n{}", site.maild_log()));
    // The back-end's capabilities reach the client in the login's answer.
    for cap in [
        " CONDSTORE ",
        " QRESYNC ",
        " LIST-EXTENDED ",
        " LIST-STATUS",
    ] {
        assert!(ok.contains(cap), "{cap} missing: {ok}");
    }
    assert!(
        lines.iter().any(|l| l.trim_end() == "* 0 EXISTS"),
        "{lines:?}"
    );
    let out = site.python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("{PROXY}", 25); s.ehlo("cl.test")
print(s.sendmail("x@remote.test", ["ann@mail.test"], "Subject: sealed\r\n\r\nover tls\r\n"))
s.quit()
"#
    ));
    assert!(out.contains("{}"), "{out}\n{}", site.maild_log());
    let woke = idle.until("* 1 EXISTS");
    assert!(!woke.is_empty());
    idle.send(
        b"DONE\r\nd FETCH 1 BODY[TEXT]\r\nf ENABLE QRESYNC\r\n\
          g LIST \"\" (\"INBOX\") RETURN (STATUS (MESSAGES))\r\ne LOGOUT\r\n",
    );
    let rest = idle.until("e OK");
    assert!(rest.iter().any(|l| l.contains("over tls")), "{rest:?}");
    for answer in ["* ENABLED QRESYNC", "* STATUS \"INBOX\" (MESSAGES 1)"] {
        assert!(rest.iter().any(|l| l.trim_end() == answer), "{rest:?}");
    }
    // maild saw the login arrive in TLS, from the proxy, for the client.
    let log = site.maild_log();
    let login = log
        .lines()
        .find(|l| l.contains("imap login") && l.contains("ann@mail.test"))
        .unwrap_or_else(|| panic!("no login in:\n{log}"));
    assert!(
        login.contains("tls=true") && login.contains(&format!("peer={PROXY}:")),
        "{login}"
    );
    assert!(login.contains(&format!("client={CLIENT}")), "{login}");
}
