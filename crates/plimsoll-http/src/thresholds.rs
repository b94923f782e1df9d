//! The body of `PUT /api/v1/targets/{name}/thresholds`: `{"warn": 70, "critical": 90}`,
//! percentages of the budget. It must name at least one of them (`{}` is a 400, not a reset);
//! one not named keeps its value; checked against the marks in force before anything changes.
//! A body past the route's limit (`MAX_BODY`) is a 413.

use axum::extract::rejection::JsonRejection;
use axum::Json;
use plimsoll_analysis::LevelConfig;
use serde_json::Value;

use crate::ApiError;

/// The largest body the thresholds route reads; a real one is a few dozen bytes. Servers put
/// it on the route with `axum::extract::DefaultBodyLimit::max(MAX_BODY)`.
pub const MAX_BODY: usize = 16 * 1024;

/// The new level marks of `body` over `current`, checked: 0 < warn < critical ≤ 100. A body
/// that is not such an object, or names no mark, is a 400 that shows the expected form; one
/// too large to read is a 413.
pub fn apply(
    current: LevelConfig,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<LevelConfig, ApiError> {
    const EXPECTED: &str = "(expected e.g. {\"warn\": 70, \"critical\": 90})";
    let Json(body) = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the body is larger than {MAX_BODY} bytes {EXPECTED}"
            ))
        } else {
            ApiError::BadRequest(format!("{} {EXPECTED}", rejection.body_text()))
        }
    })?;
    let Value::Object(fields) = body else {
        return Err(ApiError::BadRequest(format!(
            "the body is not an object {EXPECTED}"
        )));
    };
    if fields.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "the body names no threshold: give warn, critical or both {EXPECTED}"
        )));
    }
    let mut marks = [
        ("warn", current.warn * 100.0),
        ("critical", current.critical * 100.0),
    ];
    for (key, value) in &fields {
        let Some(slot) = marks.iter_mut().find(|(name, _)| name == key) else {
            return Err(ApiError::BadRequest(format!(
                "unknown field '{key}' {EXPECTED}"
            )));
        };
        slot.1 = value
            .as_f64()
            .ok_or_else(|| ApiError::BadRequest(format!("invalid {key} '{value}' {EXPECTED}")))?;
    }
    for (what, value) in marks {
        if !(value > 0.0 && value <= 100.0) {
            return Err(ApiError::BadRequest(format!(
                "invalid {what} '{value}' (expected a percentage above 0 and at most 100)"
            )));
        }
    }
    let [(_, warn), (_, critical)] = marks;
    if warn >= critical {
        return Err(ApiError::BadRequest(format!(
            "warn {warn} must be below critical {critical}"
        )));
    }
    Ok(LevelConfig {
        warn: warn / 100.0,
        critical: critical / 100.0,
        ..current
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: Value) -> Result<(f64, f64), String> {
        apply(LevelConfig::recommended(), Ok(Json(body)))
            .map(|l| (l.warn, l.critical))
            .map_err(|e| match e {
                ApiError::BadRequest(message) => message,
                other => format!("not a 400: {other:?}"),
            })
    }

    #[test]
    fn marks_are_replaced_one_at_a_time_and_checked() {
        assert_eq!(check(json!({"warn": 70, "critical": 90})), Ok((0.7, 0.9)));
        assert_eq!(check(json!({"critical": 95})), Ok((0.75, 0.95)));
        for (body, message) in [
            (json!({}), "the body names no threshold"),
            (json!({"warn": 95}), "warn 95 must be below critical 85"),
            (json!({"warn": 0}), "invalid warn '0'"),
            (json!({"critical": 101}), "invalid critical '101'"),
            (json!({"warn": "high"}), "invalid warn '\"high\"'"),
            (json!({"warm": 70}), "unknown field 'warm'"),
            (json!([70]), "not an object"),
        ] {
            let error = check(body.clone()).expect_err("refused");
            assert!(error.contains(message), "{body}: {error}");
        }
    }
}
