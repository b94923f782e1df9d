//! `plimsoll import pm2 FILE [--env NAME] [-o plimsoll.toml]`: another tool's config as a
//! `plimsoll.toml`. The text is checked with `up`'s own parser before it is printed or written
//! (atomically, never over an existing file without `--force`), so what comes out is what
//! `plimsoll up --check` accepts.

mod node_eval;
pub(crate) mod pm2;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::{ImportCommand, ImportPm2Args};
use crate::stdout::{errln, out, outln};
use pm2::{Host, Imported, Warning};

pub(crate) fn run(command: &ImportCommand) -> Result<u8> {
    match command {
        ImportCommand::Pm2(args) => import_pm2(args),
    }
}

fn import_pm2(args: &ImportPm2Args) -> Result<u8> {
    let output = args
        .output
        .as_deref()
        .map(|path| check_destination(path, args.force))
        .transpose()?;
    let imported = pm2::import(&args.file, args.env.as_deref(), &Host::this_machine())?;
    let out_dir = output
        .as_ref()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let text = render(
        &imported,
        &args.file,
        args.env.as_deref(),
        out_dir.as_deref(),
    );
    // What comes out must be what `up` accepts: checked by `up`'s own parser.
    let base = out_dir.clone().unwrap_or_else(|| PathBuf::from("/"));
    crate::up::config::parse(&text, &base).map_err(|e| {
        anyhow!(
            "{}: the imported config would not pass `plimsoll up --check`: {e:#}",
            args.file.display()
        )
    })?;
    for warning in &imported.warnings {
        errln!("plimsoll: warning: {}", describe(warning));
    }
    if let (Some(path), Some(shown)) = (&output, &args.output) {
        // The config holds the file's env (secrets, often): no more readable than the file.
        let mode = std::fs::metadata(&args.file).map_or(0o600, |m| {
            use std::os::unix::fs::PermissionsExt as _;
            m.permissions().mode() & 0o666
        });
        write_atomically(path, shown, &text, args.force, mode)?;
    }
    if args.json {
        let warnings: Vec<_> = imported
            .warnings
            .iter()
            .map(|w| serde_json::json!({ "app": w.app, "key": w.key, "value": w.value, "message": w.message }))
            .collect();
        let json = serde_json::json!({
            "config": text,
            "output": args.output.as_ref().map(|p| p.display().to_string()),
            "apps": imported.apps.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
            "warnings": warnings,
        });
        outln!("{json}")?;
    } else if let Some(shown) = &args.output {
        errln!(
            "plimsoll: wrote {} ({} app{}, {} warning{}); check it with `plimsoll up --check -c {}`",
            shown.display(),
            imported.apps.len(),
            if imported.apps.len() == 1 { "" } else { "s" },
            imported.warnings.len(),
            if imported.warnings.len() == 1 { "" } else { "s" },
            shown.display()
        );
    } else {
        out!("{text}")?;
    }
    Ok(crate::exit::OK)
}

/// The fuzz target `pm2_ecosystem`: bytes read as `import` reads a `.yaml` file (YAML reads
/// JSON too), mapped with and without `--env production`; a config it renders must pass `up`'s
/// parser, unless two apps share a name (a user's mistake `import` reports as such).
pub(crate) fn fuzz_pm2(data: &[u8]) {
    let Ok(value) = pm2::yaml(data) else {
        return;
    };
    let host = Host {
        cpus: 4,
        on_path: |_| false,
    };
    let base = Path::new("/srv/app");
    for env in [None, Some("production")] {
        if let Ok(imported) = pm2::convert(&value, base, env, &host) {
            let text = render(&imported, Path::new("ecosystem.yaml"), env, Some(base));
            if let Err(error) = crate::up::config::parse(&text, base) {
                let error = format!("{error:#}");
                assert!(
                    error.contains("is used twice") || error.contains("would both run"),
                    "import rendered a config up refuses: {error}\n{text}"
                );
            }
        }
    }
}

/// `app 'api': cron_restart '0 3 * * *': not carried: …`
fn describe(warning: &Warning) -> String {
    let key = match &warning.value {
        Some(value) => format!("{} {value}", warning.key),
        None => warning.key.clone(),
    };
    match &warning.app {
        Some(app) => format!("app '{app}': {key}: {}", warning.message),
        None => format!("top-level key {key}: {}", warning.message),
    }
}

/// The absolute path to write to, refused before any work when it exists (without `--force`)
/// or is a directory.
fn check_destination(path: &Path, force: bool) -> Result<PathBuf> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot write '{}'", path.display()))?;
    if absolute.is_dir() {
        bail!("cannot write '{}': it is a directory", path.display());
    }
    if !force && std::fs::symlink_metadata(&absolute).is_ok() {
        bail!("'{}' exists: pass --force to replace it", path.display());
    }
    let dir = absolute.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        bail!(
            "cannot write '{}': '{}' is not a directory",
            path.display(),
            dir.display()
        );
    }
    // Canonical like the ecosystem file's directory, so a cwd inside it is written relative.
    match (dir.canonicalize(), absolute.file_name()) {
        (Ok(dir), Some(name)) => Ok(dir.join(name)),
        _ => Ok(absolute),
    }
}

