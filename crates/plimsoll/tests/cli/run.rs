//! `plimsoll run`: real child processes, restarts, signals, the keeper, sinks.

use std::path::Path;
use std::time::Duration;

use crate::harness::{event_names, eventually, read_events, Cmd};

const WITHIN: Duration = Duration::from_secs(30);

/// A Python program that notes SIGTERM in `marker`, then exits; and allocates `mb_per_s`.
fn python_target(dir: &Path, mb_per_s: u32) -> String {
    let marker = dir.join("sigterm.marker");
    let script = format!(
        r#"
import signal, sys, time
def on_term(*_):
    open({marker:?}, "a").write("TERM\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open({ready:?}, "a").write("ready\n")
hold = []
while True:
    hold.append(bytearray({mb_per_s} * 1024 * 1024 // 10))
    time.sleep(0.1)
"#,
        marker = marker.display().to_string(),
        ready = dir.join("ready.marker").display().to_string(),
    );
    let path = dir.join("target.py");
    std::fs::write(&path, script).expect("write target");
    path.display().to_string()
}

fn run_in(dir: &Path) -> Cmd {
    Cmd::new("run")
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .arg("--interval")
        .arg("200ms")
}

#[test]
fn a_breach_restarts_gracefully_and_sigterm_stops_with_the_childs_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = python_target(dir.path(), 40);
    let events_path = dir.path().join("events.jsonl");
    let mut plimsoll = run_in(dir.path())
        .arg("--budget")
        .arg("64MiB")
        .arg("--name")
        .arg("grower")
        .arg("--")
        .arg("python3")
        .arg(&target)
        .spawn_in(dir.path());
    let events = eventually("a restart and a second start", WITHIN, || {
        let events = read_events(&events_path);
        let names = event_names(&events);
        (names.iter().filter(|n| *n == "started").count() >= 2).then_some(events)
    });
    let names = event_names(&events);
    let expected = [
        "started",
        "level-changed",
        "budget-breach",
        "exited",
        "restarted",
        "started",
    ];
    let mut position = 0;
    for name in &names {
        if position < expected.len() && name == expected[position] {
            position += 1;
        }
    }
    assert_eq!(
        position,
        expected.len(),
        "events in order {expected:?}, got {names:?}"
    );
    let breach = events
        .iter()
        .find(|e| e["event"] == "budget-breach")
        .expect("breach");
    assert_eq!(breach["target"], "grower");
    assert!(breach["rss_bytes"].as_u64().expect("rss") >= 64 << 20);
    let restarted = events
        .iter()
        .find(|e| e["event"] == "restarted")
        .expect("restarted");
    assert_eq!(restarted["reason"], "budget");
    // The child saw SIGTERM first (it noted it, then exited 0 on its own).
    let marker = std::fs::read_to_string(dir.path().join("sigterm.marker")).expect("marker");
    assert!(marker.contains("TERM"));
    let exited = events
        .iter()
        .find(|e| e["event"] == "exited")
        .expect("exited");
    assert_eq!(exited["code"], 0);

    // Once the second instance handles SIGTERM, stopping plimsoll ends with its status, 0.
    eventually("the second instance ready", WITHIN, || {
        let ready = std::fs::read_to_string(dir.path().join("ready.marker")).unwrap_or_default();
        (ready.lines().count() >= 2).then_some(())
    });
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
}

#[test]
fn a_target_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let mut plimsoll = run_in(dir.path())
        .arg("--grace")
        .arg("300ms")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg("trap '' TERM; while true; do sleep 0.05; done")
        .spawn_in(dir.path());
    eventually("started", WITHIN, || {
        event_names(&read_events(&events_path))
            .contains(&"started".to_owned())
            .then_some(())
    });
    plimsoll.signal("TERM");
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(128 + 9));
    let events = read_events(&events_path);
    let exited = events
        .iter()
        .find(|e| e["event"] == "exited")
        .expect("exited");
    assert_eq!(exited["signal"], 9);
}

#[test]
fn a_crash_loop_backs_off_then_gives_up_with_the_childs_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let mut plimsoll = run_in(dir.path())
        .arg("--max-restarts")
        .arg("3")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg("exit 3")
        .spawn_in(dir.path());
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(3));
    let events = read_events(&events_path);
    let names = event_names(&events);
    assert_eq!(
        names.iter().filter(|n| *n == "started").count(),
        4,
        "{names:?}"
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("gave-up"),
        "{names:?}"
    );
    let delays: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "restarted")
        .map(|e| e["delay_ms"].as_u64().expect("delay"))
        .collect();
    assert_eq!(delays, [100, 200, 400]);
}

