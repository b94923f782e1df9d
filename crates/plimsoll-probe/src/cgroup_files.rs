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

/// The figures of `memory.stat` that a cgroup target needs, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MemoryStat {
    pub(crate) anon: u64,
    /// File cache, shared memory included (as both versions count it).
    pub(crate) file: u64,
    pub(crate) shmem: u64,
    pub(crate) inactive_file: u64,
    /// v1 `hierarchical_memory_limit`: the smallest limit of the cgroup and its ancestors;
    /// `None` in v2 (which has no such key) or when unlimited.
    pub(crate) hierarchical_limit: Option<u64>,
}

/// v2 `memory.stat`: `anon`, `file`, `shmem`, `inactive_file` (one pass over its ~40 lines).
pub(crate) fn parse_memory_stat_v2(text: &str) -> Result<MemoryStat, ParseError> {
    let mut stat = MemoryStat::default();
    let mut seen = 0;
    for_each_key(text, |key, value| {
        let slot = match key {
            "anon" => &mut stat.anon,
            "file" => &mut stat.file,
            "shmem" => &mut stat.shmem,
            "inactive_file" => &mut stat.inactive_file,
            _ => return Ok(()),
        };
        *slot = number(value)?;
        seen += 1;
        Ok(())
    })?;
    if seen < 4 {
        return Err(ParseError::MissingKey("anon, file, shmem, inactive_file"));
    }
    Ok(stat)
}

/// v1 `memory.stat`: the hierarchical `total_*` figures and `hierarchical_memory_limit`.
pub(crate) fn parse_memory_stat_v1(text: &str) -> Result<MemoryStat, ParseError> {
    let mut stat = MemoryStat::default();
    let mut seen = 0;
    for_each_key(text, |key, value| {
        let slot = match key {
            "total_rss" => &mut stat.anon,
            "total_cache" => &mut stat.file,
            "total_shmem" => &mut stat.shmem,
            "total_inactive_file" => &mut stat.inactive_file,
            "hierarchical_memory_limit" => {
                let limit = number(value)?;
                stat.hierarchical_limit = (limit < V1_UNLIMITED_AT).then_some(limit);
                return Ok(());
            }
            _ => return Ok(()),
        };
        *slot = number(value)?;
        seen += 1;
        Ok(())
    })?;
    if seen < 4 {
        return Err(ParseError::MissingKey(
            "total_rss, total_cache, total_shmem, total_inactive_file",
        ));
    }
    Ok(stat)
}

fn number(value: &str) -> Result<u64, ParseError> {
    value
        .parse::<u64>()
        .map_err(|_| ParseError::NotANumber(value.to_owned()))
}

/// Calls `each` with every `key value` line of `text`; a line of another shape is an error.
fn for_each_key(
    text: &str,
    mut each: impl FnMut(&str, &str) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(name), Some(value), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(ParseError::MalformedLine(line.to_owned()));
        };
        each(name, value)?;
    }
    Ok(())
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

    #[test]
    fn memory_stat_v2_gives_the_split() {
        let text = "anon 1000\nfile 600\nkernel 5\nshmem 100\nactive_file 200\ninactive_file 300\n";
        assert_eq!(
            parse_memory_stat_v2(text),
            Ok(MemoryStat {
                anon: 1000,
                file: 600,
                shmem: 100,
                inactive_file: 300,
                hierarchical_limit: None
            })
        );
        assert!(parse_memory_stat_v2("anon 1\n").is_err());
        assert_eq!(
            parse_memory_stat_v2("anon x\nfile 1\nshmem 1\ninactive_file 1\n"),
            Err(ParseError::NotANumber("x".into()))
        );
    }

    #[test]
    fn memory_stat_v1_reads_the_hierarchical_totals() {
        let text = "cache 1\nrss 2\ntotal_cache 600\ntotal_rss 1000\ntotal_shmem 100\n\
                    total_inactive_file 300\nhierarchical_memory_limit 67108864\n";
        let stat = parse_memory_stat_v1(text).expect("parses");
        assert_eq!((stat.anon, stat.file, stat.shmem), (1000, 600, 100));
        assert_eq!(stat.inactive_file, 300);
        assert_eq!(stat.hierarchical_limit, Some(64 << 20));
        let unlimited = text.replace("67108864", "9223372036854771712");
        assert_eq!(
            parse_memory_stat_v1(&unlimited)
                .expect("parses")
                .hierarchical_limit,
            None
        );
        assert_eq!(
            parse_memory_stat_v1("total_rss 1 2\n"),
            Err(ParseError::MalformedLine("total_rss 1 2".into()))
        );
        assert!(parse_memory_stat_v1("cache 1\n").is_err());
    }
}
