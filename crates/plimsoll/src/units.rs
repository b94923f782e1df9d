//! Sizes and durations as users type them (`512MiB`, `1.5G`, `30s`), parsed strictly so that a
//! misread unit is an error naming the value, never a silent surprise; and the maxima each kind
//! of duration is held to (a 100-year grace would leave a process nobody can stop in time).

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

/// The largest size: 1 EiB (2^60 bytes), far above any memory, and safe in the signed and
/// floating-point arithmetic sizes go through.
pub(crate) const MAX_SIZE: u64 = 1 << 60;

/// Parses `512M`, `512MiB`, `1.5G`, `100KB`, `1073741824`. K, M, G, T and KiB, MiB, GiB, TiB
/// are powers of 1024; KB, MB, GB, TB are powers of 1000; a bare number is bytes. At most
/// [`MAX_SIZE`].
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
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let too_large = || {
        format!(
            "size '{}' is too large (at most 1 EiB, {MAX_SIZE} bytes)",
            excerpt(text)
        )
    };
    let bytes = if number.contains('.') {
        if multiplier == 1 {
            // A fraction of a byte is not a size.
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        let bytes = (value * multiplier as f64).round();
        // Compared as floats before the cast, which would saturate.
        if !bytes.is_finite() || bytes > MAX_SIZE as f64 {
            return Err(too_large());
        }
        bytes as u64
    } else {
        // Whole numbers exactly: a digit string too long for u64 is too large, not malformed.
        let value: u64 = number.parse().map_err(|_| too_large())?;
        value.checked_mul(multiplier).ok_or_else(too_large)?
    };
    if bytes > MAX_SIZE {
        return Err(too_large());
    }
    Ok(bytes)
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
    let too_large = || {
        format!(
            "duration '{}' is too large (at most {})",
            excerpt(text),
            duration_text(MAX_DURATION)
        )
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if duration <= MAX_DURATION => Ok(duration),
        _ => Err(too_large()),
    }
}

/// The longest duration of any kind: a year (a longer one is a typo, and it would overflow the
/// clock arithmetic it goes into).
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest grace between SIGTERM and SIGKILL.
pub(crate) const MAX_GRACE: Duration = Duration::from_secs(10 * 60);
/// The shortest and the longest time between two samples.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(100);
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// The longest warm-up, restart window or report span.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The longest soak.
pub(crate) const MAX_SOAK: Duration = Duration::from_secs(7 * 24 * 3600);

/// [`parse_duration`] held to `min..=max`; the error names the value and the bound.
pub(crate) fn parse_duration_within(
    text: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration > max {
        return Err(format!(
            "duration '{}' is above the maximum of {}",
            excerpt(text),
            duration_text(max)
        ));
    }
    if duration < min {
        return Err(format!(
            "duration '{}' is below the minimum of {}",
            excerpt(text),
            duration_text(min)
        ));
    }
    Ok(duration)
}

/// `--grace`, `grace`: at most 10m.
pub(crate) fn parse_grace(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, Duration::ZERO, MAX_GRACE)
}

/// `--interval`, `interval`: 100ms to 10m.
pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, MIN_INTERVAL, MAX_INTERVAL)
}

/// `--warmup`, `--restart-window`, `report --last` and their keys: at most 24h.
pub(crate) fn parse_window(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, Duration::ZERO, MAX_WINDOW)
}

/// `soak --duration`: at most 7 days.
pub(crate) fn parse_soak_duration(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, Duration::ZERO, MAX_SOAK)
}

/// A duration the way users type it: `500ms`, `30s`, `10m`, `24h`.
fn duration_text(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        _ if ms.is_multiple_of(3_600_000) && ms > 0 => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) && ms > 0 => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
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
    fn sizes_that_overflow_are_refused_not_saturated() {
        for text in [
            "17179869184G",
            "99999999999999999999G",
            "18446744073709551616",
            "16777216TB",
            "1.5e3T",
            &format!("{}", (1u64 << 60) + 1),
            "1048577T",
        ] {
            let error = parse_size(text).expect_err(text);
            assert!(
                error.contains("too large") || error.contains("invalid size"),
                "{text}: {error}"
            );
        }
        assert!(parse_size("17179869184G")
            .expect_err("2^64")
            .contains("too large"));
        assert_eq!(parse_size("1048576T"), Ok(1 << 60));
        assert_eq!(parse_size("0.5K"), Ok(512));
    }

    #[test]
    fn durations_are_held_to_their_maxima() {
        let error = parse_grace("99999999999h").expect_err("huge grace");
        assert!(error.contains("'99999999999h'"), "{error}");
        assert!(error.contains("too large (at most 8784h)"), "{error}");
        let error = parse_grace("11m").expect_err("long grace");
        assert_eq!(error, "duration '11m' is above the maximum of 10m");
        assert_eq!(parse_grace("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_grace("0s"), Ok(Duration::ZERO));
        let error = parse_interval("0s").expect_err("zero interval");
        assert_eq!(error, "duration '0s' is below the minimum of 100ms");
        assert!(parse_interval("11m").is_err());
        assert!(parse_window("25h").is_err());
        assert_eq!(parse_window("24h"), Ok(MAX_WINDOW));
        assert!(parse_soak_duration("8d").is_err());
        assert!(parse_soak_duration("169h").is_err());
        assert_eq!(parse_soak_duration("168h"), Ok(MAX_SOAK));
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
