//! `plimsoll.toml`, the file `plimsoll up` reads (like PM2's ecosystem file): parsed and fully
//! checked before anything starts, with errors that name the file, the key and the value.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::bounded::excerpt_message;
use crate::name::{check_name, name_of_command};
use crate::supervise::RestartPolicy;
use crate::units::{parse_grace, parse_interval, parse_size, parse_window};

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Settings every app inherits unless it sets its own.
    #[serde(default)]
    defaults: AppFields,
    /// The apps, in order.
    #[serde(default, rename = "app")]
    apps: Vec<AppFields>,
}

/// One `[[app]]` table (or `[defaults]`), every field optional at this stage.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppFields {
    name: Option<String>,
    command: Option<Vec<String>>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    budget: Option<String>,
    budget_scope: Option<String>,
    instances: Option<u32>,
    warn: Option<f64>,
    critical: Option<f64>,
    interval: Option<String>,
    warmup: Option<String>,
    grace: Option<String>,
    max_restarts: Option<u32>,
    restart_window: Option<String>,
    restart_delay: Option<String>,
    max_restart_delay: Option<String>,
    oom_score_adj: Option<i32>,
    on_event: Option<String>,
    webhook: Option<String>,
}

/// How a budget applies to an app with several instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetScope {
    /// Each instance has the whole budget.
    Instance,
    /// The instances share it: each gets an equal part.
    Group,
}

/// One app, checked, with the defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct App {
    pub(crate) name: String,
    pub(crate) command: Vec<String>,
    /// Absolute: a relative `cwd` is resolved against the config file's directory, and it is
    /// checked to be a directory before anything starts.
    pub(crate) cwd: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) budget: Option<u64>,
    pub(crate) budget_scope: BudgetScope,
    pub(crate) instances: u32,
    /// Fractions of the budget.
    pub(crate) warn: f64,
    pub(crate) critical: f64,
    pub(crate) interval: Duration,
    pub(crate) warmup: Duration,
    pub(crate) grace: Duration,
    pub(crate) max_restarts: u32,
    pub(crate) restart_window: Duration,
    /// The delay before the first restart of a burst; each further one doubles it.
    pub(crate) restart_delay: Duration,
    /// The delay never grows past this.
    pub(crate) max_restart_delay: Duration,
    /// The targets' OOM score adjustment; `None` resets a negative one inherited to 0.
    pub(crate) oom_score_adj: Option<i32>,
    /// This app's own hook, besides `--on-event`.
    pub(crate) on_event: Option<String>,
    /// This app's own webhook, besides `--webhook`.
    pub(crate) webhook: Option<String>,
}

impl App {
    /// The target name of each instance: the app's name, or `NAME-0`, `NAME-1`, … with several.
    pub(crate) fn instance_names(&self) -> Vec<String> {
        if self.instances > 1 {
            (0..self.instances)
                .map(|i| format!("{}-{i}", self.name))
                .collect()
        } else {
            vec![self.name.clone()]
        }
    }

    /// The budget of one instance.
    pub(crate) fn instance_budget(&self) -> Option<u64> {
        match self.budget_scope {
            BudgetScope::Instance => self.budget,
            BudgetScope::Group => self.budget.map(|b| b / u64::from(self.instances)),
        }
    }
}

/// The largest config file read, in bytes: a config for hundreds of apps fits in a few dozen KiB.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Reads and checks `path`.
pub(crate) fn load(path: &Path) -> Result<Vec<App>> {
    let cannot = || format!("cannot read config '{}'", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .with_context(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        bail!(
            "config '{}' is larger than {MAX_CONFIG_BYTES} bytes (is this the right file?)",
            path.display()
        );
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{}: not UTF-8 text (at byte {})",
            cannot(),
            e.utf8_error().valid_up_to()
        )
    })?;
    // Absolute, so that a bare `plimsoll.toml` (whose parent is "") resolves too.
    let absolute = std::path::absolute(path).with_context(cannot)?;
    let base = absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let apps = parse(&text, &base).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    for app in &apps {
        if !app.cwd.is_dir() {
            bail!(
                "{}: app '{}': cwd '{}' is not a directory",
                path.display(),
                app.name,
                app.cwd.display()
            );
        }
    }
    Ok(apps)
}

