//! The protocol-neutral model of one simulated server and its BMC: power state
//! machine, boot override, faults, behaviour quirks and counters.
//!
//! Every protocol front end (Redfish over HTTP, IPMI over RMCP+) serves a
//! request against a shared [`Node`] in the same steps:
//!
//! 1. `let guard = node.begin_request();` as soon as the request arrives —
//!    counts it and marks it in flight (for `max_concurrent`) until dropped.
//! 2. `match guard.admit().await` — first the faults that act on arrival:
//!    [`Admission::Unreachable`] (`bmc_reboot`, `link_flap_on_power`: reset
//!    the connection / drop the datagram) and [`Admission::TooSoon`]
//!    (`min_interval`: HTTP 503 / drop); then pays the configured latency
//!    plus the `slow` fault and applies the request-level faults:
//!    [`Admission::NoAnswer`] (hold the request and never reply),
//!    [`Admission::InternalError`] (HTTP 500 / IPMI 0xFF),
//!    [`Admission::Busy`] (HTTP 503 + `Retry-After` / IPMI 0xC0), or
//!    [`Admission::Serve`]. Front ends also drop the sessions made before
//!    the node's [`Node::session_epoch`] moved (`drop_sessions`, `bmc_reboot`).
//! 3. Authenticate with [`Node::check_credentials`] (HTTP) or derive session
//!    keys from [`Node::password_for`] (RMCP+ RAKP); both honour the
//!    `wrong_credentials` fault. IPMI also asks [`Node::drop_packet`] per
//!    datagram for the `packet_loss` fault.
//! 4. Read with [`Node::reported_power_state`] (the power as this BMC's
//!    `power_state_style` quirk reports it; [`Node::power_state`] is the
//!    truth), [`Node::boot_override`]; act with
//!    [`Node::power_command`] (counts the command, applies `stuck`) and
//!    [`Node::set_boot_override`]. IPMI uses [`Node::chassis_control`] and
//!    [`Node::set_boot_flags`] instead, which also run the boot flags'
//!    valid-bit timer (a Chassis Control command stops it; when it runs out
//!    the flags lose their valid bit unless parameter 3 says to keep it).
//! 5. Drop the guard after the reply is sent.
//!
//! Nothing here knows HTTP or RMCP; the control API and tests use the same
//! methods (plus [`Node::set_power_out_of_band`], which is not a command).

mod boot;
mod counters;
mod faults;
mod power;
mod quirks;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

pub use boot::{BootEnabled, BootMode, BootOverride, BootTarget, ValidBitClearing};
pub use counters::{CounterSnapshot, Counters};
pub use faults::{
    check_fraction, pick_fraction, FaultError, FaultSetting, Faults, Garbage, FAULT_NAMES,
    MAX_DURATION,
};
pub use power::{CommandOutcome, Delays, NotInPresentState, PowerAction, PowerState};
pub use quirks::{
    AlreadyInStateReply, BootPatchQuirk, EtagQuirk, MidTransition, PowerStateStyle, Quirks,
    ResetReply, SessionLimitReply,
};

use power::Phase;

/// How long boot flags set over IPMI stay valid without a Chassis Control
/// command (IPMI v2.0 section 28.12: sixty seconds).
pub const BOOT_FLAG_VALID_TIMEOUT: Duration = Duration::from_secs(60);

/// Power changes a node remembers for the `stale` power state style.
const HISTORY: usize = 16;

/// How long a `busy` BMC tells clients to wait (`Retry-After`).
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The account a BMC accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"******")
            .finish()
    }
}

/// Settings every node of a rack shares.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// Latency every request pays before it is served.
    pub latency: Duration,
    /// Power transition times.
    pub delays: Delays,
    /// How long a power cycle holds the power off (IPMI: at least 1 s).
    pub power_cycle_off: Duration,
    /// The account the BMC accepts.
    pub credentials: Credentials,
    /// How long boot flags set over IPMI stay valid without a Chassis
    /// Control command ([`BOOT_FLAG_VALID_TIMEOUT`] unless shortened for tests).
    pub boot_flag_valid_timeout: Duration,
}

