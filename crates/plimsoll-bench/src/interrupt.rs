//! Ctrl-C for benchmarks that start processes: SIGINT, SIGTERM and SIGHUP set a flag (on a
//! thread of their own) instead of killing the benchmark, so that it unwinds through the guards
//! that stop what it started.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Starts catching the signals; `tool` names the benchmark in the message printed on the first.
pub fn catch_signals(tool: &'static str) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    let (mut interrupt, mut terminate, mut hangup) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt()).context("SIGINT")?,
            signal(SignalKind::terminate()).context("SIGTERM")?,
            signal(SignalKind::hangup()).context("SIGHUP")?,
        )
    };
    std::thread::spawn(move || {
        runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                    _ = hangup.recv() => {}
                }
                if !INTERRUPTED.swap(true, Ordering::SeqCst) {
                    eprintln!("{tool}: interrupted; stopping what was started");
                }
            }
        });
    });
    Ok(())
}

/// Whether a signal came.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error once a signal came.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}
