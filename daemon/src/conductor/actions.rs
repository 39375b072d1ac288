//! Node actions: what `PUT /v1/nodes/{ident}/states/power`,
//! `PUT …/states/boot_device`, `PUT/DELETE …/maintenance` and
//! `POST …/action` ask of the conductor, which node states allow each (one
//! exhaustive `match`), and how each is carried out.
//!
//! Power actions (start, stop, reboot, power cycle, rescue, unrescue) are
//! accepted with one short transaction — the target, its operation, the
//! lease and the action record — and driven afterwards by the reconcile
//! loop. Boot device and crash dump are single BMC requests made while the
//! caller waits, so the answer reports what the BMC did. Lock, unlock,
//! maintenance and reset are database changes only.

use std::time::Duration;

use baton_drivers::{BootDevice, DriverError, PowerAction};
use baton_state::{
    ActionEvent, FailCode, Failure, Lock, Maintenance, NewAction, Node, NodeChange, NodeIdent,
    NodeUpdate, OpPhase, Operation, PowerVerb, SubJobEnd, UpdateError,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Conductor, ConductorError};

/// Who asked, and under which request id the action is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub request_id: String,
    /// The uid of the connecting process, when the socket could tell.
    pub user_id: Option<String>,
    /// Its user name, when the uid resolves to one.
    pub user_name: Option<String>,
}

/// One thing to do to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    Power {
        verb: PowerVerb,
        timeout: Option<Duration>,
    },
    /// One-time network boot, then a restart.
    Rescue,
    /// Boot from disk again, then a restart.
    Unrescue,
    /// A diagnostic interrupt (NMI), for a crash dump.
    CrashDump,
    SetBootDevice {
        device: BootDevice,
        persistent: bool,
    },
    Lock {
        reason: Option<String>,
    },
    Unlock,
    Maintenance {
        reason: Option<String>,
    },
    EndMaintenance,
    /// Admin: clear a stuck target, error and lease.
    ResetStatus,
}

impl NodeAction {
    /// The action's name in the action log (Nova's instance-action names).
    pub fn name(&self) -> &'static str {
        match self {
            NodeAction::Power { verb, .. } => match verb {
                PowerVerb::On => "start",
                PowerVerb::Off | PowerVerb::SoftOff => "stop",
                PowerVerb::Reboot | PowerVerb::SoftReboot => "reboot",
                PowerVerb::PowerCycle => "power_cycle",
            },
            NodeAction::Rescue => "rescue",
            NodeAction::Unrescue => "unrescue",
            NodeAction::CrashDump => "trigger_crash_dump",
            NodeAction::SetBootDevice { .. } => "set_boot_device",
            NodeAction::Lock { .. } => "lock",
            NodeAction::Unlock => "unlock",
            NodeAction::Maintenance { .. } => "maintenance",
            NodeAction::EndMaintenance => "end_maintenance",
            NodeAction::ResetStatus => "reset_status",
        }
    }

    /// The power operation this action starts, if it is one.
    fn operation(&self) -> Option<(PowerVerb, Option<&'static str>, Option<Duration>)> {
        match self {
            NodeAction::Power { verb, timeout } => Some((*verb, None, *timeout)),
            NodeAction::Rescue => Some((PowerVerb::Reboot, Some("pxe"), None)),
            NodeAction::Unrescue => Some((PowerVerb::Reboot, Some("disk"), None)),
            _ => None,
        }
    }
}

/// What a conductor answered to an action.
#[derive(Debug, Clone)]
pub enum ActionOutcome {
    /// Accepted; the work goes on after the answer (202).
    Accepted { node: Node, request_id: String },
    /// Done while the caller waited (200).
    Done { node: Node, request_id: String },
}

/// Why an action is refused in the node's present state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotAcceptable(String),
}

/// The state rules, one arm per action: locked, in maintenance and busy
/// nodes refuse what would change their power or boot.
pub fn check(action: &NodeAction, node: &Node, now: OffsetDateTime) -> Result<(), Refusal> {
    let refusal = match action {
        NodeAction::Power { .. }
        | NodeAction::Rescue
        | NodeAction::Unrescue
        | NodeAction::CrashDump
        | NodeAction::SetBootDevice { .. } => blocker(node, now),
        NodeAction::Lock { .. }
        | NodeAction::Unlock
        | NodeAction::Maintenance { .. }
        | NodeAction::EndMaintenance
        | NodeAction::ResetStatus => None,
    };
    refusal.map_or(Ok(()), |failure| Err(Refusal::Conflict(failure.reason)))
}

