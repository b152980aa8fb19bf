//! CATENATE (RFC 4469): an APPEND built from literals and IMAP URLs
//! (RFC 5092) of the account's own messages and parts: absolute, relative
//! to the selected mailbox, with `imap://user@host`, with a section and a
//! partial range; within a MULTIAPPEND; and refused whole, with BADURL and
//! nothing stored, for a URL naming nothing (no such UID, a stale
//! UIDVALIDITY, another user, a section the message lacks).
mod support;

use support::{Site, line};

#[test]
fn catenate_builds_messages_from_text_and_urls() {
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
    s.sendall(text if isinstance(text, bytes) else f"{tag} {text}\r\n".encode()); return until(tag)
def body(tag, uid, box="Drafts"):
    cmd("s" + tag, f"SELECT {box}")
    s.sendall(f"{tag} UID FETCH {uid} BODY.PEEK[]\r\n".encode())
    head = f.readline().decode()
    data = f.read(int(head[head.rindex("{") + 1:-3]))
    until(tag)
    return data
def uid_of(answer):
    return answer.split("APPENDUID ")[1].split("]")[0].split()[1]
print("caps", "CATENATE" in cmd("a", "LOGIN ann@fulmar.test ann-pw")[-1])
original = (b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n")
ok = cmd("b", b"b APPEND INBOX {%d+}\r\n%s\r\n" % (len(original), original))[-1]
uid, validity = uid_of(ok), ok.split("APPENDUID ")[1].split()[0]
head = b"Subject: forwarded\r\n\r\n"
tail = b"\r\n-- \r\nann\r\n"
ok = cmd("c", b'c APPEND Drafts (\\Seen) CATENATE (TEXT {%d+}\r\n%s URL "/INBOX;UIDVALIDITY=%s/;UID=%s/;SECTION=2" TEXT {%d+}\r\n%s)\r\n'
         % (len(head), head, validity.encode(), uid.encode(), len(tail), tail))[-1]
print("append", ok[:16])
print("built", body("d", uid_of(ok)) == head + b"second part" + tail)
# Relative to the selected mailbox, a full imap:// URL, a partial range.
cmd("e", "SELECT INBOX")
ok = cmd("f", b"f APPEND Drafts CATENATE (URL ;UID=%s URL imap://ann%%40fulmar.test@mail1/INBOX/;UID=%s/;SECTION=1/;PARTIAL=0.5)\r\n" % (uid.encode(), uid.encode()))[-1]
print("relative", body("g", uid_of(ok)) == original + b"first")
# MULTIAPPEND with a CATENATE message among whole ones.
ok = cmd("h", b"h APPEND Drafts CATENATE (URL /INBOX/;UID=%s) (\\Flagged) {3+}\r\nabc\r\n" % uid.encode())[-1]
print("multi", ok.split("APPENDUID ")[1].split("]")[0].split()[1].count(":"))
before = [l for l in cmd("i", "STATUS Drafts (MESSAGES)") if "STATUS" in l][0]
for tag, url in [("j", b"/INBOX/;UID=999"), ("k", b"/INBOX;UIDVALIDITY=1/;UID=" + uid.encode()),
                 ("l", b"imap://bob%40fulmar.test@mail1/INBOX/;UID=" + uid.encode()),
                 ("m", b"/INBOX/;UID=" + uid.encode() + b"/;SECTION=7")]:
    print("bad", tag, cmd(tag, b"%s APPEND Drafts CATENATE (TEXT {1+}\r\nx URL \"%s\")\r\n" % (tag.encode(), url))[-1])
after = [l for l in cmd("n", "STATUS Drafts (MESSAGES)") if "STATUS" in l][0]
print("unchanged", before == after, after)
"#,
    );
    assert_eq!(line(&out, "caps"), "True", "{out}");
    assert_eq!(line(&out, "append"), "c OK [APPENDUID ", "{out}");
    assert_eq!(line(&out, "built"), "True", "{out}");
    assert_eq!(line(&out, "relative"), "True", "{out}");
    assert_eq!(line(&out, "multi"), "1", "two UIDs, one range: {out}");
    let bad: Vec<&str> = out.lines().filter(|l| l.starts_with("bad ")).collect();
    assert_eq!(bad.len(), 4, "{out}");
    for l in bad {
        assert!(l.contains(" NO [BADURL "), "{l}\n{out}");
    }
    assert!(line(&out, "unchanged").starts_with("True"), "{out}");
}
