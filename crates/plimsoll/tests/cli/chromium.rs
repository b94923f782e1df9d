//! Headless Chromium for the page tests (the dashboard, the report): the command with the
//! flags this machine needs, a bounded run, and the state the pages publish on their body.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Chromium, or a failure that says how to get it.
pub(crate) fn chromium() -> Command {
    let found = ["chromium", "chromium-browser"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let name = found.unwrap_or_else(|| {
        panic!("chromium is missing: install it (Debian: apt-get install chromium; .ci/run does)")
    });
    let mut command = Command::new(name);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]);
    command
}

/// Runs a prepared Chromium command with a deadline; its stdout.
pub(crate) fn run_bounded(mut command: Command, within: Duration) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + within;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {within:?}");
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
    reader.join().unwrap_or_default()
}

/// The value of `data-NAME="…"` on the body of a dumped DOM.
pub(crate) fn body_data<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let body = &dom[dom.find("<body")?..];
    let body = &body[..body.find('>')?];
    let key = format!("data-{name}=\"");
    let start = body.find(&key)? + key.len();
    Some(&body[start..start + body[start..].find('"')?])
}