/// What keeps a node from a power or boot change right now, if anything:
/// locked, in maintenance, or busy — with the code a batch sub-job fails
/// with and the message saying what to do.
pub fn blocker(node: &Node, now: OffsetDateTime) -> Option<Failure> {
    let name = node
        .spec
        .name
        .clone()
        .unwrap_or_else(|| node.uuid.to_string());
    let locked = || {
        node.locked.then(|| {
            let by = node
                .locked_by
                .as_deref()
                .map_or(String::new(), |u| format!(" by uid {u}"));
            let why = node
                .lock_reason
                .as_deref()
                .map_or(String::new(), |r| format!(" ({r})"));
            Failure::new(
                FailCode::Locked,
                format!("node {name} is locked{by}{why}; unlock it first with `baton node unlock {name}`"),
            )
        })
    };
    let maintenance = || {
        node.spec.maintenance.then(|| {
            let why = node
                .spec
                .maintenance_reason
                .as_deref()
                .map_or(String::new(), |r| format!(" ({r})"));
            Failure::new(
                FailCode::Maintenance,
                format!("node {name} is in maintenance{why}; take it out with `baton node maintenance {name} off` first"),
            )
        })
    };
    let busy = || {
        node.busy_reason_at(now).map(|reason| {
            Failure::new(
                FailCode::Busy,
                format!(
                    "node {name} is busy: {reason}; wait for it to finish (`baton node actions {name}`), \
                     or clear it with os-reset_status"
                ),
            )
        })
    };
    locked().or_else(maintenance).or_else(busy)
}

/// On and off every BMC can do: accepting them needs no capability check,
/// hence no read of the node before the one write that accepts them.
fn every_bmc_can(verb: PowerVerb) -> bool {
    matches!(verb, PowerVerb::On | PowerVerb::Off)
}

/// The boot device a stored name stands for.
pub fn boot_device(name: &str) -> Option<BootDevice> {
    BootDevice::ALL.into_iter().find(|d| d.to_string() == name)
}

fn driver_action(verb: PowerVerb) -> PowerAction {
    match verb {
        PowerVerb::On => PowerAction::On,
        PowerVerb::Off => PowerAction::Off,
        PowerVerb::SoftOff => PowerAction::SoftOff,
        PowerVerb::Reboot => PowerAction::Reboot,
        PowerVerb::SoftReboot => PowerAction::SoftReboot,
        PowerVerb::PowerCycle => PowerAction::PowerCycle,
    }
}

fn new_action(node: &Node, action: &NodeAction, caller: &Caller) -> NewAction {
    NewAction {
        request_id: caller.request_id.clone(),
        node_uuid: node.uuid,
        action: action.name().to_owned(),
        user_id: caller.user_id.clone(),
        user_name: caller.user_name.clone(),
        message: None,
        project_id: None,
        sub_job_id: None,
    }
}

fn refused(error: UpdateError<Refusal>) -> ConductorError {
    match error {
        UpdateError::Store(e) => ConductorError::Store(e),
        UpdateError::Rejected(r) => ConductorError::Refused(r),
    }
}

impl Conductor {
    /// Carries out `action` on the node `ident` for `caller`.
    pub async fn act(
        &self,
        ident: &str,
        action: NodeAction,
        caller: Caller,
    ) -> Result<ActionOutcome, ConductorError> {
        let ident = NodeIdent::parse(ident);
        if let Some((verb, boot_first, timeout)) = action.operation() {
            return self
                .start_operation(ident, &action, verb, boot_first, timeout, caller)
                .await;
        }
        match action {
            NodeAction::CrashDump | NodeAction::SetBootDevice { .. } => {
                self.bmc_action(ident, action, caller).await
            }
            _ => self.record_change(ident, action, caller).await,
        }
    }

    /// Checks the BMC can do a verb, from what it reported (asked once per
    /// driver). A BMC that cannot be asked
    /// right now gets the benefit of the doubt — the operation then fails
    /// with the BMC's own answer.
    async fn check_capable(&self, node: &Node, verb: PowerVerb) -> Result<(), ConductorError> {
        let shared = self.reconciler.shared();
        let asked = tokio::time::timeout(
            shared.config.conductor.bmc_timeout,
            shared.drivers.capabilities(node),
        )
        .await;
        match asked {
            Ok(Ok(capabilities)) if !capabilities.supports(driver_action(verb)) => {
                let can: Vec<String> = capabilities
                    .power_actions
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                Err(ConductorError::Refused(Refusal::NotAcceptable(format!(
                    "the BMC of node {} cannot do {:?}; it supports: {}",
                    node.spec.name.as_deref().unwrap_or(&node.uuid.to_string()),
                    verb.as_str(),
                    can.join(", ")
                ))))
            }
            _ => Ok(()),
        }
    }

