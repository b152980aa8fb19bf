//! A lab certificate authority: the TLS hops between tiers check their
//! peers against a CA, as they would on a site, so the lab issues each
//! service a certificate for the names and addresses it is dialled by.
use std::{fs, io, path::Path};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn invalid(e: rcgen::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

impl Ca {
    pub fn new() -> io::Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(invalid)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Its own name: with rcgen's default one on both sides, a leaf's
        // issuer equals its subject and checkers take it as self-signed.
        params
            .distinguished_name
            .push(DnType::CommonName, "fulmar lab CA");
        let key = KeyPair::generate().map_err(invalid)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(invalid)?;
        Ok(Ca { issuer })
    }

    /// The CA's certificate (PEM), what the checking side trusts.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        fs::write(path, self.issuer.pem())
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key,
    /// written as PEM to `cert` and `key`.
    pub fn issue(&self, names: &[&str], cert: &Path, key: &Path) -> io::Result<()> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let pair = KeyPair::generate().map_err(invalid)?;
        let mut params = CertificateParams::new(names.clone()).map_err(invalid)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        let signed = params.signed_by(&pair, &self.issuer).map_err(invalid)?;
        fs::write(cert, signed.pem())?;
        fs::write(key, pair.serialize_pem())
    }
}
