//! SMTP in through the proxy: per-recipient routing by the directory,
//! delivery over LMTP to real Dovecot instances, relay rules, SIZE.
mod support;

use support::*;

/// Python that fetches the newest message of `user` through the proxy and
/// prints its size and SHA-256.
fn fetch_script(user: &str, pw: &str) -> String {
    format!(
        r#"
import imaplib, hashlib
m = imaplib.IMAP4("{PROXY}", 1143)
m.login("{user}", {pw:?})
typ, data = m.select("INBOX")
n = int(data[0])
typ, data = m.fetch(str(n), "(BODY.PEEK[])")
body = data[0][1]
print(n, len(body), hashlib.sha256(body).hexdigest())
m.logout()
"#
    )
}

#[test]
fn split_delivery_refusals_and_a_30mb_message() {
    let mut site = Site::start(Options::default());
    // One message for recipients on two instances (ann on be1; bob and
    // carol on be2): one LMTP transaction each, 250 only when both took it.
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{PROXY}", 25)
s.ehlo("client.test")
assert s.has_extn("size") and s.has_extn("pipelining") and not s.has_extn("auth")
msg = "From: x@remote.test\r\nSubject: split\r\n\r\n.leading dot\r\nhello\r\n"
refused = s.sendmail("x@remote.test", ["ann@mail.test", "bob@mail.test", "carol@mail.test"], msg)
print("refused", refused)
for rcpt in ["nobody@mail.test", "someone@elsewhere.test"]:
    s.mail("x@remote.test")
    print(rcpt, s.rcpt(rcpt))
    s.rset()
print("size", s.mail("x@remote.test", ["SIZE=99999999"]))
s.quit()
"#
    );
    let out = site.python(&script);
    assert!(out.contains("refused {}"), "{out}");
    assert!(
        out.contains("nobody@mail.test (550, b'5.1.1 No such user here')"),
        "{out}"
    );
    assert!(
        out.contains("someone@elsewhere.test (554, b'5.7.1 Relay access denied')"),
        "{out}"
    );
    assert!(
        out.contains("size (552, b'5.3.4 Message size exceeds fixed limit')"),
        "{out}"
    );
    for (user, pw) in [ANN, BOB, CAROL] {
        let got = site.python(&fetch_script(user, pw));
        assert!(got.starts_with("1 "), "{user}: {got}");
    }
    let be1 = site.dovecot_log("be1");
    assert!(
        be1.contains("lmtp(ann)") && !be1.contains("lmtp(bob)"),
        "{be1}"
    );

    // 30 MB through SMTP, back through IMAP FETCH, byte for byte.
    let script = format!(
        r#"
import smtplib, hashlib, random
random.seed(7)
lines = ["".join(random.choice("abcdefghij.ABCDEFGHIJ0123456789 ") for _ in range(76)) for _ in range(2000)]
body = "\r\n".join(lines[i % 2000] for i in range(30 * 1024 * 1024 // 78)) + "\r\n"
msg = "From: x@remote.test\r\nSubject: big\r\n\r\n" + body
s = smtplib.SMTP("{PROXY}", 25)
s.sendmail("x@remote.test", ["ann@mail.test"], msg)
s.quit()
print(len(msg))
"#
    );
    let sent = site.python(&script);
    let sent: usize = sent.trim().parse().unwrap();
    assert!(sent > 30_000_000);
    let got = site.python(&fetch_script(ANN.0, ANN.1));
    let fields: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(fields[0], "2", "{got}");
    // Dovecot adds Return-Path and Received headers: the body must be whole.
    let size: usize = fields[1].parse().unwrap();
    assert!(
        size >= sent && size < sent + 2048,
        "sent {sent}, fetched {size}"
    );

    // An instance down: mail for it is deferred, never half-accepted as 250.
    site.lab
        .exec(
            "be1",
            "pkill",
            &["-f", &format!("{}/be1/dovecot.conf", site.work.display())],
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{PROXY}", 25)
for rcpts in (["ann@mail.test"], ["ann@mail.test", "bob@mail.test"]):
    try:
        s.sendmail("x@remote.test", rcpts, "Subject: t\r\n\r\nx\r\n"); print("accepted")
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
"#
    );
    let out = site.python(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("451 4.3.0 Mail store failed"), "{out}");
    assert!(
        lines[1].starts_with("451 4.3.0 Delivered to 1 of 2"),
        "{out}"
    );

    // Directory down: a recipient it has not answered for lately is
    // deferred (one it did still routes, for outage_ttl).
    site.stop_slapd();
    let out = site.python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("{PROXY}", 25)
s.ehlo("client.test")
print(s.mail("x@remote.test"))
print(s.rcpt("never-asked@mail.test"))
"#
    ));
    assert!(out.contains("451, b'4.3.0 Directory unavailable"), "{out}");
}

