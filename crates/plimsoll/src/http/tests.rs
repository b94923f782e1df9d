//! `router(state)` without a socket: every route, every admin auth case, the admin actions
//! answered by a real supervisor loop with a real child, and the shipped
//! Grafana dashboard against the metric names.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use plimsoll_analysis::{Level, LevelConfig};
use plimsoll_store::{SampleRow, Store};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::ServiceExt;

use plimsoll_http::{contract, metrics};

use super::{router, HttpState};
use crate::registry::{AdminAction, AdminReply, AdminRequest, Registry, TargetView};

const TOKEN: &str = "s3cret-token";

/// A store with two samples and three events of `api`, and one sample of `gone`.
fn store(dir: &std::path::Path) {
    let mut store = Store::open(dir).expect("store");
    let mut a = SampleRow::new("api", 1_000, 100 << 20);
    a.budget_bytes = Some(512 << 20);
    let b = SampleRow::new("api", 2_000, 110 << 20);
    store
        .insert_samples(&[a, b, SampleRow::new("gone", 1_500, 1)])
        .expect("samples");
    for (t, kind) in [
        (1_000, "started"),
        (1_500, "leak-suspected"),
        (1_800, "level-changed"),
    ] {
        let payload = json!({"t_unix_ms": t, "target": "api", "event": kind}).to_string();
        store.insert_event("api", t, kind, &payload).expect("event");
    }
}

/// Answers admin requests the way a supervisor loop would.
fn fake_loop() -> mpsc::Sender<AdminRequest> {
    let (sender, mut receiver) = mpsc::channel::<AdminRequest>(8);
    tokio::spawn(async move {
        while let Some(request) = receiver.recv().await {
            let reply = match request.action {
                AdminAction::Restart => AdminReply::Done(json!({"restarting_in_ms": 100})),
                AdminAction::LeakCheck => AdminReply::Done(json!({"verdict": "no-leak"})),
                AdminAction::Thresholds(levels) => {
                    AdminReply::Done(json!({"warn": levels.warn, "critical": levels.critical}))
                }
                AdminAction::Gc | AdminAction::ClearCache => {
                    AdminReply::Unsupported("target 'api' has no runtime agent".to_owned())
                }
                AdminAction::Snapshot => {
                    AdminReply::Failed("the agent is not connected".to_owned())
                }
            };
            let _ = request.reply.send(reply);
        }
    });
    sender
}

struct Fixture {
    state: HttpState,
    _dir: tempfile::TempDir,
}

fn fixture(admin_token: Option<&str>, api_level: Level) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    store(dir.path());
    let registry = Registry::new();
    let mut api = TargetView::new("api", LevelConfig::recommended(), true);
    api.status.pid = Some(4242);
    api.status.rss_bytes = Some(110 << 20);
    api.status.budget_bytes = Some(512 << 20);
    api.status.level = api_level;
    api.status.restarts = 1;
    api.status.started_unix_ms = Some(1_000);
    api.admin = Some(fake_loop());
    registry.insert(api);
    let mut watched = TargetView::new("watched", LevelConfig::recommended(), false);
    watched.status.pid = Some(77);
    registry.insert(watched);
    Fixture {
        state: HttpState {
            registry: Arc::clone(&registry),
            data_dir: dir.path().to_path_buf(),
            admin_token: admin_token.map(str::to_owned),
            read_token: None,
            ingest: None,
            cors_origins: Arc::new(Vec::new()),
        },
        _dir: dir,
    }
}

/// Status, content type and body (JSON when it parses, else a string).
async fn call(
    state: &HttpState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String, Value) {
    let answer = contract::call(router(state.clone()), method.as_str(), uri, token, body).await;
    (answer.status, answer.content_type, answer.body)
}

async fn get(state: &HttpState, uri: &str) -> (StatusCode, String, Value) {
    call(state, Method::GET, uri, None, None).await
}

