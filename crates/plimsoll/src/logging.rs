//! The log: tracing to standard error. `PLIMSOLL_LOG` sets the level (error, warn, info,
//! debug, trace; default info). Levels mean: error — the supervisor cannot do its job for a
//! target; warn — something failed and was worked around; info — events and decisions; debug —
//! per-sample detail.

use tracing::level_filters::LevelFilter;

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
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .try_init();
}
