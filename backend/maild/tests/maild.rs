//! fulmar-maild against real clients in a lab namespace: Python's smtplib
//! LMTP and raw-socket transcripts, a volume lock held by a live process,
//! and `kill -9` during 1000 deliveries: every message that got its 250 is
//! there exactly once after the restart, with UIDs.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use fulmar_lab::{Lab, LabSpec};
use fulmar_maild::store::{INBOX, Store};

const MAIL: &str = "198.18.30.11";
const CLIENT: &str = "198.18.30.10";
/// The third is atext that a careless store would take for a path.
const ACCOUNTS: [&str; 3] = ["ann@fulmar.test", "bob@fulmar.test", "../x/*@fulmar.test"];
const MAILD: &str = env!("CARGO_BIN_EXE_fulmar-maild");

struct Instance {
    lab: Lab,
    root: PathBuf,
    starts: u32,
    pid: Option<u32>,
}

impl Instance {
    fn new(max_message_size: &str) -> Self {
        assert_eq!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() },
            0,
            "needs root (CI runs as root)"
        );
        let lab = Lab::build(&LabSpec::lan(&[
            ("mail", &format!("{MAIL}/24")),
            ("cl", &format!("{CLIENT}/24")),
        ]))
        .expect("lab");
        let root = lab.log_dir().join("volume");
        fs::create_dir_all(root.join("config")).unwrap();
        fs::write(
            root.join("config/mail.toml"),
            format!(
                "instance = \"mail1\"\nlmtp = \"{MAIL}:24\"\nmax_message_size = \"{max_message_size}\"\n"
            ),
        )
        .unwrap();
        for account in ACCOUNTS {
            let out = maild(&root, &["account-create", account]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self {
            lab,
            root,
            starts: 0,
            pid: None,
        }
    }

    /// Starts fulmar-maild with the next generation and waits until it serves.
    fn start(&mut self) {
        self.starts += 1;
        let name = format!("maild-{}", self.starts);
        let generation = self.starts.to_string();
        let root = self.root.display().to_string();
        let pid = self
            .lab
            .spawn(
                "mail",
                &name,
                MAILD,
                &[
                    "--root",
                    &root,
                    "run",
                    "--node",
                    "n1",
                    "--generation",
                    &generation,
                ],
            )
            .expect("spawn fulmar-maild");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.lab.log("mail", &name).contains("serving LMTP") {
            assert!(
                Instant::now() < deadline,
                "fulmar-maild did not start:\n{}",
                self.lab.log("mail", &name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.pid = Some(pid);
    }

    fn kill9(&mut self) {
        let pid = self.pid.take().expect("running");
        // SAFETY: kill(2) on the child we spawned.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        // Reaped by the lab; wait until the lock is free again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}/status")).exists()
            && !fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .contains("State:\tZ")
        {
            assert!(Instant::now() < deadline, "pid {pid} outlived SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn python(&self, script: &str) -> String {
        let log = format!("maild-{}", self.starts);
        self.lab.python("cl", script, || self.lab.log("mail", &log))
    }

    /// Message-ID → count over an account's INBOX, after a sync that must
    /// list every file with a unique UID.
    fn message_ids(&self, account: &str) -> HashMap<String, usize> {
        let store = Store::open(&self.root).unwrap();
        let mailbox = store.sync(account, INBOX).unwrap();
        let uids: Vec<u32> = mailbox.messages.iter().map(|m| m.uid).collect();
        assert!(
            uids.windows(2).all(|w| w[0] < w[1]),
            "UIDs unique and ordered"
        );
        let mut ids = HashMap::new();
        for m in mailbox.messages.iter() {
            let text = fs::read_to_string(&m.path).unwrap();
            let id = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: "))
                .unwrap_or_else(|| panic!("{} has no Message-ID:\n{text}", m.path.display()));
            *ids.entry(id.to_string()).or_default() += 1;
        }
        ids
    }
}

fn maild(root: &Path, args: &[&str]) -> Output {
    std::process::Command::new(MAILD)
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("fulmar-maild")
}

#[test]
fn lmtp_replies_per_recipient_and_refuses_bad_input() {
    let mut inst = Instance::new("64 KiB");
    inst.start();
    let out = inst.python(&format!(
        r#"
import smtplib, socket
l = smtplib.LMTP("{MAIL}", 24)
code, _ = l.ehlo("client.test")  # smtplib's LMTP sends LHLO
assert code == 250, code
assert l.has_extn("pipelining") and l.has_extn("enhancedstatuscodes")
assert int(l.esmtp_features["size"]) == 65536
body = "Message-ID: <one@test>\r\nSubject: hi\r\n\r\n.leading dot\r\n..two dots\r\nend\r\n"
refused = l.sendmail("sender@x.test", ["ann@fulmar.test", "nobody@fulmar.test", "bob@fulmar.test"], body)
print("refused", sorted(refused.items()))
l.quit()

def talk(lines):
    s = socket.create_connection(("{MAIL}", 24), timeout=5)
    f = s.makefile("rb")
    out = [f.readline().decode().strip()]
    for line in lines:
        # b"": no command, just the next reply (DATA answers once per recipient).
        s.sendall(line)
        reply = f.readline().decode().strip()
        while reply[3:4] == "-":
            reply = f.readline().decode().strip()
        out.append(reply)
    s.close()
    return out

print("helo", talk([b"HELO x\r\n"])[1])
print("order", talk([b"MAIL FROM:<a@x.test>\r\n"])[1])
print("long", talk([b"LHLO x\r\n", b"NOOP " + b"x" * 5000 + b"\r\n", b"NOOP\r\n"])[2:])
print("syntax", talk([b"LHLO x\r\n", b"MAIL FROM:a@x.test\r\n"])[2])
print("size", talk([b"LHLO x\r\n", b"MAIL FROM:<a@x.test> SIZE=999999\r\n"])[2])
big = b"X" * 100 + b"\r\n"
r = talk([b"LHLO x\r\n", b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<ann@fulmar.test>\r\n",
          b"RCPT TO:<bob@fulmar.test>\r\n", b"DATA\r\n", big * 1000 + b".\r\n", b"", b"RCPT TO:<ann@fulmar.test>\r\n"])
print("toobig", r[6:])
print("unknown", talk([b"LHLO x\r\n", b"FROB\r\n"])[2])
"#
    ));
    let line = |tag: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{tag} ")))
            .unwrap_or_else(|| panic!("no {tag} in:\n{out}"))
            .to_string()
    };
    assert_eq!(
        line("refused"),
        "[('nobody@fulmar.test', (550, b'5.1.1 <nobody@fulmar.test>: no such mailbox here'))]"
    );
    assert!(line("helo").starts_with("500 5.5.1"), "{out}");
    assert!(line("order").starts_with("503 5.5.1"), "{out}");
    assert!(
        line("long").starts_with("['500 5.5.2 line too long', '250"),
        "{out}"
    );
    assert!(line("syntax").starts_with("501 5.5.4"), "{out}");
    assert!(line("size").starts_with("552 5.3.4"), "{out}");
    // Both recipients refused after the data; the session then wants MAIL again.
    assert!(line("toobig").starts_with("['552 5.3.4"), "{out}");
    assert!(line("toobig").contains("', '552 5.3.4"), "{out}");
    assert!(line("toobig").contains("503 5.5.1 MAIL first"), "{out}");
    assert!(line("unknown").starts_with("500 5.5.2"), "{out}");

    // The accepted copies, dot-unstuffed, with Return-Path and Delivered-To.
    for account in ["ann@fulmar.test", "bob@fulmar.test"] {
        let store = Store::open(&inst.root).unwrap();
        let mailbox = store.sync(account, INBOX).unwrap();
        assert_eq!(mailbox.messages.len(), 1, "{account}");
        let text = fs::read_to_string(&mailbox.messages[0].path).unwrap();
        assert!(text.starts_with(&format!(
            "Return-Path: <sender@x.test>\r\nDelivered-To: {account}\r\n"
        )));
        assert!(
            text.ends_with("\r\n.leading dot\r\n..two dots\r\nend\r\n"),
            "{text:?}"
        );
    }

    // A second process on the same volume is refused, naming the owner.
    let out = maild(&inst.root, &["run", "--node", "n2", "--generation", "9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the volume is in use: fulmar-maild pid"),
        "{err}"
    );
    assert!(err.contains("on node n1 holds it (generation 1)"), "{err}");
    assert!(
        inst.root.join("log/mail1.log").exists(),
        "log named after the instance"
    );
}

#[test]
fn kill_9_during_a_thousand_deliveries_loses_and_duplicates_nothing() {
    let mut inst = Instance::new("1 MiB");
    inst.start();
    let acked = inst.root.join("acked.txt");
    let client = format!(
        r#"
import smtplib, time, sys
accounts = {accounts:?}
acked = open("{acked}", "w")
l = None
for i in range(1000):
    to = accounts[i % 3]
    body = "Message-ID: <%d@kill.test>\r\nSubject: %d\r\n\r\n" % (i, i) + ("line %d\r\n" % i) * 50
    deadline = time.time() + 20
    while l is None:
        try:
            l = smtplib.LMTP("{MAIL}", 24, timeout=10)
            l.ehlo("client.test")
        except OSError:
            l = None
            if time.time() > deadline:
                sys.exit("no LMTP service for 20 s")
            time.sleep(0.05)
    try:
        refused = l.sendmail("load@x.test", [to], body)
        if not refused:
            acked.write("%d\n" % i)
            acked.flush()
    except (smtplib.SMTPException, OSError):
        # Never resent: a message is acked once or not at all.
        l = None
acked.close()
"#,
        accounts = ACCOUNTS,
        acked = acked.display()
    );
    let lab_cl = inst
        .lab
        .command("cl", "python3")
        .arg("-c")
        .arg(&client)
        .spawn()
        .expect("client");
    let mut client_proc = lab_cl;
    let count = |p: &Path| {
        fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    for kill_at in [200, 500, 800] {
        let deadline = Instant::now() + Duration::from_secs(120);
        while count(&acked) < kill_at {
            if let Ok(Some(status)) = client_proc.try_wait() {
                panic!("the client exited ({status}) after {} acks", count(&acked));
            }
            assert!(
                Instant::now() < deadline,
                "deliveries stalled at {}",
                count(&acked)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        inst.kill9();
        std::thread::sleep(Duration::from_millis(200));
        inst.start();
    }
    let status = client_proc.wait().unwrap();
    assert!(status.success(), "the client failed");
    let acked_ids: Vec<String> = fs::read_to_string(&acked)
        .unwrap()
        .lines()
        .map(|i| format!("<{i}@kill.test>"))
        .collect();
    assert!(acked_ids.len() >= 900, "only {} acked", acked_ids.len());
    let mut all: HashMap<String, usize> = HashMap::new();
    for account in ACCOUNTS {
        for (id, n) in inst.message_ids(account) {
            *all.entry(id).or_default() += n;
        }
    }
    for id in &acked_ids {
        assert_eq!(
            all.get(id),
            Some(&1),
            "{id} acknowledged, stored {:?} times",
            all.get(id)
        );
    }
    assert!(all.values().all(|&n| n == 1), "a message stored twice");
    assert!(all.len() <= 1000);
    // The restarted instance saw who held the volume before.
    let log = fs::read_to_string(inst.root.join("log/mail1.log")).unwrap();
    assert!(log.contains("took over from node=n1 generation=3"), "{log}");
    eprintln!(
        "kill -9 ×3 during 1000 deliveries: {} acknowledged, {} stored, 0 lost, 0 duplicated",
        acked_ids.len(),
        all.len()
    );
}

/// RFC 5321 §2.3.8 on the second hop: only `CRLF.CRLF` ends DATA. A
/// bare-LF dot followed by commands stays part of the one message; no
/// second, smuggled message is delivered.
#[test]
fn only_crlf_dot_crlf_ends_data() {
    let mut inst = Instance::new("64 KiB");
    inst.start();
    let out = inst.python(&format!(
        r#"
import socket
s = socket.create_connection(("{MAIL}", 24), timeout=5)
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline().decode().strip()
        if line[3:4] != "-":
            return line
reply()
for cmd in [b"LHLO x\r\n", b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<ann@fulmar.test>\r\n"]:
    s.sendall(cmd); reply()
s.sendall(b"DATA\r\n"); print("data", reply())
s.sendall(b"Message-ID: <outer@test>\r\n\r\nhello\r\n.\nMAIL FROM:<boss@x.test>\r\nRCPT TO:<bob@fulmar.test>\r\nDATA\r\nMessage-ID: <smuggled@test>\r\n\r\nx\r\n.\r\n")
print("end", reply())
s.sendall(b"NOOP\r\n"); print("after", reply())
"#
    ));
    assert!(out.contains("data 354"), "{out}");
    assert!(out.contains("end 250 2.0.0 <ann@fulmar.test>"), "{out}");
    assert!(out.contains("after 250"), "{out}");
    assert_eq!(
        inst.message_ids("bob@fulmar.test").len(),
        0,
        "nothing smuggled"
    );
    let ann = inst.message_ids("ann@fulmar.test");
    assert_eq!(ann.get("<outer@test>"), Some(&1), "{ann:?}");
}
