//! One driver per node, kept between operations so BMC sessions (a Redfish
//! token on a keep-alive connection, an IPMI session) are reused; rebuilt
//! when the node's `driver` or `bmc` fields change, dropped when it is
//! deleted. Also caches what each BMC said it can do.
//!
//! A node's password is the one stored with it, else the one in its
//! `bmc.password_file` (read when the driver is built, off the runtime),
//! else batond's default BMC password. Drivers whose password was not
//! stored with the node are dropped when the default is set again (at a
//! reload), so the next operation reads the file or takes the default
//! anew; in between, a driver keeps the password its session was opened
//! with.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use baton_drivers::{
    Capabilities, DriverConfig, DriverError, DriverFactory, DriverKind, DriverOptions, PowerDriver,
    Secret,
};
use baton_state::{Bmc, Driver, Node};
use uuid::Uuid;

#[derive(Debug)]
struct Entry {
    /// What the driver was built from, as a [`Fingerprint`]; a node whose
    /// settings differ gets a new driver.
    built_from: Fingerprint,
    /// Whether the password came with the node (else from a file or the
    /// default, which a reload may change).
    password_stored: bool,
    driver: Arc<dyn PowerDriver>,
    /// Boxed: most nodes never need it, and the map holds 10 000 entries.
    capabilities: Option<Box<Capabilities>>,
}

/// A keyed hash of a node's `driver` and `bmc` fields. The entry keeps this
/// rather than a copy of the settings (some 300 bytes a node, 3 MB for a
/// 10 000-node fleet). Two different settings hash alike with odds of
/// 2^-64 under the process's random key, which no input can steer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint(u64);

impl Fingerprint {
    fn of(keys: &RandomState, node: &Node) -> Self {
        // Destructured in full, so a field added to `Bmc` is a compile
        // error here until it is hashed too.
        let Bmc {
            address,
            port,
            username,
            password,
            password_file,
            system_id,
            verify_tls,
            ca_file,
        } = &node.spec.bmc;
        let mut hasher = keys.build_hasher();
        node.spec.driver.as_str().hash(&mut hasher);
        address.hash(&mut hasher);
        port.hash(&mut hasher);
        username.hash(&mut hasher);
        password
            .as_ref()
            .map(baton_state::Secret::expose)
            .hash(&mut hasher);
        password_file.hash(&mut hasher);
        system_id.hash(&mut hasher);
        verify_tls.hash(&mut hasher);
        ca_file.hash(&mut hasher);
        Self(hasher.finish())
    }
}

/// The drivers of every node the conductor has talked to.
#[derive(Debug)]
pub struct Drivers {
    factory: Arc<DriverFactory>,
    options: DriverOptions,
    entries: Mutex<HashMap<Uuid, Entry>>,
    /// The key of every [`Fingerprint`].
    fingerprint_keys: RandomState,
    /// TLS settings the factory already built an HTTP client for: a driver
    /// with these is built without touching the disk.
    built_tls: Mutex<HashSet<TlsSettings>>,
    /// The password of nodes that have neither their own nor a file.
    default_password: RwLock<Option<Secret>>,
}

/// Where a driver's password comes from.
enum Password {
    /// Stored with the node, or batond's default.
    Known(Secret),
    /// The node's `bmc.password_file`, read when the driver is built.
    File(PathBuf),
}

/// What a Redfish driver's HTTP client depends on besides the options
/// every driver shares: `(verify_tls, ca_file)`.
type TlsSettings = (bool, Option<String>);

/// The node's TLS settings, `None` for a driver that has none (IPMI).
fn tls_settings(node: &Node) -> Option<TlsSettings> {
    match node.spec.driver {
        Driver::Redfish => Some((node.spec.bmc.verify_tls, node.spec.bmc.ca_file.clone())),
        Driver::Ipmi => None,
    }
}

/// Tries an IPMI request gets within one call, at least: what the defaults
/// give (a 1 s retransmit in a 20 s `bmc_timeout`). On a link that loses
/// 30 % of datagrams each way one try in two goes unanswered, and opening a
/// session takes six exchanges, about twelve tries: a 1 s retransmit in a
/// 2 s call (two tries) cannot open one at all.
const IPMI_TRIES: u32 = 20;
/// The shortest IPMI retransmit interval: real BMCs take tens of
/// milliseconds to answer.
const MIN_IPMI_RETRANSMIT: Duration = Duration::from_millis(100);

