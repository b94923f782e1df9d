//! File descriptors, the resource a connection flood or a large `watch` runs out of first: the
//! limit raised at start, the shares of it the HTTP server and `watch` may take, and the one
//! test for "out of descriptors" that the accept loops and the samplers share.

use std::io;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept free for everything that is not an HTTP connection or a watched process:
/// the store, the sockets, the sinks, and the transient `/proc` reads of a sample.
const RESERVE: u64 = 24;

/// The soft limit on open files this process was started with, before `raise_limit`.
static ORIGINAL_SOFT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Raises the soft limit on open files to the hard limit, so that the supervisor has room
/// to work; returns the soft limit in effect afterwards. The original is kept for targets
/// (`original_limit`): a program may rely on the usual 1024 (`select(2)`).
pub(crate) fn raise_limit() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return limit();
    };
    let _ = ORIGINAL_SOFT.set(soft);
    if soft < hard {
        if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::debug!(%error, soft, hard, "cannot raise the open-file limit");
            return soft;
        }
    }
    hard.max(soft)
}

/// The soft limit on open files before `raise_limit` raised it (`None` when it did not run).
pub(crate) fn original_limit() -> Option<u64> {
    ORIGINAL_SOFT.get().copied()
}

/// The soft limit on open files now (1024 when it cannot be read, the usual default).
pub(crate) fn limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// How many HTTP connections may be open at once under a limit of `limit` descriptors: a
/// quarter of it, at least 4 and at most 1024. A supervisor answers scrapes and a dashboard;
/// a flood past this is closed at once rather than allowed to starve the sampler.
pub(crate) fn http_connections(limit: u64) -> usize {
    usize::try_from((limit / 4).clamp(4, 1024)).unwrap_or(1024)
}

/// How many more descriptors `watch` may hold open for its probes (one each), given that
/// `open` are open now under a limit of `limit`: what is left after the HTTP server's share
/// and a reserve for the rest.
pub(crate) fn probe_room(limit: u64, open: u64) -> usize {
    let room = limit
        .saturating_sub(open)
        .saturating_sub(http_connections(limit) as u64)
        .saturating_sub(RESERVE);
    usize::try_from(room).unwrap_or(usize::MAX)
}

/// How many descriptors this process has open (`None` when `/proc/self/fd` cannot be read,
/// which is itself a sign of running out).
pub(crate) fn open_now() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory's own descriptor is counted too: take it off.
    Some((entries.count() as u64).saturating_sub(1))
}

/// Whether `error` means the process (EMFILE) or the system (ENFILE) has no descriptor left,
/// or the kernel no buffer for one: conditions that pass, unlike a bad address.
pub(crate) fn exhausted(error: &io::Error) -> bool {
    use nix::errno::Errno;
    error.raw_os_error().is_some_and(|code| {
        [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM]
            .contains(&Errno::from_raw(code))
    })
}

/// Whether a probe failed for want of a descriptor (the process is fine; the next sample may
/// work).
pub(crate) fn probe_exhausted(error: &plimsoll_probe::ProbeError) -> bool {
    matches!(error, plimsoll_probe::ProbeError::Io { source, .. } if exhausted(source))
}

/// A warning that is logged once per burst: at the first occurrence, then at most once per
/// `every`, with how many occurrences it stood for.
#[derive(Debug)]
pub(crate) struct Burst {
    every: Duration,
    last: Option<Instant>,
    unreported: u64,
}

impl Burst {
    /// A burst logger that speaks at most once per `every`.
    pub(crate) fn new(every: Duration) -> Burst {
        Burst {
            every,
            last: None,
            unreported: 0,
        }
    }

    /// Counts one occurrence at `now`; `Some(n)` when it should be logged now, standing for
    /// `n` occurrences (this one included).
    pub(crate) fn hit(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_share_is_a_quarter_within_bounds() {
        assert_eq!(http_connections(64), 16);
        assert_eq!(http_connections(256), 64);
        assert_eq!(http_connections(8), 4);
        assert_eq!(http_connections(1 << 20), 1024);
    }

    #[test]
    fn probe_room_leaves_the_http_share_and_the_reserve() {
        assert_eq!(probe_room(64, 20), 64 - 20 - 16 - 24);
        assert_eq!(probe_room(64, 60), 0);
        assert_eq!(probe_room(1 << 20, 100), (1 << 20) - 100 - 1024 - 24);
    }

    #[test]
    fn exhaustion_is_emfile_and_enfile_not_other_errors() {
        assert!(exhausted(&io::Error::from_raw_os_error(nix::libc::EMFILE)));
        assert!(exhausted(&io::Error::from_raw_os_error(nix::libc::ENFILE)));
        assert!(!exhausted(&io::Error::from_raw_os_error(
            nix::libc::ECONNABORTED
        )));
        assert!(!exhausted(&io::ErrorKind::NotFound.into()));
    }

    #[test]
    fn a_burst_speaks_once_then_sums_what_it_held_back() {
        let start = Instant::now();
        let mut burst = Burst::new(Duration::from_secs(10));
        assert_eq!(burst.hit(start), Some(1));
        assert_eq!(burst.hit(start + Duration::from_secs(1)), None);
        assert_eq!(burst.hit(start + Duration::from_secs(2)), None);
        assert_eq!(burst.hit(start + Duration::from_secs(11)), Some(3));
    }

    #[test]
    fn the_raised_limit_is_the_soft_limit_in_effect() {
        let raised = raise_limit();
        assert_eq!(raised, limit());
    }
}
