//! A PM2 ecosystem file read as PM2 reads it (`lib/API/schema.json`, `Common.js` of PM2 6) and
//! mapped key by key onto the apps of a `plimsoll.toml`: what has an equivalent is carried over,
//! every other key is a [`Warning`] naming the key and the app, and a value PM2 would refuse is
//! an error naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

use crate::bounded::{excerpt, excerpt_message};
use crate::name::sanitize;

/// The largest `.json`/`.yaml` file read, like `up`'s config.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// `up` runs at most this many instances of an app.
const MAX_INSTANCES: i64 = 256;
/// PM2's defaults where one of `max_restarts`/`min_uptime` is given without the other.
const PM2_MAX_RESTARTS: u64 = 16;
const PM2_MIN_UPTIME_MS: u64 = 1000;

/// A key that was not carried over, or carried over with a difference worth knowing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Warning {
    /// The app's name; `None` for a top-level key.
    pub(crate) app: Option<String>,
    pub(crate) key: String,
    /// The value as written, when it matters.
    pub(crate) value: Option<String>,
    pub(crate) message: String,
}

/// One app as `plimsoll.toml` will have it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImportedApp {
    pub(crate) name: String,
    pub(crate) command: Vec<String>,
    /// Absolute.
    pub(crate) cwd: PathBuf,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) instances: u32,
    /// How `instances` was written, when it was not a plain number (`"max"`, `-1`).
    pub(crate) instances_from: Option<String>,
    /// PM2's cluster mode: one process per instance here.
    pub(crate) cluster: bool,
    /// Bytes, per instance (PM2's `max_memory_restart` is per process).
    pub(crate) budget: Option<u64>,
    /// How `max_memory_restart` was written.
    pub(crate) budget_from: Option<String>,
    /// From `kill_timeout`.
    pub(crate) grace: Option<Duration>,
    pub(crate) max_restarts: Option<u32>,
    /// `max_restarts` × `min_uptime`: that many runs shorter than `min_uptime` give up, as in
    /// PM2.
    pub(crate) restart_window: Option<Duration>,
    /// From `restart_delay` (fixed: the cap is the same) or `exp_backoff_restart_delay`.
    pub(crate) restart_delay: Option<Duration>,
    pub(crate) max_restart_delay: Option<Duration>,
    /// The delay grows, from `exp_backoff_restart_delay`.
    pub(crate) exp_backoff: bool,
}

/// What an ecosystem file becomes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Imported {
    pub(crate) apps: Vec<ImportedApp>,
    pub(crate) warnings: Vec<Warning>,
}

/// What the mapping needs from the machine, passed in so that tests choose it.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// CPUs, for `instances: "max"`, `0` and negative counts.
    pub(crate) cpus: u32,
    /// Whether a program of this name is on PATH (`python` or `python3`; a script PM2 finds
    /// there).
    pub(crate) on_path: fn(&str) -> bool,
}

impl Host {
    /// This machine.
    pub(crate) fn this_machine() -> Host {
        Host {
            cpus: std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
            on_path,
        }
    }
}

/// Reads the ecosystem file at `path` and maps it, with `env_NAME` applied when `env` is given.
pub(crate) fn import(path: &Path, env: Option<&str>, host: &Host) -> Result<Imported> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    let value = load(&absolute, path)?;
    // Canonical, so that paths in the config hold no `..` (the file exists: so does this).
    let base = absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let base = base.canonicalize().unwrap_or(base);
    convert(&value, &base, env, host).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// The file's content as JSON, by its extension.
fn load(absolute: &Path, shown: &Path) -> Result<Value> {
    let name = shown.display();
    let extension = absolute
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let metadata = std::fs::metadata(absolute).with_context(|| format!("cannot read '{name}'"))?;
    if metadata.is_dir() {
        bail!("cannot read '{name}': it is a directory");
    }
    match extension.as_str() {
        "js" | "cjs" | "mjs" => super::node_eval::evaluate(absolute),
        "json" | "yaml" | "yml" => {
            let mut bytes = Vec::new();
            std::fs::File::open(absolute)
                .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
                .with_context(|| format!("cannot read '{name}'"))?;
            if bytes.len() as u64 > MAX_FILE_BYTES {
                bail!("'{name}' is larger than {MAX_FILE_BYTES} bytes (is this the right file?)");
            }
            if extension == "json" {
                serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow!(
                        "'{name}' is not valid JSON: {} (PM2 also reads a JavaScript object \
                         literal there; as a .js file with module.exports = {{…}} it reads here too)",
                        excerpt_message(&e.to_string())
                    )
                })
            } else {
                yaml(&bytes).map_err(|e| anyhow!("'{name}' is not valid YAML: {e}"))
            }
        }
        _ => bail!(
            "cannot read '{name}': unknown extension '{}' (expected .js, .cjs, .mjs, .json, \
             .yaml or .yml, as PM2 does)",
            excerpt(&extension)
        ),
    }
}

