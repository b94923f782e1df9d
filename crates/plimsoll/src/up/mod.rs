//! `plimsoll up [-c plimsoll.toml]`: several apps from one file, each instance under its own
//! supervisor loop on one thread, sharing the outputs. With several instances a memory restart
//! is rolling: one instance at a time, the next only once the restarted one is up again.

pub(crate) mod config;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use plimsoll_analysis::{Level, LevelConfig};
use plimsoll_probe::Sample;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::agent::node::{self, AgentSetup};
use crate::agent::HeapFigures;
use crate::cli::UpArgs;
use crate::common::{create_private_dir, data_dir, http_settings, output_sinks};
use crate::event::Event;
use crate::http;
use crate::outputs::Outputs;
use crate::registry::Registry;
use crate::sinks::{SinkConfig, Sinks};
use crate::stdout::outln;
use crate::supervise::{self, EventOutput, Inputs, RestartPolicy, Settings};
use crate::units::human_bytes;

use config::App;

pub(crate) fn run(args: &UpArgs) -> Result<u8> {
    let apps = config::load(&args.config)?;
    if args.check {
        print_plan(&apps)?;
        return Ok(crate::exit::OK);
    }
    let http_settings = http_settings(&args.output)?;
    let data_dir = data_dir(&args.output)?;
    // Take the port before any app starts: a taken one fails here, with nothing running.
    let bound = http::bind_configured(&http_settings)?;
    let registry = Registry::new();
    let run_dir = data_dir.join("run");
    create_private_dir(&run_dir)?;
    let outputs = Outputs::open(&data_dir, &output_sinks(&args.output))?;
    let agents = apps
        .iter()
        .map(|app| node::setup(&data_dir, &app.command, Some(&app.cwd), true))
        .collect::<Result<Vec<_>>>()?;
    // The apps' own hooks and webhooks, besides the global ones.
    let mut app_sinks = Vec::new();
    for app in &apps {
        let config = SinkConfig {
            events: None,
            on_event: app.on_event.clone(),
            webhook: app.webhook.clone(),
            hook_timeout: Duration::from_secs(10),
        };
        let sinks = match (&config.on_event, &config.webhook) {
            (None, None) => None,
            _ => Some(Rc::new(Sinks::new(&config).with_context(|| {
                format!("app '{}': bad hook or webhook", app.name)
            })?)),
        };
        app_sinks.push(sinks);
    }
    crate::logging::init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let shared = Rc::new(RefCell::new(outputs));
    let local = tokio::task::LocalSet::new();
    let statuses = local.block_on(&runtime, async {
        let server = http::start(bound, &http_settings, &registry, &data_dir)?;
        let _control = crate::control::listen(&run_dir, registry.clone())?;
        // One signal stops every instance's loop.
        let cancel = CancellationToken::new();
        supervise::cancel_on_signals(cancel.clone())?;
        let mut tasks = Vec::new();
        for ((app, hooks), agent) in apps.iter().zip(&app_sinks).zip(&agents) {
            let group = (app.instances > 1).then(|| Arc::new(Semaphore::new(1)));
            for instance in 0..app.instances {
                let mut settings = instance_settings(app, instance, &run_dir, group.clone(), agent.clone());
                settings.registry = Some(registry.clone());
                if let Some(budget) = settings.budget {
                    tracing::info!(target_name = %settings.name, budget_bytes = budget, "budget {}", human_bytes(budget as f64));
                }
                let mut output = SharedOutput { shared: shared.clone(), app: hooks.clone() };
                let inputs = Inputs::new(cancel.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let name = settings.name.clone();
                    match supervise::supervise(settings, &mut output, inputs).await {
                        Ok(status) => status,
                        Err(error) => {
                            tracing::error!(target_name = %name, error = %format!("{error:#}"), "cannot supervise");
                            crate::exit::USAGE
                        }
                    }
                }));
            }
        }
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap_or(1));
        }
        http::stop(server).await;
        anyhow::Ok(statuses)
    })?;
    drop(local);
    if let Ok(outputs) = Rc::try_unwrap(shared) {
        outputs.into_inner().close();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for sinks in app_sinks.into_iter().flatten() {
        if let Ok(sinks) = Rc::try_unwrap(sinks) {
            sinks.close(deadline);
        }
    }
    Ok(statuses.into_iter().find(|&s| s != 0).unwrap_or(0))
}

/// The settings of one instance of an app.
fn instance_settings(
    app: &App,
    instance: u32,
    run_dir: &std::path::Path,
    group: Option<Arc<Semaphore>>,
    agent: Option<AgentSetup>,
) -> Settings {
    let name = app.instance_names().swap_remove(instance as usize);
    let mut env = app.env.clone();
    // PM2's name for it too, so apps written for PM2 clusters find their instance number.
    env.push(("PLIMSOLL_INSTANCE".to_owned(), instance.to_string()));
    env.push(("NODE_APP_INSTANCE".to_owned(), instance.to_string()));
    Settings {
        name,
        command: app.command.clone(),
        budget: app.instance_budget(),
        levels: LevelConfig {
            warn: app.warn,
            critical: app.critical,
            ..LevelConfig::recommended()
        },
        interval: app.interval,
        warmup: app.warmup,
        grace: app.grace,
        policy: RestartPolicy {
            base_delay: app.restart_delay,
            max_delay: app.max_restart_delay,
            ..RestartPolicy::with_limit(app.max_restarts, app.restart_window)
        },
        oom_score_adj: app.oom_score_adj,
        run_dir: run_dir.to_path_buf(),
        env,
        cwd: Some(app.cwd.clone()),
        detector: plimsoll_analysis::DetectorConfig::recommended(),
        investigation_spacing: Some(supervise::INVESTIGATION_SPACING),
        rolling: group,
        registry: None,
        agent,
    }
}

/// `up --check`: what would run.
fn print_plan(apps: &[App]) -> Result<()> {
    for app in apps {
        let budget = app
            .instance_budget()
            .map_or_else(|| "the cgroup limit".to_owned(), |b| human_bytes(b as f64));
        outln!(
            "{}: {} x `{}` in {}, budget {budget} per instance",
            app.name,
            app.instances,
            app.command.join(" "),
            app.cwd.display()
        )?;
    }
    Ok(())
}

/// The outputs shared by every instance's loop (all on one thread), plus the app's own sinks.
struct SharedOutput {
    shared: Rc<RefCell<Outputs>>,
    app: Option<Rc<Sinks>>,
}

impl EventOutput for SharedOutput {
    fn emit(&mut self, event: &Event) {
        self.shared.borrow_mut().emit(event);
        if let Some(app) = &self.app {
            app.emit(event);
        }
    }

    fn sample(
        &mut self,
        name: &str,
        t_unix_ms: i64,
        sample: &Sample,
        heap: Option<&HeapFigures>,
        budget: Option<u64>,
        level: Level,
    ) {
        self.shared
            .borrow_mut()
            .sample(name, t_unix_ms, sample, heap, budget, level);
    }

    fn incident(&mut self, name: &str, t_unix_ms: i64, reason: &str, snapshot: Option<&str>) {
        self.shared
            .borrow_mut()
            .incident(name, t_unix_ms, reason, snapshot);
    }
}
