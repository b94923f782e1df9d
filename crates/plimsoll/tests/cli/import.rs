//! `plimsoll import pm2`: ecosystem files of the shapes PM2's documentation shows, read through
//! a real `node` where they are JavaScript, become configs that `plimsoll up --check` accepts
//! (and `up` runs); bad files are exit 2 naming the value, with nothing written.

use std::path::Path;

use crate::harness::{write_file, Cmd};

fn import(file: &Path) -> Cmd {
    Cmd::new("import").arg("pm2").arg(file)
}

fn up_check(config: &Path) -> String {
    Cmd::new("up")
        .arg("--check")
        .arg("-c")
        .arg(config)
        .expect_exit(0)
        .stdout
}

/// The file of the issue's bar: four instances in cluster mode, a budget of 1536M, a production
/// env and a cron restart.
const CLUSTER_ECOSYSTEM: &str = r#"// ecosystem.config.js, as `pm2 init simple` and the docs write it
module.exports = {
  apps: [{
    name: 'api',
    script: './server.js',
    instances: 4,
    exec_mode: 'cluster',
    max_memory_restart: '1536M',
    node_args: '--max-old-space-size=1024',
    cron_restart: '0 3 * * *',
    watch: false,
    env: { NODE_ENV: 'development', PORT: 3000 },
    env_production: { NODE_ENV: 'production', LOG_LEVEL: 'warn' },
  }],
  deploy: {
    production: {
      user: 'node', host: '212.83.163.1', ref: 'origin/main',
      repo: 'git@github.com:repo.git', path: '/var/www/production',
      'post-deploy': 'npm install && pm2 reload ecosystem.config.js --env production',
    },
  },
};
console.log('whatever the file prints does not end up in the config');
"#;

#[test]
fn a_cluster_file_with_a_production_env_becomes_a_config_that_up_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(dir.path(), "ecosystem.config.js", CLUSTER_ECOSYSTEM);
    write_file(dir.path(), "server.js", "setInterval(() => {}, 1000);\n");
    let config = dir.path().join("plimsoll.toml");
    let output = import(&file)
        .arg("--env")
        .arg("production")
        .arg("-o")
        .arg(&config)
        .expect_exit(0);
    assert!(
        output
            .stderr
            .contains("app 'api': cron_restart '0 3 * * *': not carried: no scheduled restarts"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("app 'api': exec_mode cluster: each of the 4 instances"),
        "{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains("watch"),
        "watch: false is no loss: {}",
        output.stderr
    );
    assert!(
        output.stderr.contains("top-level key deploy: not carried"),
        "{}",
        output.stderr
    );
    let plan = up_check(&config);
    assert!(
        plan.contains("api: 4 x `node --max-old-space-size=1024 ./server.js`"),
        "{plan}"
    );
    assert!(plan.contains("budget 1.5 GiB per instance"), "{plan}");
    let text = std::fs::read_to_string(&config).expect("config");
    let toml: toml::Table = toml::from_str(&text).expect("TOML");
    let app = &toml["app"][0];
    assert_eq!(app["budget"].as_str(), Some("1536MiB"), "{text}");
    assert_eq!(app["instances"].as_integer(), Some(4), "{text}");
    assert_eq!(app["cwd"].as_str(), Some("."), "{text}");
    assert_eq!(
        app["env"]["NODE_ENV"].as_str(),
        Some("production"),
        "{text}"
    );
    assert_eq!(app["env"]["LOG_LEVEL"].as_str(), Some("warn"), "{text}");
    assert_eq!(app["env"]["PORT"].as_str(), Some("3000"), "{text}");
    assert!(!text.contains("whatever"), "{text}");
}

#[test]
fn the_imported_config_runs_under_up_with_the_env_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(
        dir.path(),
        "job.js",
        "require('fs').writeFileSync(`out-${process.env.NODE_APP_INSTANCE}.txt`, \
         `${process.env.NODE_ENV} ${process.argv[2]}`);\n",
    );
    let file = write_file(
        dir.path(),
        "ecosystem.json",
        r#"{"apps": [{"name": "job", "script": "job.js", "args": "hello", "instances": 2,
            "exec_mode": "fork", "env": {"NODE_ENV": "development"},
            "env_production": {"NODE_ENV": "production"}}]}"#,
    );
    let config = dir.path().join("plimsoll.toml");
    import(&file)
        .arg("--env")
        .arg("production")
        .arg("-o")
        .arg(&config)
        .expect_exit(0);
    Cmd::new("up")
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("-c")
        .arg(&config)
        .expect_exit(0);
    for instance in 0..2 {
        let out = std::fs::read_to_string(dir.path().join(format!("out-{instance}.txt")))
            .expect("the instance ran");
        assert_eq!(out, "production hello");
    }
}

