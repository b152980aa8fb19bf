//! `ROOT/run/lock`: who owns the volume. The live owner holds an exclusive
//! flock(2) on it for its whole life, and the file records its node,
//! generation and pid. A second start while the owner lives fails naming
//! it; a start whose generation is older than the last one recorded fails
//! too: the failover manager bumps the generation at every takeover, so a
//! stale start (a fenced node's late restart) can never take the volume back.
use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, Write},
    os::fd::AsRawFd,
    path::Path,
};

/// What the lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub generation: u64,
    pub pid: u32,
}

impl Owner {
    fn parse(text: &str) -> Option<Self> {
        let mut node = None;
        let mut generation = None;
        let mut pid = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("node", v)) => node = Some(v.to_string()),
                Some(("generation", v)) => generation = v.parse().ok(),
                Some(("pid", v)) => pid = v.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            node: node?,
            generation: generation?,
            pid: pid?,
        })
    }

    fn render(&self) -> String {
        format!(
            "node={}\ngeneration={}\npid={}\n",
            self.node, self.generation, self.pid
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the volume is in use: fulmar-maild pid {} on node {} holds it (generation {})",
        .0.pid, .0.node, .0.generation
    )]
    Held(Owner),
    #[error(
        "generation {ours} is older than generation {} that node {} started here; \
         a newer takeover owns this volume",
        .recorded.generation, .recorded.node
    )]
    Stale { ours: u64, recorded: Owner },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or dying) releases it.
pub struct VolumeLock {
    _file: File,
    pub owner: Owner,
    /// Who held it before (a crash leaves this behind).
    pub previous: Option<Owner>,
}

impl VolumeLock {
    pub fn acquire(root: &Path, node: &str, generation: u64) -> Result<Self, LockError> {
        let path = root.join("run/lock");
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(root.join("run")).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut text = String::new();
        // SAFETY: flock(2) on a file we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            file.read_to_string(&mut text).map_err(io)?;
            return match (err.raw_os_error(), Owner::parse(&text)) {
                (Some(libc::EWOULDBLOCK), Some(owner)) => Err(LockError::Held(owner)),
                _ => Err(io(err)),
            };
        }
        file.read_to_string(&mut text).map_err(io)?;
        let previous = Owner::parse(&text);
        if let Some(recorded) = &previous
            && recorded.generation > generation
        {
            return Err(LockError::Stale {
                ours: generation,
                recorded: recorded.clone(),
            });
        }
        let owner = Owner {
            node: node.to_string(),
            generation,
            pid: std::process::id(),
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(owner.render().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self {
            _file: file,
            owner,
            previous,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_and_no_going_back_in_generation() {
        let root = std::env::temp_dir().join(format!("fulmar-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let first = VolumeLock::acquire(&root, "node1", 3).unwrap();
        assert_eq!(first.previous, None);
        // flock is per open file description: a second open conflicts even
        // within one process, as another process would.
        match VolumeLock::acquire(&root, "node2", 4) {
            Err(LockError::Held(owner)) => {
                assert_eq!((owner.node.as_str(), owner.generation), ("node1", 3));
                assert_eq!(owner.pid, std::process::id());
            }
            other => panic!("expected Held, got {:?}", other.map(|l| l.owner)),
        }
        drop(first);
        let second = VolumeLock::acquire(&root, "node2", 4).unwrap();
        assert_eq!(second.previous.as_ref().map(|o| o.generation), Some(3));
        drop(second);
        let err = VolumeLock::acquire(&root, "node1", 3).err().unwrap();
        assert!(err.to_string().contains("older than generation 4"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