/// YAML as PM2's js-yaml reads it, merge keys (`<<: *defaults`) applied.
pub(crate) fn yaml(bytes: &[u8]) -> Result<Value, String> {
    let mut value: serde_norway::Value =
        serde_norway::from_slice(bytes).map_err(|e| excerpt_message(&e.to_string()))?;
    value
        .apply_merge()
        .map_err(|e| excerpt_message(&e.to_string()))?;
    serde_json::to_value(value).map_err(|e| excerpt_message(&e.to_string()))
}

/// Maps the file's content; relative paths resolve against `base`, the file's directory.
pub(crate) fn convert(
    value: &Value,
    base: &Path,
    env: Option<&str>,
    host: &Host,
) -> Result<Imported> {
    let mut warnings = Vec::new();
    let apps: Vec<&Value> = match value {
        Value::Array(apps) => apps.iter().collect(),
        Value::Object(top) if top.contains_key("apps") || top.contains_key("pm2") => {
            for (key, value) in top {
                match key.as_str() {
                    "apps" | "pm2" => {}
                    "deploy" => warnings.push(Warning {
                        app: None,
                        key: key.clone(),
                        value: None,
                        message: "not carried: PM2's deploy (git pull over ssh) has no \
                                  equivalent; ship with your CI, then run `plimsoll up`"
                            .to_owned(),
                    }),
                    _ if value.is_null() => {}
                    _ => warnings.push(Warning {
                        app: None,
                        key: key.clone(),
                        value: Some(shown(value)),
                        message: "not carried: not an app setting".to_owned(),
                    }),
                }
            }
            match top.get("apps").or_else(|| top.get("pm2")) {
                Some(Value::Array(apps)) => apps.iter().collect(),
                Some(app @ Value::Object(_)) => vec![app],
                Some(other) => bail!(
                    "apps: expected a list of apps or one app, found {}",
                    kind(other)
                ),
                None => Vec::new(),
            }
        }
        // One app on its own, as PM2 allows.
        Value::Object(_) => vec![value],
        other => bail!(
            "expected the apps (module.exports = {{ apps: [...] }}, a list, or one app), found {}",
            kind(other)
        ),
    };
    if apps.is_empty() {
        bail!("no apps: nothing to import (expected apps: [{{ name, script, … }}])");
    }
    let objects = apps
        .iter()
        .enumerate()
        .map(|(i, app)| match app {
            Value::Object(map) => Ok(map),
            other => bail!("app #{}: expected an object, found {}", i + 1, kind(other)),
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(env) = env {
        let known: BTreeSet<&str> = objects
            .iter()
            .flat_map(|app| app.keys().filter_map(|k| k.strip_prefix("env_")))
            .collect();
        if !known.contains(env) {
            let have = if known.is_empty() {
                "it has no env_NAME at all".to_owned()
            } else {
                format!(
                    "it has {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                )
            };
            bail!(
                "--env '{}': no app has env_{} ({have})",
                excerpt(env),
                excerpt(env)
            );
        }
    }
    let mut imported = Vec::new();
    for (index, app) in objects.into_iter().enumerate() {
        imported.push(convert_app(index, app, base, env, host, &mut warnings)?);
    }
    Ok(Imported {
        apps: imported,
        warnings,
    })
}

/// What a key that is not carried over says, and the values of it that change nothing here.
fn not_carried(key: &str) -> Option<&'static str> {
    const LOGS: &str = "not carried: no log files; the apps' output goes to plimsoll's own \
                        standard output and error (the journal under the systemd unit in deploy/), \
                        rotate there";
    const WATCH: &str = "not carried: no file watching; after a deploy, restart through the \
                         admin API (POST /api/v1/targets/NAME/restart)";
    const PM2_ONLY: &str = "not carried: PM2-specific, no equivalent";
    Some(match key {
        "cron_restart" | "cron" => {
            "not carried: no scheduled restarts; a systemd timer or cron job can call \
             POST /api/v1/targets/NAME/restart"
        }
        "watch" | "ignore_watch" | "watch_options" | "watch_delay" => WATCH,
        "out_file" | "out" | "output" | "out_log" | "error_file" | "error" | "err" | "err_file"
        | "err_log" | "log_file" | "log" | "merge_logs" | "combine_logs" | "log_date_format"
        | "log_type" | "time" | "disable_logs" => LOGS,
        "pid_file" | "pid" => "not carried: no pid files; GET /api/v1/targets lists the pids",
        "autorestart" => {
            "not carried: plimsoll up always restarts an app that crashes (backoff, then \
             max_restarts) and ends one that exits with code 0"
        }
        "stop_exit_codes" => "not carried: an exit with code 0 is not restarted, any other exit is",
        "autostart" => "not carried: every app of plimsoll.toml starts",
        "wait_ready" | "listen_timeout" => {
            "not carried: no readiness message; a rolling restart moves on at the restarted \
             instance's first sample"
        }
        "shutdown_with_message" | "kill_retry_time" => {
            "not carried: a stop is SIGTERM to the whole process tree, then SIGKILL after the \
             grace (kill_timeout)"
        }
        "treekill" => "not carried: plimsoll always stops the whole process tree",
        "source_map_support" | "disable_source_map_support" => {
            "not carried: add --enable-source-maps to node_args"
        }
        "instance_var" => {
            "not carried: each instance gets its number in NODE_APP_INSTANCE and \
             PLIMSOLL_INSTANCE, under no other name"
        }
        "increment_var" => "not carried: no variable is incremented per instance",
        "uid" | "user" | "gid" | "username" => {
            "not carried: run plimsoll as that user (User= in the systemd unit)"
        }
        "filter_env" => {
            "not carried: apps inherit plimsoll's environment (less its PLIMSOLL_* variables) \
             plus env"
        }
        "namespace"
        | "append_env_to_name"
        | "vizion"
        | "pmx"
        | "automation"
        | "trace"
        | "disable_trace"
        | "v8"
        | "event_loop_inspector"
        | "deep_monitoring"
        | "io"
        | "post_update"
        | "force"
        | "windowsHide"
        | "name_prefix"
        | "install_url"
        | "execute_command" => PM2_ONLY,
        _ => return None,
    })
}

/// A value of a key that is not carried over which changes nothing (`watch: false`).
fn harmless(key: &str, value: &Value) -> bool {
    match (key, value) {
        (_, Value::Null) => true,
        (_, Value::Array(items)) => items.is_empty(),
        ("autorestart" | "autostart" | "treekill", Value::Bool(on)) => *on,
        (_, Value::Bool(on)) => !on,
        ("cron_restart" | "cron", Value::Number(n)) => n.as_f64() == Some(0.0),
        ("cron_restart" | "cron", Value::String(s)) => s.is_empty() || s == "0",
        ("instance_var", Value::String(s)) => s == "NODE_APP_INSTANCE",
        ("namespace", Value::String(s)) => s == "default",
        _ => false,
    }
}

/// The keys read while building the command and the settings.
const CARRIED: &[&str] = &[
    "name",
    "script",
    "exec",
    "cmd",
    "command",
    "args",
    "interpreter",
    "exec_interpreter",
    "node_args",
    "interpreter_args",
    "interpreterArgs",
    "cwd",
    "env",
    "port",
    "instances",
    "exec_mode",
    "max_memory_restart",
    "kill_timeout",
    "max_restarts",
    "min_uptime",
    "restart_delay",
    "exp_backoff_restart_delay",
];

fn convert_app(
    index: usize,
    app: &Map<String, Value>,
    base: &Path,
    env_name: Option<&str>,
    host: &Host,
    warnings: &mut Vec<Warning>,
) -> Result<ImportedApp> {
    let number = index + 1;
    let script = match first(app, &["script", "exec", "cmd", "command"]) {
        Some((_, Value::String(s))) if !s.trim().is_empty() => s.clone(),
        Some((key, other)) => bail!(
            "app #{number}: {key}: expected the file or command to run, found {}",
            shown(other)
        ),
        None => bail!(
            "app #{number}{}: no script (PM2 needs `script`: the file or command to run)",
            app.get("name")
                .and_then(Value::as_str)
                .map(|n| format!(" '{}'", excerpt(n)))
                .unwrap_or_default()
        ),
    };
    // PM2's default name: the script's file name without its extension.
    let written_name = match app.get("name") {
        Some(Value::String(name)) => name.clone(),
        Some(other) => bail!(
            "app #{number}: name: expected a string, found {}",
            shown(other)
        ),
        None if script.contains(' ') => script.clone(),
        None => {
            let file = Path::new(&script)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| script.clone());
            match file.rfind('.') {
                Some(dot) if dot > 0 => file[..dot].to_owned(),
                _ => file,
            }
        }
    };
    let name = sanitize(&written_name, &format!("app{number}"));
    let mut warn = |key: &str, value: Option<String>, message: String| {
        warnings.push(Warning {
            app: Some(name.clone()),
            key: key.to_owned(),
            value,
            message,
        });
    };
    if name != written_name && app.contains_key("name") {
        warn(
            "name",
            Some(format!("'{}'", excerpt(&written_name))),
            format!("named '{name}' here (names are letters, digits, '-', '_' and '.')"),
        );
    }
    let context = |key: &str| format!("app '{name}': {key}");

    // Where it runs: a relative cwd against the file's directory (PM2 takes the directory
    // `pm2 start` runs in; they agree when it runs beside the file, as usual).
    let cwd = match app.get("cwd") {
        None | Some(Value::Null) => base.to_path_buf(),
        Some(Value::String(dir)) => base.join(dir),
        Some(other) => bail!(
            "{}: expected a directory, found {}",
            context("cwd"),
            shown(other)
        ),
    };
    if !cwd.is_dir() {
        warn(
            "cwd",
            Some(format!("'{}'", excerpt(&cwd.display().to_string()))),
            "not a directory here: `plimsoll up` refuses it until it exists".to_owned(),
        );
    }

    // The command, as PM2's fork mode builds it.
    let args = string_list(app.get("args")).map_err(|e| anyhow!("{}: {e}", context("args")))?;
    let interpreter_args = match first(app, &["node_args", "interpreter_args", "interpreterArgs"]) {
        Some((key, value)) => {
            string_list(Some(value)).map_err(|e| anyhow!("{}: {e}", context(key)))?
        }
        None => Vec::new(),
    };
    let interpreter = match first(app, &["interpreter", "exec_interpreter"]) {
        Some((_, Value::String(i))) if !i.trim().is_empty() => Some(i.clone()),
        Some((_, Value::Null)) | None => None,
        Some((key, other)) => bail!(
            "{}: expected a program or 'none', found {}",
            context(key),
            shown(other)
        ),
    };
    let (program, mut warned) = resolve_interpreter(&script, interpreter.as_deref(), &cwd, host);
    if let Some((key, value, message)) = warned.take() {
        warn(key, Some(value), message);
    }
    let command = if script.contains(' ') {
        // PM2 runs a script with spaces through bash, in place of any args.
        if !args.is_empty() {
            warn(
                "args",
                None,
                "not carried: PM2 runs a script with spaces as `bash -c SCRIPT` and drops args"
                    .to_owned(),
            );
        }
        vec!["bash".to_owned(), "-c".to_owned(), script.clone()]
    } else {
        match program {
            None => {
                if !interpreter_args.is_empty() {
                    warn(
                        "interpreter_args",
                        None,
                        "not carried: PM2 ignores them when the script runs without an \
                         interpreter"
                            .to_owned(),
                    );
                }
                std::iter::once(script.clone()).chain(args).collect()
            }
            Some(program) => std::iter::once(program)
                .chain(interpreter_args)
                .chain(std::iter::once(script.clone()))
                .chain(args)
                .collect(),
        }
    };

    // The environment: env, then env_NAME over it, then `port` (PM2 sets PORT last).
    let mut env = BTreeMap::new();
    merge_env(&mut env, app.get("env")).map_err(|e| anyhow!("{}: {e}", context("env")))?;
    if let Some(env_name) = env_name {
        let key = format!("env_{env_name}");
        match app.get(&key) {
            Some(value) => {
                merge_env(&mut env, Some(value)).map_err(|e| anyhow!("{}: {e}", context(&key)))?;
            }
            None => warn(
                &key,
                None,
                format!("this app has none: only its env applies for --env {env_name}"),
            ),
        }
    }
    match app.get("port") {
        None | Some(Value::Null) => {}
        Some(port @ (Value::Number(_) | Value::String(_))) => {
            env.insert("PORT".to_owned(), env_text(port));
        }
        Some(other) => bail!(
            "{}: expected a number, found {}",
            context("port"),
            shown(other)
        ),
    }

    // Instances: "max" and 0 are the CPUs, a negative count that many fewer.
    let written_instances = app.get("instances").filter(|v| !v.is_null());
    let (instances, instances_from) = match written_instances {
        None => (1, None),
        Some(value) => {
            let count = match value {
                Value::String(s) if s.trim() == "max" => 0,
                other => integer(other).ok_or_else(|| {
                    anyhow!(
                        "{} {}: expected a number of processes, \"max\" or -1",
                        context("instances"),
                        shown(other)
                    )
                })?,
            };
            let cpus = i64::from(host.cpus);
            let resolved = match count {
                0 => cpus,
                n if n < 0 => (cpus + n).max(1),
                n => n,
            };
            if !(1..=MAX_INSTANCES).contains(&resolved) {
                bail!(
                    "{} {}: expected 1 to {MAX_INSTANCES} processes",
                    context("instances"),
                    shown(value)
                );
            }
            let from = (count <= 0).then(|| {
                format!(
                    "instances {}: {resolved} on this machine's {cpus} CPUs",
                    shown(value)
                )
            });
            (resolved as u32, from)
        }
    };
    let is_node = command
        .first()
        .and_then(|p| Path::new(p).file_name())
        .is_some_and(|f| {
            let f = f.to_string_lossy();
            f == "node" || f.ends_with("node") || f == "bun"
        });
    let cluster = match app.get("exec_mode") {
        None | Some(Value::Null) => written_instances.is_some() && is_node,
        Some(Value::String(mode)) => match mode.as_str() {
            "cluster" | "cluster_mode" => true,
            "fork" | "fork_mode" => false,
            _ => bail!(
                "{} '{}': expected \"fork\" or \"cluster\"",
                context("exec_mode"),
                excerpt(mode)
            ),
        },
        Some(other) => bail!(
            "{}: expected \"fork\" or \"cluster\", found {}",
            context("exec_mode"),
            shown(other)
        ),
    };
    if cluster {
        warn(
            "exec_mode",
            Some("cluster".to_owned()),
            format!(
                "each of the {instances} instances is its own process, with its \
                 number (0 to {}) in NODE_APP_INSTANCE and PLIMSOLL_INSTANCE; PM2's shared \
                 listening port is not carried (give each instance its own port, or put a \
                 proxy in front)",
                instances.saturating_sub(1)
            ),
        );
    }

    // The budget: PM2 reads K, M and G as powers of 1024, and a bare number as bytes.
    let (budget, budget_from) = match app.get("max_memory_restart") {
        None | Some(Value::Null) => (None, None),
        Some(value) => {
            let bytes = pm2_bytes(value).ok_or_else(|| {
                anyhow!(
                    "{} {}: expected bytes, or a whole number followed by K, M or G \
                     (powers of 1024), e.g. '1536M'",
                    context("max_memory_restart"),
                    shown(value)
                )
            })?;
            if bytes > 1 << 60 {
                bail!(
                    "{} {}: too large (at most 1 EiB)",
                    context("max_memory_restart"),
                    shown(value)
                );
            }
            // PM2 reads 0 as no limit.
            ((bytes > 0).then_some(bytes), Some(shown(value)))
        }
    };

    let grace = match app.get("kill_timeout") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let ms = integer(value)
                .filter(|ms| (0..=600_000).contains(ms))
                .ok_or_else(|| {
                    anyhow!(
                        "{} {}: expected milliseconds, 0 to 600000 (10 minutes)",
                        context("kill_timeout"),
                        shown(value)
                    )
                })?;
            Some(Duration::from_millis(ms as u64))
        }
    };

    // PM2 gives up after max_restarts runs in a row shorter than min_uptime; here, after more
    // than max_restarts restarts within restart_window of run time. max_restarts × min_uptime
    // gives up on the same runs.
    let max_restarts = match app.get("max_restarts") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            integer(value)
                .filter(|n| (0..=100_000).contains(n))
                .ok_or_else(|| {
                    anyhow!(
                        "{} {}: expected a count, 0 to 100000",
                        context("max_restarts"),
                        shown(value)
                    )
                })? as u64,
        ),
    };
    let min_uptime_ms = match app.get("min_uptime") {
        None | Some(Value::Null) => None,
        Some(value) => Some(pm2_ms(value).ok_or_else(|| {
            anyhow!(
                "{} {}: expected milliseconds, or a whole number followed by h, m or s",
                context("min_uptime"),
                shown(value)
            )
        })?),
    };
    let (max_restarts, restart_window) = if max_restarts.is_none() && min_uptime_ms.is_none() {
        (None, None)
    } else {
        let count = max_restarts.unwrap_or(PM2_MAX_RESTARTS);
        if count == 0 {
            warn(
                "max_restarts",
                Some("0".to_owned()),
                "plimsoll restarts at least once before it gives up; written as 1".to_owned(),
            );
        }
        let count = count.max(1);
        let window_ms = count.saturating_mul(min_uptime_ms.unwrap_or(PM2_MIN_UPTIME_MS));
        if window_ms > 24 * 3600 * 1000 {
            bail!(
                "{}: max_restarts {count} × min_uptime is over 24h, the longest restart_window",
                context("min_uptime")
            );
        }
        (Some(count as u32), Some(Duration::from_millis(window_ms)))
    };

    // Restart delays: PM2's exp_backoff_restart_delay grows ×1.5 up to 15 s (and wins over
    // restart_delay); here the delay doubles up to max_restart_delay.
    let delay_ms = |key: &str| -> Result<Option<u64>> {
        match app.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => integer(value)
                .filter(|ms| (0..=600_000).contains(ms))
                .map(|ms| (ms > 0).then_some(ms as u64))
                .ok_or_else(|| {
                    anyhow!(
                        "{} {}: expected milliseconds, 0 to 600000 (10 minutes)",
                        context(key),
                        shown(value)
                    )
                }),
        }
    };
    let exp_backoff = delay_ms("exp_backoff_restart_delay")?;
    let fixed = delay_ms("restart_delay")?;
    let (restart_delay, max_restart_delay) = match (exp_backoff, fixed) {
        (Some(first), fixed) => {
            if fixed.is_some() {
                warn(
                    "restart_delay",
                    app.get("restart_delay").map(shown),
                    "not carried: exp_backoff_restart_delay wins, as in PM2".to_owned(),
                );
            }
            (Some(first), Some(first.max(15_000)))
        }
        (None, Some(fixed)) => (Some(fixed), Some(fixed)),
        (None, None) => (None, None),
    };

    // Everything else: a warning each, unless its value changes nothing.
    for (key, value) in app {
        if CARRIED.contains(&key.as_str()) || key.starts_with("env_") {
            if let (Some(rest), None) = (key.strip_prefix("env_"), env_name) {
                warn(
                    key,
                    None,
                    format!("not applied: pass --env {rest} to apply it over env"),
                );
            }
            continue;
        }
        if harmless(key, value) {
            continue;
        }
        let message = not_carried(key).unwrap_or("not carried: unknown PM2 key");
        warn(key, Some(shown(value)), message.to_owned());
    }

    Ok(ImportedApp {
        name,
        command,
        cwd,
        env,
        instances,
        instances_from,
        cluster,
        budget,
        budget_from,
        grace,
        max_restarts,
        restart_window,
        restart_delay: restart_delay.map(Duration::from_millis),
        max_restart_delay: max_restart_delay.map(Duration::from_millis),
        exp_backoff: exp_backoff.is_some(),
    })
}

