//! The failover agent on a back-end node: it joins the cluster with a
//! lease, runs the instances placed on this incarnation, probes them,
//! restarts them in place up to a threshold, reports what it did, and stops
//! everything itself when its lease deadline passes (self-fencing). Every
//! agent also campaigns for leadership; the leader's work is in [`leader`].
//!
//! [`leader`]: crate::leader
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use etcd_client::Client;
use fulmar_fencing::{Fencer, history::now_ms};

use crate::{
    config::ClusterConfig,
    error::ClusterError,
    heartbeat::Heartbeats,
    leader,
    lease::{Lease, LeaseHandle},
    metrics::METRICS,
    state::{self, Keys, RunState, Snapshot, Status, encode},
    takeover::{self, Running},
};

/// An instance running on this node.
struct Local {
    running: Running,
    next_probe: Instant,
    /// Restarts in place within the restart window.
    restarts: Vec<Instant>,
}

pub struct Agent {
    config: Arc<ClusterConfig>,
    node: String,
    keys: Keys,
    client: Client,
    fencer: Arc<Fencer>,
    local: BTreeMap<String, Local>,
}

impl Agent {
    pub async fn connect(
        config: ClusterConfig,
        node: &str,
        fencer: Fencer,
    ) -> Result<Agent, ClusterError> {
        if !config.node.contains_key(node) {
            return Err(ClusterError::UnknownNode(node.into()));
        }
        let client = connect(&config).await?;
        METRICS.set_node(node);
        Ok(Agent {
            keys: Keys::new(&config.etcd.prefix),
            config: Arc::new(config),
            node: node.to_string(),
            client,
            fencer: Arc::new(fencer),
            local: BTreeMap::new(),
        })
    }

