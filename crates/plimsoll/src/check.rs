//! `plimsoll check PID`: a one-shot breakdown of a process tree's memory, its cgroup and the
//! memory pressure it is under, for a person (a tree table with totals) or a script
//! (`--json`, one object).

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use anyhow::Result;
use plimsoll_probe::{
    Bytes, CgroupMemory, CgroupVersion, Detail, Pid, Probe, ProbeError, ProcessMemory, Psi,
    PsiScope, Sample, SampleDepth,
};
use serde_json::json;

use crate::cli::CheckArgs;
use crate::exit;
use crate::stdout::{out, outln};

pub(crate) fn run(args: &CheckArgs) -> Result<u8> {
    let pid = Pid(args.pid);
    let sample = Probe::new(pid)
        .and_then(|mut probe| probe.sample(SampleDepth::Full))
        .map_err(|error| match error {
            // Already names the pid: `no process with pid 999999`.
            ProbeError::ProcessGone(_) => anyhow::Error::new(error),
            error => anyhow::Error::new(error).context(format!("cannot check pid {pid}")),
        })?;
    // Whether a plimsoll keeper contains it, and how (`cgroup-v2`, …; null: none).
    let containment = crate::supervise::containment_of(args.pid).map(|c| c.as_str());
    if args.json {
        let mut value = sample_json(&sample);
        value["containment"] = json!(containment);
        outln!("{value}")?;
    } else {
        out!("{}", human(&sample))?;
        outln!(
            "containment: {}",
            containment.unwrap_or("none (not started by plimsoll run, up or soak)")
        )?;
    }
    Ok(exit::OK)
}

/// A sample as one JSON object: byte fields end in `_bytes` (the names of the series CSV
/// columns), absent figures are `null`.
pub(crate) fn sample_json(sample: &Sample) -> serde_json::Value {
    let processes: Vec<serde_json::Value> = sample.processes.iter().map(process_json).collect();
    let unreadable = match sample.detail {
        Detail::SmapsRollupUnreadable { unreadable } => unreadable,
        Detail::SmapsRollup | Detail::StatusOnly => 0,
    };
    json!({
        "pid": sample.root.0,
        "t_unix_s": sample
            .taken_at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64()),
        "process_count": sample.processes.len(),
        "rss_bytes": sample.rss.0,
        "pss_bytes": sample.pss.map(|b| b.0),
        "uss_bytes": sample.uss.map(|b| b.0),
        "swap_bytes": sample.swap.0,
        "anon_bytes": sample.anon.0,
        "file_bytes": sample.file.0,
        "shmem_bytes": sample.shmem.0,
        "detail": detail_name(sample.detail),
        "smaps_rollup_unreadable": unreadable,
        "processes": processes,
        "cgroup": sample.cgroup.as_ref().map(cgroup_json),
        "psi": sample.psi.as_ref().map(psi_json),
    })
}

fn process_json(process: &ProcessMemory) -> serde_json::Value {
    json!({
        "pid": process.pid.0,
        "ppid": process.ppid.0,
        "depth": process.depth,
        "name": process.name,
        "rss_bytes": process.rss.0,
        "pss_bytes": process.pss.map(|b| b.0),
        "uss_bytes": process.uss.map(|b| b.0),
        "swap_bytes": process.swap.0,
        "anon_bytes": process.anon.0,
        "file_bytes": process.file.0,
        "shmem_bytes": process.shmem.0,
    })
}

fn cgroup_json(cgroup: &CgroupMemory) -> serde_json::Value {
    json!({
        "version": match cgroup.version {
            CgroupVersion::V1 => 1,
            CgroupVersion::V2 => 2,
        },
        "path": cgroup.path,
        "dir": cgroup.dir.display().to_string(),
        "usage_bytes": cgroup.usage.0,
        "limit_bytes": cgroup.limit.map(|b| b.0),
        "oom": cgroup.oom,
        "oom_kill": cgroup.oom_kill,
    })
}

fn psi_json(psi: &Psi) -> serde_json::Value {
    json!({
        "scope": match psi.scope {
            PsiScope::Cgroup => "cgroup",
            PsiScope::System => "system",
        },
        "some_avg10": psi.some_avg10,
        "full_avg10": psi.full_avg10,
    })
}

fn detail_name(detail: Detail) -> &'static str {
    match detail {
        Detail::SmapsRollup => "smaps_rollup",
        Detail::StatusOnly => "status_only",
        Detail::SmapsRollupUnreadable { .. } => "smaps_rollup_unreadable",
    }
}

