//! The conductor: the daemon's core, and the one interface the socket API
//! (and, later, the scheduler and tests) call. Handlers parse requests into
//! calls on [`Conductor`] and render what it returns; they never touch the
//! store or a driver themselves.
//!
//! The conductor owns node enrollment (one validation path for single
//! nodes, imports and hw-sim inventories) and edits here; node actions and
//! their state rules in [`actions`]; the reconcile loop that drives power
//! targets in [`reconcile`] (its steps in `steps`), on the bounded request pool of [`pool`], timed
//! by [`learn`]; the periodic power sync in [`sync`]; one driver per node
//! in [`drivers`]; counters in [`stats`]; its health report in `health`;
//! the pruning of old action records in [`retention`].

pub mod actions;
pub mod batch;
pub mod drivers;
mod health;
pub mod learn;
pub mod patch;
pub mod pool;
pub mod power_on;
pub mod reconcile;
pub mod retention;
pub mod schedules;
pub mod stats;
mod steps;
pub mod sync;

use std::sync::Arc;

use baton_state::{Node, NodeFilter, NodeIdent, NodeSpec, Store, StoreError, UpdateError};
use json_patch::Patch;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::config::Config;
use crate::messages;
use actions::Caller;
use drivers::Drivers;
pub use health::{Activity, Health};
pub use patch::PatchError;
use pool::Pool;
use reconcile::{Reconciler, Shared};
use stats::Stats;
use tokio_util::sync::CancellationToken;

/// Most nodes one import may carry.
pub const MAX_IMPORT: usize = 10_000;

