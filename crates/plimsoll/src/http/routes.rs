//! The handlers: `/health` and `/metrics` from the registry, the JSON API from the store (read
//! on the blocking pool), and the admin actions, which go to the target's own loop and wait for
//! its answer.

use std::time::Duration;

use anyhow::Context;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use plimsoll_http::{metrics, target_json, ApiError};
use plimsoll_store::{EventRow, Resolution, SampleRow, StoreReader};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::HttpState;
use crate::registry::{AdminAction, AdminReply, AdminRequest, TargetView};
use crate::supervise::now_unix_ms;

/// How long an admin action may take in the target's loop (a restart waits for the grace).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Points or events per answer unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;
/// The leak events.
const LEAK_EVENTS: [&str; 3] = ["leak-suspected", "leak-confirmed", "leak-cleared"];

/// `GET /health`: 200 while no target is critical, else 503. Remote targets (ingest) come
/// after the local ones, one entry each, with a `remote` object (instances by leak state, heap
/// quantiles, the instance the dashboard charts).
pub(crate) async fn health(State(state): State<HttpState>) -> Response {
    let views = state.registry.all();
    let remote = remote_views(&state, false);
    let statuses = views
        .iter()
        .map(|v| &v.status)
        .chain(remote.iter().map(|r| &r.status));
    let (code, mut body) = plimsoll_http::health(statuses, now_unix_ms());
    if let Some(targets) = body["targets"].as_array_mut() {
        for (entry, view) in targets.iter_mut().skip(views.len()).zip(&remote) {
            entry["remote"] = view.remote.clone();
        }
    }
    (code, Json(body)).into_response()
}

/// The remote targets' aggregates, when ingest is on; with their instances when `listed`.
fn remote_views(state: &HttpState, listed: bool) -> Vec<crate::ingest::RemoteView> {
    state
        .ingest
        .as_ref()
        .map(|(ingest, _)| ingest.views(std::time::Instant::now(), listed))
        .unwrap_or_default()
}

/// `GET /metrics`: Prometheus text, built from the registry now; remote targets add one series
/// per target to the usual families, and families of their own (`ingest::Ingest::families`).
pub(crate) async fn metrics(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let remote = remote_views(&state, false);
    let extra = state
        .ingest
        .as_ref()
        .map(|(ingest, _)| ingest.families(&remote))
        .unwrap_or_default();
    let statuses = state
        .registry
        .all()
        .into_iter()
        .map(|v| v.status)
        .chain(remote.into_iter().map(|r| r.status))
        .collect();
    let text = metrics::render_with(statuses, now_unix_ms(), extra)
        .map_err(|_| ApiError::Internal("cannot encode the metrics".to_owned()))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// Runs `read` on a fresh store reader on the blocking pool.
async fn read_store<T: Send + 'static>(
    state: &HttpState,
    read: impl FnOnce(&StoreReader) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let dir = state.data_dir.clone();
    tokio::task::spawn_blocking(move || {
        let reader = StoreReader::open(&dir)
            .with_context(|| format!("cannot open the store in '{}'", dir.display()))?;
        read(&reader)
    })
    .await
    .map_err(|error| ApiError::Internal(format!("the store reader failed: {error}")))?
    .map_err(|error| ApiError::Internal(format!("{error:#}")))
}

/// `GET /api/v1/targets`: the live targets (remote ones with their `instances`), then the ones
/// only the store remembers.
pub(crate) async fn targets(State(state): State<HttpState>) -> Result<Json<Value>, ApiError> {
    let views = state.registry.all();
    let stored = read_store(&state, |reader| Ok(reader.targets()?)).await?;
    let now = now_unix_ms();
    let mut targets: Vec<Value> = views
        .iter()
        .map(|view| {
            let mut entry = target_json(&view.status, now);
            entry["live"] = Value::Bool(true);
            entry
        })
        .collect();
    let remote = remote_views(&state, true);
    for view in &remote {
        let mut entry = target_json(&view.status, now);
        entry["live"] = Value::Bool(true);
        entry["remote"] = view.remote.clone();
        entry["instances"] = Value::Array(view.instances.clone());
        targets.push(entry);
    }
    // A live instance's stored series is listed under its target, not again on its own.
    let instance_names: std::collections::HashSet<&str> = remote
        .iter()
        .flat_map(|r| r.instances.iter().filter_map(|i| i["name"].as_str()))
        .collect();
    let live_instance = |name: &str| instance_names.contains(name);
    for name in stored {
        if !views.iter().any(|v| v.status.name == name) && !live_instance(&name) {
            targets.push(json!({ "name": name, "live": false }));
        }
    }
    Ok(Json(json!({ "targets": targets })))
}

