//! The configs the front lab writes: each daemon's shipped config with the
//! lab's addresses and paths, the directory's entries, the balancer's
//! services, and an instance root.
use std::{net::SocketAddr, path::Path};

use anyhow::{Result, bail};
use fulmar_lb::config::DaemonConfig;
use fulmar_maild::config::{
    DirectoryConfig as MailDirectory, MailConfig, MasterConfig as MailMaster, Network,
    TlsConfig as MailTls,
};
use fulmar_proxy::config::ProxyConfig;

use super::*;
use crate::{mail, topology};

impl Front {
    /// Provisioning as an operator on the balancer host would run it.
    pub(super) fn write_provision_config(&self) -> Result<()> {
        let mut text = format!(
            "[directory]\nurl = \"ldaps://{DIRECTORY}\"\ntls_ca = \"{ca}\"\nadmin_dn = \"cn=admin,dc=fulmar,dc=test\"\n\
             admin_password = \"admin-secret\"\npeople = \"ou=people,dc=fulmar,dc=test\"\n\
             domains = \"ou=domains,dc=fulmar,dc=test\"\n\
             # the proxies' cache_ttl, and a little\nroute_cache_ttl = \"{}s\"\n\
             [imap]\nmaster_user = \"{}\"\nmaster_password = \"{}\"\nport = 993\n\
             tls_ca = \"{ca}\"\n",
            PROXY_CACHE_TTL.as_secs() + 1,
            MASTER.0,
            MASTER.1,
            ca = self.work.join("ca.crt").display(),
        );
        for (name, _, vip) in INSTANCES {
            text += &format!("[instance.{name}]\nmail_host = \"{vip}\"\n");
        }
        std::fs::write(&self.provision_config, text)?;
        Ok(())
    }

    /// The shipped proxy.toml with the lab's addresses, paths and directory.
    pub(super) fn proxy_config(&self) -> Result<ProxyConfig> {
        let work = &self.work;
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proxy/dist/proxy.toml");
        let mut config = ProxyConfig::load(&shipped).map_err(anyhow::Error::msg)?;
        config.agent_address = Some("[::]:7070".parse()?);
        config.metrics_address = Some(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), PROXY_METRICS));
        for listener in &mut config.listen {
            listener.address =
                SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), listener.address.port());
        }
        if let Some(tls) = &mut config.tls {
            tls.certificate = work.join("proxy.crt");
            tls.key = work.join("proxy.key");
            // lab only: lets the demo log in without TLS
            tls.require_for_auth = false;
        }
        // The shipped TLS hops, with the lab's certificate as their CA.
        if let Some(ca) = &mut config.backend.tls_ca {
            *ca = work.join("ca.crt");
        }
        let d = &mut config.directory;
        d.urls = vec![format!("ldaps://{DIRECTORY}")];
        if let Some(ca) = &mut d.tls_ca {
            *ca = work.join("ca.crt");
        }
        d.bind_dn = "cn=proxy,dc=fulmar,dc=test".into();
        d.bind_password = None;
        d.bind_password_file = Some(work.join("ldap.secret"));
        d.base_dn = "dc=fulmar,dc=test".into();
        // lab only: a move need not wait the shipped 30 s for caches.
        d.cache_ttl = PROXY_CACHE_TTL;
        config.smtp.hostname = "mx.fulmar.test".into();
        let mut listed: Vec<u16> = config.listen.iter().map(|l| l.address.port()).collect();
        listed.sort_unstable();
        if listed != MAIL_PORTS {
            bail!(
                "{}: listens on {listed:?}, the lab balances {MAIL_PORTS:?}",
                shipped.display()
            );
        }
        Ok(config)
    }

    /// The shipped dist/lb.toml with only its paths moved into the lab.
    pub(super) fn lb_config(&self) -> Result<DaemonConfig> {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lb-userspace/dist/lb.toml");
        let mut config = DaemonConfig::load(&shipped).map_err(anyhow::Error::msg)?;
        config.pin_dir = format!("/sys/fs/bpf/{}-fulmar", self.lab.prefix()).into();
        config.services_file = self.work.join("lb-services.conf");
        config.control_socket = self.lb_socket.clone();
        config.metrics_address = Some(format!("{BALANCER}:{LB_METRICS}").parse()?);
        Ok(config)
    }

    /// An instance root at `root`: its config (TLS listeners on `vip`,
    /// plain LMTP on 127.0.0.1:`lmtp`), certificate, secrets, and the
    /// mailboxes of the accounts at home there.
    pub(crate) fn write_instance(
        &self,
        root: &Path,
        name: &str,
        vip: &str,
        lmtp: u16,
    ) -> Result<()> {
        let config = root.join("config");
        std::fs::create_dir_all(&config)?;
        std::fs::write(config.join("ldap.secret"), "proxy-secret\n")?;
        std::fs::copy(self.work.join("proxy.crt"), config.join("cert.pem"))?;
        std::fs::copy(self.work.join("proxy.key"), config.join("key.pem"))?;
        std::fs::copy(self.work.join("ca.crt"), config.join("ca.pem"))?;
        std::fs::write(config.join("master.secret"), format!("{}\n", MASTER.1))?;
        // The proxies and provisioning come in TLS (the shipped configs);
        // plain LMTP only on the node itself (a port per instance: a node
        // may run both).
        let mut mail = MailConfig::new(name, SocketAddr::new([127, 0, 0, 1].into(), lmtp));
        mail.lmtps = Some(format!("{vip}:24").parse()?);
        mail.imaps = Some(format!("{vip}:993").parse()?);
        mail.pop3s = Some(format!("{vip}:995").parse()?);
        mail.quota = Some(1 << 30);
        mail.metrics = Some(format!("{vip}:{MAILD_METRICS}").parse()?);
        // the proxies: their IMAP ID and XCLIENT name the real client
        mail.trusted_networks = vec![Network::parse("198.18.1.0/24").expect("a network")];
        let mut directory = MailDirectory::new(
            &format!("ldaps://{DIRECTORY}"),
            "dc=fulmar,dc=test",
            "cn=proxy,dc=fulmar,dc=test",
            "ldap.secret".into(),
        );
        directory.tls_ca = Some("ca.pem".into());
        mail.directory = Some(directory);
        mail.master = Some(MailMaster {
            user: MASTER.0.into(),
            password_file: "master.secret".into(),
            networks: vec![Network::parse(&format!("{BALANCER}/32")).expect("a network")],
        });
        mail.tls = Some(MailTls {
            certificate: "cert.pem".into(),
            key: "key.pem".into(),
        });
        std::fs::write(config.join("mail.toml"), toml::to_string(&mail)?)?;
        let root_arg = text(root)?.to_string();
        let maild = text(&self.bins.maild)?.to_string();
        let mut homes: Vec<String> = ACCOUNTS
            .iter()
            .filter(|(_, _, home)| *home == vip)
            .map(|(uid, _, _)| format!("{uid}@mail.test"))
            .collect();
        if vip == INSTANCES[0].2 {
            homes.push(MOVABLE.0.into());
        }
        for address in homes {
            let args = ["--root", &root_arg, "account-create", &address];
            self.lab.check("balancer", &maild, &args)?;
        }
        Ok(())
    }
}

