//! The instance's service process, in its own process group so that a stop
//! reaches the workers it forked (Dovecot's imap and lmtp processes hold
//! files on the volume, which could not be unmounted otherwise).
use std::{
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use crate::instance::InstanceSpec;

/// The service's stdout and stderr, on the volume with the instance.
pub fn log_path(name: &str, spec: &InstanceSpec) -> std::path::PathBuf {
    spec.mountpoint.join(format!("{name}.service.log"))
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("instance {0} has an empty start command")]
    NoCommand(String),
    /// A program or a file the service needs that could not be used.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ServiceError {
    let what = what.to_string();
    move |source| ServiceError::Io { what, source }
}

#[derive(Debug)]
pub struct Service {
    child: Child,
}

impl Service {
    pub fn start(
        name: &str,
        node: &str,
        spec: &InstanceSpec,
        generation: u64,
    ) -> Result<Service, ServiceError> {
        let (program, args) = spec
            .start
            .split_first()
            .ok_or_else(|| ServiceError::NoCommand(name.into()))?;
        let log = log_path(name, spec);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(log.display()))?;
        let err = out.try_clone().map_err(io(log.display()))?;
        let child = Command::new(program)
            .args(args)
            .env("FULMAR_INSTANCE", name)
            .env("FULMAR_NODE", node)
            .env("FULMAR_GENERATION", generation.to_string())
            .env("FULMAR_MOUNT", &spec.mountpoint)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(io(format!("starting {program}")))?;
        Ok(Service { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs (an exited service fails its probe).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The stop command, or SIGTERM; SIGKILL after `stop_timeout`.
    pub fn stop(mut self, spec: &InstanceSpec) -> Result<(), ServiceError> {
        match &spec.stop {
            Some(cmd) if !cmd.is_empty() => {
                let status = Command::new(&cmd[0])
                    .args(&cmd[1..])
                    .status()
                    .map_err(io(&cmd[0]))?;
                if !status.success() {
                    tracing::warn!("stop command {:?} failed: {status}", cmd);
                }
            }
            _ => self.signal(libc::SIGTERM),
        }
        let deadline = Instant::now() + spec.stop_timeout;
        while Instant::now() < deadline {
            if !self.running() && !self.group_alive() {
                return Ok(());
            }
            sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid = self.child.id(), "service ignored stop; killing");
        self.kill()
    }

    /// SIGKILL to the whole group at once: self-fencing has no time to wait.
    pub fn kill(&mut self) -> Result<(), ServiceError> {
        self.signal(libc::SIGKILL);
        self.child.wait().map_err(io("waiting for the service"))?;
        // Workers may outlive the leader by a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.group_alive() && Instant::now() < deadline {
            self.signal(libc::SIGKILL);
            sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the process group we created.
        unsafe { libc::kill(-(self.child.id() as i32), signal) };
    }

    fn group_alive(&self) -> bool {
        // SAFETY: signal 0 only checks existence.
        unsafe { libc::kill(-(self.child.id() as i32), 0) == 0 }
    }
}
