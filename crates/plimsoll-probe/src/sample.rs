//! What one reading of a process tree holds: the data type the probe produces and the rest of
//! Plimsoll consumes. Plain data, no I/O, the same on every platform.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::units::{Bytes, Pid};

/// How a probe finds the descendants of its root process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildrenSource {
    /// `/proc/PID/task/TID/children` (kernels built with `CONFIG_PROC_CHILDREN`): only the
    /// tree's own processes and threads are read.
    TaskChildren,
    /// `/proc` is listed and each process's parent read from `/proc/PID/stat`. Parents are
    /// remembered between samples (keyed by pid and the inode of `/proc/PID`, and checked
    /// against the parent's inode), so after the first sample only new processes are read.
    ProcScan,
}

/// How much to read for a sample. `smaps_rollup` (the source of pss and uss) makes the kernel
/// walk every page table of a process, so it costs several times what `status` costs, and
/// grows with the process's size; a 1 Hz sampling loop reads it less often than `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleDepth {
    /// Mostly `/proc/PID/statm`; pss and uss are `None`.
    ///
    /// A probe reads a process's `status` the first time the process is in its tree and then
    /// once every 10 samples (staggered by pid, so that probes sampled together do not read
    /// them all at once), and `statm` in between. `statm` has what the sampling loop acts on:
    /// `rss` (resident pages) and `anon` (resident minus shared pages) are exact in every
    /// sample, and so is `file + shmem` (the shared pages). What it lacks comes from the last
    /// `status`, at most 9 samples old: the split of the shared pages between `file` and
    /// `shmem` (in the proportion that `status` had), `swap`, the `name` and the root's
    /// parent (the parents of the other processes come from the walk of the tree). A process
    /// that execs a new program keeps its old name until its next `status`.
    ///
    /// The trade: for the kernel, `status` means formatting about 55 lines (signal masks,
    /// capabilities, cpusets) and for `procfs` parsing them all into a map, where `statm` is
    /// seven numbers. Measured (`examples/sample_cost.rs`, cgroup figures reused), a sample
    /// of a one-process tree went from about 32 µs of CPU to 16 µs, of an 11-process tree
    /// from 370 µs to 190 µs, and `watch` of 1,000 processes at 1 Hz from about 5 % of a
    /// core to 3 %. A
    /// pid that leaves the tree is forgotten, so a new process that gets its pid is read in
    /// full, unless the pid was reused between two consecutive samples.
    Fast,
    /// `/proc/PID/status` and `/proc/PID/smaps_rollup` of every process: every figure read
    /// now, pss and uss as well where `smaps_rollup` may be read.
    Full,
}

/// Where pss and uss came from, or why they are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `smaps_rollup` was read for every process of the tree: `pss` and `uss` are set.
    SmapsRollup,
    /// Only `statm` or `status` was read, as [`SampleDepth::Fast`] asks: `pss` and `uss` are
    /// `None`.
    StatusOnly,
    /// [`SampleDepth::Full`] was asked, but `smaps_rollup` could not be read for `unreadable`
    /// processes of the tree (another user's process, or a kernel older than 4.14). The tree's
    /// `pss` and `uss` are `None`; processes that could be read still carry their own.
    SmapsRollupUnreadable {
        /// How many processes of the tree had an unreadable `smaps_rollup`.
        unreadable: usize,
    },
}

/// One process tree at one instant. Sums are over every process of the tree; `rss` counts a
/// page shared by two processes twice, `pss` splits it between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The root of the tree (the process the probe was made for).
    pub root: Pid,
    /// Wall-clock time at which the sample was taken.
    pub taken_at: SystemTime,
    /// Every process of the tree that still existed when it was read, in depth-first pre-order:
    /// the root first, each process followed by its descendants, siblings by ascending pid.
    /// Printed in order with `depth` as indentation, they draw the tree.
    pub processes: Vec<ProcessMemory>,
    /// Resident set size summed over the tree, in bytes.
    pub rss: Bytes,
    /// Proportional set size summed over the tree, in bytes; `None` unless `detail` is
    /// [`Detail::SmapsRollup`].
    pub pss: Option<Bytes>,
    /// Unique set size (private clean + private dirty pages) summed over the tree, in bytes;
    /// `None` unless `detail` is [`Detail::SmapsRollup`].
    pub uss: Option<Bytes>,
    /// Swapped-out memory summed over the tree, in bytes.
    pub swap: Bytes,
    /// Resident anonymous memory (heap, stacks) summed over the tree, in bytes.
    pub anon: Bytes,
    /// Resident file-backed memory (code, mapped files) summed over the tree, in bytes.
    pub file: Bytes,
    /// Resident shared memory (shmem, tmpfs, shared anonymous) summed over the tree, in bytes.
    pub shmem: Bytes,
    /// Where `pss` and `uss` came from, or why they are missing.
    pub detail: Detail,
    /// The memory cgroup of the root process; `None` when it has none that can be read.
    pub cgroup: Option<CgroupMemory>,
    /// Memory pressure stall information; `None` where the kernel does not report it.
    pub psi: Option<Psi>,
}

