//! Fencing topology against real peers: failing levels (wrong password,
//! unreachable board, hung agent) fall through to the next; all failing
//! is "unfenceable" until an operator confirms; the built-in agents also
//! work as a fence-agents agent (fence_fulmar) run by the convention.
mod support;

use std::fs;

use fulmar_fencing::{Fencer, FencingConfig, Outcome, agents::io_barrier};
use support::*;

fn config(site: &Site, volume: &std::path::Path) -> FencingConfig {
    let hung = site.path("fence_hung");
    fs::write(&hung, "#!/bin/sh\nexec sleep 60\n").unwrap();
    fs::set_permissions(&hung, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    FencingConfig::parse(&format!(
        r#"
state_dir = "{state}"

[device.victim-ipmi]
type = "ipmi"
address = "{BMC}"
username = "{IPMI_USER}"
password = "not-the-password"

[device.victim-redfish]
# Nobody at this address: the connection hangs until the timeout.
type = "redfish"
address = "https://198.18.8.99"
username = "fence"
password = "x"
timeout = "2s"

[device.victim-lab]
type = "lab-host"
netns = "{netns}"

[device.victim-volume]
type = "io-barrier"
volume = "{volume}"
node = "victim"

[device.hung]
type = "agent"
agent = "{hung}"
timeout = "1s"

[node.victim]
delay = "500ms"
levels = [["victim-ipmi"], ["victim-redfish"], ["victim-lab", "victim-volume"]]

[node.doomed]
levels = [["hung"], ["victim-ipmi"]]
"#,
        state = site.path("state").display(),
        netns = site.lab.netns("victim"),
        volume = volume.display(),
        hung = hung.display(),
    ))
    .unwrap()
}

#[test]
fn failing_levels_fall_through_and_all_failing_is_unfenceable() {
    let mut site = Site::new();
    site.start_ipmi();
    site.lab
        .spawn("victim", "sleeper", "sleep", &["1000"])
        .unwrap();
    let volume = site.path("volume");
    fs::create_dir_all(&volume).unwrap();
    fs::write(io_barrier::disk(&volume), b"").unwrap();
    io_barrier::grant(&volume, "victim").unwrap();
    let fencer = Fencer::new(config(&site, &volume));

    let (victim, doomed) = site.on_control(move || async move {
        let victim = fencer.fence("victim").await.unwrap();
        let doomed = fencer.fence("doomed").await.unwrap();
        let confirmed = fencer.confirm_manual("doomed", "alice").unwrap();
        assert!(confirmed.safe_to_take_over());
        let history = fencer.history().records().unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(fencer.history().last("doomed").unwrap().unwrap(), confirmed);
        (victim, doomed)
    });

    // victim: level 1 (wrong password) and 2 (unreachable) failed, level 3
    // (both devices) fenced it, after its delay.
    assert_eq!(victim.outcome, Outcome::Fenced { level: 3 }, "{victim:#?}");
    assert!(victim.safe_to_take_over());
    assert!(
        victim.delay_ms == 500 && victim.duration_ms >= 2500,
        "{victim:#?}"
    );
    let [l1, l2, l3] = &victim.levels[..] else {
        panic!("{victim:#?}")
    };
    assert!(
        !l1.ok && l1.devices[0].error.as_ref().unwrap().contains("RMCP+"),
        "{l1:?}"
    );
    assert!(
        !l2.ok
            && l2.devices[0]
                .error
                .as_ref()
                .unwrap()
                .contains("no answer within 2s"),
        "{l2:?}"
    );
    assert!(l2.devices[0].duration_ms >= 2000, "{l2:?}");
    assert!(
        l3.ok && l3.devices.len() == 2 && l3.devices.iter().all(|d| d.ok),
        "{l3:?}"
    );
    assert_eq!(
        site.lab
            .check("ctl", "ip", &["netns", "pids", &site.lab.netns("victim")])
            .unwrap(),
        ""
    );
    assert!(!io_barrier::access_path(&volume, "victim").exists());

    // doomed: the hung agent timed out, the IPMI password is wrong.
    let Outcome::Unfenceable { reasons } = &doomed.outcome else {
        panic!("{doomed:#?}")
    };
    assert!(!doomed.safe_to_take_over());
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("level 1 hung: no answer within 1s"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("level 2 victim-ipmi:"),
        "{reasons:?}"
    );
    assert!(
        doomed
            .summary()
            .starts_with("unfenceable: manual action needed")
    );
    // The history holds no password.
    let text = fs::read_to_string(site.path("state/fence-history.jsonl")).unwrap();
    assert!(
        !text.contains("not-the-password") && text.contains("manually-confirmed"),
        "{text}"
    );
}

#[test]
fn fence_fulmar_speaks_the_convention() {
    let mut site = Site::new();
    site.lab
        .spawn("victim", "sleeper", "sleep", &["1000"])
        .unwrap();
    let bin = env!("CARGO_BIN_EXE_fence_fulmar");
    // Run by our own external-agent runner, as stonithd would run it.
    let fencer = Fencer::new(
        FencingConfig::parse(&format!(
            "state_dir = \"{}\"\n[device.lab]\ntype = \"agent\"\nagent = \"{bin}\"\n\
             options = {{ agent = \"lab-host\", netns = \"{}\" }}\n[node.victim]\nlevels = [[\"lab\"]]\n",
            site.path("state").display(),
            site.lab.netns("victim")
        ))
        .unwrap(),
    );
    let record = site.on_control(move || async move { fencer.fence("victim").await.unwrap() });
    assert_eq!(record.outcome, Outcome::Fenced { level: 1 }, "{record:#?}");
    assert_eq!(
        site.lab
            .check("ctl", "ip", &["netns", "pids", &site.lab.netns("victim")])
            .unwrap(),
        ""
    );
    // Exit codes and metadata, called directly.
    let status = std::process::Command::new(bin)
        .args(["-o", "status", "--agent=lab-host"])
        .arg(format!("--netns={}", site.lab.netns("victim")))
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2), "{status:?}");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "Status: OFF\n");
    let metadata = std::process::Command::new(bin)
        .args(["-o", "metadata"])
        .output()
        .unwrap();
    let xml = String::from_utf8_lossy(&metadata.stdout);
    assert!(
        xml.contains("<resource-agent name=\"fence_fulmar\"")
            && xml.contains("<action name=\"off\" />"),
        "{xml}"
    );
    let bad = std::process::Command::new(bin)
        .args(["--action=off", "--agent=nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown agent \"nope\""));
}
