//! The command grammar of `fulmar`, batch files and the services file:
//! `OBJECT COMMAND ARGS`, every keyword accepted by an unambiguous prefix
//! as iproute2 does (`fulmar ser sh`, `fulmar r a ... w 3`).
use std::{net::IpAddr, net::SocketAddr, time::Duration};

use fulmar_daemon::grammar::{KeywordError, keyword};
use serde::{Deserialize, Serialize};

use crate::{
    model::{CheckConf, CheckKind, ServiceAddr, parse_mac},
    services::{Forwarding, RealState, Scheduler},
};

/// Health-check values a `real add` that leaves them out gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckDefaults {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    #[serde(with = "humantime_serde")]
    pub slow_start: Duration,
}

impl Default for CheckDefaults {
    fn default() -> Self {
        Self {
            // A dead proxy is out within 1 s: a refused connect fails at once,
            // a silent host after `timeout`; two failures in a row take it
            // out, so the worst case is interval + 2 x timeout = 700 ms.
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(250),
            // Two successes bring it back: one lucky accept is not recovery.
            rise: 2,
            fall: 2,
            // A returning proxy takes its full share of new sessions after 10 s.
            slow_start: Duration::from_secs(10),
        }
    }
}

/// Service options; `None` leaves the value alone (`set`) or defaults (`add`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceOpts {
    pub scheduler: Option<Scheduler>,
    pub forwarding: Option<Forwarding>,
    pub reset_on_down: Option<bool>,
}

/// Real options; `None` leaves the value alone (`set`) or defaults (`add`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RealOpts {
    pub weight: Option<u16>,
    pub state: Option<RealState>,
    /// `Some(None)`: back to resolving the MAC by neighbour discovery.
    pub mac: Option<Option<[u8; 6]>>,
    pub check: Option<CheckKind>,
    pub tls: Option<bool>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub slow_start: Option<Duration>,
    /// `Some(None)`: agent check off.
    pub agent: Option<Option<u16>>,
}

impl RealOpts {
    /// A new real's check: the given values over the port's natural probe
    /// and the daemon's defaults.
    pub fn new_check(&self, port: u16, defaults: &CheckDefaults) -> CheckConf {
        let (kind, tls) = CheckKind::for_port(port);
        let mut check = CheckConf {
            kind,
            tls,
            interval: defaults.interval,
            timeout: defaults.timeout,
            rise: defaults.rise,
            fall: defaults.fall,
            slow_start: defaults.slow_start,
            agent_port: None,
        };
        self.update_check(&mut check);
        check
    }

    pub fn update_check(&self, check: &mut CheckConf) {
        if let Some(kind) = self.check {
            check.kind = kind;
        }
        macro_rules! take {
            ($($field:ident => $to:ident),*) => {$( if let Some(v) = self.$field { check.$to = v; } )*};
        }
        take!(tls => tls, interval => interval, timeout => timeout, rise => rise, fall => fall,
              slow_start => slow_start, agent => agent_port);
    }
}

/// A real named on the command line; the port defaults to the service's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealTarget {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl RealTarget {
    pub fn endpoint(&self, service: &ServiceAddr) -> SocketAddr {
        SocketAddr::new(self.addr, self.port.unwrap_or(service.port))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    ServiceAdd(ServiceAddr, ServiceOpts),
    ServiceSet(ServiceAddr, ServiceOpts),
    ServiceDel(ServiceAddr),
    ServiceFlush,
    ServiceShow(Option<ServiceAddr>),
    RealAdd(ServiceAddr, RealTarget, RealOpts),
    RealSet(ServiceAddr, RealTarget, RealOpts),
    RealDel(ServiceAddr, RealTarget),
    RealShow(Option<ServiceAddr>),
    FlowShow(Option<ServiceAddr>),
    FlowCount(Option<ServiceAddr>),
    FlowFlush(Option<ServiceAddr>),
    StatsShow,
    AttachShow,
    Save,
    Monitor,
    /// `OBJECT help`: the usage text of one object.
    Help(&'static str),
}

impl Command {
    /// Whether the command changes the configuration (allowed in a batch).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Command::ServiceAdd(..)
                | Command::ServiceSet(..)
                | Command::ServiceDel(_)
                | Command::ServiceFlush
                | Command::RealAdd(..)
                | Command::RealSet(..)
                | Command::RealDel(..)
        )
    }
}

pub const OBJECTS: [&str; 7] = [
    "service", "real", "flow", "stats", "attach", "save", "monitor",
];