/// The lab's directory: its accounts, the proxies' service account, the
/// admin (for provisioning), ldaps with `certificate`.
pub(crate) fn directory<'a>(certificate: &'a Path, key: &'a Path) -> mail::Directory<'a> {
    let mut accounts: Vec<mail::Account> = ACCOUNTS
        .iter()
        .map(|(uid, password, host)| mail::Account {
            uid,
            password,
            addresses: vec![format!("{uid}@mail.test")],
            mail_host: Some(host),
        })
        .collect();
    accounts.push(mail::Account {
        uid: MOVABLE.0,
        password: MOVABLE.1,
        addresses: vec![MOVABLE.0.into()],
        mail_host: Some(INSTANCES[0].2),
    });
    mail::Directory {
        base: "dc=fulmar,dc=test",
        service_password: "proxy-secret",
        accounts,
        domains: vec![("mail.test", "198.18.2.22")],
        admin_password: Some("admin-secret"),
        tls: Some(mail::Tls { certificate, key }),
    }
}

/// Every mail port on both VIPs, lc over the three proxies; the checks
/// speak TLS on the TLS ports and ask each proxy's agent for its state.
pub(super) fn services() -> String {
    let mut out = String::from("# written for the lab's front path\n");
    for (vip, net) in [
        (topology::VIP4, "198.18.1."),
        (topology::VIP6, "2001:db8:1::"),
    ] {
        for port in MAIL_PORTS {
            let svc = SocketAddr::new(vip.parse().expect("VIP"), port);
            out += &format!("service add {svc} scheduler lc\n");
            for id in [11u8, 12, 13] {
                let real = if vip.contains(':') {
                    format!("{net}{id:x}")
                } else {
                    format!("{net}{id}")
                };
                let tls = if matches!(port, 465 | 993 | 995) {
                    "on"
                } else {
                    "off"
                };
                out += &format!("real add {svc} {real} tls {tls} agent 7070\n");
            }
        }
    }
    out
}

/// A token nobody guesses: the kernel's randomness.
pub(super) fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    // getrandom(2) fills small buffers in one call.
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n, 16, "getrandom");
    u128::from_ne_bytes(bytes)
}
