//! The driver conformance suite: one sequence of checks that every kind of
//! BMC must pass through the `PowerDriver` trait — hw-sim, sushy-emulator,
//! ipmi_sim and real BMCs (hardware in the loop). It is generic over how the
//! BMC is started ([`BmcUnderTest`]); what differs between BMCs is declared in
//! [`Expect`], never skipped silently.
//!
//! Steps: validate → capabilities (compared with the actions pinned for this
//! kind of BMC, so a wrong report fails instead of skipping steps) → power
//! off/on/idempotent repeats/reboot/soft off/power cycle (each polled until
//! the state settles, and checked against the BMC's own ground truth when it
//! has one) → boot override once and persistent → NMI → close and reuse →
//! wrong password is `Auth`, not transient.
//!
//! A state that reads right proves little: a reboot "settles" at once when
//! nothing was sent. So each restart and soft off is also checked against
//! what the BMC itself recorded ([`BmcUnderTest::record`]): exactly one
//! restart per reboot or power cycle, and a soft off that asked the OS (a
//! graceful command, not a hard off). A BMC that can hang its OS
//! ([`BmcUnderTest::hang_os`]) shows the difference directly: a graceful
//! shutdown waits for the OS, a hard off does not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_drivers::{
    build_driver, BootDevice, BootSetting, Capabilities, DriverConfig, DriverError, PowerAction,
    PowerDriver, PowerState, Secret,
};

/// What the suite should expect from one BMC.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Longest time a power change may take to show in `power_state()`.
    pub settle: Duration,
    /// Run the power-changing steps (off for HIL unless opted in).
    pub power_steps: bool,
    /// The power actions this kind of BMC supports; `capabilities()` must
    /// report exactly these, and the suite runs reboot, soft off and power
    /// cycle when they are listed here, whatever the report says. `None`
    /// (a real BMC of unknown make) trusts the report.
    pub power_actions: Option<Vec<PowerAction>>,
    /// What the BMC reports back after a boot override is set.
    pub boot_readback: BootReadback,
    /// Whether the BMC supports NMI (`None`: accept either, as reported).
    pub nmi: Option<bool>,
    /// Send an NMI at all (a real server may crash-dump and reboot).
    pub nmi_step: bool,
}

/// How faithfully a BMC reports the boot override it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootReadback {
    /// Device and once/persistent, as the spec says.
    Exact,
    /// The device, but always as persistent (sushy-emulator ignores
    /// `BootSourceOverrideEnabled` and reports `Continuous`).
    DeviceAlwaysPersistent,
    /// No override at all (ipmi_sim answers boot flags without the "valid"
    /// bit, so per the spec no override is set).
    NoValidBit,
    /// One-time overrides exactly; a persistent one is `Unsupported` (the
    /// BMC does not offer `Continuous`).
    OnceOnly,
}

/// One BMC the suite runs against.
pub trait BmcUnderTest: Sync {
    /// A name for messages.
    fn name(&self) -> String;
    /// A driver config with working credentials.
    fn config(&self) -> DriverConfig;
    /// What to expect.
    fn expect(&self) -> Expect;
    /// The power state as the BMC itself holds it, when the test can see it.
    fn ground_truth(&self) -> Truth {
        Truth::Unknown
    }
    /// What the BMC itself recorded of the power commands it carried out.
    fn record(&self) -> Record {
        Record::default()
    }
    /// Makes the server's OS hang (`true`: a graceful shutdown never ends)
    /// or recover. Returns how long a hard power-off takes to show, or `None`
    /// when this BMC cannot hang its OS.
    fn hang_os(&self, _hung: bool) -> Option<Duration> {
        None
    }
}

