//! fulmar-maild's IMAP as two clients see it at once: each defect found by
//! a compliance suite and a concurrent load, replayed with Python's
//! imaplib (and raw sockets where imaplib cannot say it) against a real
//! instance with a real slapd.
mod support;

use support::{Site, line};

const LOGIN: &str = r#"
def session(select="INBOX"):
    s = imaplib.IMAP4(MAIL, 143)
    s.login("ann@fulmar.test", "ann-pw")
    if select:
        s.select(select)
    return s
def put(s, n, box="INBOX"):
    for i in range(n):
        typ, _ = s.append(box, None, None, f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
        assert typ == "OK", typ
"#;

fn run(site: &Site, script: &str) -> String {
    site.python("cl", &format!("{LOGIN}{script}"))
}

/// A tmp file's mtime is the INTERNALDATE while it is written; another
/// session's sync took it for a crashed delivery's leftover (older than an
/// hour) and removed it before its rename.
#[test]
fn appends_with_old_dates_survive_other_sessions_syncing() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
import threading
a = session(); b = session()
stop = False
def poll():
    # STATUS syncs the mailbox each time, and a sync sweeps tmp/.
    while not stop:
        a.status("INBOX", "(MESSAGES)")
t = threading.Thread(target=poll); t.start()
bad = []
old = imaplib.Time2Internaldate(time.time() - 400 * 86400)
for i in range(150):
    typ, data = b.append("INBOX", None, old, f"Subject: old {i}\r\n\r\nx\r\n".encode())
    if typ != "OK":
        bad.append(data)
stop = True; t.join()
print("failed", len(bad), bad[:2])
typ, data = b.select("INBOX")
print("stored", data[0].decode())
typ, data = b.fetch("1", "(INTERNALDATE)")
print("date", data[0].decode())
print("want", time.strftime("-%Y ", time.gmtime(time.time() - 400 * 86400)))
"#,
    );
    assert_eq!(line(&out, "failed"), "0 []", "{out}");
    assert_eq!(line(&out, "stored"), "150");
    let want = out
        .lines()
        .find_map(|l| l.strip_prefix("want "))
        .expect("want");
    assert!(line(&out, "date").contains(want), "{out}");
}

/// An expunge another session made while this one was in a FETCH (which
/// may not tell it) is told at the next command that may.
#[test]
fn an_expunge_not_told_during_fetch_is_told_later() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
a = session(); put(a, 3); a.select("INBOX")
b = session()
a.store("1", "+FLAGS", r"(\Deleted)"); a.expunge()
typ, data = b.fetch("2", "(UID)")
print("fetch", data, b.untagged_responses.pop("EXPUNGE", None))
b.noop()
print("noop", b.untagged_responses.pop("EXPUNGE", None))
typ, data = b.fetch("1:*", "(UID)")
print("left", [d.decode() for d in data])
typ, data = b.store("1", "+FLAGS", r"(\Flagged)")
print("store", [d.decode() for d in data])
"#,
    );
    assert_eq!(line(&out, "fetch"), "[b'2 (UID 2)'] None", "{out}");
    assert_eq!(line(&out, "noop"), "[b'1']", "{out}");
    assert_eq!(line(&out, "left"), "['1 (UID 2)', '2 (UID 3)']", "{out}");
    assert!(line(&out, "store").starts_with("['1 (FLAGS"), "{out}");
}

/// RFC 3501 2.3.1.1: a name deleted and created again never shows the
/// UIDVALIDITY it had, however quickly.
#[test]
fn a_recreated_mailbox_never_reuses_its_uidvalidity() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
a = session(None); b = session(None)
seen = []
for i in range(5):
    a.create("Again")
    typ, data = b.status("Again", "(UIDVALIDITY)")
    seen.append(data[0].decode().split()[-1].rstrip(")"))
    a.delete("Again")
print("validities", len(seen), len(set(seen)))
"#,
    );
    assert_eq!(line(&out, "validities"), "5 5", "{out}");
}

/// RFC 2971 allows 30 fields of 1024 octets in an ID, sent before login.
#[test]
fn a_full_size_id_is_answered_before_login() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
fields = " ".join(f'"field-{i:02}-{"x" * 20}" "{"v" * 1024}"' for i in range(30))
r = raw([f"i1 ID ({fields})\r\n".encode(), b"i2 LOGOUT\r\n"])
print("id", [l[:24] for l in r[1:]])
"#,
    );
    assert_eq!(
        line(&out, "id"),
        "['* ID (\"name\" \"fulmar-mai', 'i1 OK ID completed', '* BYE Logging out', 'i2 OK LOGOUT completed']",
        "{out}"
    );
}

const NESTED: &str = r#"
inner = (b"Subject: inner\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/alternative; boundary=in\r\n\r\n"
         b"inner preamble\r\n--in\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
         b"--in--\r\ninner epilogue\r\n")
outer = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\n" + inner
"#;

