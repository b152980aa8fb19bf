//! The cluster lab as a directory: slapd (back_mdb) on the instance's
//! volume, and a client adding numbered entries to it through the VIP,
//! each acknowledged add recorded.
use std::{
    fs,
    io::Write,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{JoinHandle, sleep},
    time::{Duration, Instant},
};

use super::{VIP, lab_io};
use crate::{Lab, LabError, cmd};

pub const SUFFIX: &str = "dc=cluster,dc=test";
const ADMIN: &str = "cn=admin,dc=cluster,dc=test";
const PASSWORD: &str = "secret";

/// slapd's config and database on the volume mounted at `mountpoint`;
/// no `dbnosync`: an add is answered once it is on the disk.
pub(super) fn prepare(mountpoint: &Path) -> Result<(), LabError> {
    let mnt = mountpoint.display();
    let db = mountpoint.join("db");
    fs::create_dir_all(&db).map_err(lab_io(&db))?;
    let run = mountpoint.join("run");
    fs::create_dir_all(&run).map_err(lab_io(&run))?;
    let conf = mountpoint.join("slapd.conf");
    let text = format!(
        "include /etc/ldap/schema/core.schema\n\
         pidfile {mnt}/run/slapd.pid\nargsfile {mnt}/run/slapd.args\n\
         modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
         database mdb\nmaxsize 33554432\n\
         suffix \"{SUFFIX}\"\nrootdn \"{ADMIN}\"\nrootpw {PASSWORD}\n\
         directory {mnt}/db\n"
    );
    fs::write(&conf, text).map_err(lab_io(&conf))?;
    let ldif = mountpoint.join("base.ldif");
    fs::write(
        &ldif,
        format!("dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: cluster\ndc: cluster\n"),
    )
    .map_err(lab_io(&ldif))?;
    let mut load = Command::new("slapadd");
    load.arg("-q").arg("-f").arg(&conf).arg("-l").arg(&ldif);
    cmd::checked(load)?;
    Ok(())
}

/// The service's command line: slapd in the foreground on the VIP.
pub(super) fn start_command(mountpoint: &Path) -> Vec<String> {
    [
        "slapd",
        "-d",
        "0",
        "-h",
        &format!("ldap://{VIP}:389/"),
        "-f",
        &mountpoint.join("slapd.conf").to_string_lossy(),
    ]
    .map(String::from)
    .to_vec()
}

/// Adds `cn=eN` entries, N counting up, through the VIP from the client,
/// one at a time, and records each add that succeeded.
pub struct LdapWriter {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
    thread: Option<JoinHandle<Result<(), LabError>>>,
}

fn entry(n: u64) -> String {
    format!("dn: cn=e{n},{SUFFIX}\nobjectClass: organizationalRole\ncn: e{n}\n")
}

/// How the client reaches slapd: simple bind as the admin, at the VIP.
fn bind_args() -> Vec<String> {
    [
        "-x",
        "-H",
        &format!("ldap://{VIP}:389/"),
        "-D",
        ADMIN,
        "-w",
        PASSWORD,
    ]
    .map(String::from)
    .to_vec()
}

/// `ldapadd` of one entry; Ok once the server acknowledged it.
fn add(n: u64) -> std::io::Result<bool> {
    let mut child = Command::new("ldapadd")
        .args(bind_args())
        .args(["-o", "nettimeout=2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(entry(n).as_bytes())?;
    Ok(child.wait()?.success())
}

impl LdapWriter {
    pub fn start(lab: &Lab, interval: Duration) -> LdapWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = lab.thread_in("client", move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                if let Ok(true) = add(n) {
                    a.lock().expect("acked").push((n, Instant::now()));
                }
                sleep(interval);
            }
        });
        LdapWriter {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// Waits up to `within` for an add acknowledged after `t`.
    pub fn wait_ack_after(&self, t: Instant, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let first = self
                .acked
                .lock()
                .expect("acked")
                .iter()
                .map(|(_, at)| *at)
                .find(|at| *at > t);
            if first.is_some() || Instant::now() > deadline {
                return first;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `within` until `n` more adds than now are acknowledged.
    pub fn wait_acks(&self, n: usize, within: Duration) -> bool {
        let target = self.acked.lock().expect("acked").len() + n;
        let deadline = Instant::now() + within;
        while self.acked.lock().expect("acked").len() < target {
            if Instant::now() > deadline {
                return false;
            }
            sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops adding; the acknowledged entries' numbers.
    pub fn stop(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && let Ok(Err(e)) = t.join()
        {
            panic!("the client thread could not enter the client's namespace: {e}");
        }
        self.acked
            .lock()
            .expect("acked")
            .iter()
            .map(|(n, _)| *n)
            .collect()
    }
}

/// The entries' numbers the directory holds, read through the VIP.
pub fn stored(lab: &Lab) -> Result<std::collections::BTreeSet<u64>, LabError> {
    let mut args = bind_args();
    args.extend(
        [
            "-LLL",
            "-b",
            SUFFIX,
            "(objectClass=organizationalRole)",
            "cn",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.check("client", "ldapsearch", &args)?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("cn: e")?.parse().ok())
        .collect())
}
