//! Series files (`analyze` input): a CSV with a header, `t_s` and `rss_bytes` required, other
//! sample columns optional. Read as a stream, so memory stays constant for any file length;
//! a line longer than [`MAX_LINE_BYTES`] is an error as soon as it is seen.

use std::io::Read;

use anyhow::{anyhow, bail, Result};
use plimsoll_analysis::Observation;

use crate::bounded::{excerpt, excerpt_bytes, LineCap, MAX_LINE_BYTES};

/// Columns found in the header, by position.
#[derive(Debug)]
struct Columns {
    t_s: usize,
    rss_bytes: usize,
    heap_used_after_gc_bytes: Option<usize>,
    /// Optional byte columns that are checked to be numbers but not used by the detector.
    checked: Vec<(usize, &'static str)>,
}

/// Optional columns that must hold byte counts when present.
const OPTIONAL_BYTES: [&str; 5] = [
    "heap_used_bytes",
    "heap_total_bytes",
    "pss_bytes",
    "uss_bytes",
    "external_bytes",
];

/// Reads observations one by one from CSV text, checking each line.
#[derive(Debug)]
pub(crate) struct SeriesReader<R: Read> {
    reader: csv::Reader<LineCap<R>>,
    record: csv::ByteRecord,
    columns: Columns,
    last_t_s: f64,
}

impl<R: Read> SeriesReader<R> {
    /// Reads the header; fails when it is missing or lacks a required column.
    pub(crate) fn new(input: R) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .flexible(false)
            .from_reader(LineCap::new(input, MAX_LINE_BYTES));
        let header = reader
            .byte_headers()
            .map_err(|e| match e.kind() {
                csv::ErrorKind::Io(_) => anyhow!("{}", csv_reason(&e)),
                _ => anyhow!("line 1: {}", csv_reason(&e)),
            })?
            .clone();
        if header.is_empty() || header.iter().all(|h| h.is_empty()) {
            bail!("empty file (expected a header line with t_s and rss_bytes)");
        }
        let find = |name: &str| header.iter().position(|h| h == name.as_bytes());
        let required = |name: &str| {
            find(name).ok_or_else(|| {
                let seen: Vec<&[u8]> = header.iter().collect();
                anyhow!(
                    "line 1: missing column '{name}' (header has: {})",
                    excerpt_bytes(&seen.join(&b","[..]))
                )
            })
        };
        let columns = Columns {
            t_s: required("t_s")?,
            rss_bytes: required("rss_bytes")?,
            heap_used_after_gc_bytes: find("heap_used_after_gc_bytes"),
            checked: OPTIONAL_BYTES
                .iter()
                .filter_map(|&name| find(name).map(|i| (i, name)))
                .collect(),
        };
        Ok(SeriesReader {
            reader,
            record: csv::ByteRecord::new(),
            columns,
            last_t_s: f64::NEG_INFINITY,
        })
    }

    /// The next observation, `None` at the end, or an error naming the line and the value.
    pub(crate) fn next_observation(&mut self) -> Result<Option<Observation>> {
        let more = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| match e.position() {
                Some(position) => anyhow!("line {}: {}", position.line(), csv_reason(&e)),
                // An I/O error, e.g. a line over the cap, which names its line itself.
                None => anyhow!("{}", csv_reason(&e)),
            })?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let record = &self.record;
        let cell = |index: usize| record.get(index).unwrap_or_default();
        let columns = &self.columns;
        let t_s = parse_seconds(cell(columns.t_s))
            .map_err(|v| anyhow!("line {line}: invalid t_s '{v}' (expected seconds, e.g. 12.5)"))?;
        if t_s < self.last_t_s {
            bail!(
                "line {line}: t_s '{}' goes back in time (previous line had {})",
                crate::bounded::excerpt_bytes(cell(columns.t_s)),
                seconds_text(self.last_t_s)
            );
        }
        let rss_bytes = parse_bytes(cell(columns.rss_bytes))
            .map_err(|v| {
                anyhow!("line {line}: invalid rss_bytes '{v}' (expected a whole number of bytes)")
            })?
            .ok_or_else(|| anyhow!("line {line}: rss_bytes is empty"))?;
        let heap_used_after_gc_bytes = match columns.heap_used_after_gc_bytes {
            Some(index) => parse_bytes(cell(index)).map_err(|v| {
                anyhow!("line {line}: invalid heap_used_after_gc_bytes '{v}' (expected a whole number of bytes)")
            })?,
            None => None,
        };
        for &(index, name) in &columns.checked {
            parse_bytes(cell(index)).map_err(|v| {
                anyhow!("line {line}: invalid {name} '{v}' (expected a whole number of bytes)")
            })?;
        }
        self.last_t_s = t_s;
        Ok(Some(Observation {
            t_s,
            rss_bytes,
            heap_used_after_gc_bytes,
        }))
    }
}

fn csv_reason(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        csv::ErrorKind::Io(error) => error.to_string(),
        _ => error.to_string(),
    }
}

/// A finite, non-negative number of seconds; the offending text, cut short, on error.
fn parse_seconds(cell: &[u8]) -> Result<f64, String> {
    let text = std::str::from_utf8(cell).map_err(|_| excerpt_bytes(cell))?;
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(excerpt(text)),
    }
}

