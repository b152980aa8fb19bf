//! Hanging a process as a dead peer hangs: SIGSTOP, then the wait until
//! every thread of it has stopped. kill(2) returns once the stop is
//! queued; the group stop begins only when one of its threads runs again,
//! and until then a sibling woken by a packet goes on serving (seen: a
//! login through a "stopped" slapd succeeded on a busy machine).
use std::time::{Duration, Instant};

/// How long the stop may take to reach every thread.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Stops `pid` and waits until every one of its threads is stopped.
pub fn freeze(pid: i32) -> Result<(), String> {
    // SAFETY: kill(2) has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGSTOP) } != 0 {
        return Err(format!(
            "SIGSTOP {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let deadline = Instant::now() + STOP_WITHIN;
    loop {
        let running = running_threads(pid)?;
        if running == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{running} threads of {pid} still run {STOP_WITHIN:?} after SIGSTOP"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Lets a frozen `pid` run again.
pub fn thaw(pid: i32) {
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
}

/// Threads of `pid` not in the stopped state ('T' in their stat line).
fn running_threads(pid: i32) -> Result<usize, String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut running = 0;
    for task in tasks.flatten() {
        // A thread that exited meanwhile has nothing to read: not running.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) S ...": comm may hold spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if state != Some("T") {
            running += 1;
        }
    }
    Ok(running)
}
