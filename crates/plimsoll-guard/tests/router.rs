//! The guard's router against the shapes the `plimsoll` binary promises (the shared checks of
//! `plimsoll_http::contract`), without a socket, plus one real server on a loopback port.

use std::time::Duration;

use axum::http::StatusCode;
use plimsoll_guard::monitor::{Monitor, MonitorConfig, Reading};
use plimsoll_guard::shutdown::Shutdown;
use plimsoll_guard::{AdminToken, Guard, GuardConfig};
use plimsoll_http::contract;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const TOKEN: &str = "guard-token";

fn guard(token: Option<&str>) -> Guard {
    let monitor_config = MonitorConfig {
        budget_bytes: Some(1000 * MIB),
        ..MonitorConfig::recommended("svc")
    };
    let monitor = Monitor::detached(&monitor_config, std::process::id());
    monitor.observe(&Reading::rss(0.0, 300 * MIB));
    let config = GuardConfig {
        monitor: monitor_config,
        admin_token: AdminToken(token.map(str::to_owned)),
        ..GuardConfig::recommended("svc")
    };
    Guard::with_monitor(config, monitor, Shutdown::new()).expect("guard")
}

async fn call(
    guard: &Guard,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let answer = contract::call(guard.router(), method, uri, token, body).await;
    (answer.status, answer.body)
}

#[tokio::test]
async fn health_has_the_binarys_shape_with_the_service_as_its_target() {
    let guard = guard(None);
    let (status, body) = call(&guard, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    contract::check_health(&body).expect("the shared /health shape");
    let target = &body["targets"][0];
    assert_eq!(target["name"], "svc");
    assert_eq!(target["pid"], std::process::id());
    assert_eq!(target["rss_bytes"], 300 * MIB);
    assert_eq!(target["budget_bytes"], 1000 * MIB);
    assert_eq!(target["owned"], true);
    let (_, body) = call(&guard, "GET", "/api/v1/targets", None, None).await;
    contract::check_target(&body["targets"][0]).expect("the shared target shape");
}

#[tokio::test]
async fn health_is_503_at_the_budget() {
    let guard = guard(None);
    guard.monitor().observe(&Reading::rss(1.0, 1000 * MIB));
    let (status, body) = call(&guard, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "critical");
}

#[tokio::test]
async fn metrics_carry_every_family_of_the_binary_and_the_guards_own() {
    let guard = guard(None);
    let (status, body) = call(&guard, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().expect("text");
    contract::check_metrics(text).expect("the shared /metrics families");
    assert!(
        text.contains("plimsoll_rss_bytes{target=\"svc\"} 314572800"),
        "{text}"
    );
    assert!(text.contains("plimsoll_admission_paused 0"), "{text}");
    assert!(text.contains("# TYPE plimsoll_cache_bytes gauge"), "{text}");
}

#[tokio::test]
async fn admin_routes_are_off_without_a_token_and_refuse_a_wrong_one() {
    let off = guard(None);
    let on = guard(Some(TOKEN));
    for (method, path, body) in contract::ADMIN_ROUTES {
        let uri = path.replace("{name}", "svc");
        let (status, answer) = call(&off, method, &uri, Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {answer}");
        contract::check_error(&answer).expect("the shared error shape");
        let (status, _) = call(&on, method, &uri, Some("wrong"), body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
}

#[tokio::test]
async fn every_admin_route_answers_in_the_shared_shapes() {
    let guard = guard(Some(TOKEN));
    for (method, path, body) in contract::ADMIN_ROUTES {
        let uri = path.replace("{name}", "svc");
        let (status, answer) = call(&guard, method, &uri, Some(TOKEN), body).await;
        let action = uri.rsplit('/').next().unwrap_or_default();
        match status {
            StatusCode::OK if method == "DELETE" => assert_eq!(answer["detector_reset"], true),
            StatusCode::OK => contract::check_action_reply(&answer, "svc", action)
                .unwrap_or_else(|e| panic!("{method} {uri}: {e}")),
            // Without the allocator features, gc and snapshot say what is missing; restart is
            // the supervisor's job.
            StatusCode::NOT_IMPLEMENTED => {
                assert!(
                    ["restart", "gc", "snapshot"].contains(&action),
                    "{uri}: {answer}"
                );
                contract::check_error(&answer).expect("the shared error shape");
            }
            // With the `pprof` feature but profiling off at start: a conflict that names the
            // setting.
            StatusCode::CONFLICT if action == "snapshot" => {
                assert!(
                    answer["error"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("prof:true"),
                    "{answer}"
                );
            }
            other => panic!("{method} {uri}: {other} {answer}"),
        }
    }
    let (_, answer) = call(
        &guard,
        "POST",
        "/api/v1/targets/svc/leak-check",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(answer["result"]["verdict"], "inconclusive", "{answer}");
    let (_, answer) = call(
        &guard,
        "PUT",
        "/api/v1/targets/svc/thresholds",
        Some(TOKEN),
        Some(r#"{"warn": 60}"#),
    )
    .await;
    assert_eq!(answer["result"]["warn"], 0.6);
    let (_, body) = call(&guard, "GET", "/health", None, None).await;
    assert_eq!(body["targets"][0]["warn_percent"], 60.0);
}

#[tokio::test]
async fn mistakes_are_named() {
    let guard = guard(Some(TOKEN));
    for (method, uri, body, expected, message) in [
        (
            "POST",
            "/api/v1/targets/other/gc",
            None,
            StatusCode::NOT_FOUND,
            "'other'",
        ),
        (
            "PUT",
            "/api/v1/targets/svc/thresholds",
            Some(r#"{"warn": 95}"#),
            StatusCode::BAD_REQUEST,
            "warn 95 must be below critical 85",
        ),
        (
            "PUT",
            "/api/v1/targets/svc/thresholds",
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "names no threshold",
        ),
        ("GET", "/nowhere", None, StatusCode::NOT_FOUND, "'/nowhere'"),
    ] {
        let (status, answer) = call(&guard, method, uri, Some(TOKEN), body).await;
        assert_eq!(status, expected, "{uri}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{uri}: {error}");
    }
}

#[tokio::test]
async fn a_real_server_on_a_loopback_port_answers_health() {
    let guard = guard(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = guard.shutdown().clone();
    let router = guard.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read");
        text
    })
    .await
    .expect("client");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"name\":\"svc\""), "{answer}");
    guard.shutdown().shutdown(Duration::from_secs(5)).await;
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops at shutdown")
        .expect("joined")
        .expect("served");
}
