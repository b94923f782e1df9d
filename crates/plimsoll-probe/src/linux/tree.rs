//! Finding the descendants of the root process: through the kernel's `children` files where
//! it has them, else by scanning `/proc` for parent pids, remembering parents between samples
//! so that a sampling loop reads only what changed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};

use crate::error::ProbeError;
use crate::proc_files::{parse_children, parse_stat_ppid};
use crate::sample::ChildrenSource;
use crate::units::Pid;

/// A remembered parent: valid while `/proc/PID` keeps its inode (the same process) and the
/// parent's `/proc` entry keeps the inode it had (the same parent, not a reused pid).
#[derive(Debug, Clone, Copy)]
struct Parent {
    /// Inode of `/proc/PID` when the parent was read.
    ino: u64,
    /// The parent pid read from `/proc/PID/stat`.
    ppid: u32,
    /// Inode of `/proc/PPID` at that time; `None` when the parent was not listed (pid 0, or a
    /// parent outside this pid namespace).
    parent_ino: Option<u64>,
}

/// Walks the process tree of one root; created once and reused for every sample.
#[derive(Debug)]
pub(crate) struct Tree {
    source: ChildrenSource,
    proc_root: PathBuf,
    /// `ProcScan`: parents remembered between samples.
    parents: HashMap<u32, Parent>,
    /// `ProcScan`: this scan's listing of `/proc`, pid → inode.
    listing: HashMap<u32, u64>,
    /// `ProcScan`: (ppid, pid) pairs sorted by ppid, to find children by binary search.
    edges: Vec<(u32, u32)>,
    /// Children of one process, read from `children` files.
    kids: Vec<u32>,
    stack: Vec<(u32, u32)>,
    visited: HashSet<u32>,
    text: String,
}

impl Tree {
    /// Chooses the source: `children` files when the root has one, else a `/proc` scan.
    pub(crate) fn new(proc_root: &Path, root: Pid) -> Tree {
        let children_file = proc_root
            .join(root.0.to_string())
            .join("task")
            .join(root.0.to_string())
            .join("children");
        let source = if children_file.exists() {
            ChildrenSource::TaskChildren
        } else {
            ChildrenSource::ProcScan
        };
        Tree::with_source(proc_root, source)
    }

    pub(crate) fn with_source(proc_root: &Path, source: ChildrenSource) -> Tree {
        Tree {
            source,
            proc_root: proc_root.to_owned(),
            parents: HashMap::new(),
            listing: HashMap::new(),
            edges: Vec::new(),
            kids: Vec::new(),
            stack: Vec::new(),
            visited: HashSet::new(),
            text: String::with_capacity(1024),
        }
    }

    pub(crate) fn source(&self) -> ChildrenSource {
        self.source
    }

