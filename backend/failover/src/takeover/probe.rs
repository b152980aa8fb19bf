//! The health probe: every probe port answers on the instance address and
//! the storage takes a durable write.
use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use fulmar_daemon::durable::NotWritable;
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{target}: {source}")]
    Refused {
        target: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}: no answer in 2s")]
    Silent(SocketAddr),
    #[error(transparent)]
    Storage(#[from] NotWritable),
}

pub async fn probe(addr: IpAddr, ports: &[u16], mountpoint: &Path) -> Result<(), ProbeError> {
    for &port in ports {
        let target = SocketAddr::new(addr, port);
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => return Err(ProbeError::Refused { target, source }),
            Err(_) => return Err(ProbeError::Silent(target)),
        }
    }
    Ok(fulmar_daemon::durable::storage_writable(mountpoint)?)
}
