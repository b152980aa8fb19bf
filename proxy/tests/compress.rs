//! COMPRESS=DEFLATE (RFC 4978) through the proxy to fulmar-maild: the
//! proxy answers it itself (the client's hop compressed both ways, the
//! back-end's plain, so the proxy still sees where commands end), in its
//! turn behind a pipelined command, with the client's compressed bytes
//! right behind the command; a message read and one appended arrive whole.
//! (A kick of such a session: `admin.rs`.)
mod support;

use support::*;

const CLIENT_PY: &str = include_str!("../../backend/maild/tests/support/deflate_client.py");

#[test]
fn compress_deflate_through_the_proxy_to_maild() {
    let site = Site::start(Options {
        maild_be1: true,
        ..Options::default()
    });
    let script = format!(
        "{CLIENT_PY}\nPROXY = '{PROXY}'\nANN = '{}'\n{}",
        ANN.1,
        r#"
p = Plain(PROXY, 1143)
caps = p.cmd("a", f"LOGIN ann {ANN}")[-1]
print("caps", "COMPRESS=DEFLATE" in caps)
body = b"Subject: big\r\n\r\n" + b"".join(b"line %d of a compressible message\r\n" % i for i in range(2000))
# SELECT pipelined before COMPRESS: its answer comes first, plain.
p.s.sendall(b"b SELECT INBOX\r\n")
answer, z = compress(p, "c", behind=b"d NOOP\r\n")
print("answer", answer)
assert z, answer
print("pipelined", z.until("d")[-1][:4])
z.send(b"e APPEND INBOX {%d+}\r\n%s\r\n" % (len(body), body))
print("append", z.until("e")[-1][:4])
got, done = z.fetch_body("f", 1)
print("body", got == body, done[:4])
print("ratio", round(z.plain / z.wire, 1))
print("again", z.cmd("g", "COMPRESS DEFLATE")[-1])
print("logout", z.cmd("h", "LOGOUT")[-1][:4])
"#
    );
    let out = site.python(&script);
    let log = || site.maild_log();
    assert_eq!(line(&out, "caps"), "True", "{out}\n{}", log());
    assert_eq!(line(&out, "answer"), "c OK DEFLATE active", "{out}");
    assert_eq!(line(&out, "pipelined"), "d OK", "{out}");
    assert_eq!(line(&out, "append"), "e OK", "{out}\n{}", log());
    assert_eq!(line(&out, "body"), "True f OK", "{out}");
    let ratio: f64 = line(&out, "ratio").parse().unwrap();
    assert!(ratio > 5.0, "a repetitive message compresses: {out}");
    assert_eq!(
        line(&out, "again"),
        "g NO [COMPRESSIONACTIVE] DEFLATE is on already",
        "{out}"
    );
    assert_eq!(line(&out, "logout"), "h OK", "{out}");
}

/// The value printed after `tag ` on its own line.
fn line<'a>(out: &'a str, tag: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(tag)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {tag:?} in:\n{out}"))
}
