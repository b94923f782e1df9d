//! Integration tests of `plimsoll_guard::alloc` in a binary whose global allocator is jemalloc,
//! as a service's would be (the library's own unit tests run on the system allocator).
//!
//! jemalloc's profiler can only be switched on when the process starts, so the pprof tests
//! re-execute this binary with [`CHILD_ENV`] set and `_RJEM_MALLOC_CONF` set or removed: the
//! `pprof_child` test then takes a profile and writes what it got to a file; without the
//! variable it returns at once.
#![cfg(feature = "jemalloc")]

use plimsoll_guard::alloc::{in_use, purge, stats};
use plimsoll_probe::Bytes;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MIB: u64 = 1024 * 1024;

#[test]
fn in_use_sees_jemalloc_as_the_global_allocator() {
    assert!(in_use());
}

#[test]
fn stats_follow_64_mib_and_purge_returns_it_to_the_os() {
    // 64 KiB chunks: above jemalloc's thread cache and below its oversize threshold (8 MiB), so
    // freed pages stay in the arena as dirty pages until decay or a purge. One 64 MiB block
    // would go to the huge arena, which returns it to the OS at once.
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 1024;
    let before = stats().expect("stats before");

    let chunks: Vec<Vec<u8>> = (0..CHUNKS).map(|i| vec![i as u8 | 1; CHUNK]).collect();
    let held = stats().expect("stats while held");
    let grown = held
        .allocated_bytes
        .0
        .saturating_sub(before.allocated_bytes.0);
    assert!(
        grown >= 60 * MIB,
        "allocated grew by {} only: {before:?} → {held:?}",
        Bytes(grown)
    );
    assert!(held.allocated_bytes <= held.active_bytes, "{held:?}");
    assert!(held.active_bytes <= held.resident_bytes, "{held:?}");
    assert!(held.resident_bytes >= Bytes(64 * MIB), "{held:?}");

    drop(std::hint::black_box(chunks));
    let freed = stats().expect("stats after free");
    assert!(
        freed.allocated_bytes.0 + 60 * MIB <= held.allocated_bytes.0,
        "allocated did not fall: {held:?} → {freed:?}"
    );

    let report = purge().expect("purge");
    // What is reliable: the freed 64 MiB were still resident as dirty pages (jemalloc's decay
    // takes 10 s) and the purge returns most of them. Allow for pages that decayed between the
    // free and the purge, and for the test harness' own allocations.
    assert!(
        report.resident_after.0 + 32 * MIB <= report.resident_before.0,
        "resident did not fall by 32 MiB: {report:?}"
    );
    assert!(
        report.resident_after.0 + 32 * MIB <= held.resident_bytes.0,
        "resident after the purge {} vs {} while held",
        report.resident_after,
        held.resident_bytes
    );
}

#[test]
fn purge_with_nothing_to_return_succeeds() {
    purge().expect("first purge");
    let report = purge().expect("second purge");
    assert!(
        report.resident_after <= Bytes(report.resident_before.0 + MIB),
        "{report:?}"
    );
}

#[cfg(feature = "pprof")]
mod pprof {
    use std::path::Path;
    use std::process::Command;

    use plimsoll_guard::alloc::{heap_profile_pprof, AllocError, PROFILING_CONF};

    /// Where the re-executed binary writes its result; its presence makes `pprof_child` act.
    const CHILD_ENV: &str = "PLIMSOLL_GUARD_TEST_PPROF_OUT";

    /// The child's side: a profile on success, `error: MESSAGE` otherwise.
    #[tokio::test]
    async fn pprof_child() {
        let Some(out) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        // Something live and large enough to be sampled at one sample per 512 KiB.
        let held: Vec<Vec<u8>> = (0..64).map(|_| vec![7_u8; 256 * 1024]).collect();
        let result = heap_profile_pprof().await;
        drop(std::hint::black_box(held));
        let bytes = match result {
            Ok(profile) => profile,
            Err(error) => format!("error: {error}").into_bytes(),
        };
        std::fs::write(out, bytes).expect("child writes its result");
    }

    /// Runs `pprof_child` in a new process with `_RJEM_MALLOC_CONF` set to `conf` (or
    /// removed), and returns what it wrote.
    fn run_child(dir: &Path, conf: Option<&str>) -> Vec<u8> {
        let out = dir.join("result");
        let mut command = Command::new(std::env::current_exe().expect("test binary path"));
        command
            .args(["--exact", "pprof::pprof_child", "--nocapture"])
            .env(CHILD_ENV, &out)
            .env_remove("_RJEM_MALLOC_CONF");
        if let Some(conf) = conf {
            command.env("_RJEM_MALLOC_CONF", conf);
        }
        let output = command.output().expect("run the child");
        assert!(
            output.status.success(),
            "child failed: {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(&out).unwrap_or_else(|error| {
            panic!(
                "child wrote no result ({error}); did the filter match?\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    #[test]
    fn heap_profile_is_gzipped_pprof_when_profiling_is_on_at_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = PROFILING_CONF
            .strip_prefix("_RJEM_MALLOC_CONF=")
            .expect("the constant names the variable");
        let profile = run_child(dir.path(), Some(conf));
        assert!(
            profile.starts_with(&[0x1f, 0x8b]),
            "not gzip: {:?}",
            String::from_utf8_lossy(&profile[..profile.len().min(200)])
        );
        assert!(profile.len() > 20, "{} bytes only", profile.len());
    }

    #[test]
    fn heap_profile_names_the_setting_when_profiling_is_off_at_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let result = String::from_utf8(run_child(dir.path(), None)).expect("an error message");
        assert_eq!(
            result,
            format!("error: {}", AllocError::ProfilingDisabled),
            "{result}"
        );
        assert!(
            result.contains("_RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19"),
            "{result}"
        );
    }

    #[test]
    fn heap_profile_says_inactive_when_prof_active_is_false() {
        let dir = tempfile::tempdir().expect("temp dir");
        let result = String::from_utf8(run_child(dir.path(), Some("prof:true,prof_active:false")))
            .expect("an error message");
        assert_eq!(result, format!("error: {}", AllocError::ProfilingInactive));
    }
}
