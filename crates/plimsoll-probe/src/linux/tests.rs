//! Tests of whole samples: on fixture `/proc` trees (exact figures, children files, vanished
//! processes, unreadable smaps_rollup) and on real processes (this test process, a spawned
//! shell with children, processes exiting while they are sampled).

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::sample::CgroupVersion;

/// A `status` file with the keys `procfs` requires; `memory` is `None` for a zombie.
fn status(pid: u32, ppid: u32, name: &str, memory: Option<[u64; 5]>) -> String {
    let mut text = format!(
        "Name:\t{name}\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\n\
         TracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t\n"
    );
    if let Some([rss, anon, file, shmem, swap]) = memory {
        text += &format!(
            "VmRSS:\t{rss} kB\nRssAnon:\t{anon} kB\nRssFile:\t{file} kB\nRssShmem:\t{shmem} kB\n\
             VmSwap:\t{swap} kB\n"
        );
    }
    text += "Threads:\t1\nSigQ:\t0/100\nSigPnd:\t0\nShdPnd:\t0\nSigBlk:\t0\nSigIgn:\t0\n\
             SigCgt:\t0\nCapInh:\t0\nCapPrm:\t0\nCapEff:\t0\n";
    text
}

/// A `statm` file matching [`status`]'s figures (in pages; `None` for a zombie: all zero).
fn statm(memory: Option<[u64; 5]>) -> String {
    let page_kib = procfs::page_size() / 1024;
    let [rss, _, file, shmem, _] = memory.unwrap_or_default();
    let (resident, shared) = (rss / page_kib, (file + shmem) / page_kib);
    let size = if memory.is_some() { resident + 1000 } else { 0 };
    format!("{size} {resident} {shared} 0 0 {} 0\n", resident - shared)
}

fn rollup(pss_kib: u64, private_clean_kib: u64, private_dirty_kib: u64) -> String {
    format!(
        "00400000-7fff00000000 ---p 00000000 00:00 0                  [rollup]\n\
         Rss:                 999 kB\nPss:            {pss_kib} kB\n\
         Private_Clean:  {private_clean_kib} kB\nPrivate_Dirty:  {private_dirty_kib} kB\n\
         Swap:                  0 kB\n"
    )
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::write(path, text).expect("write");
}

/// A fixture process: pid, ppid, name, status memory in KiB (rss, anon, file, shmem, swap;
/// `None` for a zombie), and its main thread's `children` file.
type FixtureProcess = (u32, u32, &'static str, Option<[u64; 5]>, &'static str);

/// 100 (two threads) → 200, 300 (→ 500), and 400 listed by a thread but already gone.
/// 500 is a zombie. No mountinfo: no cgroup. PSI at the system level.
fn fixture_tree(proc_root: &Path) {
    let processes: [FixtureProcess; 4] = [
        (
            100,
            1,
            "server",
            Some([1000, 600, 300, 100, 50]),
            "300 200 ",
        ),
        (200, 100, "worker", Some([400, 300, 100, 0, 0]), ""),
        (300, 100, "sh", Some([100, 20, 80, 0, 10]), "500"),
        (500, 300, "defunct", None, ""),
    ];
    for (pid, ppid, name, memory, children) in processes {
        let dir = proc_root.join(pid.to_string());
        write(&dir.join("status"), &status(pid, ppid, name, memory));
        write(&dir.join("statm"), &statm(memory));
        write(
            &dir.join("task").join(pid.to_string()).join("children"),
            children,
        );
    }
    write(&proc_root.join("100/task/101/children"), "400");
    write(&proc_root.join("100/smaps_rollup"), &rollup(700, 100, 400));
    write(&proc_root.join("200/smaps_rollup"), &rollup(250, 0, 200));
    write(&proc_root.join("300/smaps_rollup"), &rollup(60, 4, 8));
    write(
        &proc_root.join("pressure/memory"),
        "some avg10=1.50 avg60=0.00 avg300=0.00 total=10\n\
         full avg10=0.25 avg60=0.00 avg300=0.00 total=5\n",
    );
}

