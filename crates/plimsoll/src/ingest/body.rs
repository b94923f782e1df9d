//! The body of `POST /api/v1/ingest`, checked field by field so that a client's mistake gets a
//! message naming the field and the value (`samples[3].heap_used_bytes: …`), never a panic.
//! Unknown fields are ignored (newer agents may send more).

use serde_json::Value;

use crate::bounded::excerpt;

/// The most samples one request may carry.
pub(crate) const MAX_SAMPLES: usize = 600;
/// The longest instance id, in characters.
pub(crate) const MAX_INSTANCE_CHARS: usize = 32;
/// How far before the server's clock a sample may be, in milliseconds (a day).
const MAX_AGE_MS: i64 = 24 * 3600 * 1000;
/// How far after the server's clock a sample may be, in milliseconds (10 minutes of skew).
const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;
/// The largest byte figure believed (1 TiB: no page holds more).
const MAX_BYTES: u64 = 1 << 40;
/// The largest DOM node count believed.
const MAX_DOM_NODES: u64 = 100_000_000;
/// The most long tasks, and their milliseconds, one sample may report (an hour of them).
const MAX_LONG_TASK_MS: f64 = 3_600_000.0;

/// One request's samples of one instance of one remote target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    /// The target's name (name.rs rules).
    pub(crate) target: String,
    /// The instance: one page load, one reporter process.
    pub(crate) instance: String,
    /// In the order sent.
    pub(crate) samples: Vec<RemoteSample>,
}

/// One reading of a remote instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RemoteSample {
    /// When it was taken, milliseconds since the Unix epoch (the reporter's clock).
    pub(crate) t_unix_ms: i64,
    /// The memory the instance uses, bytes: the whole page's (`measureUserAgentSpecificMemory`)
    /// or its JS heap (`performance.memory`).
    pub(crate) heap_used_bytes: u64,
    /// The heap the runtime has reserved, bytes, when known.
    pub(crate) heap_total_bytes: Option<u64>,
    /// Elements in the document, when known.
    pub(crate) dom_nodes: Option<u64>,
    /// Long tasks (over 50 ms) since the previous sample.
    pub(crate) long_tasks: u64,
    /// Their total duration, milliseconds.
    pub(crate) long_task_ms: f64,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BodyError {
    /// Not the documented shape; the message names the field and the value (400).
    Malformed(String),
    /// More samples than a request may carry (413).
    TooMany(String),
}

/// Parses and checks a body against the server's clock `now_unix_ms`.
pub(crate) fn parse(bytes: &[u8], now_unix_ms: i64) -> Result<Batch, BodyError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|error| BodyError::Malformed(format!("the body is not JSON: {error}")))?;
    let object = value.as_object().ok_or_else(|| {
        BodyError::Malformed(format!(
            "the body is not a JSON object: {}",
            excerpt(&value.to_string())
        ))
    })?;
    let target = text_field(object.get("target"), "target")?;
    crate::name::check_name(&target).map_err(|e| BodyError::Malformed(format!("target: {e}")))?;
    let instance = text_field(object.get("instance"), "instance")?;
    check_instance(&instance)?;
    let store_name = store_name(&target, &instance);
    crate::name::check_name(&store_name).map_err(|_| {
        BodyError::Malformed(format!(
            "target '{target}' with instance '{instance}': together longer than {} characters",
            crate::name::MAX_NAME_CHARS - 1
        ))
    })?;
    let list = match object.get("samples") {
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(BodyError::Malformed(format!(
                "samples: expected an array, got {}",
                excerpt(&other.to_string())
            )))
        }
        None => return Err(BodyError::Malformed("samples: missing".to_owned())),
    };
    if list.is_empty() {
        return Err(BodyError::Malformed("samples: empty".to_owned()));
    }
    if list.len() > MAX_SAMPLES {
        return Err(BodyError::TooMany(format!(
            "samples: {} in one request (at most {MAX_SAMPLES})",
            list.len()
        )));
    }
    let samples = list
        .iter()
        .enumerate()
        .map(|(i, sample)| parse_sample(i, sample, now_unix_ms))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch {
        target,
        instance,
        samples,
    })
}

