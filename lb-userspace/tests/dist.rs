//! What ships for the nodes: the config file is what the code reads, and
//! the systemd units pass `systemd-analyze verify` with the real binaries
//! at their install paths (inside a private mount namespace, so the host's
//! /usr/local/sbin and /etc/systemd/system are never touched).
use std::{path::Path, process::Command};

use fulmar_lb::config::DaemonConfig;

fn dist(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(name)
}

#[test]
fn shipped_config_is_the_documented_default() {
    let config = DaemonConfig::load(&dist("lb.toml")).unwrap();
    assert_eq!(config, DaemonConfig::default());
}

#[test]
fn units_pass_systemd_analyze_verify() {
    fulmar_lab::dist::verify_units(
        &[env!("CARGO_BIN_EXE_fulmar-lbd")],
        &dist(""),
        &["fulmar-lbd.service", "fulmar-lbd.service.d"],
        &["fulmar-lbd.service"],
        "systemd-analyze cat-config systemd/system/fulmar-lbd.service.d/10-kernel-tuning.conf >/dev/null",
    )
    .unwrap_or_else(|text| panic!("{text}"));
}

/// `fulmar-lbd --check`: success, and what it wrote to stderr.
fn check(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fulmar-lbd"))
        .args(["--check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_bad_config_names_the_key() {
    let dir = std::env::temp_dir().join(format!("fulmar-dist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lb.toml");
    std::fs::write(&path, "[health]\nfall = 0\n").unwrap();
    let (ok, err) = check(&path);
    assert!(!ok && err.contains("health.rise / health.fall"), "{err}");
    std::fs::write(
        &path,
        format!("services_file = \"{}\"\n", dir.join("s.conf").display()),
    )
    .unwrap();
    std::fs::write(
        dir.join("s.conf"),
        "service add 198.18.1.100:25\nreal add 198.18.1.100:25 198.18.1.11 wieght 2\n",
    )
    .unwrap();
    let (ok, err) = check(&path);
    assert!(
        !ok && err.contains("line 2") && err.contains("weight"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