/// A whole number of bytes, or `None` for an empty cell; the offending text on error.
fn parse_bytes(cell: &[u8]) -> Result<Option<u64>, String> {
    if cell.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(cell).map_err(|_| excerpt_bytes(cell))?;
    text.parse::<u64>().map(Some).map_err(|_| excerpt(text))
}

/// A time from the file for a message: as written for everyday values, in scientific notation
/// past 1e15 s (`1e300` is 301 digits otherwise).
fn seconds_text(t_s: f64) -> String {
    if t_s.abs() < 1e15 {
        format!("{t_s}")
    } else {
        format!("{t_s:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(text: &str) -> Result<Vec<Observation>> {
        let mut reader = SeriesReader::new(text.as_bytes())?;
        let mut out = Vec::new();
        while let Some(observation) = reader.next_observation()? {
            out.push(observation);
        }
        Ok(out)
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", read_all(text).expect_err(text))
    }

    #[test]
    fn reads_required_and_optional_columns_in_any_order() {
        let text = "rss_bytes,extra,t_s,heap_used_after_gc_bytes\n100,x,0,\n200,y,1.5,50\n";
        let series = read_all(text).expect("valid");
        assert_eq!(series.len(), 2);
        assert_eq!(
            series[0],
            Observation {
                t_s: 0.0,
                rss_bytes: 100,
                heap_used_after_gc_bytes: None
            }
        );
        assert_eq!(
            series[1],
            Observation {
                t_s: 1.5,
                rss_bytes: 200,
                heap_used_after_gc_bytes: Some(50)
            }
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_the_value() {
        let cases = [
            (
                "t_s,rss_bytes\n0,100\n1,12QB\n",
                "line 3: invalid rss_bytes '12QB'",
            ),
            (
                "t_s,rss_bytes\n0,100\nsoon,100\n",
                "line 3: invalid t_s 'soon'",
            ),
            (
                "t_s,rss_bytes\n5,100\n4,100\n",
                "line 3: t_s '4' goes back in time",
            ),
            (
                "t_s,rss_bytes\n1e300,100\n1e299,100\n",
                "line 3: t_s '1e299' goes back in time (previous line had 1e300)",
            ),
            (
                "t_s,rss_bytes\n0,100\n1\n",
                "line 3: expected 2 fields, found 1",
            ),
            ("t_s,rss_bytes\n0,-5\n", "line 2: invalid rss_bytes '-5'"),
            ("t_s,rss_bytes\n0,\n", "line 2: rss_bytes is empty"),
            ("t_s,rss_bytes\nNaN,1\n", "line 2: invalid t_s 'NaN'"),
            (
                "t_s,rss_bytes,pss_bytes\n0,1,lots\n",
                "line 2: invalid pss_bytes 'lots'",
            ),
            ("t_s,rss\n0,1\n", "line 1: missing column 'rss_bytes'"),
            ("", "empty file"),
        ];
        for (text, expected) in cases {
            let error = error_of(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn an_endless_line_is_refused_at_the_cap_and_not_echoed() {
        let endless = std::io::Read::chain("t_s,rss_bytes\n0,".as_bytes(), std::io::repeat(b'7'));
        let mut reader = SeriesReader::new(endless).expect("header");
        let error = format!("{:#}", reader.next_observation().expect_err("endless"));
        assert_eq!(
            error,
            "line 2 is longer than 65536 bytes (is this the right file?)"
        );
        let error = format!(
            "{:#}",
            SeriesReader::new(std::io::repeat(0)).expect_err("zeros")
        );
        assert!(error.starts_with("line 1 is longer"), "{error}");
    }

    #[test]
    fn values_in_messages_are_cut_short_and_escaped() {
        let text = format!("t_s,rss_bytes\n0,{}\x1b[31m\n", "9".repeat(10_000));
        let error = error_of(&text);
        assert!(error.len() < 200, "{error}");
        assert!(error.contains("… (10005 bytes)"), "{error}");
        let error = error_of("t_s,rss_bytes\n0,\u{1b}[31mred\n");
        assert!(error.contains("'\\u{1b}[31mred'"), "{error}");
    }

    #[test]
    fn header_alone_reads_no_observation() {
        assert_eq!(read_all("t_s,rss_bytes\n").expect("valid").len(), 0);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(t_s,rss_bytes\n)?[0-9a-z,.\\-\n]{0,200}") {
            let _ = read_all(&text);
        }

        #[test]
        fn valid_series_round_trip(values in proptest::collection::vec((0u32..1000, any::<u64>()), 1..50)) {
            let mut t = 0.0;
            let mut text = String::from("t_s,rss_bytes\n");
            let mut expected = Vec::new();
            for (dt, rss) in values {
                t += f64::from(dt) / 8.0;
                text.push_str(&format!("{t},{rss}\n"));
                expected.push(Observation { t_s: t, rss_bytes: rss, heap_used_after_gc_bytes: None });
            }
            prop_assert_eq!(read_all(&text).expect("valid"), expected);
        }
    }
}
