//! The event stream (`--events FILE|-`): one `Event::to_json()` per line, appended to a file
//! (created with mode 0600) or written to stdout, flushed after every event.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::{Deliver, Rendered, Shutdown};

/// Where the event stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventsTarget {
    /// Appended to this file.
    File(PathBuf),
    /// Written to standard output (`-`).
    Stdout,
}

impl From<PathBuf> for EventsTarget {
    /// `-` means stdout; anything else is a file.
    fn from(path: PathBuf) -> EventsTarget {
        if path.as_os_str() == "-" {
            EventsTarget::Stdout
        } else {
            EventsTarget::File(path)
        }
    }
}

/// The open event stream.
#[derive(Debug)]
pub(super) struct EventsFile {
    out: Output,
    /// Each line is built here and written with one call, so lines from two writers to the same
    /// file (`O_APPEND`) do not interleave.
    line: Vec<u8>,
}

#[derive(Debug)]
enum Output {
    File { file: File, path: PathBuf },
    Stdout(io::Stdout),
}

impl EventsFile {
    /// Opens the stream: a file is created (mode 0600) or appended to; its directory must exist.
    pub(super) fn open(target: &EventsTarget) -> anyhow::Result<EventsFile> {
        let out = match target {
            EventsTarget::Stdout => Output::Stdout(io::stdout()),
            EventsTarget::File(path) => Output::File {
                file: open_append(path)?,
                path: path.clone(),
            },
        };
        Ok(EventsFile {
            out,
            line: Vec::new(),
        })
    }

    fn write_line(&mut self, json: &str) -> io::Result<()> {
        self.line.clear();
        self.line.extend_from_slice(json.as_bytes());
        self.line.push(b'\n');
        match &mut self.out {
            Output::File { file, .. } => {
                file.write_all(&self.line)?;
                file.flush()
            }
            Output::Stdout(stdout) => {
                let mut stdout = stdout.lock();
                stdout.write_all(&self.line)?;
                stdout.flush()
            }
        }
    }

    fn describe(&self) -> String {
        match &self.out {
            Output::File { path, .. } => format!("events file '{}'", path.display()),
            Output::Stdout(_) => "events to stdout".to_owned(),
        }
    }
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        if !parent.is_dir() {
            bail!(
                "cannot open events file '{}': directory '{}' does not exist",
                path.display(),
                parent.display()
            );
        }
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open events file '{}'", path.display()))
}

impl Deliver for EventsFile {
    fn deliver(&mut self, event: &Rendered, _shutdown: &Shutdown) -> Result<(), String> {
        self.write_line(&event.json)
            .map_err(|error| format!("cannot write {}: {error}", self.describe()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::event::Event;
    use crate::sinks::tests::event;
    use crate::sinks::{SinkConfig, Sinks};

    fn sinks_to(path: &Path) -> Sinks {
        Sinks::new(&SinkConfig {
            events: Some(EventsTarget::File(path.to_owned())),
            on_event: None,
            webhook: None,
            hook_timeout: Duration::from_secs(10),
        })
        .expect("sinks")
    }

    #[test]
    fn file_gets_exactly_the_events_as_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let sinks = sinks_to(&path);
        let events: Vec<Event> = (0..20).map(event).collect();
        for event in &events {
            sinks.emit(event);
        }
        let stats = sinks.close(Instant::now() + Duration::from_secs(10));
        assert_eq!(
            (stats[0].delivered, stats[0].failed, stats[0].dropped),
            (20, 0, 0)
        );

        let text = std::fs::read_to_string(&path).expect("read events");
        assert!(text.ends_with('\n'));
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect();
        let expected: Vec<serde_json::Value> = events.iter().map(Event::to_json).collect();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn each_event_is_flushed_as_it_comes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let sinks = sinks_to(&path);
        sinks.emit(&event(1));
        super::super::tests::eventually("the first line", || {
            std::fs::read_to_string(&path).is_ok_and(|text| text.lines().count() == 1)
        });
        sinks.close(Instant::now() + Duration::from_secs(10));
    }

    #[test]
    fn new_file_is_private_and_existing_one_is_appended_to() {
        let dir = tempfile::tempdir().expect("tempdir");
        let created = dir.path().join("new.jsonl");
        sinks_to(&created).close(Instant::now());
        let mode = std::fs::metadata(&created)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let existing = dir.path().join("old.jsonl");
        std::fs::write(&existing, "{\"earlier\":true}\n").expect("write");
        let sinks = sinks_to(&existing);
        sinks.emit(&event(7));
        sinks.close(Instant::now() + Duration::from_secs(10));
        let text = std::fs::read_to_string(&existing).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "{\"earlier\":true}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(lines[1]).expect("json"),
            event(7).to_json()
        );
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-dir").join("events.jsonl");
        let error = EventsFile::open(&EventsTarget::File(path.clone())).expect_err("no dir");
        let message = format!("{error:#}");
        assert!(
            message.contains(&format!("'{}'", path.display())),
            "{message}"
        );
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn a_directory_is_not_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = EventsFile::open(&EventsTarget::File(dir.path().to_owned())).expect_err("dir");
        assert!(format!("{error:#}").contains(&dir.path().display().to_string()));
    }

    #[test]
    fn dash_means_stdout() {
        assert_eq!(EventsTarget::from(PathBuf::from("-")), EventsTarget::Stdout);
        assert_eq!(
            EventsTarget::from(PathBuf::from("./-x")),
            EventsTarget::File(PathBuf::from("./-x"))
        );
        assert!(EventsFile::open(&EventsTarget::Stdout).is_ok());
    }
}
