//! Real mail peers for the lab: an OpenLDAP directory (misc.schema,
//! hashed passwords, per-domain entries) and Dovecot back-ends (IMAP 143,
//! POP3 110, LMTP 24), each started in a lab host and killed with the lab.
use std::{
    fs,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::{Lab, LabError, cmd};

/// One account entry (objectClass inetOrgPerson + inetLocalMailRecipient).
pub struct Account<'a> {
    pub uid: &'a str,
    pub password: &'a str,
    /// `mailLocalAddress` values.
    pub addresses: Vec<String>,
    /// `mailHost`; None leaves routing to the domain's entry.
    pub mail_host: Option<&'a str>,
}

pub struct Directory<'a> {
    pub base: &'a str,
    /// `cn=proxy,<base>`: the proxies' service account (read access).
    pub service_password: &'a str,
    pub accounts: Vec<Account<'a>>,
    /// (domain, mailHost): entries that make a domain local and place
    /// accounts without a mailHost of their own.
    pub domains: Vec<(&'a str, &'a str)>,
    /// `cn=admin,<base>`'s password (rootpw), for tools that write the
    /// directory; None leaves it read-only over the network.
    pub admin_password: Option<&'a str>,
    /// Also ldaps on port 636 with this certificate and key.
    pub tls: Option<Tls<'a>>,
}

fn hash(password: &str) -> Result<String, LabError> {
    let mut c = Command::new("slappasswd");
    c.args(["-s", password]);
    Ok(cmd::checked(c)?.trim().to_string())
}

/// Writes the directory to `work`, loads it with slapadd and starts slapd
/// on `addr:389` (and `addr:636`, ldaps, with `tls`) in `host`. Returns
/// slapd's pid. Its database is not synced (`dbnosync`): it is loaded
/// afresh at every start.
pub fn start_slapd(
    lab: &mut Lab,
    host: &str,
    addr: &str,
    work: &Path,
    dir: &Directory,
) -> Result<u32, LabError> {
    // A fresh database each time: slapadd refuses entries that exist.
    let _ = fs::remove_dir_all(work);
    let conf = load_slapd(work, dir, false)?;
    let conf = conf.to_string_lossy().into_owned();
    let urls = slapd_urls(addr, dir.tls.is_some());
    let pid = lab.spawn(
        host,
        "slapd",
        "slapd",
        &["-f", &conf, "-h", &urls, "-d", "0"],
    )?;
    wait_port(lab, host, addr, 389)?;
    if dir.tls.is_some() {
        wait_port(lab, host, addr, 636)?;
    }
    Ok(pid)
}

/// slapd's `-h`: ldap on `addr`, and ldaps with `tls`.
pub fn slapd_urls(addr: &str, tls: bool) -> String {
    let mut urls = format!("ldap://{addr}:389/");
    if tls {
        urls += &format!(" ldaps://{addr}:636/");
    }
    urls
}

