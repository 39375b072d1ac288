//! The steps of a power operation, each one BMC request or one database
//! write, run by the reconcile loop ([`super::reconcile`]) when due.
//!
//! 1. **load** the node; skip it if the target was cleared meanwhile;
//! 2. **verify** (read the state) when the database cannot say a command is
//!    needed: after a restart, after a failed or unconfirmed command, or
//!    when the recorded state already is the target ("already power off",
//!    no command sent);
//! 3. **set boot device** first, for rescue and unrescue;
//! 4. **command** the BMC; a transient failure goes back to *verify* after
//!    a pause (a retransmitted IPMI command may have run), an unconfirmed
//!    outcome (`OutcomeUnknown`) is never resent blindly. A command that
//!    must not run twice (reboot, power cycle) is first recorded as maybe
//!    sent, so a restart re-reads instead of resending — written once the
//!    command holds its BMC and a worker, right before it goes out, so that
//!    a command still queued (behind a batch, or for its power domain) when
//!    batond dies is sent after the restart rather than taken as sent;
//! 5. **confirm**: read until the target state shows or the timeout passes
//!    (soft verbs then fall back to hard ones when configured). Some BMCs
//!    answer a command sent mid-transition as done and drop it
//!    (x86-power-control's "No action taken"): when two reads in a row
//!    after the answer find the node settled away from the target, the
//!    command is sent again — only an on, off or soft off, which end in
//!    the same state however often they run, at most `max_retries` times,
//!    within the first wait;
//! 6. **finish**: one write clears the target and the lease, stores the
//!    state read, the learned transition time, the events and the message
//!    — batched with other nodes' writes by the store's group commit.

use std::time::Duration;

use baton_drivers::{DriverError, PowerAction};
use baton_state::{
    ActionEvent, FailCode, Failure, Node, NodeChange, NodeIdent, NodeUpdate, OpPhase, Operation,
    PowerState, PowerVerb, StoreError, SubJobEnd,
};
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

use super::learn::{self, Direction};
use super::pool::Lane;
use super::power_on::DomainSlot;
use super::reconcile::Shared;

/// Pause before retrying a database write that failed.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// First pause after a transient BMC failure; doubles each try.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The driver's view of a verb.
fn power_action(verb: PowerVerb) -> PowerAction {
    match verb {
        PowerVerb::On => PowerAction::On,
        PowerVerb::Off => PowerAction::Off,
        PowerVerb::SoftOff => PowerAction::SoftOff,
        PowerVerb::Reboot => PowerAction::Reboot,
        PowerVerb::SoftReboot => PowerAction::SoftReboot,
        PowerVerb::PowerCycle => PowerAction::PowerCycle,
    }
}

fn stored_state(state: baton_drivers::PowerState) -> PowerState {
    match state.settled() {
        baton_drivers::PowerState::Off => PowerState::Off,
        _ => PowerState::On,
    }
}

/// What a read that did not find the node at `end` says about when to look
/// again.
fn miss_kind(state: baton_drivers::PowerState, end: PowerState) -> learn::Miss {
    if state.is_transitional() && stored_state(state) == end {
        learn::Miss::Moving
    } else {
        learn::Miss::NotMoving
    }
}

fn direction(end: PowerState) -> Direction {
    if end == PowerState::Off {
        Direction::Off
    } else {
        Direction::On
    }
}

/// Whether a command may already have reached the BMC in this operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    No,
    Maybe,
    Yes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Load,
    Verify,
    SetBoot,
    Command(PowerAction),
    Confirm,
    /// The final write, retried until the database takes it.
    Finish(Result<String, Failure>),
}

/// One operation between its steps.
#[derive(Debug)]
pub(super) struct OpState {
    pub(super) uuid: Uuid,
    resumed: bool,
    pub(super) due: Instant,
    stage: Stage,
    node: Option<Node>,
    request_id: String,
    verb: PowerVerb,
    sent: Sent,
    commanded: bool,
    tries: u32,
    misses: u32,
    /// Reads since the last command that found the node settled away from
    /// the target.
    settled_misses: u32,
    /// Times the command was sent again because the BMC evidently dropped it.
    reissues: u32,
    estimate: Duration,
    acked_at: Option<Instant>,
    deadline: Option<Instant>,
    last_read: Option<PowerState>,
    learned: Option<Duration>,
    wait_started: Option<OffsetDateTime>,
    events: Vec<ActionEvent>,
    /// The batch sub-job this operation carries out.
    sub_job: Option<String>,
    /// When its first BMC request went out.
    began: Option<OffsetDateTime>,
    /// Held from a power-on command until the node is seen on.
    domain_slot: Option<DomainSlot>,
}

