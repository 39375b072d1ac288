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
        credentials: Credentials {
            username: "admin".into(),
            password: "secret".into(),
        },
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
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(n.power_state(), PowerState::PoweringOn);
    assert_eq!(n.last_boot(), BootTarget::Pxe);
    assert_eq!(n.boot_override().enabled, BootEnabled::Disabled);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(n.power_state(), PowerState::On);
    n.set_power_out_of_band(false);
    n.set_power_out_of_band(true);
    assert_eq!(n.last_boot(), BootTarget::None);
    let c = n.counters();
    assert_eq!((c.boots, c.power_offs, c.power_commands), (2, 2, 1));
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
