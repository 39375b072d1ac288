//! The reconcile loop: drives every node that has a `target_power_state`
//! to it, one BMC request at a time, and records how it went.
//!
//! One scheduler task owns every operation in flight and a timer queue of
//! when each one's next step is due. A due step runs as a short task that
//! makes at most one BMC request (through the [`Pool`]: a bounded number in
//! flight, one per BMC) or one database write, then hands the operation
//! back with the time of its next step. Between steps an operation is just
//! an entry in the queue: a node waiting for its power to settle holds no
//! worker and no task, and its next read is timed from what it learned
//! (`learn`) rather than polled blindly.
//!
//! The steps of an operation:
//! 1. **load** the node; skip it if the target was cleared meanwhile;
//! 2. **verify** (read the state) when the database cannot say a command is
//!    needed: after a restart, after a failed or unconfirmed command, or
//!    when the recorded state already is the target ("already power off",
//!    no command sent);
//! 3. **set boot device** first, for rescue and unrescue;
//! 4. **mark sent** — for a command that must not run twice (reboot,
//!    power cycle), the database records that it may be on its way before
//!    it is sent, so a restart re-reads instead of resending;
//! 5. **command** the BMC; a transient failure goes back to *verify* after
//!    a pause (a retransmitted IPMI command may have run), an unconfirmed
//!    outcome (`OutcomeUnknown`) is never resent blindly;
//! 6. **confirm**: read until the target state shows or the timeout passes
//!    (soft verbs then fall back to hard ones when configured);
//! 7. **finish**: one write clears the target and the lease, stores the
//!    state read, the learned transition time, the events and the message
//!    — batched with other nodes' writes by the store's group commit.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_drivers::{DriverError, PowerAction, PowerDriver};
use baton_state::{
    ActionEvent, EventResult, Node, NodeChange, NodeIdent, NodeUpdate, OpPhase, Operation,
    PowerState, PowerVerb, Reservation, Store, StoreError,
};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::drivers::{bmc_key, Drivers};
use super::learn::{self, Direction};
use super::pool::Pool;
use super::stats::Stats;
use crate::config::Config;

/// Pause before retrying a database write that failed.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// First pause after a transient BMC failure; doubles each try.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What every step needs.
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    pub drivers: Arc<Drivers>,
    pub pool: Arc<Pool>,
    pub config: Arc<Config>,
    /// This conductor's name in leases and events.
    pub host: String,
    pub stats: Arc<Stats>,
    fleet: Mutex<FleetEstimates>,
}

/// Transition estimates of the whole fleet, for nodes without their own.
#[derive(Debug, Default)]
struct FleetEstimates {
    on: Option<Duration>,
    off: Option<Duration>,
}

impl Shared {
    pub fn new(
        store: Store,
        drivers: Arc<Drivers>,
        pool: Arc<Pool>,
        config: Arc<Config>,
        host: String,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            store,
            drivers,
            pool,
            config,
            host,
            stats,
            fleet: Mutex::default(),
        }
    }

    fn fleet(&self, direction: Direction) -> Option<Duration> {
        let fleet = self.fleet.lock().unwrap_or_else(PoisonError::into_inner);
        match direction {
            Direction::On => fleet.on,
            Direction::Off => fleet.off,
        }
    }

    fn learn_fleet(&self, direction: Direction, observed: Duration, hit: bool) {
        let mut fleet = self.fleet.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match direction {
            Direction::On => &mut fleet.on,
            Direction::Off => &mut fleet.off,
        };
        *slot = Some(learn::learn(*slot, observed, hit));
    }

    /// The lease written with a target: long enough for the whole
    /// operation with every retry, so it only lapses when its holder is gone.
    pub fn lease(&self, verb: PowerVerb, timeout: Option<Duration>) -> Reservation {
        let conductor = &self.config.conductor;
        let wait = timeout.unwrap_or_else(|| self.wait_limit(verb));
        let retries = conductor.bmc_timeout * (conductor.max_retries + 4);
        let span = wait + conductor.power_state_change_timeout + retries;
        Reservation {
            holder: self.host.clone(),
            expires_at: OffsetDateTime::now_utc()
                + time::Duration::try_from(span).unwrap_or(time::Duration::DAY),
        }
    }

    fn wait_limit(&self, verb: PowerVerb) -> Duration {
        match verb {
            PowerVerb::SoftOff | PowerVerb::SoftReboot => {
                self.config.conductor.soft_power_off_timeout
            }
            _ => self.config.conductor.power_state_change_timeout,
        }
    }

    fn gap(&self, node: &Node) -> Duration {
        let gaps = &self.config.conductor.min_command_interval;
        match node.spec.driver {
            baton_state::Driver::Redfish => gaps.redfish,
            baton_state::Driver::Ipmi => gaps.ipmi,
        }
    }

    /// Runs one request against the node's BMC, under the pool's rules, and
    /// counts it.
    pub async fn bmc_request<T, F, Fut>(&self, node: &Node, request: F) -> Result<T, DriverError>
    where
        F: FnOnce(Arc<dyn PowerDriver>) -> Fut,
        Fut: std::future::Future<Output = Result<T, DriverError>>,
    {
        let driver = self.drivers.get(node).await.map_err(classify)?;
        let result = self
            .pool
            .run(&bmc_key(node), self.gap(node), request(driver))
            .await
            .map_err(classify);
        self.stats.count_request(node.spec.driver, &result);
        result
    }

    /// Reads the node's power state.
    pub async fn read_power(&self, node: &Node) -> Result<baton_drivers::PowerState, DriverError> {
        self.bmc_request(node, |d| async move { d.power_state().await })
            .await
    }
}