/// Parses and checks config text; relative `cwd`s are resolved against `base`.
pub(crate) fn parse(text: &str, base: &Path) -> Result<Vec<App>> {
    let file: File = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    if file.apps.is_empty() {
        bail!("no [[app]] tables: nothing to run");
    }
    let mut apps = Vec::new();
    for (index, fields) in file.apps.iter().enumerate() {
        let app = resolve(index, fields, &file.defaults, base)?;
        if apps.iter().any(|a: &App| a.name == app.name) {
            bail!("app '{}': the name is used twice", app.name);
        }
        apps.push(app);
    }
    // Instances are named `app-N`: two targets with one name would share a series.
    let mut targets: BTreeMap<String, &str> = BTreeMap::new();
    for app in &apps {
        for instance in app.instance_names() {
            if let Some(other) = targets.insert(instance.clone(), &app.name) {
                bail!(
                    "app '{other}' and app '{}' would both run a target named '{instance}' \
                     (instances are named NAME-0, NAME-1, …): rename one",
                    app.name
                );
            }
        }
    }
    Ok(apps)
}

/// A TOML error as `line L, column C: message`, without toml's echo of the source line (which
/// may be megabytes of one line, or binary).
fn toml_error(text: &str, error: &toml::de::Error) -> anyhow::Error {
    let message = excerpt_lines(error.message());
    match error.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            anyhow!("TOML error at line {line}, column {column}: {message}")
        }
        None => anyhow!("TOML error: {message}"),
    }
}

