//! Integration tests of the `plimsoll` binary: one test binary, one module per command.

mod analyze;
mod browser;
mod check;
mod chromium;
mod containers;
mod deploy;
mod faults_containment;
mod faults_loop;
mod faults_net;
mod faults_store;
mod harness;
mod heap;
mod http;
mod import;
mod ingest;
mod manual;
mod node;
mod npm;
mod run;
mod soak;
mod stdout;
mod up;
mod watch;
