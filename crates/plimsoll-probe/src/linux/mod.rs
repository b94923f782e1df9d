//! The probe on Linux: `/proc` for the process tree and its memory, cgroupfs for the cgroup,
//! `/proc/pressure/memory` (or the cgroup's `memory.pressure`) for PSI.

mod cgroup;
mod cgroup_target;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use procfs::process::{MountInfos, Process};
use procfs::{FromRead, ProcError};

use crate::error::{ParseError, ProbeError};
use crate::sample::{
    CgroupMemory, ChildrenSource, Detail, ProcessMemory, Psi, PsiScope, Sample, SampleDepth,
};
use crate::units::{Bytes, Pid};

use self::cgroup::Hierarchies;
pub use self::cgroup_target::{CgroupMounts, CgroupReader};
use self::tree::Tree;

/// Under [`SampleDepth::Fast`], a process's `status` is read once every this many samples of
/// its probe (and at the first sample it is in); the samples in between read `statm`.
const STATUS_EVERY: u64 = 10;

/// What the last `status` of a process said that `statm` does not say.
#[derive(Debug)]
struct Known {
    name: String,
    ppid: Pid,
    /// Resident file-backed and shared memory: their proportion splits `statm`'s shared pages.
    file: Bytes,
    shmem: Bytes,
    swap: Bytes,
    /// The probe's sample count when the process was last read: processes that left the tree
    /// are forgotten.
    seen: u64,
}

/// Samples the memory of one process tree. Made once for a root process and reused for every
/// sample: it remembers how to find children, the process tree's parents and the cgroup
/// mounts, and reuses its buffers, so that a sample reads only what it needs.
#[derive(Debug)]
pub struct Probe {
    root: Pid,
    proc_root: PathBuf,
    /// `/proc/ROOT`, held open: reads through it fail once the root exits, even if its pid
    /// is reused by a new process meanwhile.
    root_process: Process,
    /// `proc_root/ROOT`, to name files in errors.
    root_dir: PathBuf,
    tree: Tree,
    hierarchies: Hierarchies,
    members: Vec<(Pid, u32)>,
    text: String,
    /// The cgroup and PSI figures of the last sample that read them.
    last_cgroup: Option<(Option<CgroupMemory>, Option<Psi>)>,
    /// What the last `status` of each process of the tree said, by pid.
    known: HashMap<u32, Known>,
    /// Samples taken so far.
    samples: u64,
    /// The parents of the walked members, by depth (scratch).
    ancestors: Vec<Pid>,
}

impl Probe {
    /// A probe for the tree rooted at `root`, reading the system's `/proc`.
    ///
    /// Fails with [`ProbeError::ProcessGone`] when there is no such process.
    pub fn new(root: Pid) -> Result<Probe, ProbeError> {
        Probe::with_proc_root(root, "/proc")
    }

    /// A probe reading `proc_root` instead of `/proc` (a host's `/proc` mounted elsewhere in
    /// a container, or a fixture in tests). Cgroup mount points are taken from
    /// `proc_root/self/mountinfo` as written there.
    pub fn with_proc_root(root: Pid, proc_root: impl Into<PathBuf>) -> Result<Probe, ProbeError> {
        let proc_root = proc_root.into();
        let root_dir = proc_root.join(root.0.to_string());
        let root_process = match Process::new_with_root(root_dir.clone()) {
            Ok(process) => process,
            Err(error) => return Err(root_error(root, &root_dir, error)),
        };
        let tree = Tree::new(&proc_root, root);
        let mountinfo = proc_root.join("self").join("mountinfo");
        let hierarchies = match MountInfos::from_file(&mountinfo) {
            Ok(mounts) => Hierarchies::from_mounts(&mounts),
            Err(ProcError::NotFound(_)) => Hierarchies::default(),
            Err(error) => return Err(other_error(&mountinfo, error)),
        };
        Ok(Probe {
            root,
            proc_root,
            root_process,
            root_dir,
            tree,
            hierarchies,
            members: Vec::new(),
            text: String::with_capacity(1024),
            last_cgroup: None,
            known: HashMap::new(),
            samples: 0,
            ancestors: Vec::new(),
        })
    }

    /// The root process of the tree.
    pub fn root(&self) -> Pid {
        self.root
    }

    /// How this probe finds the root's descendants (chosen once, from what the kernel has).
    pub fn children_source(&self) -> ChildrenSource {
        self.tree.source()
    }

    /// One sample of the tree. Fails with [`ProbeError::ProcessGone`] once the root has
    /// exited; descendants that exit meanwhile are left out.
    pub fn sample(&mut self, depth: SampleDepth) -> Result<Sample, ProbeError> {
        self.sample_tree(depth, true)
    }

