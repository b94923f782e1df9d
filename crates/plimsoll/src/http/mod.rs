//! The HTTP server of `run`, `up`, `watch` and `serve` (DESIGN.md, "HTTP"): `/health`,
//! `/metrics`, the JSON API over the registry and the store, the token-guarded admin actions,
//! remote samples (ingest), and the dashboard. `router(state)` is the whole server without a
//! socket, so tests call it with `oneshot`; `bind` takes the port before any target starts, so a
//! taken port fails fast.
//!
//! Files: `conn.rs` the accept loop and its limits, `routes.rs` the handlers, `dashboard.rs`
//! the page and its embedded assets, `ingest.rs` the ingest route of remote targets, its CORS
//! and the browser monitor's script. The wire
//! formats (the status JSON, the Prometheus text, the admin guard and the error type) live in
//! `plimsoll-http`, shared with `plimsoll-guard`.

mod conn;
mod dashboard;
mod ingest;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{delete, get, post, put};
use axum::Router;
use tokio::sync::oneshot;

use crate::common::HttpSettings;
use crate::ingest::Ingest;
use crate::registry::{AdminAction, Registry};
use crate::sinks::SinkConfig;
use plimsoll_http::{AdminToken, ReadTokens};

/// The name of the file in the run dir that holds the bound address (`127.0.0.1:9464`), for
/// scripts and tests that listen on port 0.
pub(crate) const ADDR_FILE: &str = "http.addr";

/// How long a graceful stop of the server may take before open connections are dropped.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What the handlers read.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    /// The views of the targets, and their admin channels.
    pub(crate) registry: Arc<Registry>,
    /// Where the store lives: the API opens a reader there per request.
    pub(crate) data_dir: PathBuf,
    /// The bearer token of the admin routes; `None` turns them off.
    pub(crate) admin_token: Option<String>,
    /// The bearer token of the read routes (the admin token opens them too); `None` leaves
    /// them open.
    pub(crate) read_token: Option<String>,
    /// The remote targets and the ingest token; `None` turns ingest off (403).
    pub(crate) ingest: Option<(Arc<Ingest>, String)>,
    /// The origins whose pages may post to ingest.
    pub(crate) cors_origins: Arc<Vec<String>>,
}

/// The whole server, without a socket.
pub(crate) fn router(state: HttpState) -> Router {
    let token = AdminToken(state.admin_token.clone());
    let guard = || middleware::from_fn_with_state(token.clone(), plimsoll_http::require_admin);
    let tokens = ReadTokens {
        read: state.read_token.clone(),
        admin: state.admin_token.clone(),
    };
    let read = || middleware::from_fn_with_state(tokens.clone(), plimsoll_http::require_read);
    let action = |action: AdminAction| {
        post(move |state, name| routes::admin_action(state, name, action.clone()))
            .route_layer(guard())
    };
    let cors = middleware::from_fn_with_state(state.clone(), ingest::cors);
    Router::new()
        .route("/", get(dashboard::page))
        .route("/agent/plimsoll-browser.js", get(ingest::agent_script))
        // Remote samples: the ingest token only (no admin or read token opens it), CORS for
        // the configured origins.
        .route(
            "/api/v1/ingest",
            post(ingest::post)
                .options(ingest::preflight)
                .layer(DefaultBodyLimit::max(ingest::MAX_BODY))
                .route_layer(cors),
        )
        .route("/assets/{file}", get(dashboard::asset))
        // Reads: behind the read token when one is configured. The page and its assets
        // stay open; its fetches carry the token (dashboard.js).
        .route("/health", get(routes::health).route_layer(read()))
        .route("/metrics", get(routes::metrics).route_layer(read()))
        .route("/api/v1/targets", get(routes::targets).route_layer(read()))
        .route(
            "/api/v1/targets/{name}/samples",
            get(routes::samples).route_layer(read()),
        )
        .route("/api/v1/events", get(routes::events).route_layer(read()))
        .route(
            "/api/v1/leaks",
            get(routes::leaks)
                .route_layer(read())
                .merge(delete(routes::clear_leaks).route_layer(guard())),
        )
        .route(
            "/api/v1/targets/{name}/restart",
            action(AdminAction::Restart),
        )
        .route(
            "/api/v1/targets/{name}/snapshot",
            action(AdminAction::Snapshot),
        )
        .route("/api/v1/targets/{name}/gc", action(AdminAction::Gc))
        .route(
            "/api/v1/targets/{name}/clear-cache",
            action(AdminAction::ClearCache),
        )
        .route(
            "/api/v1/targets/{name}/leak-check",
            action(AdminAction::LeakCheck),
        )
        .route(
            "/api/v1/targets/{name}/thresholds",
            put(routes::thresholds)
                .layer(DefaultBodyLimit::max(plimsoll_http::thresholds::MAX_BODY))
                .route_layer(guard()),
        )
        .fallback(routes::not_found)
        .layer(middleware::from_fn(plimsoll_http::log_server_errors))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes, within the connection
/// limits that the open-file limit allows (`conn.rs`).
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let limits = conn::Limits::for_fd_limit(crate::fds::limit());
    conn::serve(listener, router(state), limits, shutdown).await;
}