    async fn start_operation(
        &self,
        ident: NodeIdent,
        action: &NodeAction,
        verb: PowerVerb,
        boot_first: Option<&'static str>,
        timeout: Option<Duration>,
        caller: Caller,
    ) -> Result<ActionOutcome, ConductorError> {
        if !every_bmc_can(verb) {
            // Refuse a busy or locked node before asking its BMC anything;
            // the write below checks again.
            let node = self.store.get_node(ident.clone()).await?;
            check(action, &node, OffsetDateTime::now_utc()).map_err(ConductorError::Refused)?;
            self.check_capable(&node, verb).await?;
        }
        let shared = self.reconciler.shared();
        let lease = shared.lease(verb, timeout);
        let action = action.clone();
        let request_id = caller.request_id.clone();
        let node = self
            .store
            .change_node(ident, move |node| {
                check(&action, node, OffsetDateTime::now_utc())?;
                Ok(NodeChange {
                    update: NodeUpdate {
                        operation: Some(Some(Operation {
                            verb,
                            request_id: caller.request_id.clone(),
                            boot_first: boot_first.map(str::to_owned),
                            timeout,
                            phase: OpPhase::Queued,
                            requested_at: OffsetDateTime::now_utc(),
                            sub_job: None,
                        })),
                        reservation: Some(Some(lease)),
                        last_error: Some(None),
                        ..NodeUpdate::default()
                    },
                    action: Some(new_action(node, &action, &caller)),
                    ..NodeChange::default()
                })
            })
            .await
            .map_err(refused)?;
        self.reconciler.submit(node.uuid);
        Ok(ActionOutcome::Accepted { node, request_id })
    }

    /// Boot device and NMI: one BMC request while the caller waits,
    /// recorded with its outcome either way.
    async fn bmc_action(
        &self,
        ident: NodeIdent,
        action: NodeAction,
        caller: Caller,
    ) -> Result<ActionOutcome, ConductorError> {
        let node = self.store.get_node(ident).await?;
        check(&action, &node, OffsetDateTime::now_utc()).map_err(ConductorError::Refused)?;
        let started = OffsetDateTime::now_utc();
        let shared = self.reconciler.shared();
        let (event, result) = match &action {
            NodeAction::SetBootDevice { device, persistent } => {
                let (device, persistent) = (*device, *persistent);
                let result = shared
                    .bmc_request(&node, |d| async move {
                        d.set_boot_device(device, persistent).await
                    })
                    .await;
                ("bmc_set_boot_device", result)
            }
            _ => {
                let result = shared
                    .bmc_request(&node, |d| async move { d.inject_nmi().await })
                    .await;
                ("bmc_inject_nmi", result)
            }
        };
        let boot_device = match (&action, &result) {
            (NodeAction::SetBootDevice { device, .. }, Ok(())) => Some(Some(device.to_string())),
            _ => None,
        };
        let error = result.as_ref().err().map(ToString::to_string);
        let request_id = caller.request_id.clone();
        let record = NodeChange {
            update: NodeUpdate {
                boot_device,
                ..NodeUpdate::default()
            },
            action: Some(NewAction {
                message: error.clone(),
                ..new_action(&node, &action, &caller)
            }),
            events: vec![(
                caller.request_id.clone(),
                ActionEvent::finished(event, started, error, &shared.host),
            )],
            ..NodeChange::default()
        };
        let node = self
            .store
            .change_node(NodeIdent::Uuid(node.uuid), move |_| Ok::<_, ()>(record))
            .await
            .map_err(|e| match e {
                UpdateError::Store(e) => ConductorError::Store(e),
                UpdateError::Rejected(()) => {
                    ConductorError::Store(baton_state::StoreError::WorkerGone)
                }
            })?;
        result.map_err(ConductorError::Bmc)?;
        Ok(match action {
            NodeAction::CrashDump => ActionOutcome::Accepted { node, request_id },
            _ => ActionOutcome::Done { node, request_id },
        })
    }

