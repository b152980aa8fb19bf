//! A mail site in network namespaces for the proxy's tests: a real slapd
//! (misc.schema, hashed passwords), two Dovecot back-ends, the proxy
//! binary, and a client host. Everything is torn down on drop.
#![allow(dead_code)]

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use fulmar_lab::{Lab, LabSpec, mail};

mod maild;

pub const PROXY: &str = "198.18.5.2";
pub const CLIENT: &str = "198.18.5.10";
pub const BE1: &str = "198.18.5.11";
pub const BE2: &str = "198.18.5.12";
pub const DIRECTORY: &str = "198.18.5.20";
pub const BASE: &str = "dc=fulmar,dc=test";

/// Accounts: (uid, password, addresses, mailHost).
pub const ANN: (&str, &str) = ("ann", "ann-secret");
/// A password that IMAP must send quoted (space, parens, quote).
pub const BOB: (&str, &str) = ("bob", "b0b (x) \"y\"");
/// No mailHost of her own: her domain's entry places her on BE2.
pub const CAROL: (&str, &str) = ("carol", "carol-secret");
/// Not in the directory; only BE2 knows her (default-route test).
pub const LEGACY: (&str, &str) = ("legacy", "legacy-secret");

#[derive(Default)]
pub struct Options {
    pub default_host: bool,
    pub outbound_relay: Option<String>,
    pub extra_proxy_config: String,
    /// The back-ends speak implicit TLS (certificates from a test CA) and
    /// the proxy checks them against that CA.
    pub backend_tls: bool,
    /// Lines for the proxy's `[backend]` table.
    pub backend_extra: String,
    /// Lines for its `[session]` table (and sub-tables); None: failed
    /// logins unthrottled.
    pub session: Option<String>,
    /// Back-end 1 (ann's home) runs fulmar-maild, not Dovecot.
    pub maild_be1: bool,
    /// So does back-end 2 (bob's and carol's).
    pub maild_be2: bool,
}

pub struct Site {
    pub lab: Lab,
    pub work: PathBuf,
    slapd_pid: Option<u32>,
}