/// Usage of each object, for `OBJECT help` and errors.
pub fn usage(object: &str) -> &'static str {
    match object {
        "service" => {
            "Usage: fulmar service { add | set } SERVICE [ scheduler { lc | wlc } ]\n\
             \x20                                    [ forward { dr | nat } ] [ reset-on-down { on | off } ]\n\
             \x20      fulmar service del SERVICE\n\
             \x20      fulmar service flush\n\
             \x20      fulmar [ -s [ -s ] ] service show [ SERVICE ]\n\
             SERVICE := VIP:PORT[/tcp|udp], e.g. 198.18.1.100:143 or [2001:db8:1::100]:993"
        }
        "real" => {
            "Usage: fulmar real { add | set } SERVICE REAL [ weight 0-65535 ] [ state { up | drain | down } ]\n\
             \x20          [ mac { XX:XX:XX:XX:XX:XX | auto } ] [ check { none | tcp | smtp | imap | pop3 } ]\n\
             \x20          [ tls { on | off } ] [ interval TIME ] [ timeout TIME ] [ rise N ] [ fall N ]\n\
             \x20          [ slow-start TIME ] [ agent { PORT | off } ]\n\
             \x20      fulmar real del SERVICE REAL\n\
             \x20      fulmar [ -s [ -s ] ] real show [ SERVICE ]\n\
             REAL := ADDR[:PORT] ([ADDR]:PORT for IPv6); the port defaults to the service's\n\
             TIME := 200ms, 2s, 1m ..."
        }
        "flow" => "Usage: fulmar flow { show | count | flush } [ SERVICE ]",
        "stats" => "Usage: fulmar [ -s ] stats show",
        "attach" => "Usage: fulmar attach show",
        "save" => "Usage: fulmar save > FILE      (restore with: fulmar -batch FILE)",
        "monitor" => {
            "Usage: fulmar monitor          (real up / down / drain, weights, flow-table pressure)"
        }
        _ => "",
    }
}

/// Why a command line is not a command; every message names the word and,
/// where it helps, shows the object's usage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no object given; expected one of: {0}")]
    NoObject(String),
    #[error(transparent)]
    Keyword(#[from] KeywordError),
    /// An unknown or ambiguous command of an object.
    #[error("{error}\n{usage}")]
    Verb {
        error: KeywordError,
        usage: &'static str,
    },
    #[error("{what} is missing\n{usage}")]
    Missing { what: String, usage: &'static str },
    #[error("unexpected {word:?}\n{usage}")]
    Unexpected { word: String, usage: &'static str },
    /// A value that does not parse: a number, a duration, an address.
    #[error("{0}")]
    Value(String),
}

/// Values parsed elsewhere (`ServiceAddr`) say why in words.
impl From<String> for ParseError {
    fn from(why: String) -> Self {
        ParseError::Value(why)
    }
}

impl From<ParseError> for String {
    fn from(e: ParseError) -> String {
        e.to_string()
    }
}

struct Words<'a> {
    words: &'a [String],
    at: usize,
    object: &'static str,
}

impl<'a> Words<'a> {
    fn next(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let word = self.words.get(self.at).ok_or_else(|| ParseError::Missing {
            what: what.into(),
            usage: usage(self.object),
        })?;
        self.at += 1;
        Ok(word)
    }
    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.at).map(String::as_str)
    }
    fn done(&self) -> Result<(), ParseError> {
        match self.peek() {
            None => Ok(()),
            Some(extra) => Err(ParseError::Unexpected {
                word: extra.into(),
                usage: usage(self.object),
            }),
        }
    }
    fn service(&mut self) -> Result<ServiceAddr, ParseError> {
        Ok(self.next("SERVICE")?.parse()?)
    }
    fn optional_service(&mut self) -> Result<Option<ServiceAddr>, ParseError> {
        let service = self.peek().map(str::parse).transpose()?;
        if service.is_some() {
            self.at += 1;
        }
        self.done()?;
        Ok(service)
    }
}

fn on_off(word: &str) -> Result<bool, ParseError> {
    match keyword(word, &["on", "off"], "switch")? {
        "on" => Ok(true),
        _ => Ok(false),
    }
}

fn number<T: std::str::FromStr>(word: &str, what: &str, range: &str) -> Result<T, ParseError> {
    word.parse()
        .map_err(|_| ParseError::Value(format!("{what} {word:?} is not a number in {range}")))
}

fn duration(word: &str, what: &str) -> Result<Duration, ParseError> {
    humantime::parse_duration(word)
        .map_err(|e| ParseError::Value(format!("{what} {word:?}: {e}; write e.g. 200ms, 2s, 1m")))
}

fn real_target(word: &str) -> Result<RealTarget, ParseError> {
    if let Ok(addr) = word.parse::<IpAddr>() {
        return Ok(RealTarget { addr, port: None });
    }
    match word.parse::<SocketAddr>() {
        Ok(sock) if sock.port() != 0 => Ok(RealTarget {
            addr: sock.ip(),
            port: Some(sock.port()),
        }),
        _ => Err(ParseError::Value(format!(
            "real {word:?}: write ADDR, ADDR:PORT or [IPv6]:PORT, e.g. 198.18.1.11 or 198.18.1.11:1143"
        ))),
    }
}