/// The first of `keys` present (PM2's aliases), with its value.
fn first<'a>(app: &'a Map<String, Value>, keys: &[&'a str]) -> Option<(&'a str, &'a Value)> {
    keys.iter()
        .find_map(|&key| app.get(key).filter(|v| !v.is_null()).map(|v| (key, v)))
}

/// The program that runs `script`, `None` when the script runs itself; plus a warning when the
/// choice is a guess.
fn resolve_interpreter(
    script: &str,
    interpreter: Option<&str>,
    cwd: &Path,
    host: &Host,
) -> (Option<String>, Option<(&'static str, String, String)>) {
    match interpreter {
        Some("none") => return (None, None),
        Some(node) if node.starts_with("node@") => {
            return (
                Some("node".to_owned()),
                Some((
                    "interpreter",
                    format!("'{}'", excerpt(node)),
                    "not carried: the node on PATH runs it".to_owned(),
                )),
            )
        }
        Some(program) => return (Some(program.to_owned()), None),
        None => {}
    }
    // PM2's interpreter by extension (lib/API/interpreter.json).
    let extension = Path::new(script)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let by_extension = match extension {
        "js" | "cjs" | "mjs" => Some("node"),
        "sh" => Some("bash"),
        "py" => Some(if (host.on_path)("python") {
            "python"
        } else {
            "python3"
        }),
        "rb" => Some("ruby"),
        "php" => Some("php"),
        "pl" => Some("perl"),
        "coffee" => Some("coffee"),
        "ls" => Some("lsc"),
        "ts" | "tsx" => Some("bun"),
        _ => None,
    };
    let path = cwd.join(script);
    if let Some(program) = by_extension {
        let missing = (!path.exists()).then(|| {
            (
                "script",
                format!("'{}'", excerpt(script)),
                format!(
                    "not found in {} here: `{program}` will not find it either",
                    cwd.display()
                ),
            )
        });
        return (Some(program.to_owned()), missing);
    }
    if path.is_file() {
        // PM2 runs a binary itself and anything else with node.
        return if is_binary(&path) {
            (None, None)
        } else {
            (Some("node".to_owned()), None)
        };
    }
    if !script.contains('/') && (host.on_path)(script) {
        // A command on PATH (`npm`, `python3`): run by name.
        return (None, None);
    }
    (
        Some("node".to_owned()),
        Some((
            "script",
            format!("'{}'", excerpt(script)),
            format!(
                "not found in {} nor on PATH here: run with node, as PM2 would",
                cwd.display()
            ),
        )),
    )
}

/// PM2's test, roughly: an executable format or a NUL byte in the first block.
fn is_binary(path: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    head[..n].starts_with(b"\x7fELF") || head[..n].contains(&0)
}

/// Whether `name` is an executable file in a directory of PATH.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(paths) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&paths).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// `args` and `node_args`: a list, or a string split as PM2 splits it (on spaces, keeping
/// quoted parts and `key="a b"` whole, without their quotes).
fn string_list(value: Option<&Value>) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(split_args(text)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                other => Err(format!(
                    "expected strings in the list, found {}",
                    shown(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "expected a string or a list of strings, found {}",
            shown(other)
        )),
    }
}

/// Splits an argument string the way PM2 does: `key="a b"` and `key='a b'` stay whole with
/// their quotes, a whole `"a b"` or `'a b'` loses them, anything else splits on whitespace.
pub(crate) fn split_args(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        // A quoted token: up to its closing quote, without the quotes.
        if matches!(chars[i], '"' | '\'') {
            let quote = chars[i];
            if let Some(end) = chars[i + 1..].iter().position(|&c| c == quote) {
                let inner: String = chars[i + 1..i + 1 + end].iter().collect();
                if !inner.trim().is_empty() {
                    out.push(inner);
                }
                i += end + 2;
                continue;
            }
        }
        // key="…" or key='…': whole, quotes kept.
        let word_end = (i..chars.len())
            .find(|&j| chars[j].is_whitespace() || matches!(chars[j], '"' | '\'' | '='))
            .unwrap_or(chars.len());
        if word_end > i && word_end + 1 < chars.len() && chars[word_end] == '=' {
            let quote = chars[word_end + 1];
            if matches!(quote, '"' | '\'') {
                if let Some(end) = chars[word_end + 2..].iter().position(|&c| c == quote) {
                    let stop = word_end + 2 + end + 1;
                    out.push(chars[i..stop].iter().collect());
                    i = stop;
                    continue;
                }
            }
        }
        let end = (i..chars.len())
            .find(|&j| chars[j].is_whitespace())
            .unwrap_or(chars.len());
        out.push(chars[i..end].iter().collect());
        i = end;
    }
    out
}

