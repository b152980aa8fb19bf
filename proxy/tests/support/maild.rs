//! fulmar-maild as a back-end instead of Dovecot (be1: ann's home; be2:
//! bob's and carol's): the proxy's own path to its own back-end, in
//! implicit TLS when the site's back-ends speak it (IMAPS 993, POP3S 995,
//! LMTP in TLS on 24).
use std::{fs, time::Duration, time::Instant};

use super::{BASE, DIRECTORY, PROXY, Site};

impl Site {
    pub fn start_maild(&mut self, host: &str, addr: &str, accounts: &[&str], tls: bool) {
        let (be1, be1_name) = (addr, host);
        let maild = fulmar_lab::dist::built("fulmar-maild");
        let root = self.work.join(format!("{host}-maild"));
        let config = root.join("config");
        fs::create_dir_all(&config).unwrap();
        fs::write(config.join("ldap.secret"), "proxy-secret\n").unwrap();
        let listeners = if tls {
            // Plain LMTP is required; the proxy never uses it here.
            format!(
                "lmtp = \"{be1}:2424\"\nimaps = \"{be1}:993\"\npop3s = \"{be1}:995\"\n\
                 lmtps = \"{be1}:24\"\n"
            )
        } else {
            format!("lmtp = \"{be1}:24\"\nimap = \"{be1}:143\"\npop3 = \"{be1}:110\"\n")
        };
        let tls_section = if tls {
            format!(
                "[tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
                self.work.join(format!("{host}.crt")).display(),
                self.work.join(format!("{host}.key")).display()
            )
        } else {
            String::new()
        };
        fs::write(
            config.join("mail.toml"),
            format!(
                "instance = \"{be1_name}\"\n{listeners}trusted_networks = [\"{PROXY}/32\"]\n\
                 [directory]\nurls = [\"ldap://{DIRECTORY}:389\"]\nbase_dn = \"{BASE}\"\n\
                 bind_dn = \"cn=proxy,{BASE}\"\nbind_password_file = \"ldap.secret\"\n\
                 {tls_section}"
            ),
        )
        .unwrap();
        let maild = maild.to_string_lossy().into_owned();
        let root_arg = root.to_string_lossy().into_owned();
        for account in accounts {
            self.lab
                .check(
                    host,
                    &maild,
                    &["--root", &root_arg, "account-create", account],
                )
                .expect("account-create");
        }
        self.lab
            .spawn(
                host,
                "maild",
                &maild,
                &[
                    "--root",
                    &root_arg,
                    "run",
                    "--node",
                    host,
                    "--generation",
                    "1",
                ],
            )
            .expect("fulmar-maild");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.lab.log(host, "maild").contains(" serving ") {
            assert!(
                Instant::now() < deadline,
                "fulmar-maild did not start:\n{}",
                self.lab.log(host, "maild")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// fulmar-maild's own log on back-end 1.
    pub fn maild_log(&self) -> String {
        fs::read_to_string(self.work.join("be1-maild/log/be1.log")).unwrap_or_default()
    }
}
