//! Finding a process's memory cgroup (v1 memory controller or v2 unified hierarchy) and
//! reading its usage, limit and OOM counters, and the memory pressure (PSI) it is under.

use std::io;
use std::path::{Component, Path, PathBuf};

use procfs::process::MountInfos;
use procfs::ProcessCGroups;

use crate::cgroup_files::{
    parse_memory_events, parse_number, parse_oom_control, parse_v1_limit, parse_v2_limit,
};
use crate::error::{ParseError, ProbeError};
use crate::linux::tree::read_into;
use crate::sample::{CgroupMemory, CgroupVersion, Psi, PsiScope};
use crate::units::Bytes;

/// A mounted cgroup hierarchy: where it is mounted, and which cgroup is the mount's root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The cgroup path that the mount point shows (`/` unless a sub-tree is bind-mounted).
    root: String,
    /// Where it is mounted, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/memory`.
    point: PathBuf,
}

/// The cgroup hierarchies that can hold memory figures, read once from `mountinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Hierarchies {
    /// A v1 hierarchy with the memory controller.
    v1_memory: Option<Mount>,
    /// The v2 unified hierarchy.
    v2: Option<Mount>,
}

impl Hierarchies {
    pub(crate) fn from_mounts(mounts: &MountInfos) -> Hierarchies {
        let mut found = Hierarchies::default();
        for mount in mounts {
            let this = || Mount {
                root: mount.root.clone(),
                point: mount.mount_point.clone(),
            };
            match mount.fs_type.as_str() {
                "cgroup"
                    if found.v1_memory.is_none() && mount.super_options.contains_key("memory") =>
                {
                    found.v1_memory = Some(this());
                }
                "cgroup2" if found.v2.is_none() => found.v2 = Some(this()),
                _ => {}
            }
        }
        found
    }

    /// Where the v1 memory hierarchy and the v2 hierarchy are mounted (their mount points,
    /// whatever cgroup the mount shows as its root).
    pub(crate) fn points(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (
            self.v1_memory.as_ref().map(|m| m.point.clone()),
            self.v2.as_ref().map(|m| m.point.clone()),
        )
    }

    /// Where the memory figures of a process with these cgroups are. The memory controller
    /// sits in at most one hierarchy: v1 when a v1 hierarchy has it, else v2.
    pub(crate) fn locate(&self, cgroups: &ProcessCGroups) -> Option<Location> {
        if let Some(mount) = &self.v1_memory {
            let line = cgroups
                .0
                .iter()
                .find(|line| line.controllers.iter().any(|name| name == "memory"));
            if let Some(line) = line {
                return Location::new(CgroupVersion::V1, mount, &line.pathname);
            }
        }
        let mount = self.v2.as_ref()?;
        let line = cgroups
            .0
            .iter()
            .find(|line| line.hierarchy == 0 && line.controllers.is_empty())?;
        Location::new(CgroupVersion::V2, mount, &line.pathname)
    }
}

/// The directory of one cgroup's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    version: CgroupVersion,
    /// As `/proc/PID/cgroup` names it.
    path: String,
    /// Where its files are.
    dir: PathBuf,
    /// The hierarchy's mount point, where the walk up for the limit stops.
    top: PathBuf,
}