    /// Like [`Probe::sample`], except that the cgroup and PSI figures are those of this
    /// probe's last sample that read them (read now when none did yet). For callers that
    /// sample many trees every second: reading a cgroup costs more than reading a small tree,
    /// and many trees share one cgroup, so they refresh its figures less often.
    pub fn sample_with_last_cgroup(&mut self, depth: SampleDepth) -> Result<Sample, ProbeError> {
        self.sample_tree(depth, false)
    }

    fn sample_tree(&mut self, depth: SampleDepth, read_cgroup: bool) -> Result<Sample, ProbeError> {
        let taken_at = SystemTime::now();
        self.samples += 1;
        let mut reader = Reader {
            depth,
            samples: self.samples,
            known: &mut self.known,
        };
        let root = Member {
            pid: self.root,
            ppid: None,
            level: 0,
        };
        let root_memory = match reader.read(&self.root_process, &self.root_dir, root)? {
            Some(memory) => memory,
            None => return Err(ProbeError::ProcessGone(self.root)),
        };
        self.tree.walk(self.root, &mut self.members)?;
        let mut processes = Vec::with_capacity(self.members.len().max(1));
        processes.push(root_memory);
        self.ancestors.clear();
        for &(pid, level) in &self.members {
            // Pre-order: the parent of a member is the last member one level up.
            self.ancestors.truncate(level as usize);
            let ppid = self.ancestors.last().copied();
            self.ancestors.push(pid);
            if level == 0 {
                continue;
            }
            let dir = self.proc_root.join(pid.0.to_string());
            let process = match Process::new_with_root(dir.clone()) {
                Ok(process) => process,
                Err(ProcError::NotFound(_) | ProcError::PermissionDenied(_)) => continue,
                Err(error) => return Err(other_error(&dir, error)),
            };
            if let Some(memory) = reader.read(&process, &dir, Member { pid, ppid, level })? {
                processes.push(memory);
            }
        }
        let samples = self.samples;
        self.known.retain(|_, known| known.seen == samples);
        let unreadable = match depth {
            SampleDepth::Fast => 0,
            SampleDepth::Full => processes.iter().filter(|p| p.pss.is_none()).count(),
        };
        let detail = match (depth, unreadable) {
            (SampleDepth::Fast, _) => Detail::StatusOnly,
            (SampleDepth::Full, 0) => Detail::SmapsRollup,
            (SampleDepth::Full, unreadable) => Detail::SmapsRollupUnreadable { unreadable },
        };
        let total = |field: fn(&ProcessMemory) -> Bytes| processes.iter().map(field).sum::<Bytes>();
        let total_of = |field: fn(&ProcessMemory) -> Option<Bytes>| {
            (detail == Detail::SmapsRollup)
                .then(|| processes.iter().filter_map(field).sum::<Bytes>())
        };
        let (cgroup, psi) = match &self.last_cgroup {
            Some(last) if !read_cgroup => last.clone(),
            _ => {
                let read = self.read_cgroup_and_psi()?;
                self.last_cgroup = Some(read.clone());
                read
            }
        };
        Ok(Sample {
            root: self.root,
            taken_at,
            rss: total(|p| p.rss),
            pss: total_of(|p| p.pss),
            uss: total_of(|p| p.uss),
            swap: total(|p| p.swap),
            anon: total(|p| p.anon),
            file: total(|p| p.file),
            shmem: total(|p| p.shmem),
            detail,
            cgroup,
            psi,
            processes,
        })
    }
}

impl Probe {
    /// The root's memory cgroup (looked up again each sample: processes can be moved), and
    /// the pressure of its v2 cgroup, else of the system.
    fn read_cgroup_and_psi(&mut self) -> Result<(Option<CgroupMemory>, Option<Psi>), ProbeError> {
        let location = match self.root_process.cgroups() {
            Ok(cgroups) => self.hierarchies.locate(&cgroups),
            // No cgroup file (a kernel without cgroups), or the root exited since its
            // status was read, which the next sample reports.
            Err(ProcError::NotFound(_)) => None,
            Err(error) => return Err(other_error(&self.root_dir.join("cgroup"), error)),
        };
        let Some(location) = location else {
            return Ok((None, self.read_system_psi()?));
        };
        let Some(memory) = location.read(&mut self.text)? else {
            return Ok((None, self.read_system_psi()?));
        };
        let cgroup_psi = match location.pressure_file() {
            Some(path) => cgroup::read_psi(&path, PsiScope::Cgroup, &mut self.text)?,
            None => None,
        };
        let psi = match cgroup_psi {
            Some(psi) => Some(psi),
            None => self.read_system_psi()?,
        };
        Ok((Some(memory), psi))
    }

