//! fulmar-maild's IMAP extensions, each as an RFC transcript with
//! Python's imaplib: SORT and SORT=DISPLAY (RFC 5256, 5957),
//! THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256), CHILDREN
//! (RFC 3348), ESEARCH (RFC 4731).
mod support;

use support::{Site, line};

/// Four messages whose orders differ by every key.
const MESSAGES: &str = r#"
def msg(subject, sender, date, size):
    return (f"From: {sender}\r\nTo: ann@fulmar.test\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\n\r\n" + "x" * size + "\r\n").encode()
a = imaplib.IMAP4(MAIL, 143); a.login("ann@fulmar.test", "ann-pw")
for m in [
    msg("Re: Beta", "Bob <bob@x.test>", "Mon, 02 Nov 2026 10:00:00 +0000", 300),
    msg("alpha", "\"Ann\" <ann@x.test>", "Sun, 01 Nov 2026 10:00:00 +0000", 100),
    msg("[list] Fwd: beta", "Zoe <carl@x.test>", "Tue, 03 Nov 2026 10:00:00 +0000", 200),
    msg("Alpha (fwd)", "Dan <dan@x.test>", "Wed, 04 Nov 2026 10:00:00 +0100", 50),
]:
    a.append("INBOX", None, None, m)
a.select("INBOX")
"#;

#[test]
fn sort_orders_by_each_key_then_mailbox_order() {
    let site = Site::new();
    let out = site.python(
        "cl",
        &format!(
            "{MESSAGES}{}",
            r#"
print("caps", a.capabilities)
print("subject", a.sort("(SUBJECT)", "UTF-8", "ALL")[1])
print("newest", a.sort("(REVERSE DATE)", "UTF-8", "ALL")[1])
print("size", a.sort("(SIZE)", "US-ASCII", "ALL")[1])
print("from", a.sort("(FROM)", "UTF-8", "ALL")[1])
print("display", a.sort("(DISPLAYFROM)", "UTF-8", "ALL")[1])
print("two keys", a.sort("(SUBJECT REVERSE ARRIVAL)", "UTF-8", "ALL")[1])
print("searched", a.sort("(SUBJECT)", "UTF-8", "LARGER", "300")[1])
print("uid", a.uid("SORT", "(SIZE)", "UTF-8", "ALL")[1])
print("charset typ", a.sort("(SUBJECT)", "KOI8-R", "ALL")[0])
"#
        ),
    );
    let caps = line(&out, "caps");
    for cap in [
        "'SORT'",
        "'SORT=DISPLAY'",
        "'THREAD=ORDEREDSUBJECT'",
        "'CHILDREN'",
    ] {
        assert!(caps.contains(cap), "{caps}");
    }
    // Base subjects: alpha, alpha, beta, beta; ties in mailbox order.
    assert_eq!(line(&out, "subject"), "[b'2 4 1 3']", "{out}");
    // Dates in UTC: 4 (09:00 on the 4th), 3, 1, 2.
    assert_eq!(line(&out, "newest"), "[b'4 3 1 2']", "{out}");
    assert_eq!(line(&out, "size"), "[b'4 2 3 1']", "{out}");
    // Local parts: ann, bob, carl, dan.
    assert_eq!(line(&out, "from"), "[b'2 1 3 4']", "{out}");
    // Display names: Ann, Bob, Dan, Zoe.
    assert_eq!(line(&out, "display"), "[b'2 1 4 3']", "{out}");
    assert_eq!(line(&out, "two keys"), "[b'4 2 3 1']", "{out}");
    assert_eq!(line(&out, "searched"), "[b'1 3']", "{out}");
    assert_eq!(line(&out, "uid"), "[b'4 2 3 1']", "{out}");
    assert_eq!(line(&out, "charset typ"), "NO", "{out}");
}

