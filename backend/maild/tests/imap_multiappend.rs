//! MULTIAPPEND (RFC 3502): several messages in one APPEND, each with its
//! own flags, keywords and date, given consecutive UIDs in one APPENDUID;
//! synchronising literals answered one by one; all or none stored when
//! the messages together do not fit the quota.
mod support;

use support::{Site, line};

#[test]
fn one_append_stores_several_messages_or_none() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
s = socket.create_connection((MAIL, 143), timeout=10)
f = s.makefile("rb"); f.readline()
def until(tag):
    lines = []
    while True:
        l = f.readline().decode(errors="replace").rstrip("\r\n"); lines.append(l)
        if l.startswith(tag + " "): return lines
def cmd(tag, text):
    s.sendall(f"{tag} {text}\r\n".encode()); return until(tag)
caps = cmd("a", "LOGIN ann@fulmar.test ann-pw")[-1]
print("caps", "MULTIAPPEND" in caps)
cmd("b", "CREATE Work")
m1, m2, m3 = (f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode() for i in range(3))
s.sendall(b'c APPEND Work (\\Seen $Label) "01-Jan-2020 10:00:00 +0000" {%d+}\r\n%s'
          b' (\\Flagged) {%d+}\r\n%s {%d+}\r\n%s\r\n' % (len(m1), m1, len(m2), m2, len(m3), m3))
print("append", until("c")[-1])
# Synchronising literals: the server asks for each one.
s.sendall(b"d APPEND Work {%d}\r\n" % len(m1))
print("go1", f.readline().decode()[:1])
s.sendall(m1 + b" {%d}\r\n" % len(m2))
print("go2", f.readline().decode()[:1])
s.sendall(m2 + b"\r\n")
print("sync", until("d")[-1])
cmd("e", "SELECT Work")
print("fetch", [l for l in cmd("f", "FETCH 1:3 (UID FLAGS INTERNALDATE)") if "FETCH" in l])
big = b"Subject: big\r\n\r\n" + b"x" * 530000 + b"\r\n"
s.sendall(b"g APPEND Work {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(big), big, len(big), big))
print("over", until("g")[-1])
print("status", [l for l in cmd("h", "STATUS Work (MESSAGES)") if "STATUS" in l][0])
print("nobox", cmd("i", "APPEND Nowhere {1+}\r\nx {1+}\r\ny")[-1])
"#,
    );
    assert_eq!(line(&out, "caps"), "True", "{out}");
    let append = line(&out, "append");
    assert!(
        append.starts_with("c OK [APPENDUID ") && append.ends_with(" 1:3] APPEND completed"),
        "{out}"
    );
    assert_eq!(line(&out, "go1"), "+", "{out}");
    assert_eq!(line(&out, "go2"), "+", "{out}");
    assert!(
        line(&out, "sync").ends_with(" 4:5] APPEND completed"),
        "{out}"
    );
    let fetch = line(&out, "fetch");
    for part in [
        "'* 1 FETCH (UID 1 FLAGS (\\\\Seen \\\\Recent $Label) INTERNALDATE \"01-Jan-2020 10:00:00 +0000\")'",
        "'* 2 FETCH (UID 2 FLAGS (\\\\Flagged \\\\Recent) INTERNALDATE ",
        "'* 3 FETCH (UID 3 FLAGS (\\\\Recent) INTERNALDATE ",
    ] {
        assert!(fetch.contains(part), "{part} not in {out}");
    }
    // Each fits, both do not: neither is stored.
    assert!(line(&out, "over").starts_with("g NO [OVERQUOTA]"), "{out}");
    assert_eq!(
        line(&out, "status"),
        "* STATUS \"Work\" (MESSAGES 5)",
        "{out}"
    );
    assert_eq!(
        line(&out, "nobox"),
        "i NO [TRYCREATE] No such mailbox",
        "{out}"
    );
}
