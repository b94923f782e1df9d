//! The guarded service over HTTP, in the `plimsoll` binary's shapes (`plimsoll-http`):
//! `/health`, `/metrics` and `/api/v1/targets` with the service as the one target, and the
//! admin actions behind the same bearer token. Merge it into the service's own router, or
//! serve it on a port of its own; `plimsoll watch`, the alert rules and the Grafana dashboard
//! then work for the service as for a supervised process.
//!
//! The admin actions mean here: `gc` returns freed memory to the OS (feature `jemalloc`),
//! `snapshot` writes a pprof heap profile (feature `pprof`), `clear-cache` empties the
//! registered caches, `leak-check` reports the detector's verdict, `thresholds` moves the
//! level marks, `DELETE /api/v1/leaks` forgets the leak history. `restart` is the
//! supervisor's job: 501.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use plimsoll_http::metrics::{self, Family, Kind};
use plimsoll_http::{action_reply, target_json, verdict_json, ApiError};
use serde_json::{json, Value};

use crate::admission::GateState;
use crate::guard::Guard;

impl Guard {
    /// The HTTP routes of the guard, without a socket (`axum::serve` it, or `merge` it).
    pub fn router(&self) -> Router {
        let guard = || {
            middleware::from_fn_with_state(self.admin_token.clone(), plimsoll_http::require_admin)
        };
        Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .route("/api/v1/targets", get(targets))
            .route(
                "/api/v1/targets/{name}/restart",
                post(restart).route_layer(guard()),
            )
            .route(
                "/api/v1/targets/{name}/snapshot",
                post(snapshot).route_layer(guard()),
            )
            .route("/api/v1/targets/{name}/gc", post(gc).route_layer(guard()))
            .route(
                "/api/v1/targets/{name}/clear-cache",
                post(clear_cache).route_layer(guard()),
            )
            .route(
                "/api/v1/targets/{name}/leak-check",
                post(leak_check).route_layer(guard()),
            )
            .route(
                "/api/v1/targets/{name}/thresholds",
                put(thresholds)
                    .layer(axum::extract::DefaultBodyLimit::max(
                        plimsoll_http::thresholds::MAX_BODY,
                    ))
                    .route_layer(guard()),
            )
            .route("/api/v1/leaks", delete(clear_leaks).route_layer(guard()))
            .fallback(not_found)
            .layer(middleware::from_fn(plimsoll_http::log_server_errors))
            .with_state(self.clone())
    }
}

async fn health(State(guard): State<Guard>) -> Response {
    let status = guard.monitor.status();
    let (code, body) = plimsoll_http::health([&status], plimsoll_http::now_unix_ms());
    (code, Json(body)).into_response()
}

async fn targets(State(guard): State<Guard>) -> Json<Value> {
    let mut target = target_json(&guard.monitor.status(), plimsoll_http::now_unix_ms());
    target["live"] = Value::Bool(true);
    Json(json!({ "targets": [target] }))
}

