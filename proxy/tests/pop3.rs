//! POP3 through the proxy against a real slapd and real Dovecot back-ends.
mod support;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use support::*;

#[test]
fn pop3_logins_route_and_fail_cleanly() {
    let mut site = Site::start(Options::default());
    // poplib with STLS on 110 (USER is not offered before TLS), then plain on 1110.
    let script = format!(
        r#"
import poplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3("{PROXY}", 110)
caps = p.capa()
assert "STLS" in caps and "USER" not in caps, caps
p.stls(context=ctx)
assert "USER" in p.capa()
p.user("ann"); p.pass_("{ann}")
print("stat", p.stat())
p.quit()
p = poplib.POP3("{PROXY}", 1110)
p.user("bob"); p.pass_({bob:?})
print("stat", p.stat())
p.quit()
p = poplib.POP3("{PROXY}", 1110)
p.user("ann")
try:
    p.pass_("wrong"); print("accepted")
except poplib.error_proto as e:
    print("refused", e)
"#,
        ann = ANN.1,
        bob = BOB.1,
    );
    let out = site.python(&script);
    assert!(
        out.contains("refused b'-ERR [AUTH] Authentication failed.'"),
        "{out}"
    );
    let pop_logins = |host: &str, user: &str| {
        site.dovecot_log(host)
            .lines()
            .filter(|l| {
                l.contains("pop3-login: Info: Login:") && l.contains(&format!("user=<{user}>"))
            })
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // Dovecot's log process writes a login a moment after its reply.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (pop_logins("be1", "ann").is_empty() || pop_logins("be2", "bob").is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ann = pop_logins("be1", "ann");
    assert_eq!(ann.len(), 1, "{}", site.dovecot_log("be1"));
    // XCLIENT carried the client's address to the back-end.
    assert!(ann[0].contains(&format!("rip={CLIENT}")), "{}", ann[0]);
    assert_eq!(pop_logins("be2", "bob").len(), 1);

    // AUTH PLAIN with an initial response and after "+ ", pipelined input.
    let ir = BASE64.encode(format!("\0ann\0{}", ANN.1));
    let mut c = site.connect(1110);
    assert!(c.line().starts_with("+OK"));
    c.send(b"AUTH\r\nFOO\r\n");
    assert_eq!(c.until("."), ["+OK\r\n", "PLAIN\r\n", ".\r\n"]);
    assert!(c.line().starts_with("-ERR"));
    c.send(b"AUTH PLAIN\r\n");
    assert_eq!(c.line(), "+ \r\n");
    c.send(format!("{ir}\r\nSTAT\r\nQUIT\r\n").as_bytes());
    assert!(c.line().starts_with("+OK"), "logged in");
    assert!(c.line().starts_with("+OK 0 0"), "STAT ran on the back-end");
    // Directory down: ann, whose password it accepted a moment ago, still
    // gets in (outage_ttl); carol, never seen here, gets a temporary
    // failure.
    site.stop_slapd();
    let mut c = site.connect(1110);
    c.line();
    c.send(format!("USER ann\r\nPASS {}\r\n", ANN.1).as_bytes());
    assert_eq!(c.line(), "+OK\r\n");
    assert!(c.line().starts_with("+OK"), "ann let in");
    let mut c = site.connect(1110);
    c.line();
    c.send(format!("USER carol\r\nPASS {}\r\n", CAROL.1).as_bytes());
    assert_eq!(c.line(), "+OK\r\n");
    assert_eq!(
        c.line(),
        "-ERR [SYS/TEMP] Account directory unavailable, try again later.\r\n"
    );
}
