//! The directory dies (slapd killed, as its node would be) and mail keeps
//! flowing for the accounts that were using it: through the balancer's
//! VIP, ann, who logged in and got mail on every proxy before, still logs
//! in (the proxy and fulmar-maild both let in a password the directory
//! accepted lately) and still gets mail (routes from what the directory
//! said); a wrong password fails as a wrong password does, and bob, whom no
//! tier has seen, is told to come back later (`NO [UNAVAILABLE]`).
//! When slapd is back, bob logs in.
mod support;

use std::time::{Duration, Instant};

use fulmar_lab::{front::PROXY_ADDRS, topology};
use support::front;

#[test]
fn accounts_seen_lately_get_in_while_the_directory_is_down() {
    let (_work, mut front) = front("outage");
    // Before: ann on each proxy at its own address (through the VIP the
    // balancer picks one), a login and a delivery each.
    let warm = front.lab.python(
        "client",
        &format!(
            r#"
import imaplib, smtplib
for addr in {proxies:?}:
    m = imaplib.IMAP4(addr, 143); m.login("ann", "ann-secret"); m.logout()
    s = smtplib.SMTP(addr, 25, timeout=10)
    s.sendmail("x@remote.test", ["ann@mail.test"], b"Subject: before\r\n\r\nbefore\r\n"); s.quit()
print("warm")
"#,
            proxies = PROXY_ADDRS
        ),
        String::new,
    );
    assert_eq!(warm, "warm\n");

    front.stop_directory().expect("slapd killed");
    let during = front.lab.python(
        "client",
        &format!(
            r#"
import imaplib, smtplib
VIP = "{vip}"
def login(user, pw):
    m = imaplib.IMAP4(VIP, 143)
    try:
        m.login(user, pw)
    except imaplib.IMAP4.error as e:
        return "refused " + str(e)
    n = int(m.select("INBOX")[1][0]); m.logout()
    return f"in {{n}}"
ok = 0
for i in range(6):
    r = login("ann", "ann-secret")
    ok += r.startswith("in")
    s = smtplib.SMTP(VIP, 25, timeout=10)
    s.sendmail("x@remote.test", ["ann@mail.test"], f"Subject: during {{i}}\r\n\r\nduring\r\n".encode()); s.quit()
print("ann", ok, "of 6")
print("last", login("ann", "ann-secret"))
print("wrong", login("ann", "not-her-password"))
print("bob", login("bob", "bob-secret"))
"#,
            vip = topology::VIP4
        ),
        || front.lab.log("directory", "slapd"),
    );
    println!("{during}");
    assert!(during.contains("ann 6 of 6"), "{during}");
    // 3 before, 6 during (every SMTP answered 250, or sendmail raises).
    assert!(during.contains("last in 9"), "{during}");
    // Another password than the one accepted lately is a failed guess
    // (counted by the penalties); an account never seen cannot be checked.
    for (who, answer) in [("wrong", "AUTHENTICATIONFAILED"), ("bob", "UNAVAILABLE")] {
        let line = during
            .lines()
            .find(|l| l.starts_with(who))
            .unwrap_or_else(|| panic!("{during}"));
        assert!(line.contains("refused") && line.contains(answer), "{line}");
    }

    front.start_directory().expect("slapd back");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after = front.lab.python(
            "client",
            &format!(
                "import imaplib\nm = imaplib.IMAP4('{}', 143)\n\
                 try:\n    print(m.login('bob', 'bob-secret')[0])\n\
                 except imaplib.IMAP4.error as e:\n    print(e)\n",
                topology::VIP4
            ),
            String::new,
        );
        if after == "OK\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob still refused after slapd came back: {after}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