/// The query of the list routes; values stay text so a bad one can be named.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    since: Option<String>,
    limit: Option<String>,
    target: Option<String>,
}

impl ListQuery {
    fn since(&self) -> Result<i64, ApiError> {
        match self.since.as_deref() {
            None => Ok(0),
            Some(text) => text.trim().parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "invalid since '{text}' (expected milliseconds since the Unix epoch, e.g. 1700000000000)"
                ))
            }),
        }
    }

    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "invalid limit '{text}' (expected 1 to {MAX_LIMIT})"
                ))),
            },
        }
    }
}

fn query(query: Result<Query<ListQuery>, QueryRejection>) -> Result<ListQuery, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// `GET /api/v1/targets/{name}/samples?since=MS&limit=N`: points oldest first (per-minute
/// roll-ups for the time before the oldest raw sample still kept).
pub(crate) async fn samples(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let (since, limit) = (q.since()?, q.limit()?);
    let live = state.registry.get(&name).is_some()
        || state
            .ingest
            .as_ref()
            .is_some_and(|(ingest, _)| ingest.is_live_series(&name));
    let target = name.clone();
    let points = read_store(&state, move |reader| {
        if !live && !reader.targets()?.contains(&target) {
            return Ok(None);
        }
        Ok(Some(reader.series(&target, since, limit)?))
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no target '{name}'")))?;
    let next_since = points.last().map(|p| p.sample.t_unix_ms + 1);
    let samples: Vec<Value> = points
        .iter()
        .map(|p| sample_json(&p.sample, p.resolution))
        .collect();
    Ok(Json(
        json!({ "target": name, "samples": samples, "next_since": next_since }),
    ))
}

fn sample_json(s: &SampleRow, resolution: Resolution) -> Value {
    json!({
        "t_unix_ms": s.t_unix_ms,
        "rss_bytes": s.rss_bytes,
        "pss_bytes": s.pss_bytes,
        "uss_bytes": s.uss_bytes,
        "swap_bytes": s.swap_bytes,
        "heap_used_bytes": s.heap_used_bytes,
        "heap_total_bytes": s.heap_total_bytes,
        "heap_used_after_gc_bytes": s.heap_used_after_gc_bytes,
        "external_bytes": s.external_bytes,
        "cgroup_usage_bytes": s.cgroup_usage_bytes,
        "cgroup_limit_bytes": s.cgroup_limit_bytes,
        "budget_bytes": s.budget_bytes,
        "level": s.level,
        "resolution": match resolution {
            Resolution::Raw => "raw",
            Resolution::Minute { .. } => "minute",
        },
    })
}

/// The event as it was emitted, with the store's id.
fn event_json(row: &EventRow) -> Value {
    let mut event = serde_json::from_str::<Value>(&row.payload_json).unwrap_or_else(
        |_| json!({ "t_unix_ms": row.t_unix_ms, "target": row.target, "event": row.kind }),
    );
    if let Some(object) = event.as_object_mut() {
        object.insert("id".to_owned(), json!(row.id));
    }
    event
}

/// `GET /api/v1/events?since=MS&limit=N&target=NAME`: events oldest first.
pub(crate) async fn events(
    State(state): State<HttpState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let (since, limit) = (q.since()?, q.limit()?);
    let target = q.target.clone();
    let rows = read_store(&state, move |reader| {
        Ok(reader.events(target.as_deref(), since, limit)?)
    })
    .await?;
    let next_since = rows.last().map(|r| r.t_unix_ms + 1);
    let events: Vec<Value> = rows.iter().map(event_json).collect();
    Ok(Json(json!({ "events": events, "next_since": next_since })))
}

/// `GET /api/v1/leaks?since=MS&limit=N&target=NAME`: the leak events, and each live target's
/// current leak state.
pub(crate) async fn leaks(
    State(state): State<HttpState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let (since, limit) = (q.since()?, q.limit()?);
    let target = q.target.clone();
    let rows = read_store(&state, move |reader| {
        // The store does not index by kind: scan a bounded window and keep the leak events.
        let rows = reader.events(target.as_deref(), since, MAX_LIMIT)?;
        Ok(rows
            .into_iter()
            .filter(|row| LEAK_EVENTS.contains(&row.kind.as_str()))
            .take(limit)
            .collect::<Vec<_>>())
    })
    .await?;
    let now = now_unix_ms();
    let current: Vec<Value> = state
        .registry
        .all()
        .iter()
        .map(|view| json!({ "name": view.status.name, "leak": target_json(&view.status, now)["leak"] }))
        .collect();
    let leaks: Vec<Value> = rows.iter().map(event_json).collect();
    Ok(Json(json!({ "leaks": leaks, "current": current })))
}

/// `DELETE /api/v1/leaks`: deletes the stored leak events (through a connection of its own:
/// SQLite in WAL mode serialises it with the supervisor's writer). The live detectors are not
/// reset behind the supervisors' backs: a leak still in progress is reported again.
pub(crate) async fn clear_leaks(State(state): State<HttpState>) -> Result<Json<Value>, ApiError> {
    let dir = state.data_dir.clone();
    let deleted = tokio::task::spawn_blocking(move || {
        plimsoll_store::Store::open(&dir).and_then(|mut store| store.clear_leak_history())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!({ "deleted_events": deleted })))
}

/// An admin action: handed to the target's loop, answered by it.
pub(crate) async fn admin_action(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    action: AdminAction,
) -> Result<Json<Value>, ApiError> {
    let view = state
        .registry
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no target '{name}'")))?;
    ask(&view, action).await
}

/// Sends `action` to the loop of `view` and turns its reply into a response.
async fn ask(view: &TargetView, action: AdminAction) -> Result<Json<Value>, ApiError> {
    let name = &view.status.name;
    let Some(admin) = view.admin.clone() else {
        return Err(if view.status.owned {
            ApiError::Conflict(format!("target '{name}' takes no admin actions"))
        } else {
            ApiError::Conflict(format!("target '{name}' is watched, not owned"))
        });
    };
    let action_name = action_name(&action);
    let (reply, answer) = oneshot::channel();
    let exchange = async {
        admin.send(AdminRequest { action, reply }).await.ok()?;
        answer.await.ok()
    };
    let reply = match tokio::time::timeout(ADMIN_TIMEOUT, exchange).await {
        Err(_) => {
            return Err(ApiError::Timeout(format!(
                "target '{name}' did not answer '{action_name}' within {} s",
                ADMIN_TIMEOUT.as_secs()
            )))
        }
        Ok(None) => {
            return Err(ApiError::Conflict(format!(
                "target '{name}' is no longer supervised"
            )))
        }
        Ok(Some(reply)) => reply,
    };
    match reply {
        AdminReply::Done(result) => {
            Ok(Json(plimsoll_http::action_reply(name, action_name, result)))
        }
        AdminReply::Unsupported(why) => Err(ApiError::NotImplemented(why)),
        AdminReply::Failed(why) => Err(ApiError::Conflict(why)),
    }
}

fn action_name(action: &AdminAction) -> &'static str {
    match action {
        AdminAction::Restart => "restart",
        AdminAction::Snapshot => "snapshot",
        AdminAction::Gc => "gc",
        AdminAction::ClearCache => "clear-cache",
        AdminAction::LeakCheck => "leak-check",
        AdminAction::Thresholds(_) => "thresholds",
    }
}

/// `PUT /api/v1/targets/{name}/thresholds` with `{"warn": 70, "critical": 90}`.
pub(crate) async fn thresholds(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let view = state
        .registry
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no target '{name}'")))?;
    let levels = plimsoll_http::thresholds::apply(view.status.levels, body)?;
    ask(&view, AdminAction::Thresholds(levels)).await
}

/// No route: a 404 that names the path.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route '{}'", uri.path()))
}