/// A port taken before any target starts; the server itself starts inside the runtime.
#[derive(Debug)]
pub(crate) struct Bound {
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

/// Takes `addr` (port 0: any free port); a clear error naming the address when it is taken.
pub(crate) fn bind(addr: SocketAddr) -> Result<Bound> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} (give another --listen ADDR, or --listen off)")
    })?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    Ok(Bound { listener, addr })
}

/// Binds what `settings` asks for: `None` when HTTP is off.
pub(crate) fn bind_configured(settings: &HttpSettings) -> Result<Option<Bound>> {
    settings.listen.map(bind).transpose()
}

/// Starts the server of `bound`, if any, with the registry and the store of `data_dir`. With an
/// ingest token, remote targets are taken in too; their samples and events go to the store and
/// the log (the sinks of `run`, `up` and `watch` stay with their own targets).
pub(crate) fn start(
    bound: Option<Bound>,
    settings: &HttpSettings,
    registry: &Arc<Registry>,
    data_dir: &Path,
) -> Result<Option<Server>> {
    let store_only = SinkConfig {
        events: None,
        on_event: None,
        webhook: None,
        hook_timeout: Duration::from_secs(10),
    };
    start_with_sinks(bound, settings, registry, data_dir, &store_only)
}

/// [`start`], with the sinks that remote targets' events go to (`serve`'s own).
pub(crate) fn start_with_sinks(
    bound: Option<Bound>,
    settings: &HttpSettings,
    registry: &Arc<Registry>,
    data_dir: &Path,
    sinks: &SinkConfig,
) -> Result<Option<Server>> {
    let Some(bound) = bound else {
        return Ok(None);
    };
    let ingest = match &settings.ingest_token {
        Some(token) => Some((
            Arc::new(Ingest::open(data_dir, sinks, settings.remote)?),
            token.clone(),
        )),
        None => None,
    };
    let state = HttpState {
        registry: registry.clone(),
        data_dir: data_dir.to_path_buf(),
        admin_token: settings.admin_token.clone(),
        read_token: settings.read_token.clone(),
        ingest,
        cors_origins: Arc::new(settings.cors_origins.clone()),
    };
    if let Some(warning) = exposure(bound.addr, settings.read_token.is_some()) {
        tracing::warn!(addr = %bound.addr, "{warning}");
    }
    if state.ingest.is_some() {
        tracing::info!(
            origins = ?settings.cors_origins,
            "taking remote samples at POST /api/v1/ingest (ingest token set)"
        );
    }
    let run_dir = data_dir.join("run");
    crate::common::create_private_dir(&run_dir)?;
    bound.start(state, &run_dir).map(Some)
}

/// What a server on `addr` exposes beyond this machine, when it is not on loopback.
fn exposure(addr: SocketAddr, read_token: bool) -> Option<String> {
    if addr.ip().is_loopback() {
        return None;
    }
    let reads = if read_token {
        "reads need the read token"
    } else {
        "reads (/health, /metrics, /api/v1/*, whose events show full command lines) are \
         unauthenticated (give --read-token-file)"
    };
    Some(format!(
        "listening on {addr}, not loopback: {reads}, and tokens travel in clear (plain HTTP; \
         put a TLS proxy in front, or listen on 127.0.0.1)"
    ))
}

/// Stops the server, if any.
pub(crate) async fn stop(server: Option<Server>) {
    if let Some(server) = server {
        server.stop().await;
    }
}

/// The running server: stop it with [`Server::stop`].
#[derive(Debug)]
pub(crate) struct Server {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    addr_file: PathBuf,
    /// Closed after the last request: its outputs flush to the store.
    ingest: Option<Arc<Ingest>>,
}

impl Bound {
    /// Starts serving on the current runtime; writes the address to `run_dir/http.addr` and
    /// logs it.
    pub(crate) fn start(self, state: HttpState, run_dir: &Path) -> Result<Server> {
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .with_context(|| format!("cannot listen on {}", self.addr))?;
        let addr_file = run_dir.join(ADDR_FILE);
        std::fs::write(&addr_file, format!("{}\n", self.addr))
            .with_context(|| format!("cannot write '{}'", addr_file.display()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let ingest = state.ingest.as_ref().map(|(ingest, _)| ingest.clone());
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        tracing::info!(addr = %self.addr, "listening on http://{}", self.addr);
        Ok(Server {
            stop,
            task,
            addr_file,
            ingest,
        })
    }
}

impl Server {
    /// Stops accepting, lets open requests finish for a moment, then drops what is left.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
        if let Some(ingest) = self.ingest {
            // Flushing the store may take a moment: not on the runtime's thread.
            let _ = tokio::task::spawn_blocking(move || ingest.close()).await;
        }
        let _ = std::fs::remove_file(&self.addr_file);
    }
}

#[cfg(test)]
mod tests;
