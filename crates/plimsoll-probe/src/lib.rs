//! Reads the memory of a Linux process tree, its cgroup and the memory pressure it is under,
//! at one instant. No async and no HTTP: the supervisor calls it from its own sampling task.
//!
//! ```no_run
//! use plimsoll_probe::{Pid, Probe, SampleDepth};
//!
//! let mut probe = Probe::new(Pid(1234))?;
//! let sample = probe.sample(SampleDepth::Fast)?;
//! println!("{} processes, rss {}", sample.processes.len(), sample.rss);
//! # Ok::<(), plimsoll_probe::ProbeError>(())
//! ```
//!
//! A [`Probe`] is made once per root process and reused: it remembers how to find children
//! and the cgroup mounts. [`SampleDepth::Fast`] reads `/proc/PID/statm` of every process of
//! the tree (rss, anon, file + shmem), and its `status` (the file/shmem split, swap, name)
//! every tenth sample; [`SampleDepth::Full`] reads `status` and `smaps_rollup` (pss, uss),
//! which costs more and grows with the process size. Off Linux, [`Probe::new`] fails
//! with [`ProbeError::Unsupported`]; the data types are the same everywhere.

mod cgroup_files;
mod error;
mod proc_files;
mod sample;
mod units;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod unsupported;
// The off-Linux stub is also compiled (and tested) here, so that it keeps up with the API.
#[cfg(all(test, target_os = "linux"))]
#[allow(dead_code, unreachable_pub)]
#[path = "unsupported.rs"]
mod unsupported_stub;

pub use crate::error::{ParseError, ProbeError};
pub use crate::sample::{
    CgroupFigures, CgroupMemory, CgroupVersion, ChildrenSource, Detail, ProcessMemory, Psi,
    PsiScope, Sample, SampleDepth,
};
pub use crate::units::{Bytes, Pid};

#[cfg(target_os = "linux")]
pub use crate::linux::{CgroupMounts, CgroupReader, Probe};
#[cfg(not(target_os = "linux"))]
pub use crate::unsupported::{CgroupMounts, CgroupReader, Probe};