/// The drivers leave one decision to their caller: a TLS certificate that
/// fails verification surfaces as an unreachable BMC, which would be
/// retried — but retrying cannot make it trusted.
fn classify(error: DriverError) -> DriverError {
    match error {
        DriverError::Unreachable { ref reason, .. } if reason.contains("certificate") => {
            DriverError::Config(format!(
                "certificate not trusted ({reason}); set bmc.ca_file or bmc.verify_tls = false"
            ))
        }
        other => other,
    }
}

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
    MarkSent,
    Command(PowerAction),
    Confirm,
    /// The final write, retried until the database takes it.
    Finish(Result<String, String>),
}

/// One operation between its steps.
#[derive(Debug)]
struct OpState {
    uuid: Uuid,
    resumed: bool,
    due: Instant,
    stage: Stage,
    node: Option<Node>,
    request_id: String,
    verb: PowerVerb,
    sent: Sent,
    commanded: bool,
    tries: u32,
    misses: u32,
    estimate: Duration,
    acked_at: Option<Instant>,
    deadline: Option<Instant>,
    last_read: Option<PowerState>,
    learned: Option<Duration>,
    wait_started: Option<OffsetDateTime>,
    events: Vec<ActionEvent>,
}

enum Next {
    At(Instant),
    Finished,
}

enum Msg {
    Start { uuid: Uuid, resumed: bool },
    Cancel(Uuid),
    Done(Box<OpState>, Next),
}

/// Handle to the scheduler task.
#[derive(Debug, Clone)]
pub struct Reconciler {
    tx: mpsc::UnboundedSender<Msg>,
    shared: Arc<Shared>,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Start { uuid, .. } => write!(f, "Start({uuid})"),
            Msg::Cancel(uuid) => write!(f, "Cancel({uuid})"),
            Msg::Done(op, _) => write!(f, "Done({})", op.uuid),
        }
    }
}

impl Reconciler {
    /// Starts the scheduler; it runs until `stop`, then lets the steps in
    /// flight finish (the returned handle ends when they have).
    pub fn start(shared: Arc<Shared>, stop: CancellationToken) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let scheduler = Scheduler {
            shared: Arc::clone(&shared),
            tx: tx.clone(),
            ops: HashMap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            tracker: TaskTracker::new(),
            in_flight: Arc::clone(&in_flight),
        };
        let handle = tokio::spawn(scheduler.run(rx, stop));
        (
            Self {
                tx,
                shared,
                in_flight,
            },
            handle,
        )
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts driving a node whose target was just committed.
    pub fn submit(&self, uuid: Uuid) {
        let _ = self.tx.send(Msg::Start {
            uuid,
            resumed: false,
        });
    }

    /// Forgets a node's operation (its target was cleared by an admin).
    pub fn cancel(&self, uuid: Uuid) {
        let _ = self.tx.send(Msg::Cancel(uuid));
    }

    /// Operations being driven now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// At start-up: takes over every pending target whose lease is this
    /// conductor's, has lapsed, or was never written, and resumes it —
    /// reading the node first, since a command may have been sent before
    /// the restart. Returns how many were resumed.
    pub async fn resume(&self) -> Result<usize, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut resumed = 0;
        for node in self.shared.store.pending_operations().await? {
            let held_elsewhere = node
                .live_reservation(now)
                .is_some_and(|holder| holder != self.shared.host);
            let Some(operation) = node.conductor.operation.clone() else {
                continue;
            };
            if held_elsewhere {
                continue;
            }
            let lease = self.shared.lease(operation.verb, operation.timeout);
            let taken = self
                .shared
                .store
                .change_node(NodeIdent::Uuid(node.uuid), move |_| {
                    Ok::<_, ()>(NodeChange::from(NodeUpdate {
                        reservation: Some(Some(lease)),
                        ..NodeUpdate::default()
                    }))
                })
                .await;
            if taken.is_ok() {
                let _ = self.tx.send(Msg::Start {
                    uuid: node.uuid,
                    resumed: true,
                });
                resumed += 1;
            }
        }
        Ok(resumed)
    }
}

