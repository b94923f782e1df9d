//! The evaluation harness for Plimsoll's leak detector: labeled synthetic series, the naive
//! rules teams write by hand as baselines, scoring against labels, and the recorded corpus.
//! The binaries in `src/bin` print the tables; `tests/suite.rs` holds the detector to its bar.

pub mod baselines;
pub mod corpus;
pub mod interrupt;
pub mod out;
pub mod score;
pub mod suite;
pub mod synthetic;
pub mod table;
