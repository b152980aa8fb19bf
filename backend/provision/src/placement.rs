//! Which instance a new account lives on. Pure: the counts and the domain
//! table come from the directory; the caller writes the result.
use std::{collections::BTreeMap, fmt, str::FromStr};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::{config::ProvisionConfig, error::ProvisionError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// Uniform over the open instances.
    Random,
    /// Proportional to each open instance's `weight`.
    Weighted,
    /// The open instance with the fewest accounts (ties: by name).
    #[default]
    LeastUsed,
    /// The instance of the account's domain entry; the account entry then
    /// carries no `mailHost` of its own.
    Domain,
}

impl FromStr for Algorithm {
    type Err = ProvisionError;
    fn from_str(s: &str) -> Result<Self, ProvisionError> {
        match s {
            "random" => Ok(Self::Random),
            "weighted" => Ok(Self::Weighted),
            "least-used" => Ok(Self::LeastUsed),
            "domain" => Ok(Self::Domain),
            _ => Err(ProvisionError::UnknownPlacement(s.to_string())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Random => "random",
            Self::Weighted => "weighted",
            Self::LeastUsed => "least-used",
            Self::Domain => "domain",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub instance: String,
    /// Routed by the domain's entry: the account gets no `mailHost`.
    pub via_domain: bool,
}

pub struct Placer {
    algorithm: Algorithm,
    /// Open instances and their weights, by name.
    open: Vec<(String, u32)>,
    /// Accounts per configured instance, kept up to date as we place.
    counts: BTreeMap<String, usize>,
    /// Domain (lower case) → instance name, from the domain entries.
    domains: BTreeMap<String, String>,
    rng: StdRng,
}

impl Placer {
    /// `counts` and `domains` as read from the directory; `seed` makes the
    /// random algorithms repeatable (dry runs, tests).
    pub fn new(
        config: &ProvisionConfig,
        algorithm: Algorithm,
        counts: BTreeMap<String, usize>,
        domains: BTreeMap<String, String>,
        seed: Option<u64>,
    ) -> Self {
        let open = config
            .instance
            .iter()
            .filter(|(_, i)| !i.closed)
            .map(|(n, i)| (n.clone(), i.weight))
            .collect();
        let mut all: BTreeMap<String, usize> =
            config.instance.keys().map(|n| (n.clone(), 0)).collect();
        for (name, n) in counts {
            if let Some(c) = all.get_mut(&name) {
                *c = n;
            }
        }
        Self {
            algorithm,
            open,
            counts: all,
            domains,
            rng: match seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_os_rng(),
            },
        }
    }

    /// Places one account of `domain` and counts it.
    pub fn place(&mut self, domain: &str) -> Result<Placement, ProvisionError> {
        let placement = match self.algorithm {
            Algorithm::Random => Placement {
                instance: self.open[self.rng.random_range(0..self.open.len())]
                    .0
                    .clone(),
                via_domain: false,
            },
            Algorithm::Weighted => {
                let total: u64 = self.open.iter().map(|(_, w)| u64::from(*w)).sum();
                if total == 0 {
                    return Err(ProvisionError::NoWeight);
                }
                let mut pick = self.rng.random_range(0..total);
                let mut chosen = &self.open[0].0;
                for (name, w) in &self.open {
                    if pick < u64::from(*w) {
                        chosen = name;
                        break;
                    }
                    pick -= u64::from(*w);
                }
                Placement {
                    instance: chosen.clone(),
                    via_domain: false,
                }
            }
            Algorithm::LeastUsed => {
                let (name, _) = self
                    .open
                    .iter()
                    .min_by_key(|(n, _)| (self.counts[n], n.clone()))
                    .expect("config has an open instance");
                Placement {
                    instance: name.clone(),
                    via_domain: false,
                }
            }
            Algorithm::Domain => {
                let d = domain.to_ascii_lowercase();
                let instance = self
                    .domains
                    .get(&d)
                    .ok_or_else(|| ProvisionError::NoDomainEntry(d.clone()))?;
                Placement {
                    instance: instance.clone(),
                    via_domain: true,
                }
            }
        };
        self.record(&placement.instance);
        Ok(placement)
    }

    /// Counts an account placed by other means (an explicit instance).
    pub fn record(&mut self, instance: &str) {
        if let Some(c) = self.counts.get_mut(instance) {
            *c += 1;
        }
    }

    pub fn counts(&self) -> &BTreeMap<String, usize> {
        &self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a (weight 1), b (weight 3), c (weight 1, then `extra`).
    fn config(extra: &str) -> ProvisionConfig {
        let c = crate::config::test_config(&format!(
            "[instance.c]\nmail_host = \"198.18.9.13\"\n{extra}\n"
        ));
        let mut c = c;
        let a = c.instance.remove("mail1").unwrap();
        let b = c.instance.remove("mail2").unwrap();
        c.instance.insert("a".into(), a);
        c.instance.insert("b".into(), b);
        c
    }

    fn placer(c: &ProvisionConfig, a: Algorithm, counts: &[(&str, usize)]) -> Placer {
        let counts = counts.iter().map(|(n, c)| (n.to_string(), *c)).collect();
        let domains = [("one.test".to_string(), "c".to_string())].into();
        Placer::new(c, a, counts, domains, Some(7))
    }

    #[test]
    fn least_used_fills_the_emptiest_and_ends_level() {
        let c = config("");
        let mut p = placer(&c, Algorithm::LeastUsed, &[("a", 5), ("b", 2), ("c", 0)]);
        let first: Vec<String> = (0..3)
            .map(|_| p.place("x.test").unwrap().instance)
            .collect();
        assert_eq!(first, ["c", "c", "b"]);
        for _ in 0..100 {
            p.place("x.test").unwrap();
        }
        let n: Vec<usize> = p.counts().values().copied().collect();
        assert!(
            n.iter().max().unwrap() - n.iter().min().unwrap() <= 1,
            "{n:?}"
        );
    }

    #[test]
    fn closed_instances_get_nothing_but_are_counted() {
        let c = config("closed = true");
        let mut p = placer(&c, Algorithm::LeastUsed, &[("a", 1), ("b", 1)]);
        for a in [Algorithm::LeastUsed, Algorithm::Random, Algorithm::Weighted] {
            p.algorithm = a;
            for _ in 0..50 {
                assert_ne!(p.place("x.test").unwrap().instance, "c");
            }
        }
        assert_eq!(p.counts()["c"], 0);
    }

    #[test]
    fn weighted_follows_the_weights_and_skips_weight_zero() {
        let c = config("weight = 0");
        let mut p = placer(&c, Algorithm::Weighted, &[]);
        for _ in 0..4000 {
            p.place("x.test").unwrap();
        }
        let n = p.counts();
        assert_eq!(n["c"], 0);
        // Expected 1000 and 3000; ±5 standard deviations (±137).
        assert!(n["a"].abs_diff(1000) < 137, "{n:?}");
    }

    #[test]
    fn domain_placement_uses_the_table_and_names_a_missing_entry() {
        let c = config("");
        let mut p = placer(&c, Algorithm::Domain, &[]);
        let got = p.place("ONE.test").unwrap();
        assert_eq!(
            got,
            Placement {
                instance: "c".into(),
                via_domain: true
            }
        );
        let e = p.place("two.test").unwrap_err().to_string();
        assert!(e.contains("fulmar domain add two.test"), "{e}");
    }

    #[test]
    fn same_seed_same_placements() {
        let c = config("");
        let run = || {
            let mut p = placer(&c, Algorithm::Random, &[]);
            (0..20)
                .map(|_| p.place("x.test").unwrap().instance)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        assert_eq!(
            "least-used".parse::<Algorithm>().unwrap(),
            Algorithm::LeastUsed
        );
        assert!("roulette".parse::<Algorithm>().is_err());
    }
}