/// The breakdown for people: the tree as an aligned table, then totals, cgroup and PSI.
fn human(sample: &Sample) -> String {
    const HEADERS: [&str; 6] = ["PID", "NAME", "RSS", "PSS", "USS", "SWAP"];
    let optional = |bytes: Option<Bytes>| bytes.map_or_else(|| "-".to_owned(), |b| b.to_string());
    let rows: Vec<[String; 6]> = sample
        .processes
        .iter()
        .map(|process| {
            let indent = "  ".repeat(usize::try_from(process.depth).unwrap_or(0));
            [
                process.pid.to_string(),
                format!("{indent}{}", process.name),
                process.rss.to_string(),
                optional(process.pss),
                optional(process.uss),
                process.swap.to_string(),
            ]
        })
        .collect();
    let count = sample.processes.len();
    let total = [
        String::new(),
        format!(
            "total ({count} process{})",
            if count == 1 { "" } else { "es" }
        ),
        sample.rss.to_string(),
        optional(sample.pss),
        optional(sample.uss),
        sample.swap.to_string(),
    ];
    let mut widths = HEADERS.map(str::len);
    for row in rows.iter().chain([&total]) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &widths, HEADERS);
    for row in &rows {
        push_row(&mut out, &widths, row.each_ref().map(String::as_str));
    }
    let rule_width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(rule_width));
    out.push('\n');
    push_row(&mut out, &widths, total.each_ref().map(String::as_str));
    let _ = writeln!(
        out,
        "\nresident: anon {}, file {}, shmem {}",
        sample.anon, sample.file, sample.shmem
    );
    if let Detail::SmapsRollupUnreadable { unreadable } = sample.detail {
        let _ = writeln!(
            out,
            "pss/uss: smaps_rollup unreadable for {unreadable} process{} (another user's? run \
             as that user or root); totals left out",
            if unreadable == 1 { "" } else { "es" }
        );
    }
    out.push_str(&cgroup_line(sample.cgroup.as_ref()));
    out.push_str(&psi_line(sample.psi.as_ref()));
    out
}

/// `cgroup v2 /app.slice/web.service: usage 512.0 MiB, limit 1.0 GiB (50 % used), …`
fn cgroup_line(cgroup: Option<&CgroupMemory>) -> String {
    let Some(cgroup) = cgroup else {
        return "cgroup: none with a readable memory controller\n".to_owned();
    };
    let version = match cgroup.version {
        CgroupVersion::V1 => "v1",
        CgroupVersion::V2 => "v2",
    };
    let limit = match cgroup.limit {
        Some(limit) if limit.0 > 0 => format!(
            "{limit} ({:.0} % used)",
            cgroup.usage.0 as f64 * 100.0 / limit.0 as f64
        ),
        Some(limit) => limit.to_string(),
        None => "none".to_owned(),
    };
    let mut line = format!(
        "cgroup {version} {}: usage {}, limit {limit}",
        cgroup.path, cgroup.usage
    );
    if let Some(oom) = cgroup.oom {
        let _ = write!(line, ", oom events {oom}");
    }
    if let Some(oom_kill) = cgroup.oom_kill {
        let _ = write!(line, ", oom kills {oom_kill}");
    }
    line.push('\n');
    line
}

/// `memory pressure (cgroup, last 10 s): some 1.50 %, full 0.25 %`
fn psi_line(psi: Option<&Psi>) -> String {
    let Some(psi) = psi else {
        return "memory pressure: not reported by this kernel\n".to_owned();
    };
    let scope = match psi.scope {
        PsiScope::Cgroup => "cgroup",
        PsiScope::System => "system",
    };
    format!(
        "memory pressure ({scope}, last 10 s): some {:.2} %, full {:.2} %\n",
        psi.some_avg10, psi.full_avg10
    )
}

