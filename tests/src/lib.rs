//! Shared harness for baton's end-to-end tests.

pub mod conformance;
pub mod crash;
pub mod daemon;
pub mod faultmatrix;
pub mod fleet;
pub mod fuzzing;
pub mod hwsim;
pub mod logcapture;
pub mod peers;
pub mod udpproxy;