#[test]
fn submission_needs_tls_and_auth_then_relays() {
    let mut site = Site::start(Options {
        outbound_relay: Some(format!("{BE1}:2525")),
        ..Options::default()
    });
    // An outbound MTA stand-in that records what it receives.
    site.lab
        .spawn(
            "be1",
            "relay",
            "python3",
            &[
                "-W",
                "ignore",
                "-m",
                "smtpd",
                "-n",
                "-c",
                "DebuggingServer",
                &format!("{BE1}:2525"),
            ],
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("{PROXY}", 587)
s.ehlo("laptop.test")
print("auth before tls", s.has_extn("auth"))
print("mail before auth", s.mail("ann@mail.test"))
s.starttls(context=ctx)
s.ehlo("laptop.test")
try:
    s.login("ann", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("bad password", e.smtp_code)
s.login("ann", "{ann}")
for forged in ["bob@mail.test", "ceo@elsewhere.test", ""]:
    print("forged", repr(forged), s.mail(forged)[0]); s.rset()
print("alias", s.mail("ann.alias@mail.test")[0]); s.rset()
s.sendmail("ann@mail.test", ["friend@elsewhere.test", "bob@mail.test"], "Subject: out\r\n\r\nrelayed body\r\n")
print("sent")
s.quit()
"#,
        ann = ANN.1
    );
    let out = site.python(&script);
    assert!(out.contains("auth before tls False"), "{out}");
    assert!(out.contains("mail before auth (530"), "{out}");
    assert!(out.contains("bad password 535"), "{out}");
    // After AUTH the sender must be the account's own address (any alias).
    for forged in ["'bob@mail.test'", "'ceo@elsewhere.test'", "''"] {
        assert!(out.contains(&format!("forged {forged} 553")), "{out}");
    }
    assert!(out.contains("alias 250"), "{out}");
    assert!(out.contains("sent"), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let relay = site.lab.log("be1", "relay");
    assert!(relay.contains("relayed body"), "relay got: {relay}");
    assert!(
        !relay.contains("bob@mail.test"),
        "local recipients go to their instance"
    );
    let got = site.python(&fetch_script(BOB.0, BOB.1));
    assert!(got.starts_with("1 "), "{got}");
}

/// SMTP smuggling: a bare-LF `.` inside DATA followed by commands. The
/// proxy refuses the message whole (550) and nothing reaches the mailbox,
/// neither the message nor the one smuggled behind it.
#[test]
fn bare_lf_in_data_is_refused_not_smuggled() {
    let site = Site::start(Options::default());
    let count = format!(
        r#"
import imaplib
m = imaplib.IMAP4("{PROXY}", 1143)
m.login("{}", "{}")
print("messages", int(m.select("INBOX")[1][0]))
"#,
        ANN.0, ANN.1
    );
    let before = site.python(&count);
    let script = format!(
        r#"
import socket
s = socket.create_connection(("{PROXY}", 25), timeout=10)
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline().decode()
        if line[3:4] != "-":
            return line.strip()
reply()
s.sendall(b"EHLO bad\x01name\r\n"); print("control helo", reply())
s.sendall(b"HELO two words\r\n"); print("spaced helo", reply())
s.sendall(b"MAIL FROM:<x@remote.test>\r\n"); print("no helo yet", reply())
s.sendall(b"EHLO client.test\r\n"); reply()
s.sendall(b"MAIL FROM:<x@remote.test>\r\n"); reply()
s.sendall(b"RCPT TO:<ann@mail.test>\r\n"); reply()
s.sendall(b"DATA\r\n"); print("data", reply())
s.sendall(b"Subject: first\r\n\r\nhello\r\n.\nMAIL FROM:<boss@mail.test>\r\nRCPT TO:<ann@mail.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nwire the money\r\n.\r\n")
print("end", reply())
s.sendall(b"QUIT\r\n"); reply()
"#
    );
    let out = site.python(&script);
    // A name with a control character or a space is no EHLO/HELO name: it
    // would reach the back-end in XCLIENT HELO= and in Received.
    assert!(out.contains("control helo 501 5.5.2"), "{out}");
    assert!(out.contains("spaced helo 501 5.5.2"), "{out}");
    assert!(out.contains("no helo yet 503"), "{out}");
    assert!(out.contains("data 354"), "{out}");
    assert!(out.contains("end 550 5.5.2"), "{out}");
    let after = site.python(&count);
    assert_eq!(before, after, "nothing delivered");
}
