//! `plimsoll run -- CMD…`: resolves the command line into supervisor settings (data dir,
//! name, sinks), then runs the supervisor on a single-threaded runtime.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use plimsoll_analysis::LevelConfig;

use crate::cli::RunArgs;
use crate::outputs::Outputs;
use crate::sinks::{EventsTarget, SinkConfig};
use crate::supervise::{self, RestartPolicy, Settings};
use crate::units::human_bytes;

pub(crate) fn run(args: &RunArgs) -> Result<u8> {
    let (settings, data_dir) = settings(args)?;
    let mut output = Outputs::open(&data_dir, &sink_config(args))?;
    crate::logging::init();
    if let Some(budget) = settings.budget {
        tracing::info!(target_name = %settings.name, budget_bytes = budget, "budget {} ({budget} bytes) for the whole process tree", human_bytes(budget as f64));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let status = runtime.block_on(supervise::supervise(settings, &mut output));
    output.close();
    status
}

/// The settings the supervisor runs with; checks what clap cannot.
fn settings(args: &RunArgs) -> Result<(Settings, PathBuf)> {
    if args.warn >= args.critical {
        bail!(
            "--warn {:.0}% must be below --critical {:.0}%",
            args.warn * 100.0,
            args.critical * 100.0
        );
    }
    if args.interval < Duration::from_millis(100) {
        bail!(
            "--interval {:?} is too short (at least 100ms)",
            args.interval
        );
    }
    if args.max_restarts == 0 {
        bail!("--max-restarts 0: give at least 1");
    }
    if args.budget.is_some_and(|b| b.0 == 0) {
        bail!("--budget 0 is no budget (leave it out to use the cgroup limit)");
    }
    let name = match &args.name {
        Some(name) if name.trim().is_empty() => bail!("--name '{name}' is empty"),
        Some(name) => name.clone(),
        None => default_name(&args.command),
    };
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir()?,
    };
    let run_dir = data_dir.join("run");
    create_private_dir(&run_dir)?;
    let settings = Settings {
        name,
        command: args.command.clone(),
        budget: args.budget.map(|b| b.0),
        levels: LevelConfig {
            warn: args.warn,
            critical: args.critical,
            ..LevelConfig::recommended()
        },
        interval: args.interval,
        warmup: args.warmup,
        grace: args.grace,
        policy: RestartPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_restarts: args.max_restarts,
            window: args.restart_window,
        },
        run_dir,
    };
    Ok((settings, data_dir))
}

fn sink_config(args: &RunArgs) -> SinkConfig {
    SinkConfig {
        events: args.events.as_deref().map(|target| match target {
            "-" => EventsTarget::Stdout,
            path => EventsTarget::File(PathBuf::from(path)),
        }),
        on_event: args.on_event.clone(),
        webhook: args.webhook.clone(),
        hook_timeout: Duration::from_secs(10),
    }
}

/// The command's file name: `node` for `/usr/bin/node server.js`.
fn default_name(command: &[String]) -> String {
    command
        .first()
        .and_then(|c| std::path::Path::new(c).file_name())
        .map_or_else(|| "target".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// `$XDG_STATE_HOME/plimsoll`, else `~/.local/state/plimsoll`.
fn default_data_dir() -> Result<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(state).join("plimsoll"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither XDG_STATE_HOME nor HOME is set: give --data-dir")?;
    Ok(PathBuf::from(home).join(".local/state/plimsoll"))
}

/// Creates `dir` and its parents; the last one readable by its owner only.
fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data dir '{}'", dir.display()))
}
