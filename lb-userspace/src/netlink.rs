//! rtnetlink: the VIP addresses the balancer owns, the neighbour table
//! that gives each real's MAC, and preparing a real server for direct
//! routing.
//!
//! Addresses fulmar adds carry IFA_PROTO = `VIP_PROTO`, so it only ever
//! removes its own (`ip addr show proto 0x66` lists them).
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage, AddressProtocol, CacheInfo},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};
use rtnetlink::{
    AddressMessageBuilder, Handle, MulticastGroup, new_connection, new_multicast_connection,
};

/// IFA_PROTO of the addresses fulmar adds ('f').
pub const VIP_PROTO: u8 = 0x66;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("rtnetlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("no interface named {0} (see `ip link`)")]
    NoInterface(String),
    #[error("{what}: {source}")]
    Request {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// A route-netlink connection (its task runs on the current tokio runtime).
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

/// A neighbour-table change: the address and its MAC (None: gone or unresolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourUpdate {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub mac: Option<[u8; 6]>,
}

impl Netlink {
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) = new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub async fn ifindex(&self, name: &str) -> Result<u32> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link.header.index),
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => {
                Err(NetlinkError::NoInterface(name.into()))
            }
            Err(source) => Err(NetlinkError::Request {
                what: format!("looking up {name}"),
                source,
            }),
        }
    }

    /// Addresses on `ifindex` that fulmar added.
    pub async fn owned_addresses(&self, ifindex: u32) -> Result<BTreeSet<IpAddr>> {
        let mut out = BTreeSet::new();
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|source| NetlinkError::Request {
                what: "listing addresses".into(),
                source,
            })?
        {
            let ours = msg.attributes.iter().any(|a| {
                matches!(
                    a,
                    AddressAttribute::Protocol(AddressProtocol::Other(VIP_PROTO))
                )
            });
            if !ours || msg.header.index != ifindex {
                continue;
            }
            if let Some(addr) = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(addr) => Some(*addr),
                _ => None,
            }) {
                out.insert(addr);
            }
        }
        Ok(out)
    }

    /// Adds `addr` as a host address (/32, /128) marked as fulmar's.
    pub async fn add_address(&self, ifindex: u32, addr: IpAddr) -> Result<()> {
        let mut message = host_address(ifindex, addr);
        message
            .attributes
            .push(AddressAttribute::Protocol(AddressProtocol::Other(
                VIP_PROTO,
            )));
        if addr.is_ipv6() {
            // A VIP is not a new host on the link: no duplicate detection.
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            // Deprecated (preferred lifetime 0) but valid forever: it still
            // receives, but never becomes the source of this host's own
            // connections. Source selection otherwise favours a /128 for
            // its longer match, and a real, holding the VIP too, would
            // answer such a health check to itself.
            let mut lifetimes = CacheInfo::default();
            lifetimes.ifa_preferred = 0;
            lifetimes.ifa_valid = u32::MAX;
            message
                .attributes
                .push(AddressAttribute::CacheInfo(lifetimes));
        }
        let mut request = self
            .handle
            .address()
            .add(ifindex, addr, host_prefix(addr))
            .replace();
        *request.message_mut() = message;
        request
            .execute()
            .await
            .map_err(|source| NetlinkError::Request {
                what: format!("adding {addr}"),
                source,
            })
    }

    pub async fn del_address(&self, ifindex: u32, addr: IpAddr) -> Result<()> {
        self.handle
            .address()
            .del(host_address(ifindex, addr))
            .execute()
            .await
            .map_err(|source| NetlinkError::Request {
                what: format!("removing {addr}"),
                source,
            })
    }

    /// Resolved neighbours on `ifindex`.
    pub async fn neighbours(&self, ifindex: u32) -> Result<Vec<NeighbourUpdate>> {
        let mut out = Vec::new();
        let mut stream = self.handle.neighbours().get().execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|source| NetlinkError::Request {
                what: "listing neighbours".into(),
                source,
            })?
        {
            if let Some(update) = neighbour_update(&msg, false).filter(|u| u.ifindex == ifindex) {
                out.push(update);
            }
        }
        Ok(out)
    }
}