#[test]
fn a_clean_exit_ends_run_with_status_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plimsoll = run_in(dir.path())
        .arg("--")
        .arg("true")
        .spawn_in(dir.path());
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
}

#[test]
fn the_target_is_told_its_budget_for_an_in_process_guard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let noted = dir.path().join("budget.txt");
    let mut plimsoll = run_in(dir.path())
        .arg("--budget")
        .arg("64MiB")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "echo \"$PLIMSOLL_BUDGET_BYTES\" > '{}'",
            noted.display()
        ))
        .spawn_in(dir.path());
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
    let budget = std::fs::read_to_string(&noted).expect("the target wrote its budget");
    assert_eq!(budget.trim(), (64u64 << 20).to_string());
}

/// Pids of the processes whose process group is `group`.
fn group_members(group: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, pgrp.
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        // A zombie is already dead; it only waits to be reaped by its (new) parent.
        if fields.first() == Some(&"Z") {
            continue;
        }
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(group) {
            members.push(pid);
        }
    }
    members
}

#[test]
fn no_part_of_the_target_survives_a_sigkill_of_the_supervisor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let mut plimsoll = run_in(dir.path())
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg("sleep 300 & sleep 300 & wait")
        .spawn_in(dir.path());
    let target = eventually("started", WITHIN, || {
        read_events(&events_path)
            .into_iter()
            .find(|e| e["event"] == "started")
            .and_then(|e| e["pid"].as_u64())
    });
    // The target's group: the keeper leads it, the shell and both sleeps are in it.
    let stat = std::fs::read_to_string(format!("/proc/{target}/stat")).expect("target stat");
    let group: u32 = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .nth(2)
        .expect("pgrp")
        .parse()
        .expect("pgrp");
    eventually("the shell and both sleeps", WITHIN, || {
        (group_members(group).len() >= 4).then_some(())
    });
    plimsoll.signal("KILL");
    plimsoll.wait_exit(WITHIN);
    eventually("the whole group gone", WITHIN, || {
        group_members(group).is_empty().then_some(())
    });
}

#[test]
fn every_event_also_reaches_the_on_event_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hooked = dir.path().join("hooked.jsonl");
    let mut plimsoll = run_in(dir.path())
        .arg("--on-event")
        .arg(format!(
            "cat >> '{}'; echo >> '{}'",
            hooked.display(),
            hooked.display()
        ))
        .arg("--")
        .arg("true")
        .spawn_in(dir.path());
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(0));
    let names = eventually("started and exited in the hook's file", WITHIN, || {
        let names = event_names(&read_events(&hooked));
        (names.len() >= 2).then_some(names)
    });
    assert_eq!(names, ["started", "exited"]);
}

#[test]
fn bad_flags_exit_2_naming_the_value() {
    let cases: [(&[&str], &str); 11] = [
        (&["--budget", "12QB", "--", "true"], "'12QB'"),
        // 2^64 bytes: refused, not saturated to 16 EiB.
        (
            &["--budget", "17179869184G", "--", "true"],
            "size '17179869184G' is too large",
        ),
        (
            &["--budget", "99999999999999999999G", "--", "true"],
            "size '99999999999999999999G' is too large",
        ),
        (
            &["--grace", "99999999999h", "--", "true"],
            "duration '99999999999h' is too large",
        ),
        (
            &["--grace", "11m", "--", "true"],
            "duration '11m' is above the maximum of 10m",
        ),
        (
            &["--interval", "0s", "--", "true"],
            "duration '0s' is below the minimum of 100ms",
        ),
        (
            &["--restart-window", "48h", "--", "true"],
            "duration '48h' is above the maximum of 24h",
        ),
        (
            &["--warn", "90", "--critical", "80", "--", "true"],
            "--warn 90%",
        ),
        (&["--warn", "150", "--", "true"], "'150'"),
        (&["--interval", "soon", "--", "true"], "'soon'"),
        (
            &["--webhook", "ftp://example", "--", "true"],
            "ftp://example",
        ),
    ];
    for (args, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Cmd::new("run")
            .arg("--listen")
            .arg("off")
            .arg("--data-dir")
            .arg(dir.path());
        for arg in args {
            cmd = cmd.arg(arg);
        }
        let out = cmd.expect_exit(2);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
    let out = Cmd::new("run").expect_exit(2);
    assert!(out.stderr.contains("CMD"), "{}", out.stderr);
}

#[test]
fn the_store_holds_the_same_events_as_the_events_file_and_an_incident_per_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let mut plimsoll = run_in(dir.path())
        .arg("--max-restarts")
        .arg("1")
        .arg("--")
        .arg("sh")
        .arg("-c")
        .arg("sleep 0.5; exit 4")
        .spawn_in(dir.path());
    assert_eq!(plimsoll.wait_exit(WITHIN), Some(4));
    let from_file = read_events(&events_path);
    let store = plimsoll_store::StoreReader::open(&dir.path().join("data")).expect("store");
    assert!(store.integrity_problems().expect("integrity").is_empty());
    let stored: Vec<serde_json::Value> = store
        .events(None, 0, 1000)
        .expect("events")
        .iter()
        .map(|row| serde_json::from_str(&row.payload_json).expect("payload JSON"))
        .collect();
    assert_eq!(stored, from_file);
    assert_eq!(
        event_names(&stored),
        [
            "started",
            "exited",
            "restarted",
            "started",
            "exited",
            "gave-up"
        ]
    );
    let incidents = store.incidents(None, 10).expect("incidents");
    assert_eq!(incidents.len(), 2, "{incidents:?}");
    assert!(incidents.iter().all(|i| i.reason == "crash"));
    assert!(!store.samples("sh", 0, 100).expect("samples").is_empty());
}

