//! The conductor against BMCs that misbehave (hw-sim faults): wrong
//! credentials fail at once with an error a person can act on, a busy BMC
//! is retried until it answers, a BMC that ignores commands times out with
//! a clear error — on Redfish and on IPMI.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baton_hwsim::Faults;
use baton_tests::daemon::wait_until;
use baton_tests::fleet::Fleet;

fn set_faults(fleet: &Fleet, name: &str, faults: Faults) {
    fleet.rack.node(name).unwrap().set_faults(faults).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_once_without_retrying() {
    let fleet = Fleet::start(2, |_| {}).await;
    for index in 0..2 {
        let name = fleet.name(index);
        set_faults(
            &fleet,
            &name,
            Faults {
                wrong_credentials: true,
                ..Faults::default()
            },
        );
        let before = fleet.counters(&name).requests;
        fleet.power(&name, "power off").await;
        let states = fleet.settled(&name).await;
        let error = states.last_error.expect("an error");
        assert!(error.contains("credentials"), "{error}");
        assert!(error.contains("baton node set"), "says what to do: {error}");
        let counters = fleet.counters(&name);
        assert_eq!(counters.power_commands, 0);
        // One login (Redfish: service root + session; IPMI: the handshake),
        // not one per retry.
        let spent = counters.requests - before;
        assert!(spent <= 6, "{name}: {spent} requests for one refused login");
        assert!(fleet.sim_power_on(&name));
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_bmc_is_retried_until_it_answers() {
    let fleet = Fleet::start(2, |config| config.conductor.max_retries = 6).await;
    for index in 0..2 {
        let name = fleet.name(index);
        set_faults(
            &fleet,
            &name,
            Faults {
                busy: true,
                ..Faults::default()
            },
        );
        let before = fleet.counters(&name).requests;
        fleet.power(&name, "power off").await;
        wait_until("a refused try", Duration::from_secs(10), || async {
            (fleet.counters(&name).requests > before).then_some(())
        })
        .await;
        set_faults(&fleet, &name, Faults::default());
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None);
        assert_eq!(states.power_state, Some(baton_state::PowerState::Off));
        assert!(!fleet.sim_power_on(&name));
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_ignores_commands_times_out_clearly() {
    let fleet = Fleet::start(2, |config| {
        config.conductor.power_state_change_timeout = Duration::from_secs(2);
    })
    .await;
    for index in 0..2 {
        let name = fleet.name(index);
        set_faults(
            &fleet,
            &name,
            Faults {
                stuck: true,
                ..Faults::default()
            },
        );
        fleet.power(&name, "power off").await;
        let states = fleet.settled(&name).await;
        let error = states.last_error.expect("an error");
        assert!(
            error.contains("did not reach power off within 2s"),
            "{error}"
        );
        assert!(fleet.counters(&name).power_commands >= 1);
        assert!(fleet.sim_power_on(&name));
    }
    fleet.stop().await;
}

/// A soft power off that the OS never finishes falls back to a hard one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_os_gets_a_hard_power_off_after_the_soft_timeout() {
    let fleet = Fleet::start(2, |config| {
        config.conductor.soft_power_off_timeout = Duration::from_secs(1);
    })
    .await;
    for index in 0..2 {
        let name = fleet.name(index);
        set_faults(
            &fleet,
            &name,
            Faults {
                hung_os: true,
                ..Faults::default()
            },
        );
        let accepted = fleet.power(&name, "soft power off").await;
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None, "{name}");
        assert!(!fleet.sim_power_on(&name));
        assert_eq!(fleet.counters(&name).power_commands, 2, "soft, then hard");
        let record = fleet.action_record(&name, &accepted.request_id).await;
        let events: Vec<_> = record
            .instance_action
            .events
            .iter()
            .map(|e| e.event.as_str())
            .collect();
        assert!(events.contains(&"bmc_soft_power_off"), "{events:?}");
        assert!(events.contains(&"bmc_power_off"), "{events:?}");
    }
    fleet.stop().await;
}