/// Where a node's BMC listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Address all endpoints are bound to.
    pub address: IpAddr,
    /// Redfish TCP port.
    pub redfish_port: u16,
    /// IPMI UDP port, when the rack serves IPMI.
    pub ipmi_port: Option<u16>,
}

/// Identity of a node within its rack.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// Position in the rack, from 0.
    pub index: usize,
    /// Unique name (`node-0000`).
    pub name: String,
    /// Power domain (PDU) label.
    pub power_domain: String,
    /// System UUID (also the Redfish service UUID).
    pub uuid: Uuid,
}

/// Mutable state of a node, behind one short-held lock.
#[derive(Debug)]
struct NodeInner {
    phase: Phase,
    boot: BootOverride,
    last_boot: BootTarget,
    /// Boot options parameter 3.
    valid_bit_clearing: ValidBitClearing,
    /// When the boot flags set over IPMI lose their valid bit, unless a
    /// Chassis Control command comes first.
    boot_flags_expire: Option<Instant>,
    faults: Faults,
    quirks: Quirks,
    /// Bumped by `drop_sessions` and `bmc_reboot`: front ends drop every
    /// session made before the bump.
    session_epoch: u64,
    /// The BMC answers nothing (UDP dropped, TCP reset) until then
    /// (`bmc_reboot`, `link_flap_on_power`).
    unreachable_until: Option<Instant>,
    /// When the last request was let through (`min_interval`).
    last_served: Option<Instant>,
    /// The latest power state changes, oldest first, as (when, the state
    /// that held until then): what a `stale` BMC still reports.
    history: VecDeque<(Instant, PowerState)>,
    /// The power commands this BMC carried out, oldest first (at most
    /// [`COMMAND_LOG_LEN`]): when each started, for tests of pacing.
    command_log: VecDeque<(Instant, PowerAction)>,
    /// The power command received last (applied or not), for the request
    /// log to name.
    last_command: Option<PowerAction>,
    /// The requests this BMC served, oldest first (at most
    /// [`REQUEST_LOG_LEN`]), for tests of pacing.
    request_log: VecDeque<RequestSpan>,
}

/// Most entries a node's command log keeps.
pub const COMMAND_LOG_LEN: usize = 64;

/// Most entries a node's request log keeps.
pub const REQUEST_LOG_LEN: usize = 256;

/// One request as the BMC saw it: from its arrival (before the latency is
/// paid) until its answer left — so the time between one request's `ended`
/// and the next one's `arrived` is at least the pause the client made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSpan {
    /// When it arrived.
    pub arrived: Instant,
    /// When its answer left, or it was dropped or given up.
    pub ended: Instant,
    /// The power command it carried, whatever became of it (refused,
    /// ignored by `stuck`, applied).
    pub command: Option<PowerAction>,
}

/// One simulated server with its BMC. Shared (`Arc`) by every front end.
#[derive(Debug)]
pub struct Node {
    identity: NodeIdentity,
    endpoints: Endpoints,
    settings: Arc<NodeSettings>,
    inner: Mutex<NodeInner>,
    counters: Counters,
}

/// The outcome of [`RequestGuard::admit`]: serve the request, or what fault to play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Serve normally.
    Serve,
    /// `no_answer`: keep the request open and never reply.
    NoAnswer,
    /// `http_500`: answer an internal error.
    InternalError,
    /// `busy`: answer "busy, retry after" [`BUSY_RETRY_AFTER`].
    Busy,
    /// `bmc_reboot`, `link_flap_on_power`: the BMC is unreachable — drop the
    /// datagram, reset the connection.
    Unreachable,
    /// `min_interval`: too soon after the last request served — Redfish
    /// answers busy, IPMI drops the datagram.
    TooSoon,
}

