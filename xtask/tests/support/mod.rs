//! The front path as the lab tests start it, with its files removed when
//! the test ends.
use std::path::PathBuf;

use fulmar_lab::front::{Bins, Front};

/// Removes the front's files once everything else is gone.
pub struct WorkDir(pub PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the front path in a work directory named for the test binary;
/// keep the WorkDir until the Front is dropped.
#[allow(dead_code)] // not every test binary uses both
pub fn front(name: &str) -> (WorkDir, Front) {
    let (work, bins) = setup(name);
    let front = Front::start(&work.0, bins).expect("the front path");
    (work, front)
}

/// As `front`, with the back end under the failover manager.
#[allow(dead_code)]
pub fn platform(name: &str) -> (WorkDir, Front) {
    let (work, bins) = setup(name);
    let front = Front::start_platform(&work.0, bins).expect("the platform");
    (work, front)
}

fn setup(name: &str) -> (WorkDir, Bins) {
    let work = WorkDir(std::env::temp_dir().join(format!("fulmar-{name}-{}", std::process::id())));
    let bin_dir = fulmar_lab::dist::built("fulmar-lbd")
        .parent()
        .unwrap()
        .to_path_buf();
    (work, Bins::in_dir(&bin_dir))
}
