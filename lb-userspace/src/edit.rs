//! Configuration commands applied to a `Desired`: what `service add`,
//! `real set` and friends mean, independent of the maps.
use fulmar_common::{MAX_REALS, MAX_SERVICES};

use crate::{
    command::{CheckDefaults, Command, RealOpts},
    model::{Desired, RealConf, ServiceConf},
    services::{Forwarding, RealState, Scheduler},
};

impl Desired {
    /// Applies one configuration command; on error `self` is unchanged.
    pub fn apply(&mut self, command: &Command, defaults: &CheckDefaults) -> Result<(), String> {
        match command {
            Command::ServiceAdd(addr, opts) => {
                if self.services.contains_key(addr) {
                    return Err(format!(
                        "service {addr} exists; change it with `fulmar service set {addr} ...`"
                    ));
                }
                if self.services.len() >= MAX_SERVICES as usize {
                    return Err(format!(
                        "all {MAX_SERVICES} services are in use; delete one first"
                    ));
                }
                self.services.insert(
                    *addr,
                    ServiceConf {
                        scheduler: opts.scheduler.unwrap_or(Scheduler::Lc),
                        forwarding: opts.forwarding.unwrap_or(Forwarding::DirectRouting),
                        reset_on_down: opts.reset_on_down.unwrap_or(false),
                        reals: Vec::new(),
                    },
                );
            }
            Command::ServiceSet(addr, opts) => {
                let svc = self.service_mut(addr)?;
                if let Some(v) = opts.scheduler {
                    svc.scheduler = v;
                }
                if let Some(v) = opts.forwarding {
                    svc.forwarding = v;
                }
                if let Some(v) = opts.reset_on_down {
                    svc.reset_on_down = v;
                }
            }
            Command::ServiceDel(addr) => {
                if self.services.remove(addr).is_none() {
                    return Err(no_service(addr));
                }
            }
            Command::ServiceFlush => self.services.clear(),
            Command::RealAdd(addr, target, opts) => {
                let endpoint = target.endpoint(addr);
                let svc = self.service_mut(addr)?;
                if svc.real(endpoint).is_some() {
                    return Err(format!(
                        "real {endpoint} of {addr} exists; change it with `fulmar real set {addr} {} ...`",
                        target.addr
                    ));
                }
                if svc.reals.len() >= MAX_REALS as usize {
                    return Err(format!(
                        "{addr} has {MAX_REALS} reals, the most a service holds"
                    ));
                }
                if endpoint.is_ipv4() != addr.vip.is_ipv4() {
                    return Err(format!(
                        "real {endpoint} and VIP {} are of different address families",
                        addr.vip
                    ));
                }
                svc.reals.push(RealConf {
                    addr: endpoint.ip(),
                    port: endpoint.port(),
                    weight: opts.weight.unwrap_or(1),
                    state: opts.state.unwrap_or(RealState::Up),
                    mac: opts.mac.flatten(),
                    check: opts.new_check(endpoint.port(), defaults),
                });
            }
            Command::RealSet(addr, target, opts) => {
                let endpoint = target.endpoint(addr);
                let real = self.real_mut(addr, endpoint)?;
                update_real(real, opts);
            }
            Command::RealDel(addr, target) => {
                let endpoint = target.endpoint(addr);
                let svc = self.service_mut(addr)?;
                let before = svc.reals.len();
                svc.reals.retain(|r| r.endpoint() != endpoint);
                if svc.reals.len() == before {
                    return Err(format!(
                        "{addr} has no real {endpoint}; see `fulmar real show {addr}`"
                    ));
                }
            }
            other => return Err(format!("{other:?} does not change the configuration")),
        }
        Ok(())
    }

    fn service_mut(
        &mut self,
        addr: &crate::model::ServiceAddr,
    ) -> Result<&mut ServiceConf, String> {
        self.services.get_mut(addr).ok_or_else(|| no_service(addr))
    }

    fn real_mut(
        &mut self,
        addr: &crate::model::ServiceAddr,
        endpoint: std::net::SocketAddr,
    ) -> Result<&mut RealConf, String> {
        let svc = self.service_mut(addr)?;
        svc.reals
            .iter_mut()
            .find(|r| r.endpoint() == endpoint)
            .ok_or_else(|| format!("{addr} has no real {endpoint}; see `fulmar real show {addr}`"))
    }
}

