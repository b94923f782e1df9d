//! The `plimsoll` binary's code, as a library so that the fuzz targets (`fuzz/`) can reach its
//! parsers; `main.rs` only calls [`main`]. Nothing here is a stable API.

mod agent;
mod analyze;
mod bounded;
mod check;
mod cli;
mod common;
mod control;
mod event;
mod fds;
mod heap;
mod http;
mod import;
mod ingest;
mod logging;
mod manual;
mod name;
mod outputs;
mod registry;
mod report;
mod run;
mod series;
mod serve;
mod sinks;
mod snapshot;
mod soak;
mod soak_heap;
mod stdout;
mod supervise;
mod units;
mod up;
mod watch;

#[doc(hidden)]
pub mod fuzzing;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

/// Exit codes are a contract (DESIGN.md): 0 no leak, 1 leak or budget failed, 2 bad usage or
/// bad input, 3 inconclusive.
pub(crate) mod exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const LEAK: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const INCONCLUSIVE: u8 = 3;
}

/// The whole program: parse, dispatch, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == supervise::keeper::SUBCOMMAND)
    {
        return supervise::keeper::main(args.collect());
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(mut error) => {
            // clap quotes a bad value whole: cut it short and escape it, like every message.
            use clap::error::{ContextKind, ContextValue};
            if let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue) {
                let quoted = bounded::excerpt(value);
                if quoted != *value {
                    error.insert(ContextKind::InvalidValue, ContextValue::String(quoted));
                }
            }
            let code = if error.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            // Help into a closed pipe is fine; into a full disk it is an error.
            if let Err(error) = error.print() {
                if error.kind() != std::io::ErrorKind::BrokenPipe {
                    let _ = writeln!(
                        std::io::stderr(),
                        "plimsoll: cannot write the help: {error}"
                    );
                    return ExitCode::from(exit::USAGE);
                }
            }
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // Like ripgrep: a reader that went away (`| head -1`) ends the program quietly, 0.
            if error
                .downcast_ref::<stdout::StdoutError>()
                .is_some_and(stdout::StdoutError::is_closed_pipe)
            {
                return ExitCode::from(exit::OK);
            }
            // Not `eprintln!`: it panics when standard error cannot be written either.
            let _ = writeln!(std::io::stderr(), "plimsoll: {error:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    logging::set_format(cli.log_format);
    if matches!(
        cli.command,
        cli::Command::Run(_)
            | cli::Command::Watch(_)
            | cli::Command::Up(_)
            | cli::Command::Soak(_)
            | cli::Command::Serve(_)
    ) {
        // The long-running commands take all the descriptors they may (fds.rs).
        fds::raise_limit();
    }
    match cli.command {
        cli::Command::Analyze(args) => analyze::run(&args),
        cli::Command::Check(args) => check::run(&args),
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Watch(args) => watch::run(&args),
        cli::Command::Up(args) => up::run(&args),
        cli::Command::Heap(command) => heap::run(&command),
        cli::Command::Snapshot(args) => snapshot::run(&args),
        cli::Command::Soak(args) => soak::run(&args),
        cli::Command::Report(args) => report::run(&args),
        cli::Command::Import(command) => import::run(&command),
        cli::Command::Serve(args) => serve::run(&args),
        cli::Command::Completions(args) => manual::completions(&args),
        cli::Command::Man(args) => manual::man(&args),
    }
}
