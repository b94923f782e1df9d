//! What the allocator itself knows: jemalloc's statistics, returning freed memory to the OS
//! and (feature `pprof`) heap profiles, for services that run on jemalloc.
//!
//! The service declares the allocator itself, in its binary:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
//!
//! fn main() {
//!     assert!(plimsoll_guard::alloc::in_use());
//! }
//! ```
//!
//! Without that line jemalloc is still linked and answers, but it serves no allocation of the
//! program: [`in_use`] tells the two cases apart.
//!
//! [`stats`] and [`purge`] are synchronous and cheap (a few `mallctl` calls; a purge also
//! returns pages to the kernel, which takes time in proportion to the dirty memory): call them
//! from the blocking pool when that matters.

use std::hint::black_box;

use plimsoll_probe::Bytes;
use tikv_jemalloc_ctl::{epoch, stats as ctl_stats, thread};

/// The environment variable and value that turn jemalloc's sampling heap profiler on at start.
#[cfg(feature = "pprof")]
pub const PROFILING_CONF: &str = "_RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19";

/// Why an allocator query or action failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// A `mallctl` read or write failed (for example a statistic jemalloc was built without).
    #[error("jemalloc control '{key}' failed")]
    Ctl {
        /// The `mallctl` name.
        key: &'static str,
        /// jemalloc's error code.
        #[source]
        source: tikv_jemalloc_ctl::Error,
    },
    /// `arena.<all>.purge` returned an error code.
    #[error("jemalloc control 'arena.4096.purge' failed")]
    Purge {
        /// The error code as an OS error (jemalloc returns `errno` values).
        #[source]
        source: std::io::Error,
    },
    /// The process was started without jemalloc's profiler (`opt.prof` is false); it can only be
    /// turned on at start.
    #[cfg(feature = "pprof")]
    #[error("jemalloc heap profiling was not enabled at start (start the process with {PROFILING_CONF})")]
    ProfilingDisabled,
    /// The profiler is enabled (`prof:true`) but not sampling (`prof_active:false`).
    #[cfg(feature = "pprof")]
    #[error(
        "jemalloc heap profiling is enabled but not active (start with {PROFILING_CONF}, or call \
         jemalloc_pprof::activate_jemalloc_profiling first)"
    )]
    ProfilingInactive,
    /// Dumping, reading or converting the heap profile failed.
    #[cfg(feature = "pprof")]
    #[error("dumping the jemalloc heap profile failed")]
    Profile {
        /// What jemalloc_pprof or the blocking task reported.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// jemalloc's process-wide statistics at one epoch.
///
/// The figures nest: allocated ≤ active ≤ resident ≤ mapped (roughly; resident also counts
/// metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocStats {
    /// Bytes in live allocations made by the application (`stats.allocated`).
    pub allocated_bytes: Bytes,
    /// Bytes in pages that hold live allocations, a multiple of the page size
    /// (`stats.active`).
    pub active_bytes: Bytes,
    /// Bytes in physically resident pages that jemalloc maps, including freed pages not yet
    /// returned to the OS and metadata (`stats.resident`); the part of the RSS jemalloc accounts
    /// for.
    pub resident_bytes: Bytes,
    /// Bytes of virtual memory kept mapped but returned to the OS, for reuse
    /// (`stats.retained`); costs address space, not memory.
    pub retained_bytes: Bytes,
    /// Bytes in active extents mapped by jemalloc (`stats.mapped`).
    pub mapped_bytes: Bytes,
}

/// The resident figure around a [`purge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    /// `stats.resident` just before the purge, in bytes.
    pub resident_before: Bytes,
    /// `stats.resident` just after the purge, in bytes.
    pub resident_after: Bytes,
}

/// Reads jemalloc's statistics after advancing the epoch, so that they are current (jemalloc
/// caches them between epochs).
pub fn stats() -> Result<AllocStats, AllocError> {
    epoch::advance().map_err(ctl_error("epoch"))?;
    let read = |key: &'static str, value: tikv_jemalloc_ctl::Result<usize>| {
        value
            .map(|bytes| Bytes(bytes as u64))
            .map_err(ctl_error(key))
    };
    Ok(AllocStats {
        allocated_bytes: read("stats.allocated", ctl_stats::allocated::read())?,
        active_bytes: read("stats.active", ctl_stats::active::read())?,
        resident_bytes: read("stats.resident", ctl_stats::resident::read())?,
        retained_bytes: read("stats.retained", ctl_stats::retained::read())?,
        mapped_bytes: read("stats.mapped", ctl_stats::mapped::read())?,
    })
}

