//! Ten IMAP sessions at once on one mailbox (APPEND with old dates and
//! keywords, FETCH, STORE, EXPUNGE, COPY, MOVE, IDLE, SEARCH), each
//! checking every answer against its own model of the mailbox; afterwards
//! every session's view must be what a fresh session sees. The script is
//! `stress/imap_stress.py`; `FULMAR_IMAP_STRESS` sets the number of
//! commands (default 20 000).
mod support;

use support::{MAIL, MAILD, Site, line};

#[test]
fn ten_sessions_on_one_mailbox_agree_with_the_store() {
    let commands: usize = std::env::var("FULMAR_IMAP_STRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let site = Site::new();
    // Unlimited: Archive only grows, and this is no quota test.
    let root = site.root.display().to_string();
    let quota = std::process::Command::new(MAILD)
        .args(["--root", &root, "quota", "ann@fulmar.test", "none"])
        .output()
        .unwrap();
    assert!(quota.status.success(), "{quota:?}");
    let script = format!(
        "MAIL = '{MAIL}'\nSESSIONS = 10\nCOMMANDS = {commands}\nSEED = 7\n{}",
        include_str!("stress/imap_stress.py")
    );
    let out = site.python("cl", &script);
    eprintln!("{out}");
    assert_eq!(line(&out, "failed"), "0 []", "{out}");
    assert_eq!(line(&out, "errors"), "0 []", "{out}");
    let done: usize = line(&out, "commands")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(done >= commands, "{out}");
}
