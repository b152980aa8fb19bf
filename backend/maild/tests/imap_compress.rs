//! COMPRESS=DEFLATE (RFC 4978): offered once logged in; after the OK both
//! directions are raw DEFLATE, including what the client pipelined behind
//! the command; a second COMPRESS is refused with COMPRESSIONACTIVE; a
//! damaged stream ends that session only.
mod support;

use support::{Site, line};

const CLIENT: &str = include_str!("support/deflate_client.py");

#[test]
fn compress_deflate_both_ways_after_login() {
    let site = Site::new();
    let script = format!(
        "{CLIENT}\n{}",
        r#"
p = Plain(MAIL, 143)
print("before", "COMPRESS" in p.greeting)
print("caps", "COMPRESS=DEFLATE" in p.cmd("a", "LOGIN ann@fulmar.test ann-pw")[-1])
body = b"Subject: big\r\n\r\n" + b"".join(b"line %d of a compressible message\r\n" % i for i in range(3000))
p.s.sendall(b"b APPEND INBOX {%d+}\r\n%s\r\n" % (len(body), body))
print("append", p.until("b")[-1][:4])
answer, z = compress(p, "c", behind=b"d NOOP\r\n")
print("answer", answer)
assert z, answer
print("pipelined", z.until("d")[-1])
print("select", z.cmd("e", "SELECT INBOX")[-1][:4])
got, done = z.fetch_body("f", 1)
print("body", got == body, done[:4])
print("ratio", round(z.plain / z.wire, 1))
print("again", z.cmd("g", "COMPRESS DEFLATE")[-1])
print("caps after", "COMPRESS=DEFLATE" in " ".join(z.cmd("h", "CAPABILITY")))
print("logout", z.cmd("i", "LOGOUT")[-1])

# Damage: the server ends that session, and serves the next.
q = Plain(MAIL, 143)
q.cmd("a", "LOGIN ann@fulmar.test ann-pw")
answer, z = compress(q, "b")
z.s.sendall(b"\xff" * 64)
try:
    while z.s.recv(65536):
        pass
    print("damaged", "closed")
except (ConnectionResetError, socket.timeout) as e:
    print("damaged", type(e).__name__)
r = Plain(MAIL, 143)
print("next", r.cmd("a", "LOGIN ann@fulmar.test ann-pw")[-1][:4])
"#
    );
    let out = site.python("cl", &script);
    assert_eq!(line(&out, "before"), "False", "not before login: {out}");
    assert_eq!(line(&out, "caps"), "True", "{out}");
    assert_eq!(line(&out, "append"), "b OK", "{out}");
    assert_eq!(line(&out, "answer"), "c OK DEFLATE active", "{out}");
    assert_eq!(line(&out, "pipelined"), "d OK Completed", "{out}");
    assert_eq!(line(&out, "select"), "e OK", "{out}");
    assert!(line(&out, "body").starts_with("True f OK"), "{out}");
    let ratio: f64 = line(&out, "ratio").parse().unwrap();
    assert!(ratio > 5.0, "a repetitive message compresses: {out}");
    assert_eq!(
        line(&out, "again"),
        "g NO [COMPRESSIONACTIVE] DEFLATE is on already",
        "{out}"
    );
    assert_eq!(line(&out, "caps after"), "False", "{out}");
    assert!(line(&out, "logout").starts_with("i OK"), "{out}");
    assert_eq!(line(&out, "damaged"), "closed", "{out}");
    assert_eq!(line(&out, "next"), "a OK", "{out}");
}