/// Returns the unused dirty pages of every arena to the OS at once
/// (`arena.<MALLCTL_ARENAS_ALL>.purge`), instead of waiting for jemalloc's decay (10 s by
/// default), and reports `stats.resident` before and after.
///
/// Memory that is still allocated is not touched: a purge lowers the RSS only by what the
/// program has already freed.
pub fn purge() -> Result<PurgeReport, AllocError> {
    let resident_before = stats()?.resident_bytes;
    purge_all_arenas()?;
    let resident_after = stats()?.resident_bytes;
    Ok(PurgeReport {
        resident_before,
        resident_after,
    })
}

/// Whether jemalloc is the program's global allocator.
///
/// The check: jemalloc's per-thread counter of bytes ever allocated (`thread.allocatedp`) is
/// read, one MiB is allocated through the global allocator and the counter is read again. When
/// jemalloc served the allocation the counter grew by at least that MiB; when another allocator
/// is global (jemalloc is then linked but idle) it did not move. Any error reading the counter
/// means "no". The global allocator cannot change while the program runs: the check is made
/// once and remembered (the monitor asks at every sample).
pub fn in_use() -> bool {
    static IN_USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN_USE.get_or_init(allocation_is_counted)
}

fn allocation_is_counted() -> bool {
    const PROBE: usize = 1024 * 1024;
    let Ok(counter) = thread::allocatedp::read() else {
        return false;
    };
    let before = counter.get();
    let buffer = black_box(Vec::<u8>::with_capacity(PROBE));
    let after = counter.get();
    drop(buffer);
    after.saturating_sub(before) >= PROBE as u64
}

/// Calls `arena.4096.purge` (4096 is `MALLCTL_ARENAS_ALL`). This mallctl takes and returns
/// nothing: jemalloc refuses it (EPERM) unless all four value pointers are null, which the ctl
/// crate's typed and raw APIs never pass, hence the direct call.
#[allow(unsafe_code)]
fn purge_all_arenas() -> Result<(), AllocError> {
    const NAME: &[u8] = b"arena.4096.purge\0";
    // SAFETY: NAME is a NUL-terminated string that lives for the whole call; the old-value and
    // new-value pointers are null with zero length, which is what this "neither read nor
    // write" control requires, so jemalloc reads and writes no memory of ours.
    let code = unsafe {
        tikv_jemalloc_sys::mallctl(
            NAME.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if code == 0 {
        Ok(())
    } else {
        Err(AllocError::Purge {
            source: std::io::Error::from_raw_os_error(code),
        })
    }
}

fn ctl_error(key: &'static str) -> impl Fn(tikv_jemalloc_ctl::Error) -> AllocError {
    move |source| AllocError::Ctl { key, source }
}

/// A heap profile of the live allocations sampled so far, as gzip-compressed pprof protobuf
/// (what `go tool pprof` and Pyroscope read), taken through `jemalloc_pprof`'s [`PROF_CTL`].
///
/// The profiler must have been enabled when the process started, with the environment
/// variable `_RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19` (one sample per
/// 512 KiB allocated on average); otherwise this returns [`AllocError::ProfilingDisabled`] (or
/// [`AllocError::ProfilingInactive`] when `prof_active` is false and profiling was not
/// activated since). The dump (a temporary file, parsed and converted) runs on the blocking
/// pool, holding `PROF_CTL`'s async lock, so concurrent calls take turns.
///
/// [`PROF_CTL`]: jemalloc_pprof::PROF_CTL
#[cfg(feature = "pprof")]
pub async fn heap_profile_pprof() -> Result<Vec<u8>, AllocError> {
    let ctl = jemalloc_pprof::PROF_CTL
        .as_ref()
        .ok_or(AllocError::ProfilingDisabled)?;
    let mut ctl = ctl.clone().lock_owned().await;
    if !ctl.activated() {
        return Err(AllocError::ProfilingInactive);
    }
    tokio::task::spawn_blocking(move || ctl.dump_pprof())
        .await
        .map_err(|error| AllocError::Profile {
            source: Box::new(error),
        })?
        .map_err(|error| AllocError::Profile {
            source: error.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The library's unit tests run on the system allocator: jemalloc is linked (the ctl calls
    // answer) but serves nothing.
    #[test]
    fn in_use_is_false_when_jemalloc_is_not_the_global_allocator() {
        assert!(!in_use());
    }

    #[test]
    fn stats_answer_even_when_jemalloc_is_idle() {
        let stats = stats().expect("jemalloc statistics");
        assert!(stats.allocated_bytes <= stats.active_bytes, "{stats:?}");
    }
}