fn update_real(real: &mut RealConf, opts: &RealOpts) {
    if let Some(v) = opts.weight {
        real.weight = v;
    }
    if let Some(v) = opts.state {
        real.state = v;
    }
    if let Some(v) = opts.mac {
        real.mac = v;
    }
    opts.update_check(&mut real.check);
}

fn no_service(addr: &crate::model::ServiceAddr) -> String {
    format!(
        "no service {addr}; see `fulmar service show`, or add it with `fulmar service add {addr}`"
    )
}

/// Applies batch lines to a copy of `desired`: all or nothing.
pub fn apply_batch(
    desired: &Desired,
    lines: &[String],
    defaults: &CheckDefaults,
) -> Result<Desired, String> {
    let mut next = desired.clone();
    for (n, line) in lines.iter().enumerate() {
        let words = crate::command::split_line(line);
        if words.is_empty() {
            continue;
        }
        let command = crate::command::parse(&words).map_err(|e| format!("line {}: {e}", n + 1))?;
        if !command.is_config() {
            return Err(format!(
                "line {}: only service and real changes belong in a batch, not {line:?}",
                n + 1
            ));
        }
        next.apply(&command, defaults)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn save_then_batch_restores_exactly() {
        let defaults = CheckDefaults::default();
        let desired = apply_batch(
            &Desired::default(),
            &lines(
                "service add 198.18.1.100:143 scheduler wlc reset-on-down on\n\
                 real add 198.18.1.100:143 198.18.1.11 weight 3\n\
                 real add 198.18.1.100:143 198.18.1.12:1143 state drain mac 02:00:00:00:00:01 agent 5555\n\
                 service add [2001:db8:1::100]:995 forward nat\n\
                 real add [2001:db8:1::100]:995 2001:db8:1::11 check tcp tls off rise 5\n",
            ),
            &defaults,
        )
        .unwrap();
        let saved = desired.to_batch();
        // Other defaults in the reading daemon change nothing.
        let other = CheckDefaults {
            rise: 9,
            ..CheckDefaults::default()
        };
        let restored = apply_batch(&Desired::default(), &lines(&saved), &other).unwrap();
        assert_eq!(restored, desired, "{saved}");
        // Restoring over a different live configuration replaces it.
        let again = apply_batch(&restored, &lines(&saved), &other).unwrap();
        assert_eq!(again, desired);
    }

    #[test]
    fn a_bad_line_applies_nothing_and_names_the_line() {
        let desired = Desired::default();
        let err = apply_batch(
            &desired,
            &lines("service add 198.18.1.100:25\nreal add 198.18.1.100:25 198.18.1.11 weigth 2\n"),
            &CheckDefaults::default(),
        )
        .unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err =
            apply_batch(&desired, &lines("flow flush"), &CheckDefaults::default()).unwrap_err();
        assert!(err.contains("only service and real changes"), "{err}");
    }

    #[test]
    fn edits_check_what_they_touch() {
        let d = CheckDefaults::default();
        let mut desired = apply_batch(
            &Desired::default(),
            &lines("service add 198.18.1.100:25\nreal add 198.18.1.100:25 198.18.1.11"),
            &d,
        )
        .unwrap();
        let dup = crate::command::parse(&crate::command::split_line(
            "real add 198.18.1.100:25 198.18.1.11",
        ))
        .unwrap();
        assert!(desired.apply(&dup, &d).unwrap_err().contains("real set"));
        let v6 = crate::command::parse(&crate::command::split_line(
            "real add 198.18.1.100:25 2001:db8:1::11",
        ))
        .unwrap();
        assert!(desired.apply(&v6, &d).unwrap_err().contains("families"));
        let set = crate::command::parse(&crate::command::split_line(
            "real set 198.18.1.100:25 198.18.1.11 weight 7 check none",
        ))
        .unwrap();
        desired.apply(&set, &d).unwrap();
        let real = &desired.services.values().next().unwrap().reals[0];
        assert_eq!(real.weight, 7);
        assert_eq!(real.check.kind, crate::model::CheckKind::None);
    }
}