pub(super) enum Next {
    At(Instant),
    Finished,
}

impl OpState {
    pub(super) fn new(uuid: Uuid, resumed: bool) -> Self {
        Self {
            uuid,
            resumed,
            due: Instant::now(),
            stage: Stage::Load,
            node: None,
            request_id: String::new(),
            verb: PowerVerb::On,
            sent: Sent::No,
            commanded: false,
            tries: 0,
            misses: 0,
            settled_misses: 0,
            reissues: 0,
            estimate: learn::DEFAULT_ESTIMATE,
            acked_at: None,
            deadline: None,
            last_read: None,
            learned: None,
            wait_started: None,
            events: Vec::new(),
            sub_job: None,
            began: None,
            domain_slot: None,
        }
    }

    /// Batch sub-jobs queue behind single-node requests for workers.
    fn lane(&self) -> Lane {
        if self.sub_job.is_some() {
            Lane::Bulk
        } else {
            Lane::Interactive
        }
    }

    fn end_state(&self) -> PowerState {
        self.verb.end_state()
    }

    fn event(&mut self, name: &str, started: OffsetDateTime, error: Option<String>, host: &str) {
        self.events
            .push(ActionEvent::finished(name, started, error, host));
    }
}

/// Runs the operation's due step and says when the next one is due.
pub(super) async fn step(shared: &Shared, op: &mut OpState) -> Next {
    let stage = op.stage.clone();
    match stage {
        Stage::Load => load(shared, op).await,
        Stage::Verify => verify(shared, op).await,
        Stage::SetBoot => set_boot(shared, op).await,
        Stage::Command(action) => command(shared, op, action).await,
        Stage::Confirm => confirm(shared, op).await,
        Stage::Finish(outcome) => finish(shared, op, outcome).await,
    }
}

fn now_step(op: &mut OpState, stage: Stage) -> Next {
    op.stage = stage;
    Next::At(Instant::now())
}

async fn load(shared: &Shared, op: &mut OpState) -> Next {
    let node = match shared.store.get_node(NodeIdent::Uuid(op.uuid)).await {
        Ok(node) => node,
        Err(StoreError::NodeNotFound { .. }) => return Next::Finished,
        Err(error) => {
            tracing::warn!(node = %op.uuid, %error, "cannot load a node to drive; retrying");
            return Next::At(Instant::now() + STORE_RETRY);
        }
    };
    let Some(operation) = node.conductor.operation.clone() else {
        return Next::Finished;
    };
    op.request_id.clone_from(&operation.request_id);
    op.verb = operation.verb;
    op.sub_job.clone_from(&operation.sub_job);
    if operation.phase == OpPhase::Sent {
        op.sent = Sent::Maybe;
    }
    let dir = direction(op.end_state());
    op.estimate = learn::first_read(
        learn::node_estimate(&node.conductor.transitions, dir),
        shared.fleet(dir),
    );
    let first = first_stage(&node, &operation, op.resumed);
    op.node = Some(node);
    now_step(op, first)
}

/// Where an operation starts. A read comes first whenever the database
/// cannot tell that the command is needed: after a restart or a possibly
/// sent command, when the recorded state is unknown or already the target
/// (no command then), and before a restart of a node not known to be on.
fn first_stage(node: &Node, operation: &Operation, resumed: bool) -> Stage {
    if resumed || operation.phase == OpPhase::Sent {
        return Stage::Verify;
    }
    if operation.boot_first.is_some() {
        return Stage::SetBoot;
    }
    after_boot(node, operation.verb)
}

fn after_boot(node: &Node, verb: PowerVerb) -> Stage {
    let recorded = node
        .power_state
        .filter(|_| !node.conductor.power_state_unsure);
    if verb.is_repeatable() {
        match recorded {
            Some(state) if state != verb.end_state() && state != PowerState::Error => {
                Stage::Command(power_action(verb))
            }
            _ => Stage::Verify,
        }
    } else if recorded == Some(PowerState::On) {
        Stage::Command(power_action(verb))
    } else {
        Stage::Verify
    }
}

