//! Integration tests of the `plimsoll` binary: one test binary, one module per command.

mod analyze;
mod check;
mod chromium;
mod faults_net;
mod harness;
mod heap;
mod http;
mod node;
mod run;
mod soak;
mod up;
mod watch;
