//! `plimsoll up`: the config file, instances, rolling restarts.

use std::path::Path;
use std::time::Duration;

use crate::harness::{event_names, eventually, read_events, Cmd};

const WITHIN: Duration = Duration::from_secs(30);

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("plimsoll.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn up_in(dir: &Path, config: &Path) -> Cmd {
    Cmd::new("up")
        .arg("--listen")
        .arg("off")
        .arg("-c")
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--events")
        .arg(dir.join("events.jsonl"))
}

#[test]
fn apps_run_in_their_directory_with_their_environment_and_instance_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("work")).expect("mkdir");
    let hooked = dir.path().join("hooked.jsonl");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
            [[app]]
            name = "job"
            command = ["sh", "-c", "echo $(pwd) $GREETING $NODE_APP_INSTANCE > out-$PLIMSOLL_INSTANCE.txt"]
            cwd = "work"
            instances = 2
            env = {{ GREETING = "hello" }}
            on_event = "cat >> '{hooked}'; echo >> '{hooked}'"
            "#,
            hooked = hooked.display()
        ),
    );
    up_in(dir.path(), &config).expect_exit(0);
    for instance in 0..2 {
        let out = std::fs::read_to_string(dir.path().join(format!("work/out-{instance}.txt")))
            .expect("output");
        let work = dir.path().join("work").canonicalize().expect("canonical");
        assert_eq!(out.trim(), format!("{} hello {instance}", work.display()));
    }
    let mut names: Vec<String> = read_events(&dir.path().join("events.jsonl"))
        .iter()
        .filter(|e| e["event"] == "started")
        .map(|e| e["target"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["job-0", "job-1"]);
    // The app's own hook saw its four events (two starts, two exits).
    let hooked = eventually("the app's hook", WITHIN, || {
        let events = read_events(&hooked);
        (events.len() >= 4).then_some(events)
    });
    assert_eq!(
        event_names(&hooked)
            .iter()
            .filter(|n| *n == "started")
            .count(),
        2
    );
}

#[test]
fn memory_restarts_of_instances_are_rolling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("grow.py");
    std::fs::write(
        &script,
        "import time\nhold = []\nwhile True:\n    hold.append(bytearray(4 * 1024 * 1024))\n    time.sleep(0.1)\n",
    )
    .expect("script");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
            [[app]]
            name = "grow"
            command = ["python3", "{}"]
            instances = 2
            budget = "64MiB"
            interval = "200ms"
            grace = "1s"
            "#,
            script.display()
        ),
    );
    let events_path = dir.path().join("events.jsonl");
    let mut up = up_in(dir.path(), &config).spawn_in(dir.path());
    let events = eventually("three budget restarts", WITHIN, || {
        let events = read_events(&events_path);
        (events.iter().filter(|e| e["event"] == "restarted").count() >= 3).then_some(events)
    });
    up.signal("TERM");
    up.wait_exit(WITHIN);
    // Rolling: after an instance is stopped for its budget, no other instance is stopped
    // before it has started again.
    let mut stopped: Option<String> = None;
    for event in &events {
        let target = event["target"].as_str().unwrap_or_default().to_owned();
        match event["event"].as_str() {
            Some("budget-breach") => {}
            Some("exited") => {
                assert!(
                    stopped.is_none(),
                    "{target} stopped while {stopped:?} was down: {:?}",
                    event_names(&events)
                );
                stopped = Some(target);
            }
            Some("started") if stopped.as_ref() == Some(&target) => stopped = None,
            _ => {}
        }
    }
}