/// Every stage after `load` has the node; should one not, it loads again.
macro_rules! node_or_reload {
    ($op:expr) => {
        match $op.node.clone() {
            Some(node) => node,
            None => return now_step($op, Stage::Load),
        }
    };
}

async fn verify(shared: &Shared, op: &mut OpState) -> Next {
    let node = node_or_reload!(op);
    let started = OffsetDateTime::now_utc();
    match request(shared, op, &node, |d| async move { d.power_state().await }).await {
        Ok(state) => {
            op.event("read_power_state", started, None, &shared.host);
            after_verify(shared, op, state)
        }
        Err(error) => {
            op.event(
                "read_power_state",
                started,
                Some(error.to_string()),
                &shared.host,
            );
            on_error(shared, op, &error, Stage::Verify)
        }
    }
}

fn after_verify(shared: &Shared, op: &mut OpState, state: baton_drivers::PowerState) -> Next {
    let end = op.end_state();
    op.tries = 0;
    if state.is_transitional() {
        // Settling on its own: towards the target, just wait; away from it,
        // look again shortly (a command now would race the BMC) — but not
        // for ever: a shutdown that never ends (a hung OS) would hold the
        // node, and its batch, for good.
        ensure_deadline(shared, op);
        if stored_state(state) == end {
            op.stage = Stage::Confirm;
        } else if op.deadline.is_some_and(|d| Instant::now() >= d) {
            return stuck_in_transition(shared, op, state);
        }
        let miss = miss_kind(state, end);
        return Next::At(Instant::now() + learn::after_miss(op.estimate, 1, miss));
    }
    let state = stored_state(state);
    op.last_read = Some(state);
    if state == end {
        if op.verb.is_repeatable() || op.sent != Sent::No {
            let note = if op.commanded {
                format!("reached {end}")
            } else if op.sent == Sent::Maybe {
                format!("reached {end}; the command sent before was not sent again")
            } else {
                format!("already {end}")
            };
            return now_step(op, Stage::Finish(Ok(note)));
        }
        // A restart of a node that is on, not sent yet.
        return now_step(op, Stage::Command(power_action(op.verb)));
    }
    if !op.verb.is_repeatable() && op.sent != Sent::No {
        // The restart may be under way (a power cycle passes through off).
        ensure_deadline(shared, op);
        op.stage = Stage::Confirm;
        return Next::At(Instant::now() + op.estimate);
    }
    if op.verb.is_repeatable() {
        now_step(op, Stage::Command(power_action(op.verb)))
    } else {
        // Restarting a node that is off means powering it on.
        now_step(op, Stage::Command(PowerAction::On))
    }
}

async fn set_boot(shared: &Shared, op: &mut OpState) -> Next {
    let node = node_or_reload!(op);
    let device = node
        .conductor
        .operation
        .as_ref()
        .and_then(|o| o.boot_first.as_deref())
        .and_then(super::actions::boot_device);
    let Some(device) = device else {
        return now_step(op, after_boot(&node, op.verb));
    };
    let started = OffsetDateTime::now_utc();
    match request(shared, op, &node, |d| async move {
        d.set_boot_device(device, false).await
    })
    .await
    {
        Ok(()) => {
            op.event("bmc_set_boot_device", started, None, &shared.host);
            now_step(op, after_boot(&node, op.verb))
        }
        Err(error) => {
            op.event(
                "bmc_set_boot_device",
                started,
                Some(error.to_string()),
                &shared.host,
            );
            on_error(shared, op, &error, Stage::SetBoot)
        }
    }
}

/// Writes `update`, the operation's pending events and `message`, unless
/// the node's operation is no longer this one (an admin reset it).
async fn write_if_ours(
    shared: &Shared,
    op: &OpState,
    update: NodeUpdate,
    message: Option<String>,
    sub_job_end: Option<SubJobEnd>,
) -> Result<Node, baton_state::UpdateError<()>> {
    let request_id = op.request_id.clone();
    let events = op.events.clone();
    shared
        .store
        .change_node(NodeIdent::Uuid(op.uuid), move |node| {
            if !same_operation(node, &request_id) {
                return Err(());
            }
            Ok(NodeChange {
                update,
                events: events
                    .into_iter()
                    .map(|e| (request_id.clone(), e))
                    .collect(),
                action_message: message.map(|m| (request_id, m)),
                sub_job_end,
                ..NodeChange::default()
            })
        })
        .await
}

