//! Power cuts under fulmar-maild: a client delivers by LMTP and APPENDs by
//! IMAP without pause while the instance's volume (ext4 on a loop device,
//! as under fulmar-noded) loses power at random acknowledgement points:
//! FS_IOC_SHUTDOWN without flushing the journal (from that instant nothing
//! more reaches the disk; what was not made durable is gone, as after a
//! real cut), then kill -9 of the service, then a remount (journal replay)
//! and a restart. kill -9 alone proves nothing about durability: the page
//! cache survives it. Afterwards every acknowledged message is there once
//! and whole, UIDs are unique, never reassigned, and UIDVALIDITY never
//! changed (a UID list lost to a cut would renumber the mailbox).
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use fulmar_lab::{Lab, LabSpec};
use fulmar_maild::store::{INBOX, Store};

const MAIL: &str = "198.18.31.11";
const CLIENT: &str = "198.18.31.10";
const ACCOUNTS: [&str; 2] = ["ann@fulmar.test", "bob@fulmar.test"];
const MAILD: &str = env!("CARGO_BIN_EXE_fulmar-maild");
/// `FS_IOC_SHUTDOWN` (_IOR('X', 125, u32)) and its no-journal-flush mode.
const FS_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
const SHUTDOWN_NOLOGFLUSH: u32 = 2;

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An ext4 image attached and mounted; detached on drop.
struct Volume {
    image: PathBuf,
    mnt: PathBuf,
    device: Option<String>,
}

impl Volume {
    fn new(dir: &Path) -> Volume {
        let image = dir.join("disk.img");
        let mnt = dir.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        fs::File::create(&image)
            .and_then(|f| f.set_len(128 << 20))
            .unwrap();
        run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()]);
        let mut v = Volume {
            image,
            mnt,
            device: None,
        };
        v.mount();
        v
    }

    fn mount(&mut self) {
        let device = run("losetup", &["-f", "--show", &self.image.to_string_lossy()]);
        run(
            "mount",
            &["-o", "noatime", &device, &self.mnt.to_string_lossy()],
        );
        self.device = Some(device);
    }

    /// The cut: from here on nothing of this mount reaches the disk.
    fn power_off(&self) {
        let dir = fs::File::open(&self.mnt).unwrap();
        let flags = SHUTDOWN_NOLOGFLUSH;
        // SAFETY: the ioctl reads one u32 from a valid pointer.
        let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_SHUTDOWN, &flags) };
        assert_eq!(
            rc,
            0,
            "FS_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Unmounts once the killed service's last file is closed (a killed
    /// process drops its files a moment after it shows as a zombie).
    fn unmount(&mut self) {
        if let Some(device) = self.device.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !Command::new("umount")
                .arg(&self.mnt)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                assert!(
                    Instant::now() < deadline,
                    "{} stays busy",
                    self.mnt.display()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            run("losetup", &["-d", &device]);
        }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        if let Some(device) = self.device.take() {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
            let _ = Command::new("losetup").args(["-d", &device]).status();
        }
    }
}

/// The client: numbered messages, LMTP and IMAP APPEND in turn, to both
/// accounts; reconnects whatever fails and never resends (a message is
/// acknowledged once or not at all). Acks go to a file off the volume.
const CLIENT_PY: &str = r#"
import imaplib, os, smtplib, sys, time
acked_path, stop_path, accounts = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
acked = open(acked_path, "a")
def body(n):
    return ("Message-ID: <%d@cut.test>\r\nSubject: %d\r\n\r\n" % (n, n)) + ("line %d of %d\r\n" % (n, n)) * (20 + n % 200)
lmtp = imap = None
n = 0
while not os.path.exists(stop_path):
    n += 1
    to = accounts[n % len(accounts)]
    try:
        if n % 2:
            if lmtp is None:
                lmtp = smtplib.LMTP("MAIL", 24, timeout=5)
                lmtp.ehlo("client.test")
            if lmtp.sendmail("load@x.test", [to], body(n)):
                continue
            kind = "lmtp"
        else:
            if imap is None:
                imap = imaplib.IMAP4("MAIL", 143, timeout=5)
                imap.authenticate("PLAIN", lambda _: b"%s\0provision\0s3cret" % to.encode())
                imap.acct = to
            if imap.acct != to:
                imap.logout()
                imap = imaplib.IMAP4("MAIL", 143, timeout=5)
                imap.authenticate("PLAIN", lambda _: b"%s\0provision\0s3cret" % to.encode())
                imap.acct = to
            typ, _ = imap.append("INBOX", "(\\Seen)", None, body(n).encode())
            if typ != "OK":
                continue
            kind = "imap"
        acked.write("%d %s %s\n" % (n, kind, to))
        acked.flush()
    except Exception:
        lmtp = imap = None
        time.sleep(0.02)
"#;

fn expected_body(n: u64) -> String {
    format!("Message-ID: <{n}@cut.test>\r\nSubject: {n}\r\n\r\n")
        + &format!("line {n} of {n}\r\n").repeat(20 + (n % 200) as usize)
}

/// A small deterministic generator: the same cut points on every run.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn acked(path: &Path) -> Vec<(u64, String, String)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            Some((w.next()?.parse().ok()?, w.next()?.into(), w.next()?.into()))
        })
        .collect()
}