/// A multi-line message with each line cut short and escaped.
fn excerpt_lines(message: &str) -> String {
    message
        .lines()
        .map(|line| excerpt_message(line.trim_end()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn resolve(index: usize, own: &AppFields, defaults: &AppFields, base: &Path) -> Result<App> {
    let command = own
        .command
        .clone()
        .or_else(|| defaults.command.clone())
        .unwrap_or_default();
    let name = match &own.name {
        Some(name) => {
            check_name(name).map_err(|e| anyhow!("app #{}: name: {e}", index + 1))?;
            name.clone()
        }
        None => name_of_command(&command, &format!("app{}", index + 1)),
    };
    let context = |key: &str| format!("app '{name}': {key}");
    if command.is_empty() || command[0].trim().is_empty() {
        bail!(
            "{}: missing or empty (e.g. command = [\"node\", \"server.js\"])",
            context("command")
        );
    }
    let pick = |field: fn(&AppFields) -> Option<String>| field(own).or_else(|| field(defaults));
    let size = |key: &str, value: Option<String>| -> Result<Option<u64>> {
        value
            .map(|v| parse_size(&v).map_err(|e| anyhow!("{}: {e}", context(key))))
            .transpose()
    };
    type Parser = fn(&str) -> Result<Duration, String>;
    let duration = |key: &str, value: Option<String>, default: Duration, parser: Parser| {
        value.map_or(Ok(default), |v| {
            parser(&v).map_err(|e| anyhow!("{}: {e}", context(key)))
        })
    };
    let percent = |key: &str, value: Option<f64>, default: f64| -> Result<f64> {
        match value {
            None => Ok(default),
            Some(v) if v > 0.0 && v <= 100.0 => Ok(v / 100.0),
            Some(v) => bail!(
                "{} '{v}': expected a percentage above 0 and at most 100",
                context(key)
            ),
        }
    };
    let budget = size("budget", pick(|f| f.budget.clone()))?;
    if budget == Some(0) {
        bail!("{} '0': a budget must be above zero", context("budget"));
    }
    let budget_scope = match pick(|f| f.budget_scope.clone()).as_deref() {
        None | Some("instance") => BudgetScope::Instance,
        Some("group") => BudgetScope::Group,
        Some(other) => bail!(
            "{} '{other}': expected \"instance\" or \"group\"",
            context("budget_scope")
        ),
    };
    let instances = own.instances.or(defaults.instances).unwrap_or(1);
    if instances == 0 || instances > 256 {
        bail!("{} '{instances}': expected 1 to 256", context("instances"));
    }
    let warn = percent("warn", own.warn.or(defaults.warn), 0.75)?;
    let critical = percent("critical", own.critical.or(defaults.critical), 0.85)?;
    if warn >= critical {
        bail!(
            "{}: warn {:.0} must be below critical {:.0}",
            context("warn"),
            warn * 100.0,
            critical * 100.0
        );
    }
    let interval = duration(
        "interval",
        pick(|f| f.interval.clone()),
        Duration::from_secs(1),
        parse_interval,
    )?;
    let max_restarts = own.max_restarts.or(defaults.max_restarts).unwrap_or(10);
    if max_restarts == 0 {
        bail!("{} '0': give at least 1", context("max_restarts"));
    }
    let restart_delay = pick(|f| f.restart_delay.clone());
    let max_restart_delay = pick(|f| f.max_restart_delay.clone());
    // The documented delays unless given: 100 ms, doubling up to 1 s.
    let documented = RestartPolicy::with_limit(1, Duration::ZERO);
    let first_delay = duration(
        "restart_delay",
        restart_delay.clone(),
        documented.base_delay,
        parse_grace,
    )?;
    // A restart_delay alone past the default cap is a fixed delay.
    let longest_delay = duration(
        "max_restart_delay",
        max_restart_delay.clone(),
        documented.max_delay.max(first_delay),
        parse_grace,
    )?;
    if first_delay > longest_delay {
        bail!(
            "{} '{}' is above max_restart_delay '{}'",
            context("restart_delay"),
            restart_delay.as_deref().unwrap_or_default(),
            max_restart_delay.as_deref().unwrap_or_default()
        );
    }
    let oom_score_adj = own.oom_score_adj.or(defaults.oom_score_adj);
    if let Some(adj) = oom_score_adj.filter(|a| !(-1000..=1000).contains(a)) {
        bail!(
            "{} '{adj}': expected -1000 to 1000",
            context("oom_score_adj")
        );
    }
    let cwd = own
        .cwd
        .clone()
        .or_else(|| defaults.cwd.clone())
        .map_or_else(|| base.to_path_buf(), |c| base.join(c));
    let mut env: BTreeMap<String, String> = defaults.env.clone();
    env.extend(own.env.clone());
    Ok(App {
        command,
        cwd,
        env: env.into_iter().collect(),
        budget,
        budget_scope,
        instances,
        warn,
        critical,
        interval,
        warmup: duration(
            "warmup",
            pick(|f| f.warmup.clone()),
            Duration::ZERO,
            parse_window,
        )?,
        grace: duration(
            "grace",
            pick(|f| f.grace.clone()),
            Duration::from_secs(5),
            parse_grace,
        )?,
        max_restarts,
        restart_window: duration(
            "restart_window",
            pick(|f| f.restart_window.clone()),
            Duration::from_secs(60),
            parse_window,
        )?,
        restart_delay: first_delay,
        max_restart_delay: longest_delay,
        oom_score_adj,
        on_event: pick(|f| f.on_event.clone()),
        webhook: pick(|f| f.webhook.clone()),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text, Path::new("/srv")).expect_err(text))
    }

    #[test]
    fn defaults_apply_and_apps_override_them() {
        let apps = parse(
            r#"
            [defaults]
            budget = "512MiB"
            grace = "2s"
            env = { NODE_ENV = "production" }

            [[app]]
            name = "api"
            command = ["node", "server.js"]
            cwd = "api"
            instances = 4
            budget_scope = "group"
            env = { PORT = "3000" }

            [[app]]
            command = ["python3", "worker.py"]
            budget = "1G"
            warn = 60
            critical = 90
            "#,
            Path::new("/srv"),
        )
        .expect("valid");
        assert_eq!(apps.len(), 2);
        let api = &apps[0];
        assert_eq!(api.cwd, PathBuf::from("/srv/api"));
        assert_eq!(api.instance_budget(), Some(128 << 20));
        assert_eq!(api.grace, Duration::from_secs(2));
        assert_eq!(
            api.env,
            [
                ("NODE_ENV".into(), "production".into()),
                ("PORT".into(), "3000".into())
            ]
        );
        let worker = &apps[1];
        assert_eq!(worker.name, "python3");
        assert_eq!(worker.instance_budget(), Some(1 << 30));
        assert_eq!((worker.warn, worker.critical), (0.6, 0.9));
        assert_eq!(worker.cwd, PathBuf::from("/srv"));
    }

    #[test]
    fn errors_name_the_key_and_the_value() {
        let cases = [
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\nbudget = \"12QB\"",
                "app 'api': budget: invalid size '12QB'",
            ),
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\ninstances = 0",
                "app 'api': instances '0'",
            ),
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\nbudget_scope = \"world\"",
                "budget_scope 'world'",
            ),
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\nwarn = 90\ncritical = 80",
                "warn 90 must be below critical 80",
            ),
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\ngrace = \"soon\"",
                "app 'api': grace: invalid duration 'soon'",
            ),
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\ngrace = \"99999999999h\"",
                "app 'api': grace: duration '99999999999h' is too large",
            ),
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\ninterval = \"50ms\"",
                "app 'api': interval: duration '50ms' is below the minimum of 100ms",
            ),
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\nbudget = \"17179869184G\"",
                "app 'api': budget: size '17179869184G' is too large",
            ),
            ("[[app]]\nname = \"api\"", "app 'api': command: missing"),
            (
                "[[app]]\nname = \"api\"\ncommand = [\"x\"]\nbudgte = \"1G\"",
                "budgte",
            ),
            (
                "[[app]]\ncommand = [\"x\"]\n[[app]]\ncommand = [\"x\"]",
                "app 'x': the name is used twice",
            ),
            ("", "no [[app]] tables"),
            ("[[app]\n", "TOML"),
            (
                "[[app]]\nname = \"a/b\"\ncommand = [\"x\"]",
                "app #1: name: invalid name 'a/b': '/' is not allowed",
            ),
            (
                "[[app]]\nname = \"../../x\"\ncommand = [\"x\"]",
                "invalid name '../../x': it starts with '.'",
            ),
            (
                "[[app]]\nname = \"a\"\ncommand = [\"x\"]\ninstances = 2\n\
                 [[app]]\nname = \"a-1\"\ncommand = [\"x\"]",
                "app 'a' and app 'a-1' would both run a target named 'a-1'",
            ),
            (
                "[[app]]\nname = \"web-0\"\ncommand = [\"x\"]\n\
                 [[app]]\nname = \"web\"\ncommand = [\"x\"]\ninstances = 2",
                "app 'web-0' and app 'web' would both run a target named 'web-0'",
            ),
        ];
        for (text, expected) in cases {
            let error = error_of(text);
            assert!(
                error.contains(expected) || (expected == "TOML" && !error.is_empty()),
                "{text:?}: {error}"
            );
        }
    }

    #[test]
    fn restart_delays_default_to_the_documented_ones_and_a_lone_delay_is_fixed() {
        let apps = parse(
            "[[app]]\nname = \"a\"\ncommand = [\"x\"]\n\
             [[app]]\nname = \"b\"\ncommand = [\"x\"]\nrestart_delay = \"5s\"\n\
             [[app]]\nname = \"c\"\ncommand = [\"x\"]\nrestart_delay = \"250ms\"\nmax_restart_delay = \"15s\"",
            Path::new("/srv"),
        )
        .expect("valid");
        let delays: Vec<_> = apps
            .iter()
            .map(|a| (a.restart_delay.as_millis(), a.max_restart_delay.as_millis()))
            .collect();
        assert_eq!(delays, [(100, 1000), (5000, 5000), (250, 15000)]);
        let error = error_of(
            "[[app]]\nname = \"a\"\ncommand = [\"x\"]\nrestart_delay = \"3s\"\nmax_restart_delay = \"2s\"",
        );
        assert!(
            error.contains("app 'a': restart_delay '3s' is above max_restart_delay '2s'"),
            "{error}"
        );
        let error = error_of("[[app]]\nname = \"a\"\ncommand = [\"x\"]\nrestart_delay = \"11m\"");
        assert!(
            error.contains("app 'a': restart_delay: duration '11m'"),
            "{error}"
        );
    }

    #[test]
    fn oom_score_adj_is_checked_and_inherited_from_the_defaults() {
        let error = error_of("[[app]]\nname = \"api\"\ncommand = [\"x\"]\noom_score_adj = -1001");
        assert!(
            error.contains("app 'api': oom_score_adj '-1001'"),
            "{error}"
        );
        let apps = parse(
            "[defaults]\noom_score_adj = 500\n[[app]]\ncommand = [\"x\"]\n[[app]]\nname = \"y\"\ncommand = [\"y\"]\noom_score_adj = -1000",
            Path::new("/srv"),
        )
        .expect("valid");
        assert_eq!(apps[0].oom_score_adj, Some(500));
        assert_eq!(apps[1].oom_score_adj, Some(-1000));
    }
}