fn same_operation(node: &Node, request_id: &str) -> bool {
    node.conductor
        .operation
        .as_ref()
        .is_some_and(|o| o.request_id == request_id)
}

fn event_name(action: PowerAction) -> &'static str {
    match action {
        PowerAction::On => "bmc_power_on",
        PowerAction::Off => "bmc_power_off",
        PowerAction::SoftOff => "bmc_soft_power_off",
        PowerAction::Reboot => "bmc_reboot",
        PowerAction::SoftReboot => "bmc_soft_reboot",
        PowerAction::PowerCycle => "bmc_power_cycle",
    }
}

/// One BMC request of an operation, in its lane; the first one of a batch
/// sub-job marks the sub-job running.
async fn request<T, F, Fut>(
    shared: &Shared,
    op: &mut OpState,
    node: &Node,
    call: F,
) -> Result<T, DriverError>
where
    F: FnOnce(std::sync::Arc<dyn baton_drivers::PowerDriver>) -> Fut,
    Fut: std::future::Future<Output = Result<T, DriverError>>,
{
    begin(shared, op);
    shared.bmc_request_in(node, op.lane(), call).await
}

/// Marks a sub-job running at its first BMC request. The write is not
/// waited for: the end of the sub-job is written later in any case (and
/// carries the start time), and a late mark cannot undo it.
fn begin(shared: &Shared, op: &mut OpState) {
    let Some(sub_job) = op.sub_job.clone().filter(|_| op.began.is_none()) else {
        return;
    };
    let at = OffsetDateTime::now_utc();
    op.began = Some(at);
    let store = shared.store.clone();
    tokio::spawn(async move {
        if let Err(error) = store.mark_sub_job_running(sub_job.clone(), at).await {
            tracing::warn!(%sub_job, %error, "cannot mark a sub-job running");
        }
    });
}

/// Whether `action` is the operation's own command and must not run twice.
fn must_mark(op: &OpState, action: PowerAction) -> bool {
    !op.verb.is_repeatable() && action == power_action(op.verb)
}

/// Commands that power a node on wait for their power domain's slot.
fn powers_on(action: PowerAction) -> bool {
    matches!(
        action,
        PowerAction::On | PowerAction::Reboot | PowerAction::SoftReboot | PowerAction::PowerCycle
    )
}

async fn command(shared: &Shared, op: &mut OpState, action: PowerAction) -> Next {
    let node = node_or_reload!(op);
    if powers_on(action) && op.domain_slot.is_none() {
        op.domain_slot = Some(
            shared
                .power_on
                .admit(node.spec.power_domain.as_deref())
                .await,
        );
    }
    begin(shared, op);
    let started = OffsetDateTime::now_utc();
    // A batch sub-job's command passes its gate once it has a worker; one
    // cancelled meanwhile sends nothing (the cancel ended it).
    let gate = op.sub_job.clone().map(|s| (op.uuid, s));
    let admit = || {
        gate.as_ref()
            .is_none_or(|(node, sub_job)| shared.gates.pass(*node, sub_job))
    };
    // A restart is recorded as maybe sent with the worker in hand (see the
    // module doc); the events pending so far go with that write.
    let mark = must_mark(op, action);
    let marking = mark.then(|| {
        let update = NodeUpdate {
            phase: Some(OpPhase::Sent),
            ..NodeUpdate::default()
        };
        write_if_ours(shared, op, update, None, None)
    });
    let Some(result) = shared
        .bmc_request_admitted(&node, op.lane(), admit, |d| async move {
            if let Some(marking) = marking {
                if let Err(not_marked) = marking.await {
                    return Ok(Err(not_marked));
                }
            }
            d.set_power(action).await.map(Ok)
        })
        .await
    else {
        return Next::Finished;
    };
    let result = match result {
        Ok(Err(baton_state::UpdateError::Rejected(()))) => return Next::Finished,
        Ok(Err(baton_state::UpdateError::Store(error))) => {
            tracing::warn!(node = %op.uuid, %error, "cannot record a command about to be sent; retrying");
            return Next::At(Instant::now() + STORE_RETRY);
        }
        Ok(Ok(())) => Ok(()),
        Err(error) => Err(error),
    };
    if mark {
        // Written with the mark.
        op.events.clear();
    }
    let name = event_name(action);
    match result {
        Ok(()) => {
            op.event(name, started, None, &shared.host);
            op.sent = Sent::Yes;
            op.commanded = true;
            start_waiting(shared, op);
            op.stage = Stage::Confirm;
            Next::At(Instant::now() + op.estimate)
        }
        Err(error @ DriverError::OutcomeUnknown { .. }) => {
            op.event(name, started, Some(error.to_string()), &shared.host);
            op.sent = Sent::Maybe;
            op.commanded = true;
            op.tries += 1;
            start_waiting(shared, op);
            if op.tries > shared.config.conductor.max_retries {
                let failure = Failure::new(FailCode::OutcomeUnknown, error.to_string());
                return now_step(op, Stage::Finish(Err(failure)));
            }
            // Read before anything else: it may well have run.
            op.stage = if action == power_action(op.verb) && op.verb.is_repeatable() {
                Stage::Verify
            } else {
                Stage::Confirm
            };
            Next::At(Instant::now() + op.estimate)
        }
        Err(error) => {
            op.event(name, started, Some(error.to_string()), &shared.host);
            // Re-read before sending again: an IPMI command whose answer was
            // lost may have run.
            on_error(shared, op, &error, Stage::Verify)
        }
    }
}