/// Writes slapd.conf for the directory into `work` (its pid file in
/// `work/run`), loads the entries with slapadd, and returns the config's
/// path. `durable`: an add is answered once it is on the disk (no
/// `dbnosync`), as a directory that keeps its data must be.
pub fn load_slapd(work: &Path, dir: &Directory, durable: bool) -> Result<PathBuf, LabError> {
    let db = work.join("db");
    fs::create_dir_all(&db).map_err(|e| LabError::io(&db, e))?;
    let run = work.join("run");
    fs::create_dir_all(&run).map_err(|e| LabError::io(&run, e))?;
    let base = dir.base;
    let conf = work.join("slapd.conf");
    let text = format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         include /etc/ldap/schema/misc.schema\n\
         pidfile {pid}\n{tls}\
         modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
         database mdb\nmaxsize 67108864\n{nosync}\
         suffix \"{base}\"\nrootdn \"cn=admin,{base}\"\n{rootpw}\
         directory {db}\n\
         index objectClass,uid,mailLocalAddress,associatedDomain eq\n\
         access to attrs=userPassword by anonymous auth by * none\n\
         access to * by dn.exact=\"cn=proxy,{base}\" read by * none\n",
        tls = match &dir.tls {
            Some(t) => format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                t.certificate.display(),
                t.key.display()
            ),
            None => String::new(),
        },
        pid = run.join("slapd.pid").display(),
        nosync = if durable { "" } else { "dbnosync\n" },
        db = db.display(),
        rootpw = match dir.admin_password {
            Some(p) => format!("rootpw \"{}\"\n", hash(p)?),
            None => String::new(),
        },
    );
    fs::write(&conf, text).map_err(|e| LabError::io(&conf, e))?;
    let mut ldif = format!(
        "dn: {base}\nobjectClass: dcObject\nobjectClass: organization\no: fulmar\ndc: {dc}\n\n\
         dn: cn=proxy,{base}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: proxy\nuserPassword: {pw}\n\n\
         dn: ou=people,{base}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=domains,{base}\nobjectClass: organizationalUnit\nou: domains\n\n",
        dc = base
            .split(',')
            .next()
            .and_then(|d| d.strip_prefix("dc="))
            .unwrap_or("fulmar"),
        pw = hash(dir.service_password)?,
    );
    for (domain, mail_host) in &dir.domains {
        ldif.push_str(&format!(
            "dn: dc={domain},ou=domains,{base}\nobjectClass: domain\nobjectClass: domainRelatedObject\n\
             objectClass: inetLocalMailRecipient\ndc: {domain}\nassociatedDomain: {domain}\n\
             mailHost: {mail_host}\n\n"
        ));
    }
    for a in &dir.accounts {
        let uid = a.uid;
        ldif.push_str(&format!(
            "dn: uid={uid},ou=people,{base}\nobjectClass: inetOrgPerson\n\
             objectClass: inetLocalMailRecipient\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {}\n",
            hash(a.password)?
        ));
        for address in &a.addresses {
            ldif.push_str(&format!("mailLocalAddress: {address}\n"));
        }
        if let Some(h) = a.mail_host {
            ldif.push_str(&format!("mailHost: {h}\n"));
        }
        ldif.push('\n');
    }
    let ldif_path = work.join("data.ldif");
    fs::write(&ldif_path, ldif).map_err(|e| LabError::io(&ldif_path, e))?;
    let mut load = Command::new("slapadd");
    load.arg("-q")
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(&ldif_path);
    cmd::checked(load)?;
    Ok(conf)
}

/// How a Dovecot back-end checks logins.
pub enum Passwords<'a> {
    /// It trusts connections from the real addresses of `trusted` (the
    /// proxies verified the password against LDAP) — `allow_real_nets`.
    TrustProxies,
    /// It checks (user, password) pairs itself.
    Own(&'a [(&'a str, &'a str)]),
    /// Trusts the proxies, and lets a master user (user, password) act
    /// for any account with SASL PLAIN's authorization identity: how
    /// provisioning reaches mailboxes.
    TrustProxiesWithMaster(&'a str, &'a str),
}

/// A certificate and key (PEM files) for a back-end that speaks TLS.
pub struct Tls<'a> {
    pub certificate: &'a Path,
    pub key: &'a Path,
}

/// The back-end ports: plain IMAP 143, POP3 110, LMTP 24; with TLS, implicit
/// TLS on IMAP 993, POP3 995 and LMTP 24.
pub fn dovecot_ports(tls: bool) -> [u16; 3] {
    if tls { [993, 995, 24] } else { [143, 110, 24] }
}

