//! UTF8=ACCEPT (RFC 6855): once enabled, mailbox names are UTF-8 both ways
//! (kept in modified UTF-7, so a session without it sees the same
//! mailboxes by their IMAP4rev1 names), quoted strings may carry UTF-8,
//! and APPEND takes the UTF8 data extension.
mod support;

use support::{Site, line};

#[test]
fn utf8_accept_names_and_append() {
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
    return s, f, cmd
s, f, old = session()
print("caps", "UTF8=ACCEPT" in old("a", "LOGIN ann@fulmar.test ann-pw")[-1])
old("b", "CREATE Entw&APw-rfe")
u_s, u_f, new = session()
new("a", "LOGIN ann@fulmar.test ann-pw")
print("enabled", new("b", "ENABLE UTF8=ACCEPT")[0])
print("listed", [l for l in new("c", 'LIST "" "Entw*"') if l.startswith("* LIST")])
print("create", new("d", 'd CREATE "日本語"\r\n'.encode())[-1])
print("seen old", [l for l in old("c", 'LIST "" "*"') if "&" in l])
msg = "Subject: ünïcödé\r\nFrom: José <josé@example.test>\r\n\r\nhällo\r\n".encode()
print("append", new("e", b'e APPEND "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" UTF8 (~{%d}\r\n%s)\r\n' % (len(msg), msg))[-1][:4])
print("status", [l for l in new("f", 'f STATUS "日本語" (MESSAGES)\r\n'.encode()) if l.startswith("* STATUS")])
print("select", new("g", b'g SELECT "Entw\xc3\xbcrfe"\r\n')[-1][:4])
new("h", b'h RENAME "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" "\xe5\x8f\xb0\xe5\x8c\x97"\r\n')
print("renamed old", [l for l in old("d", 'LIST "" "&U,BTFw-"') if l.startswith("* LIST")])
old("e", "SELECT &U,BTFw-")
s.sendall(b"f FETCH 1 BODY.PEEK[]\r\n")
head = f.readline().decode()
data = f.read(int(head[head.rindex("{") + 1:-3]))
print("stored", data == msg)
"#,
    );
    assert_eq!(line(&out, "caps"), "True", "{out}");
    assert_eq!(line(&out, "enabled"), "* ENABLED UTF8=ACCEPT", "{out}");
    assert_eq!(
        line(&out, "listed"),
        "['* LIST (\\\\HasNoChildren) \"/\" \"Entwürfe\"']",
        "{out}"
    );
    assert!(line(&out, "create").starts_with("d OK"), "{out}");
    assert!(line(&out, "seen old").contains("\"&ZeVnLIqe-\""), "{out}");
    assert_eq!(line(&out, "append"), "e OK", "{out}");
    assert_eq!(
        line(&out, "status"),
        "['* STATUS \"日本語\" (MESSAGES 1)']",
        "{out}"
    );
    assert_eq!(line(&out, "select"), "g OK", "{out}");
    assert!(line(&out, "renamed old").contains("\"&U,BTFw-\""), "{out}");
    assert_eq!(line(&out, "stored"), "True", "{out}");
}