/// `BODY[1.TEXT]` of a message/rfc822 part is its whole body: the inner
/// multipart's epilogue is part of it.
#[test]
fn the_text_of_a_nested_message_keeps_its_epilogue() {
    let site = Site::new();
    let out = run(
        &site,
        &format!(
            "{NESTED}{}",
            r#"
a = session(); a.append("INBOX", None, None, outer)
b = session()
typ, data = b.fetch("1", "(BODY.PEEK[1.TEXT])")
want = inner.split(b"\r\n\r\n", 1)[1]
print("text", data[0][1] == want, data[0][1][-40:])
typ, data = b.fetch("1", "(BODY.PEEK[TEXT])")
print("outer", data[0][1] == outer.split(b"\r\n\r\n", 1)[1])
"#
        ),
    );
    assert!(line(&out, "text").starts_with("True"), "{out}");
    assert_eq!(line(&out, "outer"), "True", "{out}");
}

/// RFC 3501 group syntax for empty groups and a group holding only a
/// comment; no address is invented.
#[test]
fn envelope_groups_are_shown_as_groups() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
a = session()
a.append("INBOX", None, None, b"From: a@x.test\r\nCc: group:;, group2: (foo) ;\r\nSubject: g\r\n\r\nx\r\n")
b = session()
typ, data = b.fetch("1", "(ENVELOPE)")
print("cc", data[0].decode())
"#,
    );
    assert!(
        line(&out, "cc").contains(
            "((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL"
        ),
        "{out}"
    );
}

/// MOVE into the selected mailbox itself: the copy appears (EXISTS) as the
/// original goes (EXPUNGE).
#[test]
fn a_move_into_the_selected_mailbox_tells_exists() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
a = session(); put(a, 2); a.select("INBOX"); a.untagged_responses.clear()
typ, data = a.uid("MOVE", "1", "INBOX")
print("move", typ, a.untagged_responses.pop("EXPUNGE", None), a.untagged_responses.pop("EXISTS", None))
typ, data = a.fetch("1:*", "(UID)")
print("now", [d.decode() for d in data])
"#,
    );
    assert_eq!(line(&out, "move"), "OK [b'1'] [b'2']", "{out}");
    assert_eq!(line(&out, "now"), "['1 (UID 2)', '2 (UID 3)']", "{out}");
}

/// RFC 3501 6.3.9: a level `%` stops at is shown `\Noselect` when only a
/// name below it is subscribed (LSUB), or exists (LIST).
#[test]
fn lsub_and_list_show_levels_above_what_matches() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
a = session(None)
a.create("parent/child/leaf"); a.subscribe("parent/child/leaf")
b = session(None)
print("lsub", b.lsub('""', "parent/%")[1])
print("list", b.list('""', "parent/%")[1])
print("top", b.lsub('""', "%")[1])
"#,
    );
    assert_eq!(
        line(&out, "lsub"),
        r#"[b'(\\Noselect) "/" "parent/child"']"#,
        "{out}"
    );
    assert_eq!(
        line(&out, "list"),
        r#"[b'(\\Noselect \\HasChildren) "/" "parent/child"']"#,
        "{out}"
    );
    assert!(
        line(&out, "top").contains(r#"b'(\\Noselect) "/" "parent"'"#),
        "{out}"
    );
}

/// A message stored and expunged by another session before this APPEND
/// looked it up was still appended: OK with its UID, never a NO.
#[test]
fn an_append_expunged_at_once_by_another_session_is_still_ok() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
import threading
a = session(); b = session()
stop = False
def purge():
    while not stop:
        a.noop()
        if a.select("INBOX")[1][0] != b"0":
            a.store("1:*", "+FLAGS", r"(\Deleted)"); a.expunge()
t = threading.Thread(target=purge); t.start()
bad = []
for i in range(200):
    typ, data = b.append("INBOX", None, None, f"Subject: gone {i}\r\n\r\nx\r\n".encode())
    if typ != "OK" or b"APPENDUID" not in data[0]:
        bad.append(data)
stop = True; t.join()
print("bad", len(bad), bad[:2])
"#,
    );
    assert_eq!(line(&out, "bad"), "0 []", "{out}");
}

/// A FETCH item the server does not implement is refused, not answered
/// with made-up data.
#[test]
fn unknown_fetch_items_are_refused() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
a = session(); put(a, 1)
r = raw([b"f1 LOGIN ann ann-pw\r\n", b"f2 SELECT INBOX\r\n", b"f3 FETCH 1 (UID BINARY.SIZE[1])\r\n", b"f4 LOGOUT\r\n"])
print("fetch", [l for l in r if l.startswith("f3") or "FETCH" in l])
"#,
    );
    let fetch = line(&out, "fetch");
    assert!(
        fetch.starts_with("['f3 BAD") || fetch.contains("BINARY.SIZE[1] "),
        "{out}"
    );
    assert!(!fetch.contains("X-UNSUPPORTED"), "{out}");
}

