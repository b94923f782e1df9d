//! `plimsoll snapshot TARGET`: asks the supervisor that runs TARGET, through its control
//! socket, for a heap snapshot from the target's runtime, and prints where it was written.

use anyhow::Result;

use crate::cli::SnapshotArgs;
use crate::common::data_dir_or_default;
use crate::stdout::outln;

pub(crate) fn run(args: &SnapshotArgs) -> Result<u8> {
    let data_dir = data_dir_or_default(args.data_dir.as_deref())?;
    let result = crate::control::request(&data_dir, &args.target, "snapshot")?;
    if args.json {
        outln!("{result}")?;
    } else {
        outln!("{}", result["path"].as_str().unwrap_or_default())?;
    }
    Ok(crate::exit::OK)
}