impl Site {
    pub fn start(options: Options) -> Self {
        assert_eq!(
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() },
            0,
            "the proxy tests need root (CI runs as root)"
        );
        let spec = LabSpec::lan(&[
            ("px", &format!("{PROXY}/24")),
            ("cl", &format!("{CLIENT}/24")),
            ("be1", &format!("{BE1}/24")),
            ("be2", &format!("{BE2}/24")),
            ("dir", &format!("{DIRECTORY}/24")),
        ]);
        let lab = Lab::build(&spec).expect("lab");
        let work = lab.log_dir().join("site");
        fs::create_dir_all(&work).unwrap();
        let mut site = Site {
            lab,
            work,
            slapd_pid: None,
        };
        site.start_slapd();
        if options.backend_tls {
            site.make_backend_certificates();
        }
        if options.maild_be1 {
            site.start_maild("be1", BE1, &["ann@mail.test"], options.backend_tls);
        } else {
            site.start_dovecot("be1", BE1, false, options.backend_tls);
        }
        if options.maild_be2 {
            let accounts = ["bob@mail.test", "carol@mail.test"];
            site.start_maild("be2", BE2, &accounts, options.backend_tls);
        } else {
            site.start_dovecot("be2", BE2, true, options.backend_tls);
        }
        site.start_proxy(&options);
        site
    }

    fn start_slapd(&mut self) {
        let work = self.work.join("ldap");
        let person =
            |(uid, password): (&'static str, &'static str), extra: &[&str], host| mail::Account {
                uid,
                password,
                addresses: [format!("{uid}@mail.test")]
                    .into_iter()
                    .chain(extra.iter().map(|a| a.to_string()))
                    .collect(),
                mail_host: host,
            };
        let directory = mail::Directory {
            base: BASE,
            service_password: "proxy-secret",
            accounts: vec![
                person(ANN, &["ann.alias@mail.test"], Some(BE1)),
                person(BOB, &[], Some(BE2)),
                person(CAROL, &[], None),
            ],
            domains: vec![("mail.test", BE2)],
            admin_password: None,
            tls: None,
        };
        let pid =
            mail::start_slapd(&mut self.lab, "dir", DIRECTORY, &work, &directory).expect("slapd");
        self.slapd_pid = Some(pid);
    }

    /// Kills the directory server (the "directory down" tests).
    pub fn stop_slapd(&mut self) {
        if let Some(pid) = self.slapd_pid.take() {
            // SAFETY: kill(2) has no memory effects.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.can_connect("cl", DIRECTORY, 389) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// be1 trusts the proxy (it verified the password); be2 checks
    /// passwords itself, as the default back-end must.
    fn start_dovecot(&mut self, host: &str, addr: &str, own_passwords: bool, tls: bool) {
        let passwords = if own_passwords {
            mail::Passwords::Own(&[BOB, CAROL, LEGACY])
        } else {
            mail::Passwords::TrustProxies
        };
        let work = self.work.join(host);
        let certificate = self.work.join(format!("{host}.crt"));
        let key = self.work.join(format!("{host}.key"));
        let tls = tls.then_some(mail::Tls {
            certificate: &certificate,
            key: &key,
        });
        mail::start_dovecot(&mut self.lab, host, addr, &work, &[PROXY], passwords, tls)
            .expect("dovecot");
    }

    /// A test CA (`backend-ca.crt`) and, per back-end, a certificate for
    /// its address: the proxy verifies the back-end by its mailHost.
    fn make_backend_certificates(&self) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        fs::write(self.work.join("backend-ca.crt"), ca.pem()).unwrap();
        for (host, addr) in [("be1", BE1), ("be2", BE2)] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![addr.to_string()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            fs::write(self.work.join(format!("{host}.crt")), cert.pem()).unwrap();
            fs::write(self.work.join(format!("{host}.key")), key.serialize_pem()).unwrap();
        }
    }

    pub fn dovecot_log(&self, host: &str) -> String {
        fs::read_to_string(self.work.join(host).join("dovecot.log")).unwrap_or_default()
    }

    fn start_proxy(&mut self, options: &Options) {
        let dir = self.work.join("proxy");
        fs::create_dir_all(&dir).unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["mail.fulmar.test".into()]).unwrap();
        fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
        fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        let default_host = if options.default_host {
            format!("default_host = \"{BE2}\"\n")
        } else {
            String::new()
        };
        let backend_tls = if options.backend_tls {
            let [imap, pop3, _] = mail::dovecot_ports(true);
            format!(
                "tls = true\ntls_ca = \"{}\"\nimap_port = {imap}\npop3_port = {pop3}\n",
                self.work.join("backend-ca.crt").display()
            )
        } else {
            String::new()
        };
        let backend_extra = &options.backend_extra;
        // fulmar-maild knows accounts by address (the default), the
        // Dovecots here by uid.
        let user_attribute = if options.maild_be1 {
            ""
        } else {
            "user_attribute = \"uid\"\n"
        };
        // Tests that are not about guessing fail logins freely.
        let session = options.session.as_deref().unwrap_or(
            "auth_failures_per_connection = 100\n[session.auth_penalty]\nfree_failures = 1000\n",
        );
        let relay = options
            .outbound_relay
            .as_ref()
            .map(|r| format!("outbound_relay = \"{r}\"\n"))
            .unwrap_or_default();
        let config = format!(
            r#"agent_address = "{PROXY}:7070"
metrics_address = "{PROXY}:9425"
{extra}
[[listen]]
protocol = "imap"
address = "{PROXY}:143"
tls = "starttls"
[[listen]]
protocol = "imap"
address = "{PROXY}:993"
tls = "implicit"
[[listen]]
protocol = "imap"
address = "{PROXY}:1143"
tls = "none"
[[listen]]
protocol = "imap"
address = "{PROXY}:1144"
tls = "none"
proxy_protocol = true
proxy_protocol_from = ["{CLIENT}/32"]
[[listen]]
protocol = "pop3"
address = "{PROXY}:110"
tls = "starttls"
[[listen]]
protocol = "pop3"
address = "{PROXY}:1110"
tls = "none"
[[listen]]
protocol = "smtp"
address = "{PROXY}:25"
tls = "starttls"
[[listen]]
protocol = "submission"
address = "{PROXY}:587"
tls = "starttls"

[tls]
certificate = "{dir}/cert.pem"
key = "{dir}/key.pem"

[directory]
# The first URL refuses connections: every test also runs the failover.
urls = ["ldap://{DIRECTORY}:3389", "ldap://{DIRECTORY}:389"]
bind_dn = "cn=proxy,{BASE}"
bind_password = "proxy-secret"
base_dn = "{BASE}"
timeout = "1s"
cache_ttl = "0s"
{user_attribute}
[backend]
{default_host}{backend_tls}{backend_extra}
[session]
auth_failure_delay = "200ms"
drain_timeout = "5s"
{session}

[smtp]
hostname = "px.fulmar.test"
max_message_size = 41943040
{relay}"#,
            dir = dir.display(),
            extra = options.extra_proxy_config,
        );
        let path = dir.join("proxy.toml");
        fs::write(&path, config).unwrap();
        let bin = env!("CARGO_BIN_EXE_fulmar-proxyd");
        self.lab
            .spawn("px", "proxy", bin, &["--config", path.to_str().unwrap()])
            .expect("proxy");
        self.wait_port("px", PROXY, 143);
        self.wait_port("px", PROXY, 587);
    }

    pub fn proxy_log(&self) -> String {
        self.lab.log("px", "proxy")
    }

    fn can_connect(&self, host: &str, addr: &str, port: u16) -> bool {
        let target: SocketAddr = format!("{addr}:{port}").parse().unwrap();
        self.lab
            .in_host(host, move || {
                TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
            })
            .unwrap()
    }

    fn wait_port(&self, host: &str, addr: &str, port: u16) {
        if let Err(e) = mail::wait_port(&self.lab, host, addr, port) {
            panic!("{e}; proxy log:\n{}", self.proxy_log());
        }
    }

    /// Runs a Python script on the client host (imaplib, poplib, smtplib:
    /// an independent client implementation). Returns its stdout.
    pub fn python(&self, script: &str) -> String {
        self.lab.python("cl", script, || self.proxy_log())
    }

    /// A raw TCP connection from the client host.
    pub fn connect(&self, port: u16) -> Raw {
        let target: SocketAddr = format!("{PROXY}:{port}").parse().unwrap();
        let stream = self
            .lab
            .in_host("cl", move || TcpStream::connect(target))
            .unwrap()
            .expect("connect to the proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- proxy log ---\n{}", self.proxy_log());
        }
        let _ = fs::remove_dir_all(&self.work);
    }
}

/// A line-oriented raw client for protocol-edge tests.
pub struct Raw {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Lines up to and including the first that starts with `prefix`.
    pub fn until(&mut self, prefix: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "connection closed; got {lines:?}");
            let done = line.starts_with(prefix);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Whether the connection ends (after any last words) before the
    /// read timeout.
    pub fn ends(&mut self) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }

    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
