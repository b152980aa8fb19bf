//! `fulmar fence`: list, status, fence by hand, unfenceable, manual
//! confirmation and history, with an I/O-barrier device on a volume and
//! an agent that always fails.
use std::{fs, path::PathBuf, process::Command};

fn fulmar(config: &PathBuf, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fulmar"))
        .arg("-F")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fence_by_hand_unfenceable_and_confirm() {
    let dir = std::env::temp_dir().join(format!("fulmar-fence-cli-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let volume = dir.join("volume");
    fs::create_dir_all(volume.join("access")).unwrap();
    fs::write(volume.join("disk.img"), b"").unwrap();
    fs::hard_link(volume.join("disk.img"), volume.join("access/node1.img")).unwrap();
    let config = dir.join("fencing.toml");
    fs::write(
        &config,
        format!(
            "state_dir = \"{state}\"\n\
             [device.san]\ntype = \"io-barrier\"\nvolume = \"{volume}\"\nnode = \"node1\"\n\
             [device.pdu]\ntype = \"agent\"\nagent = \"false\"\npassword = \"pdu-secret\"\n\
             [node.node1]\nlevels = [[\"san\"]]\n\
             [node.node2]\ndelay = \"100ms\"\nlevels = [[\"pdu\"]]\n",
            state = dir.join("state").display(),
            volume = volume.display()
        ),
    )
    .unwrap();

    let (ok, out, _) = fulmar(&config, &["fence", "dev", "sh"]);
    assert!(
        ok && out.contains("device san type io-barrier")
            && out.contains("node node2 delay 100ms levels 1: pdu"),
        "{out}"
    );
    assert!(!out.contains("pdu-secret"));
    let (ok, out, _) = fulmar(&config, &["fence", "status", "san"]);
    assert!(ok && out == "san: on\n", "{out}");

    let (ok, out, err) = fulmar(&config, &["fence", "node", "node1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("node node1 fenced by level 1") && out.contains("level 1 san off, confirmed"),
        "{out}"
    );
    assert!(!volume.join("access/node1.img").exists());

    let (ok, out, err) = fulmar(&config, &["fence", "node", "node2"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("node2 is unfenceable: manual action needed (level 1 pdu: false off: exit 1"),
        "{err}"
    );
    let (ok, out, _) = fulmar(&config, &["-j", "fence", "confirm", "node2"]);
    assert!(
        ok && out.contains("\"result\":\"manually-confirmed\""),
        "{out}"
    );

    let (ok, out, _) = fulmar(&config, &["fence", "hist", "node2"]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(" node node2 ")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("unfenceable") && lines[1].contains("manual fence confirmed by"),
        "{out}"
    );
    let (ok, _, err) = fulmar(&config, &["fence", "node", "node9"]);
    assert!(
        !ok && err.contains("node \"node9\" has no fencing configuration"),
        "{err}"
    );
    let (ok, _, err) = fulmar(&config, &["fence", "sing"]);
    assert!(
        !ok && err.contains("unknown fence command \"sing\""),
        "{err}"
    );

    let (ok, _, _) = fulmar(&config, &["fence", "on", "san"]);
    assert!(ok && volume.join("access/node1.img").exists());
    let _ = fs::remove_dir_all(&dir);
}