fn host_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn host_address(ifindex: u32, addr: IpAddr) -> AddressMessage {
    match addr {
        IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(ifindex)
            .address(v4, 32)
            .build(),
        IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(ifindex)
            .address(v6, 128)
            .build(),
    }
}

/// Reads an RTM_NEWNEIGH / RTM_DELNEIGH. A usable MAC comes only from a
/// state that holds one; deletion and failure report `mac: None`.
fn neighbour_update(msg: &NeighbourMessage, deleted: bool) -> Option<NeighbourUpdate> {
    if !matches!(
        msg.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    ) {
        return None;
    }
    let addr = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })?;
    let usable = matches!(
        msg.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    let mac = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(bytes) if bytes.len() == 6 => {
            <[u8; 6]>::try_from(bytes.as_slice()).ok()
        }
        _ => None,
    });
    Some(NeighbourUpdate {
        ifindex: msg.header.ifindex,
        addr,
        mac: mac.filter(|_| usable && !deleted),
    })
}

/// Streams neighbour changes on `ifindex`, as `ip monitor neigh` shows them.
pub fn watch_neighbours(ifindex: u32) -> Result<impl futures::Stream<Item = NeighbourUpdate>> {
    let (conn, _handle, messages) =
        new_multicast_connection(&[MulticastGroup::Neigh]).map_err(NetlinkError::Socket)?;
    tokio::spawn(conn);
    Ok(messages.filter_map(move |(msg, _)| async move {
        let update = match msg.payload {
            netlink_packet_core::NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewNeighbour(n),
            ) => neighbour_update(&n, false),
            netlink_packet_core::NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::DelNeighbour(n),
            ) => neighbour_update(&n, true),
            _ => None,
        };
        update.filter(|u| u.ifindex == ifindex)
    }))
}

/// Writes one sysctl under /proc/sys (`net.ipv4.conf.all.arp_ignore`).
pub fn set_sysctl(name: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::write(&path, value).map_err(|source| NetlinkError::Sysctl { path, source })
}

/// What direct routing needs on a real server: ARP answered and announced
/// only for the interface's own addresses (the VIP lives on `lo` and must
/// never be claimed on the wire), a gratuitous ARP
/// and an unsolicited neighbour advertisement when the MAC changes (the
/// balancer follows it), and each VIP on loopback (IPv6 answers neighbour
/// solicitations only for the receiving interface's addresses anyway).
pub const REALSERVER_SYSCTLS: [(&str, &str); 4] = [
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
    ("net.ipv4.conf.all.arp_notify", "1"),
    ("net.ipv6.conf.all.ndisc_notify", "1"),
];

pub async fn prepare_realserver(vips: &[IpAddr]) -> Result<()> {
    for (name, value) in REALSERVER_SYSCTLS {
        set_sysctl(name, value)?;
    }
    let nl = Netlink::connect()?;
    let lo = nl.ifindex("lo").await?;
    for vip in vips {
        nl.add_address(lo, *vip).await?;
    }
    Ok(())
}

/// Removes the VIPs `prepare` put on loopback (the sysctls stay: they are
/// harmless without a VIP and other services may rely on them).
pub async fn unprepare_realserver(vips: &[IpAddr]) -> Result<()> {
    let nl = Netlink::connect()?;
    let lo = nl.ifindex("lo").await?;
    let owned = nl.owned_addresses(lo).await?;
    let targets: Vec<IpAddr> = if vips.is_empty() {
        owned.into_iter().collect()
    } else {
        vips.iter().copied().filter(|v| owned.contains(v)).collect()
    };
    for vip in targets {
        nl.del_address(lo, vip).await?;
    }
    Ok(())
}
