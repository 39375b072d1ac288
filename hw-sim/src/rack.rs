//! A running simulated rack: start-up (validate, raise limits, bind every
//! endpoint, build the nodes, apply start-up faults, spawn the servers), the
//! accessors tests use in-process, and a clean shutdown.
//!
//! Start-up order matters: everything is validated and bound before any task
//! is spawned, so a failed start leaves nothing running.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::config::{InitialPower, RackConfig};
use crate::error::Error;
use crate::inventory::{self, ExportDriver, InventoryEntry};
use crate::model::{
    pick_fraction, Endpoints, FaultError, FaultSetting, Node, NodeIdentity, NodeSettings,
};
use crate::tls::{self, TlsMaterial};
use crate::{control, ipmi, ports, redfish};

/// Totals over every node, as `GET /stats` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RackStats {
    /// Requests received by all BMCs.
    pub total_requests: u64,
    /// Power commands received by all BMCs.
    pub power_commands: u64,
    /// The highest `max_concurrent` of any one BMC.
    pub max_concurrent_per_bmc: u32,
}

/// The nodes of a rack and what the control API needs to act on them.
#[derive(Debug)]
pub struct RackState {
    nodes: Vec<Arc<Node>>,
    by_name: HashMap<String, usize>,
    config: RackConfig,
}

impl RackState {
    /// Every node, in index order.
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    /// The configuration the rack was started with.
    pub fn config(&self) -> &RackConfig {
        &self.config
    }

    /// Totals over every node.
    pub fn stats(&self) -> RackStats {
        self.nodes.iter().fold(RackStats::default(), |acc, node| {
            let c = node.counters();
            RackStats {
                total_requests: acc.total_requests + c.requests,
                power_commands: acc.power_commands + c.power_commands,
                max_concurrent_per_bmc: acc.max_concurrent_per_bmc.max(c.max_concurrent),
            }
        })
    }

    /// Zeroes every node's counters.
    pub fn reset_stats(&self) {
        for node in &self.nodes {
            node.reset_counters();
        }
    }

    /// Gives `setting` to a seeded random `fraction` of the nodes (keeping
    /// their other faults) and returns their names.
    pub fn apply_fault_fraction(
        &self,
        setting: FaultSetting,
        fraction: f64,
        seed: u64,
    ) -> Result<Vec<String>, FaultError> {
        let chosen = pick_fraction(self.nodes.len(), fraction, seed)?;
        Ok(chosen
            .into_iter()
            .map(|i| {
                self.nodes[i].apply_fault(setting);
                self.nodes[i].name().to_owned()
            })
            .collect())
    }
}

/// A running simulated rack. Dropping it stops serving; [`Rack::shutdown`]
/// also waits until every task has ended.
#[derive(Debug)]
pub struct Rack {
    state: Arc<RackState>,
    control_addr: Option<SocketAddr>,
    tls: Option<TlsMaterial>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Rack {
    /// Validates `config`, binds every endpoint and starts serving.
    pub async fn start(config: RackConfig) -> Result<Rack, Error> {
        let problems = config.problems();
        if !problems.is_empty() {
            return Err(Error::Config(problems));
        }
        let per_node = 1 + u64::from(config.ipmi);
        crate::limits::ensure_open_files(per_node * config.nodes as u64, config.nodes)?;
        let tls = if config.tls {
            let count = if config.bind_prefix.is_some() {
                config.nodes
            } else {
                1
            };
            let addresses: Vec<IpAddr> = (0..count).map(|i| config.node_address(i)).collect();
            Some(tls::generate(&addresses)?)
        } else {
            None
        };
        // The control API's fixed port first: the free-port scan of a large
        // rack must not take it.
        let control_listener = bind_control(&config).await?;
        let listeners = bind_redfish(&config).await?;
        // One UDP socket per node when the rack serves IPMI (none otherwise).
        let ipmi_sockets = ipmi::server::bind_all(&config)
            .await
            .map_err(ipmi_bind_error)?;
        let ipmi_ports = ipmi::server::ports(&ipmi_sockets, &config).map_err(ipmi_bind_error)?;
        let nodes = build_nodes(&config, &listeners, &ipmi_ports)?;
        let by_name = nodes
            .iter()
            .map(|n| (n.name().to_owned(), n.index()))
            .collect();
        let state = Arc::new(RackState {
            nodes,
            by_name,
            config,
        });
        apply_start_faults(&state);

        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let redfish_shared = redfish::Shared::new(
            tls.as_ref().map(|t| t.acceptor.clone()),
            state.config().session_timeout,
            state.config().redfish_max_sessions,
            cancel.clone(),
            tasks.clone(),
        );
        for (node, listener) in state.nodes().iter().zip(listeners) {
            redfish::spawn(Arc::clone(node), listener, &redfish_shared);
        }
        ipmi::server::spawn_all(state.nodes(), ipmi_sockets, state.config(), &cancel, &tasks);
        let control_addr = match control_listener {
            Some(listener) => Some(control::spawn(
                Arc::clone(&state),
                listener,
                cancel.clone(),
                &tasks,
            )?),
            None => None,
        };
        tasks.spawn(flapper(Arc::clone(&state), cancel.clone()));
        tracing::info!(
            nodes = state.nodes().len(),
            control = ?control_addr,
            tls = tls.is_some(),
            "simulated rack started"
        );
        Ok(Rack {
            state,
            control_addr,
            tls,
            cancel,
            tasks,
        })
    }

    /// The shared state (nodes, stats, fault helpers).
    pub fn state(&self) -> &Arc<RackState> {
        &self.state
    }

    /// Every node, in index order.
    pub fn nodes(&self) -> &[Arc<Node>] {
        self.state.nodes()
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.state.node(name)
    }

    /// Totals over every node.
    pub fn stats(&self) -> RackStats {
        self.state.stats()
    }

    /// The control API's address, if it was started.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_addr
    }