#[test]
fn a_store_written_by_a_supervisor_killed_with_sigkill_reopens_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events_path = dir.path().join("events.jsonl");
    let mut plimsoll = run_in(dir.path())
        .arg("--")
        .arg("sleep")
        .arg("300")
        .spawn_in(dir.path());
    eventually("started", WITHIN, || {
        event_names(&read_events(&events_path)).first().cloned()
    });
    let data = dir.path().join("data");
    eventually("samples in the store", WITHIN, || {
        let store = plimsoll_store::StoreReader::open(&data).ok()?;
        (store.samples("sleep", 0, 10).ok()?.len() >= 3).then_some(())
    });
    plimsoll.signal("KILL");
    plimsoll.wait_exit(WITHIN);
    let store = plimsoll_store::Store::open(&data).expect("reopen after kill -9");
    assert_eq!(
        store.integrity_problems().expect("integrity_check"),
        Vec::<String>::new()
    );
    assert!(store.samples("sleep", 0, 1000).expect("samples").len() >= 3);
}

#[test]
fn names_that_are_not_safe_path_parts_exit_2_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "n".repeat(300);
    for name in [
        "a/b",
        "../../x",
        long.as_str(),
        ".hidden",
        "a b",
        "red\u{1b}[31m",
    ] {
        let out = run_in(dir.path())
            .arg("--name")
            .arg(name)
            .arg("--")
            .arg("touch")
            .arg(dir.path().join("started"))
            .expect_exit(2);
        assert!(
            out.stderr.contains("invalid name"),
            "{name}: {}",
            out.stderr
        );
        // Quoted cut short and escaped, by clap too.
        assert!(out.stderr.len() < 700, "{name}: {}", out.stderr);
        assert!(!out.stderr.contains('\u{1b}'), "{name}: {:?}", out.stderr);
        assert!(
            !dir.path().join("started").exists(),
            "{name}: the target ran"
        );
    }
    // The longest allowed name runs.
    run_in(dir.path())
        .arg("--name")
        .arg("n".repeat(64))
        .arg("--")
        .arg("touch")
        .arg(dir.path().join("started"))
        .expect_exit(0);
    assert!(dir.path().join("started").exists());
}

#[test]
fn the_log_has_no_colour_off_a_terminal_or_with_no_color() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_in(dir.path()).arg("--").arg("true").expect_exit(0);
    assert!(out.stderr.contains("started"), "{}", out.stderr);
    assert!(
        !out.stderr.contains('\u{1b}'),
        "ANSI in a pipe: {:?}",
        out.stderr
    );
    // On a terminal (a pty made by `script`), colour unless NO_COLOR is set.
    let plimsoll = env!("CARGO_BIN_EXE_plimsoll");
    let run = format!(
        "run --listen off --data-dir '{}' -- true",
        dir.path().join("data").display()
    );
    let on_a_terminal = |args: &str, no_color: Option<&str>| {
        let mut script = std::process::Command::new("script");
        script
            .arg("-qec")
            .arg(format!("'{plimsoll}' {args}"))
            .arg("/dev/null");
        script.env_remove("NO_COLOR");
        if let Some(value) = no_color {
            script.env("NO_COLOR", value);
        }
        let output = script.output().expect("script(1) from util-linux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let coloured = on_a_terminal(&run, None);
    assert!(
        coloured.contains("started") && coloured.contains('\u{1b}'),
        "{coloured:?}"
    );
    let plain = on_a_terminal(&run, Some("1"));
    assert!(plain.contains("started"), "{plain:?}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR=1: {plain:?}");
    // clap's usage errors follow the same rule.
    let plain = on_a_terminal("--bogus", Some("1"));
    assert!(plain.contains("unexpected argument"), "{plain:?}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR=1: {plain:?}");
}
