//! Integration tests of the `plimsoll` binary: one test binary, one module per command.

mod analyze;
mod check;
mod harness;
mod heap;
mod node;
mod run;
mod up;
mod watch;
