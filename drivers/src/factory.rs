//! Builds drivers from [`DriverConfig`]s. Redfish drivers with the same TLS
//! settings share one HTTP client, so 1000 BMCs share one connection pool
//! (one keep-alive connection per BMC) and one TLS configuration.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::{DriverConfig, DriverError, DriverKind, IpmiDriver, PowerDriver, RedfishDriver};

/// Idle keep-alive connections kept per BMC.
const IDLE_PER_BMC: usize = 2;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What makes two Redfish HTTP clients different.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TlsKey {
    verify_tls: bool,
    ca_file: Option<PathBuf>,
    connect_timeout: Duration,
}

/// Builds drivers, sharing HTTP clients between Redfish drivers.
#[derive(Debug, Default)]
pub struct DriverFactory {
    clients: Mutex<HashMap<TlsKey, reqwest::Client>>,
}

impl DriverFactory {
    /// A factory with no clients yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A driver for the BMC in `config`. Fails with [`DriverError::Config`]
    /// when the settings cannot work (bad `ca_file`, bad address…); it does
    /// not contact the BMC — call [`PowerDriver::validate`] for that.
    pub fn build(&self, config: &DriverConfig) -> Result<Arc<dyn PowerDriver>, DriverError> {
        if config.username.is_empty() {
            return Err(DriverError::Config("the BMC username is empty".into()));
        }
        match config.kind {
            DriverKind::Redfish => {
                let http = self.http_client(config)?;
                Ok(Arc::new(RedfishDriver::new(config, http)?))
            }
            DriverKind::Ipmi => Ok(Arc::new(IpmiDriver::new(config)?)),
        }
    }

    fn http_client(&self, config: &DriverConfig) -> Result<reqwest::Client, DriverError> {
        let key = TlsKey {
            verify_tls: config.verify_tls,
            ca_file: config.ca_file.clone(),
            connect_timeout: config.options.connect_timeout,
        };
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| DriverError::Config("driver factory lock poisoned".into()))?;
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = new_http_client(&key)?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Builds a driver with a process-wide [`DriverFactory`].
pub fn build_driver(config: &DriverConfig) -> Result<Arc<dyn PowerDriver>, DriverError> {
    static FACTORY: OnceLock<DriverFactory> = OnceLock::new();
    FACTORY.get_or_init(DriverFactory::new).build(config)
}

fn new_http_client(key: &TlsKey) -> Result<reqwest::Client, DriverError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .pool_max_idle_per_host(IDLE_PER_BMC)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .connect_timeout(key.connect_timeout)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")));
    if !key.verify_tls {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(path) = &key.ca_file {
        for cert in read_ca_file(path)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| DriverError::Config(format!("cannot build the HTTP client: {e}")))
}

fn read_ca_file(path: &PathBuf) -> Result<Vec<reqwest::Certificate>, DriverError> {
    let pem = std::fs::read(path)
        .map_err(|e| DriverError::Config(format!("cannot read ca_file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| DriverError::Config(format!("ca_file {} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(DriverError::Config(format!(
            "ca_file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}
