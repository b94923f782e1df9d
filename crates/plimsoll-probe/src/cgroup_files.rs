//! Parsers for the cgroup memory files: one number, `max`, or `key value` lines. No
//! well-kept crate covers them well, and they are small enough to parse here. Pure functions
//! over text, so they are tested on fixtures on any platform.

use crate::error::ParseError;

/// v1 reports "no limit" as the largest page-aligned counter value (9223372036854771712 on
/// 64-bit kernels, other values elsewhere). Any limit at or above 2^60 bytes (1 EiB) is no
/// limit a real machine could enforce, so it is taken as "unlimited".
const V1_UNLIMITED_AT: u64 = 1 << 60;

/// A file holding one non-negative integer (`memory.current`, `memory.usage_in_bytes`).
pub(crate) fn parse_number(text: &str) -> Result<u64, ParseError> {
    let value = text.trim();
    if value.is_empty() {
        return Err(ParseError::Empty);
    }
    value
        .parse::<u64>()
        .map_err(|_| ParseError::NotANumber(value.to_owned()))
}

/// v2 `memory.max`: a number of bytes, or `max` for none (`None`).
pub(crate) fn parse_v2_limit(text: &str) -> Result<Option<u64>, ParseError> {
    if text.trim() == "max" {
        return Ok(None);
    }
    parse_number(text).map(Some)
}

/// v1 `memory.limit_in_bytes`: a number of bytes; the huge "unlimited" value is `None`.
pub(crate) fn parse_v1_limit(text: &str) -> Result<Option<u64>, ParseError> {
    let limit = parse_number(text)?;
    Ok((limit < V1_UNLIMITED_AT).then_some(limit))
}

/// The counters of v2 `memory.events` that Plimsoll uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryEvents {
    /// `oom`: times the limit was hit and the OOM killer invoked; `None` on kernels before 4.13.
    pub(crate) oom: Option<u64>,
    /// `oom_kill`: processes the OOM killer killed; `None` on kernels before 4.13.
    pub(crate) oom_kill: Option<u64>,
}

/// v2 `memory.events`: `low 0`, `high 0`, `max 0`, `oom 0`, `oom_kill 0`, … one per line.
/// Keys this kernel does not have are `None`; a malformed line or value is an error.
pub(crate) fn parse_memory_events(text: &str) -> Result<MemoryEvents, ParseError> {
    Ok(MemoryEvents {
        oom: keyed_value(text, "oom")?,
        oom_kill: keyed_value(text, "oom_kill")?,
    })
}

/// v1 `memory.oom_control`: `oom_kill_disable 0`, `under_oom 0`, `oom_kill 0` (the last since
/// 4.13, so it may be missing: `None`). `under_oom` is always there and checks the format.
pub(crate) fn parse_oom_control(text: &str) -> Result<Option<u64>, ParseError> {
    if keyed_value(text, "under_oom")?.is_none() {
        return Err(ParseError::MissingKey("under_oom"));
    }
    keyed_value(text, "oom_kill")
}