/// How long an IPMI request waits for its answer before it is sent again:
/// the driver's default (1 s), shortened when `bmc_timeout` is short so a
/// call still gets [`IPMI_TRIES`] tries.
fn ipmi_retransmit(call_timeout: Duration) -> Duration {
    let default = DriverOptions::default().ipmi_retransmit_interval;
    (call_timeout / IPMI_TRIES).clamp(MIN_IPMI_RETRANSMIT, default.max(MIN_IPMI_RETRANSMIT))
}

impl Drivers {
    pub fn new(call_timeout: Duration) -> Self {
        Self {
            factory: Arc::new(DriverFactory::new()),
            options: DriverOptions {
                call_timeout,
                ipmi_retransmit_interval: ipmi_retransmit(call_timeout),
                ..DriverOptions::default()
            },
            entries: Mutex::new(HashMap::new()),
            fingerprint_keys: RandomState::new(),
            built_tls: Mutex::new(HashSet::new()),
            default_password: RwLock::new(None),
        }
    }

    /// Whether nodes without a password of their own can use a default.
    pub fn has_default_password(&self) -> bool {
        self.default_password
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Sets (or clears) the default BMC password, and drops every driver
    /// whose password did not come from the database: the next operation
    /// on such a node builds a new driver, reading its `password_file` or
    /// taking this default.
    pub fn set_default_password(&self, password: Option<Secret>) {
        *self
            .default_password
            .write()
            .unwrap_or_else(PoisonError::into_inner) = password;
        let stale: Vec<Entry> = {
            let mut entries = self.entries();
            let uuids: Vec<Uuid> = entries
                .iter()
                .filter(|(_, e)| !e.password_stored)
                .map(|(uuid, _)| *uuid)
                .collect();
            uuids.iter().filter_map(|u| entries.remove(u)).collect()
        };
        if !stale.is_empty() {
            tokio::spawn(async move {
                for old in stale {
                    old.driver.close().await;
                }
            });
        }
    }

    /// Where the node's driver gets its password from.
    fn password(&self, node: &Node) -> Result<Password, DriverError> {
        let bmc = &node.spec.bmc;
        if let Some(stored) = &bmc.password {
            return Ok(Password::Known(Secret::new(stored.expose())));
        }
        if let Some(file) = &bmc.password_file {
            return Ok(Password::File(PathBuf::from(file)));
        }
        let default = self
            .default_password
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        default.map(Password::Known).ok_or_else(|| {
            DriverError::Config(
                "the node has neither bmc.password nor bmc.password_file and batond has no \
                 default BMC password (config key bmc.default_password_credential); set one on \
                 the node with `baton node set`, or provide the credential and reload batond"
                    .into(),
            )
        })
    }

    fn built_tls(&self) -> std::sync::MutexGuard<'_, HashSet<TlsSettings>> {
        self.built_tls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node's driver, built (off the runtime: it may read a CA file or
    /// a password file) when the node has none yet or its BMC settings
    /// changed.
    pub async fn get(&self, node: &Node) -> Result<Arc<dyn PowerDriver>, DriverError> {
        let wanted = Fingerprint::of(&self.fingerprint_keys, node);
        if let Some(entry) = self.entries().get(&node.uuid) {
            if entry.built_from == wanted {
                return Ok(Arc::clone(&entry.driver));
            }
        }
        let password = self.password(node)?;
        let mut config = driver_config(node, &self.options);
        let tls = tls_settings(node);
        let driver = if let (Password::Known(password), true) = (
            &password,
            tls.as_ref().is_none_or(|t| self.built_tls().contains(t)),
        ) {
            config.password = password.clone();
            // Nothing to read from disk: the factory hands out the HTTP
            // client it built for these settings before (or IPMI, which
            // needs none). A thread hop per node would cost more than this,
            // and a sweep meeting 10 000 nodes would fill the blocking pool.
            self.factory.build(&config)?
        } else {
            let factory = Arc::clone(&self.factory);
            let driver = tokio::task::spawn_blocking(move || {
                config.password = match password {
                    Password::Known(password) => password,
                    Password::File(file) => Secret::read_file(&file, "bmc.password_file")?,
                };
                factory.build(&config)
            })
            .await
            .map_err(|e| DriverError::Config(format!("building the driver failed: {e}")))??;
            if let Some(tls) = tls {
                self.built_tls().insert(tls);
            }
            driver
        };
        let replaced = self.entries().insert(
            node.uuid,
            Entry {
                built_from: wanted,
                password_stored: node.spec.bmc.password.is_some(),
                driver: Arc::clone(&driver),
                capabilities: None,
            },
        );
        if let Some(old) = replaced {
            // Its session belongs to settings that no longer apply.
            tokio::spawn(async move { old.driver.close().await });
        }
        Ok(driver)
    }

    /// What the node's BMC can do: cached, or asked once.
    pub async fn capabilities(&self, node: &Node) -> Result<Capabilities, DriverError> {
        let wanted = Fingerprint::of(&self.fingerprint_keys, node);
        if let Some(known) = self
            .entries()
            .get(&node.uuid)
            .filter(|e| e.built_from == wanted)
            .and_then(|e| e.capabilities.as_deref().cloned())
        {
            return Ok(known);
        }
        let driver = self.get(node).await?;
        let capabilities = driver.capabilities().await?;
        if let Some(entry) = self.entries().get_mut(&node.uuid) {
            entry.capabilities = Some(Box::new(capabilities.clone()));
        }
        Ok(capabilities)
    }

    /// Drops the node's driver (the node was deleted), ending its session.
    pub fn forget(&self, uuid: Uuid) {
        if let Some(old) = self.entries().remove(&uuid) {
            tokio::spawn(async move { old.driver.close().await });
        }
    }

    /// Ends every BMC session (at shutdown).
    pub async fn close_all(&self) {
        let drivers: Vec<_> = self.entries().drain().map(|(_, e)| e.driver).collect();
        for driver in drivers {
            driver.close().await;
        }
    }
}

/// The driver settings of `node`, with an empty password: [`Drivers::get`]
/// fills it in from where the node's password comes from.
fn driver_config(node: &Node, options: &DriverOptions) -> DriverConfig {
    let bmc = &node.spec.bmc;
    let kind = match node.spec.driver {
        Driver::Redfish => DriverKind::Redfish,
        Driver::Ipmi => DriverKind::Ipmi,
    };
    let mut config = DriverConfig::new(
        kind,
        bmc.address.clone(),
        bmc.port,
        bmc.username.clone(),
        Secret::default(),
    );
    config.system_id.clone_from(&bmc.system_id);
    config.verify_tls = bmc.verify_tls;
    config.ca_file = bmc.ca_file.as_ref().map(PathBuf::from);
    config.options = options.clone();
    config
}

/// The key of a node's BMC for the one-request-at-a-time rule.
pub fn bmc_key(node: &Node) -> String {
    format!("{}:{}", node.spec.bmc.address, node.spec.bmc_port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_state::NodeSpec;

    fn node(bmc: &serde_json::Value) -> Node {
        let spec: NodeSpec = serde_json::from_value(serde_json::json!({
            "driver": "redfish", "bmc": bmc,
        }))
        .unwrap();
        Node::enrolled(spec)
    }

    #[test]
    fn any_changed_bmc_setting_changes_the_fingerprint() {
        let keys = RandomState::new();
        let base = serde_json::json!({
            "address": "10.0.0.1", "username": "admin", "password": "pw",
        });
        let original = Fingerprint::of(&keys, &node(&base));
        assert_eq!(original, Fingerprint::of(&keys, &node(&base)));
        let changes = [
            ("address", serde_json::json!("10.0.0.2")),
            ("port", serde_json::json!(8443)),
            ("username", serde_json::json!("root")),
            ("password", serde_json::json!("pw2")),
            ("system_id", serde_json::json!("1")),
            ("verify_tls", serde_json::json!(false)),
            ("ca_file", serde_json::json!("/etc/ca.pem")),
        ];
        for (key, value) in changes {
            let mut changed = base.clone();
            changed[key] = value;
            assert_ne!(
                original,
                Fingerprint::of(&keys, &node(&changed)),
                "{key} changed"
            );
        }
        let mut from_file = base.clone();
        from_file.as_object_mut().unwrap().remove("password");
        from_file["password_file"] = serde_json::json!("/etc/baton/pw");
        assert_ne!(original, Fingerprint::of(&keys, &node(&from_file)));
        let mut ipmi = node(&base);
        ipmi.spec.driver = Driver::Ipmi;
        assert_ne!(original, Fingerprint::of(&keys, &ipmi));
    }

    #[test]
    fn a_short_bmc_timeout_still_gets_several_ipmi_tries() {
        let retransmit = |ms| ipmi_retransmit(Duration::from_millis(ms)).as_millis();
        assert_eq!(retransmit(60_000), 1000, "the default where it fits");
        assert_eq!(retransmit(20_000), 1000);
        assert_eq!(retransmit(5_000), 250);
        assert_eq!(retransmit(1_000), 100, "never below 100 ms");
        let drivers = Drivers::new(Duration::from_secs(3));
        assert_eq!(
            drivers.options.ipmi_retransmit_interval,
            Duration::from_millis(150)
        );
    }

    /// TLS settings count as built only once their HTTP client was: a
    /// `ca_file` that cannot be read fails every time (it is read off the
    /// runtime, every time), and working settings are remembered so the
    /// next node's driver is built without a thread hop.
    #[tokio::test]
    async fn tls_settings_are_remembered_once_built() {
        let drivers = Drivers::new(Duration::from_secs(1));
        let missing = node(&serde_json::json!({
            "address": "127.0.0.1", "username": "u", "password": "p",
            "ca_file": "/nonexistent/ca.pem",
        }));
        for _ in 0..2 {
            let error = drivers.get(&missing).await.unwrap_err();
            assert!(matches!(error, DriverError::Config(_)), "{error}");
        }
        assert!(drivers.built_tls().is_empty());

        let plain = serde_json::json!({"address": "127.0.0.1", "username": "u", "password": "p"});
        drivers.get(&node(&plain)).await.unwrap();
        assert_eq!(
            *drivers.built_tls(),
            HashSet::from([(true, None::<String>)])
        );
        drivers.get(&node(&plain)).await.unwrap();
        assert_eq!(drivers.entries().len(), 2, "one driver per node");
    }

    /// A password file is read when the driver is built: a missing or
    /// empty one fails the build with the key and the fix (and is tried
    /// again next time, nothing cached), a readable one builds. A node
    /// with no password at all needs the default. Setting the default
    /// again drops the drivers whose password was not stored with the
    /// node, so the next build reads the file (or default) anew.
    #[tokio::test]
    async fn passwords_come_from_the_node_its_file_or_the_default() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join("bmc-pw");
        let drivers = Drivers::new(Duration::from_secs(1));
        let from_file = node(&serde_json::json!({
            "address": "127.0.0.1", "username": "u", "password_file": file.to_str().unwrap(),
        }));
        let error = drivers.get(&from_file).await.unwrap_err().to_string();
        assert!(
            error.contains("bmc.password_file") && error.contains("does not exist"),
            "{error}"
        );
        std::fs::write(&file, "\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let error = drivers.get(&from_file).await.unwrap_err().to_string();
        assert!(error.contains("is empty"), "{error}");
        assert!(drivers.entries().is_empty());
        std::fs::write(&file, "pw\n").unwrap();
        drivers.get(&from_file).await.unwrap();

        let bare = node(&serde_json::json!({"address": "127.0.0.1", "username": "u"}));
        let error = drivers.get(&bare).await.unwrap_err().to_string();
        assert!(error.contains("no default BMC password"), "{error}");
        assert!(!drivers.has_default_password());
        drivers.set_default_password(Some(Secret::new("default-pw")));
        assert!(drivers.has_default_password());
        drivers.get(&bare).await.unwrap();
        let stored =
            node(&serde_json::json!({"address": "127.0.0.1", "username": "u", "password": "p"}));
        drivers.get(&stored).await.unwrap();
        assert_eq!(
            drivers.entries().len(),
            2,
            "the file's driver was dropped by the default"
        );

        drivers.get(&from_file).await.unwrap();
        std::fs::remove_file(&file).unwrap();
        drivers
            .get(&from_file)
            .await
            .expect("a built driver keeps its password");
        drivers.set_default_password(None);
        assert_eq!(
            drivers.entries().len(),
            1,
            "only the stored password's driver stays"
        );
        assert!(drivers.entries().contains_key(&stored.uuid));
        let error = drivers.get(&from_file).await.unwrap_err().to_string();
        assert!(
            error.contains("does not exist"),
            "the file is read again: {error}"
        );
    }
}
