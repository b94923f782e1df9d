//! The command line's finishing: shell completions, man pages, `--version` with the git
//! revision, `--log-format json` for log shippers, and colour only on a terminal without
//! `NO_COLOR` (checked on a real pseudo-terminal through util-linux's `script`).

use std::process::Command;

use crate::harness::Cmd;

const SUBCOMMANDS: [&str; 11] = [
    "analyze",
    "check",
    "run",
    "watch",
    "up",
    "heap",
    "snapshot",
    "soak",
    "report",
    "completions",
    "man",
];

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    for (shell, marker) in [
        ("bash", "complete -F _plimsoll"),
        ("zsh", "#compdef plimsoll"),
        ("fish", "complete -c plimsoll"),
    ] {
        let script = Cmd::new("completions").arg(shell).expect_exit(0).stdout;
        assert!(
            script.contains(marker),
            "{shell}: no '{marker}' in {script}"
        );
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: '{sub}' missing");
        }
        // The global flag completes with its values.
        assert!(script.contains("log-format"), "{shell}: no --log-format");
    }
    // bash parses it (syntax only; nothing runs).
    let dir = tempfile::tempdir().expect("tempdir");
    let bash = crate::harness::write_file(
        dir.path(),
        "plimsoll.bash",
        &Cmd::new("completions").arg("bash").expect_exit(0).stdout,
    );
    let checked = Command::new("bash")
        .arg("-n")
        .arg(&bash)
        .output()
        .expect("run bash");
    assert!(checked.status.success(), "{checked:?}");
}

#[test]
fn an_unknown_shell_is_exit_2_naming_it() {
    let error = Cmd::new("completions").arg("tcsh").expect_exit(2).stderr;
    assert!(error.contains("'tcsh'"), "{error}");
}

/// Renders a page with groff, as `man` does, and returns the text; groff's warnings (`-ww`)
/// about bad requests fail the test.
fn render(roff: &[u8]) -> String {
    use std::io::Write as _;
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-rLL=100n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff (Debian: groff-base; scripts/deps.sh test installs it)");
    groff
        .stdin
        .take()
        .expect("stdin")
        .write_all(roff)
        .expect("write the page");
    let output = groff.wait_with_output().expect("groff");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "{stderr}");
    // groff's utf8 device emboldens by overstriking: drop it to compare text.
    let text = String::from_utf8_lossy(&output.stdout);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn the_man_page_renders_and_names_the_commands() {
    let page = Cmd::new("man").expect_exit(0).stdout;
    assert!(page.contains(".TH plimsoll 1"), "{page}");
    let text = render(page.as_bytes());
    for section in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS", "VERSION"] {
        assert!(text.contains(section), "no {section} in {text}");
    }
    assert!(text.contains("plimsoll-soak(1)"), "{text}");
    assert!(text.contains("--log-format"), "{text}");
}