impl Location {
    /// `None` when the cgroup is not under the mount (another cgroup namespace's path, with
    /// `..`, or outside a bind-mounted sub-tree).
    fn new(version: CgroupVersion, mount: &Mount, path: &str) -> Option<Location> {
        let relative = if mount.root == "/" {
            path.strip_prefix('/')?
        } else {
            let rest = path.strip_prefix(mount.root.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest.trim_start_matches('/')
        };
        let relative = Path::new(relative);
        if relative
            .components()
            .any(|part| !matches!(part, Component::Normal(_)))
        {
            return None;
        }
        Some(Location {
            version,
            path: path.to_owned(),
            dir: mount.point.join(relative),
            top: mount.point.clone(),
        })
    }

    /// Reads usage, limit and OOM counters. `None` when the files are not there: the
    /// cgroup was removed, or (v2) the memory controller is not enabled for it.
    pub(crate) fn read(&self, text: &mut String) -> Result<Option<CgroupMemory>, ProbeError> {
        let (usage_file, limit_file) = match self.version {
            CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
            CgroupVersion::V2 => ("memory.current", "memory.max"),
        };
        let Some(usage) = read_parsed(&self.dir.join(usage_file), text, parse_number)? else {
            return Ok(None);
        };
        // The limit that binds is the smallest of the cgroup's and its ancestors'. The v2
        // root has no memory.max, hence levels without the file are skipped.
        let mut limit: Option<u64> = None;
        for dir in self
            .dir
            .ancestors()
            .take_while(|dir| dir.starts_with(&self.top))
        {
            let parse = match self.version {
                CgroupVersion::V1 => parse_v1_limit,
                CgroupVersion::V2 => parse_v2_limit,
            };
            if let Some(Some(level)) = read_parsed(&dir.join(limit_file), text, parse)? {
                limit = Some(limit.map_or(level, |limit| limit.min(level)));
            }
        }
        let (oom, oom_kill) = match self.version {
            CgroupVersion::V1 => {
                let path = self.dir.join("memory.oom_control");
                (None, read_parsed(&path, text, parse_oom_control)?.flatten())
            }
            CgroupVersion::V2 => {
                let path = self.dir.join("memory.events");
                match read_parsed(&path, text, parse_memory_events)? {
                    Some(events) => (events.oom, events.oom_kill),
                    None => (None, None),
                }
            }
        };
        Ok(Some(CgroupMemory {
            version: self.version,
            path: self.path.clone(),
            dir: self.dir.clone(),
            usage: Bytes(usage),
            limit: limit.map(Bytes),
            oom,
            oom_kill,
        }))
    }

    /// The cgroup's own `memory.pressure` (v2 only).
    pub(crate) fn pressure_file(&self) -> Option<PathBuf> {
        (self.version == CgroupVersion::V2).then(|| self.dir.join("memory.pressure"))
    }
}

/// Reads a memory PSI file (`/proc/pressure/memory` or a cgroup's `memory.pressure`).
/// `None` when the kernel does not report pressure there: no file (kernel before 4.20,
/// `CONFIG_PSI` off) or "not supported" (booted with `psi=0`).
pub(crate) fn read_psi(
    path: &Path,
    scope: PsiScope,
    text: &mut String,
) -> Result<Option<Psi>, ProbeError> {
    read_parsed(path, text, parse_psi).map(|found| {
        found.map(|(some_avg10, full_avg10)| Psi {
            scope,
            some_avg10,
            full_avg10,
        })
    })
}

/// The `some` and `full` avg10 percentages of a PSI file:
/// `some avg10=0.12 avg60=… avg300=… total=…` then `full avg10=…`. Parsed here rather than
/// by `procfs`, whose parser takes the first line as `some` whatever its label and does not
/// name the value it rejects.
fn parse_psi(text: &str) -> Result<(f64, f64), ParseError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split_ascii_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => return Err(ParseError::MalformedLine(line.to_owned())),
        };
        let avg10 = fields
            .find_map(|field| field.strip_prefix("avg10="))
            .ok_or(ParseError::MissingKey("avg10"))?;
        let percent = avg10
            .parse::<f64>()
            .ok()
            .filter(|percent| (0.0..=100.0).contains(percent))
            .ok_or_else(|| ParseError::NotAPercentage(avg10.to_owned()))?;
        *slot = Some(percent);
    }
    Ok((
        some.ok_or(ParseError::MissingKey("some"))?,
        full.ok_or(ParseError::MissingKey("full"))?,
    ))
}