#[test]
fn power_cuts_during_deliveries_and_appends_lose_nothing_acknowledged() {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "needs root (CI runs as root)"
    );
    let cuts: u64 = std::env::var("FULMAR_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut lab = Lab::build(&LabSpec::lan(&[
        ("mail", &format!("{MAIL}/24")),
        ("cl", &format!("{CLIENT}/24")),
    ]))
    .expect("lab");
    let mut volume = Volume::new(lab.log_dir());
    let root = volume.mnt.clone();
    fs::create_dir_all(root.join("config")).unwrap();
    fs::write(root.join("config/master.secret"), "s3cret\n").unwrap();
    fs::write(
        root.join("config/mail.toml"),
        format!(
            "instance = \"mail1\"\nlmtp = \"{MAIL}:24\"\nimap = \"{MAIL}:143\"\n\
             [master]\nuser = \"provision\"\npassword_file = \"master.secret\"\n\
             networks = [\"{CLIENT}/32\"]\n"
        ),
    )
    .unwrap();
    for account in ACCOUNTS {
        let out = Command::new(MAILD)
            .arg("--root")
            .arg(&root)
            .args(["account-create", account])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    run("sync", &[]);

    let acked_path = lab.log_dir().join("acked.txt");
    let stop_path = lab.log_dir().join("stop");
    let script = CLIENT_PY.replace("\"MAIL\"", &format!("\"{MAIL}\""));
    let mut client = lab
        .command("cl", "python3")
        .arg("-c")
        .arg(&script)
        .arg(&acked_path)
        .arg(&stop_path)
        .arg(ACCOUNTS.join(","))
        .spawn()
        .expect("client");

    let mut rng = Lcg(0x5eed);
    let mut uid_validity: BTreeMap<String, u32> = BTreeMap::new();
    let mut uid_of: HashMap<(String, u32), String> = HashMap::new();
    for cut in 1..=cuts {
        let name = format!("maild-{cut}");
        let pid = lab
            .spawn(
                "mail",
                &name,
                MAILD,
                &[
                    "--root",
                    &root.to_string_lossy(),
                    "run",
                    "--node",
                    "n1",
                    "--generation",
                    &cut.to_string(),
                ],
            )
            .expect("spawn fulmar-maild");
        // Cut after 1–12 more acknowledgements, then 0–15 ms on: mid-way
        // through the next delivery or append as often as between them.
        let want = acked(&acked_path).len() + 1 + rng.below(12) as usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked(&acked_path).len() < want {
            assert!(
                Instant::now() < deadline,
                "cut {cut}: no progress for 30 s ({} acked)\n{}",
                acked(&acked_path).len(),
                lab.log("mail", &name)
            );
            if let Ok(Some(status)) = client.try_wait() {
                panic!("the client exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.below(16)));
        volume.power_off();
        // SAFETY: kill(2) on the child the lab spawned.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|s| !s.contains("State:\tZ"))
        {
            assert!(Instant::now() < deadline, "pid {pid} outlived SIGKILL");
            std::thread::sleep(Duration::from_millis(5));
        }
        volume.unmount();
        volume.mount();
        if cut % 10 == 0 || cut == cuts {
            check(&root, &acked_path, &mut uid_validity, &mut uid_of);
        }
    }
    fs::write(&stop_path, "").unwrap();
    let _ = client.kill();
    let _ = client.wait();
    let total = acked(&acked_path).len();
    eprintln!(
        "{cuts} power cuts: {total} acknowledged (LMTP and APPEND), all stored once and whole"
    );
    volume.unmount();
    let out = Command::new("e2fsck")
        .args(["-fn", &volume.image.to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Every acknowledged message is stored exactly once and whole; UIDs are
/// ordered, never move to another message; UIDVALIDITY never changes.
fn check(
    root: &Path,
    acked_path: &Path,
    uid_validity: &mut BTreeMap<String, u32>,
    uid_of: &mut HashMap<(String, u32), String>,
) {
    let store = Store::open(root).unwrap();
    let mut stored: HashMap<u64, usize> = HashMap::new();
    for account in ACCOUNTS {
        let mailbox = store.sync(account, INBOX).unwrap();
        let first = *uid_validity
            .entry(account.to_string())
            .or_insert(mailbox.uid_validity);
        assert_eq!(
            mailbox.uid_validity, first,
            "{account}: UIDVALIDITY changed"
        );
        let uids: Vec<u32> = mailbox.messages.iter().map(|m| m.uid).collect();
        assert!(
            uids.windows(2).all(|w| w[0] < w[1]),
            "{account}: UIDs unique and ordered"
        );
        for m in mailbox.messages.iter() {
            let text = fs::read_to_string(&m.path).unwrap();
            let n: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: <"))
                .and_then(|l| l.strip_suffix("@cut.test>"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{}: no Message-ID: {text:?}", m.path.display()));
            assert!(
                text.ends_with(&expected_body(n)),
                "{}: message {n} is not whole ({} bytes)",
                m.path.display(),
                text.len()
            );
            let id = format!("{n}");
            let was = uid_of
                .entry((account.to_string(), m.uid))
                .or_insert(id.clone());
            assert_eq!(
                *was, id,
                "{account}: UID {} moved from message {was} to {id}",
                m.uid
            );
            *stored.entry(n).or_default() += 1;
        }
    }
    for (n, kind, account) in acked(acked_path) {
        assert_eq!(
            stored.get(&n),
            Some(&1),
            "message {n} ({kind} to {account}) acknowledged, stored {:?} times",
            stored.get(&n)
        );
    }
    assert!(stored.values().all(|&c| c == 1), "a message stored twice");
}
