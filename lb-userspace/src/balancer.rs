//! Loading the XDP object with its maps pinned, attaching it to an
//! interface through a pinned bpf_link, and taking it all down again.
use std::{ffi::CString, fs, io, os::fd::AsFd, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode, links::FdLink},
};
use fulmar_common::{map_names, program_names};

use crate::{
    error::{LbError, Result},
    object::XDP_OBJECT,
    pins::PinLayout,
    test_run::{self, TestRunOutput},
};

/// Sizing of the flow table (and of the NAT reply table beside it).
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub flow_capacity: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        // A million concurrent flows: a busy mail front end's worth, ~0.2 GB.
        Self {
            flow_capacity: 1 << 20,
        }
    }
}

/// How to attach: in the driver (native) or in the generic skb path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

impl std::str::FromStr for AttachMode {
    type Err = LbError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "native" | "driver" => Ok(Self::Native),
            "generic" | "skb" => Ok(Self::Generic),
            other => Err(LbError::Invalid {
                what: "XDP mode",
                detail: format!("{other:?}; use native or generic"),
            }),
        }
    }
}

/// The loaded balancer: its programs and the pinned maps they share.
pub struct Balancer {
    pub(crate) ebpf: Ebpf,
    pins: PinLayout,
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Mounts bpffs on /sys/fs/bpf when nothing is mounted there yet.
fn ensure_bpffs(root: &Path) -> Result<()> {
    let mount_point = Path::new("/sys/fs/bpf");
    if !root.starts_with(mount_point) {
        return Ok(());
    }
    let c_path = CString::new("/sys/fs/bpf").expect("no NUL");
    // SAFETY: statfs on a valid C string with a zeroed out-struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut st) } == 0 && st.f_type == BPF_FS_MAGIC {
        return Ok(());
    }
    let fstype = CString::new("bpf").expect("no NUL");
    // SAFETY: valid C strings; mounting a fresh bpffs.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            c_path.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LbError::Io {
            path: mount_point.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl Balancer {
    /// Loads the programs, reusing the maps already pinned under `pins`
    /// (flows and counts survive a restart) or pinning new ones.
    pub fn load(pins: &PinLayout, options: &LoadOptions) -> Result<Self> {
        ensure_bpffs(&pins.root)?;
        let fresh = !pins.root.exists();
        fs::create_dir_all(&pins.root).map_err(|source| LbError::Io {
            path: pins.root.clone(),
            source,
        })?;
        let loaded = Self::load_into(pins, options);
        if loaded.is_err() && fresh {
            // Leave no half-made pin directory behind.
            let _ = unpin_all(pins);
        }
        loaded
    }

    fn load_into(pins: &PinLayout, options: &LoadOptions) -> Result<Self> {
        let ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pins.root)
            .map_max_entries(map_names::FLOWS, options.flow_capacity)
            .map_max_entries(map_names::NAT_REVERSE, options.flow_capacity)
            .load(XDP_OBJECT)
            .map_err(|source| LbError::Load { source })?;
        let mut balancer = Self {
            ebpf,
            pins: pins.clone(),
        };
        for name in program_names::ALL {
            balancer
                .xdp(name)?
                .load()
                .map_err(|source| LbError::Program {
                    what: format!("loading {name}"),
                    source,
                })?;
        }
        Ok(balancer)
    }