/// Reads and parses a small file; `Ok(None)` when it does not exist or is not supported.
pub(crate) fn read_parsed<T>(
    path: &Path,
    text: &mut String,
    parse: fn(&str) -> Result<T, ParseError>,
) -> Result<Option<T>, ProbeError> {
    match read_into(path, text) {
        Ok(()) => {}
        Err(error) if absent(&error) => return Ok(None),
        Err(source) => {
            return Err(ProbeError::Io {
                path: path.to_owned(),
                source,
            })
        }
    }
    parse(text).map(Some).map_err(|source| ProbeError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Whether a read error means "this kernel or cgroup has no such figure".
fn absent(error: &io::Error) -> bool {
    const ENODEV: i32 = 19;
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::Unsupported
    ) || error.raw_os_error() == Some(ENODEV)
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::FromRead;

    fn mounts(text: &str) -> MountInfos {
        MountInfos::from_read(text.as_bytes()).expect("fixture mountinfo parses")
    }

    fn cgroups(text: &str) -> ProcessCGroups {
        ProcessCGroups::from_read(text.as_bytes()).expect("fixture cgroup parses")
    }

    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED_MOUNTS: &str = "\
22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn v1_memory_controller_wins_in_hybrid_mode() {
        let found = Hierarchies::from_mounts(&mounts(HYBRID_MOUNTS));
        let location = found
            .locate(&cgroups(
                "9:name=systemd:/\n4:memory:/process_api/b612\n1:cpu:/\n0::/\n",
            ))
            .expect("located");
        assert_eq!(location.version, CgroupVersion::V1);
        assert_eq!(location.path, "/process_api/b612");
        assert_eq!(
            location.dir,
            Path::new("/sys/fs/cgroup/memory/process_api/b612")
        );
        assert_eq!(location.top, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn v2_is_used_on_unified_systems() {
        let found = Hierarchies::from_mounts(&mounts(UNIFIED_MOUNTS));
        let location = found
            .locate(&cgroups("0::/system.slice/app.service\n"))
            .expect("located");
        assert_eq!(location.version, CgroupVersion::V2);
        assert_eq!(
            location.dir,
            Path::new("/sys/fs/cgroup/system.slice/app.service")
        );
        let root = found.locate(&cgroups("0::/\n")).expect("root located");
        assert_eq!(root.dir, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn cgroups_outside_the_mount_are_not_located() {
        let found = Hierarchies::from_mounts(&mounts(UNIFIED_MOUNTS));
        assert_eq!(found.locate(&cgroups("0::/../../other.slice\n")), None);
        assert_eq!(found.locate(&cgroups("0::relative\n")), None);
        // A v1-only line with no v1 mount, and no v2 line: nothing to read.
        assert_eq!(found.locate(&cgroups("4:memory:/a\n")), None);
        assert_eq!(Hierarchies::default().locate(&cgroups("0::/a\n")), None);
    }

    #[test]
    fn bind_mounted_sub_trees_strip_their_root() {
        let text = "30 22 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let found = Hierarchies::from_mounts(&mounts(text));
        let inner = found
            .locate(&cgroups("0::/docker/abc/worker\n"))
            .expect("located");
        assert_eq!(inner.dir, Path::new("/sys/fs/cgroup/worker"));
        let same = found.locate(&cgroups("0::/docker/abc\n")).expect("located");
        assert_eq!(same.dir, Path::new("/sys/fs/cgroup"));
        assert_eq!(found.locate(&cgroups("0::/docker/abcdef\n")), None);
        assert_eq!(found.locate(&cgroups("0::/elsewhere\n")), None);
    }

    fn v2_fixture(dir: &Path) -> Location {
        let leaf = dir.join("app.slice").join("web.service");
        std::fs::create_dir_all(&leaf).expect("mkdir");
        std::fs::write(leaf.join("memory.current"), "104857600\n").expect("write");
        std::fs::write(leaf.join("memory.max"), "max\n").expect("write");
        std::fs::write(
            leaf.join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n",
        )
        .expect("write");
        std::fs::write(dir.join("app.slice").join("memory.max"), "536870912\n").expect("write");
        Location::new(
            CgroupVersion::V2,
            &Mount {
                root: "/".into(),
                point: dir.to_owned(),
            },
            "/app.slice/web.service",
        )
        .expect("located")
    }

    #[test]
    fn v2_limit_is_the_smallest_of_the_ancestors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = v2_fixture(dir.path());
        let memory = location
            .read(&mut String::new())
            .expect("read")
            .expect("present");
        assert_eq!(memory.usage, Bytes(100 << 20));
        assert_eq!(memory.limit, Some(Bytes(512 << 20)));
        assert_eq!((memory.oom, memory.oom_kill), (Some(2), Some(1)));
        assert_eq!(memory.path, "/app.slice/web.service");
    }

    #[test]
    fn v2_bad_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = v2_fixture(dir.path());
        let leaf = dir.path().join("app.slice").join("web.service");
        std::fs::write(leaf.join("memory.max"), "lots\n").expect("write");
        let error = location.read(&mut String::new()).expect_err("bad limit");
        assert!(
            matches!(
                &error,
                ProbeError::Parse { path, source: ParseError::NotANumber(value) }
                    if path.ends_with("web.service/memory.max") && value == "lots"
            ),
            "{error:?}"
        );
        std::fs::write(leaf.join("memory.max"), "max\n").expect("write");
        std::fs::write(leaf.join("memory.events"), "oom\n").expect("write");
        assert!(location.read(&mut String::new()).is_err());
    }

    #[test]
    fn missing_usage_means_no_memory_controller() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = v2_fixture(dir.path());
        let leaf = dir.path().join("app.slice").join("web.service");
        std::fs::remove_file(leaf.join("memory.events")).expect("rm");
        let memory = location
            .read(&mut String::new())
            .expect("read")
            .expect("present");
        assert_eq!((memory.oom, memory.oom_kill), (None, None));
        std::fs::remove_file(leaf.join("memory.current")).expect("rm");
        assert_eq!(location.read(&mut String::new()).expect("read"), None);
    }

    #[test]
    fn v1_reads_usage_limit_and_oom_kills() {
        let dir = tempfile::tempdir().expect("tempdir");
        let leaf = dir.path().join("job");
        std::fs::create_dir_all(&leaf).expect("mkdir");
        std::fs::write(leaf.join("memory.usage_in_bytes"), "580235264\n").expect("write");
        std::fs::write(leaf.join("memory.limit_in_bytes"), "9223372036854771712\n").expect("write");
        std::fs::write(
            dir.path().join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .expect("write");
        std::fs::write(
            leaf.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .expect("write");
        let mount = Mount {
            root: "/".into(),
            point: dir.path().to_owned(),
        };
        let location = Location::new(CgroupVersion::V1, &mount, "/job").expect("located");
        let memory = location
            .read(&mut String::new())
            .expect("read")
            .expect("present");
        assert_eq!(memory.usage, Bytes(580_235_264));
        assert_eq!(memory.limit, None);
        assert_eq!((memory.oom, memory.oom_kill), (None, Some(3)));
        std::fs::write(leaf.join("memory.limit_in_bytes"), "1073741824\n").expect("write");
        let memory = location
            .read(&mut String::new())
            .expect("read")
            .expect("present");
        assert_eq!(memory.limit, Some(Bytes(1 << 30)));
        assert_eq!(location.pressure_file(), None);
    }

    #[test]
    fn psi_gives_some_and_full_avg10() {
        let text = "some avg10=4.50 avg60=0.91 avg300=0.00 total=681245\n\
                    full avg10=2.10 avg60=0.12 avg300=0.00 total=391926\n";
        assert_eq!(parse_psi(text), Ok((4.5, 2.1)));
        // The order of the lines does not matter, nor do keys other than avg10.
        let swapped = "full avg10=1.00 avg60=0 avg300=0 total=0\nsome avg10=3.00\n";
        assert_eq!(parse_psi(swapped), Ok((3.0, 1.0)));
    }

    #[test]
    fn bad_psi_is_an_error() {
        let full = "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let cases = [
            (String::new(), ParseError::MissingKey("some")),
            ("some\n".to_owned(), ParseError::MissingKey("avg10")),
            (
                format!("some avg10=x total=0\n{full}"),
                ParseError::NotAPercentage("x".into()),
            ),
            (
                format!("some avg10=101 total=0\n{full}"),
                ParseError::NotAPercentage("101".into()),
            ),
            (
                format!("some avg10=-1 total=0\n{full}"),
                ParseError::NotAPercentage("-1".into()),
            ),
            (
                format!("some avg10=NaN\n{full}"),
                ParseError::NotAPercentage("NaN".into()),
            ),
            (
                "some avg10=1.00 avg60=0 avg300=0 total=0\n".to_owned(),
                ParseError::MissingKey("full"),
            ),
            (
                format!("most avg10=1\n{full}"),
                ParseError::MalformedLine("most avg10=1".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_psi(&text), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn absent_psi_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("memory.pressure");
        assert_eq!(
            read_psi(&missing, PsiScope::System, &mut String::new()).expect("read"),
            None
        );
    }
}