/// One table row: pid right-aligned, name left-aligned, sizes right-aligned.
fn push_row(out: &mut String, widths: &[usize; 6], cells: [&str; 6]) {
    let [pid, name, sizes @ ..] = cells;
    let _ = write!(
        out,
        "{pid:>w0$}  {name:<w1$}",
        w0 = widths[0],
        w1 = widths[1]
    );
    for (cell, width) in sizes.iter().zip(&widths[2..]) {
        let _ = write!(out, "  {cell:>width$}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn process(pid: u32, ppid: u32, depth: u32, name: &str, mib: u64) -> ProcessMemory {
        ProcessMemory {
            pid: Pid(pid),
            ppid: Pid(ppid),
            depth,
            name: name.to_owned(),
            rss: Bytes(mib << 20),
            pss: Some(Bytes(mib << 19)),
            uss: Some(Bytes(mib << 18)),
            swap: Bytes::ZERO,
            anon: Bytes(mib << 19),
            file: Bytes(mib << 19),
            shmem: Bytes::ZERO,
        }
    }

    fn sample() -> Sample {
        Sample {
            root: Pid(100),
            taken_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            processes: vec![
                process(100, 1, 0, "node", 300),
                process(120, 100, 1, "worker", 100),
                process(130, 120, 2, "sh", 4),
            ],
            rss: Bytes(404 << 20),
            pss: Some(Bytes(202 << 20)),
            uss: Some(Bytes(101 << 20)),
            swap: Bytes::ZERO,
            anon: Bytes(202 << 20),
            file: Bytes(202 << 20),
            shmem: Bytes::ZERO,
            detail: Detail::SmapsRollup,
            cgroup: Some(CgroupMemory {
                version: CgroupVersion::V2,
                path: "/app.slice/web.service".to_owned(),
                dir: PathBuf::from("/sys/fs/cgroup/app.slice/web.service"),
                usage: Bytes(512 << 20),
                limit: Some(Bytes(1 << 30)),
                oom: Some(2),
                oom_kill: Some(1),
            }),
            psi: Some(Psi {
                scope: PsiScope::Cgroup,
                some_avg10: 1.5,
                full_avg10: 0.25,
            }),
        }
    }

    #[test]
    fn human_output_draws_the_tree_and_the_totals() {
        let text = human(&sample());
        let expected = "\
PID  NAME                       RSS        PSS        USS  SWAP
100  node                 300.0 MiB  150.0 MiB   75.0 MiB   0 B
120    worker             100.0 MiB   50.0 MiB   25.0 MiB   0 B
130      sh                 4.0 MiB    2.0 MiB    1.0 MiB   0 B
---------------------------------------------------------------
     total (3 processes)  404.0 MiB  202.0 MiB  101.0 MiB   0 B

resident: anon 202.0 MiB, file 202.0 MiB, shmem 0 B
cgroup v2 /app.slice/web.service: usage 512.0 MiB, limit 1.0 GiB (50 % used), oom events 2, oom kills 1
memory pressure (cgroup, last 10 s): some 1.50 %, full 0.25 %
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn human_output_says_what_is_missing() {
        let mut sample = sample();
        sample.detail = Detail::SmapsRollupUnreadable { unreadable: 2 };
        sample.pss = None;
        sample.uss = None;
        sample.processes[1].pss = None;
        sample.processes[1].uss = None;
        sample.cgroup = None;
        sample.psi = None;
        let text = human(&sample);
        let words = |start: &str| -> Vec<String> {
            let line = text
                .lines()
                .find(|line| line.trim_start().starts_with(start));
            line.expect(start)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            words("120"),
            ["120", "worker", "100.0", "MiB", "-", "-", "0", "B"]
        );
        assert_eq!(words("total")[3..], ["404.0", "MiB", "-", "-", "0", "B"]);
        assert!(
            text.contains("smaps_rollup unreadable for 2 processes"),
            "{text}"
        );
        assert!(text.contains("cgroup: none"), "{text}");
        assert!(text.contains("memory pressure: not reported"), "{text}");
    }

    #[test]
    fn json_names_bytes_with_a_suffix_and_nulls_what_is_missing() {
        let value = sample_json(&sample());
        assert_eq!(value["pid"], 100);
        assert_eq!(value["t_unix_s"], 1_700_000_000.0);
        assert_eq!(value["process_count"], 3);
        assert_eq!(value["rss_bytes"], 404u64 << 20);
        assert_eq!(value["pss_bytes"], 202u64 << 20);
        assert_eq!(value["uss_bytes"], 101u64 << 20);
        for field in ["swap_bytes", "shmem_bytes"] {
            assert_eq!(value[field], 0, "{field}");
        }
        assert_eq!(value["detail"], "smaps_rollup");
        assert_eq!(value["processes"][2]["name"], "sh");
        assert_eq!(value["processes"][2]["ppid"], 120);
        assert_eq!(value["processes"][2]["depth"], 2);
        assert_eq!(value["cgroup"]["version"], 2);
        assert_eq!(value["cgroup"]["limit_bytes"], 1u64 << 30);
        assert_eq!(value["cgroup"]["oom_kill"], 1);
        assert_eq!(value["psi"]["scope"], "cgroup");
        assert_eq!(value["psi"]["some_avg10"], 1.5);

        let mut bare = sample();
        bare.detail = Detail::StatusOnly;
        bare.pss = None;
        bare.uss = None;
        bare.cgroup = None;
        bare.psi = None;
        let value = sample_json(&bare);
        assert!(value["pss_bytes"].is_null() && value["uss_bytes"].is_null());
        assert!(value["cgroup"].is_null() && value["psi"].is_null());
        assert_eq!(value["detail"], "status_only");
    }
}
