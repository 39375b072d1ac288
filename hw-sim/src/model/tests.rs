//! Tests of the node model with tokio's paused clock: transitions, faults,
//! boot override consumption, counters.

use std::sync::Arc;
use std::time::Duration;

use super::*;

fn node(powered_on: bool) -> Arc<Node> {
    let settings = Arc::new(NodeSettings {
        latency: Duration::from_millis(10),
        delays: Delays {
            power_on: Duration::from_secs(2),
            power_off: Duration::from_secs(1),
            shutdown: Duration::from_secs(5),
        },
        power_cycle_off: Duration::from_secs(1),
        credentials: Credentials {
            username: "admin".into(),
            password: "secret".into(),
        },
        boot_flag_valid_timeout: Duration::from_secs(60),
    });
    Arc::new(Node::new(
        NodeIdentity {
            index: 0,
            name: "node-0000".into(),
            power_domain: "pdu-00".into(),
            uuid: Uuid::nil(),
        },
        Endpoints {
            address: IpAddr::from([127, 0, 0, 1]),
            redfish_port: 1,
            ipmi_port: None,
        },
        settings,
        powered_on,
        Quirks::default(),
    ))
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_takes_the_os_time() {
    let n = node(true);
    assert_eq!(
        n.power_command(PowerAction::GracefulShutdown),
        Ok(CommandOutcome::Applied)
    );
    assert_eq!(n.power_state(), PowerState::ShuttingDown);
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(n.power_state(), PowerState::ShuttingDown);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(n.power_state(), PowerState::Off);
    assert_eq!(n.counters().power_offs, 1);
}

#[tokio::test(start_paused = true)]
async fn hung_os_then_recovery_finishes_the_shutdown() {
    let n = node(true);
    n.apply_fault(FaultSetting::HungOs);
    assert_eq!(
        n.power_command(PowerAction::GracefulShutdown),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(n.power_state(), PowerState::ShuttingDown);
    assert_eq!(n.set_faults(Faults::default()), Ok(()));
    assert_eq!(n.power_state(), PowerState::Off);
}

#[tokio::test(start_paused = true)]
async fn stuck_ignores_commands_but_counts_them() {
    let n = node(false);
    n.apply_fault(FaultSetting::Stuck);
    assert_eq!(
        n.power_command(PowerAction::On),
        Ok(CommandOutcome::Ignored)
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(n.power_state(), PowerState::Off);
    assert_eq!(n.counters().power_commands, 1);
}

#[tokio::test(start_paused = true)]
async fn once_override_is_used_by_the_next_boot_only() {
    let n = node(true);
    n.set_boot_override(BootOverride {
        target: BootTarget::Pxe,
        enabled: BootEnabled::Once,
        mode: BootMode::Uefi,
    });
    assert_eq!(
        n.power_command(PowerAction::ForceRestart),
        Ok(CommandOutcome::Applied)
    );
    // A warm reset: the host reboots at once, power never leaves on.
    assert_eq!(n.power_state(), PowerState::On);
    assert_eq!(n.last_boot(), BootTarget::Pxe);
    assert_eq!(n.boot_override().enabled, BootEnabled::Disabled);
    n.set_power_out_of_band(false);
    n.set_power_out_of_band(true);
    assert_eq!(n.last_boot(), BootTarget::None);
    let c = n.counters();
    assert_eq!((c.boots, c.power_offs, c.power_commands), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn admission_pays_latency_and_plays_faults() {
    let n = node(true);
    let start = Instant::now();
    let guard = n.begin_request();
    assert_eq!(guard.admit().await, Admission::Serve);
    assert_eq!(start.elapsed(), Duration::from_millis(10));
    n.apply_fault(FaultSetting::Slow(Duration::from_millis(500)));
    n.apply_fault(FaultSetting::Busy);
    let second = n.begin_request();
    let start = Instant::now();
    assert_eq!(second.admit().await, Admission::Busy);
    assert_eq!(start.elapsed(), Duration::from_millis(510));
    assert_eq!(n.counters().max_concurrent, 2);
    drop((guard, second));
    assert_eq!(n.counters().in_flight, 0);
    n.apply_fault(FaultSetting::NoAnswer);
    assert_eq!(n.begin_request().admit().await, Admission::NoAnswer);
}

#[tokio::test(start_paused = true)]
async fn the_request_log_holds_each_span_and_its_command() {
    let n = node(true);
    let read = n.begin_request();
    let arrived = Instant::now();
    read.admit().await;
    drop(read);
    tokio::time::sleep(Duration::from_millis(100)).await;
    n.apply_fault(FaultSetting::Stuck);
    let command = n.begin_request();
    command.admit().await;
    assert_eq!(
        n.power_command(PowerAction::ForceOff),
        Ok(CommandOutcome::Ignored)
    );
    drop(command);
    let log = n.request_log();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].arrived, log[0].command), (arrived, None));
    assert_eq!(log[0].ended, arrived + Duration::from_millis(10));
    assert_eq!(
        log[1].arrived - log[0].ended,
        Duration::from_millis(100),
        "the pause between them"
    );
    assert_eq!(
        log[1].command,
        Some(PowerAction::ForceOff),
        "an ignored command is still the command the request carried"
    );
    n.reset_counters();
    assert!(n.request_log().is_empty());
}

#[test]
fn wrong_credentials_refuses_the_configured_password() {
    let n = node(true);
    assert!(n.check_credentials("admin", "secret"));
    assert!(!n.check_credentials("admin", "wrong"));
    assert!(!n.check_credentials("root", "secret"));
    n.apply_fault(FaultSetting::WrongCredentials);
    assert!(!n.check_credentials("admin", "secret"));
    assert_ne!(n.password_for("admin").as_deref(), Some("secret"));
    let rotated = n.password_for("admin").unwrap_or_default();
    assert_ne!(
        rotated.as_bytes()[..6],
        b"secret"[..],
        "the change must show within the 20 bytes an IPMI key uses"
    );
}

#[test]
fn nmi_records_a_crash_dump_only_when_on() {
    let n = node(true);
    assert_eq!(
        n.power_command(PowerAction::Nmi),
        Ok(CommandOutcome::Applied)
    );
    assert_eq!(n.counters().crash_dumps, 1);
    n.set_power_out_of_band(false);
    assert!(n.power_command(PowerAction::Nmi).is_err());
    assert_eq!(n.counters().crash_dumps, 1);
}

fn pxe(enabled: BootEnabled) -> BootOverride {
    BootOverride {
        target: BootTarget::Pxe,
        enabled,
        mode: BootMode::Uefi,
    }
}

#[tokio::test(start_paused = true)]
async fn ipmi_boot_flags_lose_their_valid_bit_after_the_timeout() {
    for enabled in [BootEnabled::Once, BootEnabled::Continuous] {
        let n = node(true);
        n.set_boot_flags(pxe(enabled));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(n.boot_override(), pxe(enabled), "valid for 60 s");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(n.boot_override().enabled, BootEnabled::Disabled);
        assert_eq!(n.counters().boot_flags_expired, 1);
        // The reboot after the timeout goes by the normal boot order.
        assert_eq!(
            n.chassis_control(PowerAction::PowerCycle),
            Ok(CommandOutcome::Applied)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(n.last_boot(), BootTarget::None);
    }
}

#[tokio::test(start_paused = true)]
async fn parameter_3_bit_3_keeps_the_boot_flags_valid() {
    let n = node(true);
    n.set_valid_bit_clearing(ValidBitClearing::from_byte(0x08).expect("bit 3 is defined"));
    n.set_boot_flags(pxe(BootEnabled::Once));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(n.boot_override(), pxe(BootEnabled::Once));
    assert_eq!(n.counters().boot_flags_expired, 0);
    // Other bits do not cover the timeout; reserved bits are refused.
    assert_eq!(ValidBitClearing::from_byte(0x20), None);
    n.set_valid_bit_clearing(ValidBitClearing::from_byte(0x17).expect("bits 4:0"));
    n.set_boot_flags(pxe(BootEnabled::Once));
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(n.boot_override().enabled, BootEnabled::Disabled);
}

#[tokio::test(start_paused = true)]
async fn a_chassis_control_command_stops_the_valid_bit_timer() {
    let n = node(false);
    n.set_boot_flags(pxe(BootEnabled::Continuous));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        n.chassis_control(PowerAction::On),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(n.last_boot(), BootTarget::Pxe);
    // Persistent flags keep their valid bit after the boot they applied to.
    assert_eq!(n.boot_override(), pxe(BootEnabled::Continuous));
    // A Redfish reset is no Chassis Control command: the timer runs on.
    n.set_boot_flags(pxe(BootEnabled::Continuous));
    assert_eq!(
        n.power_command(PowerAction::ForceRestart),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(n.boot_override().enabled, BootEnabled::Disabled);
    assert_eq!(n.counters().boot_flags_expired, 1);
}

#[tokio::test(start_paused = true)]
async fn a_boot_before_the_timeout_uses_the_flags_even_when_read_after_it() {
    let n = node(true);
    n.set_boot_flags(pxe(BootEnabled::Once));
    // A Redfish reset 10 s in: its boot starts at 11 s, before the timeout.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        n.power_command(PowerAction::ForceRestart),
        Ok(CommandOutcome::Applied)
    );
    // Nothing reads the node until long after the timeout.
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(n.last_boot(), BootTarget::Pxe);
    assert_eq!(
        n.counters().boot_flags_expired,
        0,
        "a used once-flag cannot expire"
    );
}

#[tokio::test(start_paused = true)]
async fn redfish_overrides_run_no_valid_bit_timer() {
    let n = node(true);
    n.set_boot_flags(pxe(BootEnabled::Once));
    n.set_boot_override(pxe(BootEnabled::Continuous));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(n.boot_override(), pxe(BootEnabled::Continuous));
}

#[tokio::test(start_paused = true)]
async fn a_power_cycle_reports_off_for_its_hold_then_boots() {
    let n = node(true);
    assert_eq!(
        n.power_command(PowerAction::PowerCycle),
        Ok(CommandOutcome::Applied)
    );
    assert_eq!(n.power_state(), PowerState::Off);
    assert_eq!(n.counters().power_offs, 1);
    tokio::time::advance(Duration::from_millis(600)).await;
    // A second cycle inside the first is accepted and restarts the hold.
    assert_eq!(
        n.power_command(PowerAction::PowerCycle),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(n.power_state(), PowerState::Off);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(n.power_state(), PowerState::PoweringOn);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(n.power_state(), PowerState::On);
    let c = n.counters();
    assert_eq!((c.boots, c.power_offs, c.power_commands), (1, 1, 2));
    // Warm resets back to back: both accepted, both reboot, power stays on.
    for _ in 0..2 {
        assert_eq!(
            n.power_command(PowerAction::ForceRestart),
            Ok(CommandOutcome::Applied)
        );
        assert_eq!(n.power_state(), PowerState::On);
    }
    assert_eq!((n.counters().boots, n.counters().power_offs), (3, 1));
}

fn with_quirks(n: &Node, change: impl FnOnce(&mut Quirks)) {
    let mut q = n.quirks();
    change(&mut q);
    n.set_quirks(q);
}

#[tokio::test(start_paused = true)]
async fn binary_style_reads_on_until_power_drops_and_off_until_power_is_good() {
    let n = node(true);
    with_quirks(&n, |q| q.power_state_style = PowerStateStyle::Binary);
    n.apply_fault(FaultSetting::HungOs);
    assert_eq!(
        n.power_command(PowerAction::GracefulShutdown),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(n.power_state(), PowerState::ShuttingDown);
    assert_eq!(n.reported_power_state(), PowerState::On, "hung OS reads On");
    assert_eq!(n.status().reported_power_state, PowerState::On);
    assert_eq!(
        n.power_command(PowerAction::ForceOff),
        Ok(CommandOutcome::Applied)
    );
    assert_eq!(
        n.reported_power_state(),
        PowerState::On,
        "power not yet dropped"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(n.reported_power_state(), PowerState::Off);
    assert_eq!(
        n.power_command(PowerAction::On),
        Ok(CommandOutcome::Applied)
    );
    assert_eq!(n.power_state(), PowerState::PoweringOn);
    assert_eq!(n.reported_power_state(), PowerState::On, "POST reads On");
}

#[tokio::test(start_paused = true)]
async fn stale_style_reports_the_old_state_for_a_while_after_each_change() {
    let n = node(true);
    with_quirks(&n, |q| {
        q.power_state_style = PowerStateStyle::Stale(Duration::from_secs(2));
    });
    assert_eq!(n.reported_power_state(), PowerState::On);
    assert_eq!(
        n.power_command(PowerAction::ForceOff),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(n.power_state(), PowerState::Off);
    assert_eq!(
        n.reported_power_state(),
        PowerState::On,
        "still the old state"
    );
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert_eq!(n.reported_power_state(), PowerState::ShuttingDown);
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_eq!(n.reported_power_state(), PowerState::Off);
}

#[tokio::test(start_paused = true)]
async fn a_graceful_shutdown_the_bmc_gives_up_leaves_the_server_on() {
    let n = node(true);
    with_quirks(&n, |q| q.shutdown_timeout = Some(Duration::from_secs(300)));
    n.apply_fault(FaultSetting::HungOs);
    assert_eq!(
        n.power_command(PowerAction::GracefulShutdown),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_secs(299)).await;
    assert_eq!(n.power_state(), PowerState::ShuttingDown);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        n.power_state(),
        PowerState::On,
        "given up: falls back to On"
    );
    assert_eq!(n.counters().power_offs, 0);
    // A healthy OS that shuts down in time is not given up.
    assert_eq!(n.set_faults(Faults::default()), Ok(()));
    assert_eq!(
        n.power_command(PowerAction::GracefulShutdown),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(n.power_state(), PowerState::Off);
}

#[tokio::test(start_paused = true)]
async fn mid_transition_commands_are_refused_or_ignored() {
    let n = node(false);
    assert_eq!(
        n.power_command(PowerAction::On),
        Ok(CommandOutcome::Applied)
    );
    assert!(
        n.power_command(PowerAction::GracefulShutdown).is_err(),
        "refused by default"
    );
    with_quirks(&n, |q| q.mid_transition = MidTransition::Ignore);
    assert_eq!(
        n.power_command(PowerAction::GracefulShutdown),
        Ok(CommandOutcome::Ignored)
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        n.power_state(),
        PowerState::On,
        "the ignored command did nothing"
    );
    assert!(
        n.power_command(PowerAction::PowerCycle).is_ok()
            && n.power_command(PowerAction::Nmi) == Ok(CommandOutcome::Ignored),
        "an NMI while the power is off for a cycle is ignored too"
    );
    // Settled states still refuse what they cannot do.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        n.power_command(PowerAction::ForceOff),
        Ok(CommandOutcome::Applied)
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(n.power_command(PowerAction::Nmi).is_err());
}

#[test]
fn power_state_styles_parse_and_print() {
    for text in ["ideal", "binary", "stale=2s"] {
        let style: Result<PowerStateStyle, _> = text.parse();
        assert_eq!(style.map(|s| s.to_string()).as_deref(), Ok(text));
    }
    assert!("stale".parse::<PowerStateStyle>().is_err());
    assert!("stale=2days".parse::<PowerStateStyle>().is_err());
    let quirks: Result<Quirks, _> = serde_json::from_str(
        r#"{"power_state_style": "binary", "shutdown_timeout": "300s", "mid_transition": "ignore"}"#,
    );
    assert!(
        quirks.is_ok_and(|q| q.power_state_style == PowerStateStyle::Binary
            && q.mid_transition == MidTransition::Ignore)
    );
}

#[tokio::test(start_paused = true)]
async fn min_interval_refuses_requests_that_come_too_soon() {
    let n = node(true);
    n.apply_fault(FaultSetting::MinInterval(Duration::from_millis(100)));
    assert_eq!(n.begin_request().admit().await, Admission::Serve);
    // The 10 ms latency was paid after arrival: 10 ms later is too soon.
    assert_eq!(n.begin_request().admit().await, Admission::TooSoon);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(n.begin_request().admit().await, Admission::Serve);
    assert_eq!(n.faults().min_interval, Some(Duration::from_millis(100)));
}

#[tokio::test(start_paused = true)]
async fn bmc_reboot_drops_sessions_and_is_unreachable_for_a_while() {
    let n = node(true);
    assert_eq!(n.session_epoch(), 0);
    n.apply_fault(FaultSetting::DropSessions);
    assert_eq!(n.session_epoch(), 1, "drop_sessions invalidates once");
    assert!(n.faults().is_healthy(), "an event leaves no lasting fault");
    n.apply_fault(FaultSetting::BmcReboot(Duration::from_secs(30)));
    assert_eq!(n.session_epoch(), 2);
    assert!(n.is_unreachable());
    assert_eq!(n.begin_request().admit().await, Admission::Unreachable);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(!n.is_unreachable());
    assert_eq!(n.begin_request().admit().await, Admission::Serve);
}

#[tokio::test(start_paused = true)]
async fn link_flap_on_power_takes_the_link_down_after_each_power_change() {
    let n = node(false);
    n.apply_fault(FaultSetting::LinkFlapOnPower(Duration::from_secs(2)));
    assert!(!n.is_unreachable());
    assert_eq!(
        n.power_command(PowerAction::On),
        Ok(CommandOutcome::Applied)
    );
    assert!(n.is_unreachable());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(!n.is_unreachable());
    assert_eq!(
        n.power_command(PowerAction::On),
        Ok(CommandOutcome::AlreadyInState)
    );
    assert!(!n.is_unreachable(), "no change, no flap");
    n.set_power_out_of_band(false);
    assert!(n.is_unreachable());
}

#[test]
fn event_faults_parse_and_print() {
    for text in [
        "drop_sessions",
        "bmc_reboot=30s",
        "link_flap_on_power=2s",
        "min_interval=100ms",
    ] {
        let setting: Result<FaultSetting, _> = text.parse();
        assert_eq!(setting.map(|s| s.to_string()).as_deref(), Ok(text));
    }
    assert!("bmc_reboot".parse::<FaultSetting>().is_err());
    assert!("min_interval=2days".parse::<FaultSetting>().is_err());
    assert!(FaultSetting::DropSessions.is_event());
    assert!(!FaultSetting::MinInterval(Duration::ZERO).is_event());
}