#[tokio::test]
async fn health_lists_every_target_and_is_200_while_none_is_critical() {
    let f = fixture(None, Level::Warn);
    let (status, _, body) = get(&f.state, "/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    contract::check_health(&body).expect("the shared /health shape");
    assert_eq!(body["status"], "warn");
    let targets = body["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 2);
    let api = &targets[0];
    assert_eq!(api["name"], "api");
    assert_eq!(api["pid"], 4242);
    assert_eq!(api["rss_bytes"], 110 << 20);
    assert_eq!(api["budget_bytes"], 512 << 20);
    assert_eq!(api["heap_used_bytes"], Value::Null);
    assert_eq!(api["level"], "warn");
    assert_eq!(api["restarts"], 1);
    assert!(api["uptime_s"].as_f64().expect("uptime") > 0.0);
    assert_eq!(targets[1]["owned"], false);
}

#[tokio::test]
async fn health_is_503_while_a_target_is_critical_or_in_breach() {
    for level in [Level::Critical, Level::Breach] {
        let f = fixture(None, level);
        let (status, _, body) = get(&f.state, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "critical");
    }
    let f = fixture(None, Level::Ok);
    let (status, _, body) = get(&f.state, "/health").await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("ok")));
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_one_series_per_target() {
    let f = fixture(None, Level::Critical);
    let (status, content_type, body) = get(&f.state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = body.as_str().expect("text");
    contract::check_metrics(text).expect("the shared /metrics families");
    assert!(
        text.contains("plimsoll_rss_bytes{target=\"api\"} 115343360"),
        "{text}"
    );
    assert!(text.contains("plimsoll_level{target=\"api\"} 2"), "{text}");
    assert!(
        text.contains("plimsoll_restarts_total{target=\"api\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("plimsoll_leak_state{target=\"watched\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn targets_lists_live_targets_then_stored_ones() {
    let f = fixture(None, Level::Ok);
    let (status, _, body) = get(&f.state, "/api/v1/targets").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<(&str, bool)> = body["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| (t["name"].as_str().unwrap_or(""), t["live"] == true))
        .collect();
    assert_eq!(names, [("api", true), ("watched", true), ("gone", false)]);
}

#[tokio::test]
async fn samples_since_a_time_and_a_clear_400_or_404() {
    let f = fixture(None, Level::Ok);
    let (status, _, body) = get(&f.state, "/api/v1/targets/api/samples?since=1500").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let samples = body["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0]["t_unix_ms"], 2_000);
    assert_eq!(samples[0]["rss_bytes"], 110 << 20);
    assert_eq!(body["next_since"], 2_001);
    let (_, _, body) = get(&f.state, "/api/v1/targets/api/samples").await;
    assert_eq!(body["samples"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["samples"][0]["budget_bytes"], 512 << 20);
    // Stored only: still answered.
    let (status, _, _) = get(&f.state, "/api/v1/targets/gone/samples").await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, body) = get(&f.state, "/api/v1/targets/api/samples?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap_or("").contains("'yesterday'"),
        "{body}"
    );
    let (status, _, body) = get(&f.state, "/api/v1/targets/api/samples?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap_or("").contains("'0'"),
        "{body}"
    );
    let (status, _, body) = get(&f.state, "/api/v1/targets/nope/samples").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().unwrap_or("").contains("'nope'"),
        "{body}"
    );
}

#[tokio::test]
async fn events_and_leaks_come_from_the_store() {
    let f = fixture(None, Level::Ok);
    let (status, _, body) = get(&f.state, "/api/v1/events").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kinds: Vec<&str> = body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["started", "leak-suspected", "level-changed"]);
    assert!(body["events"][0]["id"].is_i64());
    let (_, _, body) = get(&f.state, "/api/v1/events?since=1600").await;
    assert_eq!(body["events"].as_array().map(Vec::len), Some(1));
    let (status, _, body) = get(&f.state, "/api/v1/events?since=-x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, _, body) = get(&f.state, "/api/v1/leaks").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let leaks = body["leaks"].as_array().expect("leaks");
    assert_eq!(leaks.len(), 1);
    assert_eq!(leaks[0]["event"], "leak-suspected");
    assert_eq!(body["current"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn dashboard_page_and_its_embedded_assets() {
    let f = fixture(None, Level::Ok);
    let (status, content_type, body) = get(&f.state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = body.as_str().expect("html");
    assert!(page.contains("/assets/uPlot.iife.min.js") && page.contains("/assets/dashboard.js"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN"
    );
    for (asset, kind) in [
        ("uPlot.iife.min.js", "text/javascript"),
        ("uPlot.min.css", "text/css"),
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
    ] {
        let (status, content_type, _) = get(&f.state, &format!("/assets/{asset}")).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(content_type.starts_with(kind), "{asset}: {content_type}");
    }
    let (status, _, body) = get(&f.state, "/assets/secret.txt").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]
        .as_str()
        .unwrap_or("")
        .contains("'secret.txt'"));
    let (status, _, body) = get(&f.state, "/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap_or("").contains("'/nowhere'"));
}

/// Every admin route of the shared contract, for the target `api`.
fn admin_routes() -> Vec<(&'static str, String, Option<&'static str>)> {
    contract::ADMIN_ROUTES
        .iter()
        .map(|&(m, path, body)| (m, path.replace("{name}", "api"), body))
        .collect()
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("method")
}

#[tokio::test]
async fn admin_routes_are_off_without_a_configured_token() {
    let f = fixture(None, Level::Ok);
    for (m, uri, body) in admin_routes() {
        let uri = uri.as_str();
        for token in [None, Some(TOKEN), Some("")] {
            let (status, _, answer) = call(&f.state, method(m), uri, token, body).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{m} {uri} {token:?}: {answer}"
            );
            assert!(answer["error"]
                .as_str()
                .unwrap_or("")
                .contains("PLIMSOLL_ADMIN_TOKEN"));
        }
    }
}

#[tokio::test]
async fn admin_routes_refuse_a_missing_or_wrong_token() {
    let f = fixture(Some(TOKEN), Level::Ok);
    for (m, uri, body) in admin_routes() {
        let uri = uri.as_str();
        for token in [
            None,
            Some("wrong"),
            Some("s3cret-token2"),
            Some("s3cret-toke"),
        ] {
            let (status, _, answer) = call(&f.state, method(m), uri, token, body).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{m} {uri} {token:?}: {answer}"
            );
        }
        // Another scheme with the right token is no bearer token.
        let request = Request::builder()
            .method(method(m))
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Basic {TOKEN}"))
            .body(Body::empty())
            .expect("request");
        let response = router(f.state.clone())
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{m} {uri} Basic"
        );
    }
}

#[tokio::test]
async fn admin_routes_with_the_right_token_reach_the_targets_loop() {
    let f = fixture(Some(TOKEN), Level::Ok);
    let expected = [
        StatusCode::OK,              // restart: done
        StatusCode::CONFLICT,        // snapshot: failed
        StatusCode::NOT_IMPLEMENTED, // gc: unsupported (no agent)
        StatusCode::NOT_IMPLEMENTED, // clear-cache: unsupported
        StatusCode::OK,              // leak-check: done
        StatusCode::OK,              // thresholds: done
        StatusCode::OK,              // clearing the leak history
    ];
    for ((m, uri, body), expected) in admin_routes().into_iter().zip(expected) {
        let (status, _, answer) = call(&f.state, method(m), &uri, Some(TOKEN), body).await;
        assert_eq!(status, expected, "{m} {uri}: {answer}");
        if status != StatusCode::OK {
            contract::check_error(&answer).expect("the shared error shape");
        }
    }
    let (_, _, answer) = call(
        &f.state,
        Method::POST,
        "/api/v1/targets/api/restart",
        Some(TOKEN),
        None,
    )
    .await;
    contract::check_action_reply(&answer, "api", "restart").expect("the shared reply shape");
    assert_eq!(answer["result"], json!({"restarting_in_ms": 100}));
    let (_, _, answer) = call(
        &f.state,
        Method::POST,
        "/api/v1/targets/api/gc",
        Some(TOKEN),
        None,
    )
    .await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or("")
            .contains("no runtime agent"),
        "{answer}"
    );
    let (_, _, answer) = call(
        &f.state,
        Method::PUT,
        "/api/v1/targets/api/thresholds",
        Some(TOKEN),
        Some(r#"{"warn": 70, "critical": 90}"#),
    )
    .await;
    assert_eq!(answer["result"], json!({"warn": 0.7, "critical": 0.9}));
}

#[tokio::test]
async fn admin_mistakes_are_named() {
    let f = fixture(Some(TOKEN), Level::Ok);
    let cases = [
        (
            "POST",
            "/api/v1/targets/nope/restart",
            None,
            StatusCode::NOT_FOUND,
            "'nope'",
        ),
        (
            "POST",
            "/api/v1/targets/watched/gc",
            None,
            StatusCode::CONFLICT,
            "target 'watched' is watched, not owned",
        ),
        (
            "PUT",
            "/api/v1/targets/api/thresholds",
            Some(r#"{"warn": 95, "critical": 90}"#),
            StatusCode::BAD_REQUEST,
            "warn 95 must be below critical 90",
        ),
        (
            "PUT",
            "/api/v1/targets/api/thresholds",
            Some(r#"{"warn": 0}"#),
            StatusCode::BAD_REQUEST,
            "invalid warn '0'",
        ),
        (
            "PUT",
            "/api/v1/targets/api/thresholds",
            Some(r#"{"warn": "high"}"#),
            StatusCode::BAD_REQUEST,
            "expected e.g.",
        ),
        (
            "PUT",
            "/api/v1/targets/api/thresholds",
            Some("not json"),
            StatusCode::BAD_REQUEST,
            "expected e.g.",
        ),
        (
            "PUT",
            "/api/v1/targets/nope/thresholds",
            Some(r#"{"warn": 70}"#),
            StatusCode::NOT_FOUND,
            "'nope'",
        ),
    ];
    for (m, uri, body, expected, message) in cases {
        let (status, _, answer) = call(&f.state, method(m), uri, Some(TOKEN), body).await;
        assert_eq!(status, expected, "{m} {uri} {body:?}: {answer}");
        let error = answer["error"].as_str().unwrap_or("");
        assert!(error.contains(message), "{m} {uri} {body:?}: {error}");
    }
}

#[tokio::test]
async fn a_loop_that_is_gone_is_a_conflict_not_a_hang() {
    let f = fixture(Some(TOKEN), Level::Ok);
    let (sender, receiver) = mpsc::channel::<AdminRequest>(1);
    drop(receiver);
    f.state
        .registry
        .update("api", |view| view.admin = Some(sender));
    let (status, _, answer) = call(
        &f.state,
        Method::POST,
        "/api/v1/targets/api/restart",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap_or("")
        .contains("no longer supervised"));
}

#[test]
fn the_grafana_dashboard_is_json_and_queries_only_exposed_metrics() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/plimsoll.json");
    let text = std::fs::read_to_string(&path).expect("read the Grafana dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the Grafana dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 5, "too few queries: {exprs:?}");
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "a query without a plimsoll metric: {expr}"
        );
        for name in names {
            assert!(
                metrics::FAMILIES.contains(&name.as_str()),
                "'{name}' in '{expr}' is not exposed by /metrics"
            );
        }
    }
}

fn collect_exprs(value: &Value, exprs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", Value::String(expr)) => exprs.push(expr.clone()),
                    _ => collect_exprs(value, exprs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, exprs)),
        _ => {}
    }
}

/// The `plimsoll_…` identifiers of a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(found) = expr[i..].find("plimsoll_") {
        let start = i + found;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.push(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test]
async fn clearing_the_leak_history_deletes_the_leak_events_only() {
    let f = fixture(Some(TOKEN), Level::Ok);
    let (status, _, body) =
        call(&f.state, Method::DELETE, "/api/v1/leaks", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deleted_events"], 1);
    let (_, _, body) = get(&f.state, "/api/v1/leaks").await;
    assert_eq!(body["leaks"].as_array().map(Vec::len), Some(0), "{body}");
    let (_, _, body) = get(&f.state, "/api/v1/events").await;
    assert_eq!(body["events"].as_array().map(Vec::len), Some(2), "{body}");
}

/// Runs of the target started directly (no keeper), stopped with SIGKILL: real processes for
/// a real loop inside this test process.
struct Direct;

struct DirectRun(tokio::process::Child);

impl crate::supervise::Spawner for Direct {
    fn spawn<'a>(
        &'a self,
        settings: &'a crate::supervise::Settings,
        _env: &'a [(String, String)],
    ) -> crate::supervise::Pending<'a, anyhow::Result<Box<dyn crate::supervise::Running>>> {
        Box::pin(async move {
            let child = tokio::process::Command::new(&settings.command[0])
                .args(&settings.command[1..])
                .kill_on_drop(true)
                .spawn()?;
            Ok(Box::new(DirectRun(child)) as Box<dyn crate::supervise::Running>)
        })
    }
}

impl crate::supervise::Running for DirectRun {
    fn pid(&self) -> u32 {
        self.0.id().unwrap_or(0)
    }

    fn wait(&mut self) -> crate::supervise::Pending<'_, crate::supervise::ChildExit> {
        Box::pin(async move {
            use std::os::unix::process::ExitStatusExt;
            let status = self.0.wait().await.expect("wait");
            crate::supervise::ChildExit {
                code: status.code(),
                signal: status.signal(),
            }
        })
    }

    fn stop(
        &mut self,
        _grace: std::time::Duration,
    ) -> crate::supervise::Pending<'_, crate::supervise::ChildExit> {
        let _ = self.0.start_kill();
        self.wait()
    }
}

/// Drops samples and events.
struct Nowhere;

impl crate::supervise::EventOutput for Nowhere {
    fn emit(&mut self, _: &crate::event::Event) {}
    fn sample(
        &mut self,
        _: &str,
        _: i64,
        _: &plimsoll_probe::Sample,
        _: Option<&crate::agent::HeapFigures>,
        _: Option<u64>,
        _: Level,
    ) {
    }
    fn incident(&mut self, _: &str, _: i64, _: &str, _: Option<&str>) {}
}

/// Polls `uri` until `check` accepts its body (10 s at most).
async fn until_body(state: &HttpState, uri: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, body) = get(state, uri).await;
        if check(&body) {
            return body;
        }
        assert!(std::time::Instant::now() < deadline, "{uri}: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn admin_actions_reach_a_real_loop_with_a_real_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::new();
    let mut settings = crate::supervise::test_settings(dir.path());
    settings.command = vec!["sleep".to_owned(), "30".to_owned()];
    settings.budget = Some(1 << 30);
    settings.interval = std::time::Duration::from_millis(50);
    settings.agent = None;
    settings.registry = Some(registry.clone());
    let state = HttpState {
        registry,
        data_dir: dir.path().to_path_buf(),
        admin_token: Some(TOKEN.to_owned()),
        read_token: None,
        ingest: None,
        cors_origins: Arc::new(Vec::new()),
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let inputs = crate::supervise::Inputs::new(cancel.clone()).with_spawner(Box::new(Direct));
    let mut output = Nowhere;
    let driver = async {
        let health = until_body(&state, "/health", |b| b["targets"][0]["rss_bytes"].is_u64()).await;
        let first_pid = health["targets"][0]["pid"].as_u64().expect("pid");
        let thresholds = "/api/v1/targets/app/thresholds";
        let body = Some(r#"{"warn": 40, "critical": 60}"#);
        let (status, _, reply) = call(&state, Method::PUT, thresholds, Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let (_, _, health) = get(&state, "/health").await;
        assert_eq!(health["targets"][0]["warn_percent"], 40.0, "{health}");
        assert_eq!(health["targets"][0]["critical_percent"], 60.0, "{health}");
        let (_, _, metrics) = get(&state, "/metrics").await;
        let metrics = metrics.as_str().expect("text").to_owned();
        assert!(
            metrics.contains("plimsoll_level_warn_ratio{target=\"app\"} 0.4"),
            "{metrics}"
        );
        let leak = "/api/v1/targets/app/leak-check";
        let (status, _, reply) = call(&state, Method::POST, leak, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert!(reply["result"]["verdict"].is_string(), "{reply}");
        let (status, _, reply) = call(
            &state,
            Method::POST,
            "/api/v1/targets/app/gc",
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{reply}");
        let restart = "/api/v1/targets/app/restart";
        let (status, _, reply) = call(&state, Method::POST, restart, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let health = until_body(&state, "/health", |b| {
            b["targets"][0]["restarts"] == 1
                && b["targets"][0]["pid"].as_u64() != Some(first_pid)
                && b["targets"][0]["rss_bytes"].is_u64()
        })
        .await;
        // The marks set before the restart hold for the new run.
        assert_eq!(health["targets"][0]["warn_percent"], 40.0, "{health}");
        cancel.cancel();
    };
    let (status, ()) = tokio::join!(
        crate::supervise::supervise(settings, &mut output, inputs),
        driver
    );
    // Stopped by the cancellation: SIGKILL of `sleep`, 128 + 9.
    assert_eq!(status.expect("the loop ends"), 137);
}

#[tokio::test]
async fn with_a_read_token_reads_need_it_or_the_admin_token_and_the_page_stays_open() {
    let mut fixture = fixture(Some(TOKEN), Level::Ok);
    fixture.state.read_token = Some("read-token".to_owned());
    let state = &fixture.state;
    let reads = [
        "/health",
        "/metrics",
        "/api/v1/targets",
        "/api/v1/targets/api/samples?since=0",
        "/api/v1/events",
        "/api/v1/leaks",
    ];
    for uri in reads {
        let (status, _, body) = call(state, Method::GET, uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} without a token");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("read token")),
            "{uri}: {body}"
        );
        let (status, _, _) = call(state, Method::GET, uri, Some("wrong"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} with a wrong token");
        for token in ["read-token", TOKEN] {
            let (status, _, _) = call(state, Method::GET, uri, Some(token), None).await;
            assert_eq!(status, StatusCode::OK, "{uri} with {token}");
        }
    }
    let (status, _, _) = get(state, "/").await;
    assert_eq!(status, StatusCode::OK);
    // The read token opens no admin action.
    let (status, _, _) = call(
        state,
        Method::POST,
        "/api/v1/targets/api/restart",
        Some("read-token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_non_loopback_address_is_warned_about() {
    let on = |text: &str| text.parse().expect("an address");
    assert_eq!(super::exposure(on("127.0.0.1:9464"), false), None);
    assert_eq!(super::exposure(on("[::1]:9464"), false), None);
    let open = super::exposure(on("0.0.0.0:9464"), false).expect("a warning");
    assert!(
        open.contains("unauthenticated") && open.contains("in clear"),
        "{open}"
    );
    let guarded = super::exposure(on("10.0.0.5:9464"), true).expect("a warning");
    assert!(guarded.contains("reads need the read token") && guarded.contains("in clear"));
}

#[tokio::test]
async fn a_thresholds_body_must_name_a_mark_and_a_huge_one_is_413() {
    let fixture = fixture(Some(TOKEN), Level::Ok);
    let uri = "/api/v1/targets/api/thresholds";
    let put = |body: String| {
        let state = fixture.state.clone();
        async move { call(&state, Method::PUT, uri, Some(TOKEN), Some(&body)).await }
    };
    let (status, _, body) = put("{}".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("names no threshold")),
        "{body}"
    );
    let huge = format!("{{\"warn\": 70, \"pad\": \"{}\"}}", "x".repeat(10 << 20));
    let (status, _, body) = put(huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _, body) = put("{\"critical\": 95}".to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The mark not named keeps its value.
    assert_eq!(body["result"], json!({"warn": 0.75, "critical": 0.95}));
}

#[tokio::test]
async fn ingest_is_off_without_its_token_whatever_the_admin_token() {
    let f = fixture(Some(TOKEN), Level::Ok);
    let body = r#"{"target": "web", "instance": "a", "samples": []}"#;
    for token in [None, Some(TOKEN)] {
        let (status, _, answer) =
            call(&f.state, Method::POST, "/api/v1/ingest", token, Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token:?}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("PLIMSOLL_INGEST_TOKEN")),
            "{answer}"
        );
    }
    // The browser monitor is served whatever the tokens.
    let (status, content_type, _) = get(&f.state, "/agent/plimsoll-browser.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/javascript"),
        "{content_type}"
    );
}