/// Keywords are kept per mailbox (Dovecot's maildir letters), shown to
/// every session with FLAGS first, searched, copied into a mailbox whose
/// letters differ, set on APPEND, and bounded at 26 with PERMANENTFLAGS
/// saying so.
#[test]
fn keywords_are_kept_told_searched_and_copied() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
a = session()
print("permanent", a.untagged_responses.get("PERMANENTFLAGS"))
put(a, 2)
b = session()
# Drafts learns "Other" first, so its letters differ from INBOX's.
a.append("Drafts", "(Other)", None, b"Subject: d\r\n\r\nx\r\n")
typ, data = a.store("1", "+FLAGS", "($Label1 Work)")
print("store", typ, data)
typ, data = b.fetch("1", "(FLAGS)")
print("b told", b.untagged_responses.pop("FLAGS", None), data)
print("search", b.search(None, "KEYWORD work")[1], b.search(None, "UNKEYWORD Work")[1])
b.copy("1", "Drafts")
a.append("INBOX", "(\\Seen Project)", None, b"Subject: p\r\n\r\nx\r\n")
typ, data = a.fetch("3", "(FLAGS)")
print("appended", data)
a.store("1", "-FLAGS", "(Work NeverSeen)")
typ, data = a.fetch("1", "(FLAGS)")
print("removed", data)
c = session("Drafts")
typ, data = c.fetch("1:*", "(FLAGS)")
print("copied", data)
many = " ".join(f"k{i}" for i in range(30))
typ, data = a.store("2", "+FLAGS", f"({many})")
print("limit", typ, data)
a.store("2", "+FLAGS", "(" + " ".join(f"k{i}" for i in range(23)) + ")")
print("full", a.untagged_responses.get("PERMANENTFLAGS"))
print("one more", a.store("2", "+FLAGS", "(k23)"))
"#,
    );
    assert!(line(&out, "permanent").contains(r"\\*"), "{out}");
    assert!(
        line(&out, "store").contains(r"FLAGS (\\Recent $Label1 Work)"),
        "{out}"
    );
    let told = line(&out, "b told");
    assert!(
        told.contains("$Label1 Work)") && told.contains("1 (FLAGS ($Label1 Work))"),
        "{out}"
    );
    assert_eq!(line(&out, "search"), "[b'1'] [b'2']", "{out}");
    assert!(
        line(&out, "appended").contains(r"FLAGS (\\Seen \\Recent Project)"),
        "{out}"
    );
    assert!(
        line(&out, "removed").contains(r"FLAGS (\\Recent $Label1)"),
        "{out}"
    );
    let copied = line(&out, "copied");
    assert!(
        copied.contains("Other))") && copied.contains("$Label1 Work))"),
        "{out}"
    );
    // All or nothing: a STORE over the limit defines none of its keywords.
    assert_eq!(
        line(&out, "limit"),
        "NO [b'[LIMIT] at most 26 keywords per mailbox']",
        "{out}"
    );
    let full = line(&out, "full");
    assert!(full.ends_with(r"k22)']"), "{out}");
    assert!(line(&out, "one more").starts_with("('NO'"), "{out}");
}

/// RFC 3501 2.3.2: a new message is \Recent in exactly one session (the
/// first to see it read-write); EXAMINE and STATUS look without claiming.
#[test]
fn recent_is_seen_by_one_session() {
    let site = Site::new();
    let out = run(
        &site,
        r#"
w = session(None); put(w, 2)
e = session(None); e.select("INBOX", readonly=True)
print("examine", e.untagged_responses.pop("RECENT", None))
print("status", w.status("INBOX", "(RECENT)")[1])
a = session(None); a.select("INBOX")
print("a", a.untagged_responses.pop("RECENT", None), a.search(None, "RECENT")[1], a.search(None, "NEW")[1])
typ, data = a.fetch("1", "(FLAGS)")
print("flags", data)
c = session(None); c.select("INBOX")
print("c", c.untagged_responses.pop("RECENT", None), c.search(None, "OLD")[1])
a.untagged_responses.clear(); c.untagged_responses.clear()
print("claimed", w.status("INBOX", "(RECENT)")[1])
put(w, 1)
print("unclaimed", w.status("INBOX", "(RECENT)")[1])
c.noop()
print("c noop", c.untagged_responses.pop("EXISTS", None), c.untagged_responses.pop("RECENT", None))
a.noop()
print("a noop", a.untagged_responses.pop("EXISTS", None), a.untagged_responses.pop("RECENT", None))
"#,
    );
    assert_eq!(line(&out, "examine"), "[b'2']", "{out}");
    assert_eq!(line(&out, "status"), "[b'\"INBOX\" (RECENT 2)']", "{out}");
    assert_eq!(line(&out, "a"), "[b'2'] [b'1 2'] [b'1 2']", "{out}");
    assert!(line(&out, "flags").contains(r"FLAGS (\\Recent)"), "{out}");
    assert_eq!(line(&out, "c"), "[b'0'] [b'1 2']", "{out}");
    assert_eq!(line(&out, "claimed"), "[b'\"INBOX\" (RECENT 0)']", "{out}");
    assert_eq!(
        line(&out, "unclaimed"),
        "[b'\"INBOX\" (RECENT 1)']",
        "{out}"
    );
    assert_eq!(line(&out, "c noop"), "[b'3'] [b'1']", "{out}");
    assert_eq!(line(&out, "a noop"), "[b'3'] [b'2']", "{out}");
}
