//! `GET /metrics` of fulmar-lbd: per service and real, the state the data
//! path uses, the flows pinned to each real, packets and bytes forwarded,
//! and the health checks' results; the flow table's fill. Read from the
//! same rows `fulmar ... show -s` prints, so the two never disagree.
use fulmar_daemon::metrics::{Kind, Text};

use super::core::Core;
use crate::{
    model::format_real,
    rows::{RealRow, ServiceRow},
};

impl Core {
    pub fn metrics_text(&self) -> String {
        let mut t = Text::default();
        t.family(
            "fulmar_lb_attached",
            Kind::Gauge,
            "1 while the XDP program is attached, by interface and mode.",
        )
        .sample(
            "fulmar_lb_attached",
            &[
                ("interface", &self.attach.interface),
                ("mode", &self.attach.mode),
            ],
            1,
        );
        match self.stats_row() {
            Ok(s) => {
                t.single(
                    "fulmar_lb_flows",
                    Kind::Gauge,
                    "Flows in the flow table.",
                    s.flows,
                );
                t.single(
                    "fulmar_lb_flow_capacity",
                    Kind::Gauge,
                    "Capacity of the flow table.",
                    s.flow_capacity,
                );
            }
            Err(e) => tracing::warn!("metrics: reading the flow table: {e}"),
        }
        if let Ok(services) = self.service_rows(None, 2) {
            services_text(&mut t, &services);
        }
        if let Ok(reals) = self.real_rows(None, 2) {
            self.reals_text(&mut t, &reals);
        }
        t.finish()
    }

    fn reals_text(&self, t: &mut Text, reals: &[RealRow]) {
        let labels = |r: &RealRow| [("service", r.service.clone()), ("real", r.real.clone())];
        let gauges: [Series<RealRow>; 4] = [
            (
                "fulmar_lb_real_up",
                "1 while the real takes new flows (checks pass, not drained).",
                |r| u64::from(r.state_live == "up"),
            ),
            (
                "fulmar_lb_real_weight",
                "The weight the scheduler uses now (0 while down or drained).",
                |r| u64::from(r.weight_live),
            ),
            (
                "fulmar_lb_real_flows_active",
                "Established flows pinned to the real.",
                |r| r.active,
            ),
            (
                "fulmar_lb_real_flows_inactive",
                "Closing or idle flows pinned to the real.",
                |r| r.inactive,
            ),
        ];
        families(t, Kind::Gauge, &gauges, reals, labels);
        let counters: [Series<RealRow>; 3] = [
            (
                "fulmar_lb_real_packets_total",
                "Packets forwarded to the real.",
                |r| r.stats.as_ref().map_or(0, |s| s.packets),
            ),
            (
                "fulmar_lb_real_bytes_total",
                "Bytes forwarded to the real.",
                |r| r.stats.as_ref().map_or(0, |s| s.bytes),
            ),
            (
                "fulmar_lb_real_new_flows_total",
                "Flows scheduled to the real.",
                |r| r.stats.as_ref().map_or(0, |s| s.new_flows),
            ),
        ];
        families(t, Kind::Counter, &counters, reals, labels);
        let name = "fulmar_lb_real_checks_total";
        t.family(name, Kind::Counter, "Health checks of the real, by result.");
        for ((svc, endpoint), log) in &self.checks {
            let service = svc.to_string();
            let real = format_real(endpoint.ip(), endpoint.port(), svc.port);
            for (result, v) in [("ok", log.ok_total), ("failed", log.failed_total)] {
                t.sample(
                    name,
                    &[("service", &service), ("real", &real), ("result", result)],
                    v,
                );
            }
        }
    }
}

/// Name, help and the value of one row.
type Series<R> = (&'static str, &'static str, fn(&R) -> u64);

/// One family per series, one sample per row.
fn families<R, const N: usize>(
    t: &mut Text,
    kind: Kind,
    series: &[Series<R>],
    rows: &[R],
    labels: impl Fn(&R) -> [(&'static str, String); N],
) {
    for (name, help, get) in series {
        t.family(name, kind, help);
        for r in rows {
            let l = labels(r);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            t.sample(name, &l, get(r));
        }
    }
}

fn services_text(t: &mut Text, services: &[ServiceRow]) {
    let labels = |s: &ServiceRow| [("service", s.service.clone())];
    let gauges: [Series<ServiceRow>; 2] = [
        ("fulmar_lb_service_reals", "Reals configured.", |s| {
            s.reals as u64
        }),
        (
            "fulmar_lb_service_reals_up",
            "Reals taking new flows.",
            |s| s.reals_up as u64,
        ),
    ];
    families(t, Kind::Gauge, &gauges, services, labels);
    let counters: [Series<ServiceRow>; 3] = [
        (
            "fulmar_lb_service_packets_total",
            "Packets to the VIP.",
            |s| s.stats.as_ref().map_or(0, |x| x.packets),
        ),
        ("fulmar_lb_service_bytes_total", "Bytes to the VIP.", |s| {
            s.stats.as_ref().map_or(0, |x| x.bytes)
        }),
        (
            "fulmar_lb_service_new_flows_total",
            "Flows scheduled.",
            |s| s.stats.as_ref().map_or(0, |x| x.new_flows),
        ),
    ];
    families(t, Kind::Counter, &counters, services, labels);
    let name = "fulmar_lb_service_drops_total";
    t.family(
        name,
        Kind::Counter,
        "Packets to the VIP dropped, by reason.",
    );
    for s in services {
        let Some(d) = s.stats.as_ref().and_then(|x| x.drops.as_ref()) else {
            continue;
        };
        for (reason, v) in [
            ("no_real", d.no_real),
            ("table_full", d.table_full),
            ("real_down", d.real_down),
            ("stale", d.stale),
        ] {
            t.sample(name, &[("service", &s.service), ("reason", reason)], v);
        }
    }
}