    fn read_system_psi(&mut self) -> Result<Option<Psi>, ProbeError> {
        let path = self.proc_root.join("pressure").join("memory");
        cgroup::read_psi(&path, PsiScope::System, &mut self.text)
    }
}

/// A process of the tree, as the walk found it.
#[derive(Debug, Clone, Copy)]
struct Member {
    pid: Pid,
    /// Its parent in the tree; `None` for the root.
    ppid: Option<Pid>,
    level: u32,
}

/// Reads the processes of one sample, remembering what their `status` said.
struct Reader<'a> {
    depth: SampleDepth,
    /// The probe's sample count, this sample included.
    samples: u64,
    known: &'a mut HashMap<u32, Known>,
}

impl Reader<'_> {
    /// Reads one process's memory; `None` when it exited meanwhile. `statm` when `Fast` has
    /// what it needs from an earlier `status`, else `status` (and `smaps_rollup` under `Full`).
    fn read(
        &mut self,
        process: &Process,
        dir: &Path,
        member: Member,
    ) -> Result<Option<ProcessMemory>, ProbeError> {
        let pid = member.pid.0;
        // Staggered by pid, so that trees sampled together do not all read `status` at once.
        let status_due = (self.samples + u64::from(pid)).is_multiple_of(STATUS_EVERY);
        let memory = match self.known.get_mut(&pid) {
            Some(known) if self.depth == SampleDepth::Fast && !status_due => {
                let memory = read_statm(process, dir, member, known)?;
                known.seen = self.samples;
                return Ok(memory);
            }
            _ => read_status(process, dir, member, self.depth)?,
        };
        if let Some(memory) = &memory {
            self.known.insert(
                pid,
                Known {
                    name: memory.name.clone(),
                    ppid: memory.ppid,
                    file: memory.file,
                    shmem: memory.shmem,
                    swap: memory.swap,
                    seen: self.samples,
                },
            );
        }
        Ok(memory)
    }
}

/// Reads one process's `statm`: rss and anon as they are now, the rest as `known` from its
/// last `status`. `None` when it exited meanwhile.
fn read_statm(
    process: &Process,
    dir: &Path,
    member: Member,
    known: &Known,
) -> Result<Option<ProcessMemory>, ProbeError> {
    let statm = match process.statm() {
        Ok(statm) => statm,
        Err(error) => return unreadable(error, dir, member, "statm"),
    };
    let page = procfs::page_size();
    let resident = Bytes(statm.resident.saturating_mul(page));
    // Shared pages are RssFile + RssShmem; the rest of the resident set is RssAnon.
    let shared = Bytes(statm.shared.saturating_mul(page)).min(resident);
    let shmem = split(shared, known.shmem, known.file + known.shmem);
    // A process without a memory map (a zombie) has no swap either.
    let swap = if statm.size == 0 {
        Bytes::ZERO
    } else {
        known.swap
    };
    Ok(Some(ProcessMemory {
        pid: member.pid,
        ppid: member.ppid.unwrap_or(known.ppid),
        depth: member.level,
        name: known.name.clone(),
        rss: resident,
        pss: None,
        uss: None,
        swap,
        anon: Bytes(resident.0 - shared.0),
        file: Bytes(shared.0 - shmem.0),
        shmem,
    }))
}

/// The part `share / whole` of `total` (none of it when `whole` is zero).
fn split(total: Bytes, share: Bytes, whole: Bytes) -> Bytes {
    if whole.0 == 0 {
        return Bytes::ZERO;
    }
    let part = u128::from(total.0) * u128::from(share.0.min(whole.0)) / u128::from(whole.0);
    Bytes(u64::try_from(part).unwrap_or(total.0))
}

/// What a failed read of a process's `name` file means: `None` when it exited (or, below the
/// root, may not be read), else an error.
fn unreadable(
    error: ProcError,
    dir: &Path,
    member: Member,
    name: &str,
) -> Result<Option<ProcessMemory>, ProbeError> {
    match error {
        error if gone(&error) => Ok(None),
        ProcError::PermissionDenied(_) if member.level > 0 => Ok(None),
        ProcError::PermissionDenied(_) => Err(ProbeError::PermissionDenied {
            pid: member.pid,
            path: dir.join(name),
        }),
        error => Err(other_error(&dir.join(name), error)),
    }
}