/// Starts the wait for the state after a command was answered; a command
/// sent again keeps the wait the first one started.
fn start_waiting(shared: &Shared, op: &mut OpState) {
    op.acked_at = Some(Instant::now());
    op.misses = 0;
    op.settled_misses = 0;
    if op.reissues == 0 {
        op.deadline = None;
    }
    ensure_deadline(shared, op);
}

/// The BMC answered the command but evidently dropped it: two reads in a
/// row found the node settled away from the target. Only a command that
/// ends in the same state however often it runs is sent again, and only
/// after it was answered (an unanswered one goes through *verify*).
fn evidently_ignored(shared: &Shared, op: &OpState) -> bool {
    op.verb.is_repeatable()
        && op.sent == Sent::Yes
        && op.settled_misses >= 2
        && op.reissues < shared.config.conductor.max_retries
}

/// How long this operation may wait for its state: the caller's timeout,
/// else the verb's configured one.
fn wait_limit(shared: &Shared, op: &OpState) -> Duration {
    op.node
        .as_ref()
        .and_then(|n| n.conductor.operation.as_ref())
        .and_then(|o| o.timeout)
        .unwrap_or_else(|| shared.wait_limit(op.verb))
}

/// Starts the wait for the state, unless one is running.
fn ensure_deadline(shared: &Shared, op: &mut OpState) {
    if op.deadline.is_none() {
        op.deadline = Some(Instant::now() + wait_limit(shared, op));
        op.wait_started = Some(OffsetDateTime::now_utc());
    }
}

async fn confirm(shared: &Shared, op: &mut OpState) -> Next {
    let node = node_or_reload!(op);
    match request(shared, op, &node, |d| async move { d.power_state().await }).await {
        Ok(state) if !state.is_transitional() && stored_state(state) == op.end_state() => {
            op.domain_slot = None;
            op.last_read = Some(stored_state(state));
            learn_from(shared, op);
            let started = op.wait_started.unwrap_or_else(OffsetDateTime::now_utc);
            op.event("wait_power_state", started, None, &shared.host);
            let end = op.end_state();
            now_step(op, Stage::Finish(Ok(format!("reached {end}"))))
        }
        Ok(state) => {
            op.tries = 0;
            if state.is_transitional() {
                op.settled_misses = 0;
            } else {
                op.last_read = Some(stored_state(state));
                op.settled_misses += 1;
            }
            if op.deadline.is_some_and(|d| Instant::now() >= d) {
                return timed_out(shared, op);
            }
            if evidently_ignored(shared, op) {
                op.reissues += 1;
                tracing::info!(node = %op.uuid, request_id = %op.request_id, verb = op.verb.as_str(), "the BMC answered the command but the node did not move; sending it again");
                return now_step(op, Stage::Command(power_action(op.verb)));
            }
            op.misses += 1;
            let miss = miss_kind(state, op.end_state());
            Next::At(Instant::now() + learn::after_miss(op.estimate, op.misses, miss))
        }
        Err(error) => on_error(shared, op, &error, Stage::Confirm),
    }
}

