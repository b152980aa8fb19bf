//! Configuration commands applied to a `Desired`: what `service add`,
//! `real set` and friends mean, independent of the maps.
use std::net::{IpAddr, SocketAddr};

use fulmar_common::{MAX_REALS, MAX_SERVICES};

use crate::{
    command::{CheckDefaults, Command, RealOpts},
    model::{Desired, RealConf, ServiceAddr, ServiceConf},
    services::{Forwarding, RealState, Scheduler},
};

/// Why a change was refused; the configuration stays as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("service {0} exists; change it with `fulmar service set {0} ...`")]
    ServiceExists(ServiceAddr),
    #[error("no service {0}; see `fulmar service show`, or add it with `fulmar service add {0}`")]
    NoService(ServiceAddr),
    #[error("all {MAX_SERVICES} services are in use; delete one first")]
    TooManyServices,
    #[error(
        "real {endpoint} of {service} exists; change it with `fulmar real set {service} {target} ...`"
    )]
    RealExists {
        service: ServiceAddr,
        endpoint: SocketAddr,
        target: IpAddr,
    },
    #[error("{service} has no real {endpoint}; see `fulmar real show {service}`")]
    NoReal {
        service: ServiceAddr,
        endpoint: SocketAddr,
    },
    #[error("{0} has {MAX_REALS} reals, the most a service holds")]
    TooManyReals(ServiceAddr),
    #[error("real {endpoint} and VIP {vip} are of different address families")]
    Family { endpoint: SocketAddr, vip: IpAddr },
    #[error("{0} does not change the configuration")]
    NotAChange(String),
    /// A batch line that does not parse or is not a change.
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
}

impl From<EditError> for String {
    fn from(e: EditError) -> String {
        e.to_string()
    }
}

impl Desired {
    /// Applies one configuration command; on error `self` is unchanged.
    pub fn apply(&mut self, command: &Command, defaults: &CheckDefaults) -> Result<(), EditError> {
        match command {
            Command::ServiceAdd(addr, opts) => {
                if self.services.contains_key(addr) {
                    return Err(EditError::ServiceExists(*addr));
                }
                if self.services.len() >= MAX_SERVICES as usize {
                    return Err(EditError::TooManyServices);
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
                    return Err(EditError::NoService(*addr));
                }
            }
            Command::ServiceFlush => self.services.clear(),
            Command::RealAdd(addr, target, opts) => {
                let endpoint = target.endpoint(addr);
                let svc = self.service_mut(addr)?;
                if svc.real(endpoint).is_some() {
                    return Err(EditError::RealExists {
                        service: *addr,
                        endpoint,
                        target: target.addr,
                    });
                }
                if svc.reals.len() >= MAX_REALS as usize {
                    return Err(EditError::TooManyReals(*addr));
                }
                if endpoint.is_ipv4() != addr.vip.is_ipv4() {
                    return Err(EditError::Family {
                        endpoint,
                        vip: addr.vip,
                    });
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
                    return Err(EditError::NoReal {
                        service: *addr,
                        endpoint,
                    });
                }
            }
            other => return Err(EditError::NotAChange(format!("{other:?}"))),
        }
        Ok(())
    }

    fn service_mut(&mut self, addr: &ServiceAddr) -> Result<&mut ServiceConf, EditError> {
        self.services
            .get_mut(addr)
            .ok_or(EditError::NoService(*addr))
    }

    fn real_mut(
        &mut self,
        addr: &ServiceAddr,
        endpoint: SocketAddr,
    ) -> Result<&mut RealConf, EditError> {
        let svc = self.service_mut(addr)?;
        svc.reals
            .iter_mut()
            .find(|r| r.endpoint() == endpoint)
            .ok_or(EditError::NoReal {
                service: *addr,
                endpoint,
            })
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

/// Applies batch lines to a copy of `desired`: all or nothing.
pub fn apply_batch(
    desired: &Desired,
    lines: &[String],
    defaults: &CheckDefaults,
) -> Result<Desired, EditError> {
    let mut next = desired.clone();
    for (n, line) in lines.iter().enumerate() {
        let words = crate::command::split_line(line);
        if words.is_empty() {
            continue;
        }
        let at = |why: String| EditError::Line { line: n + 1, why };
        let command = crate::command::parse(&words).map_err(|e| at(e.to_string()))?;
        if !command.is_config() {
            return Err(at(format!(
                "only service and real changes belong in a batch, not {line:?}"
            )));
        }
        next.apply(&command, defaults)
            .map_err(|e| at(e.to_string()))?;
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
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = apply_batch(&desired, &lines("flow flush"), &CheckDefaults::default())
            .unwrap_err()
            .to_string();
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
        assert!(
            desired
                .apply(&dup, &d)
                .unwrap_err()
                .to_string()
                .contains("real set")
        );
        let v6 = crate::command::parse(&crate::command::split_line(
            "real add 198.18.1.100:25 2001:db8:1::11",
        ))
        .unwrap();
        assert!(
            desired
                .apply(&v6, &d)
                .unwrap_err()
                .to_string()
                .contains("families")
        );
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