#[test]
fn fast_sample_of_a_fixture_tree_sums_status_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    assert_eq!(probe.children_source(), ChildrenSource::TaskChildren);
    let sample = probe.sample(SampleDepth::Fast).expect("sample");
    let tree: Vec<_> = sample
        .processes
        .iter()
        .map(|p| (p.pid.0, p.ppid.0, p.depth, p.name.as_str()))
        .collect();
    assert_eq!(
        tree,
        [
            (100, 1, 0, "server"),
            (200, 100, 1, "worker"),
            (300, 100, 1, "sh"),
            (500, 300, 2, "defunct")
        ]
    );
    assert_eq!(sample.root, Pid(100));
    assert_eq!(sample.rss, Bytes::from_kib(1500));
    assert_eq!(sample.anon, Bytes::from_kib(920));
    assert_eq!(sample.file, Bytes::from_kib(480));
    assert_eq!(sample.shmem, Bytes::from_kib(100));
    assert_eq!(sample.swap, Bytes::from_kib(60));
    assert_eq!((sample.pss, sample.uss), (None, None));
    assert_eq!(sample.detail, Detail::StatusOnly);
    assert_eq!(sample.cgroup, None);
    let psi = sample.psi.expect("psi");
    assert_eq!(
        (psi.scope, psi.some_avg10, psi.full_avg10),
        (PsiScope::System, 1.5, 0.25)
    );
}

#[test]
fn full_sample_of_a_fixture_tree_adds_pss_and_uss() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    let sample = probe.sample(SampleDepth::Full).expect("sample");
    assert_eq!(sample.detail, Detail::SmapsRollup);
    assert_eq!(sample.pss, Some(Bytes::from_kib(700 + 250 + 60)));
    assert_eq!(sample.uss, Some(Bytes::from_kib(500 + 200 + 12)));
    let zombie = sample
        .processes
        .iter()
        .find(|p| p.pid == Pid(500))
        .expect("zombie");
    assert_eq!(
        (zombie.rss, zombie.pss, zombie.uss),
        (Bytes::ZERO, Some(Bytes::ZERO), Some(Bytes::ZERO))
    );
}

#[test]
fn unreadable_smaps_rollup_falls_back_to_status_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    fs::remove_file(dir.path().join("200/smaps_rollup")).expect("rm");
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    let sample = probe.sample(SampleDepth::Full).expect("sample");
    assert_eq!(
        sample.detail,
        Detail::SmapsRollupUnreadable { unreadable: 1 }
    );
    assert_eq!((sample.pss, sample.uss), (None, None));
    assert_eq!(sample.rss, Bytes::from_kib(1500));
    let worker = sample
        .processes
        .iter()
        .find(|p| p.pid == Pid(200))
        .expect("worker");
    assert_eq!(worker.pss, None);
    let server = &sample.processes[0];
    assert_eq!(server.pss, Some(Bytes::from_kib(700)));
}

