//! The probe off Linux: the same API, failing with [`ProbeError::Unsupported`], so that the
//! rest of Plimsoll builds (and can analyse recorded series) everywhere.

use std::path::{Path, PathBuf};

use crate::error::ProbeError;
use crate::sample::{CgroupFigures, CgroupVersion, ChildrenSource, Sample, SampleDepth};
use crate::units::Pid;

/// Samples the memory of one process tree; on this platform it cannot be made.
#[derive(Debug)]
pub struct Probe {
    root: Pid,
}

impl Probe {
    /// Fails with [`ProbeError::Unsupported`]: there is no `/proc` here.
    pub fn new(root: Pid) -> Result<Probe, ProbeError> {
        let _ = root;
        Err(ProbeError::Unsupported(std::env::consts::OS))
    }

    /// Fails with [`ProbeError::Unsupported`]: there is no `/proc` here.
    pub fn with_proc_root(root: Pid, proc_root: impl Into<PathBuf>) -> Result<Probe, ProbeError> {
        let _ = proc_root.into();
        Probe::new(root)
    }

    /// The root process of the tree.
    pub fn root(&self) -> Pid {
        self.root
    }

    /// How this probe finds the root's descendants.
    pub fn children_source(&self) -> ChildrenSource {
        ChildrenSource::ProcScan
    }

    /// Fails with [`ProbeError::Unsupported`].
    pub fn sample(&mut self, depth: SampleDepth) -> Result<Sample, ProbeError> {
        let _ = depth;
        Err(ProbeError::Unsupported(std::env::consts::OS))
    }

    /// Fails with [`ProbeError::Unsupported`].
    pub fn sample_with_last_cgroup(&mut self, depth: SampleDepth) -> Result<Sample, ProbeError> {
        self.sample(depth)
    }
}

/// Where the memory cgroup hierarchies are mounted: nowhere on this platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The mount point of the v1 hierarchy with the memory controller, if any.
    pub v1_memory: Option<PathBuf>,
    /// The mount point of the v2 (unified) hierarchy, if any.
    pub v2: Option<PathBuf>,
}

impl CgroupMounts {
    /// Fails with [`ProbeError::Unsupported`].
    pub fn from_proc_root(proc_root: &Path) -> Result<CgroupMounts, ProbeError> {
        let _ = proc_root;
        Err(ProbeError::Unsupported(std::env::consts::OS))
    }

    /// None: there are no cgroups here.
    pub fn under(dir: &Path) -> CgroupMounts {
        let _ = dir;
        CgroupMounts::default()
    }
}

/// Reads one cgroup's memory figures; on this platform every read fails.
#[derive(Debug)]
pub struct CgroupReader {
    dir: PathBuf,
    version: CgroupVersion,
}

impl CgroupReader {
    /// A reader that will fail.
    pub fn new(dir: PathBuf, version: CgroupVersion, top: PathBuf) -> CgroupReader {
        let _ = top;
        CgroupReader { dir, version }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Which hierarchy it is in.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Fails with [`ProbeError::Unsupported`].
    pub fn read(&mut self) -> Result<CgroupFigures, ProbeError> {
        Err(ProbeError::Unsupported(std::env::consts::OS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constructor_says_unsupported() {
        let error = Probe::new(Pid(1)).expect_err("unsupported");
        assert!(matches!(error, ProbeError::Unsupported(_)), "{error:?}");
        assert!(error.to_string().starts_with("memory probing needs Linux"));
        let error = Probe::with_proc_root(Pid(1), "/proc").expect_err("unsupported");
        assert!(matches!(error, ProbeError::Unsupported(_)), "{error:?}");
    }
}
