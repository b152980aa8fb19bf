//! QRESYNC (RFC 7162 section 3.2) as a client that went away and came
//! back sees it, with a second session changing the mailbox meanwhile:
//! SELECT (QRESYNC ...) names what vanished and what changed since, UID
//! FETCH (CHANGEDSINCE n VANISHED) likewise, VANISHED replaces EXPUNGE,
//! EXPUNGE's OK carries the new HIGHESTMODSEQ, [CLOSED] on a reselect,
//! and the misuses get BAD.
mod support;

use support::{Site, line};

#[test]
fn a_returning_client_learns_exactly_what_vanished_and_changed() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
import re
m = imaplib.IMAP4(MAIL, 143); m.login("ann@fulmar.test", "ann-pw")
for i in range(5):
    m.append("INBOX", None, None, f"Subject: m{i}\r\n\r\nx\r\n".encode())
print("caps", "QRESYNC" in m.capabilities)
m.logout()

def num(lines, code):
    return int(re.search(code + r" (\d+)", " ".join(lines)).group(1))
def show(lines):
    # FETCH lines by UID, MODSEQ values left out (they follow the clock).
    return [re.sub(r"^\* \d+ FETCH \(UID (\d+) FLAGS (\(.*?\)) MODSEQ \(\d+\)\)$", r"uid \1 \2", l)
            for l in lines]

a, b = connect(), connect()
cmd(a, "LOGIN ann@fulmar.test ann-pw"); cmd(b, "LOGIN ann@fulmar.test ann-pw")
print("enable", cmd(a, "ENABLE QRESYNC")[0])
sel = cmd(a, "SELECT INBOX")
uv, h0 = num(sel, "UIDVALIDITY"), num(sel, "HIGHESTMODSEQ")
cmd(a, "LOGOUT")

# While ann is away: 2 flagged, 3 and 4 expunged, a sixth appended
# (\Recent for b, which has the mailbox open).
cmd(b, "SELECT INBOX")
cmd(b, "STORE 2 +FLAGS.SILENT (\\Flagged)")
cmd(b, "STORE 3:4 +FLAGS.SILENT (\\Deleted)"); cmd(b, "EXPUNGE")
cmd(b, "APPEND INBOX {13+}\r\nSubject: m5\r\n")

a = connect(); cmd(a, "LOGIN ann@fulmar.test ann-pw")
print("unenabled", cmd(a, f"SELECT INBOX (QRESYNC ({uv} {h0}))")[-1])
cmd(a, "ENABLE QRESYNC")
back = cmd(a, f"SELECT INBOX (QRESYNC ({uv} {h0}))")
tail = back[back.index(next(l for l in back if "HIGHESTMODSEQ" in l)) + 1:]
print("resync", show(tail))
print("known", show(cmd(a, f"EXAMINE INBOX (QRESYNC ({uv} {h0} 1:2))")))
print("other validity", [l for l in cmd(a, f"SELECT INBOX (QRESYNC ({uv + 1} {h0}))")
                         if "VANISHED" in l or "FETCH" in l])

# Selected with QRESYNC on: another session's expunge is a VANISHED.
cmd(b, "UID STORE 5 +FLAGS.SILENT (\\Deleted)"); cmd(b, "EXPUNGE")
print("noop", cmd(a, "NOOP"))
print("uid fetch", show(cmd(a, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)")))
print("uid fetch range", cmd(a, f"UID FETCH 4:9 (FLAGS) (CHANGEDSINCE {h0} VANISHED)")[0])

# An expunge that cannot be told during FETCH: HIGHESTMODSEQ below it.
before = num(cmd(a, "NOOP") + cmd(b, "STATUS INBOX (HIGHESTMODSEQ)"), "HIGHESTMODSEQ")
cmd(b, "UID STORE 1 +FLAGS.SILENT (\\Deleted)"); cmd(b, "EXPUNGE")
held = cmd(a, "FETCH 1 (FLAGS)")
print("held", [l for l in held if "HIGHESTMODSEQ" in l] == [f"* OK [HIGHESTMODSEQ {before}] Expunges are told at the next command that may"])
print("then", cmd(a, "NOOP")[0])

# Its own expunge: VANISHED, and the tagged OK says the new highest.
cmd(a, "UID STORE 2 +FLAGS.SILENT (\\Deleted)")
done = cmd(a, "EXPUNGE")
after = num(cmd(b, "STATUS INBOX (HIGHESTMODSEQ)"), "HIGHESTMODSEQ")
print("expunge", done[0], done[1] == f"OK [HIGHESTMODSEQ {after}] EXPUNGE completed", after > before)

print("not by number", cmd(a, f"FETCH 1 (FLAGS) (CHANGEDSINCE {h0} VANISHED)")[-1][:3])
print("not alone", cmd(a, "UID FETCH 1:* (FLAGS) (VANISHED)")[-1][:3])
print("closed", cmd(a, "EXAMINE INBOX")[0])
c = connect(); cmd(c, "LOGIN ann@fulmar.test ann-pw"); cmd(c, "SELECT INBOX")
print("not enabled", cmd(c, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)")[-1][:3])
print("expunge without", cmd(c, "EXPUNGE")[-1])
"#,
    );
    assert_eq!(line(&out, "caps"), "True", "{out}");
    assert_eq!(line(&out, "enable"), "* ENABLED QRESYNC", "{out}");
    assert!(line(&out, "unenabled").starts_with("BAD"), "{out}");
    // What vanished first, then what changed (2 flagged, 6 new), then OK.
    assert_eq!(
        line(&out, "resync"),
        "['* VANISHED (EARLIER) 3:4', 'uid 2 (\\\\Flagged)', 'uid 6 ()', \
         'OK [READ-WRITE] SELECT completed']",
        "{out}"
    );
    let known = line(&out, "known");
    assert!(
        known.starts_with("['* OK [CLOSED] Previous mailbox closed'")
            && !known.contains("VANISHED"),
        "{out}"
    );
    assert!(known.contains("'uid 2 (\\\\Flagged)', 'uid 6 ()'"), "{out}");
    assert_eq!(line(&out, "other validity"), "[]", "{out}");
    assert_eq!(
        line(&out, "noop"),
        "['* VANISHED 5', 'OK Completed']",
        "{out}"
    );
    assert_eq!(
        line(&out, "uid fetch"),
        "['* VANISHED (EARLIER) 3:5', 'uid 2 (\\\\Flagged)', 'uid 6 ()', 'OK FETCH completed']",
        "{out}"
    );
    assert_eq!(
        line(&out, "uid fetch range"),
        "* VANISHED (EARLIER) 4:5",
        "{out}"
    );
    assert_eq!(line(&out, "held"), "True", "{out}");
    assert_eq!(line(&out, "then"), "* VANISHED 1", "{out}");
    assert_eq!(line(&out, "expunge"), "* VANISHED 2 True True", "{out}");
    assert_eq!(line(&out, "not by number"), "BAD", "{out}");
    assert_eq!(line(&out, "not alone"), "BAD", "{out}");
    assert_eq!(
        line(&out, "closed"),
        "* OK [CLOSED] Previous mailbox closed",
        "{out}"
    );
    assert_eq!(line(&out, "not enabled"), "BAD", "{out}");
    assert_eq!(
        line(&out, "expunge without"),
        "OK EXPUNGE completed",
        "{out}"
    );
}