fn learn_from(shared: &Shared, op: &mut OpState) {
    let Some(acked) = op.acked_at.filter(|_| op.commanded) else {
        return;
    };
    let observed = acked.elapsed();
    let hit = op.misses == 0;
    let dir = direction(op.end_state());
    let own = op
        .node
        .as_ref()
        .and_then(|n| learn::node_estimate(&n.conductor.transitions, dir));
    op.learned = Some(learn::learn(own, observed, hit));
    shared.learn_fleet(dir, observed, hit);
}

/// The target did not show in time: soft verbs fall back to hard ones when
/// configured; everything else fails.
fn timed_out(shared: &Shared, op: &mut OpState) -> Next {
    let waited = humantime::format_duration(wait_limit(shared, op));
    let started = op.wait_started.unwrap_or_else(OffsetDateTime::now_utc);
    let fallback = match op.verb {
        PowerVerb::SoftOff => Some(PowerVerb::Off),
        PowerVerb::SoftReboot => Some(PowerVerb::Reboot),
        _ => None,
    };
    match fallback {
        Some(hard) if shared.config.conductor.soft_off_fallback => {
            let message = format!(
                "{} did not finish within {waited}; falling back to {}",
                op.verb.as_str(),
                hard.as_str()
            );
            op.event("wait_power_state", started, Some(message), &shared.host);
            op.verb = hard;
            op.sent = Sent::No;
            op.deadline = None;
            op.reissues = 0;
            now_step(op, Stage::Command(power_action(hard)))
        }
        _ => {
            let end = op.end_state();
            let message = format!(
                "{} did not reach {end} within {waited} after the BMC accepted the command; \
                 the BMC may be ignoring power commands — check the server, then retry",
                op.verb.as_str()
            );
            fail_wait(shared, op, started, message)
        }
    }
}

/// Ends a wait that ran out: the event, then the operation's failure.
fn fail_wait(shared: &Shared, op: &mut OpState, started: OffsetDateTime, message: String) -> Next {
    op.event(
        "wait_power_state",
        started,
        Some(message.clone()),
        &shared.host,
    );
    now_step(
        op,
        Stage::Finish(Err(Failure::new(FailCode::Timeout, message))),
    )
}

/// The node stayed in a transition away from the target for the whole
/// wait, so no command could go out.
fn stuck_in_transition(
    shared: &Shared,
    op: &mut OpState,
    state: baton_drivers::PowerState,
) -> Next {
    let waited = humantime::format_duration(wait_limit(shared, op));
    let started = op.wait_started.unwrap_or_else(OffsetDateTime::now_utc);
    let message = format!(
        "{} did not reach {} within {waited}: the node stayed {state} (a shutdown or boot \
         that does not finish) and could take no command — check the server, then retry",
        op.verb.as_str(),
        op.end_state()
    );
    fail_wait(shared, op, started, message)
}

/// A failed BMC request: transient ones are retried (from `retry_stage`,
/// after a pause that grows and honours the BMC's `Retry-After`) up to
/// `max_retries`; the rest fail the operation with a message a person can
/// act on.
fn on_error(shared: &Shared, op: &mut OpState, error: &DriverError, retry_stage: Stage) -> Next {
    let max = shared.config.conductor.max_retries;
    if error.is_transient() && op.tries < max {
        op.tries += 1;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << op.tries.min(6))
            .min(MAX_BACKOFF)
            .max(error.retry_after().unwrap_or_default());
        op.stage = retry_stage;
        return Next::At(Instant::now() + backoff);
    }
    let message = if error.is_transient() {
        format!("{error} (gave up after {} tries)", op.tries + 1)
    } else {
        advice(error, op.node.as_ref().map(|n| &n.spec.bmc))
    };
    now_step(
        op,
        Stage::Finish(Err(Failure::new(fail_code(error), message))),
    )
}

