//! The log: tracing to standard error. `PLIMSOLL_LOG` sets the level (error, warn, info,
//! debug, trace; default info). Levels mean: error — the supervisor cannot do its job for a
//! target; warn — something failed and was worked around; info — events and decisions; debug —
//! per-sample detail. Colour only on a terminal, and never with `NO_COLOR` set (no-color.org),
//! so log files and pipes get plain text. `--log-format json` writes one JSON object per line
//! instead (time, level, message and the event's fields at the top level), for log shippers.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;

/// How the log is written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line per event for people, coloured on a terminal
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message` and the event's fields
    Json,
}

/// The format `main` read from the command line, for the one subscriber the command installs
/// later (the subscriber is process-wide, and so is this).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Records `--log-format` before the command runs; the first call wins.
pub(crate) fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

pub(crate) fn init() {
    init_with_default(LevelFilter::INFO);
}

/// Like [`init`], with another level when `PLIMSOLL_LOG` does not set one (`soak` keeps the
/// terminal for its progress bar and logs only warnings there).
pub(crate) fn init_with_default(default: LevelFilter) {
    let level = match std::env::var("PLIMSOLL_LOG").as_deref().map(str::trim) {
        Ok("error") => LevelFilter::ERROR,
        Ok("warn") => LevelFilter::WARN,
        Ok("debug") => LevelFilter::DEBUG,
        Ok("trace") => LevelFilter::TRACE,
        Ok("off") => LevelFilter::OFF,
        Ok("info") => LevelFilter::INFO,
        _ => default,
    };
    let colour = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Its own report of a failed write is an `eprintln!`, which panics on a closed or full
        // standard error: a log line that cannot be written is lost, the program goes on.
        .log_internal_errors(false)
        .with_max_level(level)
        .with_target(false);
    let _ = match FORMAT.get().copied().unwrap_or(LogFormat::Text) {
        LogFormat::Text => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// Whether to colour: on a terminal, unless `NO_COLOR` is set to anything but the empty string.
pub(crate) fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(colour(true, None));
        assert!(colour(true, empty));
        assert!(!colour(true, set));
        assert!(!colour(false, None));
        assert!(!colour(false, set));
    }
}