async fn metrics(State(guard): State<Guard>) -> Result<Response, ApiError> {
    let text = metrics::render_with(
        vec![guard.monitor.status()],
        plimsoll_http::now_unix_ms(),
        families(&guard),
    )
    .map_err(|_| ApiError::Internal("cannot encode the metrics".to_owned()))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// The guard's own families, after the binary's: caches, the gate, the allocator.
fn families(guard: &Guard) -> Vec<Family> {
    let caches = guard.caches.stats();
    let per_cache = |name, help, kind, value: fn(&crate::cache::CacheStats) -> u64| Family {
        name,
        help,
        kind,
        series: caches
            .iter()
            .map(|c| (vec![("cache", c.name.clone())], value(c) as f64))
            .collect(),
    };
    let gauge = |name, help, value: f64| Family {
        name,
        help,
        kind: Kind::Gauge,
        series: vec![(Vec::new(), value)],
    };
    let mut families = vec![
        per_cache(
            "plimsoll_cache_bytes",
            "Bytes a bounded cache holds, by its weigher.",
            Kind::Gauge,
            |c| c.bytes,
        ),
        per_cache(
            "plimsoll_cache_max_bytes",
            "The byte bound of a cache.",
            Kind::Gauge,
            |c| c.max_bytes,
        ),
        per_cache(
            "plimsoll_cache_entries",
            "Entries a bounded cache holds.",
            Kind::Gauge,
            |c| c.entries,
        ),
        per_cache(
            "plimsoll_cache_hits_total",
            "Lookups that found their entry.",
            Kind::Counter,
            |c| c.hits,
        ),
        per_cache(
            "plimsoll_cache_misses_total",
            "Lookups that did not.",
            Kind::Counter,
            |c| c.misses,
        ),
        gauge(
            "plimsoll_admission_paused",
            "1 while the admission gate holds new work back (memory above the soft limit).",
            f64::from(u8::from(guard.gate.state() == GateState::Paused)),
        ),
        Family {
            name: "plimsoll_admission_pauses_total",
            help: "Times the admission gate paused.",
            kind: Kind::Counter,
            series: vec![(Vec::new(), guard.gate.pauses() as f64)],
        },
    ];
    if let Some(alloc) = guard.monitor.pressure().alloc {
        families.push(gauge(
            "plimsoll_alloc_allocated_bytes",
            "Bytes allocated and not freed, by jemalloc.",
            alloc.allocated_bytes as f64,
        ));
        families.push(gauge(
            "plimsoll_alloc_active_bytes",
            "Bytes in the pages jemalloc has in use.",
            alloc.active_bytes as f64,
        ));
        families.push(gauge(
            "plimsoll_alloc_resident_bytes",
            "Bytes of jemalloc's pages resident in memory.",
            alloc.resident_bytes as f64,
        ));
    }
    families
}

/// The target the route names must be this service.
fn this_service(guard: &Guard, name: &str) -> Result<(), ApiError> {
    if name == guard.monitor.name() {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no target '{name}'")))
    }
}

fn done(guard: &Guard, action: &str, result: Value) -> Json<Value> {
    Json(action_reply(guard.monitor.name(), action, result))
}

async fn restart(
    State(guard): State<Guard>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    this_service(&guard, &name)?;
    Err(ApiError::NotImplemented(format!(
        "target '{name}' is a guarded service: its supervisor restarts it (plimsoll run, systemd, \
         Kubernetes)"
    )))
}

async fn gc(State(guard): State<Guard>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    this_service(&guard, &name)?;
    #[cfg(feature = "jemalloc")]
    if crate::alloc::in_use() {
        let report = tokio::task::spawn_blocking(crate::alloc::purge)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        return Ok(done(
            &guard,
            "gc",
            json!({
                "resident_before_bytes": report.resident_before.0,
                "resident_after_bytes": report.resident_after.0,
            }),
        ));
    }
    Err(ApiError::NotImplemented(format!(
        "target '{name}' has no allocator to purge (build plimsoll-guard with the 'jemalloc' \
         feature and make jemalloc the global allocator)"
    )))
}

async fn snapshot(
    State(guard): State<Guard>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    this_service(&guard, &name)?;
    #[cfg(feature = "pprof")]
    {
        let profile = crate::alloc::heap_profile_pprof()
            .await
            .map_err(|e| ApiError::Conflict(e.to_string()))?;
        let file = format!(
            "{}-{}-{}.pb.gz",
            guard.monitor.name(),
            std::process::id(),
            plimsoll_http::now_unix_ms()
        );
        let path = guard.profile_dir.join(file);
        let bytes = profile.len();
        let written = path.clone();
        tokio::task::spawn_blocking(move || write_whole(&written, &profile))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(format!("cannot write '{}': {e}", path.display())))?;
        Ok(done(
            &guard,
            "snapshot",
            json!({ "path": path.display().to_string(), "bytes": bytes, "format": "pprof" }),
        ))
    }
    #[cfg(not(feature = "pprof"))]
    Err(ApiError::NotImplemented(format!(
        "target '{name}' takes no heap profiles (build plimsoll-guard with the 'pprof' feature \
         and start it with _RJEM_MALLOC_CONF=prof:true)"
    )))
}

/// Writes `bytes` to `path` through a temporary file, so a reader never sees half a profile.
#[cfg(feature = "pprof")]
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

async fn clear_cache(
    State(guard): State<Guard>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    this_service(&guard, &name)?;
    // Emptying big caches walks them all: on the blocking pool, not the service's threads.
    let caches = guard.caches.clone();
    let report = tokio::task::spawn_blocking(move || caches.clear_all())
        .await
        .map_err(|error| ApiError::Internal(format!("clearing the caches failed: {error}")))?;
    Ok(done(
        &guard,
        "clear-cache",
        json!({ "caches": report.caches, "entries": report.entries, "bytes": report.bytes }),
    ))
}

async fn leak_check(
    State(guard): State<Guard>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    this_service(&guard, &name)?;
    let pressure = guard.monitor.pressure();
    Ok(done(
        &guard,
        "leak-check",
        verdict_json(
            &pressure.leak,
            pressure.budget_bytes,
            pressure.time_to_budget_s,
        ),
    ))
}

async fn thresholds(
    State(guard): State<Guard>,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    this_service(&guard, &name)?;
    let levels = plimsoll_http::thresholds::apply(guard.monitor.levels(), body)?;
    guard.monitor.set_levels(levels);
    Ok(done(
        &guard,
        "thresholds",
        json!({ "warn": levels.warn, "critical": levels.critical }),
    ))
}

async fn clear_leaks(State(guard): State<Guard>) -> Json<Value> {
    guard.monitor.reset_leak_history();
    // No store: the history is the detector's own, and it starts over.
    Json(json!({ "deleted_events": 0, "detector_reset": true }))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route '{}'", uri.path()))
}