/// A problem with one entry of an import (or a single node: index 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryProblem {
    pub index: usize,
    pub name: Option<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConductorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid node: {}", .0.join("; "))]
    InvalidNode(Vec<String>),
    #[error("{} of {total} entries are invalid, nothing was imported: {}", .problems.len(), describe_entries(.problems))]
    InvalidImport {
        total: usize,
        problems: Vec<EntryProblem>,
    },
    #[error("an import holds at most {MAX_IMPORT} nodes, this one has {0}; split it into several imports")]
    ImportTooLarge(usize),
    #[error("the import is empty; send a JSON array of nodes")]
    ImportEmpty,
    #[error("invalid batch, nothing was started: {0}")]
    InvalidBatch(String),
    #[error("invalid schedule, nothing was stored: {0}")]
    InvalidSchedule(String),
    #[error(transparent)]
    Patch(#[from] PatchError),
    #[error(transparent)]
    Refused(#[from] actions::Refusal),
    #[error("{0}")]
    Bmc(baton_drivers::DriverError),
}

fn describe_entries(problems: &[EntryProblem]) -> String {
    problems
        .iter()
        .map(|p| {
            let name = p
                .name
                .as_deref()
                .map_or_else(|| "unnamed".to_owned(), |n| format!("{n:?}"));
            format!("[{}] {name}: {}", p.index, p.reasons.join("; "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cheap to clone; clones share the store, the reconcile loop and health
/// state.
#[derive(Clone, Debug)]
pub struct Conductor {
    store: Store,
    config: Arc<Config>,
    health: Arc<Health>,
    reconciler: Reconciler,
    schedules: Arc<schedules::Schedules>,
    /// `actions.retention`, as the prune task reads it.
    retention: Arc<tokio::sync::watch::Sender<std::time::Duration>>,
}

/// The conductor's background tasks (reconcile loop, power sync, schedule
/// timer, action pruning), to be stopped and awaited at shutdown.
#[derive(Debug)]
pub struct Background {
    stop: CancellationToken,
    reconcile: tokio::task::JoinHandle<()>,
    sync: tokio::task::JoinHandle<()>,
    schedules: tokio::task::JoinHandle<()>,
    prune: tokio::task::JoinHandle<()>,
    trim: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Stops scheduling new work and waits (up to `grace`) for the BMC
    /// requests in flight; what is left resumes at the next start.
    pub async fn shutdown(self, grace: std::time::Duration) {
        self.stop.cancel();
        let finished = async {
            let _ = self.schedules.await;
            let _ = self.prune.await;
            let _ = self.trim.await;
            let _ = self.sync.await;
            let _ = self.reconcile.await;
        };
        if tokio::time::timeout(grace, finished).await.is_err() {
            tracing::warn!(
                grace = %humantime::format_duration(grace),
                "BMC requests still in flight after the shutdown timeout; they resume at the next start"
            );
        }
    }
}

impl Conductor {
    /// Starts the conductor's background work on the current runtime and
    /// resumes every operation a previous run left unfinished.
    pub async fn start(
        store: Store,
        config: Arc<Config>,
    ) -> Result<(Self, Background), ConductorError> {
        let health = Arc::new(Health::new());
        let workers = usize::try_from(config.conductor.workers).unwrap_or(1);
        let shared = Arc::new(Shared::new(
            store.clone(),
            Arc::new(Drivers::new(config.conductor.bmc_timeout)),
            Arc::new(Pool::new(workers)),
            Arc::clone(&config),
            health.hostname().to_owned(),
            Arc::new(Stats::default()),
        ));
        let stop = CancellationToken::new();
        let (reconciler, reconcile) = Reconciler::start(shared, stop.clone());
        let resumed = reconciler.resume().await?;
        if resumed > 0 {
            tracing::info!(resumed, "resuming power operations left unfinished");
        }
        let sync = tokio::spawn(sync::run(reconciler.clone(), stop.clone()));
        let (retention_setting, settings) = tokio::sync::watch::channel(config.actions.retention);
        let prune = tokio::spawn(retention::run(store.clone(), settings, stop.clone()));
        let trim = tokio::spawn(crate::memory::run(stop.clone()));
        let conductor = Self {
            store,
            config,
            health,
            reconciler,
            schedules: Arc::default(),
            retention: Arc::new(retention_setting),
        };
        let armed = conductor.arm_schedules().await?;
        if armed > 0 {
            tracing::info!(armed, "batch schedules armed");
        }
        let schedules = tokio::spawn(schedules::run(conductor.clone(), stop.clone()));
        Ok((
            conductor,
            Background {
                stop,
                reconcile,
                sync,
                schedules,
                prune,
                trim,
            },
        ))
    }

    /// Applies reloaded power-sync settings: the sweeps' periods restart
    /// from now when they changed; policy, workers and max_failures apply
    /// from the next sweep.
    pub fn set_sync(&self, settings: crate::config::SyncConfig) {
        self.reconciler.shared().sync.send_replace(settings);
    }

    /// Applies a reloaded `actions.retention`: the prune runs again at once
    /// with it.
    pub fn set_action_retention(&self, retention: std::time::Duration) {
        self.retention.send_replace(retention);
    }

    /// True when the reconcile loop answers (the systemd watchdog's probe).
    pub async fn alive(&self) -> bool {
        self.reconciler.alive().await
    }

    pub fn stats(&self) -> &Stats {
        &self.reconciler.shared().stats
    }

    pub fn pool(&self) -> &Pool {
        &self.reconciler.shared().pool
    }

    /// Whether nodes may be enrolled without a password of their own.
    pub fn has_default_password(&self) -> bool {
        self.reconciler.shared().drivers.has_default_password()
    }

    /// Sets (or clears) the default BMC password; drivers that used a
    /// password file or the old default are rebuilt at their next use.
    pub fn set_default_password(&self, password: Option<baton_drivers::Secret>) {
        self.reconciler
            .shared()
            .drivers
            .set_default_password(password);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Enrolls one node given as JSON text.
    pub async fn create_node(&self, raw: &str, caller: &Caller) -> Result<Node, ConductorError> {
        let spec = parse_node(raw, self.has_default_password())
            .map_err(|(_, reasons)| ConductorError::InvalidNode(reasons))?;
        let uuids = self
            .store
            .import_nodes_logged(vec![spec], entry(Uuid::nil(), "create", caller))
            .await?;
        let uuid = uuids.first().copied().ok_or(StoreError::WorkerGone)?;
        Ok(self.store.get_node(NodeIdent::Uuid(uuid)).await?)
    }

    /// Enrolls every entry of an inventory, or none. Each entry is parsed and
    /// validated on its own so the error lists every offending one.
    pub async fn import_nodes(
        &self,
        entries: Vec<Box<RawValue>>,
        caller: &Caller,
    ) -> Result<Vec<Uuid>, ConductorError> {
        if entries.is_empty() {
            return Err(ConductorError::ImportEmpty);
        }
        if entries.len() > MAX_IMPORT {
            return Err(ConductorError::ImportTooLarge(entries.len()));
        }
        let total = entries.len();
        let mut specs = Vec::with_capacity(total);
        let mut problems = Vec::new();
        let default_password = self.has_default_password();
        for (index, entry) in entries.into_iter().enumerate() {
            match parse_node(entry.get(), default_password) {
                Ok(spec) => specs.push((index, spec)),
                Err((name, reasons)) => problems.push(EntryProblem {
                    index,
                    name,
                    reasons,
                }),
            }
        }
        if !problems.is_empty() {
            self.add_name_clashes(&specs, &mut problems).await?;
            return Err(ConductorError::InvalidImport { total, problems });
        }
        let specs = specs.into_iter().map(|(_, spec)| spec).collect();
        // The nodes and their enrollment records in one transaction: a
        // crash leaves all of the import, or none of it.
        Ok(self
            .store
            .import_nodes_logged(specs, entry(Uuid::nil(), "create", caller))
            .await?)
    }

    /// Adds name clashes among the valid entries to the problems of an
    /// import that is refused anyway, so one answer lists everything.
    async fn add_name_clashes(
        &self,
        specs: &[(usize, NodeSpec)],
        problems: &mut Vec<EntryProblem>,
    ) -> Result<(), ConductorError> {
        let names = specs
            .iter()
            .filter_map(|(i, s)| s.name.clone().map(|n| (*i, n)))
            .collect();
        for clash in self.store.duplicate_names(names).await? {
            let why = if clash.already_enrolled {
                "name is already enrolled"
            } else {
                "name is repeated in this import"
            };
            problems.push(EntryProblem {
                index: clash.index,
                name: Some(clash.name),
                reasons: vec![why.into()],
            });
        }
        problems.sort_by_key(|p| p.index);
        Ok(())
    }

    pub async fn node(&self, ident: &str) -> Result<Node, ConductorError> {
        Ok(self.store.get_node(NodeIdent::parse(ident)).await?)
    }

    pub async fn list_nodes(
        &self,
        filter: NodeFilter,
        limit: usize,
        marker: Option<Uuid>,
    ) -> Result<Vec<Node>, ConductorError> {
        Ok(self.store.list_nodes(filter, limit, marker).await?)
    }

    /// Applies a JSON Patch to a node's operator-set fields, atomically.
    pub async fn patch_node(
        &self,
        ident: &str,
        patch: Patch,
        caller: &Caller,
    ) -> Result<Node, ConductorError> {
        patch::check_paths(&patch)?;
        let default_password = self.has_default_password();
        let node = self
            .store
            .update_node(
                NodeIdent::parse(ident),
                move |node| patch::apply(node, &patch, default_password),
                Some(entry(Uuid::nil(), "update", caller)),
            )
            .await
            .map_err(|e| match e {
                UpdateError::Store(s) => ConductorError::Store(s),
                UpdateError::Rejected(p) => ConductorError::Patch(p),
            })?;
        Ok(node)
    }

    pub async fn delete_node(&self, ident: &str, caller: &Caller) -> Result<Node, ConductorError> {
        let node = self
            .store
            .delete_node(
                NodeIdent::parse(ident),
                Some(entry(Uuid::nil(), "delete", caller)),
            )
            .await?;
        self.forget_driver(node.uuid);
        Ok(node)
    }

    /// A node's action log, newest first.
    pub async fn actions(
        &self,
        ident: &str,
        limit: usize,
        marker: Option<String>,
        window: baton_state::UpdatedWindow,
    ) -> Result<(Node, Vec<baton_state::Action>), ConductorError> {
        let node = self.node(ident).await?;
        let actions = self
            .store
            .list_actions(node.uuid, limit, marker, window)
            .await?;
        Ok((node, actions))
    }

    /// One action of a node, with its events.
    pub async fn action(
        &self,
        ident: &str,
        request_id: &str,
    ) -> Result<baton_state::Action, ConductorError> {
        let node = self.node(ident).await?;
        Ok(self
            .store
            .get_action(node.uuid, request_id.to_owned())
            .await?)
    }

    /// The conductor's health report.
    pub async fn status(&self) -> Result<crate::api::types::ConductorStatus, ConductorError> {
        let counts = self.store.count_by_power_state().await?;
        let activity = self.activity();
        // sysinfo reads /proc and the database size needs stat(): blocking.
        let (health, store) = (Arc::clone(&self.health), self.store.clone());
        tokio::task::spawn_blocking(move || health.report(&store, &counts, activity))
            .await
            .map_err(|_| ConductorError::Store(StoreError::WorkerGone))
    }

    /// The pool, the operations in flight and the counters, as they are now.
    pub fn activity(&self) -> Activity {
        let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let (pool, stats) = (self.pool(), self.stats());
        let (succeeded, failed) = stats.operations();
        Activity {
            workers: crate::api::types::WorkerStatus {
                max: u32::try_from(pool.max()).unwrap_or(u32::MAX),
                busy: as_u64(pool.busy()),
                waiting: as_u64(pool.waiting()),
            },
            operations: crate::api::types::OperationStatus {
                in_flight: as_u64(self.reconciler.in_flight()),
                succeeded,
                failed,
            },
            bmc_requests: stats
                .requests()
                .into_iter()
                .map(
                    |((protocol, result), count)| crate::api::types::BmcRequestCount {
                        protocol: protocol.into(),
                        result: result.into(),
                        count,
                    },
                )
                .collect(),
            last_sweeps: stats.last_sweeps(),
        }
    }

    pub async fn power_state_counts(
        &self,
    ) -> Result<baton_state::PowerStateCounts, ConductorError> {
        Ok(self.store.count_by_power_state().await?)
    }
}

/// Parses and validates one node given as JSON text — the one path for
/// `POST /v1/nodes` and every import entry. Refuses what serde alone would
/// let through: duplicate keys are caught by parsing the text itself, and
/// objects written as arrays (`"bmc": ["h", 623, …]`) by checking the shape.
/// A node without a password of its own needs `default_password`. On
/// failure returns the node's name (when readable) and every reason.
pub fn parse_node(
    raw: &str,
    default_password: bool,
) -> Result<NodeSpec, (Option<String>, Vec<String>)> {
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| (None, vec![format!("malformed JSON: {e}")]))?;
    let name = value
        .get("name")
        .and_then(serde_json::Value::as_str)
        .map(|n| messages::clip(n, 64));
    if !value.is_object() {
        return Err((
            name,
            vec![format!("expected a JSON object, got {}", json_kind(&value))],
        ));
    }
    if let Some(bmc) = value.get("bmc").filter(|b| !b.is_object()) {
        return Err((
            name,
            vec![format!("bmc: expected an object, got {}", json_kind(bmc))],
        ));
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    let spec: NodeSpec = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| (name.clone(), vec![messages::json_error(&e)]))?;
    let mut problems = spec.validate();
    if !default_password {
        problems.extend(spec.require_password());
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err((name, problems.iter().map(ToString::to_string).collect()))
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A caller's action record for one node (enrollment, edit, deletion),
/// written in the same transaction as the change it records.
fn entry(node_uuid: Uuid, action: &str, caller: &Caller) -> baton_state::NewAction {
    baton_state::NewAction {
        request_id: caller.request_id.clone(),
        node_uuid,
        action: action.to_owned(),
        user_id: caller.user_id.clone(),
        user_name: caller.user_name.clone(),
        message: None,
        project_id: None,
        sub_job_id: None,
    }
}