#[test]
fn every_shape_of_ecosystem_file_pm2_reads_is_imported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shapes = [
        (
            "ecosystem.config.js",
            "module.exports = { apps: [{ name: 'app1', script: './app.js' }] };",
        ),
        (
            "list.config.js",
            "module.exports = [{ name: 'app1', script: 'app.js', args: ['--port', 3000] }];",
        ),
        (
            "single.config.cjs",
            "module.exports = { apps: { name: 'app1', script: 'app.js', instances: 'max' } };",
        ),
        (
            "module.config.mjs",
            "export default { apps: [{ name: 'app1', script: 'app.js', instances: -1 }] };",
        ),
        (
            "cwd.config.js",
            "// loaded in its own directory, as PM2 loads it\n\
             const fs = require('fs');\n\
             module.exports = { apps: [{ name: 'app1', script: fs.existsSync('app.js') ? 'app.js' : 'elsewhere.js' }] };",
        ),
        (
            "process.json",
            r#"{"apps": [{"name": "app1", "script": "app.js", "max_memory_restart": "300M"}]}"#,
        ),
        (
            "ecosystem.yml",
            "apps:\n  - name: app1\n    script: app.js\n    max_memory_restart: 1G\n    env:\n      NODE_ENV: production\n",
        ),
        (
            "ecosystem.yaml",
            "name: app1\nscript: app.js\ninstances: \"2\"\n",
        ),
    ];
    write_file(dir.path(), "app.js", "\n");
    for (name, text) in shapes {
        let file = write_file(dir.path(), name, text);
        let config = dir.path().join(format!("{name}.toml"));
        import(&file).arg("-o").arg(&config).expect_exit(0);
        let plan = up_check(&config);
        assert!(plan.starts_with("app1: "), "{name}: {plan}");
        assert!(plan.contains("app.js"), "{name}: {plan}");
    }
    // A .js file of a package with "type": "module" is an ES module.
    let esm = dir.path().join("esm");
    std::fs::create_dir(&esm).expect("mkdir");
    write_file(&esm, "package.json", r#"{"type": "module"}"#);
    write_file(&esm, "app.js", "\n");
    let file = write_file(
        &esm,
        "ecosystem.config.js",
        "export default { apps: [{ name: 'app1', script: 'app.js' }] };",
    );
    let config = esm.join("plimsoll.toml");
    import(&file).arg("-o").arg(&config).expect_exit(0);
    assert!(up_check(&config).starts_with("app1: 1 x `node app.js`"));
    // To standard output, with the warnings as data.
    let file = dir.path().join("process.json");
    let json = import(&file).arg("--json").expect_exit(0).json();
    assert!(
        json["config"]
            .as_str()
            .is_some_and(|c| c.contains("budget = \"300MiB\"")),
        "{json}"
    );
    assert_eq!(json["apps"], serde_json::json!(["app1"]));
    let file = write_file(
        dir.path(),
        "warned.json",
        r#"{"apps": [{"name": "w", "script": "app.js", "cron_restart": "* * * * *"}]}"#,
    );
    let json = import(&file).arg("--json").expect_exit(0).json();
    assert_eq!(json["warnings"][0]["app"], "w", "{json}");
    assert_eq!(json["warnings"][0]["key"], "cron_restart", "{json}");
    assert_eq!(json["warnings"][0]["value"], "'* * * * *'", "{json}");
}

