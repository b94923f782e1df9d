//! `--match`: finds the processes whose command line matches, cheaply enough to rescan every
//! few seconds on a machine with thousands of processes. A scan lists `/proc` and reads the
//! command line only of pids it has not judged before; a pid that did not match is remembered
//! (with the inode of `/proc/PID`, so a reused pid is a new process) until it disappears.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::DirEntryExt;
use std::path::PathBuf;

use regex_lite::Regex;

use super::process;
use crate::supervise::keeper;

/// A process that matched and is not yet watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Match {
    pub(super) pid: u32,
    /// Its command line, one string per argument.
    pub(super) command: Vec<String>,
}

/// What a scan concluded about a pid it does not watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Did not match at the first look. Looked at once more at the next scan: a process
    /// caught between fork and exec still shows its parent's command line.
    LookedOnce,
    /// Not to be watched for as long as it lives: did not match twice (kernel threads and
    /// zombies, with no command line, never match), or is plimsoll's own (itself, a keeper,
    /// a hook).
    Ignored,
    /// Matches, but a watched process is its ancestor, so its memory is already counted in
    /// that tree. Judged again when a watched process exits (it may have been reparented).
    Covered,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Inode of `/proc/PID` when it was judged.
    ino: u64,
    /// The scan that last listed it.
    listed: u64,
    verdict: Verdict,
}

/// Scans `/proc` for processes whose command line (arguments joined with spaces) matches.
#[derive(Debug)]
pub(super) struct Scanner {
    proc_root: PathBuf,
    pattern: Regex,
    own_pid: u32,
    seen: HashMap<u32, Seen>,
    scans: u64,
}

/// How far up the process tree a scan looks for a watched ancestor.
const MAX_ANCESTORS: usize = 128;

impl Scanner {
    pub(super) fn new(proc_root: impl Into<PathBuf>, pattern: Regex, own_pid: u32) -> Scanner {
        Scanner {
            proc_root: proc_root.into(),
            pattern,
            own_pid,
            seen: HashMap::new(),
            scans: 0,
        }
    }

    /// The processes that match and are neither `watched` nor inside a watched tree, nor
    /// plimsoll's own. Only pids not judged before cost a read.
    pub(super) fn scan(&mut self, watched: &HashSet<u32>) -> io::Result<Vec<Match>> {
        self.scans += 1;
        let scan = self.scans;
        let mut candidates = Vec::new();
        for entry in std::fs::read_dir(&self.proc_root)? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if watched.contains(&pid) {
                continue;
            }
            let ino = entry.ino();
            let previous = match self.seen.get_mut(&pid) {
                Some(seen) if seen.ino == ino => {
                    seen.listed = scan;
                    if seen.verdict != Verdict::LookedOnce {
                        continue;
                    }
                    Some(Verdict::LookedOnce)
                }
                _ => None,
            };
            let verdict = match self.judge(pid) {
                Judged::Gone => {
                    self.seen.remove(&pid);
                    continue;
                }
                Judged::Ignored => Verdict::Ignored,
                Judged::NoMatch if previous.is_some() => Verdict::Ignored,
                Judged::NoMatch => Verdict::LookedOnce,
                Judged::Match(command) => {
                    self.seen.remove(&pid);
                    candidates.push(Match { pid, command });
                    continue;
                }
            };
            self.seen.insert(
                pid,
                Seen {
                    ino,
                    listed: scan,
                    verdict,
                },
            );
        }
        self.seen.retain(|_, seen| seen.listed == scan);
        // A match inside the tree of a watched process or of another match is counted there;
        // one inside plimsoll's own tree (a hook command) is not watched at all.
        let matched: HashSet<u32> = candidates.iter().map(|m| m.pid).collect();
        let mut found = Vec::with_capacity(candidates.len());
        for candidate in candidates {
            let verdict = match self.ancestor_of_interest(candidate.pid, watched, &matched) {
                Ancestor::None => {
                    found.push(candidate);
                    continue;
                }
                Ancestor::Watched => Verdict::Covered,
                Ancestor::Own => Verdict::Ignored,
            };
            // The inode is read again; a process gone meanwhile is simply not remembered.
            if let Ok(meta) = std::fs::metadata(self.proc_root.join(candidate.pid.to_string())) {
                use std::os::unix::fs::MetadataExt;
                self.seen.insert(
                    candidate.pid,
                    Seen {
                        ino: meta.ino(),
                        listed: scan,
                        verdict,
                    },
                );
            }
        }
        Ok(found)
    }

    /// A watched process exited: the matches its tree covered are judged again at the next
    /// scan (the kernel reparents orphans, so one may now stand alone).
    pub(super) fn forget_covered(&mut self) {
        self.seen.retain(|_, seen| seen.verdict != Verdict::Covered);
    }

    /// How many pids are remembered (for tests and the debug log).
    pub(super) fn remembered(&self) -> usize {
        self.seen.len()
    }

    fn judge(&self, pid: u32) -> Judged {
        if pid == self.own_pid {
            return Judged::Ignored;
        }
        let command = match process::command(&self.proc_root, pid) {
            Ok(command) => command,
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                return Judged::Ignored
            }
            Err(_) => return Judged::Gone,
        };
        // Keepers are plimsoll's plumbing (their target is judged on its own). An empty
        // command line is a kernel thread, a zombie, or a process in the middle of an exec:
        // no match, looked at once more like any other.
        if command.get(1).is_some_and(|a| a == keeper::SUBCOMMAND) {
            return Judged::Ignored;
        }
        if self.pattern.is_match(&command.join(" ")) {
            Judged::Match(command)
        } else {
            Judged::NoMatch
        }
    }

    /// Walks up from `pid` to the first ancestor that is watched, matched in this scan, or
    /// plimsoll itself.
    fn ancestor_of_interest(
        &self,
        pid: u32,
        watched: &HashSet<u32>,
        matched: &HashSet<u32>,
    ) -> Ancestor {
        let mut current = pid;
        for _ in 0..MAX_ANCESTORS {
            let Ok(stat) = process::stat(&self.proc_root, current) else {
                return Ancestor::None;
            };
            let parent = stat.ppid;
            if parent == 0 || parent == current {
                return Ancestor::None;
            }
            if parent == self.own_pid {
                return Ancestor::Own;
            }
            if watched.contains(&parent) || matched.contains(&parent) {
                return Ancestor::Watched;
            }
            current = parent;
        }
        Ancestor::None
    }
}

