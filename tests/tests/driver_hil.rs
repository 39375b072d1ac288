//! Hardware in the loop: the driver conformance suite against a real BMC.
//!
//! Point it at a BMC with environment variables (see README,
//! "Hardware-in-the-loop"):
//! `BATON_HIL_DRIVER` (redfish | ipmi), `BATON_HIL_ADDRESS`,
//! `BATON_HIL_USERNAME`, `BATON_HIL_PASSWORD`, and optionally
//! `BATON_HIL_PORT`, `BATON_HIL_SYSTEM_ID`, `BATON_HIL_CA_FILE`,
//! `BATON_HIL_VERIFY_TLS=0`, `BATON_HIL_SETTLE_SECS` (default 300),
//! `BATON_HIL_BOOT_READBACK` (exact | persistent | none).
//! Power, boot-override steps run only with `BATON_HIL_ALLOW_POWER=1`, the
//! NMI step only with `BATON_HIL_ALLOW_NMI=1`.
//!
//! The test is `#[ignore]`d, so a plain `cargo test` lists it as ignored
//! with the reason (a test cannot mark itself skipped at run time, and a
//! test that returns early would count as passed). Run it with
//! `-- --ignored`; then a missing `BATON_HIL_DRIVER` fails it, saying what
//! to set.

use std::time::Duration;

use baton_drivers::{DriverConfig, DriverKind};
use baton_tests::conformance::{run_suite, BmcUnderTest, BootReadback, Expect};
use baton_tests::logcapture;

struct RealBmc {
    config: DriverConfig,
    expect: Expect,
}

impl BmcUnderTest for RealBmc {
    fn name(&self) -> String {
        format!("{} BMC {}", self.config.kind, self.config.address)
    }

    fn config(&self) -> DriverConfig {
        self.config.clone()
    }

    fn expect(&self) -> Expect {
        self.expect.clone()
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> String {
    var(name).unwrap_or_else(|| panic!("BATON_HIL_DRIVER is set, so {name} must be too"))
}

fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The BMC described by the environment, or `None` when no rig is configured.
fn from_env() -> Option<RealBmc> {
    let kind: DriverKind = var("BATON_HIL_DRIVER")?
        .parse()
        .unwrap_or_else(|e| panic!("BATON_HIL_DRIVER: {e}"));
    let port = var("BATON_HIL_PORT").map(|p| {
        p.parse::<u16>()
            .unwrap_or_else(|e| panic!("BATON_HIL_PORT={p}: {e}"))
    });
    let mut config = DriverConfig::new(
        kind,
        required("BATON_HIL_ADDRESS"),
        port,
        required("BATON_HIL_USERNAME"),
        required("BATON_HIL_PASSWORD"),
    );
    config.system_id = var("BATON_HIL_SYSTEM_ID");
    config.ca_file = var("BATON_HIL_CA_FILE").map(Into::into);
    config.verify_tls = var("BATON_HIL_VERIFY_TLS").is_none_or(|v| v != "0");
    let settle = var("BATON_HIL_SETTLE_SECS").map_or(300, |s| {
        s.parse()
            .unwrap_or_else(|e| panic!("BATON_HIL_SETTLE_SECS={s}: {e}"))
    });
    let boot_readback = match var("BATON_HIL_BOOT_READBACK").as_deref() {
        None | Some("exact") => BootReadback::Exact,
        Some("persistent") => BootReadback::DeviceAlwaysPersistent,
        Some("none") => BootReadback::NoValidBit,
        Some(other) => panic!("BATON_HIL_BOOT_READBACK={other}: use exact, persistent or none"),
    };
    Some(RealBmc {
        config,
        expect: Expect {
            settle: Duration::from_secs(settle),
            power_steps: flag("BATON_HIL_ALLOW_POWER"),
            power_actions: None,
            boot_readback,
            nmi: None,
            nmi_step: flag("BATON_HIL_ALLOW_NMI"),
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "skipped: needs a BMC rig; set BATON_HIL_DRIVER etc. and run with -- --ignored (README, Hardware-in-the-loop)"]
async fn hardware_in_the_loop_conformance() {
    let Some(bmc) = from_env() else {
        panic!(
            "hardware-in-the-loop: BATON_HIL_DRIVER is unset, so there is no BMC to test; \
             set BATON_HIL_DRIVER, BATON_HIL_ADDRESS, BATON_HIL_USERNAME and BATON_HIL_PASSWORD \
             (README, Hardware-in-the-loop)"
        );
    };
    logcapture::capture();
    let report = run_suite(&bmc).await;
    println!(
        "hardware-in-the-loop: {} passed {:?}",
        bmc.name(),
        report.steps
    );
    if !bmc.expect.power_steps {
        println!("hardware-in-the-loop: power steps skipped; set BATON_HIL_ALLOW_POWER=1");
    }
    let leaked =
        logcapture::capture().leaked_secret(&bmc.config.username, bmc.config.password.expose());
    assert!(leaked.is_none(), "{leaked:?} appears in the trace logs");
}
