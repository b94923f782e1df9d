//! Sizes and durations as users type them (`512MiB`, `1.5G`, `30s`), parsed strictly so that a
//! misread unit is an error naming the value, never a silent surprise.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::bounded::excerpt;

/// A number of bytes typed by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ByteSize(pub(crate) u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_size(text).map(ByteSize)
    }
}

impl fmt::Display for ByteSize {
    /// Shows the exact byte count with a binary-unit reading, e.g. `536870912 bytes (512.0 MiB)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes ({})", self.0, human_bytes(self.0 as f64))
    }
}

/// Parses `512M`, `512MiB`, `1.5G`, `100KB`, `1073741824`. K, M, G, T and KiB, MiB, GiB, TiB
/// are powers of 1024; KB, MB, GB, TB are powers of 1000; a bare number is bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size '{}' (expected e.g. 512MiB, 1.5G or 1073741824)",
            excerpt(text)
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    let multiplier: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "K" | "k" | "KiB" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return Err(bad()),
    };
    if multiplier == 1.0 {
        return number.parse::<u64>().map_err(|_| bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = (value * multiplier).round();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("size '{text}' is too large"));
    }
    Ok(bytes as u64)
}

/// Parses `500ms`, `30s`, `5m`, `1h` (a number with a unit; fractions allowed, e.g. `1.5h`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration '{}' (expected e.g. 500ms, 30s, 5m or 1h)",
            excerpt(text)
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration '{text}' is too large"))
}

/// A byte count for people: `1.5 GiB`, `312.0 MiB`, `900 B`.
pub(crate) fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let sign = if bytes < 0.0 { "-" } else { "" };
    let mut value = bytes.abs();
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{sign}{value:.0} {}", UNITS[unit])
    } else {
        format!("{sign}{value:.1} {}", UNITS[unit])
    }
}

/// A duration in seconds for people: `45s`, `12m 30s`, `3h 05m`.
pub(crate) fn human_seconds(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    match total {
        0..=59 => format!("{total}s"),
        60..=3599 => format!("{}m {:02}s", total / 60, total % 60),
        _ => format!("{}h {:02}m", total / 3600, (total % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_follow_the_documented_units() {
        let cases = [
            ("1073741824", 1_073_741_824),
            ("512M", 512 << 20),
            ("512MiB", 512 << 20),
            ("1.5G", 3 << 29),
            ("2GiB", 2 << 30),
            ("100KB", 100_000),
            ("1MB", 1_000_000),
            ("1GB", 1_000_000_000),
            ("4K", 4096),
            ("0", 0),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_size(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_sizes_name_the_value() {
        for text in [
            "",
            "12QB",
            "M",
            "1.2.3M",
            "-5M",
            ".5G",
            "5.G",
            "1e9",
            "12 parsecs",
        ] {
            let error = parse_size(text).expect_err(text);
            assert!(error.contains(&format!("'{text}'")), "{error}");
        }
        // A fraction of a byte is not a size.
        assert!(parse_size("1.5").is_err());
    }

    #[test]
    fn durations_follow_the_documented_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for text in ["", "30", "s", "5 parsecs", "-1s", "1.s", "1e999h"] {
            let error = parse_duration(text).expect_err(text);
            assert!(error.contains(&format!("'{text}'")), "{error}");
        }
    }

    #[test]
    fn humans_read_binary_units() {
        assert_eq!(human_bytes(900.0), "900 B");
        assert_eq!(human_bytes((512u64 << 20) as f64), "512.0 MiB");
        assert_eq!(human_seconds(750.0), "12m 30s");
        assert_eq!(human_seconds(11_100.0), "3h 05m");
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errors_without_panic(text in "\\PC{0,12}") {
            let _ = parse_size(&text);
            let _ = parse_duration(&text);
        }

        #[test]
        fn whole_units_round_trip(n in 0u64..1_000_000, unit in 0usize..4) {
            let (suffix, scale) = [("K", 1u64 << 10), ("MiB", 1 << 20), ("G", 1 << 30), ("", 1)][unit];
            prop_assert_eq!(parse_size(&format!("{n}{suffix}")), Ok(n * scale));
        }
    }
}