/// The name an instance's samples and events are kept under: `TARGET.INSTANCE`.
pub(crate) fn store_name(target: &str, instance: &str) -> String {
    format!("{target}.{instance}")
}

fn text_field(value: Option<&Value>, field: &str) -> Result<String, BodyError> {
    match value {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(BodyError::Malformed(format!(
            "{field}: expected a string, got {}",
            excerpt(&other.to_string())
        ))),
        None => Err(BodyError::Malformed(format!("{field}: missing"))),
    }
}

/// 1 to 32 letters, digits, `-` and `_`.
fn check_instance(instance: &str) -> Result<(), BodyError> {
    let ok = !instance.is_empty()
        && instance.len() <= MAX_INSTANCE_CHARS
        && instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(BodyError::Malformed(format!(
            "instance: invalid id '{}' (use 1 to {MAX_INSTANCE_CHARS} letters, digits, '-' and '_')",
            excerpt(instance)
        )))
    }
}

fn parse_sample(i: usize, value: &Value, now_unix_ms: i64) -> Result<RemoteSample, BodyError> {
    let field = |name: &str| format!("samples[{i}].{name}");
    let object = value.as_object().ok_or_else(|| {
        BodyError::Malformed(format!(
            "samples[{i}]: expected an object, got {}",
            excerpt(&value.to_string())
        ))
    })?;
    let t = number(object.get("t_unix_ms"), &field("t_unix_ms"), true)?.unwrap_or(0.0);
    let t_unix_ms = t.round() as i64;
    if t_unix_ms < now_unix_ms - MAX_AGE_MS || t_unix_ms > now_unix_ms + MAX_AHEAD_MS {
        return Err(BodyError::Malformed(format!(
            "{}: {t_unix_ms} is more than a day before or 10 minutes after the server's clock \
             ({now_unix_ms} ms since the Unix epoch)",
            field("t_unix_ms")
        )));
    }
    let heap_used_bytes = whole(
        object.get("heap_used_bytes"),
        &field("heap_used_bytes"),
        true,
        MAX_BYTES,
    )?
    .unwrap_or(0);
    let heap_total_bytes = whole(
        object.get("heap_total_bytes"),
        &field("heap_total_bytes"),
        false,
        MAX_BYTES,
    )?;
    let dom_nodes = whole(
        object.get("dom_nodes"),
        &field("dom_nodes"),
        false,
        MAX_DOM_NODES,
    )?;
    let long_tasks = whole(
        object.get("long_tasks"),
        &field("long_tasks"),
        false,
        MAX_LONG_TASK_MS as u64,
    )?
    .unwrap_or(0);
    let long_task_ms =
        number(object.get("long_task_ms"), &field("long_task_ms"), false)?.unwrap_or(0.0);
    if !(0.0..=MAX_LONG_TASK_MS).contains(&long_task_ms) {
        return Err(BodyError::Malformed(format!(
            "{}: {long_task_ms} is out of range (0 to {MAX_LONG_TASK_MS})",
            field("long_task_ms")
        )));
    }
    Ok(RemoteSample {
        t_unix_ms,
        heap_used_bytes,
        heap_total_bytes,
        dom_nodes,
        long_tasks,
        long_task_ms,
    })
}

/// A finite number; `None` when absent (or null) and not `required`.
fn number(value: Option<&Value>, field: &str, required: bool) -> Result<Option<f64>, BodyError> {
    match value {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(BodyError::Malformed(format!("{field}: missing"))),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => Err(BodyError::Malformed(format!(
                "{field}: {n} is not a number"
            ))),
        },
        Some(other) => Err(BodyError::Malformed(format!(
            "{field}: expected a number, got {}",
            excerpt(&other.to_string())
        ))),
    }
}