enum Judged {
    /// It exited before its command line could be read.
    Gone,
    Ignored,
    NoMatch,
    Match(Vec<String>),
}

enum Ancestor {
    None,
    Watched,
    Own,
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    /// A fake `/proc` entry: `cmdline` (arguments joined with NULs) and a `stat` naming the
    /// parent.
    fn process(root: &Path, pid: u32, ppid: u32, args: &[&str]) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).expect("dir");
        let mut cmdline = args.join("\0");
        if !args.is_empty() {
            cmdline.push('\0');
        }
        fs::write(dir.join("cmdline"), cmdline).expect("cmdline");
        fs::write(
            dir.join("stat"),
            format!("{pid} (x) S {ppid} {pid} {pid} 0"),
        )
        .expect("stat");
    }

    fn scanner(root: &Path, pattern: &str) -> Scanner {
        Scanner::new(root, Regex::new(pattern).expect("regex"), 10)
    }

    fn pids(found: io::Result<Vec<Match>>) -> Vec<u32> {
        let mut pids: Vec<u32> = found.expect("scan").iter().map(|m| m.pid).collect();
        pids.sort_unstable();
        pids
    }

    #[test]
    fn matches_the_joined_command_line_and_leaves_out_plimsolls_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        process(root, 1, 0, &["init"]);
        // Plimsoll itself (pid 10), a hook it runs, a keeper, a kernel thread.
        process(
            root,
            10,
            1,
            &["plimsoll", "watch", "--match", "node server"],
        );
        process(root, 11, 10, &["sh", "-c", "echo node server"]);
        process(root, 12, 1, &["plimsoll", "__keep", "--", "node", "server"]);
        process(root, 2, 0, &[]);
        process(root, 13, 12, &["node", "server"]);
        process(root, 14, 1, &["node", "other"]);
        let mut scanner = scanner(root, "node server");
        let found = scanner.scan(&HashSet::new()).expect("scan");
        assert_eq!(
            found,
            [Match {
                pid: 13,
                command: vec!["node".to_owned(), "server".to_owned()]
            }]
        );
    }

    #[test]
    fn a_match_inside_a_watched_tree_is_covered_until_a_watched_process_exits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        process(root, 1, 0, &["init"]);
        process(root, 20, 1, &["node", "server"]);
        process(root, 21, 20, &["node", "server", "--worker"]);
        process(root, 30, 1, &["node", "server"]);
        let mut scanner = scanner(root, "^node server");
        // Parent and child appear in the same scan: only the parent is watched.
        assert_eq!(pids(scanner.scan(&HashSet::from([30]))), [20]);
        let watched = HashSet::from([20, 30]);
        assert!(pids(scanner.scan(&watched)).is_empty());
        // The parent exits; its worker is reparented to init and stands alone.
        fs::remove_dir_all(root.join("20")).expect("rm");
        process(root, 21, 1, &["node", "server", "--worker"]);
        scanner.forget_covered();
        assert_eq!(pids(scanner.scan(&HashSet::from([30]))), [21]);
    }

    #[test]
    fn a_non_match_is_read_twice_then_remembered_until_it_disappears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        process(root, 1, 0, &["init"]);
        process(root, 40, 1, &["bash"]);
        let mut scanner = scanner(root, "^node");
        assert!(pids(scanner.scan(&HashSet::new())).is_empty());
        // Caught between fork and exec: the second look sees the new command line.
        process(root, 40, 1, &["node", "app.js"]);
        assert_eq!(pids(scanner.scan(&HashSet::new())), [40]);
        // Caught in the middle of an exec: no command line yet.
        process(root, 42, 1, &[]);
        assert!(pids(scanner.scan(&HashSet::from([40]))).is_empty());
        process(root, 42, 1, &["node", "worker.js"]);
        assert_eq!(pids(scanner.scan(&HashSet::from([40]))), [42]);
        fs::remove_dir_all(root.join("42")).expect("rm");

        process(root, 41, 1, &["bash"]);
        assert!(pids(scanner.scan(&HashSet::from([40]))).is_empty());
        assert!(pids(scanner.scan(&HashSet::from([40]))).is_empty());
        // Judged twice: no longer read (a later exec into a match goes unseen)...
        process(root, 41, 1, &["node", "late.js"]);
        assert!(pids(scanner.scan(&HashSet::from([40]))).is_empty());
        assert_eq!(scanner.remembered(), 2, "init and 41");
        // ...until the pid disappears; a process that reuses it is judged afresh.
        fs::remove_dir_all(root.join("41")).expect("rm");
        assert!(pids(scanner.scan(&HashSet::from([40]))).is_empty());
        assert_eq!(scanner.remembered(), 1, "init");
        process(root, 41, 1, &["node", "reused.js"]);
        assert_eq!(pids(scanner.scan(&HashSet::from([40]))), [41]);
    }
}