#[test]
fn bad_files_are_exit_2_naming_the_value_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("syntax.config.js", "module.exports = { apps: [ { name: 'a' script: 'a.js' } ] };", "SyntaxError"),
        ("throws.config.js", "throw new Error('no config for you');", "Error: no config for you"),
        ("bad.json", "{\"apps\": [", "not valid JSON"),
        ("bad.yaml", "apps:\n  - name: a\n   script: [\n", "not valid YAML"),
        ("empty.json", "{\"apps\": []}", "no apps"),
        ("noscript.json", "{\"apps\": [{\"name\": \"api\"}]}", "app #1 'api': no script"),
        ("absurd.json", "{\"apps\": [{\"name\": \"api\", \"script\": \"a.js\", \"instances\": 1000000}]}",
            "app 'api': instances 1000000: expected 1 to 256"),
        ("memory.json", "{\"apps\": [{\"name\": \"api\", \"script\": \"a.js\", \"max_memory_restart\": \"1.5GB\"}]}",
            "app 'api': max_memory_restart '1.5GB'"),
        ("twice.json", "{\"apps\": [{\"script\": \"a.js\"}, {\"script\": \"b/a.js\"}]}",
            "app 'a': the name is used twice"),
        ("eco.toml", "", "unknown extension 'toml'"),
    ];
    for (name, text, expected) in cases {
        let file = write_file(dir.path(), name, text);
        let config = dir.path().join("out.toml");
        let output = import(&file).arg("-o").arg(&config).expect_exit(2);
        assert!(
            output.stderr.contains(expected),
            "{name}: {}",
            output.stderr
        );
        assert!(
            output.stderr.contains(name),
            "{name} is named: {}",
            output.stderr
        );
        assert!(!config.exists(), "{name}: nothing written");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            cases.iter().position(|c| c.0 == name).expect("case") + 1,
            "{name}: no temporary file left behind"
        );
    }
    let output = import(&dir.path().join("missing.config.js")).expect_exit(2);
    assert!(
        output.stderr.contains("missing.config.js"),
        "{}",
        output.stderr
    );
    let output = import(&dir.path().join("throws.config.js")).expect_exit(2);
    assert!(
        output.stderr.contains("throws.config.js:1"),
        "where it threw: {}",
        output.stderr
    );
    let output = import(&dir.path().join("twice.json"))
        .arg("--env")
        .arg("production")
        .expect_exit(2);
    assert!(
        output
            .stderr
            .contains("--env 'production': no app has env_production"),
        "{}",
        output.stderr
    );
}

#[test]
fn node_missing_is_named_and_an_existing_output_is_kept_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_file(
        dir.path(),
        "ecosystem.config.js",
        "module.exports = { apps: [{ name: 'api', script: 'server.js' }] };",
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let output = import(&file).env("PATH", empty.path()).expect_exit(2);
    assert!(
        output.stderr.contains("`node` was not found on PATH"),
        "{}",
        output.stderr
    );
    // The config holds the file's env: it is no more readable than the file.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let private = dir.path().join("private.toml");
    import(&file).arg("-o").arg(&private).expect_exit(0);
    let mode = std::fs::metadata(&private)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = write_file(dir.path(), "plimsoll.toml", "# mine\n");
    let output = import(&file).arg("-o").arg(&config).expect_exit(2);
    assert!(
        output.stderr.contains("exists: pass --force"),
        "{}",
        output.stderr
    );
    assert_eq!(std::fs::read_to_string(&config).expect("kept"), "# mine\n");
    import(&file)
        .arg("-o")
        .arg(&config)
        .arg("--force")
        .expect_exit(0);
    assert!(up_check(&config).starts_with("api: 1 x `node server.js`"));
}

/// The code block of `docs/from-pm2.md` that starts with `first_line`.
fn doc_block<'a>(doc: &'a str, first_line: &str) -> &'a str {
    let start = doc.find(first_line).expect("the block");
    let end = doc[start..].find("```").expect("its end");
    &doc[start..start + end]
}

