//! `plimsoll watch PID…|--match REGEX`: monitors processes it does not own (being written).

use anyhow::{bail, Result};

use crate::cli::WatchArgs;

pub(crate) fn run(args: &WatchArgs) -> Result<u8> {
    bail!("watch of {:?} is not available yet", args.pids)
}