/// Writes `text` beside `path` (with `mode`, less the umask) and moves it in place: a rename
/// with `force`, else a link that fails when the file appeared meanwhile, so an existing file
/// is never half-replaced.
fn write_atomically(path: &Path, shown: &Path, text: &str, force: bool, mode: u32) -> Result<()> {
    let cannot = || format!("cannot write '{}'", shown.display());
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().with_context(cannot)?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover of a run that died (same pid) would stop create_new.
    let _ = std::fs::remove_file(&temporary);
    let result = (|| -> Result<()> {
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&temporary)
                .with_context(cannot)?
        };
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(cannot)?;
        if force {
            std::fs::rename(&temporary, path).with_context(cannot)
        } else {
            std::fs::hard_link(&temporary, path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    anyhow!("'{}' exists: pass --force to replace it", shown.display())
                } else {
                    anyhow!("{}: {e}", cannot())
                }
            })
        }
    })();
    let _ = std::fs::remove_file(&temporary);
    result
}

/// The `plimsoll.toml` text. `out_dir` is where it will live: a `cwd` inside it is written
/// relative to it (as `up` reads it), any other absolute.
fn render(imported: &Imported, source: &Path, env: Option<&str>, out_dir: Option<&Path>) -> String {
    let mut text = String::new();
    let from = match env {
        Some(env) => format!("{} with --env {env}", source.display()),
        None => source.display().to_string(),
    };
    let _ = writeln!(
        text,
        "# Imported from the PM2 ecosystem file {} by `plimsoll import pm2`.",
        comment(&from)
    );
    let _ = writeln!(
        text,
        "# Run it with `plimsoll up -c FILE`; examples/plimsoll.toml in plimsoll's repository shows every key."
    );
    for app in &imported.apps {
        let _ = writeln!(text, "\n[[app]]");
        let _ = writeln!(text, "name = {}", string(&app.name));
        let command: Vec<String> = app.command.iter().map(|a| string(a)).collect();
        let _ = writeln!(text, "command = [{}]", command.join(", "));
        let cwd = match out_dir.and_then(|dir| app.cwd.strip_prefix(dir).ok()) {
            Some(relative) if relative.as_os_str().is_empty() => ".".to_owned(),
            Some(relative) => relative.display().to_string(),
            None => app.cwd.display().to_string(),
        };
        let _ = writeln!(text, "cwd = {}", string(&cwd));
        if app.instances != 1 || app.instances_from.is_some() {
            let mut notes = Vec::new();
            if let Some(from) = &app.instances_from {
                notes.push(from.clone());
            }
            if app.cluster {
                notes.push("PM2 cluster mode: one process each".to_owned());
            }
            let _ = writeln!(
                text,
                "instances = {}{}",
                app.instances,
                trailing(&notes.join("; "))
            );
        }
        if let Some(budget) = app.budget {
            let from = app
                .budget_from
                .as_deref()
                .map(|f| format!("max_memory_restart {f}, per instance as in PM2"))
                .unwrap_or_default();
            let _ = writeln!(
                text,
                "budget = {}{}",
                string(&size(budget)),
                trailing(&from)
            );
        }
        if let Some(grace) = app.grace {
            let _ = writeln!(
                text,
                "grace = {}{}",
                string(&millis(grace)),
                trailing("kill_timeout")
            );
        }
        if let Some(max) = app.max_restarts {
            let _ = writeln!(text, "max_restarts = {max}");
        }
        if let Some(window) = app.restart_window {
            let _ = writeln!(
                text,
                "restart_window = {}{}",
                string(&millis(window)),
                trailing("max_restarts × min_uptime: that many short runs give up, as in PM2")
            );
        }
        if let Some(delay) = app.restart_delay {
            let from = if app.exp_backoff {
                "exp_backoff_restart_delay"
            } else {
                "restart_delay"
            };
            let _ = writeln!(
                text,
                "restart_delay = {}{}",
                string(&millis(delay)),
                trailing(from)
            );
        }
        if let Some(delay) = app.max_restart_delay {
            let note = if app.exp_backoff {
                "PM2's cap; PM2 grows the delay ×1.5, plimsoll doubles it"
            } else {
                "a fixed delay, as PM2's restart_delay"
            };
            let _ = writeln!(
                text,
                "max_restart_delay = {}{}",
                string(&millis(delay)),
                trailing(note)
            );
        }
        if !app.env.is_empty() {
            let _ = writeln!(text, "\n[app.env]");
            for (key, value) in &app.env {
                let _ = writeln!(text, "{} = {}", key_text(key), string(value));
            }
        }
    }
    text
}

/// A TOML basic string.
fn string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key: bare when TOML allows it, else quoted.
fn key_text(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        string(key)
    }
}