/// Counts a BMC keeps of what it carried out; `None` where the test cannot
/// see it. Only differences across one step are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Boots the BMC started: power-ons and restarts (an emulator that logs
    /// commands counts the commands that start one).
    pub boots: Option<u64>,
    /// Graceful shutdowns asked of the OS (Redfish `GracefulShutdown`, IPMI
    /// soft off).
    pub soft_offs: Option<u64>,
    /// Hard power-offs (Redfish `ForceOff`, IPMI power down).
    pub hard_offs: Option<u64>,
}

/// The BMC's own view of the power, beside what the driver reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// The test cannot see inside this BMC.
    Unknown,
    /// Settled on.
    On,
    /// Settled off.
    Off,
    /// In a transition (IPMI reports a booting server as on; the suite
    /// waits until the BMC itself is settled before the next step).
    Changing,
}

/// The steps of a run with every power action, boot override and NMI.
pub const FULL_RUN: [&str; 10] = [
    "validate",
    "capabilities",
    "power",
    "reboot",
    "soft off",
    "power cycle",
    "boot",
    "nmi",
    "close and reuse",
    "wrong password",
];

/// What the suite did, for the test's own assertions and messages.
#[derive(Debug, Default)]
pub struct Report {
    /// The steps that ran, in order.
    pub steps: Vec<&'static str>,
    /// The checks against the BMC's own record that ran, in order
    /// ("reboot: one restart", "soft off: graceful"…).
    pub checked: Vec<&'static str>,
}

/// Runs the whole suite; panics with the BMC's name and step on a failure.
pub async fn run_suite(bmc: &impl BmcUnderTest) -> Report {
    let mut report = Report::default();
    let config = bmc.config();
    let expect = bmc.expect();
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{}: build: {e}", bmc.name()));
    let ctx = Ctx {
        name: bmc.name(),
        driver,
        expect,
    };

    ctx.ok("validate", ctx.driver.validate()).await;
    report.steps.push("validate");
    let caps = ctx.ok("capabilities", ctx.driver.capabilities()).await;
    let actions = pinned_actions(&ctx, &caps);
    report.steps.push("capabilities");

    if ctx.expect.power_steps {
        power_steps(&ctx, bmc, &actions, &mut report).await;
    } else {
        ctx.ok("power_state", ctx.driver.power_state()).await;
        report.steps.push("power_state (read only)");
    }
    if ctx.expect.power_steps {
        boot_steps(&ctx).await;
        report.steps.push("boot");
        if ctx.expect.nmi_step {
            nmi_step(&ctx, &caps).await;
            report.steps.push("nmi");
        }
    }

    ctx.driver.close().await;
    ctx.ok("power_state after close", ctx.driver.power_state())
        .await;
    report.steps.push("close and reuse");

    wrong_password(&config, &ctx.name).await;
    report.steps.push("wrong password");
    ctx.driver.close().await;
    report
}

struct Ctx {
    name: String,
    driver: Arc<dyn PowerDriver>,
    expect: Expect,
}

impl Ctx {
    async fn ok<T>(
        &self,
        step: &str,
        fut: impl std::future::Future<Output = Result<T, DriverError>>,
    ) -> T {
        match fut.await {
            Ok(value) => value,
            Err(e) => panic!("{}: {step} failed: {e} ({e:?})", self.name),
        }
    }

    async fn set_and_settle(&self, action: PowerAction, bmc: &impl BmcUnderTest) {
        self.set(action).await;
        self.settle(action.end_state(), bmc).await;
    }

    async fn set(&self, action: PowerAction) {
        self.ok(
            &format!("set_power({action})"),
            self.driver.set_power(action),
        )
        .await;
    }

