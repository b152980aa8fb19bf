//! The health probe: every probe port answers on the instance address and
//! the storage takes a durable write.
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use tokio::net::TcpStream;

pub async fn probe(addr: IpAddr, ports: &[u16], mountpoint: &Path) -> Result<(), String> {
    for &port in ports {
        let target = SocketAddr::new(addr, port);
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{target}: {e}")),
            Err(_) => return Err(format!("{target}: no answer in 2s")),
        }
    }
    Ok(fulmar_daemon::durable::storage_writable(mountpoint)?)
}