#[test]
fn a_bad_config_names_the_file_the_key_and_the_value_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[[app]]\nname = \"api\"\ncommand = [\"sh\", \"-c\", \"touch started\"]\nbudget = \"12QB\"\n",
    );
    let out = up_in(dir.path(), &config).expect_exit(2);
    assert!(out.stderr.contains("plimsoll.toml"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("app 'api': budget: invalid size '12QB'"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("started").exists());
    let out = Cmd::new("up")
        .arg("-c")
        .arg(dir.path().join("missing.toml"))
        .expect_exit(2);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
}

#[test]
fn an_endless_or_binary_config_is_refused_at_once() {
    let out = Cmd::new("up")
        .arg("--check")
        .arg("-c")
        .arg("/dev/zero")
        .expect_exit(2);
    assert!(
        out.stderr
            .contains("config '/dev/zero' is larger than 1048576 bytes"),
        "{}",
        out.stderr
    );
    // A TOML error names the line and column but does not echo the (huge) line.
    let dir = tempfile::tempdir().expect("tempdir");
    let line = format!("[[app]]\nname = \"{}\x1b[31m\n", "x".repeat(500_000));
    let config = write_config(dir.path(), &line);
    let out = Cmd::new("up")
        .arg("--check")
        .arg("-c")
        .arg(&config)
        .expect_exit(2);
    assert!(
        out.stderr.contains("TOML error at line 2"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.len() < 600, "{}", out.stderr);
}

#[test]
fn a_bare_config_name_in_the_current_directory_starts_its_apps() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    write_config(
        dir.path(),
        "[[app]]\nname = \"job\"\ncommand = [\"sh\", \"-c\", \"pwd > where\"]\ncwd = \"sub\"\n",
    );
    let sub = dir.path().join("sub").canonicalize().expect("canonical");
    // The default `plimsoll.toml`, then `-c plimsoll.toml`: both a bare name.
    for config in [None, Some("plimsoll.toml")] {
        let _ = std::fs::remove_file(sub.join("where"));
        let cmd = Cmd::new("up").arg("--listen").arg("off");
        let cmd = match config {
            Some(name) => cmd.arg("-c").arg(name),
            None => cmd,
        };
        let out = cmd
            .arg("--data-dir")
            .arg("data")
            .current_dir(dir.path())
            .expect_exit(0);
        let wrote = std::fs::read_to_string(sub.join("where")).unwrap_or_default();
        assert_eq!(
            wrote.trim(),
            sub.display().to_string(),
            "{config:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn check_refuses_a_cwd_that_does_not_exist_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[[app]]\nname = \"api\"\ncommand = [\"true\"]\ncwd = \"nowhere\"\n",
    );
    let out = Cmd::new("up")
        .arg("--check")
        .arg("-c")
        .arg(&config)
        .expect_exit(2);
    let nowhere = dir.path().join("nowhere");
    assert!(
        out.stderr.contains(&format!(
            "app 'api': cwd '{}' is not a directory",
            nowhere.display()
        )),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

/// The README's `up` command as written (`plimsoll up -c examples/plimsoll.toml --events -`)
/// from the repository's root, and the same file by its bare name from `examples/`; only the
/// HTTP port (off) and the data dir (a temp dir) differ, so that tests cannot collide.
#[test]
fn the_readme_up_command_starts_every_app_from_the_root_and_from_examples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(readme.contains("plimsoll up -c examples/plimsoll.toml --events -"));
    for (cwd, config) in [
        (root.clone(), "examples/plimsoll.toml"),
        (root.join("examples"), "plimsoll.toml"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut up = Cmd::new("up")
            .arg("-c")
            .arg(config)
            .arg("--events")
            .arg("-")
            .arg("--listen")
            .arg("off")
            .env("XDG_STATE_HOME", dir.path())
            .current_dir(&cwd)
            .spawn_in(dir.path());
        let stdout = dir.path().join("plimsoll.stdout");
        eventually("three started apps", WITHIN, || {
            let events = read_events(&stdout);
            let mut started: Vec<String> = events
                .iter()
                .filter(|e| e["event"] == "started")
                .map(|e| e["target"].as_str().unwrap_or_default().to_owned())
                .collect();
            started.sort();
            started.dedup();
            (started == ["leaky-api-0", "leaky-api-1", "worker"]).then_some(())
        });
        up.signal("TERM");
        up.wait_exit(WITHIN);
        let stderr =
            std::fs::read_to_string(dir.path().join("plimsoll.stderr")).unwrap_or_default();
        assert!(!stderr.contains("cannot start"), "{config}: {stderr}");
    }
}

#[test]
fn check_refuses_names_that_collide_or_are_not_safe_naming_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "[[app]]\nname = \"web\"\ncommand = [\"true\"]\ninstances = 2\n\
             [[app]]\nname = \"web-0\"\ncommand = [\"true\"]\n",
            "app 'web' and app 'web-0' would both run a target named 'web-0'",
        ),
        (
            "[[app]]\nname = \"a-1\"\ncommand = [\"true\"]\n\
             [[app]]\nname = \"a\"\ncommand = [\"true\"]\ninstances = 2\n",
            "app 'a-1' and app 'a' would both run a target named 'a-1'",
        ),
        (
            "[[app]]\nname = \"../../x\"\ncommand = [\"true\"]\n",
            "invalid name '../../x'",
        ),
    ];
    for (text, expected) in cases {
        let config = write_config(dir.path(), text);
        for check in [true, false] {
            let cmd = Cmd::new("up").arg("--listen").arg("off");
            let cmd = if check { cmd.arg("--check") } else { cmd };
            let out = cmd
                .arg("-c")
                .arg(&config)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .expect_exit(2);
            assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
        }
    }
}

#[test]
fn check_prints_the_plan_of_the_shipped_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plimsoll.toml");
    let out = Cmd::new("up")
        .arg("--check")
        .arg("-c")
        .arg(&example)
        .expect_exit(0);
    assert!(out.stdout.contains("leaky-api: 2 x"), "{}", out.stdout);
    assert!(out.stdout.contains("worker: 1 x"), "{}", out.stdout);
}

#[test]
fn a_relative_data_dir_works_whatever_the_apps_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("elsewhere")).expect("mkdir");
    let config = write_config(
        dir.path(),
        "[[app]]\nname = \"job\"\ncommand = [\"true\"]\ncwd = \"elsewhere\"\n",
    );
    Cmd::new("up")
        .arg("-c")
        .arg(&config)
        .arg("--data-dir")
        .arg("data")
        .arg("--listen")
        .arg("off")
        .current_dir(dir.path())
        .expect_exit(0);
    assert!(dir.path().join("data/plimsoll.db").exists());
}

#[test]
fn restart_delays_of_the_config_pace_the_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[[app]]\nname = \"crashy\"\ncommand = [\"sh\", \"-c\", \"exit 3\"]\n\
         max_restarts = 3\nrestart_delay = \"150ms\"\nmax_restart_delay = \"300ms\"\n",
    );
    let started = std::time::Instant::now();
    up_in(dir.path(), &config).expect_exit(3);
    let delays: Vec<u64> = read_events(&dir.path().join("events.jsonl"))
        .iter()
        .filter(|e| e["event"] == "restarted")
        .map(|e| e["delay_ms"].as_u64().expect("delay_ms"))
        .collect();
    assert_eq!(delays, [150, 300, 300]);
    assert!(started.elapsed() >= Duration::from_millis(750));
}
