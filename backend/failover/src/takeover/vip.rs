//! The instance address on its interface, through rtnetlink.
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::LinkAttribute,
};
use rtnetlink::{Handle, new_connection};

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
    pub fn connect() -> Result<Self, String> {
        let (conn, handle, _) = new_connection().map_err(|e| format!("netlink: {e}"))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn link(&self, name: &str) -> Result<Link, String> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let link = links
            .try_next()
            .await
            .map_err(|e| format!("interface {name}: {e}"))?
            .ok_or_else(|| format!("no interface {name}"))?;
        let mac = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(m) if m.len() == 6 => m[..].try_into().ok(),
                _ => None,
            })
            .ok_or_else(|| format!("interface {name} has no Ethernet address"))?;
        Ok(Link {
            index: link.header.index,
            mac,
        })
    }

    /// Adds `addr/prefix` (replacing it if present). IPv6 skips duplicate
    /// address detection: the previous holder was fenced, and DAD would
    /// keep the address unusable for a second or more.
    pub async fn add(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), String> {
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
            .map_err(|e| format!("adding {addr}/{prefix}: {e}"))
    }

    /// The address messages for `addr` on `index` (zero or one).
    async fn find(&self, index: u32, addr: IpAddr) -> Result<Vec<AddressMessage>, String> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(addr)
            .execute()
            .try_collect()
            .await
            .map_err(|e| format!("listing addresses: {e}"))
    }

    pub async fn del(&self, index: u32, addr: IpAddr) -> Result<(), String> {
        for message in self.find(index, addr).await? {
            self.handle
                .address()
                .del(message)
                .execute()
                .await
                .map_err(|e| format!("removing {addr}: {e}"))?;
        }
        Ok(())
    }

    pub async fn has(&self, index: u32, addr: IpAddr) -> Result<bool, String> {
        Ok(!self.find(index, addr).await?.is_empty())
    }
}
