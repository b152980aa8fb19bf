//! An instance's volume in the labs: a loop-mounted ext4 image with an
//! access path per node, which nodes have it mounted, and pulling it from
//! a node as a power cut would.
use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use fulmar_fencing::agents::io_barrier::attachments;

use super::{INSTANCE, NODES, Service, VIP, deliver::USER, lab_io};
use crate::{LabError, cmd};

/// Nodes whose access path of `volume` backs a mounted loop device.
pub fn mounted_by(volume: &Path) -> BTreeSet<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Fields after " - ": fstype, source, options.
    let sources: BTreeSet<&str> = info
        .lines()
        .filter_map(|l| l.split_once(" - ")?.1.split(' ').nth(1))
        .collect();
    attachments(volume)
        .into_iter()
        .filter(|a| sources.contains(format!("/dev/{}", a.device).as_str()))
        .filter_map(|a| a.node())
        .collect()
}
/// A 64 MiB ext4 volume holding a fulmar-maild instance root (its config
/// and the client's account, made by `fulmar-maild account-create`, which
/// also checks the config) or slapd's config and database; and an access
/// path for every node.
pub(super) fn prepare(
    volume: &Path,
    mountpoint: &Path,
    service: Service,
    maild: &Path,
) -> Result<(), LabError> {
    make(volume, mountpoint, &NODES, || {
        if service == Service::Slapd {
            return super::ldap::prepare(mountpoint);
        }
        let config = mountpoint.join("config");
        fs::create_dir_all(&config).map_err(lab_io(&config))?;
        let path = config.join("mail.toml");
        // LMTP for the client, IMAP for the probe; no directory: nobody
        // logs in, mail is only delivered. (fulmar-lab cannot depend on
        // fulmar-maild, whose tests use the lab: a few keys by hand, which
        // fulmar-maild refuses by name if one is ever renamed.)
        let config_text =
            format!("instance = \"{INSTANCE}\"\nlmtp = \"{VIP}:24\"\nimap = \"{VIP}:143\"\n");
        fs::write(&path, config_text).map_err(lab_io(&path))?;
        let mnt = mountpoint.to_string_lossy();
        run(
            &maild.to_string_lossy(),
            &["--root", &mnt, "account-create", USER],
        )
        .map(|_| ())
    })
}

fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut c = Command::new(program);
    c.args(args);
    cmd::checked(c)
}

/// A fresh 64 MiB ext4 image at `volume`/disk.img, filled by `fill` while
/// mounted at `mountpoint`, with an access path (`access/NODE.img`, what
/// the I/O barrier revokes) for each of `nodes`.
pub fn make<E: From<LabError>>(
    volume: &Path,
    mountpoint: &Path,
    nodes: &[&str],
    fill: impl FnOnce() -> Result<(), E>,
) -> Result<(), E> {
    let access = volume.join("access");
    fs::create_dir_all(&access).map_err(lab_io(&access))?;
    fs::create_dir_all(mountpoint).map_err(lab_io(mountpoint))?;
    let disk = volume.join("disk.img");
    fs::File::create(&disk)
        .and_then(|f| f.set_len(64 << 20))
        .map_err(lab_io(&disk))?;
    let disk_s = disk.to_string_lossy().into_owned();
    let mnt = mountpoint.to_string_lossy().into_owned();
    run("mkfs.ext4", &["-q", "-F", &disk_s])?;
    run("mount", &["-o", "loop", &disk_s, &mnt])?;
    let result = fill();
    run("umount", &[&mnt])?;
    result?;
    for n in nodes {
        let path = access.join(format!("{n}.img"));
        fs::hard_link(&disk, &path).map_err(lab_io(&path))?;
    }
    Ok(())
}

/// Takes the volume from `node` (every node with None) as a power cut
/// would: its mount goes (lazily, if busy) and its loop devices are
/// detached; returns once none is left. The node's processes must be
/// dead already.
pub fn release(volume: &Path, mountpoint: &Path, node: Option<&str>) -> Result<(), LabError> {
    let ours = |a: &fulmar_fencing::agents::io_barrier::Attachment| {
        node.is_none_or(|n| a.node().as_deref() == Some(n))
    };
    let mounted = mounted_by(volume);
    if mounted.iter().any(|m| node.is_none_or(|n| n == m)) {
        run("umount", &["-l", &mountpoint.to_string_lossy()])?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = attachments(volume)
            .into_iter()
            .filter(ours)
            .map(|a| a.device)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LabError::NotReady(format!(
                "loop devices {left:?} of {} stay attached",
                volume.display()
            )));
        }
        for device in left {
            let _ = run("losetup", &["-d", &format!("/dev/{device}")]);
        }
        sleep(Duration::from_millis(20));
    }
}
