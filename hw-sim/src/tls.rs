//! The rack's TLS material: a CA generated at start and one server certificate
//! signed by it (valid for every address a node listens on, `localhost` and
//! `127.0.0.1`), shared by every node's HTTPS endpoint. Clients trust the CA's PEM, which
//! the binary writes beside the inventory.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// A generated CA and the acceptor serving the certificate it signed.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The CA certificate (PEM) that clients trust.
    pub ca_pem: String,
    /// The acceptor every HTTPS endpoint uses.
    pub acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

/// Generates the CA and a server certificate for `addresses`.
pub fn generate(addresses: &[IpAddr]) -> Result<TlsMaterial, Error> {
    let ca_key = KeyPair::generate().map_err(Error::Certificate)?;
    let mut ca_params = CertificateParams::new(Vec::new()).map_err(Error::Certificate)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "baton-hwsim CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(Error::Certificate)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    for address in addresses.iter().filter(|a| !a.is_unspecified()) {
        let name = address.to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let leaf_key = KeyPair::generate().map_err(Error::Certificate)?;
    let mut leaf_params = CertificateParams::new(names).map_err(Error::Certificate)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "baton-hwsim BMC");
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(Error::Certificate)?;

    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(Error::Tls)?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}
