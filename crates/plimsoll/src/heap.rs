//! `plimsoll heap summary|diff`: V8 heap snapshot analysis (being written).

use anyhow::{bail, Result};

use crate::cli::HeapCommand;

pub(crate) fn run(command: &HeapCommand) -> Result<u8> {
    bail!("heap analysis is not available yet ({command:?})")
}
