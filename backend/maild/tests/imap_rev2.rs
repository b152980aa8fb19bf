//! IMAP4rev2 (RFC 9051) once enabled, beside an IMAP4rev1 session on the
//! same mailbox: no \Recent and no RECENT or UNSEEN, SELECT tells the
//! mailbox's LIST, SEARCH is answered by ESEARCH, STATUS has DELETED and
//! SIZE, names are UTF-8; the rev1 session keeps its own answers.
mod support;

use support::{Site, line};

#[test]
fn imap4rev2_once_enabled() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
def session():
    s = socket.create_connection((MAIL, 143), timeout=10)
    f = s.makefile("rb"); f.readline()
    def cmd(tag, text):
        s.sendall(text if isinstance(text, bytes) else f"{tag} {text}\r\n".encode())
        lines = []
        while True:
            l = f.readline().decode("utf-8", errors="replace").rstrip("\r\n"); lines.append(l)
            if l.startswith(tag + " "): return lines
    return cmd
v2 = session()
print("caps", "IMAP4rev2" in v2("a", "LOGIN ann@fulmar.test ann-pw")[-1])
print("enabled", v2("b", "ENABLE IMAP4rev2")[0])
for i, flags in enumerate(["(\\Deleted)", "()"]):
    m = f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode()
    v2("c", b"c APPEND INBOX %s {%d+}\r\n%s\r\n" % (flags.encode(), len(m), m))
selected = v2("d", "SELECT INBOX")
print("select", [l for l in selected if "RECENT" in l or "UNSEEN" in l or l.startswith("* LIST")])
print("flags", [l for l in v2("e", "FETCH 1:* FLAGS") if "FETCH" in l])
print("search", [l for l in v2("f", "SEARCH ALL") if l.startswith("*")])
print("uid search", [l for l in v2("g", "UID SEARCH DELETED") if l.startswith("*")])
print("status", [l for l in v2("h", "STATUS INBOX (MESSAGES DELETED SIZE)") if l.startswith("*")])
print("create", v2("i", 'i CREATE "Entwürfe"\r\n'.encode())[-1][:4])
v1 = session()
v1("a", "LOGIN ann@fulmar.test ann-pw")
v1("b", "SELECT INBOX")
print("v1 search", [l for l in v1("c", "SEARCH ALL") if l.startswith("*")])
print("v1 list", [l for l in v1("d", 'LIST "" "Entw*"') if l.startswith("*")])
"#,
    );
    assert_eq!(line(&out, "caps"), "True", "{out}");
    assert_eq!(line(&out, "enabled"), "* ENABLED IMAP4rev2", "{out}");
    assert_eq!(
        line(&out, "select"),
        "['* LIST () \"/\" \"INBOX\"']",
        "no RECENT, no UNSEEN: {out}"
    );
    assert!(!line(&out, "flags").contains("Recent"), "{out}");
    assert_eq!(
        line(&out, "search"),
        "['* ESEARCH (TAG \"f\") ALL 1:2']",
        "{out}"
    );
    assert_eq!(
        line(&out, "uid search"),
        "['* ESEARCH (TAG \"g\") UID ALL 1']",
        "{out}"
    );
    let status = line(&out, "status");
    assert!(
        status.starts_with("['* STATUS \"INBOX\" (MESSAGES 2 DELETED 1 SIZE "),
        "{out}"
    );
    assert_eq!(line(&out, "create"), "i OK", "{out}");
    assert_eq!(line(&out, "v1 search"), "['* SEARCH 1 2']", "{out}");
    assert!(line(&out, "v1 list").contains("\"Entw&APw-rfe\""), "{out}");
}
