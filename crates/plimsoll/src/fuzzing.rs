//! Entry points for the fuzz targets (`fuzz/`, run with `cargo +nightly fuzz`): each takes raw
//! bytes and drives a real parser of untrusted input the way the program does. Not an API.
//! The same entry points replay `fuzz/corpus` and `fuzz/regressions` in the normal test suite.

use std::path::Path;

/// A fuzz target's entry point: any bytes in, no panic out.
pub type Entry = fn(&[u8]);

/// Every fuzz target's name and entry point; `fuzz/fuzz_targets/<name>.rs` calls the entry.
pub const TARGETS: [(&str, Entry); 7] = [
    ("series_csv", series_csv),
    ("units", units),
    ("up_config", up_config),
    ("agent_lines", agent_lines),
    ("control_line", control_line),
    ("heap_snapshot", heap_snapshot),
    ("pm2_ecosystem", pm2_ecosystem),
];

/// A series file as `analyze` reads it: every observation, fed to the leak detector.
pub fn series_csv(data: &[u8]) {
    use plimsoll_analysis::{DetectorConfig, LeakDetector};
    let Ok(mut reader) = crate::series::SeriesReader::new(data) else {
        return;
    };
    let mut detector = LeakDetector::new(DetectorConfig::recommended());
    while let Ok(Some(observation)) = reader.next_observation() {
        detector.push(&observation);
    }
    let _ = detector.status();
    let _ = detector.time_to_budget_s(512 << 20);
}

/// A size or a duration as typed on the command line or in a config, and its human form.
pub fn units(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = crate::units::parse_size(text) {
        let _ = crate::units::human_bytes(bytes as f64);
    }
    if let Ok(duration) = crate::units::parse_duration(text) {
        let _ = crate::units::human_seconds(duration.as_secs_f64());
    }
}

/// An `up` config, the whole check that `up --check` makes, and each app's instance budget.
pub fn up_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(apps) = crate::up::config::parse(text, Path::new("/srv/app")) {
        for app in &apps {
            let _ = app.instance_budget();
        }
    }
}

/// Lines from a Node agent: hellos, figures and replies, then the summed figures.
pub fn agent_lines(data: &[u8]) {
    // The hub reads text lines; a line that is not UTF-8 ends the connection.
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&data[..error.valid_up_to()]).unwrap_or_default(),
    };
    let _ = crate::agent::replay(text);
}

/// One request line on the control socket.
pub fn control_line(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::control::parse_request(text.lines().next().unwrap_or_default());
}

/// A V8 heap snapshot: parsed, then the analyses `heap` commands run on it.
pub fn heap_snapshot(data: &[u8]) {
    let Ok(snapshot) = plimsoll_heap::parse(data) else {
        return;
    };
    let analysis = plimsoll_heap::Analysis::new(&snapshot);
    let _ = plimsoll_heap::summarize(&snapshot, &analysis, 5);
    let census = plimsoll_heap::Census::new(&snapshot);
    let _ = plimsoll_heap::diff_two(&census, &census, 5);
    let _ = plimsoll_heap::diff_three(&census, &census, &snapshot, &analysis, 5);
}

/// A PM2 ecosystem file (YAML or JSON) through `import pm2`'s mapping; what it renders must
/// pass `up`'s parser.
pub fn pm2_ecosystem(data: &[u8]) {
    crate::import::fuzz_pm2(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every seed (`fuzz/corpus/<target>/`) and every input that once crashed a target
    /// (`fuzz/regressions/<target>/`) through the target's entry point, on stable.
    #[test]
    fn fuzz_corpora_and_regressions_replay_without_panic() {
        let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut seeds = std::collections::HashMap::<&str, usize>::new();
        for kind in ["corpus", "regressions"] {
            let Ok(dirs) = std::fs::read_dir(fuzz.join(kind)) else {
                continue;
            };
            for dir in dirs.flatten() {
                let name = dir.file_name().to_string_lossy().into_owned();
                let Some(&(target, entry)) = TARGETS.iter().find(|(t, _)| *t == name) else {
                    panic!("fuzz/{kind}/{name}: no fuzz target of that name");
                };
                for file in std::fs::read_dir(dir.path()).expect("readable").flatten() {
                    let data = std::fs::read(file.path()).expect("readable");
                    entry(&data);
                    *seeds.entry(target).or_default() += 1;
                }
            }
        }
        for (target, _) in TARGETS {
            assert!(
                seeds.get(target).is_some_and(|&n| n > 0),
                "no seed for {target}"
            );
        }
    }
}