#[test]
fn bad_smaps_rollup_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    write(
        &dir.path().join("300/smaps_rollup"),
        "00400000-7fff00000000 ---p 00000000 00:00 0 [rollup]\nRss: 4 kB\n",
    );
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    let error = probe.sample(SampleDepth::Full).expect_err("no Pss");
    assert!(
        matches!(&error, ProbeError::Parse { path, source: ParseError::MissingKey("Pss") } if path.ends_with("300/smaps_rollup")),
        "{error:?}"
    );
    write(&dir.path().join("300/smaps_rollup"), "Pss: 4 kB\n");
    let error = probe.sample(SampleDepth::Full).expect_err("no header line");
    assert!(
        matches!(
            &error,
            ProbeError::Parse {
                source: ParseError::Procfs(_),
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn bad_psi_is_an_error_and_missing_psi_is_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    write(
        &dir.path().join("pressure/memory"),
        "some avg10=lots\nfull avg10=0\n",
    );
    let error = probe.sample(SampleDepth::Fast).expect_err("bad psi");
    assert!(
        matches!(error, ProbeError::Parse { source: ParseError::NotAPercentage(ref value), .. } if value == "lots"),
        "{error:?}"
    );
    fs::remove_file(dir.path().join("pressure/memory")).expect("rm");
    assert_eq!(probe.sample(SampleDepth::Fast).expect("sample").psi, None);
}

#[test]
fn a_v2_cgroup_gives_usage_limit_events_and_its_own_pressure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proc_root = dir.path().join("proc");
    let cgroupfs = dir.path().join("cgroup");
    fixture_tree(&proc_root);
    write(
        &proc_root.join("self/mountinfo"),
        &format!(
            "22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n\
             30 22 0:26 / {} rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
            cgroupfs.display()
        ),
    );
    write(&proc_root.join("100/cgroup"), "0::/app.slice/web.service\n");
    let leaf = cgroupfs.join("app.slice/web.service");
    write(&leaf.join("memory.current"), "209715200\n");
    write(&leaf.join("memory.max"), "max\n");
    write(&cgroupfs.join("app.slice/memory.max"), "1073741824\n");
    write(
        &leaf.join("memory.events"),
        "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
    );
    write(
        &leaf.join("memory.pressure"),
        "some avg10=12.00 avg60=1.00 avg300=0.10 total=99\n\
         full avg10=6.00 avg60=0.50 avg300=0.05 total=42\n",
    );
    let mut probe = Probe::with_proc_root(Pid(100), &proc_root).expect("probe");
    let sample = probe.sample(SampleDepth::Fast).expect("sample");
    let cgroup = sample.cgroup.expect("cgroup");
    assert_eq!(cgroup.version, CgroupVersion::V2);
    assert_eq!(cgroup.path, "/app.slice/web.service");
    assert_eq!(cgroup.dir, leaf);
    assert_eq!(cgroup.usage, Bytes(200 << 20));
    assert_eq!(cgroup.limit, Some(Bytes(1 << 30)));
    assert_eq!((cgroup.oom, cgroup.oom_kill), (Some(1), Some(1)));
    let psi = sample.psi.expect("psi");
    assert_eq!(
        (psi.scope, psi.some_avg10, psi.full_avg10),
        (PsiScope::Cgroup, 12.0, 6.0)
    );

    // Sampled with the last cgroup figures: the cgroup files are not read again.
    write(&leaf.join("memory.current"), "314572800\n");
    let again = probe
        .sample_with_last_cgroup(SampleDepth::Fast)
        .expect("sample");
    assert_eq!(again.cgroup.expect("cgroup").usage, Bytes(200 << 20));
    assert_eq!(again.psi, Some(psi));
    assert_eq!(again.rss, sample.rss);
    let fresh = probe.sample(SampleDepth::Fast).expect("sample");
    assert_eq!(fresh.cgroup.expect("cgroup").usage, Bytes(300 << 20));
    let mut first = Probe::with_proc_root(Pid(100), &proc_root).expect("probe");
    let first = first
        .sample_with_last_cgroup(SampleDepth::Fast)
        .expect("a first sample reads the cgroup");
    assert_eq!(first.cgroup.expect("cgroup").usage, Bytes(300 << 20));

    // Moved to a cgroup without the memory controller: no cgroup, the system's pressure.
    write(&proc_root.join("100/cgroup"), "0::/other.slice\n");
    let sample = probe.sample(SampleDepth::Fast).expect("sample");
    assert_eq!(sample.cgroup, None);
    assert_eq!(sample.psi.expect("psi").scope, PsiScope::System);

    // A malformed cgroup file is an error naming it.
    write(&proc_root.join("100/cgroup"), "0::/app.slice/web.service\n");
    write(&leaf.join("memory.current"), "a lot\n");
    let error = probe.sample(SampleDepth::Fast).expect_err("bad usage");
    assert_eq!(
        error.to_string(),
        format!(
            "unexpected content in '{}'",
            leaf.join("memory.current").display()
        )
    );
    assert_eq!(
        std::error::Error::source(&error).map(ToString::to_string),
        Some("'a lot' is not a number".to_owned())
    );
}

#[test]
fn a_child_that_vanishes_between_samples_is_left_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    assert_eq!(
        probe
            .sample(SampleDepth::Full)
            .expect("sample")
            .processes
            .len(),
        4
    );
    // Still listed by its parent, but its directory is gone.
    fs::remove_dir_all(dir.path().join("300")).expect("rm");
    let sample = probe.sample(SampleDepth::Full).expect("sample");
    let pids: Vec<u32> = sample.processes.iter().map(|p| p.pid.0).collect();
    assert_eq!(pids, [100, 200]);
    assert_eq!(sample.detail, Detail::SmapsRollup);
}

/// The fixture's memory figures of each process, by pid, from a sample.
fn figures(sample: &Sample) -> Vec<(u32, &str, [Bytes; 5])> {
    sample
        .processes
        .iter()
        .map(|p| {
            (
                p.pid.0,
                p.name.as_str(),
                [p.rss, p.anon, p.file, p.shmem, p.swap],
            )
        })
        .collect()
}