#[test]
fn thread_orderedsubject_and_children() {
    let site = Site::new();
    let out = site.python(
        "cl",
        &format!(
            "{MESSAGES}{}",
            r#"
print("threads", a.thread("ORDEREDSUBJECT", "UTF-8", "ALL")[1])
print("uid threads", a.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "SUBJECT", "beta")[1])
try:
    a.thread("X-NONE", "UTF-8", "ALL")
except imaplib.IMAP4.error as e:
    print("unknown", str(e)[:40])
a.create("Work"); a.create("Work/2026"); a.create("parent/child")
print("list", sorted(l.decode() for l in a.list('""', "*")[1]))
print("levels", a.list('""', "%")[1])
"#
        ),
    );
    // alpha: 2 (1 Nov) then 4; beta: 1 (2 Nov) then 3; by first date.
    assert_eq!(line(&out, "threads"), "[b'(2 4)(1 3)']", "{out}");
    assert_eq!(line(&out, "uid threads"), "[b'(1 3)']", "{out}");
    assert!(line(&out, "unknown").contains("BAD"), "{out}");
    let list = line(&out, "list");
    for want in [
        r#"(\\HasChildren) "/" "Work""#,
        r#"(\\HasNoChildren) "/" "Work/2026""#,
        r#"(\\HasNoChildren) "/" "INBOX""#,
        r#"(\\HasNoChildren \\Trash) "/" "Trash""#,
    ] {
        assert!(list.contains(want), "want {want}: {list}");
    }
    assert!(
        line(&out, "levels").contains(r#"(\\Noselect \\HasChildren) "/" "parent""#),
        "{out}"
    );
}

/// THREAD=REFERENCES: a conversation by References, one answer known by
/// In-Reply-To only, answers to a message not in the mailbox, and a
/// reply without headers joined by its subject.
#[test]
fn thread_references_follows_the_conversation() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
def msg(subject, day, mid, refs="", irt=""):
    head = f"From: a@x.test\r\nSubject: {subject}\r\nDate: {day:02d} Nov 2026 10:00:00 +0000\r\n"
    head += f"Message-ID: <{mid}>\r\n"
    if refs: head += "References: " + " ".join(f"<{r}>" for r in refs) + "\r\n"
    if irt: head += f"In-Reply-To: <{irt}>\r\n"
    return (head + "\r\nbody\r\n").encode()
a = imaplib.IMAP4(MAIL, 143); a.login("ann@fulmar.test", "ann-pw")
for m in [
    msg("plan", 1, "p@x"),                              # 1
    msg("Re: plan", 2, "q@x", refs=["p@x"]),            # 2 answers 1
    msg("Re: plan", 4, "r@x", irt="q@x"),               # 3 answers 2
    msg("Re: plan", 3, "s@x", refs=["p@x"]),            # 4 answers 1
    msg("Re: lost", 6, "t@x", refs=["gone@x"]),         # 5, 6: answers to
    msg("Re: lost", 5, "u@x", refs=["gone@x"]),         #   a missing one
    msg("Re: news", 8, "v@x"),                          # 7: a reply, no refs
    msg("news", 7, "w@x"),                              # 8: its original
]:
    a.append("INBOX", None, None, m)
a.select("INBOX")
print("caps", a.capabilities)
print("threads", a.thread("REFERENCES", "UTF-8", "ALL")[1])
print("uid threads", a.uid("THREAD", "REFERENCES", "UTF-8", "SUBJECT", "plan")[1])
"#,
    );
    assert!(line(&out, "caps").contains("'THREAD=REFERENCES'"), "{out}");
    // By date: 1 (day 1), the lost pair (first child day 5), 8 (day 7).
    assert_eq!(
        line(&out, "threads"),
        "[b'(1 (2 3)(4))((6)(5))(8 7)']",
        "{out}"
    );
    assert_eq!(line(&out, "uid threads"), "[b'(1 (2 3)(4))']", "{out}");
}

/// ESEARCH: MIN, MAX, COUNT and ALL as asked, by number and by UID, the
/// empty result, SAVE answering nothing, an unknown option refused, and
/// plain SEARCH as before.
#[test]
fn esearch_answers_what_was_asked() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
a = imaplib.IMAP4(MAIL, 143); a.login("ann@fulmar.test", "ann-pw")
for i in range(6):
    a.append("INBOX", None, None, f"Subject: m{i}\r\n\r\nx\r\n".encode())
a.select("INBOX")
a.store("1", "+FLAGS", "\\Deleted"); a.expunge()
a.store("1,3,4", "+FLAGS", "\\Flagged")
def esearch(*args):
    try:
        a._simple_command(*args)
    except imaplib.IMAP4.error as e:
        return "refused " + str(e)[:12]
    found = a.untagged_responses.pop("ESEARCH", [b""])[0].decode()
    return found.split(") ", 1)[-1] if ") " in found else found
