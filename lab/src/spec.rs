//! What a lab is made of: hosts, L2 segments, routes.
use crate::cmd::LabError;

#[derive(Clone, Debug, Default)]
pub struct HostSpec {
    pub name: String,
    /// Written with `sysctl -w` in the host's namespace.
    pub sysctls: Vec<(String, String)>,
}

impl HostSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            sysctls: Vec::new(),
        }
    }
    pub fn sysctl(mut self, key: &str, value: &str) -> Self {
        self.sysctls.push((key.into(), value.into()));
        self
    }
    /// A router: forwards IPv4 and IPv6.
    pub fn router(name: &str) -> Self {
        Self::new(name)
            .sysctl("net.ipv4.ip_forward", "1")
            .sysctl("net.ipv6.conf.all.forwarding", "1")
            // Interfaces are made after the sysctls: they take the defaults.
            .sysctl("net.ipv6.conf.default.forwarding", "1")
    }
}

/// A host's interface on a segment.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub host: String,
    pub iface: String,
    /// CIDR addresses, IPv4 and IPv6.
    pub addrs: Vec<String>,
    pub mac: Option<String>,
}

impl Attachment {
    pub fn new(host: &str, iface: &str, addrs: &[&str]) -> Self {
        Self {
            host: host.into(),
            iface: iface.into(),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
            mac: None,
        }
    }
}

/// An L2 segment (a bridge) and who is on it.
#[derive(Clone, Debug)]
pub struct SegmentSpec {
    pub name: String,
    pub members: Vec<Attachment>,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub host: String,
    /// `default` or a CIDR.
    pub dest: String,
    pub via: String,
}

impl Route {
    pub fn new(host: &str, dest: &str, via: &str) -> Self {
        Self {
            host: host.into(),
            dest: dest.into(),
            via: via.into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LabSpec {
    pub hosts: Vec<HostSpec>,
    pub segments: Vec<SegmentSpec>,
    pub routes: Vec<Route>,
}

impl LabSpec {
    /// Hosts on one L2 segment, each with `eth0` at its address: the
    /// smallest lab, for tests that need a link and a peer.
    pub fn lan(members: &[(&str, &str)]) -> Self {
        Self {
            hosts: members
                .iter()
                .map(|(host, _)| HostSpec::new(host))
                .collect(),
            segments: vec![SegmentSpec {
                name: "lan".into(),
                members: members
                    .iter()
                    .map(|(host, addr)| Attachment::new(host, "eth0", &[addr]))
                    .collect(),
            }],
            routes: Vec::new(),
        }
    }

    /// Names are used in namespace and interface names: keep them short and
    /// plain, and every address inside the test ranges.
    pub fn validate(&self) -> Result<(), LabError> {
        for host in &self.hosts {
            let ok = !host.name.is_empty()
                && host.name.len() <= 16
                && host.name != "fabric"
                && host.name.chars().all(|c| c.is_ascii_alphanumeric());
            if !ok {
                return Err(LabError::Spec(format!(
                    "host name {:?}: 1-16 letters or digits, not \"fabric\"",
                    host.name
                )));
            }
        }
        for segment in &self.segments {
            for member in &segment.members {
                if !self.hosts.iter().any(|h| h.name == member.host) {
                    return Err(LabError::Spec(format!(
                        "segment {} names unknown host {}",
                        segment.name, member.host
                    )));
                }
                if member.iface.len() > 15 {
                    return Err(LabError::Spec(format!(
                        "interface name {} is over 15 bytes",
                        member.iface
                    )));
                }
                for addr in &member.addrs {
                    let in_plan = addr.starts_with("198.18.")
                        || addr.starts_with("198.19.")
                        || addr.starts_with("2001:db8:");
                    if !in_plan {
                        return Err(LabError::Spec(format!(
                            "{addr}: lab addresses must be in 198.18.0.0/15 or 2001:db8::/32"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}
