//! batond: the baton conductor daemon, and the library its binaries (`batond`
//! and the `baton` CLI) and the end-to-end tests are built from.
//!
//! Layout: [`config`] (the config file), [`daemon`] (start/run/shutdown),
//! [`socket`] (owning the Unix socket), [`api`] (the HTTP/JSON action API and
//! its types), [`connections`] (connection limits and deadlines),
//! [`malformed`] (answers to requests hyper cannot parse), [`memory`]
//! (handing freed memory back to the system),
//! [`conductor`] (the core the API calls), [`credentials`] (the default
//! BMC password from systemd), [`client`] (an HTTP
//! client over the socket), [`cli`] (the `baton` admin CLI) and [`users`]
//! (user names for the action log).

pub mod api;
pub mod cli;
pub mod client;
pub mod conductor;
pub mod config;
pub mod connections;
pub mod credentials;
pub mod daemon;
pub mod logging;
pub mod malformed;
pub mod memory;
pub mod messages;
pub mod reload;
pub mod socket;
pub mod systemd;
pub mod users;
