//! Draining: the agent check answers `drain` (the balancer sends no new
//! flows) and the sessions are asked to end one by one, spread over the
//! window so the clients' reconnects do not arrive at the other proxies
//! all at once. Idle sessions end at once when asked; busy ones at their
//! next command boundary. At the window's end whatever is left is asked,
//! and sessions that still arrive are asked as they come.
use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use crate::session::Ctx;

/// How often a drain looks for sessions that arrived late.
const STEP: Duration = Duration::from_millis(100);

pub fn start(ctx: Arc<Ctx>, within: Duration) {
    ctx.draining.store(true, Ordering::Relaxed);
    // A newer drain (or an undrain) makes this one stop.
    let epoch = ctx.drain_epoch.fetch_add(1, Ordering::Relaxed) + 1;
    tokio::spawn(async move {
        let end = Instant::now() + within;
        let current = || {
            ctx.drain_epoch.load(Ordering::Relaxed) == epoch && ctx.draining.load(Ordering::Relaxed)
        };
        while current() {
            let left = end.saturating_duration_since(Instant::now());
            let waiting = ctx.registry.not_kicked();
            if left.is_zero() {
                ctx.registry.kick(&crate::registry::Selector::All);
                tokio::time::sleep(STEP).await;
                continue;
            }
            if waiting == 0 {
                tokio::time::sleep(STEP.min(left)).await;
                continue;
            }
            // Evenly over what is left of the window, the last at its end:
            // every session gets a share of the window to finish in.
            tokio::time::sleep(left / waiting as u32).await;
            if current() {
                ctx.registry.kick_one();
            }
        }
    });
}

pub fn stop(ctx: &Ctx) {
    ctx.drain_epoch.fetch_add(1, Ordering::Relaxed);
    ctx.draining.store(false, Ordering::Relaxed);
}
