//! An I/O barrier: cuts one node off one instance volume, the way LUN
//! masking on a SAN (or fence_scsi's reservation preempt) does.
//!
//! A volume is a directory holding the disk (`disk.img`) and one access
//! path per node allowed to use it (`access/NODE.img`, a hard link to the
//! disk): a node attaches the volume only through its own path, so a
//! removed path is a revoked grant. `off` removes the path, then for every
//! loop device attached through it shuts its file system down at once
//! (FS_IOC_SHUTDOWN without flushing the journal: nothing more from that
//! node reaches the disk, later writes fail with EIO), unmounts it lazily
//! and clears the device, and answers only once the device is gone.
//!
//! That last wait is the barrier. LOOP_CLR_FD on a device still in use
//! (a dying process of the node still holds a file on the file system)
//! only marks it autoclear and returns 0 at once; the device, its queued
//! I/O and its shut-down ext4 super block live on until the last user
//! goes. Answering `off` before then let the next node attach and mount
//! the volume beside a device that could still reach the disk: two
//! writers. The kernel drains a loop device's queue before it detaches
//! it, so a gone device is a node that can no longer write.
//! `status` is off when the path is gone and no device is attached
//! through it; `on` grants access again.
//!
//! In the lab every node shares one kernel, so the barrier can act on the
//! node's own mount. On real clusters use the storage's own barrier
//! (fence_scsi, fence_mpath, a fabric switch agent) through the
//! fence-agents convention.
//!
//! `fencing/experiments/two_live_mounts.py` shows what the wait prevents:
//! an ext4 instance nobody shut down, alive beside the next node's
//! mount, corrupts the image within a few takeovers.
use std::{
    fs, io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
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

/// A loop device attached to a file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The device name (`loop3`).
    pub device: String,
    /// Its "major:minor".
    pub dev: String,
    /// The file it is attached to (an access path or the disk itself).
    pub backing: PathBuf,
}

impl Attachment {
    /// The node whose access path it is attached through, if any.
    pub fn node(&self) -> Option<String> {
        let access = self.backing.parent()?;
        (access.file_name()? == "access")
            .then(|| self.backing.file_stem())
            .flatten()
            .map(|n| n.to_string_lossy().into_owned())
    }
}

/// Every loop device attached now, with the file behind it.
fn all_loop_devices() -> Vec<Attachment> {
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let device = e.file_name().to_string_lossy().into_owned();
            let backing = backing_of(&device)?;
            let dev = fs::read_to_string(e.path().join("dev")).unwrap_or_default();
            Some(Attachment {
                device,
                dev: dev.trim().to_string(),
                backing,
            })
        })
        .collect()
}

/// Loop devices attached through `path`.
fn loop_devices(path: &Path) -> Vec<Attachment> {
    all_loop_devices()
        .into_iter()
        .filter(|a| a.backing == path)
        .collect()
}

/// Loop devices attached to `volume` by any node (through an access
/// path) or directly to its disk. The lab's nodes share one kernel, so
/// this sees every node; on a real cluster it sees this node only.
pub fn attachments(volume: &Path) -> Vec<Attachment> {
    let access = volume.join("access");
    let disk = disk(volume);
    all_loop_devices()
        .into_iter()
        .filter(|a| a.backing.parent() == Some(access.as_path()) || a.backing == disk)
        .collect()
}

/// The file a loop device is attached to; None when it is not a bound
/// loop device (a cleared one loses its `loop/` directory).
fn backing_of(device: &str) -> Option<PathBuf> {
    let backing = fs::read_to_string(format!("/sys/block/{device}/loop/backing_file")).ok()?;
    // The kernel appends " (deleted)" once the path is unlinked.
    Some(PathBuf::from(
        backing.trim_end().trim_end_matches(" (deleted)"),
    ))
}

/// Whether `device` is still attached to `backing` (a reused device
/// names another file).
fn still_attached(device: &str, backing: &Path) -> bool {
    backing_of(device).is_some_and(|b| b == backing)
}

/// The file the loop device `device` (`loop3` or `/dev/loop3`) is bound
/// to, if any: LOOP_CLR_FD returns before the kernel lets go of a device
/// something still opens, so a detach is done only once the device is no
/// longer bound to the same file (it may be bound to another already: the
/// next attachment anywhere may take the freed device).
pub fn bound_to(device: &str) -> Option<PathBuf> {
    backing_of(device.trim_start_matches("/dev/"))
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
fn clear_loop(device: &fs::File) {
    const LOOP_CLR_FD: libc::c_ulong = 0x4c01;
    // SAFETY: an argument-less ioctl on an open loop device.
    unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD, 0) };
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
            Action::Off => self.revoke().await.map(|_| Answer::Done),
            Action::On => grant(&self.volume, &self.node)
                .map(|_| Answer::Done)
                .map_err(|e| failed(format!("granting {}: {e}", self.path().display()))),
            Action::Status => Ok(Answer::Power(self.state())),
            Action::Monitor => Ok(Answer::Done),
            Action::List => Ok(Answer::Plugs(vec![self.node.clone()])),
            Action::Reboot | Action::Metadata => Err(DeviceError::Unsupported(action)),
        }
    }

    async fn revoke(&self) -> Result<(), DeviceError> {
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
        for a in &devices {
            // Held open, the device cannot be released and given to another
            // attachment while the barrier acts on it; checked after the
            // open, it is this path's. Named only, a device freed meanwhile
            // and taken by the next node would be shut down and cleared
            // under that node (the barrier tests' cleanup did exactly that
            // to each other's mounts: "can't read superblock").
            let Ok(held) = fs::File::open(format!("/dev/{}", a.device)) else {
                continue;
            };
            if !still_attached(&a.device, &path) {
                continue;
            }
            for mount in mounts_of(&a.dev) {
                shutdown_fs(&mount).map_err(|e| {
                    failed(format!(
                        "shutting down {} on /dev/{}: {e}",
                        mount.display(),
                        a.device
                    ))
                })?;
                detach(&mount)
                    .map_err(|e| failed(format!("unmounting {}: {e}", mount.display())))?;
            }
            clear_loop(&held);
        }
        // Off means drained and gone (see the module doc); the device's
        // timeout bounds the wait and fails this level if a holder lingers.
        let started = Instant::now();
        let mut warned = false;
        for a in &devices {
            while still_attached(&a.device, &path) {
                if !warned && started.elapsed() > Duration::from_secs(1) {
                    warned = true;
                    tracing::warn!(
                        device = a.device,
                        node = self.node,
                        "still attached after the barrier: something of the node holds a file on it"
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if !devices.is_empty() {
            tracing::info!(
                node = self.node,
                devices = devices.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "volume detached"
            );
        }
        Ok(())
    }

    fn state(&self) -> PowerState {
        let path = self.path();
        // An attached device may still write, mounted here or not.
        let attached = !loop_devices(&path).is_empty();
        // A leftover link to another file is no grant either.
        let granted = fs::metadata(&path)
            .ok()
            .zip(fs::metadata(disk(&self.volume)).ok())
            .is_some_and(|(a, d)| a.ino() == d.ino());
        if granted || attached {
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
