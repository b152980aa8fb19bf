//! The instance's volume in the cluster lab: a loop-mounted ext4 image with
//! an access path per node, and which nodes have it mounted.
use std::{collections::BTreeSet, fs, path::Path, process::Command};

use fulmar_fencing::agents::io_barrier::attachments;

use super::{INSTANCE, NODES, VIP, lab_io};
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
/// A 64 MiB ext4 volume with the Dovecot config and mail directory, and an
/// access path for every node.
pub(super) fn prepare(volume: &Path, mountpoint: &Path) -> Result<(), LabError> {
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
    let conf = format!(
        "protocols = lmtp imap\nlisten = {VIP}\n\
         base_dir = {mnt}/run\nstate_dir = {mnt}/state\ninstance_name = {INSTANCE}\n\
         log_path = {mnt}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n\
         mail_location = maildir:{mnt}/mail/%u\nfirst_valid_uid = 1\n\
         mail_fsync = always\n\
         passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
         userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={mnt}/mail/%u allow_all_users=yes\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    port = 143\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service lmtp {{\n  inet_listener lmtp {{\n    port = 24\n  }}\n}}\n"
    );
    let result = (|| {
        let path = mountpoint.join("dovecot.conf");
        fs::write(&path, conf).map_err(lab_io(&path))?;
        let mail = mountpoint.join("mail");
        fs::create_dir_all(&mail).map_err(lab_io(&mail))?;
        run("chown", &["dovecot:dovecot", &mail.to_string_lossy()]).map(|_| ())
    })();
    run("umount", &[&mnt])?;
    result?;
    for n in NODES {
        let path = access.join(format!("{n}.img"));
        fs::hard_link(&disk, &path).map_err(lab_io(&path))?;
    }
    Ok(())
}
