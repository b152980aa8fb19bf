//! fulmar-maild's implicit-TLS listeners (RFC 8314): IMAPS, POP3S and
//! LMTP inside TLS from the first byte, what a proxy with `backend.tls`
//! speaks; a client that never shakes hands is dropped at the pre-login
//! deadline.
mod support;

use support::{Site, line};

#[test]
fn imaps_pop3s_and_lmtp_over_tls() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
# LMTP inside TLS: a delivery.
s = ctx.wrap_socket(socket.create_connection((MAIL, 2424), timeout=5))
f = s.makefile("rb")
print("lmtps", f.readline().decode().strip()[:3])
s.sendall(b"LHLO proxy.test\r\n")
while not f.readline().startswith(b"250 "):
    pass
s.sendall(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<ann@fulmar.test>\r\nDATA\r\n")
print("rcpt", [f.readline().decode().strip()[:3] for _ in range(3)])
s.sendall(b"Subject: over tls\r\n\r\nsealed\r\n.\r\nQUIT\r\n")
print("data", f.readline().decode().strip()[:3])
s.close()
m = imaplib.IMAP4_SSL(MAIL, 993, ssl_context=ctx)
print("capabilities", "STARTTLS" in m.capabilities, "AUTH=PLAIN" in m.capabilities)
m.login("ann@fulmar.test", "ann-pw")
typ, data = m.select("INBOX")
typ, body = m.fetch("1", "(BODY.PEEK[TEXT])")
print("imaps", data, body[0][1])
m.logout()
p = poplib.POP3_SSL(MAIL, 995, context=ctx)
print("capa", "STLS" in p.capa())
p.user("ann@fulmar.test"); p.pass_("ann-pw")
print("pop3s", p.stat()[0])
p.quit()
# A client that connects and never starts TLS: dropped at the deadline.
t = time.time()
q = socket.create_connection((MAIL, 993), timeout=30)
print("silent", q.recv(10), round(time.time() - t) <= 10)
"#,
    );
    assert_eq!(line(&out, "lmtps"), "220", "{out}");
    assert_eq!(line(&out, "rcpt"), "['250', '250', '354']", "{out}");
    assert_eq!(line(&out, "data"), "250", "{out}");
    assert_eq!(line(&out, "capabilities"), "False True", "{out}");
    assert_eq!(line(&out, "imaps"), "[b'1'] b'sealed\\r\\n'", "{out}");
    assert_eq!(line(&out, "capa"), "False", "{out}");
    assert_eq!(line(&out, "pop3s"), "1", "{out}");
    assert_eq!(line(&out, "silent"), "b'' True", "{out}");
}
