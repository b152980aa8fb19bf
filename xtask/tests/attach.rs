//! `cargo xtask build-ebpf`, `attach` and `detach` as an operator runs them,
//! on a veth inside a lab host.
use std::{path::Path, process::Command};

use fulmar_lab::{Lab, LabSpec, leftovers};

fn xtask(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn build_ebpf_writes_the_object() {
    let out = std::env::temp_dir().join(format!("fulmar-xdp-{}.o", std::process::id()));
    let (ok, text) = xtask(&["build-ebpf", "--out", out.to_str().unwrap()]);
    assert!(ok, "{text}");
    let object = std::fs::read(&out).unwrap();
    assert_eq!(&object[..4], b"\x7fELF");
    // e_machine 247 = EM_BPF.
    assert_eq!(u16::from_le_bytes([object[18], object[19]]), 247);
    for program in ["fulmar_lb", "fulmar_sweep"] {
        assert!(
            object
                .windows(program.len())
                .any(|w| w == program.as_bytes()),
            "{program}"
        );
    }
    std::fs::remove_file(out).unwrap();
}

#[test]
fn attach_pins_and_detach_leaves_nothing() {
    let spec = LabSpec::lan(&[("lb", "198.18.9.1/24"), ("peer", "198.18.9.2/24")]);
    let lab = Lab::build(&spec).unwrap();
    let pin_dir = format!("/sys/fs/bpf/{}-attach", lab.prefix());
    let ns = lab.netns("lb");

    let (ok, text) = xtask(&[
        "attach",
        "--iface",
        "eth0",
        "--netns",
        &ns,
        "--pin-dir",
        &pin_dir,
        "--flows",
        "4096",
    ]);
    assert!(ok, "{text}");
    let link = lab.check("lb", "ip", &["link", "show", "eth0"]).unwrap();
    assert!(
        link.contains("prog/xdp") && link.contains("fulmar_lb"),
        "{link}"
    );
    for name in fulmar_common::map_names::ALL {
        assert!(Path::new(&pin_dir).join(name).exists(), "map {name} pinned");
    }
    assert!(Path::new(&pin_dir).join("link_eth0").exists());

    // Attaching twice is refused with the fix in the message.
    let (ok, text) = xtask(&[
        "attach",
        "--iface",
        "eth0",
        "--netns",
        &ns,
        "--pin-dir",
        &pin_dir,
    ]);
    assert!(!ok && text.contains("detach"), "{text}");
    // A missing interface names itself.
    let (ok, text) = xtask(&[
        "attach",
        "--iface",
        "nosuch0",
        "--netns",
        &ns,
        "--pin-dir",
        &format!("{pin_dir}x"),
    ]);
    assert!(!ok && text.contains("nosuch0"), "{text}");

    let (ok, text) = xtask(&["detach", "--iface", "eth0", "--pin-dir", &pin_dir]);
    assert!(ok, "{text}");
    let link = lab.check("lb", "ip", &["link", "show", "eth0"]).unwrap();
    assert!(!link.contains("xdp"), "{link}");
    assert!(!Path::new(&pin_dir).exists());
    let prefix = lab.prefix().to_string();
    drop(lab);
    assert_eq!(leftovers(&prefix), Vec::<String>::new());
}
