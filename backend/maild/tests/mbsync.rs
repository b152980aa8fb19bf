//! A real sync tool against fulmar-maild: mbsync (Debian's isync) syncs a
//! local maildir and the account's INBOX both ways, a few thousand
//! messages with flags; flag changes on either side travel at the next
//! run, and a run with nothing changed transfers nothing.
mod support;

use std::fs;

use support::{MAIL, Site, line};

/// Messages made on each side before the first run.
const LOCAL: usize = 1500;
const REMOTE: usize = 1000;

#[test]
fn mbsync_syncs_both_ways_and_then_has_nothing_to_do() {
    let site = Site::new();
    let home = site.lab.log_dir().join("mbsync");
    let maildir = home.join("Mail");
    fs::create_dir_all(&maildir).unwrap();
    let config = home.join("mbsyncrc");
    fs::write(
        &config,
        format!(
            "IMAPAccount fulmar\nHost {MAIL}\nPort 143\nUser ann@fulmar.test\nPass ann-pw\n\
             SSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore far\nAccount fulmar\n\n\
             MaildirStore near\nPath {m}/\nInbox {m}/INBOX\nSubFolders Verbatim\n\n\
             Channel box\nFar :far:\nNear :near:\nPatterns INBOX\nCreate Both\n\
             Sync All\nExpunge Both\nSyncState *\n",
            m = maildir.display()
        ),
    )
    .unwrap();
    // -Dn: the IMAP traffic (protocol only), to see what a run asked for.
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
        assert!(out.status.success(), "mbsync {run} failed:\n{text}");
        text
    };
    // The near side: a maildir mbsync has never seen, every fifth seen,
    // every seventh flagged.
    let inbox = maildir.join("INBOX");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(inbox.join(sub)).unwrap();
    }
    for i in 0..LOCAL {
        let mut flags = String::new();
        if i % 7 == 0 {
            flags.push('F');
        }
        if i % 5 == 0 {
            flags.push('S');
        }
        let name = format!("1700000000.L{i}.client:2,{flags}");
        let body = format!(
            "From: carl@elsewhere.test\r\nSubject: local {i}\r\nMessage-ID: <local{i}@x>\r\n\r\nbody {i}\r\n"
        );
        fs::write(inbox.join("cur").join(name), body).unwrap();
    }
    // The far side: appended by IMAP, every third answered.
    site.python(
        "cl",
        &format!(
            r#"
a = imaplib.IMAP4(MAIL, 143); a.login("ann@fulmar.test", "ann-pw")
for i in range({REMOTE}):
    flags = r"(\Answered)" if i % 3 == 0 else None
    typ, _ = a.append("INBOX", flags, None, f"Subject: remote {{i}}\r\nMessage-ID: <remote{{i}}@x>\r\n\r\nx {{i}}\r\n".encode())
    assert typ == "OK"
"#
        ),
    );

    let first = mbsync("1");
    let count = |flag: &str| {
        site.python(
            "cl",
            &format!(
                r#"
a = imaplib.IMAP4(MAIL, 143); a.login("ann@fulmar.test", "ann-pw")
typ, data = a.select("INBOX")
print("exists", data[0].decode())
print("matching", len(a.search(None, "{flag}")[1][0].split()))
"#
            ),
        )
    };
    let out = count("FLAGGED");
    assert_eq!(
        line(&out, "exists"),
        (LOCAL + REMOTE).to_string(),
        "{first}"
    );
    assert_eq!(
        line(&out, "matching"),
        LOCAL.div_ceil(7).to_string(),
        "{out}"
    );
    let local_files = |sub: &str| fs::read_dir(inbox.join(sub)).unwrap().count();
    assert_eq!(
        local_files("cur") + local_files("new"),
        LOCAL + REMOTE,
        "{first}"
    );

    // Flags changed on both sides travel at the next run.
    site.python(
        "cl",
        r#"
a = imaplib.IMAP4(MAIL, 143); a.login("ann@fulmar.test", "ann-pw"); a.select("INBOX")
a.store("1:100", "+FLAGS", r"(\Deleted)")
a.store("101:150", "+FLAGS", r"(\Flagged)")
"#,
    );
    // Answered here: 40 of the messages made here (none answered yet,
    // and none among the 100 the far side deletes).
    let mut flagged_here = 0;
    let ours = fs::read_dir(inbox.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("/1700000000.L"))
        .take(40);
    for path in ours {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (base, flags) = name.split_once(":2,").unwrap();
        {
            let mut letters: Vec<char> = format!("{flags}R").chars().collect();
            letters.sort_unstable();
            let renamed = path.with_file_name(format!(
                "{base}:2,{}",
                letters.into_iter().collect::<String>()
            ));
            fs::rename(&path, renamed).unwrap();
            flagged_here += 1;
        }
    }
    assert_eq!(flagged_here, 40);
    let second = mbsync("2");
    let out = count("ANSWERED");
    let total = LOCAL + REMOTE - 100;
    assert_eq!(line(&out, "exists"), total.to_string(), "{second}");
    // Answered far away: every third remote one but the 34 among the 100
    // deleted; here: the 40.
    let answered = REMOTE.div_ceil(3) - 100usize.div_ceil(3) + flagged_here;
    assert_eq!(
        line(&out, "matching"),
        answered.to_string(),
        "{out}\n{second}"
    );
    assert_eq!(
        local_files("cur") + local_files("new"),
        total,
        "the 100 expunged far away are gone here too:\n{second}"
    );

    // Nothing changed: nothing to transfer either way. The far side's
    // traffic has no APPEND, STORE, EXPUNGE or body FETCH, and both sides
    // are exactly as before the run.
    let far = || {
        site.python(
            "cl",
            r#"
a = imaplib.IMAP4(MAIL, 143); a.login("ann@fulmar.test", "ann-pw"); a.select("INBOX", readonly=True)
print("far", sorted(a.fetch("1:*", "(UID FLAGS)")[1]))
"#,
        )
    };
    let near = || {
        let mut names: Vec<String> = ["cur", "new"]
            .iter()
            .flat_map(|sub| fs::read_dir(inbox.join(sub)).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let (far_before, near_before) = (far(), near());
    let third = mbsync("3");
    let asked: Vec<&str> = third
        .lines()
        .filter(|l| l.starts_with(">>> "))
        .filter(|l| {
            ["APPEND", "STORE", "EXPUNGE", "BODY.PEEK[]", "BODY[]"]
                .iter()
                .any(|verb| l.contains(verb))
        })
        .collect();
    assert!(
        asked.is_empty(),
        "the third run changed things: {asked:?}\n{third}"
    );
    assert!(
        third
            .lines()
            .any(|l| l.starts_with(">>> ") && l.contains("LOGIN")),
        "no traffic shown (-Dn):\n{third}"
    );
    assert_eq!(far(), far_before, "the far side changed");
    assert_eq!(near(), near_before, "the near side changed");
    eprintln!(
        "{}",
        third
            .lines()
            .filter(|l| l.starts_with(">>> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
