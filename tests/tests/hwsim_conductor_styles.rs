//! The conductor end to end against BMCs that report power the way
//! OpenBMC does (`power_state_style = binary`: `On` until the power drops,
//! `Off` until it is good, no transitional states) and against BMCs whose
//! reports lag (`stale=D`: the old state for D after each change), beside
//! the `ideal` style of the other conductor tests: off, on, a hard reboot
//! and a power cycle each reach the BMC once (a stale report may have an on
//! or off sent again, see `steps.rs`), and hw-sim agrees with what batond
//! records. A BMC that drops a command sent mid-transition while answering
//! it as done has it sent again.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baton_hwsim::{MidTransition, PowerStateStyle, RackConfig};
use baton_tests::fleet::Fleet;
use serde_json::json;

fn rack(nodes: usize, style: PowerStateStyle) -> RackConfig {
    let mut config = baton_tests::hwsim::config(nodes);
    config.quirks.power_state_style = style;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_changes_reach_binary_reporting_bmcs_once() {
    power_changes_reach_bmcs_once(PowerStateStyle::Binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_changes_reach_stale_reporting_bmcs_once() {
    power_changes_reach_bmcs_once(PowerStateStyle::Stale(Duration::from_millis(1200))).await;
}

/// One Redfish and one IPMI node reporting in `style`.
async fn power_changes_reach_bmcs_once(style: PowerStateStyle) {
    let fleet = Fleet::start_rack(rack(2, style), |_| {}).await;
    for index in 0..2 {
        let name = fleet.name(index);
        let before = fleet.counters(&name);

        fleet.power(&name, "power off").await;
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None, "{name}");
        assert_eq!(states.power_state, Some(baton_state::PowerState::Off));
        assert!(!fleet.sim_power_on(&name), "hw-sim says {name} is off");

        fleet.power(&name, "power on").await;
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None, "{name}");
        assert_eq!(states.power_state, Some(baton_state::PowerState::On));
        assert!(fleet.sim_power_on(&name), "hw-sim says {name} is on");

        let r = fleet
            .action(&name, json!({"reboot": {"type": "HARD"}}))
            .await;
        assert_eq!(r.status.as_u16(), 202, "{:?}", r.body);
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None, "{name}");

        fleet.power(&name, "power cycle").await;
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None, "{name}");
        assert_eq!(states.power_state, Some(baton_state::PowerState::On));
        assert!(fleet.sim_power_on(&name), "hw-sim says {name} is on");

        let after = fleet.counters(&name);
        let commands = after.power_commands - before.power_commands;
        if matches!(style, PowerStateStyle::Stale(_)) {
            // A lagging report looks like a dropped command: an on or off
            // may go again, harmlessly (the boots below stay exact).
            assert!(commands >= 4, "{name}: {commands} commands");
        } else {
            assert_eq!(commands, 4, "{name}");
        }
        assert_eq!(after.boots - before.boots, 3, "{name}: on, reset, cycle");
    }
    assert!(fleet.rack.stats().max_concurrent_per_bmc <= 1);
    fleet.stop().await;
}

/// A BMC that drops a command sent mid-transition but answers it as done
/// (`mid_transition = ignore`: 204 / 00h, x86-power-control's "No action
/// taken") and reports power as OpenBMC does (`binary`, so a server in a
/// long POST already reads On): a graceful power off asked for during POST
/// is ignored. batond must not take the 2xx as done: reads that show the
/// node settled where it was make it send the (repeatable) command again,
/// and the node ends off — gracefully, without the hard fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_bmc_ignored_mid_transition_is_sent_again() {
    let mut config = rack(2, PowerStateStyle::Binary);
    config.quirks.mid_transition = MidTransition::Ignore;
    config.delays.power_on = Duration::from_secs(2);
    let fleet = Fleet::start_rack(config, |c| c.conductor.soft_off_fallback = false).await;
    for index in 0..2 {
        let name = fleet.name(index);
        fleet.power(&name, "power off").await;
        assert_eq!(fleet.settled(&name).await.last_error, None, "{name}");

        fleet.power(&name, "power on").await;
        assert_eq!(fleet.settled(&name).await.last_error, None, "{name}");
        let before = fleet.counters(&name);

        fleet.power(&name, "soft power off").await;
        let states = fleet.settled(&name).await;
        assert_eq!(states.last_error, None, "{name}");
        assert_eq!(states.power_state, Some(baton_state::PowerState::Off));
        assert!(!fleet.sim_power_on(&name), "hw-sim says {name} is off");
        let after = fleet.counters(&name);
        assert!(
            after.power_commands - before.power_commands >= 2,
            "{name}: the ignored soft off was not sent again"
        );
        assert_eq!(after.power_offs - before.power_offs, 1, "{name}");
    }
    fleet.stop().await;
}
