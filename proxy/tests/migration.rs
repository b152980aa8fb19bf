//! A mailbox migrated from Dovecot into fulmar-maild through the proxy
//! with a real sync tool (mbsync, arrival dates kept): three folders of
//! old mail with every system flag; afterwards each message, its flags
//! and its date are compared exactly, and a second run moves nothing.
//! Keywords are seeded too but not compared: isync 1.4 does not carry
//! them (its protocol log shows APPEND with the system flags alone).
mod support;

use std::fs;

use support::{ANN, BE2, LEGACY, Options, PROXY, Site};

/// The account's mail on each side: per folder, (date, flags, message)
/// for every message, sorted; the folder names as the target spells them.
const SNAPSHOT: &str = r#"
import imaplib, re, time
def snapshot(host, user, password, tool_header=False):
    m = imaplib.IMAP4(host, PORT[host]); m.login(user, password)
    sep = m.list()[1][0].decode().split('"')[1]
    out = {}
    for line in m.list()[1]:
        name = line.decode().rsplit('"', 2)[-2] if line.decode().endswith('"') else line.decode().split()[-1]
        if name in ("Drafts", "Sent", "Trash", "Junk"):
            continue
        m.select(f'"{name}"', readonly=True)
        typ, data = m.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
        rows = []
        for part in data:
            if not isinstance(part, tuple):
                continue
            head = part[0].decode()
            # System flags: isync 1.4 carries no keywords (its APPEND
            # has only the system flags of a message with $Label1).
            flags = sorted(f for f in imaplib.ParseFlags(part[0])
                           if f.startswith(b"\\") and f != b"\\Recent")
            date = time.mktime(imaplib.Internaldate2tuple(part[0]))
            body = part[1]
            if tool_header:
                # mbsync puts an X-TUID header in each message it uploads
                # (to any server), to find it again: the one line it adds.
                body = re.sub(rb"X-TUID: [^\r\n]*\r\n", b"", body, count=1)
            rows.append((date, flags, body))
        out[name.replace(sep, "/")] = sorted(rows)
    m.logout()
    return out
"#;

#[test]
fn a_dovecot_mailbox_moves_into_maild_through_the_proxy_exactly() {
    let site = Site::start(Options {
        maild_be1: true,
        ..Options::default()
    });
    let seeded = site.python(&format!(
        r#"
import imaplib
m = imaplib.IMAP4("{BE2}", 143); m.login("{user}", "{password}")
sep = m.list()[1][0].decode().split('"')[1]
m.create("Archive"); m.create(f"Archive{{sep}}2019")
kinds = ["", "\\Seen", "\\Seen \\Flagged", "\\Answered \\Seen", "\\Draft", "\\Deleted \\Seen", "$Label1 \\Seen", "Work"]
months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
total = 0
for box, count in [("INBOX", 120), ("Archive", 60), (f"Archive{{sep}}2019", 40)]:
    for i in range(count):
        date = f'"{{1 + i % 28:02d}}-{{months[i % 12]}}-{{2003 + i % 17}} {{i % 24:02d}}:{{i % 60:02d}}:07 +0000"'
        body = (f"From: old{{i}}@legacy.test\r\nSubject: {{box}} {{i}}\r\n"
                f"Message-ID: <{{box}}.{{i}}@legacy.test>\r\n\r\n" + "line\r\n" * (i % 50)).encode()
        typ, _ = m.append(f'"{{box}}"', f"({{kinds[i % len(kinds)]}})", date, body)
        assert typ == "OK"
        total += 1
print("seeded", total)
"#,
        user = LEGACY.0,
        password = LEGACY.1,
    ));
    assert!(seeded.contains("seeded 220"), "{seeded}");

    let home = site.work.join("mbsync");
    fs::create_dir_all(home.join("state")).unwrap();
    let config = home.join("mbsyncrc");
    fs::write(
        &config,
        format!(
            "IMAPAccount old\nHost {BE2}\nPort 143\nUser {}\nPass {}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore old\nAccount old\n\n\
             IMAPAccount new\nHost {PROXY}\nPort 1143\nUser {}\nPass {}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore new\nAccount new\n\n\
             Channel move\nFar :old:\nNear :new:\nPatterns INBOX Archive*\nCreate Near\nSync Pull\n\
             CopyArrivalDate yes\nSyncState {}/\n",
            LEGACY.0,
            LEGACY.1,
            ANN.0,
            ANN.1,
            home.join("state").display()
        ),
    )
    .unwrap();
    // -Dn: the IMAP traffic, to see what a run sent.
    let mbsync = |run: &str| {
        let out = site
            .lab
            .exec(
                "cl",
                "mbsync",
                &["-c", &config.to_string_lossy(), "-a", "-Dn"],
            )
            .expect("mbsync runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "mbsync {run} failed:\n{text}\n{}",
            site.maild_log()
        );
        text
    };
    let first = mbsync("first");
    let compared = site.python(&format!(
        "{SNAPSHOT}\nPORT = {{'{BE2}': 143, '{PROXY}': 1143}}\n\
         old = snapshot('{BE2}', '{}', '{}')\n\
         new = snapshot('{PROXY}', '{}', '{}', tool_header=True)\n\
         print('folders', sorted(old), sorted(new))\n\
         print('counts', [len(old[f]) for f in sorted(old)])\n\
         print('differ', [f for f in old if old[f] != new.get(f)])\n\
         for f in old:\n\
         \x20   bad = [(a[0], a[1], b[0], b[1], a[2] == b[2]) for a, b in zip(old[f], new.get(f, [])) if a != b]\n\
         \x20   print('first', f, len(bad), bad[:3])\n",
        LEGACY.0, LEGACY.1, ANN.0, ANN.1
    ));
    assert!(
        compared.contains(
            "folders ['Archive', 'Archive/2019', 'INBOX'] ['Archive', 'Archive/2019', 'INBOX']"
        ),
        "{compared}\n{first}"
    );
    assert!(compared.contains("counts [60, 40, 120]"), "{compared}");
    assert!(compared.contains("differ []"), "{compared}\n{first}");
    // Nothing new on either side: the second run writes nothing.
    let second = mbsync("second");
    let writes: Vec<&str> = second
        .lines()
        .filter(|l| l.contains(" APPEND ") || l.contains(" STORE "))
        .collect();
    assert!(first.contains(" APPEND "), "{first}");
    assert!(writes.is_empty(), "{writes:?}");
}
