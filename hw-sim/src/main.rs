//! `baton-hwsim`: runs a simulated rack of BMCs (command line in progress).

fn main() {}
