//! An I/O barrier: cuts one node off one instance volume, the way LUN
//! masking on a SAN (or fence_scsi's reservation preempt) does.
//!
//! A volume is a directory holding the disk (`disk.img`) and one access
//! path per node allowed to use it (`access/NODE.img`, a hard link to the
//! disk): a node attaches the volume only through its own path, so a
//! removed path is a revoked grant. `off` removes the path, then for every
//! loop device attached through it shuts its file system down at once
//! (FS_IOC_SHUTDOWN without flushing the journal: nothing more from that
//! node reaches the disk, later writes fail with EIO) and detaches it.
//! `status` is off when the path is gone and nothing is mounted through it;
//! `on` grants access again.
//!
//! In the lab every node shares one kernel, so the barrier can act on the
//! node's own mount. On real clusters use the storage's own barrier
//! (fence_scsi, fence_mpath, a fabric switch agent) through the
//! fence-agents convention.
use std::{
    fs, io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use crate::{
    config::IoBarrierConfig,
    device::{Action, Answer, DeviceError, DeviceResult, PowerState, failed},
};

/// `FS_IOC_SHUTDOWN` (= EXT4_IOC_SHUTDOWN, XFS_IOC_GOINGDOWN): _IOR('X', 125, u32).
const FS_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
/// Stop at once; do not even flush the journal.
const SHUTDOWN_NOLOGFLUSH: u32 = 2;

#[derive(Debug)]
pub struct IoBarrier {
    volume: PathBuf,
    node: String,
}

/// The disk of a volume.
pub fn disk(volume: &Path) -> PathBuf {
    volume.join("disk.img")
}

/// `node`'s access path to a volume: what it must attach (losetup).
pub fn access_path(volume: &Path, node: &str) -> PathBuf {
    volume.join("access").join(format!("{node}.img"))
}

/// Grants `node` access to `volume` (idempotent).
pub fn grant(volume: &Path, node: &str) -> io::Result<()> {
    let path = access_path(volume, node);
    fs::create_dir_all(path.parent().expect("access dir"))?;
    match fs::hard_link(disk(volume), &path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// A loop device attached through `path`: (name, "major:minor").
fn loop_devices(path: &Path) -> Vec<(String, String)> {
    let want = path.to_string_lossy();
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            let backing = fs::read_to_string(dir.join("loop/backing_file")).ok()?;
            // The kernel appends " (deleted)" once the path is unlinked.
            let backing = backing.trim_end().trim_end_matches(" (deleted)");
            (backing == want).then(|| {
                let dev = fs::read_to_string(dir.join("dev")).unwrap_or_default();
                (name, dev.trim().to_string())
            })
        })
        .collect()
}

/// Mount points of the device `major:minor` (this mount namespace).
fn mounts_of(dev: &str) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            if fields.get(2) != Some(&dev) {
                return None;
            }
            fields.get(4).map(|m| PathBuf::from(unescape(m)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(field: &str) -> String {
    let mut out = Vec::new();
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let code = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(b) = code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn shutdown_fs(mount: &Path) -> io::Result<()> {
    let dir = fs::File::open(mount)?;
    let flags = SHUTDOWN_NOLOGFLUSH;
    // SAFETY: the ioctl reads one u32 from a valid pointer.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_SHUTDOWN, &flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn detach(mount: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// LOOP_CLR_FD. With users left (files open on a lazily unmounted file
/// system) the kernel marks the device autoclear and detaches it when the
/// last one goes.
fn clear_loop(name: &str) {
    const LOOP_CLR_FD: libc::c_ulong = 0x4c01;
    if let Ok(dev) = fs::File::open(format!("/dev/{name}")) {
        // SAFETY: an argument-less ioctl on an open loop device.
        unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD, 0) };
    }
}

impl IoBarrier {
    pub fn new(config: &IoBarrierConfig) -> Self {
        IoBarrier {
            volume: config.volume.clone(),
            node: config.node.clone(),
        }
    }

    fn path(&self) -> PathBuf {
        access_path(&self.volume, &self.node)
    }

    pub async fn run(&self, action: Action) -> DeviceResult {
        if !disk(&self.volume).exists() {
            return Err(failed(format!(
                "no volume at {}",
                disk(&self.volume).display()
            )));
        }
        match action {
            Action::Off => self.revoke().map(|_| Answer::Done),
            Action::On => grant(&self.volume, &self.node)
                .map(|_| Answer::Done)
                .map_err(|e| failed(format!("granting {}: {e}", self.path().display()))),
            Action::Status => Ok(Answer::Power(self.state())),
            Action::Monitor => Ok(Answer::Done),
            Action::List => Ok(Answer::Plugs(vec![self.node.clone()])),
            Action::Reboot | Action::Metadata => Err(DeviceError::Unsupported(action)),
        }
    }

    fn revoke(&self) -> Result<(), DeviceError> {
        let path = self.path();
        // The devices first: the kernel only names the path they were
        // attached by while it exists or is shown "(deleted)".
        let devices = loop_devices(&path);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(failed(format!("removing {}: {e}", path.display())));
            }
            _ => {}
        }
        for (name, dev) in devices {
            for mount in mounts_of(&dev) {
                shutdown_fs(&mount).map_err(|e| {
                    failed(format!(
                        "shutting down {} on /dev/{name}: {e}",
                        mount.display()
                    ))
                })?;
                detach(&mount)
                    .map_err(|e| failed(format!("unmounting {}: {e}", mount.display())))?;
            }
            clear_loop(&name);
        }
        Ok(())
    }

    fn state(&self) -> PowerState {
        let path = self.path();
        let mounted = loop_devices(&path)
            .iter()
            .any(|(_, dev)| !mounts_of(dev).is_empty());
        // A leftover link to another file is no grant either.
        let granted = fs::metadata(&path)
            .ok()
            .zip(fs::metadata(disk(&self.volume)).ok())
            .is_some_and(|(a, d)| a.ino() == d.ino());
        if granted || mounted {
            PowerState::On
        } else {
            PowerState::Off
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/x\\134y"), "/x\\y");
    }
}
