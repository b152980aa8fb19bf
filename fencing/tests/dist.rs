//! The shipped example config parses with the code's rules.
#[test]
fn shipped_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/fencing.toml");
    let config = fulmar_fencing::FencingConfig::load(std::path::Path::new(path)).unwrap();
    assert_eq!(config.node["node1"].levels.len(), 2);
    assert_eq!(
        config.node["node1"].delay,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(config.device.len(), 5);
}