fn kib(values: [u64; 5]) -> [Bytes; 5] {
    values.map(Bytes::from_kib)
}

#[test]
fn fast_samples_read_statm_between_status_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    // Sample 1 meets every process: `status` is read.
    let first = probe.sample(SampleDepth::Fast).expect("sample");
    assert_eq!(first.rss, Bytes::from_kib(1500));
    // From now on `status` says something else, and is read only when due: every pid of the
    // fixture is a multiple of 10, so at sample 10.
    write(
        &dir.path().join("100/status"),
        &status(100, 7, "changed", Some([4000, 3000, 600, 400, 900])),
    );
    write(
        &dir.path().join("100/statm"),
        &statm(Some([2000, 1200, 600, 200, 0])),
    );
    for n in 2..10 {
        let sample = probe.sample(SampleDepth::Fast).expect("sample");
        // rss and anon from statm; its shared pages split 3:1 like the last status's file
        // and shmem; swap and name from the last status.
        assert_eq!(
            figures(&sample),
            [
                (100, "server", kib([2000, 1200, 600, 200, 50])),
                (200, "worker", kib([400, 300, 100, 0, 0])),
                (300, "sh", kib([100, 20, 80, 0, 10])),
                (500, "defunct", [Bytes::ZERO; 5]),
            ],
            "sample {n}"
        );
        let tree: Vec<_> = sample
            .processes
            .iter()
            .map(|p| (p.pid.0, p.ppid.0, p.depth))
            .collect();
        assert_eq!(
            tree,
            [(100, 1, 0), (200, 100, 1), (300, 100, 1), (500, 300, 2)]
        );
        assert_eq!(sample.rss, Bytes::from_kib(2500));
        assert_eq!(sample.swap, Bytes::from_kib(60));
        assert_eq!(sample.detail, Detail::StatusOnly);
    }
    let tenth = probe.sample(SampleDepth::Fast).expect("sample");
    assert_eq!(
        figures(&tenth)[0],
        (100, "changed", kib([4000, 3000, 600, 400, 900]))
    );
    assert_eq!(tenth.processes[0].ppid, Pid(7));
    // The split now follows the new status (file 600 : shmem 400); the root's parent is the
    // one status said.
    let eleventh = probe.sample(SampleDepth::Fast).expect("sample");
    assert_eq!(
        figures(&eleventh)[0],
        (100, "changed", kib([2000, 1200, 480, 320, 900]))
    );
    assert_eq!(eleventh.processes[0].ppid, Pid(7));
    // A full sample always reads status.
    let full = probe.sample(SampleDepth::Full).expect("sample");
    assert_eq!(full.processes[0].rss, Bytes::from_kib(4000));
}

#[test]
fn a_process_that_vanishes_on_the_statm_path_is_left_out_and_forgotten() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    for _ in 0..2 {
        assert_eq!(
            probe
                .sample(SampleDepth::Fast)
                .expect("sample")
                .processes
                .len(),
            4
        );
    }
    assert!(probe.known.contains_key(&300));
    // Still listed by its parent, but its directory is gone (and 500 with it).
    fs::remove_dir_all(dir.path().join("300")).expect("rm");
    let sample = probe.sample(SampleDepth::Fast).expect("sample");
    let pids: Vec<u32> = sample.processes.iter().map(|p| p.pid.0).collect();
    assert_eq!(pids, [100, 200]);
    assert_eq!(sample.rss, Bytes::from_kib(1400));
    assert!(!probe.known.contains_key(&300) && !probe.known.contains_key(&500));
    // A new process with the same pid is read in full, not taken for the one that left.
    write(
        &dir.path().join("300/status"),
        &status(300, 100, "new", Some([200, 200, 0, 0, 8])),
    );
    write(
        &dir.path().join("300/statm"),
        &statm(Some([100, 100, 0, 0, 0])),
    );
    let sample = probe.sample(SampleDepth::Fast).expect("sample");
    assert_eq!(figures(&sample)[2], (300, "new", kib([200, 200, 0, 0, 8])));
    // Exited but not reaped: statm is all zeros, and a process without memory has no swap.
    write(&dir.path().join("100/statm"), &statm(None));
    let sample = probe.sample(SampleDepth::Fast).expect("sample");
    assert_eq!(figures(&sample)[0], (100, "server", [Bytes::ZERO; 5]));
    // Reaped: the root is gone.
    fs::remove_file(dir.path().join("100/statm")).expect("rm");
    let error = probe.sample(SampleDepth::Fast).expect_err("gone");
    assert!(
        matches!(error, ProbeError::ProcessGone(Pid(100))),
        "{error:?}"
    );
}