    /// Fills `out` with the root and its descendants in depth-first pre-order, each with its
    /// depth, siblings by ascending pid. Processes that vanish meanwhile are left out.
    pub(crate) fn walk(&mut self, root: Pid, out: &mut Vec<(Pid, u32)>) -> Result<(), ProbeError> {
        if self.source == ChildrenSource::ProcScan {
            self.scan()?;
        }
        out.clear();
        self.visited.clear();
        self.stack.clear();
        self.stack.push((root.0, 0));
        while let Some((pid, depth)) = self.stack.pop() {
            if !self.visited.insert(pid) {
                continue;
            }
            out.push((Pid(pid), depth));
            self.kids.clear();
            match self.source {
                ChildrenSource::TaskChildren => {
                    read_task_children(&self.proc_root, pid, &mut self.text, &mut self.kids)?;
                }
                ChildrenSource::ProcScan => {
                    let start = self.edges.partition_point(|&(ppid, _)| ppid < pid);
                    let end = self.edges.partition_point(|&(ppid, _)| ppid <= pid);
                    self.kids
                        .extend(self.edges[start..end].iter().map(|&(_, child)| child));
                }
            }
            self.kids.sort_unstable();
            self.kids.dedup();
            // Reversed, so that the smallest pid is popped first. The root is never its own
            // descendant, whatever a stale parent says.
            for &kid in self.kids.iter().rev() {
                if kid != root.0 {
                    self.stack.push((kid, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// Lists `/proc` and brings the remembered parents up to date, reading `stat` only for
    /// processes that are new or whose parent changed.
    fn scan(&mut self) -> Result<(), ProbeError> {
        self.listing.clear();
        let entries = fs::read_dir(&self.proc_root).map_err(|source| ProbeError::Io {
            path: self.proc_root.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ProbeError::Io {
                path: self.proc_root.clone(),
                source,
            })?;
            let name = entry.file_name();
            if let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) {
                self.listing.insert(pid, entry.ino());
            }
        }
        let listing = &self.listing;
        self.parents.retain(|pid, parent| {
            listing.get(pid) == Some(&parent.ino)
                && listing.get(&parent.ppid).copied() == parent.parent_ino
        });
        for (&pid, &ino) in &self.listing {
            if self.parents.contains_key(&pid) {
                continue;
            }
            // Any failure to read an unrelated process's stat (it exited, or is being torn
            // down) only leaves it out of this sample; it is tried again next time.
            let path = self.proc_root.join(pid.to_string()).join("stat");
            if read_into(&path, &mut self.text).is_err() {
                continue;
            }
            let Ok(ppid) = parse_stat_ppid(&self.text) else {
                continue;
            };
            let parent_ino = self.listing.get(&ppid).copied();
            self.parents.insert(
                pid,
                Parent {
                    ino,
                    ppid,
                    parent_ino,
                },
            );
        }
        self.edges.clear();
        self.edges
            .extend(self.parents.iter().map(|(&pid, parent)| (parent.ppid, pid)));
        self.edges.sort_unstable();
        Ok(())
    }
}

/// Appends the children of every thread of `pid` to `kids`. A process that exits meanwhile
/// has no children.
fn read_task_children(
    proc_root: &Path,
    pid: u32,
    text: &mut String,
    kids: &mut Vec<u32>,
) -> Result<(), ProbeError> {
    let task_dir = proc_root.join(pid.to_string()).join("task");
    let tasks = match fs::read_dir(&task_dir) {
        Ok(tasks) => tasks,
        Err(error) if vanished(&error) => return Ok(()),
        Err(source) => {
            return Err(ProbeError::Io {
                path: task_dir,
                source,
            })
        }
    };
    for task in tasks {
        let Ok(task) = task else {
            // The process exited while its threads were being listed.
            return Ok(());
        };
        let path = task.path().join("children");
        match read_into(&path, text) {
            Ok(()) => {}
            Err(error) if vanished(&error) => continue,
            Err(source) => return Err(ProbeError::Io { path, source }),
        }
        let found = parse_children(text).map_err(|source| ProbeError::Parse { path, source })?;
        kids.extend(found);
    }
    Ok(())
}

/// Whether an error reading a process's file means the process (or thread) is gone.
pub(crate) fn vanished(error: &io::Error) -> bool {
    const ESRCH: i32 = 3;
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(ESRCH)
}

/// Reads a whole file into `text`, reusing its allocation.
pub(crate) fn read_into(path: &Path, text: &mut String) -> io::Result<()> {
    text.clear();
    fs::File::open(path)?.read_to_string(text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("mkdir");
        }
        fs::write(path, text).expect("write");
    }

    fn stat(proc_root: &Path, pid: u32, ppid: u32) {
        let text = format!("{pid} (proc {pid}) S {ppid} {pid} {pid} 0 -1 4194560 0 0\n");
        write(&proc_root.join(pid.to_string()).join("stat"), &text);
    }

    fn walk(tree: &mut Tree, root: u32) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        tree.walk(Pid(root), &mut out).expect("walk");
        out.into_iter().map(|(pid, depth)| (pid.0, depth)).collect()
    }

    #[test]
    fn task_children_of_every_thread_make_the_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_root = dir.path();
        write(&proc_root.join("100/task/100/children"), "300 200 ");
        write(&proc_root.join("100/task/101/children"), "400\n");
        write(&proc_root.join("200/task/200/children"), "");
        write(&proc_root.join("300/task/300/children"), "500 ");
        write(&proc_root.join("500/task/500/children"), "");
        // 400 is listed but already gone: no directory, no children, no error.
        let mut tree = Tree::new(proc_root, Pid(100));
        assert_eq!(tree.source(), ChildrenSource::TaskChildren);
        assert_eq!(
            walk(&mut tree, 100),
            [(100, 0), (200, 1), (300, 1), (500, 2), (400, 1)]
        );
        assert_eq!(walk(&mut tree, 300), [(300, 0), (500, 1)]);
    }

    #[test]
    fn a_root_listed_as_its_own_descendant_is_not_walked_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_root = dir.path();
        write(&proc_root.join("100/task/100/children"), "200");
        write(&proc_root.join("200/task/200/children"), "100 300");
        write(&proc_root.join("300/task/300/children"), "200");
        let mut tree = Tree::new(proc_root, Pid(100));
        assert_eq!(walk(&mut tree, 100), [(100, 0), (200, 1), (300, 2)]);
    }

    #[test]
    fn bad_children_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_root = dir.path();
        write(&proc_root.join("100/task/100/children"), "200 two");
        let mut tree = Tree::new(proc_root, Pid(100));
        let error = tree.walk(Pid(100), &mut Vec::new()).expect_err("bad file");
        assert!(
            matches!(&error, ProbeError::Parse { path, .. } if path.ends_with("100/task/100/children")),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "unexpected content in '{}'",
                proc_root.join("100/task/100/children").display()
            )
        );
    }

    #[test]
    fn proc_scan_finds_children_by_parent_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_root = dir.path();
        for (pid, ppid) in [
            (1, 0),
            (100, 1),
            (200, 100),
            (300, 100),
            (250, 200),
            (400, 1),
        ] {
            stat(proc_root, pid, ppid);
        }
        // Not processes: ignored. A process whose stat is unreadable is left out.
        write(&proc_root.join("self/stat"), "garbage");
        write(&proc_root.join("meminfo"), "MemTotal: 1 kB\n");
        write(&proc_root.join("500/stat"), "500 (bad) S notanumber\n");
        let mut tree = Tree::new(proc_root, Pid(100));
        assert_eq!(tree.source(), ChildrenSource::ProcScan);
        assert_eq!(
            walk(&mut tree, 100),
            [(100, 0), (200, 1), (250, 2), (300, 1)]
        );
        assert_eq!(
            walk(&mut tree, 1),
            [(1, 0), (100, 1), (200, 2), (250, 3), (300, 2), (400, 1)]
        );
    }

    #[test]
    fn proc_scan_reads_each_process_once_until_it_or_its_parent_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc_root = dir.path();
        for (pid, ppid) in [(1, 0), (100, 1), (200, 100), (300, 200)] {
            stat(proc_root, pid, ppid);
        }
        let mut tree = Tree::new(proc_root, Pid(100));
        assert_eq!(walk(&mut tree, 100), [(100, 0), (200, 1), (300, 2)]);
        // A changed stat of a remembered process is not read again: same inode, same parent.
        stat(proc_root, 300, 1);
        assert_eq!(walk(&mut tree, 100), [(100, 0), (200, 1), (300, 2)]);
        // Its parent exits: 300 is re-read, and is now reparented outside the tree.
        fs::remove_dir_all(proc_root.join("200")).expect("rm");
        assert_eq!(walk(&mut tree, 100), [(100, 0)]);
        // A new process appears: read on the next scan.
        stat(proc_root, 600, 100);
        assert_eq!(walk(&mut tree, 100), [(100, 0), (600, 1)]);
        // Processes that left /proc are forgotten.
        fs::remove_dir_all(proc_root.join("600")).expect("rm");
        assert_eq!(walk(&mut tree, 100), [(100, 0)]);
        assert!(!tree.parents.contains_key(&600));
    }

    #[test]
    fn vanished_means_not_found_or_no_such_process() {
        assert!(vanished(&io::ErrorKind::NotFound.into()));
        assert!(vanished(&io::Error::from_raw_os_error(3)));
        assert!(!vanished(&io::ErrorKind::PermissionDenied.into()));
    }
}
