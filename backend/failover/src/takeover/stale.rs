//! The previous holder's run state on a just-mounted volume: pid files and
//! Unix sockets in the service's run directories. Nothing of that holder
//! can be alive when this node mounts the volume (it was stopped, or fenced
//! and its device drained), so these name nothing; left in place, a pid
//! file can name an unrelated process here (pids are reused, and the lab's
//! nodes share one kernel) and make the service refuse to start.
use std::{
    fs, io,
    os::unix::fs::FileTypeExt,
    path::{Component, Path, PathBuf},
};

/// How deep below a run directory to look (Dovecot nests one level).
const MAX_DEPTH: usize = 4;

/// Whether `dir` stays inside the mountpoint (relative, no `..`).
pub fn valid_run_dir(dir: &Path) -> bool {
    dir.components().all(|c| matches!(c, Component::Normal(_))) && dir.components().next().is_some()
}

/// Removes pid files (`*.pid`) and sockets under each run directory;
/// returns what it removed. A missing directory is nothing to clear.
pub fn clear(mountpoint: &Path, dirs: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for dir in dirs {
        walk(&mountpoint.join(dir), MAX_DEPTH, &mut removed)?;
    }
    Ok(removed)
}

fn walk(dir: &Path, depth: usize, removed: &mut Vec<PathBuf>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        // The entry's own type: a symlink is never followed out of the volume.
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() && depth > 0 {
            walk(&path, depth - 1, removed)?;
        } else if kind.is_socket() || (kind.is_file() && path.extension() == Some("pid".as_ref())) {
            fs::remove_file(&path)?;
            removed.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn removes_pid_files_and_sockets_only() {
        let root = std::env::temp_dir().join(format!("fulmar-stale-{}", std::process::id()));
        let run = root.join("run");
        fs::create_dir_all(run.join("sub")).unwrap();
        fs::write(run.join("master.pid"), "6200\n").unwrap();
        fs::write(run.join("sub/x.pid"), "1\n").unwrap();
        fs::write(run.join("config.keep"), "x").unwrap();
        let _l = UnixListener::bind(run.join("sub/socket")).unwrap();
        let removed = clear(&root, &["run".into(), "absent".into()]).unwrap();
        assert_eq!(removed.len(), 3, "{removed:?}");
        assert!(run.join("config.keep").exists());
        assert!(!run.join("master.pid").exists());
        assert!(!run.join("sub/socket").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn run_dirs_stay_inside() {
        assert!(valid_run_dir(Path::new("run")));
        assert!(valid_run_dir(Path::new("var/run")));
        assert!(!valid_run_dir(Path::new("/run")));
        assert!(!valid_run_dir(Path::new("../etc")));
        assert!(!valid_run_dir(Path::new("")));
    }
}