/// A Dovecot instance on `addr` in `host` on [`dovecot_ports`], mail under
/// `work`. `trusted` are the proxies whose ID/XCLIENT it honours.
pub fn start_dovecot(
    lab: &mut Lab,
    host: &str,
    addr: &str,
    work: &Path,
    trusted: &[&str],
    passwords: Passwords,
    tls: Option<Tls>,
) -> Result<u32, LabError> {
    let mail = work.join("mail");
    let run = work.join("run");
    for d in [&mail, &run] {
        fs::create_dir_all(d).map_err(|e| LabError::io(d, e))?;
    }
    let mut own = Command::new("chown");
    own.arg("dovecot:dovecot").arg(&mail);
    cmd::checked(own)?;
    let trusted: Vec<String> = trusted.iter().map(|a| format!("{a}/32")).collect();
    let trusted = trusted.join(" ");
    let trust_proxies = format!(
        "passdb {{\n  driver = static\n  args = nopassword=y allow_real_nets={}\n}}\n",
        trusted.replace(' ', ",")
    );
    let passdb = match passwords {
        Passwords::TrustProxies => trust_proxies,
        Passwords::TrustProxiesWithMaster(user, password) => {
            let file = work.join("master-users");
            fs::write(&file, format!("{user}:{{PLAIN}}{password}\n"))
                .map_err(|e| LabError::io(&file, e))?;
            format!(
                "passdb {{\n  driver = passwd-file\n  master = yes\n  args = {}\n}}\n{trust_proxies}",
                file.display()
            )
        }
        Passwords::Own(users) => {
            let file = work.join("passwd");
            let lines: String = users
                .iter()
                .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
                .collect();
            fs::write(&file, lines).map_err(|e| LabError::io(&file, e))?;
            format!(
                "passdb {{\n  driver = passwd-file\n  args = {}\n}}\n",
                file.display()
            )
        }
    };
    let [imap, pop3, lmtp] = dovecot_ports(tls.is_some());
    let (ssl, listener_ssl) = match &tls {
        Some(t) => (
            format!(
                "ssl = required\nssl_cert = <{}\nssl_key = <{}\n",
                t.certificate.display(),
                t.key.display()
            ),
            "\n    ssl = yes",
        ),
        None => ("ssl = no\n".to_string(), ""),
    };
    let conf = format!(
        "protocols = imap pop3 lmtp\nlisten = {addr}\n\
         base_dir = {run}\nstate_dir = {run}\ninstance_name = {host}\n\
         log_path = {log}\n{ssl}disable_plaintext_auth = no\n\
         auth_mechanisms = plain login\n\
         auth_username_chars =\nlogin_trusted_networks = {trusted}\n\
         mail_location = maildir:{mail}/%u\nfirst_valid_uid = 1\n\
         default_process_limit = 1000\ndefault_client_limit = 4000\nmail_max_userip_connections = 1000\n\
         {passdb}\
         userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={mail}/%u allow_all_users=yes\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    port = 0\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n  inet_listener fulmar {{\n    port = {imap}{listener_ssl}\n  }}\n}}\n\
         service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n  inet_listener fulmar {{\n    port = {pop3}{listener_ssl}\n  }}\n}}\n\
         service lmtp {{\n  inet_listener lmtp {{\n    port = {lmtp}{listener_ssl}\n  }}\n}}\n",
        run = run.display(),
        log = work.join("dovecot.log").display(),
        mail = mail.display(),
    );
    let path = work.join("dovecot.conf");
    fs::write(&path, conf).map_err(|e| LabError::io(&path, e))?;
    let path = path.to_string_lossy().into_owned();
    let pid = lab.spawn(host, "dovecot", "dovecot", &["-F", "-c", &path])?;
    for port in [imap, pop3, lmtp] {
        wait_port(lab, host, addr, port)?;
    }
    Ok(pid)
}

/// Connects from `host` until `addr:port` answers (15 s at most).
pub fn wait_port(lab: &Lab, host: &str, addr: &str, port: u16) -> Result<(), LabError> {
    let target: SocketAddr = format!("{addr}:{port}")
        .parse()
        .map_err(|_| LabError::Spec(format!("address {addr}:{port}")))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let up = lab.in_host(host, move || {
            TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
        })?;
        if up {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "{target} did not come up in {host}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
