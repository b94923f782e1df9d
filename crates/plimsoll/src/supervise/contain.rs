//! Containment of a target, so that no part of it outlives its supervisor: a cgroup per target
//! where one can be made (cgroup v2, else the v1 memory hierarchy), the keeper as the child
//! subreaper of the tree (orphans, even ones that `setsid` or double-fork, re-parent to it), and
//! the keeper's process group as the fallback. The keeper creates the cgroup under its own (the
//! supervisor's) cgroup, the target joins it between fork and exec, and whoever ends the run
//! kills every process in it and removes it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Environment: restricts the containment to one kind (`cgroup-v2`, `cgroup-v1` or
/// `subreaper+pgroup`), for tests and for hosts where a cgroup must not be made.
pub(crate) const ENV_CONTAINMENT: &str = "PLIMSOLL_CONTAINMENT";

/// How a target is contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Containment {
    /// Its own cgroup v2 (killed at once through `cgroup.kill` where the kernel has it).
    CgroupV2,
    /// Its own cgroup in the v1 memory hierarchy.
    CgroupV1,
    /// The keeper's process group plus the keeper as child subreaper.
    SubreaperPgroup,
}

impl Containment {
    /// The name shown in `/health`, the events and the log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Containment::CgroupV2 => "cgroup-v2",
            Containment::CgroupV1 => "cgroup-v1",
            Containment::SubreaperPgroup => "subreaper+pgroup",
        }
    }

    /// Reads a name written by [`Containment::as_str`].
    pub(crate) fn parse(text: &str) -> Option<Containment> {
        [
            Containment::CgroupV2,
            Containment::CgroupV1,
            Containment::SubreaperPgroup,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }
}

/// A cgroup made for one target.
#[derive(Debug)]
pub(crate) struct Cgroup {
    /// Its directory in the cgroup file system.
    pub(crate) path: PathBuf,
    /// Which hierarchy it is in.
    pub(crate) kind: Containment,
    /// `cgroup.procs`, open for writing: the target writes "0" to it between fork and exec.
    pub(crate) procs: fs::File,
}

impl Cgroup {
    /// Makes a cgroup named `leaf` under this process's own cgroup: v2 first, then the v1
    /// memory hierarchy; `only` restricts the choice. `None` when neither can be made.
    pub(crate) fn create(leaf: &str, only: Option<Containment>) -> Option<Cgroup> {
        let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
        let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
        for kind in [Containment::CgroupV2, Containment::CgroupV1] {
            if only.is_some_and(|o| o != kind) {
                continue;
            }
            let Some(parent) = own_cgroup_dir(&cgroups, &mounts, kind) else {
                continue;
            };
            // A v2 child without the memory controller would hide the memory figures (and the
            // limit, the default budget) the target has in its parent: unless asked for, the
            // keeper then does without (the v1 memory hierarchy, or subreaper + group).
            if kind == Containment::CgroupV2 && only.is_none() && !memory_follows(&parent) {
                continue;
            }
            sweep_stale(&parent);
            let path = parent.join(leaf);
            if fs::create_dir(&path).is_err() {
                continue;
            }
            match fs::OpenOptions::new()
                .write(true)
                .open(path.join("cgroup.procs"))
            {
                Ok(procs) => return Some(Cgroup { path, kind, procs }),
                Err(_) => {
                    let _ = fs::remove_dir(&path);
                }
            }
        }
        None
    }
}

/// Whether a v2 child of `parent` keeps the memory figures of `parent`: the memory controller
/// is enabled for its children, or `parent` has no figures to lose (the root).
fn memory_follows(parent: &Path) -> bool {
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control"))
        .is_ok_and(|t| t.split_whitespace().any(|c| c == "memory"));
    enabled || !parent.join("memory.current").exists()
}

/// The prefix of the cgroups keepers make, followed by the keeper's pid.
pub(crate) const LEAF_PREFIX: &str = "plimsoll-keeper-";

/// Empties and removes the cgroups under `parent` left by keepers that are gone (a keeper and
/// its supervisor both killed with SIGKILL): whatever is in them escaped a dead supervisor.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(LEAF_PREFIX))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // A keeper killed with its supervisor may stay a zombie: dead all the same.
        if process(pid).is_none_or(|p| p.state == 'Z') {
            destroy_cgroup(&entry.path(), Duration::from_secs(1));
        }
    }
}