/// Reads one process's `status` (and under `Full` its `smaps_rollup`); `None` when it exited
/// meanwhile. Under `Full`, `pss` and `uss` are `None` when `smaps_rollup` may not be read.
fn read_status(
    process: &Process,
    dir: &Path,
    member: Member,
    depth: SampleDepth,
) -> Result<Option<ProcessMemory>, ProbeError> {
    let file = |name: &str| dir.join(name);
    let status = match process.status() {
        Ok(status) => status,
        Err(error) => return unreadable(error, dir, member, "status"),
    };
    // Zombies and kernel threads have no memory map: no Vm* lines, nothing to roll up.
    let has_memory = status.vmrss.is_some();
    let (pss, uss) = match depth {
        SampleDepth::Fast => (None, None),
        SampleDepth::Full if !has_memory => (Some(Bytes::ZERO), Some(Bytes::ZERO)),
        SampleDepth::Full => match process.smaps_rollup() {
            Ok(rollup) => {
                let (pss, uss) = rollup_figures(&rollup.memory_map_rollup).map_err(|source| {
                    ProbeError::Parse {
                        path: file("smaps_rollup"),
                        source,
                    }
                })?;
                (Some(pss), Some(uss))
            }
            Err(ProcError::PermissionDenied(_)) => (None, None),
            Err(error) if gone(&error) => match process.status() {
                // It exited between the two reads (and may be a zombie now).
                Err(_) => return Ok(None),
                Ok(again) if again.vmrss.is_none() => return Ok(None),
                // Still there with a memory map: this kernel has no smaps_rollup (< 4.14).
                Ok(_) if matches!(error, ProcError::NotFound(_)) => (None, None),
                // Still there, so the rollup was not cut short: it is malformed.
                Ok(_) => return Err(other_error(&file("smaps_rollup"), error)),
            },
            Err(error) => return Err(other_error(&file("smaps_rollup"), error)),
        },
    };
    let kib = |value: Option<u64>| Bytes::from_kib(value.unwrap_or(0));
    Ok(Some(ProcessMemory {
        pid: member.pid,
        ppid: Pid(u32::try_from(status.ppid).unwrap_or(0)),
        depth: member.level,
        name: status.name,
        rss: kib(status.vmrss),
        pss,
        uss,
        swap: kib(status.vmswap),
        anon: kib(status.rssanon),
        file: kib(status.rssfile),
        shmem: kib(status.rssshmem),
    }))
}

/// Pss and uss (private clean + private dirty) of a parsed `smaps_rollup`, in bytes. An
/// empty rollup (no mappings) is zero; a rollup without `Pss` is not one.
fn rollup_figures(maps: &procfs::process::MemoryMaps) -> Result<(Bytes, Bytes), ParseError> {
    let mut pss = Bytes::ZERO;
    let mut uss = Bytes::ZERO;
    for map in maps {
        let value = |key: &str| map.extension.map.get(key).copied().map(Bytes);
        pss += value("Pss").ok_or(ParseError::MissingKey("Pss"))?;
        uss +=
            value("Private_Clean").unwrap_or_default() + value("Private_Dirty").unwrap_or_default();
    }
    Ok((pss, uss))
}

/// Whether a `procfs` error means the process exited (its files are gone, or were cut short
/// while it was torn down).
fn gone(error: &ProcError) -> bool {
    matches!(error, ProcError::NotFound(_) | ProcError::Incomplete(_))
}

/// The error for a root process that cannot be opened.
fn root_error(root: Pid, root_dir: &Path, error: ProcError) -> ProbeError {
    match error {
        ProcError::NotFound(_) => ProbeError::ProcessGone(root),
        ProcError::PermissionDenied(_) => ProbeError::PermissionDenied {
            pid: root,
            path: root_dir.to_owned(),
        },
        error => other_error(root_dir, error),
    }
}

/// A `procfs` error that is neither "gone" nor "not allowed": an I/O error or a parse error.
pub(crate) fn other_error(path: &Path, error: ProcError) -> ProbeError {
    match error {
        ProcError::Io(source, file) => ProbeError::Io {
            path: file.unwrap_or_else(|| path.to_owned()),
            source,
        },
        ProcError::NotFound(file) => ProbeError::Io {
            path: file.unwrap_or_else(|| path.to_owned()),
            source: io::ErrorKind::NotFound.into(),
        },
        ProcError::PermissionDenied(file) => ProbeError::Io {
            path: file.unwrap_or_else(|| path.to_owned()),
            source: io::ErrorKind::PermissionDenied.into(),
        },
        other => ProbeError::Parse {
            path: path.to_owned(),
            source: ParseError::Procfs(other.to_string()),
        },
    }
}
