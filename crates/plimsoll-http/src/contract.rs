//! The shapes both servers promise, as checks: the `plimsoll` binary's HTTP tests and
//! `plimsoll-guard`'s router tests run the same ones on their own answers, so the two cannot
//! drift apart. Each check returns what is wrong, naming the field. [`call`] is the one way
//! both test suites ask a router without a socket.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

use crate::metrics::FAMILIES;

/// The fields of one target in `/health`, in order.
pub const TARGET_FIELDS: [&str; 13] = [
    "name",
    "owned",
    "pid",
    "rss_bytes",
    "heap_used_bytes",
    "heap_used_after_gc_bytes",
    "budget_bytes",
    "level",
    "warn_percent",
    "critical_percent",
    "leak",
    "restarts",
    "uptime_s",
];

/// Fields a target object may have besides [`TARGET_FIELDS`].
pub const OPTIONAL_TARGET_FIELDS: [&str; 4] = ["live", "containment", "remote", "instances"];

/// The fields of a target's `leak` object, when it has one.
pub const LEAK_FIELDS: [&str; 8] = [
    "state",
    "verdict",
    "growth_bytes_per_s",
    "time_to_budget_s",
    "confidence",
    "signal",
    "needs_more_s",
    "reason",
];

/// Every admin route as (method, path with `{name}` for the target, a valid body).
pub const ADMIN_ROUTES: [(&str, &str, Option<&str>); 7] = [
    ("POST", "/api/v1/targets/{name}/restart", None),
    ("POST", "/api/v1/targets/{name}/snapshot", None),
    ("POST", "/api/v1/targets/{name}/gc", None),
    ("POST", "/api/v1/targets/{name}/clear-cache", None),
    ("POST", "/api/v1/targets/{name}/leak-check", None),
    (
        "PUT",
        "/api/v1/targets/{name}/thresholds",
        Some(r#"{"warn": 70, "critical": 90}"#),
    ),
    ("DELETE", "/api/v1/leaks", None),
];

/// Checks a `/health` body: a status and targets with exactly [`TARGET_FIELDS`].
pub fn check_health(body: &Value) -> Result<(), String> {
    let status = body["status"].as_str().ok_or("no 'status' string")?;
    if !["ok", "warn", "critical"].contains(&status) {
        return Err(format!("invalid status '{status}'"));
    }
    let targets = body["targets"].as_array().ok_or("no 'targets' array")?;
    if targets.is_empty() {
        return Err("no target".to_owned());
    }
    targets.iter().try_for_each(check_target)
}

/// Checks one target object of `/health` or `/api/v1/targets`.
pub fn check_target(target: &Value) -> Result<(), String> {
    let object = target.as_object().ok_or("a target is not an object")?;
    let missing: Vec<&str> = TARGET_FIELDS
        .iter()
        .copied()
        .filter(|field| !object.contains_key(*field))
        .collect();
    if !missing.is_empty() {
        return Err(format!("target without {missing:?}: {target}"));
    }
    let extra: Vec<&String> = object
        .keys()
        .filter(|key| {
            !TARGET_FIELDS.contains(&key.as_str())
                && !OPTIONAL_TARGET_FIELDS.contains(&key.as_str())
        })
        .collect();
    if !extra.is_empty() {
        return Err(format!("target with unknown fields {extra:?}"));
    }
    let level = target["level"].as_str().ok_or("no 'level' string")?;
    if !["ok", "warn", "critical", "breach"].contains(&level) {
        return Err(format!("invalid level '{level}'"));
    }
    for field in ["warn_percent", "critical_percent"] {
        target[field]
            .as_f64()
            .ok_or(format!("'{field}' is not a number"))?;
    }
    target["name"].as_str().ok_or("'name' is not a string")?;
    target["restarts"]
        .as_u64()
        .ok_or("'restarts' is not a count")?;
    for field in ["pid", "rss_bytes", "heap_used_bytes", "budget_bytes"] {
        if !(target[field].is_null() || target[field].is_u64()) {
            return Err(format!("'{field}' is neither null nor a count"));
        }
    }
    match &target["leak"] {
        Value::Null => Ok(()),
        Value::Object(leak) => {
            let fields: Vec<&str> = leak.keys().map(String::as_str).collect();
            let mut expected = LEAK_FIELDS.to_vec();
            expected.sort_unstable();
            let mut fields = fields;
            fields.sort_unstable();
            if fields == expected {
                Ok(())
            } else {
                Err(format!("leak fields {fields:?}, expected {expected:?}"))
            }
        }
        other => Err(format!("'leak' is neither null nor an object: {other}")),
    }
}

/// Checks a `/metrics` text: every family of [`FAMILIES`] has its `# TYPE` line, and every
/// sample is a `plimsoll_` metric.
pub fn check_metrics(text: &str) -> Result<(), String> {
    for family in FAMILIES {
        let declared = text.contains(&format!("# TYPE {family} "))
            || text.contains(&format!("# TYPE {} ", family.trim_end_matches("_total")));
        if !declared {
            return Err(format!("no family '{family}'"));
        }
    }
    match text
        .lines()
        .find(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with("plimsoll_"))
    {
        Some(line) => Err(format!("a sample outside the plimsoll_ names: '{line}'")),
        None => Ok(()),
    }
}

/// Checks the answer of a done admin action: `{"target", "action", "result"}`.
pub fn check_action_reply(body: &Value, target: &str, action: &str) -> Result<(), String> {
    if body["target"] != target || body["action"] != action || body.get("result").is_none() {
        return Err(format!(
            "expected {{\"target\": \"{target}\", \"action\": \"{action}\", \"result\": …}}, got {body}"
        ));
    }
    Ok(())
}

/// Checks an error answer: `{"error": "a message"}` and nothing else.
pub fn check_error(body: &Value) -> Result<(), String> {
    match body.as_object() {
        Some(object)
            if object.len() == 1 && body["error"].as_str().is_some_and(|m| !m.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(format!("expected {{\"error\": \"…\"}}, got {body}")),
    }
}

/// A router's answer to [`call`].
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The `Content-Type` header, empty when there is none.
    pub content_type: String,
    /// The body: JSON when it parses, else the text as a JSON string.
    pub body: Value,
}

/// Sends one request to `router` without a socket, with a bearer `token` and a JSON `body`
/// when given. A test fixture: it panics when the request cannot be built (a bad method or
/// URI) or the router fails, which a test wants to see.
pub async fn call(
    router: Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned())),
        None => request.body(Body::empty()),
    }
    .expect("a request");
    let response = router.oneshot(request).await.expect("a response");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("a body under 16 MiB");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        content_type,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{health, metrics, TargetStatus};
    use plimsoll_analysis::LevelConfig;

    #[test]
    fn what_this_crate_renders_passes_its_own_checks() {
        let mut target = TargetStatus::new("api", LevelConfig::recommended(), true);
        target.rss_bytes = Some(1 << 20);
        let (_, body) = health([&target], 0);
        check_health(&body).expect("health");
        let text = metrics::render(vec![target], 0).expect("render");
        check_metrics(&text).expect("metrics");
    }

    #[test]
    fn the_checks_catch_a_missing_field_and_a_stray_metric() {
        let target = TargetStatus::new("api", LevelConfig::recommended(), true);
        let (_, mut body) = health([&target], 0);
        if let Some(object) = body["targets"][0].as_object_mut() {
            object.remove("rss_bytes");
        }
        let error = check_health(&body).expect_err("missing rss_bytes");
        assert!(error.contains("rss_bytes"), "{error}");
        let text = metrics::render(vec![target], 0).expect("render") + "other_metric 1\n";
        assert!(check_metrics(&text)
            .expect_err("stray")
            .contains("other_metric"));
        assert!(check_error(&serde_json::json!({"error": ""})).is_err());
    }
}
