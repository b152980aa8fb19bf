//! What ships for a mail instance: the unit passes `systemd-analyze verify`
//! with the real binary at its install path (in a private mount namespace),
//! and the example mail.toml parses with every limit it states at the
//! code's default, its hops in TLS.
use std::path::Path;

use fulmar_maild::config::MailConfig;

#[test]
fn example_config_states_the_defaults() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/mail.toml"))
            .unwrap();
    let shipped = MailConfig::parse(&text).unwrap();
    let minimal = MailConfig::parse("instance = \"mail1\"\nlmtp = \"127.0.0.1:24\"\n").unwrap();
    let limits = |c: &MailConfig| {
        format!(
            "{} {} {} {} {:?} {:?} {} {} {} {} {:?}",
            c.max_message_size,
            c.max_recipients,
            c.max_line,
            c.max_prelogin_bytes,
            c.prelogin_timeout,
            c.delivery_idle_timeout,
            c.max_mime_depth,
            c.max_mime_parts,
            c.max_mailboxes,
            c.max_subscriptions,
            c.quota
        )
    };
    assert_eq!(limits(&shipped), limits(&minimal));
    assert!(shipped.imap.is_none() && shipped.pop3.is_none());
    assert!(shipped.imaps.is_some() && shipped.pop3s.is_some() && shipped.lmtps.is_some());
    let d = shipped.directory.unwrap();
    assert!(d.tls_ca.is_some() && d.urls.iter().all(|u| u.starts_with("ldaps://")));
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    fulmar_lab::dist::verify_units(
        &[env!("CARGO_BIN_EXE_fulmar-maild")],
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dist"),
        &["fulmar-maild@.service"],
        &["fulmar-maild@mail1.service"],
        "",
    )
    .unwrap_or_else(|text| panic!("{text}"));
}
