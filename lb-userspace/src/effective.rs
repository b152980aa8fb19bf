//! From what the operator configured and what the checks saw to what the
//! data path gets: each real's live state and weight.
//!
//! Weights are scaled by `WEIGHT_SCALE` in the maps so that slow start and
//! agent percentages keep resolution even for weight 1. `lc` ignores
//! weights except 0 (as IPVS does), so while any real of an `lc` service is
//! ramping or reduced by its agent, the service is scheduled as `wlc` with
//! every other real at full weight: the same choice as `lc` for the equal
//! reals, and a reduced share for the ramping one.
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{
    model::{ServiceAddr, ServiceConf},
    services::{Forwarding, RealSpec, RealState, Scheduler, ServiceSpec},
};

/// Map weight of one configured weight unit.
pub const WEIGHT_SCALE: u32 = 256;

/// What a real's agent last said (HAProxy agent-check words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentVerdict {
    /// `up` / `ready`, with an optional `N%` of the configured weight.
    Ready {
        percent: u32,
    },
    Drain,
    /// `down`, `failed`, `stopped`, `maint`, or the agent did not answer.
    Down,
}

/// What the daemon knows of a real at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealRuntime {
    /// The health check's verdict.
    pub healthy: bool,
    /// None: no agent configured, or no answer yet.
    pub agent: Option<AgentVerdict>,
    /// Slow start began here (the real became eligible for new flows).
    pub ramp_from: Option<Instant>,
    /// Whether coming up starts a slow start: after the real was out of
    /// rotation, or when it joined a running balancer; not for the reals
    /// a starting daemon brings up all together (as HAProxy does).
    pub ramp_on_up: bool,
}

/// A real as the data path sees it, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveReal {
    pub state: RealState,
    pub weight: u32,
    /// Why the live state differs from the configured one ("" when it does not).
    pub reason: String,
    pub ramping: bool,
}

/// Live state and weight of one real.
pub fn live_real(
    conf: &crate::model::RealConf,
    runtime: &RealRuntime,
    mac_known: bool,
    forwarding: Forwarding,
    now: Instant,
) -> LiveReal {
    let (state, reason) = if conf.state == RealState::Down {
        (RealState::Down, "")
    } else if !runtime.healthy {
        (RealState::Down, "check failed")
    } else if runtime.agent == Some(AgentVerdict::Down) {
        (RealState::Down, "agent down")
    } else if forwarding == Forwarding::DirectRouting && !mac_known {
        (RealState::Down, "mac unresolved")
    } else if conf.state == RealState::Drain {
        (RealState::Drain, "")
    } else if runtime.agent == Some(AgentVerdict::Drain) {
        (RealState::Drain, "agent drain")
    } else {
        (RealState::Up, "")
    };
    let mut weight = conf.weight as u64 * WEIGHT_SCALE as u64;
    if let Some(AgentVerdict::Ready { percent }) = runtime.agent {
        weight = weight * percent.min(100) as u64 / 100;
    }
    let ramp = ramp_fraction(conf.check.slow_start, runtime.ramp_from, now);
    let ramping = ramp.is_some() && state == RealState::Up;
    if let Some((done, period)) = ramp {
        weight = weight * done.as_millis() as u64 / period.as_millis().max(1) as u64;
    }
    // A weighted real never drops to 0 (that would mean "never pick it").
    if conf.weight > 0 {
        weight = weight.max(1);
    }
    LiveReal {
        state,
        weight: weight as u32,
        reason: reason.into(),
        ramping,
    }
}

/// (elapsed, period) while a slow start is under way.
fn ramp_fraction(
    period: Duration,
    from: Option<Instant>,
    now: Instant,
) -> Option<(Duration, Duration)> {
    let elapsed = now.saturating_duration_since(from?);
    (!period.is_zero() && elapsed < period).then_some((elapsed, period))
}

/// The map contents of one service from its reals' live states. `mac`
/// gives each real's MAC (configured or resolved).
pub fn service_specs(
    addr: &ServiceAddr,
    conf: &ServiceConf,
    live: &[LiveReal],
    mac: impl Fn(usize) -> Option<[u8; 6]>,
) -> (ServiceSpec, Vec<RealSpec>) {
    let reduced = live
        .iter()
        .zip(&conf.reals)
        .any(|(l, c)| l.state == RealState::Up && l.weight < c.weight as u32 * WEIGHT_SCALE);
    let scheduler = if conf.scheduler == Scheduler::Lc && reduced {
        Scheduler::Wlc
    } else {
        conf.scheduler
    };
    let reals = conf
        .reals
        .iter()
        .zip(live)
        .enumerate()
        .map(|(i, (c, l))| RealSpec {
            addr: c.addr,
            port: c.port,
            mac: mac(i).unwrap_or_default(),
            weight: match conf.scheduler {
                // lc in wlc clothing: every unreduced real weighs the same.
                Scheduler::Lc if c.weight > 0 => lc_weight(l.weight, c.weight),
                _ => l.weight,
            },
            state: l.state,
        })
        .collect();
    let spec = ServiceSpec {
        vip: addr.vip,
        port: addr.port,
        proto: addr.proto.number(),
        scheduler,
        forwarding: conf.forwarding,
        reset_on_down: conf.reset_on_down,
    };
    (spec, reals)
}