#[test]
fn bad_statm_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_tree(dir.path());
    let mut probe = Probe::with_proc_root(Pid(100), dir.path()).expect("probe");
    probe.sample(SampleDepth::Fast).expect("sample");
    write(&dir.path().join("200/statm"), "12 many\n");
    let error = probe.sample(SampleDepth::Fast).expect_err("bad statm");
    assert!(
        matches!(&error, ProbeError::Parse { path, source: ParseError::Procfs(_) } if path.ends_with("200/statm")),
        "{error:?}"
    );
}

#[test]
fn a_missing_root_is_process_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = Probe::with_proc_root(Pid(4_000_000_000), dir.path()).expect_err("no such pid");
    assert!(
        matches!(error, ProbeError::ProcessGone(Pid(4_000_000_000))),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "no process with pid 4000000000");
    let error = Probe::new(Pid(4_000_000_000)).expect_err("no such pid");
    assert!(matches!(error, ProbeError::ProcessGone(_)), "{error:?}");
}

// ---- real processes -------------------------------------------------------------------------

/// A spawned shell in its own process group, killed (group and all) and reaped on drop.
struct Spawned(Child);

impl Spawned {
    fn shell(script: &str) -> Spawned {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        Spawned(child)
    }

    fn pid(&self) -> Pid {
        Pid(self.0.id())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// Samples until `done` holds, for at most 10 s.
fn sample_until(probe: &mut Probe, depth: SampleDepth, done: impl Fn(&Sample) -> bool) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sample = probe.sample(depth).expect("sample");
        if done(&sample) {
            return sample;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met in time; last sample: {sample:#?}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn sample_of_this_test_process() {
    let mut probe = Probe::new(Pid::current()).expect("probe");
    let fast = probe.sample(SampleDepth::Fast).expect("fast");
    let me = &fast.processes[0];
    assert_eq!((me.pid, me.depth), (Pid::current(), 0));
    assert!(fast.rss > Bytes(1 << 20), "{fast:#?}");
    assert_eq!(me.anon + me.file + me.shmem, me.rss);
    assert_eq!(fast.detail, Detail::StatusOnly);
    let full = probe.sample(SampleDepth::Full).expect("full");
    assert_eq!(full.detail, Detail::SmapsRollup);
    let (pss, uss) = (full.pss.expect("pss"), full.uss.expect("uss"));
    assert!(uss <= pss && pss <= full.rss + Bytes(1 << 20), "{full:#?}");
    // PSI and the cgroup depend on the kernel and the machine; when present they make sense.
    if let Some(psi) = full.psi {
        assert!((0.0..=100.0).contains(&psi.some_avg10) && psi.full_avg10 <= psi.some_avg10 + 1e-9);
    }
    if let Some(cgroup) = &full.cgroup {
        assert!(cgroup.usage > Bytes::ZERO, "{cgroup:#?}");
        assert!(cgroup.dir.is_dir());
    }
}

#[test]
fn sample_of_a_spawned_tree_sums_its_processes() {
    let shell = Spawned::shell("sleep 30 & sleep 30 & wait");
    let mut probe = Probe::new(shell.pid()).expect("probe");
    let sample = sample_until(&mut probe, SampleDepth::Full, |sample| {
        sample.processes.len() >= 3
            && sample
                .processes
                .iter()
                .all(|p| p.depth == 0 || p.name == "sleep")
    });
    assert_eq!(sample.processes[0].pid, shell.pid());
    assert!(sample.processes[1..]
        .iter()
        .all(|p| p.ppid == shell.pid() && p.depth == 1));
    let rss: Bytes = sample.processes.iter().map(|p| p.rss).sum();
    assert_eq!(sample.rss, rss);
    assert!(sample.processes.iter().all(|p| p.rss > Bytes::ZERO));
    let pss: Bytes = sample.processes.iter().filter_map(|p| p.pss).sum();
    assert_eq!(sample.pss, Some(pss));
}

#[test]
fn a_proc_scan_finds_the_same_tree_as_the_children_files() {
    let shell = Spawned::shell("sleep 30 & sleep 30 & wait");
    let mut probe = Probe::new(shell.pid()).expect("probe");
    let sample = sample_until(&mut probe, SampleDepth::Fast, |sample| {
        sample.processes.len() >= 3
            && sample
                .processes
                .iter()
                .all(|p| p.depth == 0 || p.name == "sleep")
    });
    let expected: Vec<(Pid, u32)> = sample.processes.iter().map(|p| (p.pid, p.depth)).collect();
    for source in [ChildrenSource::ProcScan, ChildrenSource::TaskChildren] {
        if source == ChildrenSource::TaskChildren && probe.children_source() != source {
            continue; // This kernel has no children files.
        }
        let mut tree = super::tree::Tree::with_source(Path::new("/proc"), source);
        let mut found = Vec::new();
        for _ in 0..2 {
            tree.walk(shell.pid(), &mut found).expect("walk");
            assert_eq!(found, expected, "{source:?}");
        }
    }
}

#[test]
fn children_exiting_while_sampled_are_not_errors() {
    // A shell that forks short-lived children as fast as it can.
    let shell = Spawned::shell("while :; do /bin/true; done");
    let mut probe = Probe::new(shell.pid()).expect("probe");
    let mut saw_child = false;
    for _ in 0..300 {
        let sample = probe
            .sample(SampleDepth::Full)
            .expect("a vanishing child is no error");
        saw_child |= sample.processes.len() > 1;
    }
    assert!(saw_child, "no child was ever seen");
}

#[test]
fn fast_samples_between_status_reads_match_the_kernel_figures() {
    // `sleep` does not change its memory: statm and status describe the same pages.
    let shell = Spawned::shell("exec sleep 30");
    let mut probe = Probe::new(shell.pid()).expect("probe");
    sample_until(&mut probe, SampleDepth::Fast, |sample| {
        sample.processes[0].name == "sleep"
    });
    let process = Process::new(i32::try_from(shell.pid().0).expect("pid")).expect("process");
    // Right after the exec, the loader is still mapping `sleep`'s pages: wait until it sleeps
    // with a settled RSS, so statm and status are read of the same pages.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_rss = None;
    loop {
        let sleeping = process.stat().map(|s| s.state == 'S').unwrap_or(false);
        let rss = process.status().ok().and_then(|s| s.vmrss);
        if sleeping && rss.is_some() && rss == last_rss {
            break;
        }
        assert!(Instant::now() < deadline, "sleep did not settle");
        last_rss = rss;
        std::thread::park_timeout(Duration::from_millis(20));
    }
    for _ in 0..2 * STATUS_EVERY {
        let sample = probe.sample(SampleDepth::Fast).expect("sample");
        let status = process.status().expect("status");
        let kib = |value: Option<u64>| Bytes::from_kib(value.expect("figure"));
        let me = &sample.processes[0];
        assert_eq!(me.name, "sleep");
        assert_eq!(me.rss, kib(status.vmrss));
        assert_eq!(me.anon, kib(status.rssanon));
        assert_eq!(
            me.file + me.shmem,
            kib(status.rssfile) + kib(status.rssshmem)
        );
        assert_eq!(me.swap, kib(status.vmswap));
    }
}

#[test]
fn children_exiting_between_fast_samples_are_not_errors() {
    // Children that live long enough to be read through statm, then exit while sampled.
    let shell = Spawned::shell("while :; do sleep 0.01; done");
    let mut probe = Probe::new(shell.pid()).expect("probe");
    let mut last_child = None;
    let mut seen_twice = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen_twice < 20 && Instant::now() < deadline {
        let sample = probe
            .sample(SampleDepth::Fast)
            .expect("a vanishing child is no error");
        let child = sample.processes.get(1).map(|p| p.pid);
        if child.is_some() && child == last_child {
            seen_twice += 1;
        }
        last_child = child;
    }
    assert!(
        seen_twice >= 20,
        "children were seen in two samples only {seen_twice} times"
    );
}

#[test]
fn a_root_that_exits_is_process_gone() {
    let mut shell = Spawned::shell("sleep 30");
    let mut probe = Probe::new(shell.pid()).expect("probe");
    probe.sample(SampleDepth::Fast).expect("sample while alive");
    shell.0.kill().expect("kill");
    shell.0.wait().expect("reap");
    let error = probe.sample(SampleDepth::Fast).expect_err("gone");
    assert!(
        matches!(error, ProbeError::ProcessGone(pid) if pid == shell.pid()),
        "{error:?}"
    );
}
