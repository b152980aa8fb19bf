//! fulmar-maild's `GET /metrics`, scraped while a session is open, after
//! deliveries and APPENDs whose outcomes are known: each count is exact.
mod support;

use support::{Site, line};

#[test]
fn metrics_count_sessions_deliveries_appends_and_quota() {
    let site = Site::new();
    let root = site.root.display().to_string();
    // Bob: 2 KiB of his own, so that one ~1.9 KB message puts him near it.
    site.lab
        .check(
            "mail",
            support::MAILD,
            &["--root", &root, "quota", "bob@fulmar.test", "2 KiB"],
        )
        .unwrap();
    let out = site.python(
        "cl",
        r##"
import urllib.request
def metrics():
    text = urllib.request.urlopen(f"http://{MAIL}:9423/metrics", timeout=5).read().decode()
    return {l.rsplit(" ", 1)[0]: l.rsplit(" ", 1)[1] for l in text.splitlines() if not l.startswith("#")}
l = smtplib.LMTP(MAIL, 24)
l.ehlo("client.test")
# smtplib's LMTP reads one reply after DATA; LMTP sends one per recipient.
def both(message):
    l.mail("x@elsewhere.test"); l.rcpt("ann@fulmar.test"); l.rcpt("bob@fulmar.test")
    l.putcmd("data"); l.getreply(); l.send(message + b"\r\n.\r\n")
    return l.getreply()[0], l.getreply()[0]
print("first", *both(b"Subject: a\r\n\r\n" + b"b" * 1700))
print("second", *both(b"Subject: b\r\n\r\nsecond"))
l.quit()
m = imaplib.IMAP4(MAIL, 143); m.login("ann", "ann-pw")
print("append", m.append("INBOX", None, None, b"Subject: c\r\n\r\nthird\r\n")[0])
print("append missing", m.append("Nowhere", None, None, b"Subject: d\r\n\r\nx\r\n")[0])
# The LMTP session's task ends a moment after QUIT: wait for it.
deadline = time.time() + 10
while metrics().get('fulmar_maild_sessions_active{protocol="lmtp"}') != "0" and time.time() < deadline:
    time.sleep(0.05)
x = metrics()
for k in ['fulmar_maild_sessions_total{protocol="lmtp"}', 'fulmar_maild_sessions_active{protocol="lmtp"}',
          'fulmar_maild_sessions_active{protocol="imap"}',
          'fulmar_maild_deliveries_total{protocol="lmtp",result="ok"}',
          'fulmar_maild_deliveries_total{protocol="lmtp",result="over_quota"}',
          'fulmar_maild_appends_total{result="ok"}', 'fulmar_maild_appends_total{result="failed"}',
          'fulmar_maild_store_seconds_count{op="deliver"}', 'fulmar_maild_store_seconds_count{op="append"}',
          'fulmar_maild_quota_accounts', 'fulmar_maild_quota_near_accounts',
          'fulmar_maild_instance_info{fulmar_instance="mail1",generation="1"}']:
    print("m", k, x.get(k))
m.logout()
"##,
    );
    assert_eq!(line(&out, "first"), "250 250", "{out}");
    assert_eq!(line(&out, "second"), "250 552", "{out}");
    assert_eq!(line(&out, "append"), "OK");
    assert_eq!(line(&out, "append missing"), "NO");
    let expect = [
        ("fulmar_maild_sessions_total{protocol=\"lmtp\"}", "1"),
        ("fulmar_maild_sessions_active{protocol=\"lmtp\"}", "0"),
        ("fulmar_maild_sessions_active{protocol=\"imap\"}", "1"),
        (
            "fulmar_maild_deliveries_total{protocol=\"lmtp\",result=\"ok\"}",
            "3",
        ),
        (
            "fulmar_maild_deliveries_total{protocol=\"lmtp\",result=\"over_quota\"}",
            "1",
        ),
        ("fulmar_maild_appends_total{result=\"ok\"}", "1"),
        ("fulmar_maild_appends_total{result=\"failed\"}", "1"),
        ("fulmar_maild_store_seconds_count{op=\"deliver\"}", "4"),
        ("fulmar_maild_store_seconds_count{op=\"append\"}", "2"),
        // ann (the instance's 1 MiB) and bob (his 2 KiB), bob near it.
        ("fulmar_maild_quota_accounts", "2"),
        ("fulmar_maild_quota_near_accounts", "1"),
        (
            "fulmar_maild_instance_info{fulmar_instance=\"mail1\",generation=\"1\"}",
            "1",
        ),
    ];
    for (key, value) in expect {
        assert_eq!(line(&out, &format!("m {key}")), value, "{key}\n{out}");
    }
}
