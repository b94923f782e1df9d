//! The one error type of the library: what a caller can get wrong, and what the machine can
//! refuse.

use plimsoll_probe::ProbeError;

/// What went wrong in `plimsoll-guard`.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A setting is unusable; the message names the value and what was expected.
    #[error("{0}")]
    Config(String),
    /// The own process cannot be read (no `/proc`, or not Linux).
    #[error("cannot read the own process's memory: {0}")]
    Probe(#[source] ProbeError),
}
