//! What ships for real servers (the proxies): fulmar-realserver.service,
//! which runs `fulmar realserver`, passes `systemd-analyze verify` with the
//! real binary at its install path (in a private mount namespace); the
//! admin.toml example is what `fulmar -A` reads.
use std::path::Path;

#[test]
fn realserver_unit_passes_systemd_analyze_verify() {
    fulmar_lab::dist::verify_units(
        &[env!("CARGO_BIN_EXE_fulmar")],
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("dist"),
        &["fulmar-realserver.service"],
        &["fulmar-realserver.service"],
        "",
    )
    .unwrap_or_else(|text| panic!("{text}"));
}

#[test]
fn the_admin_config_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/admin.toml");
    let config =
        fulmar_proxy::admin::client::ClientConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.port, 7071);
    assert_eq!(config.tls_name, "mail.example.com");
}
