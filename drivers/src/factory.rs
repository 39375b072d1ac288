//! Builds drivers from [`DriverConfig`]s. Redfish drivers with the same TLS
//! settings share one HTTP client, so 1000 BMCs share one connection pool
//! and one TLS configuration. A connection is kept while a BMC is being
//! worked with — a first contact's service root, login and system; an
//! operation's command and the reads over its transition, about a second
//! apart; calls in quick succession — and closed two seconds after its last
//! request. A power-sync sweep's read closes its connection as soon as it
//! is answered ([`crate::PowerDriver::power_state_then_idle`]): a kept
//! connection costs ~23 KiB and a file descriptor on both ends, so a sweep
//! of 10 000 BMCs leaving each open for two seconds held thousands of them
//! (300 MB) for reads a minute apart, and a BMC closes idle connections
//! long before the next sweep anyway. (At 100 ms instead of two seconds,
//! every read of a node in transition paid a new TLS handshake, halving
//! the calls a driver could make per second.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::{DriverConfig, DriverError, DriverKind, IpmiDriver, PowerDriver, RedfishDriver};

/// Idle keep-alive connections kept per BMC: batond never has two requests
/// at once on one BMC.
const IDLE_PER_BMC: usize = 1;
/// How long an idle connection is kept: long enough for the next read of a
/// node in transition, short enough that a sweep leaves only its last two
/// seconds' connections open behind it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP/1.1 server that answers every request with an empty 200 on
    /// keep-alive connections and counts the connections it accepted.
    async fn counting_server() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    /// A connection does not outlive its burst: a request well after the
    /// last one opens a new connection instead of holding one per BMC
    /// between sweeps.
    #[tokio::test]
    async fn idle_connections_close_after_the_burst() {
        let (port, accepted) = counting_server().await;
        let key = TlsKey {
            verify_tls: true,
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
        };
        let http = new_http_client(&key).expect("client");
        let url = format!("http://127.0.0.1:{port}/");
        http.get(&url).send().await.expect("first request");
        // Within the idle timeout, as a read during a transition: kept.
        tokio::time::sleep(Duration::from_millis(500)).await;
        http.get(&url).send().await.expect("second request");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "kept between close requests"
        );
        // Past it (plus the pool's reaper): closed, so the next one connects.
        tokio::time::sleep(IDLE_TIMEOUT + Duration::from_millis(500)).await;
        http.get(&url).send().await.expect("third request");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
