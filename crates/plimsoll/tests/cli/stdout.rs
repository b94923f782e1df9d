//! Every command that prints, with standard output a closed pipe (`| head -1`) or a full disk
//! (`> /dev/full`): a quiet exit on the closed pipe (0, as ripgrep does; the verdict's own code
//! for `analyze` and `soak`, so that a leak piped into `head` still fails under `set -o
//! pipefail`), exit 2 with a message on the full disk, never a panic. A standard error that cannot be written loses the log and
//! the notes, and changes nothing else.

use std::path::Path;

use crate::harness::{series_csv, write_file, Cmd};

/// A heap snapshot as small as V8's format allows: the root and one `Foo` of 100 bytes.
const TINY_SNAPSHOT: &str = r#"{"snapshot":{"meta":{"node_fields":["type","name","id","self_size","edge_count","trace_node_id"],
"node_types":[["hidden","array","string","object","code","closure","synthetic","native"],"string","number","number","number","number"],
"edge_fields":["type","name_or_index","to_node"],
"edge_types":[["context","element","property","internal","hidden","shortcut","weak"],"string_or_number","node"]},
"node_count":2,"edge_count":1},
"nodes":[6,0,1,0,1,0, 3,1,3,100,0,0],
"edges":[2,2,6],
"trace_function_infos":[],"samples":[],
"strings":["","Foo","x"]}"#;

/// The printing commands, each as (what it is, the command to run).
fn printing_commands(dir: &Path) -> Vec<(String, Cmd)> {
    let csv = write_file(dir, "series.csv", &series_csv(300, |_| 50e6));
    let snapshot = write_file(dir, "tiny.heapsnapshot", TINY_SNAPSHOT);
    let config = write_file(
        dir,
        "plimsoll.toml",
        "[[app]]\nname = \"api\"\ncommand = [\"sleep\", \"30\"]\n",
    );
    let pid = std::process::id().to_string();
    let mut commands = Vec::new();
    for json in [false, true] {
        let flag = |cmd: Cmd| if json { cmd.arg("--json") } else { cmd };
        let label = |what: &str| format!("{what}{}", if json { " --json" } else { "" });
        commands.push((label("analyze"), flag(Cmd::new("analyze").arg(&csv))));
        commands.push((label("check"), flag(Cmd::new("check").arg(&pid))));
        commands.push((
            label("heap summary"),
            flag(Cmd::new("heap").arg("summary").arg(&snapshot)),
        ));
        commands.push((
            label("heap diff"),
            flag(Cmd::new("heap").arg("diff").arg(&snapshot).arg(&snapshot)),
        ));
    }
    commands.push((
        "up --check".to_owned(),
        Cmd::new("up").arg("--check").arg("-c").arg(&config),
    ));
    commands.push(("--help".to_owned(), Cmd::new("--help")));
    commands
}

#[test]
fn a_closed_pipe_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, cmd) in printing_commands(dir.path()) {
        // Five minutes of a flat series are too short to tell: `analyze` keeps its 3.
        let code = if what.starts_with("analyze") { 3 } else { 0 };
        let out = cmd.stdout_closed_pipe().expect_exit(code);
        assert!(out.stderr.is_empty(), "{what}: {}", out.stderr);
    }
}

#[test]
fn a_leak_into_a_closed_pipe_still_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1 MB/min for 20 minutes: confirmed. `analyze leak.csv | head -1` exited 0 or 1 by the
    // race between its write and the reader's exit.
    let csv = write_file(
        dir.path(),
        "leak.csv",
        &series_csv(1200, |t| 100e6 + 1e6 * t / 60.0),
    );
    for json in [false, true] {
        let cmd = Cmd::new("analyze").arg(&csv);
        let cmd = if json { cmd.arg("--json") } else { cmd };
        cmd.stdout_closed_pipe().expect_exit(1);
    }
}

#[test]
fn a_full_disk_is_exit_2_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (what, cmd) in printing_commands(dir.path()) {
        let out = cmd.stdout_dev_full().expect_exit(2);
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("No space left on device"),
            "{what}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_soak_verdict_into_a_closed_pipe_or_a_full_disk_does_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let soak = |json: bool| {
        let cmd = Cmd::new("soak")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--duration")
            .arg("1s")
            .arg("--interval")
            .arg("200ms");
        let cmd = if json { cmd.arg("--json") } else { cmd };
        cmd.arg("--").arg("sleep").arg("5")
    };
    for json in [false, true] {
        // A second is too short to tell: the verdict's 3, through the closed pipe too.
        let out = soak(json).stdout_closed_pipe().expect_exit(3);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        let out = soak(json).stdout_dev_full().expect_exit(2);
        assert!(
            out.stderr.contains("cannot write to standard output"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn a_closed_or_full_standard_error_loses_the_log_and_changes_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = || {
        Cmd::new("run")
            .arg("--listen")
            .arg("off")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg("exit 0")
    };
    // The supervisor logs at every start and exit: the log must not end it.
    run().stderr_closed_pipe().expect_exit(0);
    run().stderr_dev_full().expect_exit(0);
    // A soak too short to tell: its notes and progress go to standard error.
    let soak = || {
        Cmd::new("soak")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--duration")
            .arg("1s")
            .arg("--interval")
            .arg("200ms")
            .arg("--")
            .arg("sleep")
            .arg("5")
    };
    let out = soak().stderr_dev_full().expect_exit(3);
    assert!(out.stdout.contains("INCONCLUSIVE"), "{}", out.stdout);
    soak().stderr_closed_pipe().expect_exit(3);
    // A usage error with nowhere to say it is still exit 2.
    Cmd::new("analyze")
        .arg(dir.path().join("missing.csv"))
        .stderr_dev_full()
        .expect_exit(2);
}
