//! A cgroup as a target of its own (a container, a systemd unit): its figures read straight
//! from its files, a few small reads per sample and no walk of its processes, so that a node's
//! every container can be read once a second.

use std::path::{Path, PathBuf};

use procfs::process::MountInfos;
use procfs::{FromRead, ProcError};

use super::cgroup::{read_parsed, read_psi, Hierarchies};
use super::other_error;
use crate::cgroup_files::{
    parse_memory_events, parse_memory_stat_v1, parse_memory_stat_v2, parse_number,
    parse_oom_control, parse_v2_limit, MemoryStat,
};
use crate::error::{ParseError, ProbeError};
use crate::sample::{CgroupFigures, CgroupVersion, PsiScope};
use crate::units::Bytes;

/// How many reads of a v2 cgroup reuse its ancestors' smallest limit before reading them
/// again (its own `memory.max` is read every time). v1 needs no walk:
/// `hierarchical_memory_limit` in `memory.stat` is already the smallest.
const ANCESTORS_EVERY: u64 = 10;

/// Where the memory cgroup hierarchies are mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The mount point of the v1 hierarchy with the memory controller, if any.
    pub v1_memory: Option<PathBuf>,
    /// The mount point of the v2 (unified) hierarchy, if any.
    pub v2: Option<PathBuf>,
}

impl CgroupMounts {
    /// The mounts as `proc_root/self/mountinfo` lists them (none when it does not exist).
    pub fn from_proc_root(proc_root: &Path) -> Result<CgroupMounts, ProbeError> {
        let mountinfo = proc_root.join("self").join("mountinfo");
        let hierarchies = match MountInfos::from_file(&mountinfo) {
            Ok(mounts) => Hierarchies::from_mounts(&mounts),
            Err(ProcError::NotFound(_)) => Hierarchies::default(),
            Err(error) => return Err(other_error(&mountinfo, error)),
        };
        let (v1_memory, v2) = hierarchies.points();
        Ok(CgroupMounts { v1_memory, v2 })
    }

    /// The mounts under a cgroup file system mounted at `dir` (a host's `/sys/fs/cgroup`
    /// mounted into a container, say), told apart by their files: `dir` itself is v2 when it
    /// has `cgroup.controllers`, the v1 memory hierarchy when it has
    /// `memory.usage_in_bytes`, and `dir/memory` and `dir/unified` are looked at too.
    pub fn under(dir: &Path) -> CgroupMounts {
        let v1 = |d: &Path| d.join("memory.usage_in_bytes").exists();
        let v2 = |d: &Path| d.join("cgroup.controllers").exists();
        let mut found = CgroupMounts::default();
        if v2(dir) {
            found.v2 = Some(dir.to_owned());
        } else if v1(dir) {
            found.v1_memory = Some(dir.to_owned());
        } else {
            let memory = dir.join("memory");
            let unified = dir.join("unified");
            found.v1_memory = v1(&memory).then_some(memory);
            found.v2 = v2(&unified).then_some(unified);
        }
        found
    }
}

/// Reads one cgroup's memory figures, again and again, with its buffers kept between reads.
#[derive(Debug)]
pub struct CgroupReader {
    dir: PathBuf,
    version: CgroupVersion,
    /// The hierarchy's mount point, where the walk up for the limit stops.
    top: PathBuf,
    text: String,
    reads: u64,
    /// v2: the smallest `memory.max` of the ancestors at the last walk.
    ancestors_limit: Option<u64>,
}

