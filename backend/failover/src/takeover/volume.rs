//! An instance volume on this node: attached only through this node's
//! access path (which the I/O barrier revokes when the node is fenced),
//! never while another attachment of it exists, checked (journal replay
//! and `e2fsck -p`) before it is mounted, and stamped with the generation
//! that owns it.
use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use fulmar_fencing::agents::io_barrier::{access_path, attachments, bound_to, disk};

/// The fencing token on the volume.
pub const GENERATION_FILE: &str = ".fulmar-generation";

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{0}")]
    Io(String),
    #[error(
        "volume generation {found} (owner {owner}) is newer than ours ({ours}): \
         this node was superseded and must not run the instance"
    )]
    Stale {
        found: u64,
        owner: String,
        ours: u64,
    },
    #[error(
        "volume still attached through {backing} (/dev/{device}): refusing a second \
         attachment (never two writers on a volume)"
    )]
    Attached { device: String, backing: String },
    #[error(
        "the file system check found damage it cannot repair safely; the instance \
         stays down until `fulmar instance repair {instance}`: {report}"
    )]
    NeedsRepair { instance: String, report: String },
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> VolumeError {
    VolumeError::Io(format!("{what}: {e}"))
}

#[derive(Debug)]
pub struct Mounted {
    pub device: String,
    pub mountpoint: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<String, VolumeError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| io(program, e))?;
    if !out.status.success() {
        return Err(io(
            format!("{program} {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fails when any loop device is attached to `volume`: a node that has it
/// (or had it and could not let go) may still write it.
fn ensure_detached(volume: &Path) -> Result<(), VolumeError> {
    match attachments(volume).into_iter().next() {
        Some(a) => Err(VolumeError::Attached {
            device: a.device,
            backing: a.backing.display().to_string(),
        }),
        None => Ok(()),
    }
}

/// What the file system check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Clean,
    /// Repaired what preening may repair (e2fsck exit 1 or 2).
    Repaired(String),
}

/// Runs e2fsck: (exit status, what it printed on both streams).
/// e2fsck(8) exits 0 clean, 1 errors fixed, 2 fixed (reboot for a root
/// fs), 4 errors left, 8 operational error, 16 usage, 32 cancelled, 128
/// library error.
fn e2fsck(args: &[&str]) -> Result<(std::process::ExitStatus, String), VolumeError> {
    let out = Command::new("e2fsck")
        .args(args)
        .output()
        .map_err(|e| io("e2fsck", e))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status, report))
}

/// `e2fsck -p` on an attached, unmounted device: replays the journal and
/// preens what is safe to fix without a person (what a boot does).
pub fn check(device: &str, instance: &str) -> Result<Checked, VolumeError> {
    let (status, report) = e2fsck(&["-p", device])?;
    let report = report.trim().replace('\n', " | ");
    match status.code() {
        Some(0) => Ok(Checked::Clean),
        Some(1 | 2) => Ok(Checked::Repaired(report)),
        Some(c) if c & 4 != 0 => Err(VolumeError::NeedsRepair {
            instance: instance.to_string(),
            report,
        }),
        _ => Err(io(format!("e2fsck -p {device} ({status})"), report)),
    }
}

/// Attaches `volume` through `node`'s access path and checks it; the
/// device is detached again on failure. Fails when the node has no access
/// (never granted, or revoked by a fence), when anything else still has
/// the volume attached, and when the check finds damage that needs a
/// person.
pub fn attach(volume: &Path, node: &str, instance: &str) -> Result<String, VolumeError> {
    let path = access_path(volume, node);
    if !path.exists() {
        return Err(io(
            path.display(),
            "no access path: this node was never granted the volume, or was fenced off it",
        ));
    }
    ensure_detached(volume)?;
    let device = run("losetup", &["-f", "--show", &path.to_string_lossy()])?;
    match check(&device, instance) {
        Ok(Checked::Clean) => Ok(device),
        Ok(Checked::Repaired(report)) => {
            tracing::warn!(instance, device, "file system check repaired: {report}");
            Ok(device)
        }
        Err(e) => {
            let _ = detach(&device);
            Err(e)
        }
    }
}

/// Mounts an attached, checked device; detaches it when the mount fails.
pub fn mount(device: String, mountpoint: &Path) -> Result<Mounted, VolumeError> {
    let undo = |e: VolumeError| {
        let _ = detach(&device);
        e
    };
    fs::create_dir_all(mountpoint).map_err(|e| undo(io(mountpoint.display(), e)))?;
    let src = CString::new(device.as_bytes()).expect("device path");
    let dst = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|e| undo(io(mountpoint.display(), e)))?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            c"ext4".as_ptr(),
            libc::MS_NOATIME,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(undo(io(
            format!("mounting {device} on {}", mountpoint.display()),
            e,
        )));
    }
    Ok(Mounted {
        device,
        mountpoint: mountpoint.to_path_buf(),
    })
}

/// How long a cleared loop device may take to let go.
const DETACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Unmounts and detaches. Fails (and leaves it mounted) when something
/// still uses it: the caller stops the service first.
pub fn unmount(m: &Mounted) -> Result<(), VolumeError> {
    let dst = CString::new(m.mountpoint.as_os_str().as_bytes())
        .map_err(|e| io(m.mountpoint.display(), e))?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::umount2(dst.as_ptr(), 0) } != 0 {
        return Err(io(
            format!("unmounting {}", m.mountpoint.display()),
            io::Error::last_os_error(),
        ));
    }
    detach(&m.device)
}

/// Detaches a loop device and waits until the kernel let go of it: a
/// detached volume is one the next holder's check accepts.
fn detach(device: &str) -> Result<(), VolumeError> {
    let backing = bound_to(device);
    run("losetup", &["-d", device])?;
    let deadline = Instant::now() + DETACH_TIMEOUT;
    while backing.is_some() && bound_to(device) == backing {
        if Instant::now() > deadline {
            return Err(io(
                device,
                format!("still attached {DETACH_TIMEOUT:?} after losetup -d"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// `fulmar instance repair`: a full `e2fsck -fy` of the volume's disk,
/// which nothing may have attached. Returns e2fsck's report.
pub fn repair(volume: &Path) -> Result<String, VolumeError> {
    ensure_detached(volume)?;
    let disk = disk(volume);
    let (status, report) = e2fsck(&["-fy", &disk.to_string_lossy()])?;
    match status.code() {
        Some(0..=2) => Ok(report),
        _ => Err(io(
            format!("e2fsck -fy {} ({status})", disk.display()),
            report.trim(),
        )),
    }
}

/// The generation and owner stamped on a mounted volume.
pub fn read_generation(mountpoint: &Path) -> Result<Option<(u64, String)>, VolumeError> {
    let path = mountpoint.join(GENERATION_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path.display(), e)),
    };
    let mut words = text.split_whitespace();
    let generation = words
        .next()
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| io(path.display(), "unreadable generation"))?;
    Ok(Some((generation, words.next().unwrap_or("?").to_string())))
}

/// Stamps `generation` for `node`, durably, unless the volume already
/// carries a newer one: then this node was superseded (the fencing token).
pub fn claim(mountpoint: &Path, node: &str, generation: u64) -> Result<(), VolumeError> {
    if let Some((found, owner)) = read_generation(mountpoint)?
        && found > generation
    {
        return Err(VolumeError::Stale {
            found,
            owner,
            ours: generation,
        });
    }
    let path = mountpoint.join(GENERATION_FILE);
    fulmar_daemon::durable::replace(&path, format!("{generation} {node}\n").as_bytes())
        .map_err(|e| io(path.display(), e))
}
