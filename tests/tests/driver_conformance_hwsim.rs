//! The driver conformance suite against hw-sim's Redfish (over HTTPS with the
//! rack's CA) and IPMI nodes, with Redfish reply quirks, and the fault cases:
//! `no_answer` → `Timeout` within the deadline, `wrong_credentials` → `Auth`
//! without retries, `busy`/`http_500` → transient, `stuck` → no change,
//! `slow`, and 20 % `packet_loss` survived by IPMI retransmits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_drivers::{
    build_driver, BootDevice, DriverConfig, DriverError, DriverKind, PowerAction, PowerDriver,
    PowerState,
};
use baton_hwsim::model::{
    AlreadyInStateReply, BootPatchQuirk, EtagQuirk, MidTransition, PowerStateStyle, ResetReply,
    SessionLimitReply,
};
use baton_hwsim::{
    Credentials, Delays, FaultSetting, InitialPower, Node, Quirks, Rack, RackConfig,
};
use baton_tests::conformance::{
    run_suite, BmcUnderTest, BootReadback, Expect, Record, Report, Truth, FULL_RUN,
};
use baton_tests::logcapture;

// Shorter than IPMI's 20-byte maximum: hw-sim's `wrong_credentials` appends
// to the password, which a 20-byte password would hide (keys are cut at 20).
const PASSWORD: &str = "hwsim-conf-pw";
/// hw-sim's hard power-off time in these racks.
const POWER_OFF: Duration = Duration::from_millis(100);

struct SimRack {
    rack: Rack,
    _dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
}

