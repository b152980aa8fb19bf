//! What ships for proxy nodes: the example config parses and keeps the
//! code's defaults, the unit passes `systemd-analyze verify` with the real
//! binary at its install path (in a private mount namespace), and a bad
//! config is named by `--check`.
use std::{path::Path, process::Command};

use fulmar_proxy::config::ProxyConfig;

fn dist(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(name)
}

#[test]
fn shipped_config_parses_with_the_code_defaults() {
    let shipped = ProxyConfig::load(&dist("proxy.toml")).unwrap();
    let minimal = ProxyConfig::parse(
        "[[listen]]\nprotocol = \"imap\"\naddress = \"0.0.0.0:143\"\ntls = \"none\"\n\
         [directory]\nurls = [\"ldap://x\"]\nbind_dn = \"\"\nbind_password = \"\"\nbase_dn = \"\"\n",
    )
    .unwrap();
    assert_eq!(
        format!("{:?}", shipped.session),
        format!("{:?}", minimal.session)
    );
    let (s, d) = (&shipped.directory, &minimal.directory);
    assert_eq!(
        (
            &s.user_filter,
            &s.recipient_filter,
            &s.domain_filter,
            &s.host_attribute,
            &s.user_attribute
        ),
        (
            &d.user_filter,
            &d.recipient_filter,
            &d.domain_filter,
            &d.host_attribute,
            &d.user_attribute
        )
    );
    assert_eq!(
        (s.timeout, s.pool_size, s.cache_ttl),
        (d.timeout, d.pool_size, d.cache_ttl)
    );
    // Internet-facing defaults: every hop behind the proxy in TLS with its
    // certificate checked (plain text is the code's default, for labs).
    let b = &shipped.backend;
    assert!(b.tls && b.tls_ca.is_some(), "backend TLS is off");
    assert_eq!((b.imap_port, b.pop3_port), (993, 995));
    assert!(
        s.urls.iter().all(|u| u.starts_with("ldaps://")),
        "{:?}",
        s.urls
    );
    assert!(s.tls_ca.is_some(), "directory.tls_ca unset");
    assert_eq!(shipped.backend.default_host, None);
    assert_eq!(shipped.smtp.max_message_size, minimal.smtp.max_message_size);
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    fulmar_lab::dist::verify_units(
        &[env!("CARGO_BIN_EXE_fulmar-proxyd")],
        &dist(""),
        &["fulmar-proxyd.service"],
        &["fulmar-proxyd.service"],
        "",
    )
    .unwrap_or_else(|text| panic!("{text}"));
}

#[test]
fn check_names_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("fulmar-proxy-dist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.toml");
    let shipped = std::fs::read_to_string(dist("proxy.toml")).unwrap();
    for (bad, expect) in [
        (shipped.replace("base_dn", "basedn"), "basedn"),
        (
            shipped.replace("protocol = \"pop3\"", "protocol = \"pop2\""),
            "pop2",
        ),
        (shipped.replace("[tls]", "[tls_off]"), "tls_off"),
    ] {
        std::fs::write(&path, bad).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_fulmar-proxyd"))
            .args(["--check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{expect}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
