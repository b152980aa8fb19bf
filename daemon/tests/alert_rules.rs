//! The shipped Prometheus alert rules: `promtool check rules` accepts them,
//! `promtool test rules` passes one unit test per alert, and every alert's
//! test catches that alert's absence (each is removed in turn from a copy,
//! and the tests must then fail naming it).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/prometheus")
}

fn promtool(args: &[&str], cwd: &Path) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/bootstrap.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn alerts(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_string)
        .collect()
}

/// The rules without `alert`'s block (its `- alert:` line up to the next
/// rule or group).
fn without(rules: &str, alert: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in rules.lines() {
        let t = line.trim();
        if t.starts_with("- alert: ") || t.starts_with("- name: ") {
            skipping = t == format!("- alert: {alert}");
        }
        if !skipping {
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "fulmar.rules.yml"], &dir());
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "fulmar.rules.test.yml"], &dir());
    assert!(ok, "{out}");
}

#[test]
fn every_alert_has_a_test_that_fails_without_it() {
    let rules = std::fs::read_to_string(dir().join("fulmar.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir().join("fulmar.rules.test.yml")).unwrap();
    let names = alerts(&rules);
    assert!(names.len() >= 10, "{names:?}");
    let work = std::env::temp_dir().join(format!("fulmar-alerts-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("fulmar.rules.test.yml"), &tests).unwrap();
    for name in &names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no unit test"
        );
        let cut = without(&rules, name);
        assert_eq!(alerts(&cut).len(), names.len() - 1);
        std::fs::write(work.join("fulmar.rules.yml"), cut).unwrap();
        let (ok, out) = promtool(&["test", "rules", "fulmar.rules.test.yml"], &work);
        assert!(!ok, "the tests pass without {name}:\n{out}");
        assert!(
            out.contains(&format!("alertname: {name}")),
            "{name}:\n{out}"
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