/// A whole number from 0 to `max`; a float that is whole is taken.
fn whole(
    value: Option<&Value>,
    field: &str,
    required: bool,
    max: u64,
) -> Result<Option<u64>, BodyError> {
    let Some(x) = number(value, field, required)? else {
        return Ok(None);
    };
    if x < 0.0 || x.fract() != 0.0 || x > max as f64 {
        return Err(BodyError::Malformed(format!(
            "{field}: {x} is not a whole number from 0 to {max}"
        )));
    }
    Ok(Some(x as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn body(samples: &str) -> String {
        format!(r#"{{"target": "web", "instance": "a1b2", "samples": {samples}}}"#)
    }

    fn malformed(text: &str) -> String {
        match parse(text.as_bytes(), NOW) {
            Err(BodyError::Malformed(message)) => message,
            other => panic!("not malformed: {other:?}"),
        }
    }

    #[test]
    fn a_documented_body_parses() {
        let text = body(&format!(
            r#"[{{"t_unix_ms": {NOW}, "heap_used_bytes": 1048576, "heap_total_bytes": 2097152,
                "dom_nodes": 120, "long_tasks": 2, "long_task_ms": 130.5, "new_field": true}},
               {{"t_unix_ms": {}, "heap_used_bytes": 2000000.0}}]"#,
            NOW + 1000
        ));
        let batch = parse(text.as_bytes(), NOW).expect("parse");
        assert_eq!(batch.target, "web");
        assert_eq!(batch.instance, "a1b2");
        assert_eq!(batch.samples.len(), 2);
        assert_eq!(batch.samples[0].dom_nodes, Some(120));
        assert_eq!(batch.samples[0].long_task_ms, 130.5);
        assert_eq!(batch.samples[1].heap_used_bytes, 2_000_000);
        assert_eq!(batch.samples[1].long_tasks, 0);
    }

    #[test]
    fn every_mistake_names_its_field_and_value() {
        let cases = [
            ("{", "not JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"instance": "a", "samples": []}"#, "target: missing"),
            (
                r#"{"target": "we b", "instance": "a", "samples": []}"#,
                "target: invalid name 'we b'",
            ),
            (
                r#"{"target": "web", "instance": "a/b", "samples": []}"#,
                "instance: invalid id 'a/b'",
            ),
            (
                r#"{"target": "web", "instance": 7, "samples": []}"#,
                "instance: expected a string, got 7",
            ),
            (&body("{}"), "samples: expected an array"),
            (&body("[]"), "samples: empty"),
            (
                &body(r#"[{"t_unix_ms": 1700000000000}]"#),
                "samples[0].heap_used_bytes: missing",
            ),
            (
                &body(r#"[{"t_unix_ms": 1700000000000, "heap_used_bytes": "12"}]"#),
                "samples[0].heap_used_bytes: expected a number, got \"12\"",
            ),
            (
                &body(r#"[{"t_unix_ms": 1700000000000, "heap_used_bytes": -1}]"#),
                "samples[0].heap_used_bytes: -1 is not a whole number",
            ),
            (
                &body(r#"[{"t_unix_ms": 5, "heap_used_bytes": 1}]"#),
                "samples[0].t_unix_ms: 5 is more than a day before",
            ),
            (
                &body(
                    r#"[{"t_unix_ms": 1700000000000, "heap_used_bytes": 1, "long_task_ms": -3}]"#,
                ),
                "samples[0].long_task_ms: -3 is out of range",
            ),
        ];
        for (text, expected) in cases {
            let message = malformed(text);
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn too_many_samples_is_its_own_error_and_long_names_are_refused() {
        let one = format!(r#"{{"t_unix_ms": {NOW}, "heap_used_bytes": 1}}"#);
        let many = vec![one.as_str(); MAX_SAMPLES + 1].join(",");
        match parse(body(&format!("[{many}]")).as_bytes(), NOW) {
            Err(BodyError::TooMany(message)) => assert!(message.contains("601"), "{message}"),
            other => panic!("{other:?}"),
        }
        let long = "t".repeat(40);
        let text = format!(
            r#"{{"target": "{long}", "instance": "{}", "samples": [{one}]}}"#,
            "i".repeat(30)
        );
        assert!(malformed(&text).contains("together longer than"));
    }
}
