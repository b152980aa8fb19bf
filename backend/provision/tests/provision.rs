//! Provisioning against the real thing: a slapd (misc.schema), three
//! Dovecot instances that let a master user act for any account, the
//! proxy in front of them, and `fulmar account|domain` run from a client
//! host. What routing does is checked through the proxy, with Python's
//! imaplib as the mail client.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Output,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use fulmar_lab::{Lab, LabSpec, mail};
use serde_json::Value;

const PROXY: &str = "198.18.12.2";
const CLIENT: &str = "198.18.12.10";
const INSTANCES: [(&str, &str, &str); 3] = [
    ("mail1", "be1", "198.18.12.11"),
    ("mail2", "be2", "198.18.12.12"),
    ("mail3", "be3", "198.18.12.13"),
];
/// An instance in the config that nobody serves: mailbox creation there
/// fails, which is how the rollback is tested.
const DEAD: &str = "198.18.12.19";
const DIRECTORY: &str = "198.18.12.20";
const BASE: &str = "dc=fulmar,dc=test";
const MASTER: (&str, &str) = ("provision", "master-secret");

struct Site {
    lab: Lab,
    work: PathBuf,
    config: PathBuf,
    slapd: Option<u32>,
}

impl Site {
    fn start() -> Site {
        assert_eq!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() },
            0,
            "needs root (CI runs as root)"
        );
        let mut members = vec![
            ("px", format!("{PROXY}/24")),
            ("cl", format!("{CLIENT}/24")),
            ("dir", format!("{DIRECTORY}/24")),
        ];
        for (_, host, addr) in INSTANCES {
            members.push((host, format!("{addr}/24")));
        }
        let members: Vec<(&str, &str)> = members.iter().map(|(h, a)| (*h, a.as_str())).collect();
        let mut lab = Lab::build(&LabSpec::lan(&members)).expect("lab");
        let work = lab.log_dir().join("provision");
        fs::create_dir_all(&work).unwrap();
        let directory = mail::Directory {
            base: BASE,
            service_password: "proxy-secret",
            accounts: vec![],
            domains: vec![],
            admin_password: Some("admin-secret"),
            tls: None,
        };
        let slapd = mail::start_slapd(&mut lab, "dir", DIRECTORY, &work.join("ldap"), &directory)
            .expect("slapd");
        for (_, host, addr) in INSTANCES {
            let passwords = mail::Passwords::TrustProxiesWithMaster(MASTER.0, MASTER.1);
            mail::start_dovecot(
                &mut lab,
                host,
                addr,
                &work.join(host),
                &[PROXY],
                passwords,
                None,
            )
            .expect("dovecot");
        }
        let proxy = format!(
            r#"[[listen]]
protocol = "imap"
address = "{PROXY}:143"
tls = "none"
[[listen]]
protocol = "smtp"
address = "{PROXY}:25"
tls = "none"

[directory]
urls = ["ldap://{DIRECTORY}:389"]
bind_dn = "cn=proxy,{BASE}"
bind_password = "proxy-secret"
base_dn = "{BASE}"
timeout = "2s"
cache_ttl = "1s"
# The Dovecot instances know users by uid.
user_attribute = "uid"
"#
        );
        let proxy_conf = work.join("proxy.toml");
        fs::write(&proxy_conf, proxy).unwrap();
        let bin = fulmar_lab::dist::built("fulmar-proxyd");
        lab.spawn(
            "px",
            "proxy",
            bin.to_str().unwrap(),
            &["--config", proxy_conf.to_str().unwrap()],
        )
        .expect("proxy");
        mail::wait_port(&lab, "cl", PROXY, 143).expect("proxy imap");
        mail::wait_port(&lab, "cl", PROXY, 25).expect("proxy smtp");
        let mut provision = format!(
            r#"placement = "least-used"
[directory]
url = "ldap://{DIRECTORY}:389"
admin_dn = "cn=admin,{BASE}"
admin_password = "admin-secret"
people = "ou=people,{BASE}"
domains = "ou=domains,{BASE}"
timeout = "2s"
# The proxy's cache_ttl, and a little.
route_cache_ttl = "2s"
[imap]
master_user = "{}"
master_password = "{}"
timeout = "2s"
"#,
            MASTER.0, MASTER.1
        );
        for (weight, (name, _, addr)) in INSTANCES.iter().enumerate() {
            provision.push_str(&format!(
                "[instance.{name}]\nmail_host = \"{addr}\"\nweight = {}\n",
                weight + 1
            ));
        }
        provision.push_str(&format!(
            "[instance.dead]\nmail_host = \"{DEAD}\"\nclosed = true\n"
        ));
        let config = work.join("provision.toml");
        fs::write(&config, provision).unwrap();
        Site {
            lab,
            work,
            config,
            slapd: Some(slapd),
        }
    }

    /// Runs `fulmar -P config ARGS` on the client host.
    fn fulmar(&self, args: &[&str]) -> Output {
        let tool = fulmar_lab::dist::built("fulmar");
        let mut all = vec!["-P", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        self.lab
            .exec("cl", tool.to_str().unwrap(), &all)
            .expect("fulmar")
    }

    /// `fulmar ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.fulmar(args);
        assert!(
            out.status.success(),
            "fulmar {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `fulmar ARGS`, which must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.fulmar(args);
        assert!(
            !out.status.success(),
            "fulmar {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("json")
    }

    /// Accounts per instance as `account list -j` reports them.
    fn per_instance(&self, domain: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for a in self.json(&["account", "list"]).as_array().unwrap() {
            if a["account"]
                .as_str()
                .unwrap()
                .ends_with(&format!("@{domain}"))
            {
                let i = a["instance"].as_str().unwrap_or("-").to_string();
                *out.entry(i).or_default() += 1;
            }
        }
        out
    }

    /// Runs a Python script on the client host; its stdout.
    fn python(&self, script: &str) -> String {
        self.lab
            .python("cl", script, || self.lab.log("px", "proxy"))
    }

    /// Message files in an account's maildir (all folders) on `host`.
    fn maildir_messages(&self, host: &str, user: &str) -> usize {
        fn walk(dir: &Path, n: &mut usize) {
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                let name = e.file_name();
                if p.is_dir() {
                    walk(&p, n);
                } else if matches!(
                    p.parent()
                        .and_then(|d| d.file_name())
                        .and_then(|d| d.to_str()),
                    Some("cur" | "new")
                ) && !name.to_string_lossy().starts_with('.')
                {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(&self.work.join(host).join("mail").join(user), &mut n);
        n
    }

    fn stop_slapd(&mut self) {
        if let Some(pid) = self.slapd.take() {
            // SAFETY: kill(2) on the slapd this site started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            thread::sleep(Duration::from_millis(300));
        }
    }
}

fn csv(domain: &str, n: usize) -> String {
    let mut s = String::from("address,password\n");
    for i in 0..n {
        s.push_str(&format!("user{i}@{domain},pw-{i}\n"));
    }
    s
}

#[test]
fn placement_of_a_thousand_accounts_under_each_algorithm() {
    let site = Site::start();
    let import = |domain: &str, placement: &str, seed: &str| {
        let file = site.work.join(format!("{domain}.csv"));
        fs::write(&file, csv(domain, 1000)).unwrap();
        let f = file.to_str().unwrap();
        // The dry run writes nothing and plans what the real run does.
        let run = |extra: &[&str]| {
            let mut args = vec!["account", "import", f, "placement", placement, "seed", seed];
            args.extend_from_slice(extra);
            site.json(&args)
        };
        let dry = run(&["dry-run"]);
        assert_eq!(site.per_instance(domain).len(), 0);
        let started = std::time::Instant::now();
        let real = run(&["jobs", "8"]);
        eprintln!(
            "{placement}: 1000 accounts imported in {:?}",
            started.elapsed()
        );
        assert_eq!(
            dry["accounts"], real["accounts"],
            "dry run and real run differ"
        );
        assert_eq!(real["failed"].as_array().unwrap().len(), 0);
        site.per_instance(domain)
    };
    let near = |got: usize, want: f64, tol: f64| (got as f64 - want).abs() <= tol;

    // Uniform over the three open instances (never the closed one):
    // 333 each, ±60 (4 standard deviations).
    let random = import("random.test", "random", "1");
    assert_eq!(random.values().sum::<usize>(), 1000);
    assert!(!random.contains_key("dead"), "{random:?}");
    for (name, _, _) in INSTANCES {
        assert!(near(random[name], 1000.0 / 3.0, 60.0), "random: {random:?}");
    }

    // Weights 1:2:3: 167, 333, 500, ±60.
    let weighted = import("weighted.test", "weighted", "2");
    for (i, (name, _, _)) in INSTANCES.iter().enumerate() {
        let want = 1000.0 * (i + 1) as f64 / 6.0;
        assert!(near(weighted[*name], want, 60.0), "weighted: {weighted:?}");
    }

    // Least used counts what the directory holds (the 2000 above, uneven)
    // and ends with every instance within 1 of the others.
    import("least.test", "least-used", "3");
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for a in site.json(&["account", "list"]).as_array().unwrap() {
        *totals
            .entry(a["instance"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert_eq!(totals.values().sum::<usize>(), 3000);
    let (lo, hi) = (
        totals.values().min().unwrap(),
        totals.values().max().unwrap(),
    );
    assert!(hi - lo <= 1, "least used: {totals:?}");

    // Domain based: one entry routes the whole domain; accounts carry no
    // mailHost of their own.
    let e = site.fails(&["account", "import", "/dev/null", "placement", "domain"]);
    assert!(
        e.contains("no address column") || e.contains("header"),
        "{e}"
    );
    let file = site.work.join("dom.csv");
    fs::write(&file, csv("dom.test", 5)).unwrap();
    let e = site.fails(&[
        "account",
        "import",
        file.to_str().unwrap(),
        "placement",
        "domain",
    ]);
    assert!(e.contains("fulmar domain add dom.test"), "{e}");
    site.ok(&["domain", "add", "dom.test", "mail2"]);
    let by_domain = import("dom.test", "domain", "4");
    assert_eq!(by_domain, BTreeMap::from([("mail2".to_string(), 1000)]));
    let listed = site.json(&["account", "list", "instance", "mail2"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["account"].as_str().unwrap().ends_with("@dom.test"))
            .all(|a| a["via_domain"] == true)
    );
    let e = site.fails(&["domain", "del", "dom.test"]);
    assert!(e.contains("1000 accounts route by dom.test"), "{e}");

    // Mailboxes exist where the accounts were placed.
    let shown = site.json(&["account", "show", "user7@dom.test"]);
    assert_eq!(shown["instance"], "mail2");
    let folders: BTreeSet<&str> = shown["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        folders,
        BTreeSet::from(["INBOX", "Sent", "Drafts", "Trash", "Junk"])
    );
}

#[test]
fn an_added_account_logs_in_through_the_proxy_on_its_instance() {
    let mut site = Site::start();
    let out = site.ok(&[
        "account",
        "add",
        "Ann@Example.test",
        "password",
        "s3cret (x) \"y\"",
        "alias",
        "ann.lee@example.test",
        "instance",
        "mail3",
    ]);
    assert!(out.contains("ann@example.test: created on mail3"), "{out}");
    // The proxy binds as her (slapd checks the {CRYPT} hash), finds mailHost
    // and opens the session on mail3, where her folders are.
    let listed = site.python(
        r#"
import imaplib
m = imaplib.IMAP4("198.18.12.2", 143)
m.login("ann.lee@example.test", 's3cret (x) "y"')
typ, folders = m.list()
print(sorted(f.decode().split(' "." ')[-1].strip('"') for f in folders))
m.append("Sent", r"(\Seen)", None, b"Subject: hi\r\n\r\nbody\r\n")
m.logout()
"#,
    );
    assert!(
        listed.contains("'Drafts', 'INBOX', 'Junk', 'Sent', 'Trash'"),
        "{listed}"
    );
    assert_eq!(site.maildir_messages("be3", "ann@example.test"), 1);
    assert_eq!(site.maildir_messages("be1", "ann@example.test"), 0);

    // Bad input: each a clear error, nothing half-made.
    let before = site.json(&["account", "list"]).as_array().unwrap().len();
    let e = site.fails(&["account", "add", "ann.lee@example.test", "password", "x"]);
    assert!(e.contains("exists"), "{e}");
    let e = site.fails(&[
        "account",
        "add",
        "bob@example.test",
        "password",
        "x",
        "instance",
        "mail9",
    ]);
    assert!(e.contains("unknown instance \"mail9\""), "{e}");
    let e = site.fails(&["account", "add", "bob@exa mple.test", "password", "x"]);
    assert!(e.contains("invalid address"), "{e}");
    let e = site.fails(&["account", "add", "bob@example.test"]);
    assert!(e.contains("password"), "{e}");
    // Filter metacharacters are plain characters of an address.
    site.ok(&[
        "account",
        "add",
        "*@example.test",
        "password",
        "star",
        "instance",
        "mail1",
    ]);
    let star = site.json(&["account", "show", "*@example.test"]);
    assert_eq!(star["uid"], "*@example.test");
    let e = site.fails(&["account", "show", "*n*@example.test"]);
    assert!(e.contains("no account"), "{e}");
    // The mailbox cannot be created on an instance nobody serves: the
    // directory entry is removed again.
    let e = site.fails(&[
        "account",
        "add",
        "carol@example.test",
        "password",
        "x",
        "instance",
        "dead",
    ]);
    assert!(e.contains("removed again"), "{e}");
    let e = site.fails(&["account", "show", "carol@example.test"]);
    assert!(e.contains("no account"), "{e}");
    assert_eq!(
        site.json(&["account", "list"]).as_array().unwrap().len(),
        before + 1
    );

    // Delete: the entry goes, then the mailbox; the proxy refuses her.
    let out = site.ok(&["account", "del", "ann@example.test"]);
    assert!(out.contains("1 messages removed"), "{out}");
    assert_eq!(site.maildir_messages("be3", "ann@example.test"), 0);
    let refused = site.python(
        r#"
import imaplib
m = imaplib.IMAP4("198.18.12.2", 143)
try:
    m.login("ann@example.test", 's3cret (x) "y"')
    print("logged in")
except imaplib.IMAP4.error as e:
    print("refused")
"#,
    );
    assert_eq!(refused.trim(), "refused");

    // Directory down: a clear error, nothing done.
    site.stop_slapd();
    let e = site.fails(&["account", "add", "dan@example.test", "password", "x"]);
    assert!(e.contains("directory unavailable"), "{e}");
    assert_eq!(site.maildir_messages("be1", "dan@example.test"), 0);
}

/// Delivers numbered messages to `rcpt` over SMTP through the proxy until
/// stopped; keeps the numbers that got their 250.
struct Deliveries {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u32>>>,
    thread: Option<thread::JoinHandle<Result<(), fulmar_lab::LabError>>>,
}

impl Deliveries {
    fn start(lab: &Lab, rcpt: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = lab.thread_in("cl", move || {
            let mut n = 0u32;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                if send(rcpt, n).is_ok() {
                    a.lock().unwrap().push(n);
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        Deliveries {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<u32> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap().unwrap();
        self.acked.lock().unwrap().clone()
    }
}

/// One SMTP transaction; Ok only on the 250 after the data.
fn send(rcpt: &str, n: u32) -> std::io::Result<()> {
    let target: SocketAddr = format!("{PROXY}:25").parse().unwrap();
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut expect = |code: &str| -> std::io::Result<()> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            return if line.starts_with(code) {
                Ok(())
            } else {
                Err(std::io::Error::other(line))
            };
        }
    };
    expect("220")?;
    w.write_all(b"EHLO client.test\r\n")?;
    expect("250")?;
    w.write_all(
        format!("MAIL FROM:<sender@remote.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes(),
    )?;
    expect("250")?;
    expect("250")?;
    expect("354")?;
    w.write_all(format!("Subject: delivery {n}\r\n\r\nmessage {n}\r\n.\r\n").as_bytes())?;
    expect("250")?;
    let _ = w.write_all(b"QUIT\r\n");
    Ok(())
}

#[test]
fn a_move_during_deliveries_loses_nothing() {
    let site = Site::start();
    site.ok(&[
        "account",
        "add",
        "bob@move.test",
        "password",
        "bob-pw",
        "instance",
        "mail1",
    ]);
    // Mail with flags, in INBOX and a folder of his own.
    let before = site.python(
        r#"
import imaplib
m = imaplib.IMAP4("198.18.12.2", 143)
m.login("bob@move.test", "bob-pw")
m.create("Archive")
for i in range(3):
    m.append("Archive", r"(\Seen \Flagged)", None, b"Subject: old %d\r\n\r\nold\r\n" % i)
m.append("INBOX", r"(\Answered)", None, b"Subject: answered\r\n\r\nx\r\n")
typ, data = m.select("INBOX")
print(m.response("UIDVALIDITY")[1][0].decode())
m.logout()
"#,
    );
    let deliveries = Deliveries::start(&site.lab, "bob@move.test");
    thread::sleep(Duration::from_secs(1));
    let moved = site.json(&["account", "move", "bob@move.test", "to", "mail2"]);
    thread::sleep(Duration::from_secs(1));
    let acked = deliveries.finish();
    assert!(
        acked.len() > 50,
        "only {} deliveries acknowledged",
        acked.len()
    );
    let r = &moved["report"];
    assert!(r["copied"].as_u64().unwrap() >= 4, "{moved}");
    assert!(
        r["copied_late"].as_u64().unwrap() > 0,
        "no delivery landed on mail1 during the move: {moved}"
    );
    // This site has no balancer to find the proxies by: the move still
    // completes, and its report says the sessions were not kicked.
    assert!(r["kicked"].is_null(), "{moved}");
    assert!(
        r["kick_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{moved}"
    );

    // Everything is on mail2, read through the proxy: each acknowledged
    // delivery exactly once, the old mail with its flags, a new
    // UIDVALIDITY; mail1 holds nothing for him.
    let after = site.python(
        r#"
import imaplib, re
m = imaplib.IMAP4("198.18.12.2", 143)
m.login("bob@move.test", "bob-pw")
m.select("INBOX")
print(m.response("UIDVALIDITY")[1][0].decode())
typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
for part in data:
    if isinstance(part, tuple):
        flags = re.search(rb"FLAGS \(([^)]*)\)", part[0]).group(1).decode()
        print(part[1].decode().strip(), "|", flags)
m.select("Archive")
typ, data = m.fetch("1:*", "(FLAGS)")
print("archive", len(data), all(b"\\Flagged" in d and b"\\Seen" in d for d in data))
m.logout()
"#,
    );
    let mut lines = after.lines();
    let validity = lines.next().unwrap();
    assert_ne!(validity, before.trim(), "UIDVALIDITY must change");
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut answered = false;
    for line in lines.clone() {
        if let Some(rest) = line.strip_prefix("Subject: delivery ") {
            let n: u32 = rest.split_whitespace().next().unwrap().parse().unwrap();
            *seen.entry(n).or_default() += 1;
        }
        if line.starts_with("Subject: answered") && line.contains("\\Answered") {
            answered = true;
        }
    }
    assert!(answered, "{after}");
    for n in &acked {
        assert_eq!(
            seen.get(n),
            Some(&1),
            "delivery {n} not there exactly once:\n{after}"
        );
    }
    assert!(after.contains("archive 3 True"), "{after}");
    assert_eq!(site.maildir_messages("be1", "bob@move.test"), 0);
    assert_eq!(
        site.json(&["account", "show", "bob@move.test"])["instance"],
        "mail2"
    );
    let e = site.fails(&["account", "move", "bob@move.test", "to", "mail2"]);
    assert!(e.contains("already lives on mail2"), "{e}");
}
