//! Real power-management peers in a netns lab: the sushy-tools Redfish
//! emulator (fake driver, self-signed TLS, basic auth) and pyghmi's
//! fakebmc, both from PyPI (installed by scripts/bootstrap.sh into
//! /opt/fulmar-peers, or $FULMAR_PEERS).
#![allow(dead_code)]

use std::{fs, future::Future, path::PathBuf};

use fulmar_lab::{Lab, LabSpec, mail::wait_port};

pub const BMC: &str = "198.18.8.2";
pub const CONTROL: &str = "198.18.8.3";
pub const VICTIM: &str = "198.18.8.4";
pub const REDFISH_PORT: u16 = 8443;
pub const IPMI_PORT: u16 = 623;
pub const BMC_USER: &str = "fence";
pub const BMC_PASSWORD: &str = "f3nce secret";
/// fakebmc's built-in account.
pub const IPMI_USER: &str = "admin";
pub const IPMI_PASSWORD: &str = "password";

pub fn peers() -> PathBuf {
    let dir = PathBuf::from(std::env::var("FULMAR_PEERS").unwrap_or("/opt/fulmar-peers".into()));
    assert!(
        dir.join("bin/sushy-emulator").exists() && dir.join("bin/fakebmc").exists(),
        "sushy-tools and pyghmi are missing from {}; run scripts/bootstrap.sh",
        dir.display()
    );
    dir
}

/// A runtime for driving fencing devices from a test thread.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs a device through status (on), off, status (off), as the fencing
/// manager would.
pub fn power_off_checked(
    rt: &tokio::runtime::Runtime,
    device: &fulmar_fencing::Device,
    t: std::time::Duration,
) {
    use fulmar_fencing::{Action, Answer, PowerState};
    assert_eq!(rt.block_on(device.status(t)), Ok(PowerState::On));
    assert_eq!(rt.block_on(device.run(Action::Off, t)), Ok(Answer::Done));
    assert_eq!(rt.block_on(device.status(t)), Ok(PowerState::Off));
}

pub fn require_root() {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "the fencing tests need root (CI runs as root)"
    );
}

/// A lab with a management network: `bmc` (the boards), `ctl` (where the
/// fencing runs) and `victim` (a host to power off).
pub struct Site {
    pub lab: Lab,
    pub work: PathBuf,
}

impl Site {
    pub fn new() -> Site {
        require_root();
        let spec = LabSpec::lan(&[
            ("bmc", &format!("{BMC}/24")),
            ("ctl", &format!("{CONTROL}/24")),
            ("victim", &format!("{VICTIM}/24")),
        ]);
        let lab = Lab::build(&spec).expect("lab");
        let work = lab.log_dir().join("fencing");
        fs::create_dir_all(&work).unwrap();
        Site { lab, work }
    }

    /// sushy-emulator on BMC:8443 with HTTPS (a self-signed certificate
    /// for the board's address, also written as `bmc-ca.pem`) and basic
    /// auth (a bcrypt htpasswd file, as sushy requires).
    pub fn start_redfish(&mut self) {
        let peers = peers();
        let cert = rcgen::generate_simple_self_signed(vec![BMC.to_string()]).unwrap();
        let crt = self.work.join("bmc.pem");
        let key = self.work.join("bmc.key");
        fs::write(&crt, cert.cert.pem()).unwrap();
        fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
        let auth = self.work.join("htpasswd");
        let python = peers.join("bin/python3");
        let hash = std::process::Command::new(&python)
            .args(["-c", "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())", BMC_PASSWORD])
            .output()
            .expect("venv python");
        assert!(
            hash.status.success(),
            "{}",
            String::from_utf8_lossy(&hash.stderr)
        );
        fs::write(
            &auth,
            format!(
                "{BMC_USER}:{}",
                String::from_utf8_lossy(&hash.stdout).trim()
            ),
        )
        .unwrap();
        let conf = self.work.join("sushy.conf");
        fs::write(
            &conf,
            format!(
                "SUSHY_EMULATOR_LISTEN_IP = '{BMC}'\nSUSHY_EMULATOR_LISTEN_PORT = {REDFISH_PORT}\n\
                 SUSHY_EMULATOR_SSL_CERT = '{}'\nSUSHY_EMULATOR_SSL_KEY = '{}'\n\
                 SUSHY_EMULATOR_AUTH_FILE = '{}'\nSUSHY_EMULATOR_FAKE_DRIVER = True\n",
                crt.display(),
                key.display(),
                auth.display()
            ),
        )
        .unwrap();
        // The fake driver keeps power states in $TMPDIR/sushy-emulator
        // (sqlite): a private TMPDIR keeps parallel tests and earlier runs
        // from sharing one board.
        let tmp = format!("TMPDIR={}", self.work.display());
        let bin = peers.join("bin/sushy-emulator");
        self.lab
            .spawn(
                "bmc",
                "sushy",
                "env",
                &[
                    &tmp,
                    bin.to_str().unwrap(),
                    "--config",
                    conf.to_str().unwrap(),
                ],
            )
            .expect("sushy-emulator");
        if let Err(e) = wait_port(&self.lab, "ctl", BMC, REDFISH_PORT) {
            panic!("{e}\n{}", self.lab.log("bmc", "sushy"));
        }
    }

    /// pyghmi's fakebmc on BMC:623/udp (user admin, password "password").
    pub fn start_ipmi(&mut self) {
        let bin = peers().join("bin/fakebmc");
        self.lab
            .spawn(
                "bmc",
                "fakebmc",
                bin.to_str().unwrap(),
                &["--port", &IPMI_PORT.to_string()],
            )
            .expect("fakebmc");
        // UDP: ready when ipmitool gets an answer.
        for _ in 0..100 {
            let out = self
                .lab
                .exec(
                    "ctl",
                    "ipmitool",
                    &[
                        "-I",
                        "lanplus",
                        "-H",
                        BMC,
                        "-U",
                        IPMI_USER,
                        "-P",
                        IPMI_PASSWORD,
                        "-N",
                        "1",
                        "-R",
                        "1",
                        "chassis",
                        "power",
                        "status",
                    ],
                )
                .unwrap();
            if out.status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "fakebmc did not answer:\n{}",
            self.lab.log("bmc", "fakebmc")
        );
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// Runs `f` to completion on the fencing host (its sockets and the
    /// agents it spawns live in `ctl`'s network namespace).
    pub fn on_control<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        self.lab
            .in_host("ctl", move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f())
            })
            .unwrap()
    }
}
