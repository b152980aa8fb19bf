//! A multi-host lab on one machine, for tests and `cargo xtask lab`.
//!
//! Each host is a network namespace; each L2 segment is a bridge inside a
//! private "fabric" namespace, so nothing is created in the root namespace.
//! Every namespace name starts with the lab's unique prefix, so parallel runs
//! never collide, and dropping a [`Lab`] (also while a test panics) kills
//! its processes and deletes its namespaces and pinned BPF directories.
#[cfg(feature = "certs")]
pub mod certs;
#[cfg(feature = "cluster")]
pub mod cluster;
mod cmd;
pub mod dist;
pub mod freeze;
#[cfg(feature = "front")]
pub mod front;
pub mod mail;
#[cfg(feature = "front")]
pub mod platform;
pub mod prometheus;
pub mod spec;
pub mod topology;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use serde::{Deserialize, Serialize};

pub use cmd::LabError;
use cmd::run;
pub use spec::{Attachment, HostSpec, LabSpec, Route, SegmentSpec};

/// Every lab namespace name starts with this.
pub const NETNS_PREFIX: &str = "fml";

/// What a lab is made of, enough to tear it down from another process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub prefix: String,
    pub hosts: Vec<String>,
    pub log_dir: PathBuf,
    pub pin_dirs: Vec<PathBuf>,
    pub pids: Vec<u32>,
    /// host → interface → addresses (CIDR).
    pub addresses: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// "host/iface" → the fabric-side veth (its peer on the bridge).
    pub ports: BTreeMap<String, String>,
}

pub struct Lab {
    state: LabState,
    children: Vec<Child>,
    keep: bool,
}