    /// The control API's base URL (`http://127.0.0.1:PORT`), if started.
    pub fn control_url(&self) -> Option<String> {
        self.control_addr.map(|a| format!("http://{a}"))
    }

    /// The base URL of a node's Redfish service (`http[s]://127.0.0.1:PORT`).
    pub fn redfish_url(&self, node: &Node) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", node.redfish_addr())
    }

    /// The CA certificate (PEM) clients must trust, when serving HTTPS.
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// The inventory in the form `POST /v1/nodes/import` takes. With TLS,
    /// every Redfish entry names `ca_file` as its CA (the caller writes the
    /// file; [`Rack::write_inventory`] does both).
    pub fn inventory(
        &self,
        driver: ExportDriver,
        ca_file: Option<&Path>,
    ) -> Result<Vec<InventoryEntry>, Error> {
        inventory::entries(&self.state, driver, self.tls.is_some(), ca_file)
    }

    /// Writes the inventory JSON to `path`; with TLS, also writes the CA
    /// beside it (`<stem>-ca.pem`) and names it in every entry.
    pub fn write_inventory(&self, path: &Path, driver: ExportDriver) -> Result<(), Error> {
        inventory::write(self, path, driver)
    }

    /// Stops serving and waits until every connection and task has ended.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!("simulated rack stopped");
    }
}

impl Drop for Rack {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.tasks.close();
    }
}

async fn bind_redfish(config: &RackConfig) -> Result<Vec<TcpListener>, Error> {
    let bound = match config.redfish_addrs() {
        Some(addrs) => ports::bind_each(&addrs, TcpListener::bind).await,
        None => {
            let (ip, base) = (config.bind, config.redfish_base_port);
            ports::bind_many(ip, base, config.nodes, TcpListener::bind).await
        }
    };
    bound.map_err(|failure| Error::Bind {
        what: format!("Redfish endpoint of {}", config.node_name(failure.index)),
        addr: failure.addr,
        source: failure.source,
    })
}

fn ipmi_bind_error(e: ipmi::server::BindError) -> Error {
    Error::Bind {
        what: format!("IPMI endpoint of {}", e.node),
        addr: e.addr,
        source: e.source,
    }
}

async fn bind_control(config: &RackConfig) -> Result<Option<TcpListener>, Error> {
    let Some(port) = config.control_port else {
        return Ok(None);
    };
    let addr = SocketAddr::new(config.bind, port);
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| Error::Bind {
            what: "control API".into(),
            addr,
            source,
        })
}

fn build_nodes(
    config: &RackConfig,
    listeners: &[TcpListener],
    ipmi_ports: &[Option<u16>],
) -> Result<Vec<Arc<Node>>, Error> {
    let settings = Arc::new(NodeSettings {
        latency: config.latency,
        delays: config.delays,
        power_cycle_off: config.power_cycle_off,
        credentials: config.credentials.clone(),
        boot_flag_valid_timeout: config.boot_flag_valid_timeout,
    });
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut nodes = Vec::with_capacity(config.nodes);
    for (index, listener) in listeners.iter().enumerate() {
        let local = listener.local_addr().map_err(|source| Error::Bind {
            what: format!("Redfish endpoint of {}", config.node_name(index)),
            addr: SocketAddr::new(config.bind, 0),
            source,
        })?;
        let identity = NodeIdentity {
            index,
            name: config.node_name(index),
            power_domain: config.power_domain(index),
            uuid: Uuid::from_bytes(rng.random()),
        };
        let endpoints = Endpoints {
            address: config.node_address(index),
            redfish_port: local.port(),
            ipmi_port: ipmi_ports.get(index).copied().flatten(),
        };
        nodes.push(Arc::new(Node::new(
            identity,
            endpoints,
            Arc::clone(&settings),
            config.initial_power == InitialPower::On,
            config.quirks.clone(),
        )));
    }
    Ok(nodes)
}

fn apply_start_faults(state: &RackState) {
    for plan in &state.config().fault_plans {
        // Fractions were validated with the rest of the config.
        if let Ok(names) = state.apply_fault_fraction(plan.setting, plan.fraction, plan.seed) {
            tracing::info!(fault = %plan.setting, nodes = names.len(), "start-up fault applied");
        }
    }
    for fault in &state.config().node_faults {
        if let Some(node) = state.node(&fault.node) {
            node.apply_fault(fault.setting);
        }
    }
    for narrowed in &state.config().node_reset_types {
        if let Some(node) = state.node(&narrowed.node) {
            let mut quirks = node.quirks();
            quirks.reset_types.clone_from(&narrowed.reset_types);
            node.set_quirks(quirks);
        }
    }
}

/// Flips the power of `flapping` nodes at random, every flap interval.
async fn flapper(state: Arc<RackState>, cancel: CancellationToken) {
    let interval: Duration = state.config().flap_interval;
    let mut rng = StdRng::seed_from_u64(state.config().seed ^ 0x00f1_a9f1_a9f1);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        for node in state.nodes() {
            if node.flap(&mut rng) {
                tracing::debug!(node = node.name(), "flapping: power changed out of band");
            }
        }
    }
}
