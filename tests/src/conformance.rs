//! The driver conformance suite: one sequence of checks that every kind of
//! BMC must pass through the `PowerDriver` trait — hw-sim, sushy-emulator,
//! ipmi_sim and real BMCs (hardware in the loop). It is generic over how the
//! BMC is started ([`BmcUnderTest`]); what differs between BMCs is declared in
//! [`Expect`], never skipped silently.
//!
//! Steps: validate → capabilities → power off/on/idempotent repeats/reboot/
//! soft off (each polled until the state settles, and checked against the
//! BMC's own ground truth when it has one) → boot override once and
//! persistent → NMI → close and reuse → wrong password is `Auth`, not
//! transient.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_drivers::{
    build_driver, BootDevice, BootSetting, DriverConfig, DriverError, PowerAction, PowerDriver,
    PowerState, Secret,
};

/// What the suite should expect from one BMC.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Longest time a power change may take to show in `power_state()`.
    pub settle: Duration,
    /// Run the power-changing steps (off for HIL unless opted in).
    pub power_steps: bool,
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

/// What the suite did, for the test's own assertions and messages.
#[derive(Debug, Default)]
pub struct Report {
    /// The steps that ran, in order.
    pub steps: Vec<&'static str>,
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
    assert!(
        caps.supports(PowerAction::On) && caps.supports(PowerAction::Off),
        "{}: capabilities lack On/Off: {caps:?}",
        ctx.name
    );
    report.steps.push("capabilities");

    if ctx.expect.power_steps {
        power_steps(&ctx, bmc, &caps).await;
        report.steps.push("power");
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
        self.ok(
            &format!("set_power({action})"),
            self.driver.set_power(action),
        )
        .await;
        self.settle(action.end_state(), bmc).await;
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

async fn power_steps(ctx: &Ctx, bmc: &impl BmcUnderTest, caps: &baton_drivers::Capabilities) {
    let state = ctx.ok("power_state", ctx.driver.power_state()).await;
    if state.settled() != PowerState::Off {
        ctx.set_and_settle(PowerAction::Off, bmc).await;
    }
    ctx.set_and_settle(PowerAction::On, bmc).await;
    // Asking for the state the server is already in succeeds.
    ctx.set_and_settle(PowerAction::On, bmc).await;
    if caps.supports(PowerAction::Reboot) {
        ctx.set_and_settle(PowerAction::Reboot, bmc).await;
    }
    ctx.set_and_settle(PowerAction::Off, bmc).await;
    ctx.set_and_settle(PowerAction::Off, bmc).await;
    if caps.supports(PowerAction::SoftOff) {
        ctx.set_and_settle(PowerAction::On, bmc).await;
        ctx.set_and_settle(PowerAction::SoftOff, bmc).await;
    }
    if caps.supports(PowerAction::PowerCycle) {
        ctx.set_and_settle(PowerAction::On, bmc).await;
        ctx.set_and_settle(PowerAction::PowerCycle, bmc).await;
    }
}

/// Sets pxe once, then disk persistent, reading each back; then puts back
/// the override the BMC had, when it had one.
async fn boot_steps(ctx: &Ctx) {
    let original = ctx.ok("boot_device", ctx.driver.boot_device()).await;
    let cases = [(BootDevice::Pxe, false), (BootDevice::Disk, true)];
    for (device, persistent) in cases {
        ctx.ok(
            "set_boot_device",
            ctx.driver.set_boot_device(device, persistent),
        )
        .await;
        let got = ctx.ok("boot_device", ctx.driver.boot_device()).await;
        let want = match ctx.expect.boot_readback {
            BootReadback::Exact => BootSetting {
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

async fn nmi_step(ctx: &Ctx, caps: &baton_drivers::Capabilities) {
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
