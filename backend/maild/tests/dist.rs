//! What ships for a mail instance: the unit passes `systemd-analyze verify`
//! with the real binary at its install path (in a private mount namespace).
use std::path::Path;

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