fn service_opts(w: &mut Words) -> Result<ServiceOpts, ParseError> {
    let mut opts = ServiceOpts::default();
    while let Some(word) = w.peek() {
        w.at += 1;
        let option = keyword(
            word,
            &["scheduler", "forward", "reset-on-down"],
            "service option",
        )?;
        let value = w.next(option)?;
        match option {
            "scheduler" => {
                opts.scheduler = Some(match keyword(value, &["lc", "wlc"], "scheduler")? {
                    "lc" => Scheduler::Lc,
                    _ => Scheduler::Wlc,
                })
            }
            "forward" => {
                opts.forwarding = Some(match keyword(value, &["dr", "nat"], "forwarding")? {
                    "dr" => Forwarding::DirectRouting,
                    _ => Forwarding::Nat,
                })
            }
            _ => opts.reset_on_down = Some(on_off(value)?),
        }
    }
    Ok(opts)
}

const REAL_OPTIONS: [&str; 11] = [
    "weight",
    "state",
    "mac",
    "check",
    "tls",
    "interval",
    "timeout",
    "rise",
    "fall",
    "slow-start",
    "agent",
];

fn real_opts(w: &mut Words) -> Result<RealOpts, ParseError> {
    let mut opts = RealOpts::default();
    while let Some(word) = w.peek() {
        w.at += 1;
        let option = keyword(word, &REAL_OPTIONS, "real option")?;
        let value = w.next(option)?;
        match option {
            "weight" => opts.weight = Some(number(value, "weight", "0-65535")?),
            "state" => {
                opts.state = Some(match keyword(value, &["up", "drain", "down"], "state")? {
                    "up" => RealState::Up,
                    "drain" => RealState::Drain,
                    _ => RealState::Down,
                })
            }
            "mac" => {
                opts.mac = Some(if value == "auto" {
                    None
                } else {
                    Some(parse_mac(value).ok_or_else(|| {
                        ParseError::Value(format!(
                            "mac {value:?}: write six hex pairs, e.g. 02:00:00:00:01:0b, or auto"
                        ))
                    })?)
                })
            }
            "check" => {
                let name = keyword(value, &CheckKind::NAMES, "check")?;
                opts.check = CheckKind::from_name(name);
            }
            "tls" => opts.tls = Some(on_off(value)?),
            "interval" => opts.interval = Some(positive(duration(value, "interval")?, "interval")?),
            "timeout" => opts.timeout = Some(positive(duration(value, "timeout")?, "timeout")?),
            "rise" => opts.rise = Some(at_least_one(number(value, "rise", "1-1000")?, "rise")?),
            "fall" => opts.fall = Some(at_least_one(number(value, "fall", "1-1000")?, "fall")?),
            "slow-start" => opts.slow_start = Some(duration(value, "slow-start")?),
            _ => {
                opts.agent = Some(if value == "off" {
                    None
                } else {
                    Some(number(value, "agent port", "1-65535")?).filter(|p| *p != 0)
                })
            }
        }
    }
    Ok(opts)
}

fn positive(d: Duration, what: &str) -> Result<Duration, ParseError> {
    if d.is_zero() {
        Err(ParseError::Value(format!("{what} must be above zero")))
    } else {
        Ok(d)
    }
}

fn at_least_one(n: u32, what: &str) -> Result<u32, ParseError> {
    if (1..=1000).contains(&n) {
        Ok(n)
    } else {
        Err(ParseError::Value(format!("{what} {n} is outside 1-1000")))
    }
}