/// Under `lc` a reduced real's map weight is its fraction of WEIGHT_SCALE.
fn lc_weight(live: u32, configured: u16) -> u32 {
    let full = configured as u64 * WEIGHT_SCALE as u64;
    ((live as u64 * WEIGHT_SCALE as u64) / full.max(1)).max(1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        command::{CheckDefaults, RealOpts},
        model::RealConf,
    };

    fn real(weight: u16, state: RealState) -> RealConf {
        RealConf {
            addr: "198.18.1.11".parse().unwrap(),
            port: 143,
            weight,
            state,
            mac: None,
            check: RealOpts::default().new_check(143, &CheckDefaults::default()),
        }
    }

    fn healthy() -> RealRuntime {
        RealRuntime {
            healthy: true,
            agent: None,
            ramp_from: None,
            ramp_on_up: true,
        }
    }

    #[test]
    fn the_worst_input_decides_the_state() {
        let now = Instant::now();
        let dr = Forwarding::DirectRouting;
        let up = real(2, RealState::Up);
        assert_eq!(
            live_real(&up, &healthy(), true, dr, now).state,
            RealState::Up
        );
        let sick = RealRuntime {
            healthy: false,
            ..healthy()
        };
        let l = live_real(&up, &sick, true, dr, now);
        assert_eq!(
            (l.state, l.reason.as_str()),
            (RealState::Down, "check failed")
        );
        let l = live_real(&up, &healthy(), false, dr, now);
        assert_eq!(
            (l.state, l.reason.as_str()),
            (RealState::Down, "mac unresolved")
        );
        // NAT routes by address: no MAC needed.
        assert_eq!(
            live_real(&up, &healthy(), false, Forwarding::Nat, now).state,
            RealState::Up
        );
        let drained = RealRuntime {
            agent: Some(AgentVerdict::Drain),
            ..healthy()
        };
        assert_eq!(
            live_real(&up, &drained, true, dr, now).state,
            RealState::Drain
        );
        let half = RealRuntime {
            agent: Some(AgentVerdict::Ready { percent: 50 }),
            ..healthy()
        };
        assert_eq!(live_real(&up, &half, true, dr, now).weight, WEIGHT_SCALE);
        assert_eq!(
            live_real(&real(0, RealState::Up), &healthy(), true, dr, now).weight,
            0
        );
    }

    #[test]
    fn slow_start_ramps_linearly_and_never_to_zero() {
        let start = Instant::now();
        let mut conf = real(4, RealState::Up);
        conf.check.slow_start = Duration::from_secs(10);
        let rt = RealRuntime {
            ramp_from: Some(start),
            ..healthy()
        };
        let dr = Forwarding::DirectRouting;
        let at = |s: u64| live_real(&conf, &rt, true, dr, start + Duration::from_secs(s));
        assert_eq!(at(0).weight, 1);
        assert_eq!(at(5).weight, 2 * WEIGHT_SCALE);
        assert!(at(5).ramping);
        assert_eq!(at(10).weight, 4 * WEIGHT_SCALE);
        assert!(!at(10).ramping);
    }

    #[test]
    fn lc_turns_wlc_only_while_a_real_is_reduced() {
        let addr: ServiceAddr = "198.18.1.100:143".parse().unwrap();
        let conf = ServiceConf {
            scheduler: Scheduler::Lc,
            forwarding: Forwarding::DirectRouting,
            reset_on_down: false,
            reals: vec![real(1, RealState::Up), real(5, RealState::Up)],
        };
        let full = |w: u16| LiveReal {
            state: RealState::Up,
            weight: w as u32 * WEIGHT_SCALE,
            reason: String::new(),
            ramping: false,
        };
        let (spec, reals) = service_specs(&addr, &conf, &[full(1), full(5)], |_| None);
        assert_eq!(spec.scheduler, Scheduler::Lc);
        assert_eq!(reals[1].weight, WEIGHT_SCALE);
        let ramping = LiveReal {
            weight: WEIGHT_SCALE / 4,
            ramping: true,
            ..full(1)
        };
        let (spec, reals) = service_specs(&addr, &conf, &[ramping, full(5)], |_| None);
        assert_eq!(spec.scheduler, Scheduler::Wlc);
        assert_eq!(
            (reals[0].weight, reals[1].weight),
            (WEIGHT_SCALE / 4, WEIGHT_SCALE)
        );
    }
}
