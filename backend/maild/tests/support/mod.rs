//! The lab every maild client test runs in: a real slapd with two
//! accounts, fulmar-maild on its own address with TLS, a trusted proxy
//! address and a client address, and Python's mail clients to drive it.
#![allow(dead_code)] // each test binary uses its own part of it
use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use fulmar_lab::{
    Lab, LabSpec,
    mail::{Account, Directory, start_slapd},
};

pub const MAIL: &str = "198.18.31.11";
pub const CLIENT: &str = "198.18.31.10";
/// A proxy: its IMAP ID x-originating-ip is believed.
pub const PROXY: &str = "198.18.31.12";
pub const LDAP: &str = "198.18.31.13";
pub const BASE: &str = "dc=fulmar,dc=test";
pub const MAILD: &str = env!("CARGO_BIN_EXE_fulmar-maild");

pub struct Site {
    pub lab: Lab,
    pub root: PathBuf,
}

impl Site {
    pub fn new() -> Self {
        assert_eq!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() },
            0,
            "needs root (CI runs as root)"
        );
        let mut lab = Lab::build(&LabSpec::lan(&[
            ("mail", &format!("{MAIL}/24")),
            ("cl", &format!("{CLIENT}/24")),
            ("px", &format!("{PROXY}/24")),
            ("dir", &format!("{LDAP}/24")),
        ]))
        .expect("lab");
        let work = lab.log_dir().join("slapd");
        start_slapd(
            &mut lab,
            "dir",
            LDAP,
            &work,
            &Directory {
                base: BASE,
                service_password: "svc-pw",
                accounts: vec![
                    Account {
                        uid: "ann",
                        password: "ann-pw",
                        addresses: vec!["ann@fulmar.test".into()],
                        mail_host: Some("mail1"),
                    },
                    Account {
                        uid: "bob",
                        password: "bob-pw",
                        addresses: vec!["bob@fulmar.test".into()],
                        mail_host: Some("mail1"),
                    },
                ],
                domains: vec![],
                admin_password: None,
                tls: None,
            },
        )
        .expect("slapd");
        let root = lab.log_dir().join("volume");
        let config = root.join("config");
        fs::create_dir_all(&config).unwrap();
        fs::write(config.join("ldap.secret"), "svc-pw\n").unwrap();
        fs::write(config.join("master.secret"), "master-pw\n").unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["mail1.fulmar.test".into()]).unwrap();
        fs::write(config.join("cert.pem"), cert.cert.pem()).unwrap();
        fs::write(config.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        fs::write(
            config.join("mail.toml"),
            format!(
                "instance = \"mail1\"\nlmtp = \"{MAIL}:24\"\nimap = \"{MAIL}:143\"\n\
                 pop3 = \"{MAIL}:110\"\nsmtp = \"{MAIL}:25\"\n\
                 imaps = \"{MAIL}:993\"\npop3s = \"{MAIL}:995\"\nlmtps = \"{MAIL}:2424\"\n\
                 metrics = \"{MAIL}:9423\"\nquota = \"1 MiB\"\n\
                 max_message_size = \"1 MiB\"\nmax_line = 32768\n\
                 delivery_idle_timeout = \"3s\"\n\
                 max_mailboxes = 20\nmax_subscriptions = 20\n\
                 max_mime_parts = 300\nprelogin_timeout = \"5s\"\n\
                 trusted_networks = [\"{PROXY}/32\"]\n\
                 [directory]\nurls = [\"ldap://{LDAP}:389\"]\nbase_dn = \"{BASE}\"\n\
                 bind_dn = \"cn=proxy,{BASE}\"\nbind_password_file = \"ldap.secret\"\n\
                 [master]\nuser = \"provision\"\npassword_file = \"master.secret\"\n\
                 networks = [\"{CLIENT}/32\"]\n\
                 [tls]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"\n"
            ),
        )
        .unwrap();
        for account in ["ann@fulmar.test", "bob@fulmar.test"] {
            let out = std::process::Command::new(MAILD)
                .arg("--root")
                .arg(&root)
                .args(["account-create", account])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let root_arg = root.display().to_string();
        lab.spawn(
            "mail",
            "maild",
            MAILD,
            &[
                "--root",
                &root_arg,
                "run",
                "--node",
                "n1",
                "--generation",
                "1",
            ],
        )
        .expect("spawn fulmar-maild");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lab.log("mail", "maild").contains("POP3 on") {
            assert!(
                Instant::now() < deadline,
                "fulmar-maild did not start:\n{}",
                lab.log("mail", "maild")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { lab, root }
    }

    pub fn python(&self, host: &str, script: &str) -> String {
        let prelude = format!(
            "import imaplib, poplib, smtplib, socket, ssl, time\n\
             imaplib.Commands['ID'] = ('NONAUTH', 'AUTH', 'SELECTED')\n\
             imaplib.Commands['MOVE'] = ('SELECTED',)\n\
             MAIL = '{MAIL}'\n\
             def raw(lines, wait=0.3, port=143):\n\
             \x20   s = socket.create_connection((MAIL, port), timeout=5)\n\
             \x20   f = s.makefile('rb')\n\
             \x20   out = [f.readline().decode().strip()]\n\
             \x20   try:\n\
             \x20       for line in lines:\n\
             \x20           s.sendall(line)\n\
             \x20           time.sleep(wait)\n\
             \x20       s.shutdown(socket.SHUT_WR)\n\
             \x20   except OSError:\n\
             \x20       pass  # the server hung up, as it may\n\
             \x20   out += [l.decode(errors='replace').strip() for l in f.readlines()]\n\
             \x20   s.close()\n\
             \x20   return out\n\
             tags = [0]\n\
             def connect():\n\
             \x20   s = socket.create_connection((MAIL, 143), timeout=5)\n\
             \x20   f = s.makefile('rb'); f.readline()\n\
             \x20   return s, f\n\
             def cmd(c, text):\n\
             \x20   # Untagged lines, then the tagged one without its tag (t1, t2, ...).\n\
             \x20   s, f = c; tags[0] += 1; tag = f't{{tags[0]}}'\n\
             \x20   s.sendall(f'{{tag}} {{text}}\\r\\n'.encode())\n\
             \x20   lines = []\n\
             \x20   while True:\n\
             \x20       l = f.readline().decode().rstrip('\\r\\n')\n\
             \x20       if l.startswith(tag + ' '): return lines + [l.split(' ', 1)[1]]\n\
             \x20       lines.append(l)\n"
        );
        let log = || {
            format!(
                "{}\n--- instance log ---\n{}",
                self.lab.log("mail", "maild"),
                fs::read_to_string(self.root.join("log/mail1.log")).unwrap_or_default()
            )
        };
        self.lab.python(host, &format!("{prelude}{script}"), log)
    }

    pub fn instance_log(&self) -> String {
        fs::read_to_string(self.root.join("log/mail1.log")).unwrap_or_default()
    }
}

pub fn line<'a>(out: &'a str, tag: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no {tag:?} in:\n{out}"))
}