/// Parses one command (`OBJECT COMMAND ARGS`).
pub fn parse(words: &[String]) -> Result<Command, ParseError> {
    let Some(first) = words.first() else {
        return Err(ParseError::NoObject(OBJECTS.join(", ")));
    };
    let object = keyword(first, &OBJECTS, "object")?;
    let mut w = Words {
        words,
        at: 1,
        object,
    };
    if w.peek().is_some_and(|v| v == "help") {
        return Ok(Command::Help(object));
    }
    let verbs: &[&str] = match object {
        "service" => &["add", "set", "del", "flush", "show", "list"],
        "real" => &["add", "set", "del", "show", "list"],
        "flow" => &["show", "count", "flush", "list"],
        "stats" | "attach" => &["show", "list"],
        _ => &[],
    };
    let verb = if verbs.is_empty() {
        ""
    } else {
        match w.peek() {
            None => "show",
            Some(word) => {
                w.at += 1;
                keyword(word, verbs, &format!("{object} command")).map_err(|error| {
                    ParseError::Verb {
                        error,
                        usage: usage(object),
                    }
                })?
            }
        }
    };
    let command = match (object, verb) {
        ("service", "add") => Command::ServiceAdd(w.service()?, service_opts(&mut w)?),
        ("service", "set") => Command::ServiceSet(w.service()?, service_opts(&mut w)?),
        ("service", "del") => Command::ServiceDel(w.service()?),
        ("service", "flush") => Command::ServiceFlush,
        ("service", _) => Command::ServiceShow(w.optional_service()?),
        ("real", "add" | "set" | "del") => {
            let service = w.service()?;
            let target = real_target(w.next("REAL")?)?;
            match verb {
                "add" => Command::RealAdd(service, target, real_opts(&mut w)?),
                "set" => Command::RealSet(service, target, real_opts(&mut w)?),
                _ => Command::RealDel(service, target),
            }
        }
        ("real", _) => Command::RealShow(w.optional_service()?),
        ("flow", "count") => Command::FlowCount(w.optional_service()?),
        ("flow", "flush") => Command::FlowFlush(w.optional_service()?),
        ("flow", _) => Command::FlowShow(w.optional_service()?),
        ("stats", _) => Command::StatsShow,
        ("attach", _) => Command::AttachShow,
        ("save", _) => Command::Save,
        _ => Command::Monitor,
    };
    w.done()?;
    Ok(command)
}

/// Splits a batch line into words; `#` starts a comment.
pub fn split_line(line: &str) -> Vec<String> {
    let line = line.split('#').next().unwrap_or("");
    line.split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, String> {
        parse(&split_line(line)).map_err(String::from)
    }

    #[test]
    fn prefixes_pick_the_only_match() {
        let cmd = p("ser a 198.18.1.100:143 sch wlc f nat").unwrap();
        let Command::ServiceAdd(addr, opts) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(addr.to_string(), "198.18.1.100:143/tcp");
        assert_eq!(opts.scheduler, Some(Scheduler::Wlc));
        assert_eq!(opts.forwarding, Some(Forwarding::Nat));
        assert_eq!(p("service").unwrap(), Command::ServiceShow(None));
        assert_eq!(p("real help").unwrap(), Command::Help("real"));
    }

    #[test]
    fn ambiguity_and_typos_say_what_to_type() {
        let err = p("s show").unwrap_err();
        assert!(
            err.contains("ambiguous") && err.contains("service, stats, save"),
            "{err}"
        );
        let err = p("real add 198.18.1.100:143 198.18.1.11 wieght 3").unwrap_err();
        assert!(
            err.contains("unknown real option") && err.contains("weight"),
            "{err}"
        );
        let err = p("real add 198.18.1.100:143 198.18.1.11 weight 70000").unwrap_err();
        assert!(err.contains("0-65535"), "{err}");
        let err = p("real add 198.18.1.100:143").unwrap_err();
        assert!(
            err.contains("REAL is missing") && err.contains("Usage"),
            "{err}"
        );
        let err = p("service add 198.18.1.100:143 scheduler rr").unwrap_err();
        assert!(err.contains("lc, wlc"), "{err}");
        let err = p("real set 198.18.1.100:143 198.18.1.11 interval 0s").unwrap_err();
        assert!(err.contains("above zero"), "{err}");
    }

    #[test]
    fn real_options_and_targets() {
        let cmd = p("real add [2001:db8:1::100]:993 [2001:db8:1::11]:1993 w 3 st drain mac 02:00:00:00:01:0b ch imap tls on int 1s rise 3 slow 0s agent 8080").unwrap();
        let Command::RealAdd(svc, target, opts) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(target.endpoint(&svc).to_string(), "[2001:db8:1::11]:1993");
        assert_eq!(opts.weight, Some(3));
        assert_eq!(opts.state, Some(RealState::Drain));
        assert_eq!(opts.mac, Some(Some([2, 0, 0, 0, 1, 0x0b])));
        let check = opts.new_check(993, &CheckDefaults::default());
        assert_eq!(check.kind, CheckKind::Imap);
        assert!(check.tls);
        assert_eq!(check.interval, Duration::from_secs(1));
        assert_eq!(check.rise, 3);
        assert_eq!(check.fall, 2);
        assert_eq!(check.slow_start, Duration::ZERO);
        assert_eq!(check.agent_port, Some(8080));
        let Command::RealDel(svc, target) = p("real del 198.18.1.100:25 198.18.1.12").unwrap()
        else {
            panic!()
        };
        assert_eq!(target.endpoint(&svc).to_string(), "198.18.1.12:25");
    }

    #[test]
    fn comments_and_blank_lines() {
        assert!(split_line("   # nothing").is_empty());
        assert_eq!(split_line("service flush # all"), vec!["service", "flush"]);
    }
}
