//! `plimsoll serve`: the HTTP server, store and dashboard of `run`, with no local target, for
//! remote ones (browser pages and other reporters that POST to `/api/v1/ingest`). It reuses
//! `run`'s plumbing: the HTTP settings and tokens, `http::start_with_sinks`, the store and the
//! sinks; it runs until SIGINT or SIGTERM.

use anyhow::{bail, Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ServeArgs;
use crate::common::{data_dir, http_settings, output_sinks};
use crate::http;
use crate::registry::Registry;

pub(crate) fn run(args: &ServeArgs) -> Result<u8> {
    let mut settings = http_settings(&args.output)?;
    if settings.listen.is_none() {
        bail!("plimsoll serve is an HTTP server: give --listen ADDR (not off, nor --no-http)");
    }
    if args.budget.is_some_and(|b| b.0 == 0) {
        bail!("--budget 0 is no budget (leave it out for none)");
    }
    settings.remote.budget = args.budget.map(|b| b.0);
    settings.remote.time_scale = args.time_scale;
    settings.remote.max_instances = args.max_instances as usize;
    let data_dir = data_dir(&args.output)?;
    let sinks = output_sinks(&args.output);
    // Take the port first: a taken one fails here.
    let bound = http::bind_configured(&settings)?;
    crate::logging::init();
    if settings.ingest_token.is_none() {
        tracing::warn!(
            "no ingest token (--ingest-token-file or PLIMSOLL_INGEST_TOKEN): POST /api/v1/ingest \
             answers 403, and nothing reports to this server"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let registry = Registry::new();
        let server = http::start_with_sinks(bound, &settings, &registry, &data_dir, &sinks)?;
        let signal = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!("{signal}: stopping");
        http::stop(server).await;
        Ok(crate::exit::OK)
    })
}
