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
//! (`learn`) rather than polled blindly. The steps themselves are in
//! [`super::steps`].
//!

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_drivers::{DriverError, PowerDriver};
use baton_state::{
    Node, NodeChange, NodeIdent, NodeUpdate, PowerVerb, Reservation, Store, StoreError,
};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::batch::SubJobGates;
use super::drivers::{bmc_key, Drivers};
use super::learn::{self, Direction};
use super::pool::{Lane, Pool};
use super::power_on::PowerOnLimits;
use super::stats::Stats;
use super::steps::{step, Next, OpState};
use crate::config::Config;

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
    /// Whether each batch sub-job's command went out (see `batch`).
    pub gates: SubJobGates,
    pub power_on: PowerOnLimits,
    /// The power sync's settings, which a reload (SIGHUP) may change.
    pub sync: tokio::sync::watch::Sender<crate::config::SyncConfig>,
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
        let power_on = PowerOnLimits::new(&config.power_on);
        let sync = tokio::sync::watch::Sender::new(config.sync.clone());
        Self {
            store,
            drivers,
            pool,
            config,
            host,
            stats,
            gates: SubJobGates::default(),
            power_on,
            sync,
            fleet: Mutex::default(),
        }
    }

    pub(super) fn fleet(&self, direction: Direction) -> Option<Duration> {
        let fleet = self.fleet.lock().unwrap_or_else(PoisonError::into_inner);
        match direction {
            Direction::On => fleet.on,
            Direction::Off => fleet.off,
        }
    }

    pub(super) fn learn_fleet(&self, direction: Direction, observed: Duration, hit: bool) {
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

    pub(super) fn wait_limit(&self, verb: PowerVerb) -> Duration {
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
        self.bmc_request_in(node, Lane::Interactive, request).await
    }

    /// Runs one request against the node's BMC in `lane`.
    pub async fn bmc_request_in<T, F, Fut>(
        &self,
        node: &Node,
        lane: Lane,
        request: F,
    ) -> Result<T, DriverError>
    where
        F: FnOnce(Arc<dyn PowerDriver>) -> Fut,
        Fut: std::future::Future<Output = Result<T, DriverError>>,
    {
        // Always admitted: `None` cannot come back.
        self.bmc_request_admitted(node, lane, || true, request)
            .await
            .unwrap_or_else(|| Err(DriverError::SessionFailed("request not admitted".into())))
    }

    /// Runs one request in `lane`, if `admit` still says so once the
    /// node's BMC and a worker are free (see [`Pool::run_admitted`]).
    pub async fn bmc_request_admitted<T, F, Fut>(
        &self,
        node: &Node,
        lane: Lane,
        admit: impl FnOnce() -> bool,
        request: F,
    ) -> Option<Result<T, DriverError>>
    where
        F: FnOnce(Arc<dyn PowerDriver>) -> Fut,
        Fut: std::future::Future<Output = Result<T, DriverError>>,
    {
        let driver = match self.drivers.get(node).await {
            Ok(driver) => driver,
            Err(error) => return Some(Err(error)),
        };
        let result = self
            .pool
            .run_admitted(&bmc_key(node), self.gap(node), lane, admit, request(driver))
            .await?;
        self.stats.count_request(node.spec.driver, &result);
        Some(result)
    }

    /// Reads the node's power state for a sweep: in the bulk lane, so a
    /// sweep of thousands of nodes never holds up a single-node request,
    /// and without keeping the BMC's connection open until the next sweep.
    pub async fn read_power(&self, node: &Node) -> Result<baton_drivers::PowerState, DriverError> {
        self.bmc_request_admitted(
            node,
            Lane::Bulk,
            || true,
            |d| async move { d.power_state_then_idle().await },
        )
        .await
        .unwrap_or_else(|| Err(DriverError::SessionFailed("request not admitted".into())))
    }
}

enum Msg {
    Start {
        uuid: Uuid,
        resumed: bool,
    },
    Cancel(Uuid),
    Done(Box<OpState>, Next),
    /// A liveness probe (the systemd watchdog): answered from the loop.
    Alive(tokio::sync::oneshot::Sender<()>),
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
            Msg::Alive(_) => f.write_str("Alive"),
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

    /// True once the scheduler loop has answered a probe; false when it
    /// has stopped. The caller bounds the wait (a hung loop never answers).
    pub async fn alive(&self) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Msg::Alive(tx)).is_ok() && rx.await.is_ok()
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
                    self.shared.gates.forget(uuid);
                }
                None => {}
            },
            Msg::Alive(answer) => {
                let _ = answer.send(());
            }
            Msg::Done(op, next) => {
                let cancelled = matches!(
                    self.ops.get(&op.uuid),
                    Some(Slot::Running { cancelled: true })
                );
                match next {
                    Next::At(at) if !cancelled => self.wait(*op, at),
                    _ => {
                        self.ops.remove(&op.uuid);
                        self.shared.gates.forget(op.uuid);
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
