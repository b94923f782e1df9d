//! The recorded corpus: the manifest `bench/corpus.json` (one labeled entry per workload) and
//! the CSV traces `bench/traces/<name>.csv` that the recorder writes.

use std::fs::File;
use std::path::{Path, PathBuf};

use plimsoll_analysis::Observation;
use serde::Deserialize;

use crate::synthetic::Label;

/// Why the corpus could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A file could not be opened or read.
    #[error("cannot read '{path}': {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The manifest is not the expected JSON.
    #[error("invalid manifest '{path}': {source}")]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A manifest entry has a label other than `leak` or `no-leak`.
    #[error("entry '{name}' has label '{label}' (expected 'leak' or 'no-leak')")]
    Label { name: String, label: String },
    /// The trace's header lacks a required column.
    #[error("'{path}' has no column '{column}'")]
    MissingColumn { path: PathBuf, column: &'static str },
    /// A line of the trace is malformed.
    #[error("'{path}' line {line}: {message}")]
    Line {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// One manifest entry, as far as scoring needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub label: Label,
    /// The budget the workload ran under, bytes.
    pub budget_bytes: u64,
    /// When the leak starts, seconds after the first sample; `None` for healthy workloads.
    pub leak_start_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct RawEntry {
    name: String,
    label: String,
    budget_bytes: u64,
    leak_start_s: Option<f64>,
}

/// Reads the manifest at `path`.
pub fn read_manifest(path: &Path) -> Result<Vec<Entry>, CorpusError> {
    let file = File::open(path).map_err(|source| CorpusError::Io {
        path: path.to_owned(),
        source,
    })?;
    let raw: Vec<RawEntry> =
        serde_json::from_reader(std::io::BufReader::new(file)).map_err(|source| {
            CorpusError::Manifest {
                path: path.to_owned(),
                source,
            }
        })?;
    raw.into_iter()
        .map(|entry| {
            let label = match entry.label.as_str() {
                "leak" => Label::Leak,
                "no-leak" => Label::NoLeak,
                _ => {
                    return Err(CorpusError::Label {
                        name: entry.name,
                        label: entry.label,
                    })
                }
            };
            Ok(Entry {
                name: entry.name,
                label,
                budget_bytes: entry.budget_bytes,
                leak_start_s: entry.leak_start_s,
            })
        })
        .collect()
}

/// Reads a trace: columns `t_s` and `rss_bytes` are required, `heap_used_after_gc_bytes` is
/// used when present and non-empty; other columns are ignored. Times are as recorded.
pub fn read_trace(path: &Path) -> Result<Vec<Observation>, CorpusError> {
    let file = File::open(path).map_err(|source| CorpusError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(file);
    let line_error = |line: u64, message: String| CorpusError::Line {
        path: path.to_owned(),
        line,
        message,
    };
    let headers = reader
        .headers()
        .map_err(|error| line_error(1, error.to_string()))?
        .clone();
    let column = |name: &'static str| headers.iter().position(|header| header.trim() == name);
    let missing = |column: &'static str| CorpusError::MissingColumn {
        path: path.to_owned(),
        column,
    };
    let t_column = column("t_s").ok_or_else(|| missing("t_s"))?;
    let rss_column = column("rss_bytes").ok_or_else(|| missing("rss_bytes"))?;
    let heap_column = column("heap_used_after_gc_bytes");

    let mut observations = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|error| {
            let line = error.position().map_or(0, csv::Position::line);
            line_error(line, error.to_string())
        })?;
        let line = record.position().map_or(0, csv::Position::line);
        let cell = |index: usize| record.get(index).map(str::trim).unwrap_or("");
        let t_s: f64 = cell(t_column)
            .parse()
            .map_err(|_| line_error(line, format!("invalid t_s '{}'", cell(t_column))))?;
        let rss_bytes: u64 = cell(rss_column)
            .parse()
            .map_err(|_| line_error(line, format!("invalid rss_bytes '{}'", cell(rss_column))))?;
        let heap_used_after_gc_bytes = match heap_column.map(cell) {
            None | Some("") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                line_error(line, format!("invalid heap_used_after_gc_bytes '{text}'"))
            })?),
        };
        observations.push(Observation {
            t_s,
            rss_bytes,
            heap_used_after_gc_bytes,
        });
    }
    Ok(observations)
}

/// The trace as a sparser sampler would have read it: the first sample at or after
/// `offset_s` seconds past the first, then each sample at least `every_s` seconds after the
/// last one kept (a scraper once a minute, `watch --interval 1m`). The heap column goes with
/// its row.
pub fn resample(observations: &[Observation], every_s: f64, offset_s: f64) -> Vec<Observation> {
    let Some(first) = observations.first().map(|o| o.t_s) else {
        return Vec::new();
    };
    let mut next = first + offset_s;
    let mut kept = Vec::new();
    for observation in observations {
        if observation.t_s >= next {
            kept.push(*observation);
            next = observation.t_s + every_s;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_a_sample_every_interval_from_the_offset() {
        let trace: Vec<Observation> = (0..10)
            .map(|i| Observation {
                t_s: f64::from(i) + 0.01 * f64::from(i % 3),
                rss_bytes: u64::try_from(i).expect("small"),
                heap_used_after_gc_bytes: None,
            })
            .collect();
        let kept: Vec<u64> = resample(&trace, 3.0, 1.0)
            .iter()
            .map(|o| o.rss_bytes)
            .collect();
        assert_eq!(kept, vec![1, 4, 7]);
        assert!(resample(&[], 3.0, 0.0).is_empty());
    }

    fn temp_file(dir: &tempfile::TempDir, name: &str, contents: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    #[test]
    fn reads_optional_columns_and_empty_cells() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = temp_file(
            &dir,
            "trace.csv",
            "t_s,rss_bytes,pss_bytes,heap_used_bytes,heap_used_after_gc_bytes\n0.05,100,90,,\n1.0,200,,,150\n",
        );
        let observations = read_trace(&path).expect("trace");
        assert_eq!(
            observations,
            vec![
                Observation {
                    t_s: 0.05,
                    rss_bytes: 100,
                    heap_used_after_gc_bytes: None
                },
                Observation {
                    t_s: 1.0,
                    rss_bytes: 200,
                    heap_used_after_gc_bytes: Some(150)
                },
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = temp_file(&dir, "bad.csv", "t_s,rss_bytes\n0,100\n1,lots\n");
        let error = read_trace(&path).expect_err("bad line").to_string();
        assert!(
            error.contains("line 3") && error.contains("'lots'"),
            "{error}"
        );
        let path = temp_file(&dir, "norss.csv", "t_s,pss_bytes\n0,100\n");
        let error = read_trace(&path).expect_err("no rss").to_string();
        assert!(error.contains("rss_bytes"), "{error}");
    }

    #[test]
    fn reads_the_manifest_fields_it_needs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = temp_file(
            &dir,
            "corpus.json",
            r#"[{"name":"a","label":"leak","budget_bytes":10,"leak_start_s":120,"notes":"x"},
                {"name":"b","label":"no-leak","budget_bytes":20,"leak_start_s":null}]"#,
        );
        let entries = read_manifest(&path).expect("manifest");
        assert_eq!(entries[0].label, Label::Leak);
        assert_eq!(entries[0].leak_start_s, Some(120.0));
        assert_eq!(entries[1].label, Label::NoLeak);
        let path = temp_file(
            &dir,
            "bad.json",
            r#"[{"name":"a","label":"maybe","budget_bytes":1,"leak_start_s":null}]"#,
        );
        assert!(matches!(
            read_manifest(&path),
            Err(CorpusError::Label { .. })
        ));
    }
}
