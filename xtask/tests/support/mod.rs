//! The front path as the lab tests start it, with its files removed when
//! the test ends.
use std::path::PathBuf;

use fulmar_lab::front::{Bins, Front};

/// Removes the front's files once everything else is gone.
pub struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the front path in a work directory named for the test binary;
/// keep the WorkDir until the Front is dropped.
pub fn front(name: &str) -> (WorkDir, Front) {
    let work = WorkDir(std::env::temp_dir().join(format!("fulmar-{name}-{}", std::process::id())));
    let bin_dir = fulmar_lab::dist::built("fulmar-lbd")
        .parent()
        .unwrap()
        .to_path_buf();
    let front = Front::start(&work.0, Bins::in_dir(&bin_dir)).expect("the front path");
    (work, front)
}
