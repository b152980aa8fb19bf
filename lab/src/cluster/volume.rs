//! The instance's volume in the cluster lab: a loop-mounted ext4 image with
//! an access path per node, and which nodes have it mounted.
use std::{collections::BTreeSet, fs, path::Path, process::Command};

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
    let access = volume.join("access");
    fs::create_dir_all(&access).map_err(lab_io(&access))?;
    fs::create_dir_all(mountpoint).map_err(lab_io(mountpoint))?;
    let disk = volume.join("disk.img");
    fs::File::create(&disk)
        .and_then(|f| f.set_len(64 << 20))
        .map_err(lab_io(&disk))?;
    let run = |program: &str, args: &[&str]| {
        let mut c = Command::new(program);
        c.args(args);
        cmd::checked(c)
    };
    let disk_s = disk.to_string_lossy().into_owned();
    let mnt = mountpoint.to_string_lossy().into_owned();
    run("mkfs.ext4", &["-q", "-F", &disk_s])?;
    run("mount", &["-o", "loop", &disk_s, &mnt])?;
    let result = (|| {
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
        let maild = maild.to_string_lossy();
        run(&maild, &["--root", &mnt, "account-create", USER]).map(|_| ())
    })();
    run("umount", &[&mnt])?;
    result?;
    for n in NODES {
        let path = access.join(format!("{n}.img"));
        fs::hard_link(&disk, &path).map_err(lab_io(&path))?;
    }
    Ok(())
}
