//! What ships for back-end nodes: the example cluster config parses, the
//! unit passes `systemd-analyze verify` with the real binary at its install
//! path (in a private mount namespace), and `--check` names a bad config.
use std::{path::Path, process::Command};

use fulmar_failover::config::ClusterConfig;

fn dist(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(name)
}

#[test]
fn shipped_config_parses() {
    let c = ClusterConfig::load(&dist("cluster.toml")).unwrap();
    assert_eq!(c.node.len(), 3);
    assert_eq!(c.instance["mail1"].preferred, ["node1"]);
    assert_eq!(c.ttl_secs(), 2);
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    fulmar_lab::dist::verify_units(
        &[env!("CARGO_BIN_EXE_fulmar-noded")],
        &dist(""),
        &["fulmar-noded.service"],
        &["fulmar-noded.service"],
        "",
    )
    .unwrap_or_else(|text| panic!("{text}"));
}

#[test]
fn check_names_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("fulmar-noded-dist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fencing = dir.join("fencing.toml");
    std::fs::write(&fencing, "state_dir = \"/tmp\"\n").unwrap();
    let path = dir.join("cluster.toml");
    let shipped = std::fs::read_to_string(dist("cluster.toml"))
        .unwrap()
        .replace("/etc/fulmar/fencing.toml", fencing.to_str().unwrap());
    let check = |text: &str, node: &str| {
        std::fs::write(&path, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_fulmar-noded"))
            .args([
                "--check",
                "--node",
                node,
                "--config",
                path.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let ok = check(&shipped, "node1");
    assert!(ok.status.success(), "{ok:?}");
    for (bad, node, expect) in [
        (
            shipped.replace("lease_ttl = \"2s\"", "lease_ttl = \"1500ms\""),
            "node1",
            "whole seconds",
        ),
        (
            shipped.replace("preferred = [\"node1\"]", "preferred = [\"node9\"]"),
            "node1",
            "node9",
        ),
        (shipped.replace("sticky", "stiky"), "node1", "stiky"),
        (shipped.clone(), "node7", "node7"),
    ] {
        let out = check(&bad, node);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{expect}: {err}"
        );
    }
}