/// Marks one request in flight on a node; see the module docs.
#[derive(Debug)]
pub struct RequestGuard {
    node: Arc<Node>,
    arrived: Instant,
    /// The node's power command count at arrival: a request that raised it
    /// carried a command (one request at a time is what tests check).
    commands_before: u64,
}

impl RequestGuard {
    /// Pays the latency (configured + `slow`), then decides from the node's
    /// faults whether to serve.
    pub async fn admit(&self) -> Admission {
        let (slow, admission) = {
            let mut inner = self.node.lock();
            match arrival_admission(&mut inner, Instant::now()) {
                Some(refused) => return refused,
                None => (inner.faults.slow, request_admission(&inner.faults)),
            }
        };
        // Saturating: a library caller may hand in durations the control
        // API would refuse; a request must not panic on them.
        let wait = self
            .node
            .settings
            .latency
            .saturating_add(slow.unwrap_or_default());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        admission
    }

    /// The node this request is for.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.node.counters.leave();
        let carried = self.node.counters.power_command_count() != self.commands_before;
        let mut inner = self.node.lock();
        let span = RequestSpan {
            arrived: self.arrived,
            ended: Instant::now(),
            command: if carried { inner.last_command } else { None },
        };
        if inner.request_log.len() == REQUEST_LOG_LEN {
            inner.request_log.pop_front();
        }
        inner.request_log.push_back(span);
    }
}

/// The faults that act on a request's arrival, before any latency: an
/// unreachable BMC, or one asked again too soon. A request let through
/// starts the `min_interval` anew.
fn arrival_admission(inner: &mut NodeInner, now: Instant) -> Option<Admission> {
    if inner.unreachable_until.is_some_and(|until| now < until) {
        return Some(Admission::Unreachable);
    }
    let too_soon = match (inner.faults.min_interval, inner.last_served) {
        (Some(min), Some(last)) => now.duration_since(last) < min,
        _ => false,
    };
    if too_soon {
        return Some(Admission::TooSoon);
    }
    inner.last_served = Some(now);
    None
}

fn request_admission(faults: &Faults) -> Admission {
    if faults.no_answer {
        Admission::NoAnswer
    } else if faults.http_500 {
        Admission::InternalError
    } else if faults.busy {
        Admission::Busy
    } else {
        Admission::Serve
    }
}

/// A snapshot of one node, as the control API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// Position in the rack.
    pub index: usize,
    /// Power domain label.
    pub power_domain: String,
    /// Power state (control API words): the truth.
    pub power_state: PowerState,
    /// The power state as the BMC reports it (its `power_state_style`).
    pub reported_power_state: PowerState,
    /// Redfish TCP port.
    pub redfish_port: u16,
    /// IPMI UDP port, if served.
    pub ipmi_port: Option<u16>,
    /// Boot source override.
    pub boot_override: BootOverride,
    /// Device the last boot used (`None` = normal boot order).
    pub last_boot: BootTarget,
    /// IPMI boot options parameter 3 (valid-bit clearing), as its data byte.
    pub boot_flag_valid_bit_clearing: ValidBitClearing,
    /// Active faults (healthy = `{}`).
    pub faults: Faults,
    /// Behaviour choices.
    pub quirks: Quirks,
    /// Counters.
    pub counters: CounterSnapshot,
}

