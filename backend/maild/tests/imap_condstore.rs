//! CONDSTORE (RFC 7162 section 3) as two sessions on one mailbox see it:
//! ENABLE, HIGHESTMODSEQ on SELECT and in STATUS, MODSEQ in FETCH,
//! FETCH CHANGEDSINCE, STORE UNCHANGEDSINCE with MODIFIED, SEARCH MODSEQ,
//! the highest value growing on an expunge, QRESYNC refused until enabled.
mod support;

use support::{Site, line};

#[test]
fn condstore_follows_every_change_of_the_mailbox() {
    let site = Site::new();
    let out = site.python(
        "cl",
        r#"
import re
m = imaplib.IMAP4(MAIL, 143); m.login("ann@fulmar.test", "ann-pw")
for i in range(3):
    m.append("INBOX", None, None, f"Subject: m{i}\r\n\r\nx\r\n".encode())
print("caps", m.capabilities)
m.logout()

def modseq(l):
    return int(re.search(r"MODSEQ \(?(\d+)", l).group(1))

a, b = connect(), connect()
cmd(a, "LOGIN ann@fulmar.test ann-pw"); cmd(b, "LOGIN ann@fulmar.test ann-pw")
print("enable", cmd(a, "ENABLE CONDSTORE")[0])
h0 = int(re.search(r"HIGHESTMODSEQ (\d+)", " ".join(cmd(a, "SELECT INBOX"))).group(1))
flags = cmd(a, "FETCH 1:* (FLAGS)")
print("fetch has modseq", all("MODSEQ (" in l for l in flags[:-1]), len(flags) - 1)

# The other session, without CONDSTORE, flags message 2.
cmd(b, "SELECT INBOX")
print("silent without condstore", cmd(b, "STORE 2 +FLAGS.SILENT (\\Flagged)"))
changed = cmd(a, f"FETCH 1:* (FLAGS) (CHANGEDSINCE {h0})")
fetched = sorted({l.split()[1] for l in changed if l.startswith("* ") and " FETCH " in l})
m2 = max(modseq(l) for l in changed if l.startswith("* 2 FETCH"))
print("changedsince", fetched, m2 > h0)

# Conditional: message 2 changed after h0, so only 1 is stored.
stored = cmd(a, f"STORE 1:2 (UNCHANGEDSINCE {h0}) +FLAGS (\\Seen)")
print("modified", stored[-1])
one = [l for l in stored if l.startswith("* 1 FETCH")]
m1 = modseq(one[0])
print("stored one", "\\Seen" in one[0], m1 > m2)
print("search", cmd(a, f"SEARCH MODSEQ {m2}")[0], m1)
print("uid search none", cmd(a, f"UID SEARCH MODSEQ {m1 + 1}")[0])
status = cmd(b, "STATUS INBOX (HIGHESTMODSEQ MESSAGES)")[0]
print("status", status, m1)

# An expunge moves the highest value on; STATUS says so.
cmd(b, "STORE 3 +FLAGS.SILENT (\\Deleted)"); cmd(b, "EXPUNGE")
after = int(re.search(r"HIGHESTMODSEQ (\d+)", cmd(b, "STATUS INBOX (HIGHESTMODSEQ)")[0]).group(1))
print("after expunge", after > m1 + 1)
print("qresync", cmd(a, "SELECT INBOX (QRESYNC (1 1))")[-1])
"#,
    );
    assert!(line(&out, "caps").contains("'CONDSTORE'"), "{out}");
    assert_eq!(line(&out, "enable"), "* ENABLED CONDSTORE", "{out}");
    assert_eq!(line(&out, "fetch has modseq"), "True 3", "{out}");
    assert!(
        !line(&out, "silent without condstore").contains("FETCH"),
        "{out}"
    );
    // Only message 2 changed since h0; its MODSEQ is above h0.
    assert_eq!(line(&out, "changedsince"), "['2'] True", "{out}");
    assert!(line(&out, "modified").contains("OK [MODIFIED 2]"), "{out}");
    assert_eq!(line(&out, "stored one"), "True True", "{out}");
    // Messages 1 and 2 changed at or after m2; the highest is 1's.
    let search = line(&out, "search");
    let (answer, m1) = search.rsplit_once(' ').unwrap();
    assert_eq!(answer, format!("* SEARCH 1 2 (MODSEQ {m1})"), "{out}");
    assert_eq!(line(&out, "uid search none"), "* SEARCH", "{out}");
    let status = line(&out, "status");
    assert!(
        status.starts_with(&format!(
            "* STATUS \"INBOX\" (HIGHESTMODSEQ {m1} MESSAGES 3)"
        )) || status.starts_with(&format!("* STATUS INBOX (HIGHESTMODSEQ {m1} MESSAGES 3)")),
        "{out}"
    );
    assert_eq!(line(&out, "after expunge"), "True", "{out}");
    assert!(line(&out, "qresync").contains("BAD"), "{out}");
}
