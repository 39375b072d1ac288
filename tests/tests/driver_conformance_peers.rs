//! The driver conformance suite against third-party BMC emulators:
//! sushy-emulator (Redfish) and OpenIPMI ipmi_sim (IPMI). Both must be
//! installed (`scripts/install-test-deps.sh`); a missing one fails the test.
//! Every test captures trace-level logs and checks the password is absent.

use std::time::{Duration, Instant};

use baton_drivers::{build_driver, DriverConfig, DriverError, DriverKind, PowerAction};
use baton_tests::conformance::{
    run_suite, BmcUnderTest, BootReadback, Expect, Record, Report, Truth, FULL_RUN,
};
use baton_tests::logcapture;
use baton_tests::peers::{free_udp_port, IpmiSim, PeerError, SushyEmulator};

fn started<T>(peer: Result<T, PeerError>) -> T {
    peer.unwrap_or_else(|e| panic!("{e}"))
}

/// `n` as the count a [`Record`] holds.
fn count(n: usize) -> Option<u64> {
    u64::try_from(n).ok()
}

fn assert_no_password(username: &str, password: &str) {
    let logs = logcapture::capture();
    assert!(!logs.is_empty(), "the log capture saw nothing");
    let leaked = logs.leaked_secret(username, password);
    assert!(leaked.is_none(), "{leaked:?} appears in the trace logs");
}

struct Sushy(SushyEmulator);

impl BmcUnderTest for Sushy {
    fn name(&self) -> String {
        format!("sushy-emulator on port {}", self.0.port())
    }

    fn config(&self) -> DriverConfig {
        let mut config = DriverConfig::new(
            DriverKind::Redfish,
            "http://127.0.0.1",
            Some(self.0.port()),
            SushyEmulator::USERNAME,
            SushyEmulator::PASSWORD,
        );
        config.options.call_timeout = Duration::from_secs(10);
        config
    }

    fn expect(&self) -> Expect {
        // The fake driver applies a power change 1–11 s after the request.
        Expect {
            settle: Duration::from_secs(20),
            power_steps: true,
            // The fake driver offers no PowerCycle: ForceRestart stands in.
            power_actions: Some(PowerAction::ALL.to_vec()),
            boot_readback: BootReadback::DeviceAlwaysPersistent,
            // The fake driver lists Nmi but answers 501.
            nmi: Some(false),
            nmi_step: true,
        }
    }

    fn record(&self) -> Record {
        let resets = self.0.resets();
        let counted = |types: &[&str]| {
            count(
                resets
                    .iter()
                    .filter(|r| types.contains(&r.as_str()))
                    .count(),
            )
        };
        Record {
            boots: counted(&[
                "On",
                "ForceOn",
                "ForceRestart",
                "GracefulRestart",
                "PowerCycle",
            ]),
            soft_offs: counted(&["GracefulShutdown"]),
            hard_offs: counted(&["ForceOff"]),
        }
    }
}

struct Sim(IpmiSim);

impl BmcUnderTest for Sim {
    fn name(&self) -> String {
        format!("ipmi_sim on port {}", self.0.port())
    }

    fn config(&self) -> DriverConfig {
        let mut config = DriverConfig::new(
            DriverKind::Ipmi,
            "127.0.0.1",
            Some(self.0.port()),
            IpmiSim::USERNAME,
            IpmiSim::PASSWORD,
        );
        config.options.call_timeout = Duration::from_secs(10);
        config.options.ipmi_retransmit_interval = Duration::from_millis(500);
        config
    }

    fn expect(&self) -> Expect {
        Expect {
            settle: Duration::from_secs(10),
            power_steps: true,
            // IPMI has no soft reboot.
            power_actions: Some(
                PowerAction::ALL
                    .into_iter()
                    .filter(|a| *a != PowerAction::SoftReboot)
                    .collect(),
            ),
            boot_readback: BootReadback::NoValidBit,
            // ipmi_sim answers Chassis Control NMI with 0xCC.
            nmi: Some(false),
            nmi_step: true,
        }
    }

    fn ground_truth(&self) -> Truth {
        match self.0.power_is_on() {
            true => Truth::On,
            false => Truth::Off,
        }
    }