/// Adds an `env` object's variables, as PM2 turns them into strings.
fn merge_env(env: &mut BTreeMap<String, String>, value: Option<&Value>) -> Result<(), String> {
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(vars)) => {
            for (key, value) in vars {
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    return Err(format!(
                        "'{}' cannot be an environment variable's name",
                        excerpt(key)
                    ));
                }
                env.insert(key.clone(), env_text(value));
            }
            Ok(())
        }
        Some(other) => Err(format!(
            "expected an object of variables, found {}",
            shown(other)
        )),
    }
}

/// A variable's value as PM2 passes it: strings as they are, objects as JSON, the rest as text.
fn env_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A whole number, written as a number or a string of one (PM2 parses those).
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `max_memory_restart`: bytes as a number, or `^\d+(G|M|K)?$` as PM2's schema has it.
fn pm2_bytes(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        Value::String(s) => suffixed(s, &[('K', 1 << 10), ('M', 1 << 20), ('G', 1 << 30)]),
        _ => None,
    }
}

/// `min_uptime`: milliseconds as a number, or `^\d+(h|m|s)?$`.
fn pm2_ms(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => suffixed(s, &[('h', 3_600_000), ('m', 60_000), ('s', 1000)]),
        _ => None,
    }
}

/// Digits with an optional one-letter unit from `units`.
fn suffixed(text: &str, units: &[(char, u64)]) -> Option<u64> {
    let (digits, factor) = match text.char_indices().last() {
        Some((at, unit)) if !unit.is_ascii_digit() => {
            let factor = units.iter().find(|(u, _)| *u == unit)?.1;
            (&text[..at], factor)
        }
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// A value for a message: strings quoted, the rest as JSON, cut short.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{}'", excerpt(s)),
        other => excerpt(&other.to_string()),
    }
}

