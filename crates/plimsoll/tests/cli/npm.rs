//! The npm packages (`scripts/npm-pack.sh`, `npm/`): packed around this build's binary,
//! installed into a fresh project from the tarballs alone (npm offline, a registry that does not
//! exist, an empty cache), then run through `npx` as a Node team would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `program args` in `dir` (stdin closed) and returns its output; fails the test after
/// `within`.
fn run(dir: &Path, program: &str, args: &[&str], within: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let deadline = Instant::now() + within;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{program} {args:?} took more than {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Packs the tarballs with this build's binary and returns their paths: the platform package,
/// then `plimsoll`. What is packed as the binary is a two-line script that execs this build's
/// plimsoll: compressing the real 130 MB debug binary (15 MB stripped) took most of the test's
/// time, and the launcher, the package layout and npm see the same thing either way: an
/// executable `bin/plimsoll` that is plimsoll.
fn pack(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let binary = dir.join("plimsoll");
    std::fs::write(
        &binary,
        format!(
            "#!/bin/sh\nexec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_plimsoll")
        ),
    )
    .expect("write the binary");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/npm-pack.sh");
    let out = dir.join("out");
    let output = Command::new(&script)
        .arg(&out)
        .env("PLIMSOLL_BINARY", &binary)
        .stdin(Stdio::null())
        .output()
        .expect("run npm-pack.sh");
    assert!(output.status.success(), "{output:?}");
    let tarballs: Vec<PathBuf> = text(&output.stdout).lines().map(PathBuf::from).collect();
    let [platform, main] = &tarballs[..] else {
        panic!("two tarballs expected: {output:?}");
    };
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        main.ends_with(format!("plimsoll-{version}.tgz")),
        "{main:?}"
    );
    let name = platform.file_name().expect("name").to_string_lossy();
    assert!(
        name.starts_with("plimsoll-linux-") && name.ends_with(&format!("-{version}.tgz")),
        "{name}"
    );
    (platform.clone(), main.clone())
}

/// npm, offline and hermetic: its own cache, a registry nobody listens on, no audit or fund
/// requests.
const OFFLINE: [&str; 6] = [
    "--offline",
    "--no-audit",
    "--no-fund",
    "--registry",
    "http://127.0.0.1:9/",
    "--cache",
];

#[test]
fn the_npm_packages_install_offline_and_npx_plimsoll_runs_a_node_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (platform, main) = pack(dir.path());
    // The tracked package.jsons keep their placeholder version: only copies are stamped.
    let tracked = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../npm/plimsoll/package.json"),
    )
    .expect("read npm/plimsoll/package.json");
    assert!(tracked.contains("\"version\": \"0.0.0-dev\""), "{tracked}");

    let project = dir.path().join("app");
    std::fs::create_dir(&project).expect("mkdir");
    std::fs::write(
        project.join("package.json"),
        r#"{"name": "app", "version": "1.0.0", "private": true}"#,
    )
    .expect("write package.json");
    std::fs::write(
        project.join("app.js"),
        "console.log('app ran'); setTimeout(() => process.exit(0), 200);\n",
    )
    .expect("write app.js");
    let cache = dir.path().join("npm-cache");
    // Both tarballs on the command line: npm takes the platform package from there for the
    // optional dependency; the other platform's is skipped (optional, and not to be had offline).
    let mut install = vec!["install", "-D"];
    install.extend(OFFLINE);
    install.push(cache.to_str().expect("utf-8 path"));
    install.push(main.to_str().expect("utf-8 path"));
    install.push(platform.to_str().expect("utf-8 path"));
    let installed = run(&project, "npm", &install, Duration::from_secs(60));
    assert!(installed.status.success(), "{installed:?}");

    let npx = |args: &[&str]| {
        let mut all = vec![
            "--offline",
            "--cache",
            cache.to_str().expect("utf-8"),
            "plimsoll",
        ];
        all.extend(args);
        run(&project, "npx", &all, Duration::from_secs(30))
    };
    let version = npx(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert!(
        text(&version.stdout).starts_with(concat!("plimsoll ", env!("CARGO_PKG_VERSION"))),
        "{version:?}"
    );

    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let supervised = npx(&[
        "run",
        "--listen",
        "off",
        "--data-dir",
        data,
        "--",
        "node",
        "app.js",
    ]);
    assert_eq!(supervised.status.code(), Some(0), "{supervised:?}");
    assert!(
        text(&supervised.stdout).contains("app ran"),
        "{supervised:?}"
    );
    let log = text(&supervised.stderr);
    assert!(log.contains("started") && log.contains("exited"), "{log}");

    // The launcher itself (what npx ran), without npx's own second of start-up from here on.
    let launcher = project.join("node_modules/.bin/plimsoll");
    let direct = |args: &[&str]| {
        let mut all = vec![launcher.to_str().expect("utf-8")];
        all.extend(args);
        run(&project, "node", &all, Duration::from_secs(30))
    };
    // The exit code passes through (2: bad input names the file).
    let bad = direct(&["analyze", "missing.csv"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(text(&bad.stderr).contains("missing.csv"), "{bad:?}");

    // A SIGTERM to the launcher reaches plimsoll, which stops its target and ends with the
    // target's status (128 + 15), and so does the launcher.
    let stderr_path = dir.path().join("term.stderr");
    let mut child = Command::new("node")
        .arg(&launcher)
        .args([
            "run",
            "--listen",
            "off",
            "--data-dir",
            data,
            "--",
            "sleep",
            "30",
        ])
        .current_dir(&project)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start the launcher");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(&stderr_path)
        .unwrap_or_default()
        .contains("started")
    {
        assert!(Instant::now() < deadline, "no start within 15 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the launcher did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(log.contains("SIGTERM: stopping"), "{log}");

    // Without the platform package (an install with --omit=optional): a clear error naming
    // the platform, exit 2.
    std::fs::remove_dir_all(project.join("node_modules/@plimsoll")).expect("remove");
    let missing = direct(&["--version"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    let error = text(&missing.stderr);
    assert!(
        error.contains("@plimsoll/linux-") && error.contains("is not installed"),
        "{error}"
    );
}