    fn record(&self) -> Record {
        let log = self.0.command_log();
        let counted =
            |lines: &[&str]| count(log.iter().filter(|l| lines.contains(&l.as_str())).count());
        // ipmi_sim runs a power cycle as power=0 then power=1.
        Record {
            boots: counted(&["power=1", "reset"]),
            soft_offs: counted(&["shutdown"]),
            hard_offs: counted(&["power=0"]),
        }
    }
}

/// The steps and checks every peer must run.
fn assert_fully_checked(report: &Report) {
    assert_eq!(report.steps, FULL_RUN);
    assert_eq!(
        report.checked,
        [
            "reboot: one restart",
            "soft off: graceful",
            "soft off: no hard off",
            "power cycle: one restart"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_emulator_passes_the_redfish_suite() {
    logcapture::capture();
    let sushy = Sushy(started(SushyEmulator::start()));
    let report = run_suite(&sushy).await;
    assert_fully_checked(&report);
    assert_no_password(SushyEmulator::USERNAME, SushyEmulator::PASSWORD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sushy_emulator_with_several_systems_needs_a_system_id() {
    let sushy = started(SushyEmulator::start_with_systems(2));
    let bmc = Sushy(sushy);
    let driver = build_driver(&bmc.config()).unwrap_or_else(|e| panic!("{e}"));
    match driver.power_state().await {
        Err(DriverError::Config(message)) => {
            assert!(message.contains("2 systems"), "{message}");
            assert!(message.contains("system_id"), "{message}");
        }
        other => panic!("want a Config error listing the systems, got {other:?}"),
    }
    let mut config = bmc.config();
    config.system_id = Some("6d3d6b0e-6f63-4d5b-9b5e-626174f6e002".into());
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    let state = driver.power_state().await;
    assert!(state.is_ok(), "with system_id: {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_sim_passes_the_ipmi_suite() {
    logcapture::capture();
    let sim = Sim(started(IpmiSim::start()));
    let report = run_suite(&sim).await;
    assert_fully_checked(&report);
    // The chassis-control program really saw the commands.
    let log = sim.0.command_log();
    assert!(log.contains(&"power=1".to_owned()), "{log:?}");
    assert!(log.contains(&"power=0".to_owned()), "{log:?}");
    assert_eq!(sim.0.boot_device().as_deref(), Some("default"), "{log:?}");
    assert_no_password(IpmiSim::USERNAME, IpmiSim::PASSWORD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_without_an_answer_times_out_within_the_deadline() {
    // A bound UDP socket that never answers.
    let port = free_udp_port().unwrap_or_else(|e| panic!("{e}"));
    let _silent = std::net::UdpSocket::bind(("127.0.0.1", port));
    let mut config = DriverConfig::new(DriverKind::Ipmi, "127.0.0.1", Some(port), "admin", "pw");
    config.options.call_timeout = Duration::from_secs(2);
    config.options.ipmi_retransmit_interval = Duration::from_millis(300);
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    let result = driver.power_state().await;
    let elapsed = start.elapsed();
    assert!(
        matches!(result, Err(DriverError::Timeout { .. })),
        "{result:?}"
    );
    assert!(result.is_err_and(|e| e.is_transient()));
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_connection_refused_is_unreachable_and_transient() {
    let port = baton_tests::peers::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let config = DriverConfig::new(
        DriverKind::Redfish,
        "http://127.0.0.1",
        Some(port),
        "admin",
        "pw",
    );
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    let result = driver.validate().await;
    assert!(
        matches!(result, Err(DriverError::Unreachable { .. })),
        "{result:?}"
    );
    assert!(result.is_err_and(|e| e.is_transient()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_to_a_closed_port_is_unreachable_and_transient() {
    // Nothing bound: loopback answers ICMP port unreachable.
    let port = free_udp_port().unwrap_or_else(|e| panic!("{e}"));
    let mut config = DriverConfig::new(DriverKind::Ipmi, "127.0.0.1", Some(port), "admin", "pw");
    config.options.call_timeout = Duration::from_secs(5);
    let driver = build_driver(&config).unwrap_or_else(|e| panic!("{e}"));
    let result = driver.power_state().await;
    assert!(
        matches!(result, Err(DriverError::Unreachable { .. })),
        "{result:?}"
    );
    assert!(result.is_err_and(|e| e.is_transient()));
}