/// What kind of JSON value this is, for a message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host() -> Host {
        Host {
            cpus: 8,
            on_path: |name| name == "python3" || name == "npm",
        }
    }

    fn one(app: Value) -> (ImportedApp, Vec<Warning>) {
        let imported =
            convert(&json!({ "apps": [app] }), Path::new("/srv"), None, &host()).expect("valid");
        (imported.apps[0].clone(), imported.warnings)
    }

    fn error_of(value: Value, env: Option<&str>) -> String {
        format!(
            "{:#}",
            convert(&value, Path::new("/srv"), env, &host()).expect_err("invalid")
        )
    }

    #[test]
    fn args_split_as_pm2_splits_them() {
        assert_eq!(
            split_args(r#"--port 3000  "two words" --name="a b" 'x y' key='1 2'"#),
            [
                "--port",
                "3000",
                "two words",
                "--name=\"a b\"",
                "x y",
                "key='1 2'"
            ]
        );
        assert_eq!(split_args("   "), Vec::<String>::new());
        assert_eq!(split_args("\"unclosed"), ["\"unclosed"]);
    }

    #[test]
    fn yaml_merge_keys_are_applied() {
        let value = yaml(
            b"defaults: &defaults\n  max_memory_restart: 1G\n  instances: 2\n\
              apps:\n  - <<: *defaults\n    name: api\n    script: a.js\n",
        )
        .expect("valid");
        let (app, warnings) = {
            let imported = convert(&value, Path::new("/srv"), None, &host()).expect("valid");
            (imported.apps[0].clone(), imported.warnings)
        };
        assert_eq!((app.budget, app.instances), (Some(1 << 30), 2));
        assert!(!warnings.iter().any(|w| w.key == "<<"), "{warnings:?}");
        assert!(yaml(b"apps: [").is_err());
    }

    #[test]
    fn the_command_is_built_as_pm2_builds_it() {
        let cases = [
            (
                json!({"script": "server.js", "args": "--port 3000"}),
                vec!["node", "server.js", "--port", "3000"],
            ),
            (
                json!({"script": "app.js", "node_args": ["--max-old-space-size=2048"]}),
                vec!["node", "--max-old-space-size=2048", "app.js"],
            ),
            (
                json!({"script": "worker.py", "interpreter_args": "-u"}),
                vec!["python3", "-u", "worker.py"],
            ),
            (
                json!({"script": "./bin/api", "interpreter": "none", "args": ["-v", 2]}),
                vec!["./bin/api", "-v", "2"],
            ),
            (
                json!({"script": "npm", "args": "start"}),
                vec!["npm", "start"],
            ),
            (json!({"script": "server.ts"}), vec!["bun", "server.ts"]),
            (
                json!({"script": "app.js", "interpreter": "/usr/local/bin/node"}),
                vec!["/usr/local/bin/node", "app.js"],
            ),
            (
                json!({"script": "python3 -m http.server 8000"}),
                vec!["bash", "-c", "python3 -m http.server 8000"],
            ),
        ];
        for (app, expected) in cases {
            let (imported, _) = one(app.clone());
            assert_eq!(imported.command, expected, "{app}");
        }
    }

    #[test]
    fn names_default_to_the_script_and_are_made_valid() {
        assert_eq!(one(json!({"script": "dist/server.js"})).0.name, "server");
        let (app, warnings) = one(json!({"name": "my api", "script": "a.js"}));
        assert_eq!(app.name, "my-api");
        assert!(warnings
            .iter()
            .any(|w| w.key == "name" && w.value.as_deref() == Some("'my api'")));
    }

    #[test]
    fn sizes_and_counts_are_read_as_pm2_reads_them() {
        let budget = |v: Value| {
            one(json!({"script": "a.js", "max_memory_restart": v}))
                .0
                .budget
        };
        assert_eq!(budget(json!("1536M")), Some(1536 << 20));
        assert_eq!(budget(json!("1G")), Some(1 << 30));
        assert_eq!(budget(json!("300K")), Some(300 << 10));
        assert_eq!(budget(json!(1048576)), Some(1 << 20));
        assert_eq!(budget(json!("1048576")), Some(1 << 20));
        assert_eq!(budget(json!(0)), None);
        let instances = |v: Value| one(json!({"script": "a.js", "instances": v})).0.instances;
        assert_eq!(instances(json!("max")), 8);
        assert_eq!(instances(json!(0)), 8);
        assert_eq!(instances(json!(-1)), 7);
        assert_eq!(instances(json!(-20)), 1);
        assert_eq!(instances(json!("4")), 4);
        assert_eq!(instances(json!(4)), 4);
        let (app, _) = one(
            json!({"script": "a.js", "max_restarts": 5, "min_uptime": "2s", "kill_timeout": 3000}),
        );
        assert_eq!(app.max_restarts, Some(5));
        assert_eq!(app.restart_window, Some(Duration::from_secs(10)));
        assert_eq!(app.grace, Some(Duration::from_secs(3)));
        let delays = |v: Value| {
            let (app, warnings) = one(v);
            let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
            (
                ms(app.restart_delay),
                ms(app.max_restart_delay),
                warnings.iter().any(|w| w.key == "restart_delay"),
            )
        };
        assert_eq!(
            delays(json!({"script": "a.js", "restart_delay": 4000})),
            (Some(4000), Some(4000), false)
        );
        assert_eq!(
            delays(json!({"script": "a.js", "exp_backoff_restart_delay": 100})),
            (Some(100), Some(15000), false)
        );
        assert_eq!(
            delays(
                json!({"script": "a.js", "exp_backoff_restart_delay": 100, "restart_delay": 3000})
            ),
            (Some(100), Some(15000), true)
        );
        assert_eq!(
            delays(json!({"script": "a.js", "restart_delay": 0})),
            (None, None, false)
        );
        let (app, _) = one(json!({"script": "a.js", "min_uptime": 5000}));
        assert_eq!(
            (app.max_restarts, app.restart_window),
            (Some(16), Some(Duration::from_secs(80)))
        );
    }

    #[test]
    fn env_name_applies_over_env_and_port_last() {
        let file = json!({"apps": [{"script": "a.js", "port": 8080,
            "env": {"NODE_ENV": "development", "A": 1, "O": {"k": true}},
            "env_production": {"NODE_ENV": "production"}}]});
        let imported =
            convert(&file, Path::new("/srv"), Some("production"), &host()).expect("valid");
        let env = &imported.apps[0].env;
        assert_eq!(env["NODE_ENV"], "production");
        assert_eq!(env["A"], "1");
        assert_eq!(env["O"], r#"{"k":true}"#);
        assert_eq!(env["PORT"], "8080");
        let plain = convert(&file, Path::new("/srv"), None, &host()).expect("valid");
        assert_eq!(plain.apps[0].env["NODE_ENV"], "development");
        assert!(plain
            .warnings
            .iter()
            .any(|w| w.key == "env_production" && w.message.contains("--env production")));
    }

    #[test]
    fn keys_not_carried_are_warned_about_unless_they_change_nothing() {
        let (_, warnings) = one(json!({"script": "a.js", "cron_restart": "0 3 * * *",
            "watch": false, "ignore_watch": [], "autorestart": true, "out_file": "/var/log/a.log", "bogus": 1,
            "autostart": false}));
        // (Whether /srv/a.js exists here is another warning.)
        let warnings: Vec<&Warning> = warnings
            .iter()
            .filter(|w| !matches!(w.key.as_str(), "cwd" | "script"))
            .collect();
        let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["autostart", "bogus", "cron_restart", "out_file"]);
        assert!(warnings.iter().all(|w| w.app.as_deref() == Some("a")));
        assert!(
            warnings[1].message.contains("unknown PM2 key"),
            "{:?}",
            warnings[1]
        );
        assert_eq!(warnings[2].value.as_deref(), Some("'0 3 * * *'"));
    }

    #[test]
    fn bad_values_are_errors_naming_them() {
        let app = |extra: Value| {
            let mut app = json!({"name": "api", "script": "a.js"});
            app.as_object_mut()
                .expect("object")
                .extend(extra.as_object().expect("object").clone());
            json!({"apps": [app]})
        };
        let cases = [
            (
                app(json!({"max_memory_restart": "1.5G"})),
                "app 'api': max_memory_restart '1.5G'",
            ),
            (app(json!({"max_memory_restart": "12QB"})), "'12QB'"),
            (
                app(json!({"instances": 100000})),
                "app 'api': instances 100000: expected 1 to 256",
            ),
            (app(json!({"instances": "lots"})), "instances 'lots'"),
            (app(json!({"kill_timeout": -5})), "kill_timeout -5"),
            (app(json!({"exec_mode": "swarm"})), "exec_mode 'swarm'"),
            (
                app(json!({"env": "x"})),
                "app 'api': env: expected an object",
            ),
            (app(json!({"min_uptime": "1d"})), "min_uptime '1d'"),
            (
                json!({"apps": [{"name": "api"}]}),
                "app #1 'api': no script",
            ),
            (json!({"apps": []}), "no apps"),
            (json!({"deploy": {}, "apps": 3}), "apps: expected a list"),
            (json!(42), "found a number"),
        ];
        for (value, expected) in cases {
            let error = error_of(value.clone(), None);
            assert!(error.contains(expected), "{value}: {error}");
        }
        let error = error_of(app(json!({"env_staging": {}})), Some("prod"));
        assert!(
            error.contains("--env 'prod': no app has env_prod (it has staging)"),
            "{error}"
        );
    }
}