/// A comment at the end of a line (none when empty), on one line whatever it holds.
fn trailing(note: &str) -> String {
    if note.is_empty() {
        String::new()
    } else {
        format!("  # {}", comment(note))
    }
}

fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Bytes in the largest IEC unit that divides them (`1536MiB`), else a bare number.
fn size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

/// A duration as `up` reads it, exactly.
fn millis(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn host() -> Host {
        Host {
            cpus: 4,
            on_path: |_| false,
        }
    }

    #[test]
    fn rendered_text_passes_ups_parser_with_every_value_carried() {
        let file = json!({"apps": [{
            "name": "api", "script": "server.js", "cwd": "api",
            "args": ["--title", "say \"hi\"\n"], "node_args": "--max-old-space-size=2048",
            "instances": "max", "exec_mode": "cluster", "max_memory_restart": "1536M",
            "kill_timeout": 1600, "max_restarts": 5, "min_uptime": "10s",
            "exp_backoff_restart_delay": 200,
            "env": {"NODE_ENV": "development", "weird key": "a\\b"},
            "env_production": {"NODE_ENV": "production"}
        }, {"script": "worker.py", "max_memory_restart": 1000}]});
        let imported =
            pm2::convert(&file, Path::new("/srv/app"), Some("production"), &host()).expect("valid");
        let text = render(
            &imported,
            Path::new("eco.json"),
            Some("production"),
            Some(Path::new("/srv/app")),
        );
        let apps = crate::up::config::parse(&text, Path::new("/srv/app")).expect(&text);
        let api = &apps[0];
        assert_eq!(api.name, "api");
        assert_eq!(api.cwd, PathBuf::from("/srv/app/api"));
        assert_eq!(
            api.command,
            [
                "node",
                "--max-old-space-size=2048",
                "server.js",
                "--title",
                "say \"hi\"\n"
            ]
        );
        assert_eq!(api.instances, 4);
        assert_eq!(api.instance_budget(), Some(1536 << 20));
        assert_eq!(api.grace, Duration::from_millis(1600));
        assert_eq!(api.max_restarts, 5);
        assert_eq!(api.restart_window, Duration::from_secs(50));
        assert_eq!(
            (api.restart_delay, api.max_restart_delay),
            (Duration::from_millis(200), Duration::from_secs(15))
        );
        assert!(api.env.contains(&("NODE_ENV".into(), "production".into())));
        assert!(api.env.contains(&("weird key".into(), "a\\b".into())));
        assert!(
            text.contains("budget = \"1536MiB\"  # max_memory_restart '1536M'"),
            "{text}"
        );
        assert!(
            text.contains("instances = 4  # instances 'max': 4 on this machine's 4 CPUs"),
            "{text}"
        );
        let worker = &apps[1];
        assert_eq!(worker.command, ["python3", "worker.py"]);
        assert_eq!(worker.instance_budget(), Some(1000));
        assert_eq!(worker.cwd, PathBuf::from("/srv/app"));
    }

    /// A JSON value of the kinds an ecosystem file holds, strings with anything in them.
    fn value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e12f64..1e12).prop_map(|f| json!(f)),
            "(max|[0-9]{1,5}[KMGhms]?|\\PC{0,12}|[ -~]{0,6}\n\"\\\\)"
                .prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[A-Za-z_ =.\"]{0,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const KEYS: &[&str] = &[
        "name",
        "script",
        "args",
        "interpreter",
        "node_args",
        "cwd",
        "env",
        "env_production",
        "port",
        "instances",
        "exec_mode",
        "max_memory_restart",
        "kill_timeout",
        "max_restarts",
        "min_uptime",
        "restart_delay",
        "exp_backoff_restart_delay",
        "cron_restart",
        "watch",
        "autorestart",
        "bogus",
    ];

    proptest! {
        /// Whatever the file holds: an error, or a config that `up`'s parser accepts; never a
        /// panic.
        #[test]
        fn any_app_maps_to_an_error_or_a_config_up_accepts(
            script in "[ -~]{1,12}",
            fields in prop::collection::vec((0..KEYS.len(), value()), 0..8),
        ) {
            let mut app = serde_json::Map::new();
            app.insert("script".into(), json!(script));
            for (key, value) in fields {
                app.insert(KEYS[key].into(), value);
            }
            let env = app.contains_key("env_production").then_some("production");
            let file = json!({ "apps": [app] });
            if let Ok(imported) = pm2::convert(&file, Path::new("/srv"), env, &host()) {
                let text = render(&imported, Path::new("eco.js"), env, Some(Path::new("/srv")));
                let parsed = crate::up::config::parse(&text, Path::new("/srv"));
                prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed.err(), text);
            }
        }
    }

    #[test]
    fn sizes_and_durations_are_written_exactly() {
        assert_eq!(size(1536 << 20), "1536MiB");
        assert_eq!(size(2 << 30), "2GiB");
        assert_eq!(size(1000), "1000");
        assert_eq!(millis(Duration::from_millis(1600)), "1600ms");
        assert_eq!(millis(Duration::from_secs(16)), "16s");
    }
}
