//! Raises the process's open-file limit so that one process can hold a
//! listening socket (and a connection or two) for every simulated BMC.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::error::Error;

/// File descriptors kept spare beyond one per endpoint, for client connections.
const SPARE: u64 = 1024;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit when `endpoints` sockets
/// (plus spare) would not fit. When even the hard limit is too low, raises
/// the hard limit too (which needs `CAP_SYS_RESOURCE`, e.g. root), and fails
/// with the figures when that is refused.
pub fn ensure_open_files(endpoints: u64, nodes: usize) -> Result<(), Error> {
    let needed = endpoints + SPARE;
    // Without getrlimit (never on Linux) there is nothing to raise; let bind fail.
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return setrlimit(Resource::RLIMIT_NOFILE, needed, needed).map_err(|_| Error::FileLimit {
            limit: hard,
            needed,
            nodes,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|_| Error::FileLimit {
        limit: soft,
        needed,
        nodes,
    })
}
