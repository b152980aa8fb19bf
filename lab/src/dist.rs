//! Checks of what ships: systemd units verified against the real binaries
//! at their install paths.
use std::{path::Path, process::Command};

/// In a private mount namespace, puts `bins` in /usr/local/sbin and
/// `files` (unit files or drop-in directories from `dist`) in
/// /etc/systemd/system, then runs `systemd-analyze verify` on `units` and
/// any `extra` shell lines. Err holds the output when the script fails or
/// anything it printed mentions fulmar (verify prints nothing for a clean
/// unit).
pub fn verify_units(
    bins: &[&str],
    dist: &Path,
    files: &[&str],
    units: &[&str],
    extra: &str,
) -> Result<(), String> {
    let files: Vec<String> = files
        .iter()
        .map(|f| dist.join(f).display().to_string())
        .collect();
    let script = format!(
        "set -e\n\
         mount -t tmpfs tmpfs /usr/local/sbin\n\
         mount -t tmpfs tmpfs /etc/systemd/system\n\
         cp {bins} /usr/local/sbin/\n\
         cp -r {files} /etc/systemd/system/\n\
         systemd-analyze verify --man=no {units} 2>&1\n\
         {extra}\n",
        bins = bins.join(" "),
        files = files.join(" "),
        units = units.join(" "),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let clean = !text.lines().any(|l| l.contains("fulmar"));
    if out.status.success() && clean {
        Ok(())
    } else {
        Err(text)
    }
}

/// A binary of another package of this workspace (the `fulmar` tool for a
/// daemon's tests, `fulmar-proxyd` for provisioning's), which cargo builds
/// into the directory above the test binary's. Cargo gives a test only its
/// own package's binaries (`CARGO_BIN_EXE_*`); the suite runs after
/// `cargo build --all-targets` (scripts/test.sh), which builds them all.
pub fn built(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --all-targets` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}