#[test]
fn man_out_writes_one_page_per_command_into_a_new_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("share/man/man1");
    let listed = Cmd::new("man").arg("--out").arg(&out).expect_exit(0).stdout;
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("the folder was made")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(listed.lines().count(), names.len(), "{listed}");
    for name in [
        "plimsoll.1",
        "plimsoll-run.1",
        "plimsoll-heap.1",
        "plimsoll-heap-diff.1",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert!(
        names.iter().all(|n| n.ends_with(".1")),
        "a leftover: {names:?}"
    );
    let run = render(&std::fs::read(out.join("plimsoll-run.1")).expect("read"));
    assert!(run.contains("--budget"), "{run}");

    // A file where the folder should be: exit 2 naming it, nothing written.
    let file = crate::harness::write_file(dir.path(), "not-a-dir", "x");
    let error = Cmd::new("man")
        .arg("--out")
        .arg(&file)
        .expect_exit(2)
        .stderr;
    assert!(error.contains("not-a-dir"), "{error}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "x");
}

#[test]
fn version_names_the_git_revision_it_was_built_from() {
    let version = Cmd::new("--version").expect_exit(0).stdout;
    let expected_prefix = concat!("plimsoll ", env!("CARGO_PKG_VERSION"), " (rev ");
    let revision = version
        .trim_end()
        .strip_prefix(expected_prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not 'plimsoll VERSION (rev REVISION)': {version}"));
    assert_eq!(revision.len(), 12, "{version}");
    assert!(revision.chars().all(|c| c.is_ascii_hexdigit()), "{version}");
    // Built from this checkout: its HEAD (build.rs reruns when HEAD moves).
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .expect("git");
    if head.status.success() {
        let head = String::from_utf8_lossy(&head.stdout);
        assert!(head.starts_with(revision), "{version} vs HEAD {head}");
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The flag is global: before the subcommand or after it.
    for before in [true, false] {
        let mut cmd = if before {
            Cmd::program(env!("CARGO_BIN_EXE_plimsoll"))
                .arg("--log-format")
                .arg("json")
                .arg("run")
        } else {
            Cmd::new("run").arg("--log-format").arg("json")
        };
        cmd = cmd
            .arg("--listen")
            .arg("off")
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--budget")
            .arg("64MiB")
            .arg("--")
            .arg("sh")
            .arg("-c")
            .arg("exit 0");
        let stderr = cmd.expect_exit(0).stderr;
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect();
        assert!(lines.len() >= 2, "{stderr}");
        for line in &lines {
            for key in ["timestamp", "level", "message"] {
                assert!(line[key].is_string(), "no {key}: {line}");
            }
        }
        let started = lines
            .iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("started"))
            })
            .unwrap_or_else(|| panic!("no started line: {stderr}"));
        assert_eq!(started["target_name"], "sh", "{started}");
        let budget = lines
            .iter()
            .find(|l| l["budget_bytes"].is_u64())
            .unwrap_or_else(|| panic!("no budget field: {stderr}"));
        assert_eq!(budget["budget_bytes"], 64 << 20, "{budget}");
    }
}

#[test]
fn a_bad_log_format_is_exit_2_naming_it_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let marker = dir.path().join("ran");
    let error = Cmd::new("run")
        .arg("--log-format")
        .arg("xml")
        .arg("--data-dir")
        .arg(&data)
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .expect_exit(2)
        .stderr;
    assert!(
        error.contains("'xml'") && error.contains("--log-format"),
        "{error}"
    );
    assert!(error.contains("text, json"), "{error}");
    assert!(!data.exists() && !marker.exists());
}

/// Runs `plimsoll ARGS` on a pseudo-terminal (util-linux `script`), with `NO_COLOR` set or
/// not; returns what the terminal showed.
fn on_terminal(no_color: bool, args: &str) -> (i32, String) {
    let env = if no_color {
        "env NO_COLOR=1"
    } else {
        "env -u NO_COLOR"
    };
    let command = format!("{env} '{}' {args}", env!("CARGO_BIN_EXE_plimsoll"));
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script (util-linux)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn no_color_and_pipes_get_no_escape_codes_a_terminal_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = format!(
        "run --listen off --data-dir '{}' -- sh -c 'exit 0'",
        dir.path().display()
    );
    for args in ["--bogus", run.as_str()] {
        let (code, coloured) = on_terminal(false, args);
        assert!(
            coloured.contains('\u{1b}'),
            "{args}: no colour on a terminal: {coloured}"
        );
        let (plain_code, plain) = on_terminal(true, args);
        assert_eq!(code, plain_code, "{args}");
        assert!(
            !plain.contains('\u{1b}'),
            "{args}: colour with NO_COLOR: {plain:?}"
        );
        assert!(plain.len() > 20, "{args}: {plain:?}");
    }
    // Into a pipe: plain, NO_COLOR or not.
    let piped = Cmd::new("run")
        .arg("--listen")
        .arg("off")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--")
        .arg("true")
        .expect_exit(0)
        .stderr;
    assert!(
        piped.contains("started") && !piped.contains('\u{1b}'),
        "{piped:?}"
    );
    let usage = Cmd::new("--bogus").expect_exit(2).stderr;
    assert!(!usage.contains('\u{1b}'), "{usage:?}");
}