/// Owns the operations and their timers.
struct Scheduler {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    ops: HashMap<Uuid, Slot>,
    timers: BinaryHeap<Reverse<(Instant, u64, Uuid)>>,
    seq: u64,
    tracker: TaskTracker,
    in_flight: Arc<AtomicUsize>,
}

enum Slot {
    Waiting(Box<OpState>),
    /// A step is running; `cancelled` when an admin cleared the target
    /// meanwhile.
    Running {
        cancelled: bool,
    },
}

impl Scheduler {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, stop: CancellationToken) {
        loop {
            let next_due = self.timers.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                () = sleep_until_opt(next_due) => self.run_due(),
            }
            self.in_flight.store(self.ops.len(), Ordering::Relaxed);
        }
        // Steps in flight finish (each is one bounded BMC request or write);
        // what they hand back is left for the next start, from the database.
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Start { uuid, resumed } => {
                if self.ops.contains_key(&uuid) {
                    return;
                }
                let op = OpState::new(uuid, resumed);
                self.wait(op, Instant::now());
            }
            Msg::Cancel(uuid) => match self.ops.get_mut(&uuid) {
                Some(Slot::Running { cancelled }) => *cancelled = true,
                Some(Slot::Waiting(_)) => {
                    self.ops.remove(&uuid);
                }
                None => {}
            },
            Msg::Done(op, next) => {
                let cancelled = matches!(
                    self.ops.get(&op.uuid),
                    Some(Slot::Running { cancelled: true })
                );
                match next {
                    Next::At(at) if !cancelled => self.wait(*op, at),
                    _ => {
                        self.ops.remove(&op.uuid);
                    }
                }
            }
        }
    }

    fn wait(&mut self, mut op: OpState, at: Instant) {
        op.due = at;
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, op.uuid)));
        self.ops.insert(op.uuid, Slot::Waiting(Box::new(op)));
    }

    fn run_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _, uuid))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            // A timer whose operation moved on (or was cancelled) is stale.
            let due = matches!(self.ops.get(&uuid), Some(Slot::Waiting(op)) if op.due == at);
            if !due {
                continue;
            }
            let Some(Slot::Waiting(mut op)) =
                self.ops.insert(uuid, Slot::Running { cancelled: false })
            else {
                continue;
            };
            let shared = Arc::clone(&self.shared);
            let tx = self.tx.clone();
            self.tracker.spawn(async move {
                let next = step(&shared, &mut op).await;
                let _ = tx.send(Msg::Done(op, next));
            });
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl OpState {
    fn new(uuid: Uuid, resumed: bool) -> Self {
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
            estimate: learn::DEFAULT_ESTIMATE,
            acked_at: None,
            deadline: None,
            last_read: None,
            learned: None,
            wait_started: None,
            events: Vec::new(),
        }
    }

    fn end_state(&self) -> PowerState {
        self.verb.end_state()
    }

    fn event(&mut self, name: &str, started: OffsetDateTime, error: Option<String>, host: &str) {
        self.events.push(ActionEvent {
            event: name.to_owned(),
            start_time: started,
            finish_time: Some(OffsetDateTime::now_utc()),
            result: Some(if error.is_some() {
                EventResult::Error
            } else {
                EventResult::Success
            }),
            traceback: error,
            host: Some(host.to_owned()),
        });
    }
}