impl Node {
    /// Creates a node in the given initial power state (`true` = on).
    pub fn new(
        identity: NodeIdentity,
        endpoints: Endpoints,
        settings: Arc<NodeSettings>,
        powered_on: bool,
        quirks: Quirks,
    ) -> Node {
        Node {
            identity,
            endpoints,
            settings,
            inner: Mutex::new(NodeInner {
                phase: if powered_on { Phase::On } else { Phase::Off },
                boot: BootOverride::default(),
                last_boot: BootTarget::None,
                valid_bit_clearing: ValidBitClearing::default(),
                boot_flags_expire: None,
                faults: Faults::default(),
                quirks,
                history: VecDeque::new(),
                session_epoch: 0,
                unreachable_until: None,
                last_served: None,
                command_log: VecDeque::new(),
                last_command: None,
                request_log: VecDeque::new(),
            }),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NodeInner> {
        // The inner state is always left consistent; a panic elsewhere while
        // holding the lock must not take the node down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks and settles the power machine and the boot flags' valid-bit
    /// timer up to now, in the order things happened: a boot that started
    /// before the timer ran out still used the flags.
    fn settled(&self) -> MutexGuard<'_, NodeInner> {
        let mut inner = self.lock();
        let now = Instant::now();
        if let Some(expire) = inner.boot_flags_expire.filter(|&t| t <= now) {
            self.settle_phase(&mut inner, expire);
            self.expire_boot_flags(&mut inner);
        }
        self.settle_phase(&mut inner, now);
        inner
    }

    /// Settles one change at a time, so that each is remembered with the
    /// instant it happened.
    fn settle_phase(&self, inner: &mut NodeInner, until: Instant) {
        let hung = inner.faults.hung_os;
        while let Some(at) = inner.phase.next_change(hung).filter(|&at| at <= until) {
            let before = inner.phase;
            let seen = inner.phase.settle(at, &self.settings.delays, hung);
            self.record(inner, seen);
            if inner.phase == before {
                break;
            }
            note_change(inner, at, before.state());
        }
    }

    /// The valid-bit timer ran out: clear the valid bit, unless parameter 3
    /// (as it reads now, when the BMC checks it) says to keep it.
    fn expire_boot_flags(&self, inner: &mut NodeInner) {
        inner.boot_flags_expire = None;
        let keep = inner
            .valid_bit_clearing
            .keeps_valid_on(ValidBitClearing::TIMEOUT);
        if !keep && inner.boot.enabled != BootEnabled::Disabled {
            inner.boot.enabled = BootEnabled::Disabled;
            inner.boot.target = BootTarget::None;
            self.counters.boot_flags_expired();
        }
    }

    fn record(&self, inner: &mut NodeInner, seen: power::Settled) {
        for _ in 0..seen.boots_started {
            inner.last_boot = inner.boot.consume_for_boot();
        }
        self.counters.add_boots(seen.boots_started);
        self.counters.add_power_offs(seen.offs_reached);
    }

    /// Position in the rack.
    pub fn index(&self) -> usize {
        self.identity.index
    }

    /// Unique name.
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// Power domain label.
    pub fn power_domain(&self) -> &str {
        &self.identity.power_domain
    }

    /// System UUID.
    pub fn uuid(&self) -> Uuid {
        self.identity.uuid
    }

    /// Where the BMC listens.
    pub fn endpoints(&self) -> Endpoints {
        self.endpoints
    }

    /// The Redfish socket address.
    pub fn redfish_addr(&self) -> SocketAddr {
        SocketAddr::new(self.endpoints.address, self.endpoints.redfish_port)
    }

    /// The IPMI socket address, when the rack serves IPMI.
    pub fn ipmi_addr(&self) -> Option<SocketAddr> {
        self.endpoints
            .ipmi_port
            .map(|p| SocketAddr::new(self.endpoints.address, p))
    }

    /// The account this BMC is configured with (the real one, whatever the faults).
    pub fn credentials(&self) -> &Credentials {
        &self.settings.credentials
    }

    /// Step 1 of every request: count it and mark it in flight until the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.counters.enter();
        RequestGuard {
            node: Arc::clone(self),
            arrived: Instant::now(),
            commands_before: self.counters.power_command_count(),
        }
    }

    /// Whether `username`/`password` are accepted now (the `wrong_credentials`
    /// fault refuses the configured password).
    pub fn check_credentials(&self, username: &str, password: &str) -> bool {
        self.password_for(username)
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), password.as_bytes()))
    }

    /// The password the BMC holds now for `username` (for RMCP+ key
    /// derivation), or `None` for an unknown user. Under `wrong_credentials`
    /// it differs from the configured one.
    pub fn password_for(&self, username: &str) -> Option<String> {
        let creds = &self.settings.credentials;
        if username != creds.username {
            return None;
        }
        if self.lock().faults.wrong_credentials {
            // Changed at the front: IPMI keys use only the first 20 bytes,
            // so a suffix would go unnoticed for a 20-byte password.
            Some(format!("rotated-{}", creds.password))
        } else {
            Some(creds.password.clone())
        }
    }

    /// For the `packet_loss` fault: whether to drop this datagram.
    pub fn drop_packet(&self) -> bool {
        let loss = self.lock().faults.packet_loss;
        loss > 0.0 && rand::rng().random_bool(loss.min(1.0))
    }

    /// The current power state (the truth, whatever the BMC reports).
    pub fn power_state(&self) -> PowerState {
        self.settled().phase.state()
    }

    /// The power state as this BMC reports it, per its
    /// [`PowerStateStyle`] quirk.
    pub fn reported_power_state(&self) -> PowerState {
        reported_state(&self.settled(), Instant::now())
    }

    /// Executes a power command: counts it, honours `stuck`, and starts the
    /// transition the present state allows.
    pub fn power_command(&self, action: PowerAction) -> Result<CommandOutcome, NotInPresentState> {
        self.command(action, false)
    }

    /// An IPMI Chassis Control command: stops the boot flags' valid-bit
    /// timer (whatever the outcome: the command arrived), then runs
    /// `action` as [`Node::power_command`] does.
    pub fn chassis_control(
        &self,
        action: PowerAction,
    ) -> Result<CommandOutcome, NotInPresentState> {
        self.command(action, true)
    }

    fn command(
        &self,
        action: PowerAction,
        chassis_control: bool,
    ) -> Result<CommandOutcome, NotInPresentState> {
        self.counters.power_command();
        let mut inner = self.settled();
        inner.last_command = Some(action);
        if chassis_control {
            inner.boot_flags_expire = None;
        }
        if inner.faults.stuck {
            return Ok(CommandOutcome::Ignored);
        }
        let settings = &self.settings;
        let now = Instant::now();
        let next = power::transition(
            inner.phase,
            action,
            now,
            &settings.delays,
            settings.power_cycle_off,
        );
        let mut next = match next {
            Ok(Some(next)) => next,
            Ok(None) => return Ok(CommandOutcome::AlreadyInState),
            Err(refused) => {
                let transitional = !matches!(inner.phase, Phase::On | Phase::Off);
                if transitional && inner.quirks.mid_transition == MidTransition::Ignore {
                    return Ok(CommandOutcome::Ignored);
                }
                return Err(refused);
            }
        };
        if let Phase::PoweringOff {
            graceful: true,
            gives_up,
            ..
        } = &mut next
        {
            *gives_up = inner.quirks.shutdown_timeout.map(|t| now + t);
        }
        if action == PowerAction::Nmi {
            self.counters.crash_dump();
        }
        let seen = power::immediate_effects(inner.phase, action, next);
        self.record(&mut inner, seen);
        if inner.command_log.len() == COMMAND_LOG_LEN {
            inner.command_log.pop_front();
        }
        inner.command_log.push_back((now, action));
        let before = inner.phase.state();
        inner.phase = next;
        note_change(&mut inner, now, before);
        flap_link(&mut inner, now);
        Ok(CommandOutcome::Applied)
    }

    /// Changes the power out of band, at once (a person at the rack, a PDU):
    /// not a BMC command and not counted as one.
    pub fn set_power_out_of_band(&self, on: bool) {
        let mut inner = self.settled();
        let before = inner.phase.state();
        let was_powered = before.is_powered();
        inner.phase = if on { Phase::On } else { Phase::Off };
        note_change(&mut inner, Instant::now(), before);
        flap_link(&mut inner, Instant::now());
        let seen = power::Settled {
            boots_started: u32::from(on && !was_powered),
            offs_reached: u32::from(!on && was_powered),
        };
        self.record(&mut inner, seen);
    }

    /// The `flapping` fault's random out-of-band change: with probability one
    /// half, toggles power. Returns whether it did.
    pub fn flap(&self, rng: &mut impl Rng) -> bool {
        let (flapping, state) = {
            let inner = self.settled();
            (inner.faults.flapping, inner.phase.state())
        };
        if !flapping || !rng.random_bool(0.5) {
            return false;
        }
        self.set_power_out_of_band(!state.is_powered());
        true
    }

    /// The boot source override.
    pub fn boot_override(&self) -> BootOverride {
        self.settled().boot
    }

    /// Replaces the boot source override (Redfish, control API): no
    /// valid-bit timer runs for it.
    pub fn set_boot_override(&self, boot: BootOverride) {
        let mut inner = self.settled();
        inner.boot = boot;
        inner.boot_flags_expire = None;
    }

    /// Replaces the boot flags from IPMI parameter 5: flags set valid start
    /// the valid-bit timer ([`NodeSettings::boot_flag_valid_timeout`]).
    pub fn set_boot_flags(&self, boot: BootOverride) {
        let mut inner = self.settled();
        inner.boot = boot;
        inner.boot_flags_expire = (boot.enabled != BootEnabled::Disabled)
            .then(|| Instant::now() + self.settings.boot_flag_valid_timeout);
    }

    /// Boot options parameter 3.
    pub fn valid_bit_clearing(&self) -> ValidBitClearing {
        self.settled().valid_bit_clearing
    }

    /// Replaces boot options parameter 3.
    pub fn set_valid_bit_clearing(&self, clearing: ValidBitClearing) {
        self.settled().valid_bit_clearing = clearing;
    }

    /// Read-check-write of the boot override as one step: `decide` sees the
    /// node's status and returns the new override (or `None` to change
    /// nothing) with its answer. No other change to the node can come
    /// between what `decide` saw and the write — what an `If-Match` check
    /// needs so that two writers holding the same ETag cannot both win.
    /// `decide` runs under the node's lock: it must be short and must not
    /// call back into this node.
    pub fn update_boot_override<R>(
        &self,
        decide: impl FnOnce(&NodeStatus) -> (Option<BootOverride>, R),
    ) -> R {
        let mut inner = self.settled();
        let status = self.status_of(&inner);
        let (boot, answer) = decide(&status);
        if let Some(boot) = boot {
            inner.boot = boot;
            inner.boot_flags_expire = None;
        }
        answer
    }

    /// The device the last boot used.
    pub fn last_boot(&self) -> BootTarget {
        self.settled().last_boot
    }

    /// The active faults.
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the faults (validated first).
    pub fn set_faults(&self, faults: Faults) -> Result<(), FaultError> {
        faults.validate()?;
        // Settle first so a shutdown that ended while hung_os was off is kept.
        self.settled().faults = faults;
        Ok(())
    }

    /// Sets one fault, keeping the others; an event (`drop_sessions`,
    /// `bmc_reboot`) happens now.
    pub fn apply_fault(&self, setting: FaultSetting) {
        let mut inner = self.settled();
        match setting {
            FaultSetting::DropSessions => inner.session_epoch += 1,
            FaultSetting::BmcReboot(down) => {
                inner.session_epoch += 1;
                unreachable_for(&mut inner, Instant::now(), down);
            }
            other => inner.faults.apply(other),
        }
    }

    /// Bumped each time every session is invalidated (`drop_sessions`,
    /// `bmc_reboot`): a front end drops the sessions it made before.
    pub fn session_epoch(&self) -> u64 {
        self.lock().session_epoch
    }

    /// Whether the BMC is unreachable now (`bmc_reboot`, `link_flap_on_power`).
    pub fn is_unreachable(&self) -> bool {
        self.lock()
            .unreachable_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// The behaviour choices.
    pub fn quirks(&self) -> Quirks {
        self.lock().quirks.clone()
    }

    /// Reads the behaviour choices without copying them (for the hot paths
    /// that need one or two of them per request). `read` runs under the
    /// node's lock: it must be short and must not call back into the node.
    pub fn with_quirks<R>(&self, read: impl FnOnce(&Quirks) -> R) -> R {
        read(&self.lock().quirks)
    }

    /// Replaces the behaviour choices.
    pub fn set_quirks(&self, quirks: Quirks) {
        self.lock().quirks = quirks;
    }

    /// The counters now.
    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// Counts a TCP connection accepted by the Redfish endpoint.
    pub fn count_connection(&self) {
        self.counters.connection();
    }

    /// Records how many IPMI sessions the BMC holds now.
    pub fn count_ipmi_sessions(&self, sessions: usize) {
        self.counters
            .set_ipmi_sessions(u32::try_from(sessions).unwrap_or(u32::MAX));
    }

    /// Zeroes the counters.
    pub fn reset_counters(&self) {
        self.counters.reset();
        let mut inner = self.settled();
        inner.command_log.clear();
        inner.request_log.clear();
    }

    /// The power commands carried out since the last reset, oldest first,
    /// with when each was applied.
    pub fn command_log(&self) -> Vec<(Instant, PowerAction)> {
        self.settled().command_log.iter().copied().collect()
    }

    /// The requests served since the last reset (at most
    /// [`REQUEST_LOG_LEN`], the latest), oldest first: when each arrived
    /// and ended and the power command it carried, for tests of pacing.
    pub fn request_log(&self) -> Vec<RequestSpan> {
        self.lock().request_log.iter().copied().collect()
    }

    /// Everything about the node at once, for the control API.
    pub fn status(&self) -> NodeStatus {
        let inner = self.settled();
        self.status_of(&inner)
    }

    fn status_of(&self, inner: &NodeInner) -> NodeStatus {
        NodeStatus {
            name: self.identity.name.clone(),
            index: self.identity.index,
            power_domain: self.identity.power_domain.clone(),
            power_state: inner.phase.state(),
            reported_power_state: reported_state(inner, Instant::now()),
            redfish_port: self.endpoints.redfish_port,
            ipmi_port: self.endpoints.ipmi_port,
            boot_override: inner.boot,
            last_boot: inner.last_boot,
            boot_flag_valid_bit_clearing: inner.valid_bit_clearing,
            faults: inner.faults.clone(),
            quirks: inner.quirks.clone(),
            counters: self.counters.snapshot(),
        }
    }
}