/// The value of `key` in a file of `key value` lines; `None` when the key is absent. Every
/// line must have exactly a key and a value, so that a file in an unexpected format is an
/// error rather than a silent `None`.
fn keyed_value(text: &str, key: &str) -> Result<Option<u64>, ParseError> {
    let mut found = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(name), Some(value), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(ParseError::MalformedLine(line.to_owned()));
        };
        if name == key {
            let number = value
                .parse::<u64>()
                .map_err(|_| ParseError::NotANumber(value.to_owned()))?;
            found = Some(number);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_with_their_newline() {
        assert_eq!(parse_number("580235264\n"), Ok(580_235_264));
        assert_eq!(parse_number("0"), Ok(0));
    }

    #[test]
    fn bad_numbers_are_quoted() {
        assert_eq!(parse_number(""), Err(ParseError::Empty));
        assert_eq!(parse_number(" \n"), Err(ParseError::Empty));
        assert_eq!(
            parse_number("12k\n"),
            Err(ParseError::NotANumber("12k".into()))
        );
        assert_eq!(parse_number("-1"), Err(ParseError::NotANumber("-1".into())));
        assert_eq!(
            parse_number("1 2"),
            Err(ParseError::NotANumber("1 2".into()))
        );
        let too_big = "18446744073709551616";
        assert_eq!(
            parse_number(too_big),
            Err(ParseError::NotANumber(too_big.into()))
        );
        assert_eq!(
            ParseError::NotANumber("12k".into()).to_string(),
            "'12k' is not a number"
        );
    }

    #[test]
    fn v2_max_means_no_limit() {
        assert_eq!(parse_v2_limit("max\n"), Ok(None));
        assert_eq!(parse_v2_limit("536870912\n"), Ok(Some(536_870_912)));
        assert_eq!(
            parse_v2_limit("Max\n"),
            Err(ParseError::NotANumber("Max".into()))
        );
        assert_eq!(
            parse_v2_limit("maximum"),
            Err(ParseError::NotANumber("maximum".into()))
        );
        assert_eq!(parse_v2_limit(""), Err(ParseError::Empty));
    }

    #[test]
    fn v1_huge_limit_means_no_limit() {
        assert_eq!(parse_v1_limit("9223372036854771712\n"), Ok(None));
        assert_eq!(parse_v1_limit("18446744073709551615\n"), Ok(None));
        assert_eq!(parse_v1_limit("1073741824\n"), Ok(Some(1 << 30)));
        assert_eq!(
            parse_v1_limit("max"),
            Err(ParseError::NotANumber("max".into()))
        );
        assert_eq!(parse_v1_limit(""), Err(ParseError::Empty));
    }

    #[test]
    fn memory_events_counts_oom_and_oom_kill() {
        let text = "low 0\nhigh 12\nmax 40\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(
            parse_memory_events(text),
            Ok(MemoryEvents {
                oom: Some(3),
                oom_kill: Some(2)
            })
        );
    }

    #[test]
    fn memory_events_of_old_kernels_lack_keys() {
        assert_eq!(
            parse_memory_events("low 0\nhigh 0\nmax 0\n"),
            Ok(MemoryEvents {
                oom: None,
                oom_kill: None
            })
        );
        assert_eq!(
            parse_memory_events(""),
            Ok(MemoryEvents {
                oom: None,
                oom_kill: None
            })
        );
    }

    #[test]
    fn memory_events_reject_bad_lines() {
        assert_eq!(
            parse_memory_events("low 0\noom x\n"),
            Err(ParseError::NotANumber("x".into()))
        );
        assert_eq!(
            parse_memory_events("oom_kill -1\n"),
            Err(ParseError::NotANumber("-1".into()))
        );
        assert_eq!(
            parse_memory_events("low 0\noom\n"),
            Err(ParseError::MalformedLine("oom".into()))
        );
        assert_eq!(
            parse_memory_events("oom 1 2\n"),
            Err(ParseError::MalformedLine("oom 1 2".into()))
        );
        assert_eq!(
            parse_memory_events("max\n"),
            Err(ParseError::MalformedLine("max".into()))
        );
    }

    #[test]
    fn oom_control_gives_oom_kill() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(parse_oom_control(text), Ok(Some(7)));
        assert_eq!(
            parse_oom_control("oom_kill_disable 0\nunder_oom 1\n"),
            Ok(None)
        );
    }

    #[test]
    fn oom_control_rejects_bad_input() {
        assert_eq!(
            parse_oom_control(""),
            Err(ParseError::MissingKey("under_oom"))
        );
        assert_eq!(
            parse_oom_control("oom_kill 3\n"),
            Err(ParseError::MissingKey("under_oom"))
        );
        assert_eq!(
            parse_oom_control("under_oom 0\noom_kill many\n"),
            Err(ParseError::NotANumber("many".into()))
        );
        assert_eq!(
            parse_oom_control("under_oom\n"),
            Err(ParseError::MalformedLine("under_oom".into()))
        );
    }
}
