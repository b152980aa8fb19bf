//! The instance address on its interface, through rtnetlink.
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::LinkAttribute,
};
use rtnetlink::{Handle, new_connection};

#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("netlink: {0}")]
    Connect(std::io::Error),
    /// A request the kernel refused, and what it was.
    #[error("{what}: {source}")]
    Request {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoMac(String),
}

impl From<VipError> for String {
    fn from(e: VipError) -> String {
        e.to_string()
    }
}

fn refused(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> VipError {
    let what = what.into();
    move |source| VipError::Request { what, source }
}

pub struct Netlink {
    handle: Handle,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub mac: [u8; 6],
}

impl Netlink {
    /// A connection in the calling thread's network namespace.
    pub fn connect() -> Result<Self, VipError> {
        let (conn, handle, _) = new_connection().map_err(VipError::Connect)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Link, VipError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let link = links
            .try_next()
            .await
            .map_err(refused(format!("interface {name}")))?
            .ok_or_else(|| VipError::NoInterface(name.into()))?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(m) if m.len() == 6 => m[..].try_into().ok(),
                _ => None,
            })
            .ok_or_else(|| VipError::NoMac(name.into()))?;
        Ok(Link {
            index: link.header.index,
            mac,
        })
    }

    /// Adds `addr/prefix` (replacing it if present). IPv6 skips duplicate
    /// address detection: the previous holder was fenced, and DAD would
    /// keep the address unusable for a second or more.
    pub async fn add(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), VipError> {
        let mut request = self.handle.address().add(index, addr, prefix).replace();
        if addr.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request
            .execute()
            .await
            .map_err(refused(format!("adding {addr}/{prefix}")))
    }

    /// The address messages for `addr` on `index` (zero or one).
    async fn find(&self, index: u32, addr: IpAddr) -> Result<Vec<AddressMessage>, VipError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(addr)
            .execute()
            .try_collect()
            .await
            .map_err(refused("listing addresses"))
    }

    pub async fn del(&self, index: u32, addr: IpAddr) -> Result<(), VipError> {
        for message in self.find(index, addr).await? {
            self.handle
                .address()
                .del(message)
                .execute()
                .await
                .map_err(refused(format!("removing {addr}")))?;
        }
        Ok(())
    }

    pub async fn has(&self, index: u32, addr: IpAddr) -> Result<bool, VipError> {
        Ok(!self.find(index, addr).await?.is_empty())
    }
}