    pub(crate) fn xdp(&mut self, name: &str) -> Result<&mut Xdp> {
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| LbError::Missing {
                kind: "program",
                name: name.into(),
            })?;
        program.try_into().map_err(|source| LbError::Program {
            what: name.into(),
            source,
        })
    }

    /// Attaches the balancer to `iface` and pins the link and program, so
    /// the data path stays up after this process exits.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<()> {
        let link_path = self.pins.link(iface);
        self.attach_program(program_names::BALANCER, iface, mode, &link_path)?;
        let program_path = self.pins.program();
        if !program_path.exists() {
            self.xdp(program_names::BALANCER)?
                .pin(&program_path)
                .map_err(|source| LbError::Pin {
                    path: program_path,
                    source,
                })?;
        }
        Ok(())
    }

    /// Attaches the XDP_PASS program to `iface`, the far end of a veth the
    /// balancer sends XDP_TX frames into: a veth delivers such frames only
    /// when its peer has an XDP program. Pinned as `link_peer_<iface>`.
    pub fn attach_veth_peer(&mut self, iface: &str) -> Result<()> {
        let link_path = self.pins.root.join(format!("link_peer_{iface}"));
        self.attach_program(program_names::PASS, iface, AttachMode::Native, &link_path)
    }

    /// Attaches program `name` of the object to `iface`, its link pinned at `link_path`.
    pub fn attach_program(
        &mut self,
        name: &str,
        iface: &str,
        mode: AttachMode,
        link_path: &Path,
    ) -> Result<()> {
        if link_path.exists() {
            return Err(LbError::AlreadyAttached {
                iface: iface.into(),
            });
        }
        let ifindex = if_index(iface)?;
        let program = self.xdp(name)?;
        let id = program
            .attach_to_if_index(ifindex, mode.xdp_mode())
            .map_err(|source| attach_error(iface, mode, source))?;
        let link = program.take_link(id).map_err(|source| LbError::Program {
            what: "taking the XDP link".into(),
            source,
        })?;
        let link = FdLink::try_from(link).map_err(|source| LbError::NoBpfLink { source })?;
        link.pin(link_path).map_err(|source| LbError::Pin {
            path: link_path.into(),
            source,
        })?;
        Ok(())
    }

    /// Runs the balancer program on one frame (BPF_PROG_TEST_RUN).
    pub fn run_balancer(&mut self, frame: &[u8], repeat: u32) -> Result<TestRunOutput> {
        self.run(program_names::BALANCER, frame, repeat)
    }

    /// Runs program `name` of the object on `data` (BPF_PROG_TEST_RUN).
    pub fn run(&mut self, name: &str, data: &[u8], repeat: u32) -> Result<TestRunOutput> {
        let program = self.xdp(name)?;
        let fd = program.fd().map_err(|source| LbError::Program {
            what: format!("{name} fd"),
            source,
        })?;
        test_run::run(fd.as_fd(), data, repeat)
    }
}

/// The errno behind an attach failure: bpf_link_create's io::Error, or the
/// netlink fallback's error code, wherever it sits in the source chain.
fn os_error(error: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(code) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(code);
        }
        if let Some(code) = e
            .downcast_ref::<aya::sys::NetlinkError>()
            .and_then(|n| n.raw_os_error())
        {
            return Some(code);
        }
        next = e.source();
    }
    None
}

fn attach_error(iface: &str, mode: AttachMode, source: aya::programs::ProgramError) -> LbError {
    let errno = os_error(&source);
    let is = |code: i32| errno == Some(code);
    if mode == AttachMode::Native && (is(libc::EOPNOTSUPP) || is(libc::EINVAL)) {
        return LbError::NativeUnsupported {
            iface: iface.into(),
        };
    }
    if is(libc::EBUSY) || is(libc::EEXIST) {
        return LbError::AlreadyAttached {
            iface: iface.into(),
        };
    }
    LbError::Program {
        what: format!("attaching to {iface}"),
        source,
    }
}

fn if_index(iface: &str) -> Result<u32> {
    let name = CString::new(iface).map_err(|_| LbError::Invalid {
        what: "interface name",
        detail: iface.into(),
    })?;
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(LbError::NoInterface {
            iface: iface.into(),
        }),
        index => Ok(index),
    }
}

/// Removes the pinned link of `iface`: the kernel detaches the program.
pub fn detach(pins: &PinLayout, iface: &str) -> Result<()> {
    let path = pins.link(iface);
    if !path.exists() {
        return Err(LbError::NotAttached {
            iface: iface.into(),
            path,
        });
    }
    fs::remove_file(&path).map_err(|source| LbError::Io { path, source })
}

/// Removes every pinned object (links first, so nothing stays attached)
/// and the pin directory itself.
pub fn unpin_all(pins: &PinLayout) -> Result<()> {
    let Ok(entries) = fs::read_dir(&pins.root) else {
        return Ok(());
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    // link_* sort before prog_* and the upper-case map names after them.
    paths.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("link_"))
    });
    for path in paths {
        fs::remove_file(&path).map_err(|source| LbError::Io { path, source })?;
    }
    fs::remove_dir(&pins.root).map_err(|source| LbError::Io {
        path: pins.root.clone(),
        source,
    })
}