/// The memory of one process of the tree (its own, not its children's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessMemory {
    /// The process.
    pub pid: Pid,
    /// Its parent.
    pub ppid: Pid,
    /// Distance from the root: 0 for the root, 1 for its children, and so on.
    pub depth: u32,
    /// The command name the kernel keeps (`comm`, at most 15 bytes).
    pub name: String,
    /// Resident set size, in bytes.
    pub rss: Bytes,
    /// Proportional set size, in bytes; `None` when `smaps_rollup` was not read.
    pub pss: Option<Bytes>,
    /// Unique set size (private clean + private dirty), in bytes; `None` when `smaps_rollup`
    /// was not read.
    pub uss: Option<Bytes>,
    /// Swapped-out memory, in bytes.
    pub swap: Bytes,
    /// Resident anonymous memory, in bytes.
    pub anon: Bytes,
    /// Resident file-backed memory, in bytes.
    pub file: Bytes,
    /// Resident shared memory, in bytes.
    pub shmem: Bytes,
}

/// Which cgroup interface a [`CgroupMemory`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The legacy memory controller (`memory.usage_in_bytes`, `memory.limit_in_bytes`).
    V1,
    /// The unified hierarchy (`memory.current`, `memory.max`, `memory.events`).
    V2,
}

/// The memory cgroup a process lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMemory {
    /// The interface the figures come from.
    pub version: CgroupVersion,
    /// The cgroup's path inside its hierarchy, as `/proc/PID/cgroup` names it
    /// (e.g. `/system.slice/app.service`).
    pub path: String,
    /// The directory its files were read from (e.g. `/sys/fs/cgroup/system.slice/app.service`).
    pub dir: PathBuf,
    /// Memory charged to the cgroup and its descendants, in bytes (page cache included).
    pub usage: Bytes,
    /// The smallest memory limit of the cgroup and its ancestors, in bytes; `None` when there
    /// is none (`max` in v2, the "unlimited" value in v1).
    pub limit: Option<Bytes>,
    /// How many times the cgroup hit its limit and the OOM killer was invoked (v2
    /// `memory.events` `oom`); `None` in v1, which does not count it.
    pub oom: Option<u64>,
    /// How many processes of the cgroup the OOM killer killed (`oom_kill` in v2
    /// `memory.events`, or v1 `memory.oom_control`); `None` on kernels that do not count it.
    pub oom_kill: Option<u64>,
}

/// Which scope a [`Psi`] reading covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsiScope {
    /// The process's own cgroup (v2 `memory.pressure`).
    Cgroup,
    /// The whole system (`/proc/pressure/memory`).
    System,
}

/// Memory pressure stall information: the share of recent time tasks spent waiting for memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Psi {
    /// Whose tasks the figures cover.
    pub scope: PsiScope,
    /// Percent (0–100) of the last 10 s during which at least one task was stalled on memory.
    pub some_avg10: f64,
    /// Percent (0–100) of the last 10 s during which all non-idle tasks were stalled on memory.
    pub full_avg10: f64,
}

/// One reading of a cgroup watched as a target of its own (a container, a systemd unit): what
/// the kernel charges to it, read from its own files at one instant. No process is walked.
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupFigures {
    /// The interface the figures come from.
    pub version: CgroupVersion,
    /// Memory charged to the cgroup and its descendants, page cache included, in bytes
    /// (`memory.current`, v1 `memory.usage_in_bytes`).
    pub usage: Bytes,
    /// `usage` less the inactive file cache, in bytes: what the kubelet evicts on and the
    /// part of the cache the kernel cannot drop cheaply. Never below 0.
    pub working_set: Bytes,
    /// Anonymous memory (heap, stacks), in bytes (`memory.stat` `anon`, v1 `total_rss`).
    pub anon: Bytes,
    /// File cache, shared memory excluded, in bytes (v2 `file` − `shmem`, v1 `total_cache` −
    /// `total_shmem`).
    pub file: Bytes,
    /// Shared memory and tmpfs, in bytes (`shmem`, v1 `total_shmem`).
    pub shmem: Bytes,
    /// Inactive file cache, in bytes (`inactive_file`, v1 `total_inactive_file`).
    pub inactive_file: Bytes,
    /// The smallest memory limit of the cgroup and its ancestors, in bytes; `None` when there
    /// is none.
    pub limit: Option<Bytes>,
    /// Processes of the cgroup the OOM killer killed so far (`memory.events` `oom_kill`, v1
    /// `memory.oom_control` `oom_kill`); `None` on kernels that do not count them.
    pub oom_kill: Option<u64>,
    /// The cgroup's own memory pressure (v2 `memory.pressure`); `None` in v1 or where the
    /// kernel does not report it.
    pub psi: Option<Psi>,
}