/// The live processes in the cgroup at `path` (zombies are dead already).
pub(crate) fn cgroup_pids(path: &Path) -> Vec<Pid> {
    fs::read_to_string(path.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .filter(|&pid| process(pid).is_some_and(|p| p.state != 'Z'))
        .map(Pid::from_raw)
        .collect()
}

/// Sends `signal` to every process in the cgroup at `path` (SIGKILL through `cgroup.kill`
/// where the kernel has it).
pub(crate) fn signal_cgroup(path: &Path, signal: Signal) {
    if signal == Signal::SIGKILL && fs::write(path.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for pid in cgroup_pids(path) {
        let _ = kill(pid, signal);
    }
}

/// Kills every process in the cgroup at `path` until it is empty, then removes it; gives up
/// after `within` (a process that forks faster than it is killed, or an unkillable one).
pub(crate) fn destroy_cgroup(path: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        signal_cgroup(path, Signal::SIGKILL);
        // rmdir succeeds once no live process is left in it.
        match fs::remove_dir(path) {
            Ok(()) => return,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(error) => {
                crate::stdout::errln!(
                    "plimsoll: cannot remove the target's cgroup '{}': {error}",
                    path.display()
                );
                return;
            }
        }
    }
}

/// This process's cgroup directory in the hierarchy of `kind`, from `/proc/self/cgroup` and
/// `/proc/self/mountinfo`.
fn own_cgroup_dir(cgroups: &str, mounts: &str, kind: Containment) -> Option<PathBuf> {
    let relative = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match kind {
            Containment::CgroupV2 => id == "0" && controllers.is_empty(),
            _ => controllers.split(',').any(|c| c == "memory"),
        };
        wanted.then(|| path.to_owned())
    })?;
    let mount = mounts.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER-OPTIONS
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let after: Vec<&str> = after.split(' ').collect();
        let (root, point) = (fields.get(3)?, fields.get(4)?);
        let wanted = match kind {
            Containment::CgroupV2 => after.first() == Some(&"cgroup2"),
            _ => {
                after.first() == Some(&"cgroup")
                    && after
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|o| o == "memory"))
            }
        };
        (wanted && *root == "/").then(|| PathBuf::from(point))
    })?;
    let dir = mount.join(relative.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// How the process `pid` is contained by a plimsoll keeper, if it is (for `check`): its cgroup
/// is a keeper's, or a keeper is among its ancestors.
pub(crate) fn containment_of(pid: u32) -> Option<Containment> {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for line in cgroups.lines() {
        if line.contains(&format!("/{LEAF_PREFIX}")) {
            return Some(if line.starts_with("0::") {
                Containment::CgroupV2
            } else {
                Containment::CgroupV1
            });
        }
    }
    let mut current = i32::try_from(pid).ok()?;
    // The chain up to init is short; the bound only guards against a loop in a racing read.
    for _ in 0..64 {
        let parent = process(current)?.ppid;
        if parent <= 1 {
            return None;
        }
        let cmdline = fs::read(format!("/proc/{parent}/cmdline")).unwrap_or_default();
        if cmdline.split(|&b| b == 0).nth(1) == Some(super::keeper::SUBCOMMAND.as_bytes()) {
            return Some(Containment::SubreaperPgroup);
        }
        current = parent;
    }
    None
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Process {
    pub(crate) pid: i32,
    pub(crate) state: char,
    pub(crate) ppid: i32,
    pub(crate) pgid: i32,
}

/// Reads `/proc/PID/stat`; `None` when the process is gone.
pub(crate) fn process(pid: i32) -> Option<Process> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state, ppid, pgrp.
    let (_, after) = stat.rsplit_once(')')?;
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(Process {
        pid,
        state,
        ppid,
        pgid,
    })
}

/// Every process on the machine, as far as it can be read.
pub(crate) fn processes() -> Vec<Process> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(process)
        .collect()
}

/// The live processes of `all` that descend from `root` or are in its process `group`,
/// without `root` itself.
pub(crate) fn tree_and_group(all: &[Process], root: i32, group: i32) -> Vec<Process> {
    let mut found: Vec<Process> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| p.ppid == parent && p.pid != root) {
            if !found.iter().any(|f| f.pid == p.pid) {
                found.push(*p);
                frontier.push(p.pid);
            }
        }
    }
    for p in all.iter().filter(|p| p.pgid == group && p.pid != root) {
        if !found.iter().any(|f| f.pid == p.pid) {
            found.push(*p);
        }
    }
    found.retain(|p| p.state != 'Z');
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const CGROUPS: &str = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/user.slice\n";
    const MOUNTS: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        35 31 0:32 / /tmp rw,relatime - cgroup cgroup rw,memory\n\
        41 31 0:38 / /nonexistent/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn the_own_cgroup_is_found_in_each_hierarchy() {
        // The v2 mount does not exist here: no directory, no cgroup.
        assert_eq!(own_cgroup_dir(CGROUPS, MOUNTS, Containment::CgroupV2), None);
        let tmp = tempfile::tempdir_in("/tmp").expect("tempdir");
        let name = tmp.path().file_name().expect("name").to_string_lossy();
        let cgroups = format!("4:cpu,memory:/{name}\n0::/\n");
        assert_eq!(
            own_cgroup_dir(&cgroups, MOUNTS, Containment::CgroupV1),
            Some(tmp.path().to_path_buf())
        );
    }

    #[test]
    fn a_v2_child_is_made_only_where_it_keeps_the_memory_figures() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The root: no figures to lose.
        assert!(memory_follows(dir.path()));
        std::fs::write(dir.path().join("memory.current"), "4096\n").expect("write");
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu io\n").expect("write");
        assert!(!memory_follows(dir.path()));
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu memory\n").expect("write");
        assert!(memory_follows(dir.path()));
    }

    #[test]
    fn names_round_trip() {
        for c in [
            Containment::CgroupV2,
            Containment::CgroupV1,
            Containment::SubreaperPgroup,
        ] {
            assert_eq!(Containment::parse(c.as_str()), Some(c));
        }
        assert_eq!(Containment::parse("jail"), None);
    }

    #[test]
    fn the_tree_and_the_group_are_found_without_the_root() {
        let p = |pid, ppid, pgid, state| Process {
            pid,
            state,
            ppid,
            pgid,
        };
        let all = [
            p(10, 1, 10, 'S'),  // the keeper
            p(11, 10, 10, 'S'), // the target
            p(12, 11, 12, 'S'), // setsid under the target
            p(13, 12, 12, 'S'), // its child
            p(14, 1, 10, 'S'),  // reparented elsewhere, still in the group
            p(15, 10, 15, 'Z'), // a zombie orphan
            p(16, 1, 16, 'S'),  // unrelated
        ];
        let mut pids: Vec<i32> = tree_and_group(&all, 10, 10).iter().map(|p| p.pid).collect();
        pids.sort_unstable();
        assert_eq!(pids, [11, 12, 13, 14]);
    }
}
