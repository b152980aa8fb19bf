//! What `fulmar` prints: one `Serialize` row per listing, rendered as text
//! or JSON from the same value. The daemon fills them; `-s` levels decide
//! which optional parts it includes.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceRow {
    pub service: String,
    pub scheduler: String,
    /// The scheduler in the maps (`wlc` while an `lc` service ramps a real).
    pub scheduler_live: String,
    pub forward: String,
    pub reset_on_down: bool,
    pub reals: usize,
    pub reals_up: usize,
    pub active: u64,
    pub inactive: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stats: Option<ServiceStatsRow>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServiceStatsRow {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Packets (of `packets`) forwarded from a CPU's flow cache.
    #[serde(default)]
    pub flow_cache_hits: u64,
    /// Only with -s -s.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drops: Option<DropsRow>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DropsRow {
    pub no_real: u64,
    pub table_full: u64,
    pub real_down: u64,
    pub stale: u64,
    pub rst_sent: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RealRow {
    pub service: String,
    pub real: String,
    pub weight: u16,
    pub weight_live: u32,
    /// The operator's state.
    pub state: String,
    /// The state in the maps.
    pub state_live: String,
    /// Why the live state differs ("check failed", "mac unresolved", ...).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub reason: String,
    pub ramping: bool,
    pub mac: Option<String>,
    pub active: u64,
    pub inactive: u64,
    pub check: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stats: Option<RealStatsRow>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RealStatsRow {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Only with -s -s: the last probe's outcome.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_check: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowRow {
    pub client: String,
    pub service: String,
    pub real: String,
    pub state: String,
    pub idle_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowCountRow {
    pub service: String,
    pub flows: u64,
    pub active: u64,
    pub inactive: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsRow {
    pub flows: u64,
    pub flow_capacity: u32,
    pub counters: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttachRow {
    pub interface: String,
    pub mode: String,
    pub pin_dir: String,
    pub program_id: Option<u32>,
    pub flow_capacity: u32,
    pub vips: Vec<String>,
}

/// Something the daemon reports to `fulmar monitor`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RealState {
        service: String,
        real: String,
        from: String,
        to: String,
        reason: String,
    },
    Weight {
        service: String,
        real: String,
        from: u32,
        to: u32,
    },
    Mac {
        real: String,
        mac: String,
    },
    FlowPressure {
        flows: u64,
        capacity: u32,
        evicted: u64,
    },
    Config {
        services: usize,
        reals: usize,
    },
}

/// A daemon answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "kebab-case")]
pub enum Reply {
    Services(Vec<ServiceRow>),
    Reals(Vec<RealRow>),
    Flows(Vec<FlowRow>),
    FlowCounts(Vec<FlowCountRow>),
    Stats(StatsRow),
    Attach(AttachRow),
    /// `save` output.
    Batch(String),
    /// A change was applied.
    Done(String),
    Help(String),
    Event(Event),
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// The `-s` line of a service or a real.
fn traffic(indent: &str, packets: u64, n_bytes: u64, new_flows: u64) -> String {
    format!(
        "{indent}packets {packets} bytes {} new-flows {new_flows}\n",
        bytes(n_bytes)
    )
}

impl Event {
    pub fn text(&self) -> String {
        match self {
            Event::RealState {
                service,
                real,
                from,
                to,
                reason,
            } => {
                let why = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                format!("real {real} of {service}: {from} -> {to}{why}")
            }
            Event::Weight {
                service,
                real,
                from,
                to,
            } => {
                format!("real {real} of {service}: weight {from} -> {to}")
            }
            Event::Mac { real, mac } => format!("neighbour {real} is at {mac}"),
            Event::FlowPressure {
                flows,
                capacity,
                evicted,
            } => format!("flow table pressure: {flows}/{capacity} flows, evicted {evicted} oldest"),
            Event::Config { services, reals } => {
                format!("configuration applied: {services} services, {reals} reals")
            }
        }
    }
}

impl Reply {
    /// The text form, as `ip` and `ipvsadm -L` print.
    pub fn text(&self) -> String {
        let mut out = String::new();
        match self {
            Reply::Services(rows) => {
                for r in rows {
                    let sched = if r.scheduler == r.scheduler_live {
                        r.scheduler.clone()
                    } else {
                        format!("{} (live {})", r.scheduler, r.scheduler_live)
                    };
                    out += &format!(
                        "service {} {sched} forward {}{} reals {}/{} up active {} inactive {}\n",
                        r.service,
                        r.forward,
                        if r.reset_on_down {
                            " reset-on-down"
                        } else {
                            ""
                        },
                        r.reals_up,
                        r.reals,
                        r.active,
                        r.inactive
                    );
                    if let Some(s) = &r.stats {
                        out += &traffic("    ", s.packets, s.bytes, s.new_flows);
                        if let Some(d) = &s.drops {
                            out += &format!(
                                "    drops no-real {} table-full {} real-down {} stale {} rst-sent {}\n",
                                d.no_real, d.table_full, d.real_down, d.stale, d.rst_sent
                            );
                            out += &format!("    flow-cache hits {}\n", s.flow_cache_hits);
                        }
                    }
                }
            }
            Reply::Reals(rows) => {
                let mut last = "";
                for r in rows {
                    if r.service != last {
                        out += &format!("service {}\n", r.service);
                        last = &r.service;
                    }
                    let state = if r.state == r.state_live {
                        r.state.clone()
                    } else {
                        format!("{} (live {}: {})", r.state, r.state_live, r.reason)
                    };
                    out += &format!(
                        "  -> {} weight {} live {}{} {state} active {} inactive {} mac {} check {}",
                        r.real,
                        r.weight,
                        r.weight_live,
                        if r.ramping { " ramping" } else { "" },
                        r.active,
                        r.inactive,
                        r.mac.as_deref().unwrap_or("unresolved"),
                        r.check
                    );
                    if let Some(agent) = &r.agent {
                        out += &format!(" agent {agent}");
                    }
                    out.push('\n');
                    if let Some(s) = &r.stats {
                        out += &traffic("       ", s.packets, s.bytes, s.new_flows);
                        if let Some(last) = &s.last_check {
                            out += &format!("       last check: {last}\n");
                        }
                    }
                }
            }
            Reply::Flows(rows) => {
                for r in rows {
                    out += &format!(
                        "{} -> {} via {} {} idle {}ms\n",
                        r.client, r.service, r.real, r.state, r.idle_ms
                    );
                }
            }
            Reply::FlowCounts(rows) => {
                for r in rows {
                    out += &format!(
                        "{} flows {} active {} inactive {}\n",
                        r.service, r.flows, r.active, r.inactive
                    );
                }
            }
            Reply::Stats(s) => {
                out += &format!("flows {}/{}\n", s.flows, s.flow_capacity);
                for (name, value) in &s.counters {
                    out += &format!("{name} {value}\n");
                }
            }
            Reply::Attach(a) => {
                out += &format!(
                    "{}: xdp {} prog id {} pinned {} flow-capacity {}\n",
                    a.interface,
                    a.mode,
                    a.program_id.map_or("?".into(), |i| i.to_string()),
                    a.pin_dir,
                    a.flow_capacity
                );
                if !a.vips.is_empty() {
                    out += &format!("    vips {}\n", a.vips.join(" "));
                }
            }
            Reply::Batch(text) | Reply::Help(text) => out += text,
            Reply::Done(text) => {
                if !text.is_empty() {
                    out += text;
                    out.push('\n');
                }
            }
            Reply::Event(e) => {
                out += &e.text();
                out.push('\n');
            }
        }
        out
    }

    /// The JSON form: the rows themselves, as `ip -j` prints arrays.
    pub fn json(&self, pretty: bool) -> String {
        let value = match self {
            Reply::Services(r) => serde_json::to_value(r),
            Reply::Reals(r) => serde_json::to_value(r),
            Reply::Flows(r) => serde_json::to_value(r),
            Reply::FlowCounts(r) => serde_json::to_value(r),
            Reply::Stats(r) => serde_json::to_value(r),
            Reply::Attach(r) => serde_json::to_value(r),
            Reply::Event(e) => serde_json::to_value(e),
            Reply::Batch(t) | Reply::Done(t) | Reply::Help(t) => serde_json::to_value(t),
        }
        .expect("rows serialize");
        if pretty {
            serde_json::to_string_pretty(&value).expect("json")
        } else {
            value.to_string()
        }
    }
}

/// One request on the control socket (a JSON line).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Request {
    /// One command's words, with the `-s` level.
    Command { argv: Vec<String>, stats: u8 },
    /// Batch lines applied all or nothing.
    Batch { lines: Vec<String> },
}

/// One answer line on the control socket.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    Ok(Reply),
    Error(String),
}