impl CgroupReader {
    /// A reader of the cgroup at `dir`, in the hierarchy of `version` mounted at `top`.
    pub fn new(dir: PathBuf, version: CgroupVersion, top: PathBuf) -> CgroupReader {
        CgroupReader {
            dir,
            version,
            top,
            text: String::with_capacity(2048),
            reads: 0,
            ancestors_limit: None,
        }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which hierarchy it is in.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// One reading: v1 reads `memory.usage_in_bytes`, `memory.stat` and `memory.oom_control`;
    /// v2 `memory.current`, `memory.stat`, `memory.max`, `memory.events` and
    /// `memory.pressure` (and its ancestors' `memory.max` every tenth time). Fails with
    /// [`ProbeError::CgroupGone`] when the cgroup was removed, also between two of its files;
    /// with [`ProbeError::Io`] or [`ProbeError::Parse`] naming the file otherwise.
    pub fn read(&mut self) -> Result<CgroupFigures, ProbeError> {
        self.reads += 1;
        let gone = || ProbeError::CgroupGone(self.dir.clone());
        let text = &mut self.text;
        let (usage_file, stat_parse) = match self.version {
            CgroupVersion::V1 => (
                "memory.usage_in_bytes",
                parse_memory_stat_v1 as fn(&str) -> Result<MemoryStat, ParseError>,
            ),
            CgroupVersion::V2 => (
                "memory.current",
                parse_memory_stat_v2 as fn(&str) -> Result<MemoryStat, ParseError>,
            ),
        };
        let usage =
            read_parsed(&self.dir.join(usage_file), text, parse_number)?.ok_or_else(gone)?;
        let stat =
            read_parsed(&self.dir.join("memory.stat"), text, stat_parse)?.ok_or_else(gone)?;
        let (limit, oom_kill, psi) = match self.version {
            CgroupVersion::V1 => {
                let path = self.dir.join("memory.oom_control");
                let oom_kill = read_parsed(&path, text, parse_oom_control)?.ok_or_else(gone)?;
                (stat.hierarchical_limit, oom_kill, None)
            }
            CgroupVersion::V2 => {
                let own = read_parsed(&self.dir.join("memory.max"), text, parse_v2_limit)?
                    .ok_or_else(gone)?;
                if (self.reads - 1).is_multiple_of(ANCESTORS_EVERY) {
                    self.ancestors_limit = ancestors_limit(&self.dir, &self.top, text)?;
                }
                let limit = match (own, self.ancestors_limit) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let events =
                    read_parsed(&self.dir.join("memory.events"), text, parse_memory_events)?
                        .ok_or_else(gone)?;
                let psi = read_psi(&self.dir.join("memory.pressure"), PsiScope::Cgroup, text)?;
                (limit, events.oom_kill, psi)
            }
        };
        let usage = Bytes(usage);
        let inactive_file = Bytes(stat.inactive_file);
        Ok(CgroupFigures {
            version: self.version,
            usage,
            working_set: Bytes(usage.0.saturating_sub(inactive_file.0)),
            anon: Bytes(stat.anon),
            file: Bytes(stat.file.saturating_sub(stat.shmem)),
            shmem: Bytes(stat.shmem),
            inactive_file,
            limit: limit.map(Bytes),
            oom_kill,
            psi,
        })
    }
}

/// The smallest `memory.max` of the ancestors of `dir` below or at `top` (the v2 root has
/// none).
fn ancestors_limit(dir: &Path, top: &Path, text: &mut String) -> Result<Option<u64>, ProbeError> {
    let mut limit: Option<u64> = None;
    for parent in dir.ancestors().skip(1).take_while(|d| d.starts_with(top)) {
        if let Some(Some(level)) = read_parsed(&parent.join("memory.max"), text, parse_v2_limit)? {
            limit = Some(limit.map_or(level, |limit| limit.min(level)));
        }
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn v2_figures_come_from_the_cgroups_own_files() {
        let top = tempfile::tempdir().expect("tempdir");
        let pod = top.path().join("kubepods").join("pod1");
        let leaf = pod.join("abc");
        write(&pod, "memory.max", "104857600\n");
        write(&leaf, "memory.current", "50000000\n");
        write(
            &leaf,
            "memory.stat",
            "anon 30000000\nfile 20000000\nshmem 1000000\ninactive_file 15000000\n",
        );
        write(&leaf, "memory.max", "max\n");
        write(
            &leaf,
            "memory.events",
            "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
        );
        write(
            &leaf,
            "memory.pressure",
            "some avg10=1.50 avg60=0 avg300=0 total=1\nfull avg10=0.50 avg60=0 avg300=0 total=1\n",
        );
        let mut reader = CgroupReader::new(leaf.clone(), CgroupVersion::V2, top.path().into());
        let figures = reader.read().expect("read");
        assert_eq!(figures.usage, Bytes(50_000_000));
        assert_eq!(figures.working_set, Bytes(35_000_000));
        assert_eq!(figures.anon, Bytes(30_000_000));
        assert_eq!(figures.file, Bytes(19_000_000));
        assert_eq!(figures.shmem, Bytes(1_000_000));
        assert_eq!(
            figures.limit,
            Some(Bytes(100 << 20)),
            "the pod's limit binds"
        );
        assert_eq!(figures.oom_kill, Some(1));
        assert_eq!(figures.psi.map(|p| p.some_avg10), Some(1.5));
        // More inactive cache than usage (the counters are not read atomically): 0, not a wrap.
        write(&leaf, "memory.current", "1000\n");
        assert_eq!(reader.read().expect("read").working_set, Bytes(0));
        std::fs::remove_file(leaf.join("memory.events")).expect("rm");
        assert!(matches!(reader.read(), Err(ProbeError::CgroupGone(dir)) if dir == leaf));
        std::fs::write(leaf.join("memory.events"), "oom_kill x\n").expect("write");
        assert!(matches!(reader.read(), Err(ProbeError::Parse { .. })));
    }

    #[test]
    fn v1_limit_is_the_hierarchical_one() {
        let top = tempfile::tempdir().expect("tempdir");
        let leaf = top.path().join("docker").join("abc");
        write(&leaf, "memory.usage_in_bytes", "4096000\n");
        write(
            &leaf,
            "memory.stat",
            "total_cache 96000\ntotal_rss 4000000\ntotal_shmem 0\ntotal_inactive_file 96000\n\
             hierarchical_memory_limit 67108864\n",
        );
        write(
            &leaf,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let mut reader = CgroupReader::new(leaf.clone(), CgroupVersion::V1, top.path().into());
        let figures = reader.read().expect("read");
        assert_eq!(figures.working_set, Bytes(4_000_000));
        assert_eq!(figures.limit, Some(Bytes(64 << 20)));
        assert_eq!((figures.oom_kill, figures.psi), (Some(2), None));
        std::fs::remove_dir_all(&leaf).expect("rm");
        assert!(matches!(reader.read(), Err(ProbeError::CgroupGone(_))));
    }

    #[test]
    fn mounts_under_a_directory_are_told_apart_by_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(CgroupMounts::under(dir.path()), CgroupMounts::default());
        write(&dir.path().join("memory"), "memory.usage_in_bytes", "0\n");
        write(&dir.path().join("unified"), "cgroup.controllers", "cpu\n");
        let found = CgroupMounts::under(dir.path());
        assert_eq!(found.v1_memory, Some(dir.path().join("memory")));
        assert_eq!(found.v2, Some(dir.path().join("unified")));
        write(dir.path(), "cgroup.controllers", "memory\n");
        let found = CgroupMounts::under(dir.path());
        assert_eq!(
            (found.v1_memory, found.v2),
            (None, Some(dir.path().to_owned()))
        );
    }
}