/// Runs the operation's due step and says when the next one is due.
async fn step(shared: &Shared, op: &mut OpState) -> Next {
    let stage = op.stage.clone();
    match stage {
        Stage::Load => load(shared, op).await,
        Stage::Verify => verify(shared, op).await,
        Stage::SetBoot => set_boot(shared, op).await,
        Stage::MarkSent => mark_sent(shared, op).await,
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
        Stage::MarkSent
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
    match shared.read_power(&node).await {
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
        // look again shortly (a command now would race the BMC).
        if stored_state(state) == end {
            ensure_deadline(shared, op);
            op.stage = Stage::Confirm;
        }
        return Next::At(Instant::now() + learn::after_miss(op.estimate, 1));
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
        return now_step(op, Stage::MarkSent);
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
    match shared
        .bmc_request(
            &node,
            |d| async move { d.set_boot_device(device, false).await },
        )
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

async fn mark_sent(shared: &Shared, op: &mut OpState) -> Next {
    let request_id = op.request_id.clone();
    let events = op.events.clone();
    let written = shared
        .store
        .change_node(NodeIdent::Uuid(op.uuid), move |node| {
            if !same_operation(node, &request_id) {
                return Err(());
            }
            Ok(NodeChange {
                update: NodeUpdate {
                    phase: Some(OpPhase::Sent),
                    ..NodeUpdate::default()
                },
                events: events
                    .into_iter()
                    .map(|e| (request_id.clone(), e))
                    .collect(),
                ..NodeChange::default()
            })
        })
        .await;
    match written {
        Ok(_) => {
            op.events.clear();
            now_step(op, Stage::Command(power_action(op.verb)))
        }
        Err(baton_state::UpdateError::Rejected(())) => Next::Finished,
        Err(baton_state::UpdateError::Store(error)) => {
            tracing::warn!(node = %op.uuid, %error, "cannot record a command about to be sent; retrying");
            Next::At(Instant::now() + STORE_RETRY)
        }
    }
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

async fn command(shared: &Shared, op: &mut OpState, action: PowerAction) -> Next {
    let node = node_or_reload!(op);
    let started = OffsetDateTime::now_utc();
    let result = shared
        .bmc_request(&node, |d| async move { d.set_power(action).await })
        .await;
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
                return now_step(op, Stage::Finish(Err(format!("{error}"))));
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

fn start_waiting(shared: &Shared, op: &mut OpState) {
    op.acked_at = Some(Instant::now());
    op.misses = 0;
    op.deadline = None;
    ensure_deadline(shared, op);
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
    match shared.read_power(&node).await {
        Ok(state) if !state.is_transitional() && stored_state(state) == op.end_state() => {
            op.last_read = Some(stored_state(state));
            learn_from(shared, op);
            let started = op.wait_started.unwrap_or_else(OffsetDateTime::now_utc);
            op.event("wait_power_state", started, None, &shared.host);
            let end = op.end_state();
            now_step(op, Stage::Finish(Ok(format!("reached {end}"))))
        }
        Ok(state) => {
            op.tries = 0;
            if !state.is_transitional() {
                op.last_read = Some(stored_state(state));
            }
            if op.deadline.is_some_and(|d| Instant::now() >= d) {
                return timed_out(shared, op);
            }
            op.misses += 1;
            Next::At(Instant::now() + learn::after_miss(op.estimate, op.misses))
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
            now_step(op, Stage::Command(power_action(hard)))
        }
        _ => {
            let end = op.end_state();
            let message = format!(
                "{} did not reach {end} within {waited} after the BMC accepted the command; \
                 the BMC may be ignoring power commands — check the server, then retry",
                op.verb.as_str()
            );
            op.event(
                "wait_power_state",
                started,
                Some(message.clone()),
                &shared.host,
            );
            now_step(op, Stage::Finish(Err(message)))
        }
    }
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
        advice(error)
    };
    now_step(op, Stage::Finish(Err(message)))
}

/// The error with what to do about it.
fn advice(error: &DriverError) -> String {
    match error {
        DriverError::Auth(_) => {
            format!("{error}; fix bmc.username / bmc.password with `baton node set`, then retry")
        }
        DriverError::Unsupported(_) => {
            format!("{error}; this BMC cannot do that, choose another action")
        }
        DriverError::Config(_) => format!("{error}; fix the node's bmc settings, then retry"),
        _ => error.to_string(),
    }
}

async fn finish(shared: &Shared, op: &mut OpState, outcome: Result<String, String>) -> Next {
    let request_id = op.request_id.clone();
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
        last_error: Some(outcome.as_ref().err().cloned()),
        transitions,
        power_state_unsure: Some(outcome.is_err() && maybe_sent && op.last_read.is_none()),
        ..NodeUpdate::default()
    };
    let message = match &outcome {
        Ok(note) => note.clone(),
        Err(error) => error.clone(),
    };
    let events = op.events.clone();
    let written = shared
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
                action_message: Some((request_id, message)),
                ..NodeChange::default()
            })
        })
        .await;
    match written {
        Ok(_) | Err(baton_state::UpdateError::Rejected(())) => {
            shared.stats.count_operation(outcome.is_ok());
            match &outcome {
                Ok(note) => {
                    tracing::info!(node = %op.uuid, request_id = %op.request_id, verb = op.verb.as_str(), "{note}");
                }
                Err(error) => {
                    tracing::warn!(node = %op.uuid, request_id = %op.request_id, verb = op.verb.as_str(), %error, "power operation failed");
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