    /// Runs until `shutdown` resolves; then stops the instances here, says
    /// so, and leaves the cluster cleanly.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let timing = self.config.timing.clone();
        let heartbeats = match Heartbeats::start(self.config.clone(), &self.node).await {
            Ok(h) => h,
            Err(e) => {
                // The lease still detects failures, only later.
                tracing::error!(
                    node = self.node,
                    "heartbeats: {e}; failures are found by lease alone"
                );
                Arc::default()
            }
        };
        METRICS.heartbeats(heartbeats.clone());
        loop {
            let lease = tokio::select! {
                joined = Lease::join(&self.client, &self.config.etcd.endpoints, &self.keys, &self.node,
                                     timing.lease_ttl, timing.self_fence_margin) => joined,
                () = &mut shutdown => return,
            };
            let lease = match lease {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("joining: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let handle = lease.handle().clone();
            METRICS.lease(true, handle.incarnation);
            tracing::info!(
                node = self.node,
                incarnation = handle.incarnation,
                "joined the cluster"
            );
            let leading = tokio::spawn(leader::run(
                self.config.clone(),
                self.client.clone(),
                self.node.clone(),
                handle.clone(),
                self.fencer.clone(),
                heartbeats.clone(),
            ));
            let mut tick = tokio::time::interval(timing.reconcile_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let clean = loop {
                let deadline = handle.deadline();
                tokio::select! {
                    _ = tick.tick() => {}
                    // Self-fencing waits for nothing but the local clock.
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    () = &mut shutdown => break true,
                }
                if !handle.valid() {
                    break false;
                }
                let left = handle.deadline().saturating_duration_since(Instant::now());
                let mut c = self.client.clone();
                match tokio::time::timeout(left, state::load(&mut c, &self.keys)).await {
                    Ok(Ok(s)) => self.reconcile(&s, &handle).await,
                    Ok(Err(e)) => tracing::warn!("reading the cluster state: {e}"),
                    Err(_) => {}
                }
            };
            leading.abort();
            METRICS.lease(false, handle.incarnation);
            METRICS.leading(false);
            if clean {
                self.stop_all().await;
                lease.revoke(&self.client).await;
                tracing::info!(node = self.node, "left the cluster");
                return;
            }
            self.self_fence().await;
            drop(lease);
        }
    }

    async fn reconcile(&mut self, s: &Snapshot, lease: &LeaseHandle) {
        // Stop what is no longer ours.
        let names: Vec<String> = self.local.keys().cloned().collect();
        for name in names {
            let keep = s.placement.get(&name).is_some_and(|p| {
                p.node == self.node
                    && p.incarnation == lease.incarnation
                    && p.generation == self.local[&name].running.generation
                    && !p.stop
            });
            if !keep {
                self.stop(&name).await;
            }
        }
        // Start what is placed on us.
        for (name, p) in &s.placement {
            if p.node != self.node
                || p.incarnation != lease.incarnation
                || p.stop
                || self.local.contains_key(name)
            {
                continue;
            }
            let Some(spec) = self.config.instance.get(name) else {
                continue;
            };
            // Tried already for this generation: the leader moves it on.
            if s.status
                .get(name)
                .is_some_and(|st| st.node == self.node && st.generation == p.generation)
            {
                continue;
            }
            if !lease.valid() {
                return;
            }
            self.report(
                name,
                p.generation,
                RunState::Starting,
                String::new(),
                vec![],
            )
            .await;
            match takeover::start(name, spec, &self.node, p.generation).await {
                Ok(running) => {
                    let steps = running
                        .steps
                        .iter()
                        .map(|st| (st.name.to_string(), st.took.as_millis() as u64))
                        .collect();
                    tracing::info!(instance = name, generation = p.generation, "running");
                    METRICS.running_here(name, p.generation, &spec.mountpoint);
                    self.local.insert(
                        name.clone(),
                        Local {
                            running,
                            next_probe: Instant::now() + self.config.timing.probe_interval,
                            restarts: Vec::new(),
                        },
                    );
                    self.report(name, p.generation, RunState::Running, String::new(), steps)
                        .await;
                }
                Err(e) => {
                    let state = if e.needs_repair {
                        RunState::NeedsRepair
                    } else {
                        RunState::Failed
                    };
                    self.report(name, p.generation, state, e.to_string(), vec![])
                        .await;
                }
            }
        }
        self.probe(s).await;
    }

    /// Probes due instances; a failure restarts the service in place, up to
    /// the threshold within the window, and then gives the instance up here.
    async fn probe(&mut self, s: &Snapshot) {
        let timing = self.config.timing.clone();
        let names: Vec<String> = self.local.keys().cloned().collect();
        for name in names {
            let frozen = s.instance_admin.get(&name).is_some_and(|a| a.frozen);
            let spec = &self.config.instance[&name];
            let local = self.local.get_mut(&name).expect("listed");
            if frozen || Instant::now() < local.next_probe {
                continue;
            }
            local.next_probe = Instant::now() + timing.probe_interval;
            let Err(problem) = local.running.healthy(spec).await else {
                continue;
            };
            let generation = local.running.generation;
            local
                .restarts
                .retain(|t| t.elapsed() < timing.restart_window);
            if local.restarts.len() as u32 >= timing.restart_threshold {
                let detail = format!(
                    "probe failed ({problem}) after {} restarts in {:?}: giving it up here",
                    local.restarts.len(),
                    timing.restart_window
                );
                tracing::error!(instance = name, "{detail}");
                let local = self.local.remove(&name).expect("listed");
                METRICS.gone_here(&name);
                if let Err(e) = takeover::stop_now(local.running).await {
                    tracing::error!(instance = name, "stopping: {e}");
                }
                self.report(&name, generation, RunState::Failed, detail, vec![])
                    .await;
                continue;
            }
            local.restarts.push(Instant::now());
            let attempt = local.restarts.len();
            tracing::warn!(
                instance = name,
                attempt,
                "probe failed ({problem}); restarting in place"
            );
            self.report(
                &name,
                generation,
                RunState::Restarting,
                problem.to_string(),
                vec![],
            )
            .await;
            let local = self.local.get_mut(&name).expect("listed");
            let detail = match takeover::restart_service(&mut local.running, spec).await {
                Ok(()) => format!("restarted in place ({attempt}) after: {problem}"),
                Err(e) => format!("restart {attempt} failed: {e}"),
            };
            self.report(&name, generation, RunState::Running, detail, vec![])
                .await;
        }
    }

    async fn stop(&mut self, name: &str) {
        let Some(local) = self.local.remove(name) else {
            return;
        };
        METRICS.gone_here(name);
        let generation = local.running.generation;
        self.report(name, generation, RunState::Stopping, String::new(), vec![])
            .await;
        let (state, detail) = match takeover::stop(local.running, &self.config.instance[name]).await
        {
            Ok(()) => (RunState::Stopped, String::new()),
            // Something could not be released: stay "stopping" so that
            // nobody takes it over without a fence.
            Err(e) => (RunState::Stopping, format!("stop failed: {e}")),
        };
        tracing::info!(instance = name, ?state, "stopped");
        self.report(name, generation, state, detail, vec![]).await;
    }

    async fn stop_all(&mut self) {
        let names: Vec<String> = self.local.keys().cloned().collect();
        for name in names {
            self.stop(&name).await;
        }
    }

    /// The lease deadline passed: stop everything now, without waiting
    /// for etcd (which this node may not reach).
    async fn self_fence(&mut self) {
        if self.local.is_empty() {
            tracing::warn!(node = self.node, "lease deadline passed; nothing to stop");
            return;
        }
        tracing::error!(
            node = self.node,
            instances = self.local.len(),
            "lease deadline passed: self-fencing"
        );
        for (name, local) in std::mem::take(&mut self.local) {
            METRICS.gone_here(&name);
            if let Err(e) = takeover::stop_now(local.running).await {
                tracing::error!(instance = name, "self-fence: {e}");
            } else {
                tracing::info!(instance = name, "self-fenced");
            }
        }
    }

    /// Best effort: a report that does not get through is overtaken by the
    /// next one, and the leader never acts on a missing report alone.
    async fn report(
        &self,
        name: &str,
        generation: u64,
        state: RunState,
        detail: String,
        steps: Vec<(String, u64)>,
    ) {
        let status = Status {
            node: self.node.clone(),
            generation,
            state,
            detail,
            steps,
            at_ms: now_ms(),
        };
        let mut c = self.client.clone();
        let put = c.put(self.keys.status(name), encode(&status), None);
        match tokio::time::timeout(Duration::from_secs(1), put).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(instance = name, "reporting {state:?}: {e}"),
            Err(_) => tracing::warn!(instance = name, "reporting {state:?}: etcd did not answer"),
        }
    }
}

/// A client on the first endpoint that answers: for one-shot commands,
/// which cannot wait for a balanced channel to learn that a member is down.
pub async fn connect_any(config: &ClusterConfig) -> Result<Client, ClusterError> {
    let mut errors = Vec::new();
    for endpoint in &config.etcd.endpoints {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let attempt = async {
            let mut c = Client::connect([endpoint], Some(options)).await?;
            c.status().await?;
            Ok::<_, etcd_client::Error>(c)
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => errors.push(format!("{endpoint}: {e}")),
            Err(_) => errors.push(format!("{endpoint}: no answer in 2s")),
        }
    }
    Err(ClusterError::NoMember(errors))
}

/// An etcd client over every endpoint; requests go to any live member.
pub async fn connect(config: &ClusterConfig) -> Result<Client, ClusterError> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1));
    Client::connect(&config.etcd.endpoints, Some(options))
        .await
        .map_err(|source| ClusterError::Connect {
            endpoints: config.etcd.endpoints.join(","),
            source,
        })
}
