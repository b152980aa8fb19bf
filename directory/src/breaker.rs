//! Whether the directory is known not to answer. Once one operation has
//! waited out a timeout (or no URL would connect), every later one fails
//! at once instead of waiting the same timeout again: a login then reaches
//! its caller's outage answer (`outage_ttl`) in microseconds, not after one
//! timeout per search and bind. A single background probe reconnects and
//! closes the breaker; no caller waits on it.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use ldap3::LdapError;

use crate::Unavailable;

/// How long one probe may take before the next is tried: a SYN lost to a
/// VIP that was moving must not hold the probe for TCP's retransmit ladder.
pub const PROBE_ATTEMPT: Duration = Duration::from_secs(1);
/// Pause between two failed probes.
pub const PROBE_PAUSE: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Breaker {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Since when and why the directory is down; None: it answers.
    down: Option<(Instant, String)>,
    /// A probe task is running.
    probing: bool,
}

impl Breaker {
    /// Err while the directory is known down: the caller fails at once.
    pub fn gate(&self) -> Result<(), Unavailable> {
        match &self.state.lock().expect("breaker").down {
            None => Ok(()),
            Some((since, why)) => Err(Unavailable(format!(
                "down for {:.1?} ({why}); reconnecting in the background",
                since.elapsed()
            ))),
        }
    }

    /// Marks the directory down. True when the caller must start the probe
    /// (none runs yet).
    pub fn trip(&self, why: &str) -> bool {
        let mut state = self.state.lock().expect("breaker");
        if state.down.is_none() {
            tracing::warn!(
                error = why,
                "directory not answering: failing fast until a probe reconnects"
            );
            state.down = Some((Instant::now(), why.to_string()));
        }
        !std::mem::replace(&mut state.probing, true)
    }

    /// A probe reconnected: operations go to the directory again.
    pub fn close(&self) {
        let mut state = self.state.lock().expect("breaker");
        if let Some((since, _)) = state.down.take() {
            tracing::info!(after = ?since.elapsed(), "directory answers again");
        }
        state.probing = false;
    }

    /// The probe could not run (no async runtime): the next operation
    /// tries the directory itself.
    pub fn reset(&self) {
        *self.state.lock().expect("breaker") = State::default();
    }
}

/// The path to the directory failed (no answer), as against the
/// directory answering with an error: only the first trips the breaker.
pub fn no_answer(e: &LdapError) -> bool {
    !matches!(
        e,
        LdapError::LdapResult { .. }
            | LdapError::FilterParsing
            | LdapError::DecodingUTF8
            | LdapError::AddNoValues
            | LdapError::InvalidScopeString(_)
    )
}

/// The operation waited its whole timeout: the server is unreachable or
/// hung, and a fresh connection would most likely wait the same.
pub fn timed_out(e: &LdapError) -> bool {
    matches!(e, LdapError::Timeout { .. })
}
