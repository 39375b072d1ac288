//! What a BMC refused as unsupported at run time, so that
//! `capabilities()` stops advertising it (BMCs often list more in their
//! metadata than they accept).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::{Capabilities, DriverError, PowerAction};

/// A capability a BMC can refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Feature {
    Power(PowerAction),
    Nmi,
}

/// The features one BMC refused.
#[derive(Debug, Default)]
pub(crate) struct Refused(Mutex<HashSet<Feature>>);

impl Refused {
    /// Records `feature` when `result` is an `Unsupported` error.
    pub fn note<T>(&self, feature: Feature, result: &Result<T, DriverError>) {
        if let Err(DriverError::Unsupported(_)) = result {
            if let Ok(mut refused) = self.0.lock() {
                refused.insert(feature);
            }
        }
    }

    /// `caps` without what was refused.
    pub fn filter(&self, mut caps: Capabilities) -> Capabilities {
        let Ok(refused) = self.0.lock() else {
            return caps;
        };
        caps.power_actions
            .retain(|a| !refused.contains(&Feature::Power(*a)));
        caps.nmi &= !refused.contains(&Feature::Nmi);
        caps
    }
}