/// A short, unique prefix: the pid and a counter, so two runs (or two tests
/// in one run) never share a namespace name.
fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{NETNS_PREFIX}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Lab {
    /// Builds the topology. On any error, what was built is torn down.
    pub fn build(spec: &LabSpec) -> Result<Self, LabError> {
        spec.validate()?;
        let prefix = unique_prefix();
        let log_dir = std::env::temp_dir().join(format!("{prefix}-logs"));
        fs::create_dir_all(&log_dir).map_err(|e| LabError::io(&log_dir, e))?;
        let mut lab = Lab {
            state: LabState {
                prefix,
                hosts: Vec::new(),
                log_dir,
                pin_dirs: Vec::new(),
                pids: Vec::new(),
                addresses: BTreeMap::new(),
                ports: BTreeMap::new(),
            },
            children: Vec::new(),
            keep: false,
        };
        lab.create(spec)?;
        Ok(lab)
    }

    /// A lab another process built and left running (`persist`): this one
    /// can run and spawn in its hosts, and never tears it down.
    pub fn attach(state: LabState) -> Lab {
        Lab {
            state,
            children: Vec::new(),
            keep: true,
        }
    }

    fn create(&mut self, spec: &LabSpec) -> Result<(), LabError> {
        let fabric = self.netns("fabric");
        run("ip", &["netns", "add", &fabric])?;
        self.state.hosts.push("fabric".into());
        for host in &spec.hosts {
            let ns = self.netns(&host.name);
            run("ip", &["netns", "add", &ns])?;
            self.state.hosts.push(host.name.clone());
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            // No duplicate address detection on the lab's links: link-local
            // addresses would stay tentative for a second and stall neighbour
            // discovery (and so the first packets of every test).
            for key in [
                "net.ipv6.conf.all.accept_dad",
                "net.ipv6.conf.default.accept_dad",
            ] {
                self.sysctl(&host.name, key, "0")?;
            }
            for (key, value) in &host.sysctls {
                self.sysctl(&host.name, key, value)?;
            }
        }
        for (s, segment) in spec.segments.iter().enumerate() {
            let bridge = format!("br{s}");
            run(
                "ip",
                &["-n", &fabric, "link", "add", &bridge, "type", "bridge"],
            )?;
            run("ip", &["-n", &fabric, "link", "set", &bridge, "up"])?;
            for (m, member) in segment.members.iter().enumerate() {
                let host_ns = self.netns(&member.host);
                let port = format!("s{s}p{m}");
                run(
                    "ip",
                    &[
                        "-n",
                        &fabric,
                        "link",
                        "add",
                        &port,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        &member.iface,
                        "netns",
                        &host_ns,
                    ],
                )?;
                run(
                    "ip",
                    &["-n", &fabric, "link", "set", &port, "master", &bridge, "up"],
                )?;
                self.state
                    .ports
                    .insert(format!("{}/{}", member.host, member.iface), port.clone());
                // Complete checksums on both ends, as on a wire: veth's checksum
                // offload leaves TCP/UDP sums partial, which survives the
                // kernel path but not XDP (frames leave XDP with no offload
                // state, and the receiver then drops them as corrupt).
                run(
                    "ip",
                    &[
                        "netns", "exec", &fabric, "ethtool", "-K", &port, "tx", "off",
                    ],
                )?;
                run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &host_ns,
                        "ethtool",
                        "-K",
                        &member.iface,
                        "tx",
                        "off",
                    ],
                )?;
                if let Some(mac) = &member.mac {
                    run(
                        "ip",
                        &["-n", &host_ns, "link", "set", &member.iface, "address", mac],
                    )?;
                }
                for addr in &member.addrs {
                    let mut args = vec!["-n", &host_ns, "addr", "add", addr, "dev", &member.iface];
                    if addr.contains(':') {
                        // No duplicate address detection: the address is usable at once.
                        args.push("nodad");
                    }
                    run("ip", &args)?;
                }
                run("ip", &["-n", &host_ns, "link", "set", &member.iface, "up"])?;
                self.state
                    .addresses
                    .entry(member.host.clone())
                    .or_default()
                    .insert(member.iface.clone(), member.addrs.clone());
            }
        }
        for route in &spec.routes {
            let ns = self.netns(&route.host);
            let family = if route.via.contains(':') { "-6" } else { "-4" };
            run(
                "ip",
                &[
                    family,
                    "-n",
                    &ns,
                    "route",
                    "add",
                    &route.dest,
                    "via",
                    &route.via,
                ],
            )?;
        }
        Ok(())
    }

    pub fn prefix(&self) -> &str {
        &self.state.prefix
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The namespace name of `host`.
    pub fn netns(&self, host: &str) -> String {
        format!("{}-{host}", self.state.prefix)
    }

    /// `/run/netns/<ns>`, for `nsenter --net=` and setns(2).
    pub fn netns_path(&self, host: &str) -> PathBuf {
        Path::new("/run/netns").join(self.netns(host))
    }

    pub fn log_dir(&self) -> &Path {
        &self.state.log_dir
    }

    /// The first address of `host` on `iface` without its prefix length.
    pub fn addr(&self, host: &str, iface: &str, v6: bool) -> Option<String> {
        self.state
            .addresses
            .get(host)?
            .get(iface)?
            .iter()
            .find(|a| a.contains(':') == v6)
            .map(|a| a.split('/').next().unwrap_or(a).to_string())
    }

    pub fn sysctl(&self, host: &str, key: &str, value: &str) -> Result<(), LabError> {
        let ns = self.netns(host);
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-q",
                "-w",
                &format!("{key}={value}"),
            ],
        )
        .map(|_| ())
    }

    /// A command that runs `program` in `host`'s network namespace only:
    /// the mount namespace (and so /sys/fs/bpf) stays the machine's.
    pub fn command(&self, host: &str, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns_path(host).display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered `host`'s network namespace.
    /// Sockets it creates stay in that namespace whichever thread uses them
    /// later, so tests can serve and connect from their own process.
    pub fn in_host<T, F>(&self, host: &str, f: F) -> Result<T, LabError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.thread_in(host, f)
            .join()
            .expect("in_host closure panicked")
    }

    /// Starts `f` on a thread in `host`'s network namespace (so are the
    /// processes it starts): a client that works on while the test goes
    /// on. Err when the namespace could not be entered.
    pub fn thread_in<T, F>(&self, host: &str, f: F) -> std::thread::JoinHandle<Result<T, LabError>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = self.netns_path(host);
        std::thread::spawn(move || {
            let ns = fs::File::open(&path).map_err(|e| LabError::io(&path, e))?;
            // SAFETY: setns(2) on an open namespace file; affects this thread only.
            if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) } != 0
            {
                return Err(LabError::io(&path, std::io::Error::last_os_error()));
            }
            Ok(f())
        })
    }

    /// The fabric-side end of `host`'s `iface` (to be used `in_host("fabric", ..)`).
    pub fn fabric_port(&self, host: &str, iface: &str) -> Option<String> {
        self.state.ports.get(&format!("{host}/{iface}")).cloned()
    }

    /// Runs `program args` in `host` to completion.
    pub fn exec(&self, host: &str, program: &str, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = self.command(host, program);
        cmd.args(args);
        cmd::output(cmd)
    }

    /// Runs a Python 3 script in `host` (the tests' independent mail client:
    /// imaplib, poplib, smtplib) and returns its stdout; panics when it fails,
    /// showing its stderr and `context` (the server log that explains it).
    pub fn python(&self, host: &str, script: &str, context: impl FnOnce() -> String) -> String {
        let out = self
            .exec(host, "python3", &["-c", script])
            .expect("python3");
        assert!(
            out.status.success(),
            "client script failed:\n{}\n--- server log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            context()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like `exec`, but fails unless the command succeeds; returns stdout.
    pub fn check(&self, host: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
        let mut cmd = self.command(host, program);
        cmd.args(args);
        cmd::checked(cmd)
    }

    /// Starts a long-running process in `host`, its output going to
    /// `<log_dir>/<host>-<name>.log`. It is killed when the lab goes.
    pub fn spawn(
        &mut self,
        host: &str,
        name: &str,
        program: &str,
        args: &[&str],
    ) -> Result<u32, LabError> {
        let log = self.state.log_dir.join(format!("{host}-{name}.log"));
        let file = fs::File::create(&log).map_err(|e| LabError::io(&log, e))?;
        let err = file.try_clone().map_err(|e| LabError::io(&log, e))?;
        let mut cmd = self.command(host, program);
        cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(err);
        // Its own process group: `lab up` leaves it running after xtask exits.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| LabError::Spawn {
            program: program.into(),
            source: e,
        })?;
        let pid = child.id();
        self.state.pids.push(pid);
        self.children.push(child);
        Ok(pid)
    }

    /// How a spawned process ended, once it has (None while it runs or
    /// for a pid this lab did not spawn).
    pub fn try_wait(&mut self, pid: u32) -> Option<std::process::ExitStatus> {
        let child = self.children.iter_mut().find(|c| c.id() == pid)?;
        child.try_wait().ok().flatten()
    }

    /// The log a spawned process writes.
    pub fn log(&self, host: &str, name: &str) -> String {
        fs::read_to_string(self.state.log_dir.join(format!("{host}-{name}.log")))
            .unwrap_or_default()
    }

    /// A bpffs directory to remove with the lab.
    pub fn register_pin_dir(&mut self, dir: impl Into<PathBuf>) {
        self.state.pin_dirs.push(dir.into());
    }

    /// The MAC address of `iface` in `host`.
    pub fn mac(&self, host: &str, iface: &str) -> Result<String, LabError> {
        // Not /sys/class/net: under nsenter /sys is still the root namespace's.
        let ns = self.netns(host);
        let text = run("ip", &["-n", &ns, "-o", "link", "show", iface])?;
        text.split("link/ether ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .ok_or_else(|| LabError::Parse {
                what: format!("MAC of {host}/{iface}"),
                text,
            })
    }

    /// The MAC address of `iface` in `host`, as bytes (for the balancer's maps).
    pub fn mac_bytes(&self, host: &str, iface: &str) -> Result<[u8; 6], LabError> {
        let text = self.mac(host, iface)?;
        let bytes: Option<Vec<u8>> = text
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).ok())
            .collect();
        bytes
            .and_then(|b| b.try_into().ok())
            .ok_or(LabError::Parse {
                what: format!("MAC of {host}/{iface}"),
                text,
            })
    }

    /// Leaves everything running and returns the state that `teardown`
    /// needs later (for `cargo xtask lab up`).
    pub fn persist(&mut self) -> LabState {
        self.keep = true;
        self.state.clone()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        teardown(&self.state);
    }
}