print("caps", a.capabilities)
print("numbers", esearch("SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "FLAGGED"))
print("uids", esearch("UID", "SEARCH", "RETURN", "()", "FLAGGED"))
print("count", esearch("SEARCH", "RETURN", "(COUNT)", "1:*"))
print("none", esearch("SEARCH", "RETURN", "(MIN COUNT)", "KEYWORD", "absent"))
print("save", repr(esearch("SEARCH", "RETURN", "(SAVE)", "ALL")))
print("unknown", esearch("SEARCH", "RETURN", "(PARTIAL 1:5)", "ALL"))
print("plain", a.search(None, "FLAGGED")[1])
"#,
    );
    assert!(line(&out, "caps").contains("'ESEARCH'"), "{out}");
    // After the expunge: UIDs 2..6 are numbers 1..5; flagged 1, 3, 4.
    assert_eq!(
        line(&out, "numbers"),
        "MIN 1 MAX 4 ALL 1,3:4 COUNT 3",
        "{out}"
    );
    assert_eq!(line(&out, "uids"), "UID ALL 2,4:5", "{out}");
    assert_eq!(line(&out, "count"), "COUNT 5", "{out}");
    // Nothing matched: only COUNT says so.
    assert_eq!(line(&out, "none"), "COUNT 0", "{out}");
    // SAVE alone (SEARCHRES) answers no ESEARCH; an unknown option is BAD.
    assert_eq!(line(&out, "save"), "''", "{out}");
    assert!(line(&out, "unknown").starts_with("refused"), "{out}");
    assert_eq!(line(&out, "plain"), "[b'1 3 4']", "{out}");
}

/// BINARY (RFC 3516): parts with their transfer encoding undone, NULs in a
/// literal8, BINARY.SIZE, partial fetches, `[UNKNOWN-CTE]`, and a message
/// with a NUL appended as a literal8.
#[test]
fn binary_fetches_decoded_parts_and_appends_literal8() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
import base64
blob = bytes(range(256))
msg = (b"Subject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
       b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
       + base64.encodebytes(blob).replace(b"\n", b"\r\n") +
       b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
       b"caf=E9 soft=\r\nbreak\r\n"
       b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
       b"--b--\r\n")
a = imaplib.IMAP4(MAIL, 143); a.login("ann@fulmar.test", "ann-pw")
a.append("INBOX", None, None, msg)
a.select("INBOX")
typ, data = a.fetch("1", "(BINARY.PEEK[1] BINARY.SIZE[1])")
print("base64", data[0][1] == blob, data[0][0][-16:], data[1])
typ, data = a.fetch("1", "(BINARY.PEEK[2])")
print("qp", data[0][1])
typ, data = a.fetch("1", "(BINARY.PEEK[1]<250.10>)")
print("partial", data[0][0][-22:], data[0][1] == blob[250:])
typ, data = a.fetch("1", "(FLAGS)")
print("unseen", data)
typ, data = a.fetch("1", "(BINARY.PEEK[3])")
print("unknown", typ, data)
# APPEND with a literal8: a NUL in the message, stored and given back.
s = socket.create_connection((MAIL, 143), timeout=5); f = s.makefile("rb"); f.readline()
body = b"Subject: nul\r\n\r\nbefore\x00after\r\n"
s.sendall(b"b1 LOGIN ann ann-pw\r\n"); f.readline()
s.sendall(b"b2 APPEND INBOX ~{%d+}\r\n" % len(body) + body + b"\r\n")
print("append8", f.readline().decode().strip()[:24])
s.sendall(b"b3 SELECT INBOX\r\n")
while not f.readline().startswith(b"b3 "):
    pass
s.sendall(b"b4 FETCH 2 (BINARY.PEEK[])\r\n")
head = f.readline()
got = f.read(len(body))
print("literal8", head.strip().decode(), got == body)
"#,
    );
    let base64 = line(&out, "base64");
    // 256 bytes with a NUL among them: a literal8.
    assert_eq!(
        base64, "True b'BINARY[1] ~{256}' b' BINARY.SIZE[1] 256)'",
        "{out}"
    );
    assert_eq!(line(&out, "qp"), r"b'caf\xe9 softbreak'", "{out}");
    assert_eq!(
        line(&out, "partial"),
        "b'1 (BINARY[1]<250> {6}' True",
        "{out}"
    );
    assert_eq!(line(&out, "unseen"), r"[b'1 (FLAGS (\\Recent))']", "{out}");
    let unknown = line(&out, "unknown");
    assert!(unknown.starts_with("NO [b'[UNKNOWN-CTE]"), "{out}");
    assert!(
        line(&out, "append8").starts_with("b2 OK [APPENDUID"),
        "{out}"
    );
    let literal8 = line(&out, "literal8");
    assert!(
        literal8.starts_with("* 2 FETCH (BINARY[] ~{") && literal8.ends_with("True"),
        "{out}"
    );
}