    /// Polls until the BMC reports `target` (and its ground truth agrees).
    async fn settle(&self, target: PowerState, bmc: &impl BmcUnderTest) {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < self.expect.settle {
            let state = self.ok("power_state", self.driver.power_state()).await;
            last = Some(state);
            if state == target {
                let want = match target {
                    PowerState::On => Truth::On,
                    _ => Truth::Off,
                };
                match bmc.ground_truth() {
                    Truth::Unknown => return,
                    Truth::Changing => {}
                    truth => {
                        assert_eq!(
                            truth, want,
                            "{}: driver reads {state} but the BMC holds {truth:?}",
                            self.name
                        );
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "{}: power did not reach {target} within {:?} (last {last:?})",
            self.name, self.expect.settle
        );
    }
}

/// The power actions to run: the pinned ones, after checking that the
/// BMC's capability report names exactly those.
fn pinned_actions(ctx: &Ctx, caps: &Capabilities) -> Vec<PowerAction> {
    let reported: Vec<PowerAction> = PowerAction::ALL
        .into_iter()
        .filter(|a| caps.supports(*a))
        .collect();
    let Some(pinned) = &ctx.expect.power_actions else {
        assert!(
            caps.supports(PowerAction::On) && caps.supports(PowerAction::Off),
            "{}: capabilities lack On/Off: {caps:?}",
            ctx.name
        );
        return reported;
    };
    let pinned: Vec<PowerAction> = PowerAction::ALL
        .into_iter()
        .filter(|a| pinned.contains(a))
        .collect();
    assert_eq!(
        reported, pinned,
        "{}: capabilities() reports other power actions than this BMC supports",
        ctx.name
    );
    pinned
}

async fn power_steps(
    ctx: &Ctx,
    bmc: &impl BmcUnderTest,
    actions: &[PowerAction],
    report: &mut Report,
) {
    let state = ctx.ok("power_state", ctx.driver.power_state()).await;
    if state.settled() != PowerState::Off {
        ctx.set_and_settle(PowerAction::Off, bmc).await;
    }
    ctx.set_and_settle(PowerAction::On, bmc).await;
    // Asking for the state the server is already in succeeds.
    ctx.set_and_settle(PowerAction::On, bmc).await;
    report.steps.push("power");
    if actions.contains(&PowerAction::Reboot) {
        restart(ctx, bmc, PowerAction::Reboot, report).await;
        report.steps.push("reboot");
    }
    ctx.set_and_settle(PowerAction::Off, bmc).await;
    ctx.set_and_settle(PowerAction::Off, bmc).await;
    if actions.contains(&PowerAction::SoftOff) {
        ctx.set_and_settle(PowerAction::On, bmc).await;
        soft_off(ctx, bmc, report).await;
        report.steps.push("soft off");
    }
    if actions.contains(&PowerAction::PowerCycle) {
        ctx.set_and_settle(PowerAction::On, bmc).await;
        restart(ctx, bmc, PowerAction::PowerCycle, report).await;
        report.steps.push("power cycle");
    }
}

/// Sends a restart to a server that is on and checks that the BMC carried
/// out exactly one (the state alone reads On whether or not it did).
async fn restart(ctx: &Ctx, bmc: &impl BmcUnderTest, action: PowerAction, report: &mut Report) {
    let before = bmc.record();
    ctx.set_and_settle(action, bmc).await;
    let after = bmc.record();
    if let (Some(before), Some(after)) = (before.boots, after.boots) {
        assert_eq!(
            after - before,
            1,
            "{}: {action} started {} boots on the BMC, want exactly one",
            ctx.name,
            after - before
        );
        report.checked.push(match action {
            PowerAction::Reboot => "reboot: one restart",
            _ => "power cycle: one restart",
        });
    }
}

/// Sends a soft off to a server that is on and checks that the BMC asked
/// the OS (a graceful shutdown) instead of cutting the power.
async fn soft_off(ctx: &Ctx, bmc: &impl BmcUnderTest, report: &mut Report) {
    let before = bmc.record();
    match bmc.hang_os(true) {
        Some(hard_off) => {
            // A hard off shows within `hard_off`; a graceful shutdown waits
            // for the hung OS. The command runs alongside: a BMC with a task
            // monitor finishes it only once the OS recovers.
            let watch = async {
                let start = Instant::now();
                while start.elapsed() < hard_off * 5 {
                    assert_ne!(
                        bmc.ground_truth(),
                        Truth::Off,
                        "{}: soft off cut the power of a hung OS: it was not graceful",
                        ctx.name
                    );
                    tokio::time::sleep(hard_off / 4).await;
                }
                bmc.hang_os(false);
            };
            tokio::join!(ctx.set(PowerAction::SoftOff), watch);
            ctx.settle(PowerState::Off, bmc).await;
            report.checked.push("soft off: waits for a hung OS");
        }
        None => ctx.set_and_settle(PowerAction::SoftOff, bmc).await,
    }
    let after = bmc.record();
    if let (Some(before), Some(after)) = (before.soft_offs, after.soft_offs) {
        assert_eq!(
            after - before,
            1,
            "{}: soft off asked the OS {} times",
            ctx.name,
            after - before
        );
        report.checked.push("soft off: graceful");
    }
    if let (Some(before), Some(after)) = (before.hard_offs, after.hard_offs) {
        assert_eq!(
            after, before,
            "{}: soft off cut the power (hard off)",
            ctx.name
        );
        report.checked.push("soft off: no hard off");
    }
}

/// Sets pxe once, then disk persistent, reading each back; then puts back
/// the override the BMC had, when it had one.
async fn boot_steps(ctx: &Ctx) {
    let original = ctx.ok("boot_device", ctx.driver.boot_device()).await;
    let cases = [(BootDevice::Pxe, false), (BootDevice::Disk, true)];
    for (device, persistent) in cases {
        if persistent && ctx.expect.boot_readback == BootReadback::OnceOnly {
            let refused = ctx.driver.set_boot_device(device, persistent).await;
            assert!(
                matches!(refused, Err(DriverError::Unsupported(_))),
                "{}: a persistent override the BMC does not offer gave {refused:?}",
                ctx.name
            );
            continue;
        }
        ctx.ok(
            "set_boot_device",
            ctx.driver.set_boot_device(device, persistent),
        )
        .await;
        let got = ctx.ok("boot_device", ctx.driver.boot_device()).await;
        let want = match ctx.expect.boot_readback {
            BootReadback::Exact | BootReadback::OnceOnly => BootSetting {
                device: Some(device),
                persistent,
            },
            BootReadback::DeviceAlwaysPersistent => BootSetting {
                device: Some(device),
                persistent: true,
            },
            BootReadback::NoValidBit => BootSetting {
                device: None,
                persistent: false,
            },
        };
        assert_eq!(got, want, "{}: boot override after set {device}", ctx.name);
    }
    if let Some(device) = original.device {
        ctx.ok(
            "restore boot override",
            ctx.driver.set_boot_device(device, original.persistent),
        )
        .await;
    }
}

async fn nmi_step(ctx: &Ctx, caps: &Capabilities) {
    let result = ctx.driver.inject_nmi().await;
    let supported = ctx.expect.nmi.unwrap_or(caps.nmi);
    match (supported, result) {
        (true, Ok(())) => {}
        (false, Err(DriverError::Unsupported(_))) => {
            let caps = ctx.ok("capabilities", ctx.driver.capabilities()).await;
            assert!(!caps.nmi, "{}: NMI refused but still advertised", ctx.name);
        }
        (want, got) => panic!("{}: NMI supported={want} but got {got:?}", ctx.name),
    }
}

/// A wrong password is an `Auth` error and not transient.
async fn wrong_password(config: &DriverConfig, name: &str) {
    let mut bad = config.clone();
    bad.password = Secret::new(format!("{}-wrong", config.password.expose()));
    let driver = build_driver(&bad).unwrap_or_else(|e| panic!("{name}: build: {e}"));
    match driver.power_state().await {
        Err(e @ DriverError::Auth(_)) => assert!(!e.is_transient()),
        other => panic!("{name}: wrong password gave {other:?}, want Auth"),
    }
}