/// The sub-job error code of a BMC failure that ends an operation.
fn fail_code(error: &DriverError) -> FailCode {
    match error {
        DriverError::Unreachable { .. }
        | DriverError::Timeout { .. }
        | DriverError::SessionFailed(_) => FailCode::Unreachable,
        DriverError::Auth(_) => FailCode::Auth,
        DriverError::Unsupported(_) => FailCode::Unsupported,
        DriverError::Config(_) => FailCode::Config,
        DriverError::OutcomeUnknown { .. } => FailCode::OutcomeUnknown,
        DriverError::Busy { .. } | DriverError::Bmc { .. } | DriverError::InvalidResponse(_) => {
            FailCode::BmcError
        }
    }
}

/// The error with what to do about it; for refused credentials, where the
/// node's password comes from (`bmc` when known).
fn advice(error: &DriverError, bmc: Option<&baton_state::Bmc>) -> String {
    match error {
        DriverError::Auth(_) => match bmc.map(|b| (&b.password, &b.password_file)) {
            Some((None, Some(file))) => format!(
                "{error}; fix bmc.username with `baton node set` or the password in \
                 bmc.password_file {file}, then reload batond (systemctl reload batond) and retry"
            ),
            Some((None, None)) => format!(
                "{error}; fix bmc.username with `baton node set` or batond's default BMC \
                 password (its systemd credential; restart batond), then retry"
            ),
            _ => format!(
                "{error}; fix bmc.username / bmc.password with `baton node set`, then retry"
            ),
        },
        DriverError::Unsupported(_) => {
            format!("{error}; this BMC cannot do that, choose another action")
        }
        DriverError::Config(_) => format!("{error}; fix the node's bmc settings, then retry"),
        _ => error.to_string(),
    }
}

async fn finish(shared: &Shared, op: &mut OpState, outcome: Result<String, Failure>) -> Next {
    let dir = direction(op.end_state());
    let transitions = match (op.learned, &op.node) {
        (Some(estimate), Some(node)) => Some(learn::with_estimate(
            node.conductor.transitions,
            dir,
            estimate,
        )),
        _ => None,
    };
    let maybe_sent = op.sent != Sent::No;
    let update = NodeUpdate {
        operation: Some(None),
        reservation: Some(None),
        power_state: op.last_read.map(Some),
        last_error: Some(outcome.as_ref().err().map(|f| f.reason.clone())),
        transitions,
        power_state_unsure: Some(outcome.is_err() && maybe_sent && op.last_read.is_none()),
        ..NodeUpdate::default()
    };
    let message = match &outcome {
        Ok(note) => note.clone(),
        Err(failure) => failure.reason.clone(),
    };
    let sub_job_end = op.sub_job.clone().map(|sub_job_id| SubJobEnd {
        sub_job_id,
        begin_time: op.began,
        outcome: outcome.clone(),
    });
    let written = write_if_ours(shared, op, update, Some(message), sub_job_end).await;
    match written {
        Ok(_) | Err(baton_state::UpdateError::Rejected(())) => {
            shared.stats.count_operation(outcome.is_ok());
            match &outcome {
                Ok(note) => {
                    tracing::info!(node = %op.uuid, request_id = %op.request_id, verb = op.verb.as_str(), "{note}");
                }
                Err(failure) => {
                    tracing::warn!(node = %op.uuid, request_id = %op.request_id, verb = op.verb.as_str(), code = failure.code.as_str(), error = %failure.reason, "power operation failed");
                }
            }
            Next::Finished
        }
        Err(baton_state::UpdateError::Store(error)) => {
            tracing::warn!(node = %op.uuid, %error, "cannot record the end of an operation; retrying");
            op.stage = Stage::Finish(outcome);
            Next::At(Instant::now() + STORE_RETRY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_drivers::PowerState as Read;

    #[test]
    fn only_a_transition_towards_the_target_counts_as_moving() {
        assert_eq!(
            miss_kind(Read::PoweringOn, PowerState::On),
            learn::Miss::Moving
        );
        assert_eq!(
            miss_kind(Read::PoweringOff, PowerState::Off),
            learn::Miss::Moving
        );
        assert_eq!(
            miss_kind(Read::PoweringOff, PowerState::On),
            learn::Miss::NotMoving
        );
        assert_eq!(miss_kind(Read::On, PowerState::Off), learn::Miss::NotMoving);
        assert_eq!(miss_kind(Read::Off, PowerState::On), learn::Miss::NotMoving);
    }
}
