//! When to read a node after a power command: the next read is scheduled
//! from how long this node (or, before it has any history, the fleet) took
//! to change state before — so a node is seen "off" soon after it is off,
//! without a stream of reads to its BMC while it is still going down.
//!
//! The estimate is an exponentially weighted average of observed
//! transition times. A read that already finds the node settled only shows
//! the transition took *at most* that long, so such a sample is taken a
//! little shorter: the estimate drifts down until a first read misses, and
//! the quick reads after a miss measure the real time closely.
//!
//! How soon to read again after a miss depends on what the read showed. A
//! node in a transition towards the target (a Redfish `PoweringOn`) is
//! nearly there: it is read again soon. A node still settled in the old
//! state (IPMI shows no transitions; some BMCs take a while to start one)
//! says nothing about how far along it is, and two such reads may lead the
//! conductor to decide the command was dropped and send it again: those
//! reads are spaced wider, so that a slow transition is not mistaken for
//! an ignored command.

use std::time::Duration;

use baton_state::Transitions;

/// Used before anything is known about any node.
pub const DEFAULT_ESTIMATE: Duration = Duration::from_secs(1);
/// Reads after a miss start at this share of the estimate: the node was
/// seen moving towards the target …
const MOVING_RETRY_SHARE: f64 = 0.1;
/// … or still settled in the old state …
const SETTLED_RETRY_SHARE: f64 = 0.25;
/// … and grow by this factor each time …
const RETRY_GROWTH: f64 = 1.5;
/// … between these bounds.
const MIN_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Weight of a new sample in the average.
const WEIGHT: f64 = 0.3;
/// A first-read hit counts as this share of what was observed.
const HIT_SHRINK: f64 = 0.9;

/// Which way the power went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    On,
    Off,
}

/// The node's own estimate for `direction`, if it has one.
pub fn node_estimate(transitions: &Transitions, direction: Direction) -> Option<Duration> {
    let ms = match direction {
        Direction::On => transitions.power_on_ms,
        Direction::Off => transitions.power_off_ms,
    };
    ms.map(|ms| Duration::from_millis(u64::from(ms)))
}

/// How long after the command to read first.
pub fn first_read(own: Option<Duration>, fleet: Option<Duration>) -> Duration {
    own.or(fleet).unwrap_or(DEFAULT_ESTIMATE)
}

/// What a read that did not find the node at its target showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// In a transition towards the target.
    Moving,
    /// Settled, or in a transition away from the target.
    NotMoving,
}

/// How long to wait before read number `misses + 1` after `misses` reads
/// found the node not yet there, the last of them showing `miss`.
pub fn after_miss(estimate: Duration, misses: u32, miss: Miss) -> Duration {
    let share = match miss {
        Miss::Moving => MOVING_RETRY_SHARE,
        Miss::NotMoving => SETTLED_RETRY_SHARE,
    };
    let base = estimate.as_secs_f64() * share;
    let factor = RETRY_GROWTH.powi(i32::try_from(misses.saturating_sub(1)).unwrap_or(i32::MAX));
    Duration::from_secs_f64((base * factor).clamp(MIN_RETRY.as_secs_f64(), MAX_RETRY.as_secs_f64()))
}

/// The new estimate after observing `observed` (command acknowledged to the
/// read that saw the node settled); `first_read_hit` when no read missed.
pub fn learn(old: Option<Duration>, observed: Duration, first_read_hit: bool) -> Duration {
    let sample = if first_read_hit {
        observed.as_secs_f64() * HIT_SHRINK
    } else {
        observed.as_secs_f64()
    };
    let blended = match old {
        Some(old) => old.as_secs_f64() * (1.0 - WEIGHT) + sample * WEIGHT,
        None => sample,
    };
    Duration::from_secs_f64(blended.max(0.0))
}

/// `transitions` with the estimate for `direction` replaced.
pub fn with_estimate(
    mut transitions: Transitions,
    direction: Direction,
    estimate: Duration,
) -> Transitions {
    let ms = u32::try_from(estimate.as_millis()).unwrap_or(u32::MAX);
    match direction {
        Direction::On => transitions.power_on_ms = Some(ms),
        Direction::Off => transitions.power_off_ms = Some(ms),
    }
    transitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_read_prefers_the_node_then_the_fleet() {
        let own = Some(Duration::from_millis(700));
        let fleet = Some(Duration::from_secs(2));
        assert_eq!(first_read(own, fleet), Duration::from_millis(700));
        assert_eq!(first_read(None, fleet), Duration::from_secs(2));
        assert_eq!(first_read(None, None), DEFAULT_ESTIMATE);
    }

    #[test]
    fn reads_after_a_miss_grow_within_bounds() {
        let estimate = Duration::from_secs(4);
        let waits: Vec<_> = (1..=8)
            .map(|m| after_miss(estimate, m, Miss::NotMoving))
            .collect();
        assert_eq!(waits[0], Duration::from_secs(1));
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), MAX_RETRY);
        assert_eq!(
            after_miss(Duration::from_millis(10), 1, Miss::NotMoving),
            MIN_RETRY
        );
    }

    #[test]
    fn a_node_seen_moving_is_read_again_sooner() {
        let estimate = Duration::from_secs(2);
        assert_eq!(
            after_miss(estimate, 1, Miss::Moving),
            Duration::from_millis(200)
        );
        assert_eq!(
            after_miss(estimate, 1, Miss::NotMoving),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn estimates_converge_on_the_real_time() {
        // A node that really takes 1.2 s, read first at the estimate and
        // then every 10 % of it: the estimate ends within 15 % of 1.2 s.
        let real = 1.2;
        let mut estimate: Option<Duration> = None;
        for _ in 0..30 {
            let first = first_read(estimate, None).as_secs_f64();
            let (observed, hit) = if first >= real {
                (first, true)
            } else {
                let step = first * 0.1;
                let mut t = first;
                while t < real {
                    t += step;
                }
                (t, false)
            };
            estimate = Some(learn(estimate, Duration::from_secs_f64(observed), hit));
        }
        let e = estimate.unwrap().as_secs_f64();
        assert!((e - real).abs() / real < 0.15, "estimate {e}");
    }

    #[test]
    fn estimates_are_stored_per_direction() {
        let t = with_estimate(
            Transitions::default(),
            Direction::Off,
            Duration::from_millis(1500),
        );
        assert_eq!(
            node_estimate(&t, Direction::Off),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(node_estimate(&t, Direction::On), None);
    }
}