/// Kills every process of the lab, deletes its namespaces (which takes the
/// veths and bridges with them) and its pinned BPF directories. Best effort:
/// it goes on past errors so one stuck piece never leaves the rest behind.
pub fn teardown(state: &LabState) {
    for pid in &state.pids {
        // SAFETY: plain kill(2) of a process group we started.
        unsafe { libc::kill(-(*pid as i32), libc::SIGKILL) };
    }
    for host in &state.hosts {
        let ns = format!("{}-{host}", state.prefix);
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill(2) of a process inside our own namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
    }
    for dir in &state.pin_dirs {
        remove_pins(dir);
    }
    let _ = fs::remove_dir_all(&state.log_dir);
}

/// Removes a bpffs directory: links first (detaching programs), then the rest.
fn remove_pins(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort_by_key(|p| {
        !p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("link_"))
    });
    for path in paths {
        let _ = fs::remove_file(path);
    }
    let _ = fs::remove_dir(dir);
}

/// Namespaces and bpffs entries whose names start with `prefix`: what a
/// lab that is gone must not have left.
pub fn leftovers(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["/run/netns", "/sys/fs/bpf"] {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) {
                    found.push(format!("{dir}/{name}"));
                }
            }
        }
    }
    found
}

/// Whether something is mounted at `path` (this mount namespace).
pub fn mounted(path: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == path.to_str())
}
