//! `plimsoll run -- CMD…`: resolves the command line into supervisor settings (data dir,
//! name, sinks), then runs the supervisor on a single-threaded runtime.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_util::sync::CancellationToken;

use plimsoll_analysis::DetectorConfig;

use crate::agent::node;
use crate::cli::RunArgs;
use crate::common::{create_private_dir, http_settings, sink_config, Common};
use crate::http;
use crate::outputs::Outputs;
use crate::registry::Registry;
use crate::supervise::{self, Inputs, RestartPolicy, Settings, INVESTIGATION_SPACING};
use crate::units::human_bytes;

pub(crate) fn run(args: &RunArgs) -> Result<u8> {
    let http_settings = http_settings(&args.monitor.output)?;
    let (mut settings, data_dir) = settings(args)?;
    // Take the port before anything starts: a taken one fails here, with nothing running.
    let bound = http::bind_configured(&http_settings)?;
    let registry = Registry::new();
    settings.registry = Some(registry.clone());
    let mut output = Outputs::open(&data_dir, &sink_config(&args.monitor))?;
    crate::logging::init();
    if let Some(budget) = settings.budget {
        tracing::info!(target_name = %settings.name, budget_bytes = budget, "budget {} ({budget} bytes) for the whole process tree", human_bytes(budget as f64));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let status = runtime.block_on(async {
        let server = http::start(bound, &http_settings, &registry, &data_dir)?;
        let _control = crate::control::listen(&data_dir.join("run"), registry.clone())?;
        let cancel = CancellationToken::new();
        supervise::cancel_on_signals(cancel.clone())?;
        let status = supervise::supervise(settings, &mut output, Inputs::new(cancel)).await;
        http::stop(server).await;
        status
    });
    output.close();
    status
}

/// The settings the supervisor runs with; checks what clap cannot.
fn settings(args: &RunArgs) -> Result<(Settings, PathBuf)> {
    let common = Common::resolve(&args.monitor)?;
    if args.max_restarts == 0 {
        bail!("--max-restarts 0: give at least 1");
    }
    let target = Target {
        name: args.name.as_deref(),
        command: &args.command,
        grace: args.grace,
        max_restarts: args.max_restarts,
        restart_window: args.restart_window,
        oom_score_adj: args.oom_score_adj,
        time_scale: args.time_scale,
        agent: !args.no_agent,
    };
    Ok((target_settings(&common, &target)?, common.data_dir))
}

/// What the command line says about the one target of `run` or `soak`.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) command: &'a [String],
    pub(crate) grace: Duration,
    pub(crate) max_restarts: u32,
    pub(crate) restart_window: Duration,
    /// The target's OOM score adjustment; `None` resets a negative one to 0.
    pub(crate) oom_score_adj: Option<i32>,
    /// Compresses the detector's windows and the investigation's spacing.
    pub(crate) time_scale: f64,
    /// Whether to preload the Node.js agent into a Node command.
    pub(crate) agent: bool,
}

/// The supervisor settings of a command-line target: its name, the keeper's run dir, the
/// restart policy, the detector and the Node agent.
pub(crate) fn target_settings(common: &Common, target: &Target<'_>) -> Result<Settings> {
    let name = match target.name {
        Some(name) if name.trim().is_empty() => bail!("--name '{name}' is empty"),
        Some(name) => name.to_owned(),
        None => crate::name::name_of_command(target.command, "target"),
    };
    let run_dir = common.data_dir.join("run");
    create_private_dir(&run_dir)?;
    Ok(Settings {
        name,
        command: target.command.to_vec(),
        budget: common.budget,
        levels: common.levels,
        interval: common.interval,
        warmup: common.warmup,
        grace: target.grace,
        policy: RestartPolicy::with_limit(target.max_restarts, target.restart_window),
        oom_score_adj: target.oom_score_adj,
        run_dir,
        env: Vec::new(),
        cwd: None,
        rolling: None,
        registry: None,
        detector: DetectorConfig::recommended().time_scaled(target.time_scale),
        investigation_spacing: Some(INVESTIGATION_SPACING.mul_f64(target.time_scale)),
        agent: node::setup(&common.data_dir, target.command, None, target.agent)?,
    })
}