/// The `link_flap_on_power` fault: a power change takes the link down.
fn flap_link(inner: &mut NodeInner, now: Instant) {
    if let Some(down) = inner.faults.link_flap_on_power {
        unreachable_for(inner, now, down);
    }
}

/// Makes the BMC unreachable from `now` for `down` (extending, never
/// shortening, a window already under way).
fn unreachable_for(inner: &mut NodeInner, now: Instant, down: Duration) {
    let until = now + down;
    inner.unreachable_until = Some(inner.unreachable_until.map_or(until, |u| u.max(until)));
}

/// Remembers that the power state left `before` at `at` (when it did).
fn note_change(inner: &mut NodeInner, at: Instant, before: PowerState) {
    if inner.phase.state() == before {
        return;
    }
    if inner.history.len() == HISTORY {
        inner.history.pop_front();
    }
    inner.history.push_back((at, before));
}

/// The power state a BMC with `inner`'s quirks reports at `now`.
fn reported_state(inner: &NodeInner, now: Instant) -> PowerState {
    let state = inner.phase.state();
    match inner.quirks.power_state_style {
        PowerStateStyle::Ideal => state,
        PowerStateStyle::Binary if state.is_powered() => PowerState::On,
        PowerStateStyle::Binary => PowerState::Off,
        PowerStateStyle::Stale(lag) => {
            // The state that held `lag` ago: the one the first later change
            // left (a lag reaching past the clock's start: the oldest known).
            let then = now.checked_sub(lag);
            inner
                .history
                .iter()
                .find(|(at, _)| then.is_none_or(|then| *at > then))
                .map_or(state, |(_, before)| *before)
        }
    }
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