    /// Lock, unlock, maintenance and reset: database changes, recorded.
    async fn record_change(
        &self,
        ident: NodeIdent,
        action: NodeAction,
        caller: Caller,
    ) -> Result<ActionOutcome, ConductorError> {
        let request_id = caller.request_id.clone();
        let reset = action == NodeAction::ResetStatus;
        let node = self
            .store
            .change_node(ident, move |node| {
                check(&action, node, OffsetDateTime::now_utc())?;
                let (update, interrupted) = state_change(&action, node, &caller);
                let sub_job_end = interrupted_sub_job(&action, node, &caller);
                let mut record = new_action(node, &action, &caller);
                record.message = interrupted.as_ref().map(|(req, verb)| {
                    format!("cleared the pending {verb} ({req}) and the node's error and lease")
                });
                Ok(NodeChange {
                    update,
                    action: Some(record),
                    action_message: interrupted.map(|(req, _)| {
                        (
                            req,
                            format!("cancelled by os-reset_status ({})", caller.request_id),
                        )
                    }),
                    sub_job_end,
                    ..NodeChange::default()
                })
            })
            .await
            .map_err(refused)?;
        if reset {
            self.reconciler.cancel(node.uuid);
            return Ok(ActionOutcome::Accepted { node, request_id });
        }
        Ok(ActionOutcome::Done { node, request_id })
    }

    /// The node this conductor would drive next, for tests and tools.
    pub fn in_flight(&self) -> usize {
        self.reconciler.in_flight()
    }

    /// Forgets the driver of a node that is gone.
    pub(crate) fn forget_driver(&self, uuid: Uuid) {
        self.reconciler.shared().drivers.forget(uuid);
    }
}

/// The end of the batch sub-job whose operation a reset clears.
fn interrupted_sub_job(action: &NodeAction, node: &Node, caller: &Caller) -> Option<SubJobEnd> {
    if *action != NodeAction::ResetStatus {
        return None;
    }
    let sub_job_id = node.conductor.operation.as_ref()?.sub_job.clone()?;
    Some(SubJobEnd {
        sub_job_id,
        begin_time: None,
        outcome: Err(Failure::new(
            FailCode::Aborted,
            format!(
                "the node's operation was cleared by os-reset_status ({})",
                caller.request_id
            ),
        )),
    })
}

/// The columns a database-only action changes, and (for a reset) the
/// operation it interrupts: `(request id, verb)`.
fn state_change(
    action: &NodeAction,
    node: &Node,
    caller: &Caller,
) -> (NodeUpdate, Option<(String, &'static str)>) {
    let mut update = NodeUpdate::default();
    let mut interrupted = None;
    match action {
        NodeAction::Lock { reason } => {
            update.lock = Some(Lock {
                locked: true,
                reason: reason.clone(),
                by: caller.user_id.clone(),
            });
        }
        NodeAction::Unlock => {
            update.lock = Some(Lock {
                locked: false,
                reason: None,
                by: None,
            });
        }
        NodeAction::Maintenance { reason } => {
            // An operator's maintenance replaces the sync's fault.
            update.maintenance = Some(Maintenance {
                on: true,
                reason: reason.clone(),
                fault: None,
            });
        }
        NodeAction::EndMaintenance => {
            update.maintenance = Some(Maintenance {
                on: false,
                reason: None,
                fault: None,
            });
            update.sync_failures = Some(0);
        }
        NodeAction::ResetStatus => {
            if let Some(op) = &node.conductor.operation {
                interrupted = Some((op.request_id.clone(), op.verb.as_str()));
                update.power_state_unsure = Some(true);
            }
            update.operation = Some(None);
            update.reservation = Some(None);
            update.last_error = Some(None);
        }
        NodeAction::Power { .. }
        | NodeAction::Rescue
        | NodeAction::Unrescue
        | NodeAction::CrashDump
        | NodeAction::SetBootDevice { .. } => {}
    }
    (update, interrupted)
}

/// Maps a driver error of a request made while the caller waits.
pub fn bmc_error_kind(error: &DriverError) -> BmcErrorKind {
    match error {
        DriverError::Unsupported(_) => BmcErrorKind::NotAcceptable,
        DriverError::Auth(_) | DriverError::Config(_) => BmcErrorKind::Conflict,
        e if e.is_transient() => BmcErrorKind::Unavailable,
        _ => BmcErrorKind::Failed,
    }
}

/// How a BMC failure reads to an API caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BmcErrorKind {
    /// The BMC cannot do it (406).
    NotAcceptable,
    /// The node's BMC settings are wrong (409).
    Conflict,
    /// Try again later (503).
    Unavailable,
    /// The BMC failed (500).
    Failed,
}
