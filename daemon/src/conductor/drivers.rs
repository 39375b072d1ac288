//! One driver per node, kept between operations so BMC sessions (a Redfish
//! token on a keep-alive connection, an IPMI session) are reused; rebuilt
//! when the node's `driver` or `bmc` fields change, dropped when it is
//! deleted. Also caches what each BMC said it can do.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_drivers::{
    Capabilities, DriverConfig, DriverError, DriverFactory, DriverKind, DriverOptions, PowerDriver,
    Secret,
};
use baton_state::{Bmc, Driver, Node};
use uuid::Uuid;

#[derive(Debug)]
struct Entry {
    /// What the driver was built from; a node whose settings differ gets a
    /// new driver.
    built_from: (Driver, Bmc),
    driver: Arc<dyn PowerDriver>,
    capabilities: Option<Capabilities>,
}

/// The drivers of every node the conductor has talked to.
#[derive(Debug)]
pub struct Drivers {
    factory: Arc<DriverFactory>,
    options: DriverOptions,
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl Drivers {
    pub fn new(call_timeout: Duration) -> Self {
        Self {
            factory: Arc::new(DriverFactory::new()),
            options: DriverOptions {
                call_timeout,
                ..DriverOptions::default()
            },
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node's driver, built (off the runtime: it may read a CA file)
    /// when the node has none yet or its BMC settings changed.
    pub async fn get(&self, node: &Node) -> Result<Arc<dyn PowerDriver>, DriverError> {
        let wanted = (node.spec.driver, node.spec.bmc.clone());
        if let Some(entry) = self.entries().get(&node.uuid) {
            if entry.built_from == wanted {
                return Ok(Arc::clone(&entry.driver));
            }
        }
        let config = driver_config(node, &self.options);
        let factory = Arc::clone(&self.factory);
        let driver = tokio::task::spawn_blocking(move || factory.build(&config))
            .await
            .map_err(|e| DriverError::Config(format!("building the driver failed: {e}")))??;
        let replaced = self.entries().insert(
            node.uuid,
            Entry {
                built_from: wanted,
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
        if let Some(known) = self
            .entries()
            .get(&node.uuid)
            .filter(|e| e.built_from == (node.spec.driver, node.spec.bmc.clone()))
            .and_then(|e| e.capabilities.clone())
        {
            return Ok(known);
        }
        let driver = self.get(node).await?;
        let capabilities = driver.capabilities().await?;
        if let Some(entry) = self.entries().get_mut(&node.uuid) {
            entry.capabilities = Some(capabilities.clone());
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
        Secret::new(bmc.password.expose()),
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
