//! What ships for provisioning: the example config parses.
use std::path::Path;

fn dist(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(name)
}

#[test]
fn shipped_provisioning_config_parses() {
    use fulmar_provision::{config::ProvisionConfig, placement::Algorithm};
    let c = ProvisionConfig::load(&dist("provision.toml")).unwrap();
    assert_eq!(c.placement, Algorithm::LeastUsed);
    assert_eq!(c.instance.len(), 3);
    assert!(c.instance["mail0"].closed);
    // Every hop in TLS, checked against a CA.
    assert_eq!(c.imap_address("mail2").unwrap(), "198.18.21.22:993");
    assert!(c.imap.tls_ca.is_some() && c.directory.tls_ca.is_some());
    assert!(c.directory.url.starts_with("ldaps://"));
}