#[test]
fn the_guides_example_imports_as_it_shows() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/from-pm2.md"),
    )
    .expect("docs/from-pm2.md");
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(
        dir.path(),
        "ecosystem.config.js",
        doc_block(&doc, "// ecosystem.config.js"),
    );
    write_file(dir.path(), "server.js", doc_block(&doc, "// server.js"));
    // The commands as the guide writes them, run in that directory.
    let command = doc
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("plimsoll import pm2 "))
        .expect("the import command");
    let words: Vec<&str> = command.split_whitespace().collect();
    let output = words[2..]
        .iter()
        .fold(Cmd::new(words[1]).current_dir(dir.path()), |cmd, w| {
            cmd.arg(w)
        })
        .expect_exit(0);
    for line in doc
        .lines()
        .filter(|l| l.starts_with("    plimsoll: warning: "))
    {
        let shown = line.trim().trim_end_matches("(…)");
        assert!(
            output.stderr.contains(shown),
            "{shown}\nnot in:\n{}",
            output.stderr
        );
    }
    let written = std::fs::read_to_string(dir.path().join("plimsoll.toml")).expect("written");
    let shown = doc_block(&doc, "[[app]]");
    assert!(
        written.contains(shown),
        "the guide shows:\n{shown}\nimport wrote:\n{written}"
    );
    assert!(doc.contains("    plimsoll up --check -c plimsoll.toml\n"));
    let plan = Cmd::new("up")
        .arg("--check")
        .arg("-c")
        .arg("plimsoll.toml")
        .current_dir(dir.path())
        .expect_exit(0)
        .stdout;
    assert!(plan.starts_with("api: 2 x `node ./server.js`"), "{plan}");
    assert!(plan.contains("budget 300.0 MiB per instance"), "{plan}");
}

#[test]
fn the_cwd_is_written_relative_to_the_config_or_absolute_without_dot_dots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    std::fs::create_dir_all(root.join("proj/api")).expect("mkdir");
    std::fs::create_dir_all(root.join("ops")).expect("mkdir");
    write_file(&root.join("proj/api"), "index.js", "\n");
    write_file(
        &root.join("proj"),
        "ecosystem.json",
        r#"{"apps": [{"name": "api", "script": "index.js", "cwd": "api"}]}"#,
    );
    let ops = root.join("ops");
    import(Path::new("../proj/ecosystem.json"))
        .arg("-o")
        .arg("plimsoll.toml")
        .current_dir(&ops)
        .expect_exit(0);
    let text = std::fs::read_to_string(ops.join("plimsoll.toml")).expect("written");
    assert!(
        text.contains(&format!("cwd = \"{}\"", root.join("proj/api").display())),
        "{text}"
    );
    let inside = import(Path::new("../proj/ecosystem.json"))
        .arg("-o")
        .arg("../proj/plimsoll.toml")
        .current_dir(&ops)
        .expect_exit(0);
    assert!(
        inside
            .stderr
            .contains("wrote ../proj/plimsoll.toml (1 app, 0 warnings)"),
        "{}",
        inside.stderr
    );
    let text = std::fs::read_to_string(root.join("proj/plimsoll.toml")).expect("written");
    assert!(text.contains("cwd = \"api\""), "{text}");
    assert!(up_check(&root.join("proj/plimsoll.toml")).contains("proj/api"));
    let printed = import(Path::new("../proj/ecosystem.json"))
        .current_dir(&ops)
        .expect_exit(0);
    assert!(
        !printed
            .stdout
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("..")),
        "{}",
        printed.stdout
    );
}

#[test]
fn node_reading_the_file_dies_with_an_import_killed_by_sigkill() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("plimsoll-import-hang-{}.config.js", std::process::id());
    let file = write_file(dir.path(), &marker, "while (true) {}\n");
    let mut import = std::process::Command::new(env!("CARGO_BIN_EXE_plimsoll"))
        .args(["import", "pm2"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("plimsoll import");
    let nodes = || -> usize {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let cmdline = std::fs::read(path.join("cmdline")).ok()?;
                let stat = std::fs::read_to_string(path.join("stat")).ok()?;
                let zombie = stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'));
                // node itself, not the import whose arguments name the file too.
                let is_node = cmdline
                    .split(|&b| b == 0)
                    .next()
                    .is_some_and(|arg0| arg0.ends_with(b"node"));
                (!zombie && is_node && String::from_utf8_lossy(&cmdline).contains(&marker))
                    .then_some(())
            })
            .count()
    };
    // Node is reading the endless file (it shows in /proc with the file's name).
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes() == 0 {
        assert!(Instant::now() < deadline, "node never started on {marker}");
        std::thread::sleep(Duration::from_millis(20));
    }
    import.kill().expect("SIGKILL");
    import.wait().expect("reap");
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(nodes(), 0, "node outlived the import killed by SIGKILL");
}