async fn rack(nodes: usize, tls: bool) -> SimRack {
    let config = RackConfig {
        nodes,
        tls,
        credentials: Credentials {
            username: "admin".into(),
            password: PASSWORD.into(),
        },
        delays: Delays {
            power_on: Duration::from_millis(150),
            power_off: POWER_OFF,
            shutdown: Duration::from_millis(200),
        },
        initial_power: InitialPower::Off,
        ..RackConfig::default()
    };
    let rack = Rack::start(config)
        .await
        .unwrap_or_else(|e| panic!("hw-sim rack did not start: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ca_file = dir.path().join("ca.pem");
    if let Some(pem) = rack.ca_certificate_pem() {
        std::fs::write(&ca_file, pem).unwrap_or_else(|e| panic!("{e}"));
    }
    SimRack {
        rack,
        _dir: dir,
        ca_file,
    }
}

/// One hw-sim node, seen through one protocol.
struct SimBmc<'a> {
    sim: &'a SimRack,
    node: &'a Arc<Node>,
    kind: DriverKind,
}

impl SimBmc<'_> {
    fn driver(&self) -> Arc<dyn PowerDriver> {
        build_driver(&self.config()).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl BmcUnderTest for SimBmc<'_> {
    fn name(&self) -> String {
        format!("hw-sim {} {}", self.node.name(), self.kind)
    }

    fn config(&self) -> DriverConfig {
        let (address, port) = match self.kind {
            DriverKind::Redfish => {
                let url = self.sim.rack.redfish_url(self.node);
                let scheme = url.split_once("://").map_or("http", |(s, _)| s);
                (
                    format!("{scheme}://127.0.0.1"),
                    self.node.redfish_addr().port(),
                )
            }
            DriverKind::Ipmi => {
                let addr = self.node.ipmi_addr().unwrap_or_else(|| panic!("no IPMI"));
                ("127.0.0.1".to_owned(), addr.port())
            }
        };
        let mut config = DriverConfig::new(self.kind, address, Some(port), "admin", PASSWORD);
        if self.sim.rack.ca_certificate_pem().is_some() {
            config.ca_file = Some(self.sim.ca_file.clone());
        }
        config.options.call_timeout = Duration::from_secs(5);
        config.options.ipmi_retransmit_interval = Duration::from_millis(200);
        // A BMC known to want its requests spaced is configured so, with a
        // margin: hw-sim times arrivals as its tasks run, and a loaded
        // machine can run one late and the next on time.
        config.options.ipmi_min_interval = self
            .node
            .faults()
            .min_interval
            .map_or(Duration::ZERO, |d| d.saturating_mul(3) / 2);
        config
    }

    fn expect(&self) -> Expect {
        Expect {
            settle: Duration::from_secs(5),
            power_steps: true,
            power_actions: Some(match self.kind {
                DriverKind::Redfish => PowerAction::ALL.to_vec(),
                // IPMI has no soft reboot.
                DriverKind::Ipmi => PowerAction::ALL
                    .into_iter()
                    .filter(|a| *a != PowerAction::SoftReboot)
                    .collect(),
            }),
            boot_readback: if self.node.quirks().boot_patch(BootPatchQuirk::NoContinuous) {
                BootReadback::OnceOnly
            } else {
                BootReadback::Exact
            },
            nmi: Some(true),
            nmi_step: true,
        }
    }

    fn ground_truth(&self) -> Truth {
        match self.node.power_state() {
            baton_hwsim::PowerState::On => Truth::On,
            baton_hwsim::PowerState::Off => Truth::Off,
            _ => Truth::Changing,
        }
    }

    fn record(&self) -> Record {
        Record {
            boots: Some(self.node.counters().boots),
            ..Record::default()
        }
    }

    fn hang_os(&self, hung: bool) -> Option<Duration> {
        let mut faults = self.node.faults();
        faults.hung_os = hung;
        self.node
            .set_faults(faults)
            .unwrap_or_else(|e| panic!("hung_os: {e}"));
        Some(POWER_OFF)
    }
}

/// Asserts that every power step ran and was checked inside hw-sim.
fn assert_fully_checked(report: &Report, name: &str) {
    assert_eq!(report.steps, FULL_RUN, "{name}");
    assert_eq!(
        report.checked,
        [
            "reboot: one restart",
            "soft off: waits for a hung OS",
            "power cycle: one restart"
        ],
        "{name}"
    );
}

fn node(sim: &SimRack, index: usize) -> &Arc<Node> {
    &sim.rack.nodes()[index]
}

/// The whole suite against one fresh node, which must have seen the NMI
/// once, with no password in any log line.
async fn passes_the_suite(tls: bool, kind: DriverKind) {
    logcapture::capture();
    let sim = rack(1, tls).await;
    let bmc = SimBmc {
        sim: &sim,
        node: node(&sim, 0),
        kind,
    };
    let report = run_suite(&bmc).await;
    assert_fully_checked(&report, &bmc.name());
    assert_eq!(
        bmc.node.counters().crash_dumps,
        1,
        "NMI did not reach the BMC once"
    );
    assert_no_password();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hwsim_redfish_over_tls_passes_the_suite() {
    passes_the_suite(true, DriverKind::Redfish).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hwsim_redfish_quirks_pass_the_suite() {
    let sim = rack(3, false).await;
    let quirks = [
        (AlreadyInStateReply::Conflict, ResetReply::NoContent),
        (AlreadyInStateReply::BadRequest, ResetReply::NoContent),
        (AlreadyInStateReply::Ok, ResetReply::Task),
    ];
    for (index, (already, reply)) in quirks.into_iter().enumerate() {
        let node = node(&sim, index);
        let mut q = node.quirks();
        q.already_in_state = already;
        q.reset_reply = reply;
        node.set_quirks(q);
        let bmc = SimBmc {
            sim: &sim,
            node,
            kind: DriverKind::Redfish,
        };
        let report = run_suite(&bmc).await;
        assert_fully_checked(&report, &bmc.name());
    }
}

/// A named change to a node's quirks.
type QuirkCase = (&'static str, fn(&mut Quirks));

/// Runs the suite through each of `kinds` against one node per quirk case,
/// all at once.
async fn suites_with_quirks(kinds: &[DriverKind], cases: &[QuirkCase]) {
    let sim = rack(kinds.len() * cases.len(), false).await;
    let mut bmcs = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        for (c, (_, change)) in cases.iter().enumerate() {
            let node = node(&sim, k * cases.len() + c);
            let mut quirks = node.quirks();
            change(&mut quirks);
            node.set_quirks(quirks);
            bmcs.push(SimBmc {
                sim: &sim,
                node,
                kind: *kind,
            });
        }
    }
    let reports = futures::future::join_all(bmcs.iter().map(run_suite)).await;
    for ((bmc, report), (name, _)) in bmcs.iter().zip(&reports).zip(cases.iter().cycle()) {
        assert_fully_checked(report, &format!("{} with {name}", bmc.name()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_reporting_quirks_pass_the_suite() {
    // `stale` is not here: a BMC that reports the old state makes any
    // client see a restart "done" before it began (the suite's ground-truth
    // check rightly fails); see `a_stale_bmc_is_read_as_it_reports`.
    let cases: [QuirkCase; 3] = [
        ("power_state_style binary", |q| {
            q.power_state_style = PowerStateStyle::Binary;
        }),
        ("mid_transition ignore", |q| {
            q.mid_transition = MidTransition::Ignore;
        }),
        ("shutdown_timeout 300s", |q| {
            q.shutdown_timeout = Some(Duration::from_secs(300));
        }),
    ];
    suites_with_quirks(&BOTH, &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_and_etag_quirks_pass_the_suite() {
    let cases: [QuirkCase; 10] = [
        ("boot_patch refuse_in_post", |q| {
            q.boot_patch = vec![BootPatchQuirk::RefuseInPost];
        }),
        ("boot_patch all_required", |q| {
            q.boot_patch = vec![BootPatchQuirk::AllRequired];
        }),
        ("boot_patch no_repeat_enabled", |q| {
            q.boot_patch = vec![BootPatchQuirk::NoRepeatEnabled];
        }),
        ("boot_patch enabled_required", |q| {
            q.boot_patch = vec![BootPatchQuirk::EnabledRequired];
        }),
        ("boot_patch no_continuous", |q| {
            q.boot_patch = vec![BootPatchQuirk::NoContinuous];
        }),
        ("etag weak", |q| q.etag = vec![EtagQuirk::Weak]),
        ("etag body_only", |q| q.etag = vec![EtagQuirk::BodyOnly]),
        ("etag if_match_required", |q| {
            q.etag = vec![EtagQuirk::IfMatchRequired];
        }),
        ("etag racy", |q| q.etag = vec![EtagQuirk::Racy]),
        ("session_limit_reply vendor", |q| {
            q.session_limit_reply = SessionLimitReply::Vendor;
        }),
    ];
    suites_with_quirks(&[DriverKind::Redfish], &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_quirks_pass_the_suite() {
    let cases: [QuirkCase; 2] = [
        ("keep_alive_requests 1", |q| q.keep_alive_requests = Some(1)),
        ("keep_alive_idle 100ms", |q| {
            q.keep_alive_idle = Some(Duration::from_millis(100));
        }),
    ];
    suites_with_quirks(&[DriverKind::Redfish], &cases).await;
}

/// The boot override quirks the suite cannot meet by itself: a PATCH that
/// repeats `BootSourceOverrideEnabled`, a weak tag the BMC compares
/// strongly, and a PATCH while the server is in POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_boot_override_copes_with_particular_bmcs() {
    let sim = rack(1, false).await;
    let node = node(&sim, 0);
    let mut quirks = node.quirks();
    quirks.boot_patch = vec![
        BootPatchQuirk::NoRepeatEnabled,
        BootPatchQuirk::RefuseInPost,
    ];
    quirks.etag = vec![EtagQuirk::Weak, EtagQuirk::IfMatchRequired];
    node.set_quirks(quirks);
    let bmc = SimBmc {
        sim: &sim,
        node,
        kind: DriverKind::Redfish,
    };
    let driver = bmc.driver();
    for device in [BootDevice::Pxe, BootDevice::Disk, BootDevice::Disk] {
        let set = driver.set_boot_device(device, false).await;
        assert!(set.is_ok(), "{device}: {set:?}");
        let got = driver.boot_device().await;
        assert_eq!(got.map(|b| b.device), Ok(Some(device)));
    }
    assert!(driver.set_power(PowerAction::On).await.is_ok());
    let in_post = driver.set_boot_device(BootDevice::Pxe, false).await;
    assert!(
        in_post.as_ref().is_err_and(DriverError::is_transient),
        "in POST: {in_post:?}"
    );
    let start = Instant::now();
    while node.power_state() != baton_hwsim::PowerState::On {
        assert!(start.elapsed() < Duration::from_secs(5), "never booted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(driver.set_boot_device(BootDevice::Pxe, false).await.is_ok());
}

/// Both drivers read what a `stale` BMC reports, not a cached or guessed
/// state: the old state during the lag, the new one after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_bmc_is_read_as_it_reports() {
    let sim = rack(2, false).await;
    for (index, kind) in BOTH.into_iter().enumerate() {
        let node = node(&sim, index);
        let mut quirks = node.quirks();
        quirks.power_state_style = PowerStateStyle::Stale(Duration::from_secs(2));
        node.set_quirks(quirks);
        let bmc = SimBmc {
            sim: &sim,
            node,
            kind,
        };
        let driver = bmc.driver();
        assert_eq!(driver.power_state().await, Ok(PowerState::Off), "{kind}");
        assert!(driver.set_power(PowerAction::On).await.is_ok(), "{kind}");
        assert_eq!(
            driver.power_state().await,
            Ok(PowerState::Off),
            "{kind}: the old state during the lag"
        );
        let start = Instant::now();
        while driver.power_state().await != Ok(PowerState::On) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{kind}: never on"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hwsim_redfish_tls_is_verified_by_default() {
    let sim = rack(1, true).await;
    let bmc = SimBmc {
        sim: &sim,
        node: node(&sim, 0),
        kind: DriverKind::Redfish,
    };
    let mut config = bmc.config();
    config.ca_file = None;
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    let result = driver.validate().await;
    assert!(
        matches!(&result, Err(e @ DriverError::Config(reason))
            if reason.contains("certificate not trusted")
                && reason.contains("bmc.ca_file")
                && !e.is_transient()),
        "{result:?}"
    );
    config.verify_tls = false;
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    assert!(driver.validate().await.is_ok());
}

/// A sweep's read (`power_state_then_idle`) closes its connection once
/// answered; plain reads keep theirs for the next call. And a first
/// contact reads the service root once, not again after the login.
/// Counted by hw-sim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contact_and_reads_then_idle_cost_the_bmc_least() {
    let sim = rack(1, true).await;
    let node = node(&sim, 0);
    let driver = SimBmc {
        sim: &sim,
        node,
        kind: DriverKind::Redfish,
    }
    .driver();
    // The HTTP client hands a connection back to its pool on a task of its
    // own once a reply is read: give it a moment before the next call.
    let read = |then_idle: bool| {
        let driver = Arc::clone(&driver);
        async move {
            let state = if then_idle {
                driver.power_state_then_idle().await
            } else {
                driver.power_state().await
            };
            state.unwrap_or_else(|e| panic!("{e}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    read(false).await;
    assert_eq!(
        node.counters().requests,
        4,
        "first contact: the service root, the login, Systems and the system"
    );
    node.reset_counters();
    read(false).await;
    read(false).await;
    assert_eq!(node.counters().connections, 0, "plain reads reuse theirs");
    read(true).await;
    assert_eq!(node.counters().connections, 0, "the kept one serves it");
    for expected in 1..=2 {
        read(true).await;
        assert_eq!(
            node.counters().connections,
            expected,
            "each read then idle closed the connection it came on"
        );
    }
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hwsim_ipmi_passes_the_suite() {
    passes_the_suite(false, DriverKind::Ipmi).await;
}

fn assert_no_password() {
    let logs = logcapture::capture();
    assert!(!logs.is_empty(), "the log capture saw nothing");
    let leaked = logs.leaked_secret("admin", PASSWORD);
    assert!(leaked.is_none(), "{leaked:?} appears in the trace logs");
}

const BOTH: [DriverKind; 2] = [DriverKind::Redfish, DriverKind::Ipmi];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_times_out_within_the_deadline() {
    let sim = rack(2, false).await;
    for (index, kind) in BOTH.into_iter().enumerate() {
        let node = node(&sim, index);
        node.apply_fault(FaultSetting::NoAnswer);
        let bmc = SimBmc {
            sim: &sim,
            node,
            kind,
        };
        let mut config = bmc.config();
        config.options.call_timeout = Duration::from_secs(2);
        let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
        let start = Instant::now();
        let result = driver.power_state().await;
        let elapsed = start.elapsed();
        assert!(
            matches!(result, Err(DriverError::Timeout { .. })),
            "{kind}: {result:?}"
        );
        assert!(result.is_err_and(|e| e.is_transient()));
        assert!(elapsed < Duration::from_secs(3), "{kind}: took {elapsed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_is_auth_and_not_retried() {
    let sim = rack(2, false).await;
    for (index, kind) in BOTH.into_iter().enumerate() {
        let node = node(&sim, index);
        node.apply_fault(FaultSetting::WrongCredentials);
        let bmc = SimBmc {
            sim: &sim,
            node,
            kind,
        };
        let before = node.counters().requests;
        let result = bmc.driver().power_state().await;
        assert!(
            matches!(result, Err(DriverError::Auth(_))),
            "{kind}: {result:?}"
        );
        assert!(result.is_err_and(|e| !e.is_transient()));
        // One login attempt: Redfish service root + session POST; IPMI
        // capabilities (the driver's own IPMI 2.0 check), then ipmi-rs's
        // ping, capabilities, open session, RAKP 1, RAKP 3.
        let requests = node.counters().requests - before;
        let one_login = match kind {
            DriverKind::Redfish => 2,
            DriverKind::Ipmi => 6,
        };
        assert!(
            requests <= one_login,
            "{kind}: {requests} requests for one refused login"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_http_500_are_transient() {
    let sim = rack(4, false).await;
    let cases = [
        (DriverKind::Redfish, FaultSetting::Busy),
        (DriverKind::Redfish, FaultSetting::Http500),
        (DriverKind::Ipmi, FaultSetting::Busy),
        (DriverKind::Ipmi, FaultSetting::Http500),
    ];
    for (index, (kind, fault)) in cases.into_iter().enumerate() {
        let node = node(&sim, index);
        let bmc = SimBmc {
            sim: &sim,
            node,
            kind,
        };
        let driver = bmc.driver();
        // Open the session first, so the fault hits a power call.
        assert!(driver.validate().await.is_ok(), "{kind}");
        node.apply_fault(fault);
        let result = driver.set_power(PowerAction::On).await;
        let Err(error) = result else {
            panic!("{kind} {fault:?}: the call succeeded");
        };
        assert!(error.is_transient(), "{kind} {fault:?}: {error:?}");
        if fault == FaultSetting::Busy {
            assert!(
                matches!(error, DriverError::Busy { .. }),
                "{kind}: {error:?}"
            );
        }
        if kind == DriverKind::Redfish && fault == FaultSetting::Busy {
            assert!(
                error.retry_after().is_some(),
                "503 without a Retry-After hint"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_accepts_commands_but_power_never_changes() {
    let sim = rack(2, false).await;
    for (index, kind) in BOTH.into_iter().enumerate() {
        let node = node(&sim, index);
        node.apply_fault(FaultSetting::Stuck);
        let bmc = SimBmc {
            sim: &sim,
            node,
            kind,
        };
        let driver = bmc.driver();
        assert!(driver.set_power(PowerAction::On).await.is_ok(), "{kind}");
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let state = driver.power_state().await;
            assert_eq!(state, Ok(PowerState::Off), "{kind}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bmcs_answer_within_the_deadline_and_time_out_beyond_it() {
    let sim = rack(2, false).await;
    for (index, kind) in BOTH.into_iter().enumerate() {
        let node = node(&sim, index);
        let bmc = SimBmc {
            sim: &sim,
            node,
            kind,
        };
        let mut config = bmc.config();
        config.options.call_timeout = Duration::from_secs(3);
        config.options.ipmi_retransmit_interval = Duration::from_secs(1);
        let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
        assert!(driver.validate().await.is_ok(), "{kind}");
        node.apply_fault(FaultSetting::Slow(Duration::from_millis(600)));
        let start = Instant::now();
        assert_eq!(driver.power_state().await, Ok(PowerState::Off), "{kind}");
        assert!(start.elapsed() >= Duration::from_millis(600), "{kind}");
        node.apply_fault(FaultSetting::Slow(Duration::from_secs(5)));
        let result = driver.power_state().await;
        assert!(
            matches!(result, Err(DriverError::Timeout { .. })),
            "{kind}: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_survives_twenty_percent_packet_loss() {
    let sim = rack(1, false).await;
    let node = node(&sim, 0);
    node.apply_fault(FaultSetting::PacketLoss(0.2));
    let bmc = SimBmc {
        sim: &sim,
        node,
        kind: DriverKind::Ipmi,
    };
    let mut config = bmc.config();
    // Opening a session takes five exchanges that each survive 20 % loss both
    // ways with p = 0.64; the driver resends each step (a lost RAKP 4 still
    // restarts the open), so the generous deadline is rarely approached.
    config.options.call_timeout = Duration::from_secs(20);
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    for round in 0..20 {
        let result = driver.power_state().await;
        assert_eq!(result, Ok(PowerState::Off), "round {round}");
    }
    assert!(driver.set_power(PowerAction::On).await.is_ok());
    let start = Instant::now();
    while driver.power_state().await != Ok(PowerState::On) {
        assert!(start.elapsed() < Duration::from_secs(10), "never came on");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_logs_in_again_when_the_session_expires() {
    let logs = logcapture::capture();
    let config = RackConfig {
        credentials: Credentials {
            username: "admin".into(),
            password: PASSWORD.into(),
        },
        session_timeout: Duration::from_millis(500),
        ..RackConfig::default()
    };
    let rack = Rack::start(config)
        .await
        .unwrap_or_else(|e| panic!("hw-sim: {e}"));
    let node = &rack.nodes()[0];
    let config = DriverConfig::new(
        DriverKind::Redfish,
        "http://127.0.0.1",
        Some(node.redfish_addr().port()),
        "admin",
        PASSWORD,
    );
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(driver.power_state().await, Ok(PowerState::On));
    assert!(logs
        .contents()
        .contains("Redfish session expired, logging in again"));
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_retries_a_reset_the_bmc_refuses_while_settling() {
    let config = RackConfig {
        credentials: Credentials {
            username: "admin".into(),
            password: PASSWORD.into(),
        },
        delays: Delays {
            power_on: Duration::from_millis(1200),
            power_off: Duration::from_millis(100),
            shutdown: Duration::from_millis(100),
        },
        initial_power: InitialPower::Off,
        ..RackConfig::default()
    };
    let rack = Rack::start(config)
        .await
        .unwrap_or_else(|e| panic!("hw-sim: {e}"));
    let node = &rack.nodes()[0];
    let mut config = DriverConfig::new(
        DriverKind::Redfish,
        "http://127.0.0.1",
        Some(node.redfish_addr().port()),
        "admin",
        PASSWORD,
    );
    config.options.call_timeout = Duration::from_secs(5);
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    assert!(driver.set_power(PowerAction::On).await.is_ok());
    // A graceful shutdown needs the OS up: the BMC answers 409
    // ActionParameterValueConflict while the server boots; the driver waits.
    let before = node.counters().power_commands;
    assert!(driver.set_power(PowerAction::SoftOff).await.is_ok());
    assert!(
        node.counters().power_commands - before >= 2,
        "the conflict was not retried"
    );
    let start = Instant::now();
    while driver.power_state().await != Ok(PowerState::Off) {
        assert!(start.elapsed() < Duration::from_secs(5), "never went off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After `drop_sessions` the next call logs in again and succeeds; during
/// a `bmc_reboot` a call fails transiently, and after it the driver
/// recovers on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_recover_from_dropped_sessions_and_a_bmc_reboot() {
    let sim = rack(2, false).await;
    let runs = BOTH.into_iter().enumerate().map(|(index, kind)| {
        let sim = &sim;
        async move {
            let node = node(sim, index);
            let bmc = SimBmc { sim, node, kind };
            let mut config = bmc.config();
            config.options.call_timeout = Duration::from_secs(2);
            let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(driver.power_state().await, Ok(PowerState::Off), "{kind}");
            node.apply_fault(FaultSetting::DropSessions);
            assert_eq!(
                driver.power_state().await,
                Ok(PowerState::Off),
                "{kind}: after drop_sessions"
            );
            node.apply_fault(FaultSetting::BmcReboot(Duration::from_secs(3)));
            let down = driver.power_state().await;
            assert!(
                down.as_ref().is_err_and(DriverError::is_transient),
                "{kind}: during the reboot: {down:?}"
            );
            let start = Instant::now();
            while node.is_unreachable() {
                assert!(start.elapsed() < Duration::from_secs(10), "{kind}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(
                driver.power_state().await,
                Ok(PowerState::Off),
                "{kind}: after the reboot"
            );
            driver.close().await;
        }
    });
    futures::future::join_all(runs).await;
}

/// A BMC whose link drops for a while after each power change passes the
/// suite: IPMI retransmits and the Redfish driver's one retry of a read
/// carry the drivers through. An IPMI BMC that drops requests coming sooner
/// than `min_interval` after the last one passes it with the driver's
/// `ipmi_min_interval` set to match: every datagram, handshake steps
/// included, waits its turn, so none is dropped and no power command is
/// lost. (Against `min_interval`, a Redfish 503 is a `Busy` error for the
/// conductor to back off on, below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_that_come_and_go_pass_the_suite() {
    let cases = [
        (
            DriverKind::Ipmi,
            FaultSetting::MinInterval(Duration::from_millis(100)),
        ),
        (
            DriverKind::Ipmi,
            FaultSetting::LinkFlapOnPower(Duration::from_millis(300)),
        ),
        (
            DriverKind::Redfish,
            FaultSetting::LinkFlapOnPower(Duration::from_millis(300)),
        ),
    ];
    let sim = rack(cases.len(), false).await;
    let bmcs: Vec<SimBmc<'_>> = cases
        .into_iter()
        .enumerate()
        .map(|(index, (kind, fault))| {
            let node = node(&sim, index);
            node.apply_fault(fault);
            SimBmc {
                sim: &sim,
                node,
                kind,
            }
        })
        .collect();
    let reports = futures::future::join_all(bmcs.iter().map(run_suite)).await;
    for (bmc, report) in bmcs.iter().zip(&reports) {
        assert_fully_checked(report, &bmc.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_min_interval_is_busy_then_served() {
    let sim = rack(1, false).await;
    let node = node(&sim, 0);
    let bmc = SimBmc {
        sim: &sim,
        node,
        kind: DriverKind::Redfish,
    };
    let driver = bmc.driver();
    assert!(driver.validate().await.is_ok());
    node.apply_fault(FaultSetting::MinInterval(Duration::from_secs(3600)));
    let before = node.counters().requests;
    let refused = driver.power_state().await;
    assert!(
        matches!(&refused, Err(e @ DriverError::Busy { retry_after: Some(_), .. }) if e.is_transient()),
        "{refused:?}"
    );
    assert_eq!(
        node.counters().requests,
        before + 1,
        "refused once, not hammered"
    );
    let mut faults = node.faults();
    faults.min_interval = Some(Duration::from_millis(200));
    assert_eq!(node.set_faults(faults), Ok(()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(driver.power_state().await, Ok(PowerState::Off));
}
