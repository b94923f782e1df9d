//! Cgroups as targets of `watch` (`--cgroup PATH`…, `--containers`): who a cgroup is, from its
//! path alone (container id, pod uid, QoS class: what joins with kube-state-metrics, no API
//! access needed), where the containers and services of a node are (a walk of the memory
//! hierarchy under the usual layouts), and the sampling side: one `CgroupReader` per cgroup,
//! read every tick in the same blocking batch as the processes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use plimsoll_probe::{CgroupFigures, CgroupMounts, CgroupReader, CgroupVersion, ProbeError};

/// How often `--containers` walks the hierarchy for new cgroups, at most.
pub(super) const DISCOVER_EVERY: Duration = Duration::from_secs(2);
/// How deep the walk goes below the hierarchy's root: the deepest usual layout
/// (`kubepods.slice/kubepods-burstable.slice/…-pod<uid>.slice/cri-containerd-<id>.scope`) is 4.
const MAX_DEPTH: usize = 6;

/// What made a cgroup, as its path says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    Kubernetes,
    Docker,
    Containerd,
    Podman,
    CriO,
    Systemd,
    /// A cgroup given by `--cgroup` whose path says nothing more.
    Cgroup,
}

impl Runtime {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Runtime::Kubernetes => "kubernetes",
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::Podman => "podman",
            Runtime::CriO => "cri-o",
            Runtime::Systemd => "systemd",
            Runtime::Cgroup => "cgroup",
        }
    }
}

/// Who a cgroup is, from its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) runtime: Runtime,
    /// The container's id as the runtime names it (Docker and containerd: 64 hex digits).
    pub(crate) container_id: Option<String>,
    /// The Kubernetes pod's uid, with dashes (`kube_pod_info{uid}`).
    pub(crate) pod_uid: Option<String>,
    /// `guaranteed`, `burstable` or `besteffort`.
    pub(crate) qos_class: Option<&'static str>,
    /// A systemd unit's name (`nginx.service`).
    pub(crate) unit: Option<String>,
}

impl Identity {
    fn plain() -> Identity {
        Identity {
            runtime: Runtime::Cgroup,
            container_id: None,
            pod_uid: None,
            qos_class: None,
            unit: None,
        }
    }

    /// The target's default name: `k8s-`, `docker-`, … and the first 12 digits of the
    /// container id (as `docker ps` shows it), a unit's own name, else the path's last part.
    pub(crate) fn name(&self, path: &str) -> String {
        if let Some(id) = &self.container_id {
            let prefix = match self.runtime {
                Runtime::Kubernetes => "k8s",
                other => other.as_str(),
            };
            let short: String = id.chars().take(12).collect();
            return crate::name::sanitize(&format!("{prefix}-{short}"), "container");
        }
        if let Some(unit) = &self.unit {
            return crate::name::sanitize(unit, "unit");
        }
        let last = path.rsplit('/').find(|part| !part.is_empty()).unwrap_or("");
        crate::name::sanitize(last, "cgroup")
    }
}

/// Who the cgroup at `path` (relative to its hierarchy's root, with or without a leading `/`)
/// is. `None` when it is not a container's or a service's own cgroup: `--containers` walks
/// on below it.
pub(crate) fn identify(path: &str) -> Option<Identity> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (&last, parents) = parts.split_last()?;
    let parent = parents.last().copied().unwrap_or("");
    let kubernetes = parts.iter().position(|p| is_kubepods(p));
    if let Some(at) = kubernetes {
        // kubepods[/qos]/pod<uid>/<container>: the container is right below the pod.
        let (_, id) = container_id(last)?;
        let pod_uid = parents.get(at + 1..)?.iter().find_map(|p| pod_uid(p))?;
        let qos_class = parts[at + 1..]
            .iter()
            .find_map(|p| qos_of(p))
            .unwrap_or("guaranteed");
        return Some(Identity {
            runtime: Runtime::Kubernetes,
            container_id: Some(id),
            pod_uid: Some(pod_uid),
            qos_class: Some(qos_class),
            unit: None,
        });
    }
    if let Some((runtime, id)) = container_id(last) {
        let runtime = match (runtime, parent) {
            (Some(runtime), _) => runtime,
            (None, "docker") => Runtime::Docker,
            (None, "libpod_parent") => Runtime::Podman,
            (None, _) => Runtime::Containerd,
        };
        return Some(Identity {
            runtime,
            container_id: Some(id),
            ..Identity::plain()
        });
    }
    if last.ends_with(".service") && !last.starts_with("user@") && last.len() > ".service".len() {
        return Some(Identity {
            runtime: Runtime::Systemd,
            unit: Some(last.to_owned()),
            ..Identity::plain()
        });
    }
    None
}

/// The identity of a cgroup given by `--cgroup`: what its path says, else a plain cgroup.
pub(crate) fn identify_given(path: &str) -> Identity {
    identify(path).unwrap_or_else(Identity::plain)
}

fn is_kubepods(part: &str) -> bool {
    part == "kubepods"
        || part == "kubepods.slice"
        || (part.ends_with("-kubepods.slice") && !part.contains("-pod"))
}

/// The container id in a cgroup's last part, and the runtime its prefix names: a scope of the
/// systemd driver (`cri-containerd-ID.scope`, `docker-ID.scope`, `crio-ID.scope`,
/// `libpod-ID.scope`), `libpod-ID` or `crio-ID` of the cgroupfs driver, or a bare 64-digit id.
fn container_id(last: &str) -> Option<(Option<Runtime>, String)> {
    let stem = last.strip_suffix(".scope").unwrap_or(last);
    const PREFIXES: [(&str, Runtime); 6] = [
        ("cri-containerd-", Runtime::Containerd),
        ("containerd-", Runtime::Containerd),
        ("docker-", Runtime::Docker),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
        ("nerdctl-", Runtime::Containerd),
    ];
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = stem.strip_prefix(prefix) {
            return (is_hex(id) && id.len() >= 12).then(|| (Some(runtime), id.to_owned()));
        }
    }
    (stem == last && is_hex(last) && last.len() == 64).then(|| (None, last.to_owned()))
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The pod uid in `pod<uid>` (cgroupfs) or `kubepods-…-pod<uid>.slice` (systemd, where the
/// uid's dashes are underscores).
fn pod_uid(part: &str) -> Option<String> {
    let uid = if let Some(slice) = part.strip_suffix(".slice") {
        slice.rsplit_once("-pod")?.1.replace('_', "-")
    } else {
        part.strip_prefix("pod")?.to_owned()
    };
    let valid = !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    valid.then_some(uid)
}

/// The QoS class a part of a kubepods path names (`burstable`, `kubepods-burstable.slice`).
fn qos_of(part: &str) -> Option<&'static str> {
    let name = part
        .strip_suffix(".slice")
        .map_or(part, |s| s.rsplit('-').next().unwrap_or(s));
    match name {
        "burstable" => Some("burstable"),
        "besteffort" => Some("besteffort"),
        _ => None,
    }
}

/// A memory hierarchy to read cgroups in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hierarchy {
    pub(super) version: CgroupVersion,
    /// Where it is mounted.
    pub(super) top: PathBuf,
}

impl Hierarchy {
    fn usage_file(&self) -> &'static str {
        match self.version {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        }
    }

    /// Whether `dir` is a cgroup of this hierarchy with memory figures (a v2 cgroup whose
    /// parent does not enable the memory controller has none).
    fn has_memory(&self, dir: &Path) -> bool {
        dir.join(self.usage_file()).exists()
    }
}

/// The memory hierarchies to read: under `root` when given (`--cgroup-root`), else as
/// mounted. The v1 memory hierarchy first where there is one (the memory controller is there
/// on hybrid hosts), then v2.
pub(super) fn hierarchies(root: Option<&Path>) -> Result<Vec<Hierarchy>> {
    let mounts = match root {
        Some(root) => {
            if !root.is_dir() {
                bail!(
                    "no cgroup file system at --cgroup-root '{}'",
                    root.display()
                );
            }
            CgroupMounts::under(root)
        }
        None => CgroupMounts::from_proc_root(Path::new(super::PROC))?,
    };
    let mut found = Vec::new();
    if let Some(top) = mounts.v1_memory {
        found.push(Hierarchy {
            version: CgroupVersion::V1,
            top,
        });
    }
    if let Some(top) = mounts.v2 {
        found.push(Hierarchy {
            version: CgroupVersion::V2,
            top,
        });
    }
    if found.is_empty() {
        let place = root.map_or_else(
            || "in /proc/self/mountinfo".to_owned(),
            |r| format!("under '{}'", r.display()),
        );
        bail!("no memory cgroup hierarchy {place}");
    }
    Ok(found)
}

/// Where the cgroup `given` on the command line is: an absolute path inside one of the
/// hierarchies, or a path relative to their roots (the first that has it with memory
/// figures). The error names the path.
pub(super) fn resolve(given: &Path, hierarchies: &[Hierarchy]) -> Result<(Hierarchy, PathBuf)> {
    if given.is_absolute() {
        let Some(hierarchy) = hierarchies.iter().find(|h| given.starts_with(&h.top)) else {
            let tops: Vec<String> = hierarchies
                .iter()
                .map(|h| h.top.display().to_string())
                .collect();
            bail!(
                "cgroup '{}' is not under a memory cgroup hierarchy ({})",
                given.display(),
                tops.join(", ")
            );
        };
        if !hierarchy.has_memory(given) {
            bail!(
                "no memory cgroup at '{}' (no {} there)",
                given.display(),
                hierarchy.usage_file()
            );
        }
        return Ok((hierarchy.clone(), given.to_owned()));
    }
    let relative: PathBuf = given
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    if relative.as_os_str().is_empty()
        || relative.components().count() != given.components().count()
    {
        bail!(
            "invalid cgroup path '{}' (expected e.g. system.slice/nginx.service or an absolute path under a cgroup mount)",
            given.display()
        );
    }
    for hierarchy in hierarchies {
        let dir = hierarchy.top.join(&relative);
        if hierarchy.has_memory(&dir) {
            return Ok((hierarchy.clone(), dir));
        }
    }
    let tops: Vec<String> = hierarchies
        .iter()
        .map(|h| h.top.display().to_string())
        .collect();
    bail!(
        "no memory cgroup '{}' under {}",
        given.display(),
        tops.join(" or ")
    )
}

/// The cgroups of containers and services under `hierarchy`: a walk from its root that stops
/// at each one found (its children are its own business) and at `MAX_DEPTH`. Directories
/// that cannot be listed (removed meanwhile, not readable) are skipped and counted.
pub(super) fn discover(hierarchy: &Hierarchy, found: &mut Vec<PathBuf>) -> usize {
    let mut unreadable = 0;
    let mut stack = vec![(hierarchy.top.clone(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(_) => {
                unreadable += 1;
                continue;
            }
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // plimsoll's own (the keeper's cgroups of `run`) are not containers.
            if name.starts_with("plimsoll-keeper-") {
                continue;
            }
            let relative = path.strip_prefix(&hierarchy.top).unwrap_or(&path);
            if identify(&relative.to_string_lossy()).is_some() {
                if hierarchy.has_memory(&path) {
                    found.push(path);
                }
            } else if depth + 1 < MAX_DEPTH {
                stack.push((path, depth + 1));
            }
        }
    }
    unreadable
}

/// A cgroup that started being watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FoundCgroup {
    pub(super) dir: PathBuf,
    /// Its path in its hierarchy, with a leading `/`.
    pub(super) path: String,
    pub(super) version: CgroupVersion,
}

/// What one tick read of the cgroups.
#[derive(Debug, Default)]
pub(super) struct CgroupReport {
    pub(super) found: Vec<FoundCgroup>,
    pub(super) samples: Vec<(PathBuf, CgroupFigures)>,
    /// Reads that failed (unreadable, malformed): the cgroup is still watched, retried.
    pub(super) failed: Vec<(PathBuf, ProbeError)>,
    /// Cgroups that were removed.
    pub(super) gone: Vec<PathBuf>,
    /// Cgroups found by the walk but not watched: unreadable at their first read, or gone
    /// before it; and directories the walk could not list.
    pub(super) skipped: usize,
}

/// The sampling side's cgroups.
#[derive(Debug)]
pub(super) struct CgroupSet {
    readers: Vec<(CgroupReader, Hierarchy)>,
    dirs: HashSet<PathBuf>,
    /// Given on the command line, not yet reported.
    pending: Vec<FoundCgroup>,
    /// With `--containers`: the hierarchies walked, and when last.
    discover: Option<(Vec<Hierarchy>, Option<Instant>)>,
}

impl CgroupSet {
    pub(super) fn new(discover: Option<Vec<Hierarchy>>) -> CgroupSet {
        CgroupSet {
            readers: Vec::new(),
            dirs: HashSet::new(),
            pending: Vec::new(),
            discover: discover.map(|h| (h, None)),
        }
    }

    /// Starts watching the cgroup at `dir` (a `--cgroup` given): read once now, so that one
    /// that cannot be read is refused at once.
    pub(super) fn add(&mut self, hierarchy: Hierarchy, dir: PathBuf) -> Result<(), ProbeError> {
        if self.dirs.contains(&dir) {
            return Ok(());
        }
        let found = self.open(hierarchy, dir)?;
        self.pending.push(found);
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.readers.len()
    }

    fn open(&mut self, hierarchy: Hierarchy, dir: PathBuf) -> Result<FoundCgroup, ProbeError> {
        let mut reader = CgroupReader::new(dir.clone(), hierarchy.version, hierarchy.top.clone());
        reader.read()?;
        let relative = dir.strip_prefix(&hierarchy.top).unwrap_or(&dir);
        let found = FoundCgroup {
            path: format!("/{}", relative.to_string_lossy()),
            dir: dir.clone(),
            version: hierarchy.version,
        };
        self.dirs.insert(dir);
        self.readers.push((reader, hierarchy));
        Ok(found)
    }

    /// One tick: the walk when due, then every watched cgroup read.
    pub(super) fn tick(&mut self, now: Instant) -> CgroupReport {
        let mut report = CgroupReport {
            found: std::mem::take(&mut self.pending),
            ..CgroupReport::default()
        };
        let due = self
            .discover
            .as_ref()
            .is_some_and(|(_, last)| last.is_none_or(|l| now.duration_since(l) >= DISCOVER_EVERY));
        if due {
            self.walk(now, &mut report);
        }
        for (reader, _) in &mut self.readers {
            match reader.read() {
                Ok(figures) => report.samples.push((reader.dir().to_owned(), figures)),
                Err(ProbeError::CgroupGone(dir)) => report.gone.push(dir),
                Err(error) => report.failed.push((reader.dir().to_owned(), error)),
            }
        }
        if !report.gone.is_empty() {
            self.readers
                .retain(|(r, _)| !report.gone.iter().any(|g| g == r.dir()));
            for dir in &report.gone {
                self.dirs.remove(dir);
            }
        }
        report
    }

    fn walk(&mut self, now: Instant, report: &mut CgroupReport) {
        let Some((hierarchies, last)) = &mut self.discover else {
            return;
        };
        *last = Some(now);
        let hierarchies = hierarchies.clone();
        let mut dirs = Vec::new();
        for hierarchy in hierarchies {
            dirs.clear();
            report.skipped += discover(&hierarchy, &mut dirs);
            for dir in dirs.drain(..) {
                if self.dirs.contains(&dir) {
                    continue;
                }
                match self.open(hierarchy.clone(), dir) {
                    Ok(found) => report.found.push(found),
                    Err(_) => report.skipped += 1,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c5a9e0b7d4c2f8a6e1b9d0c3f5a7e2b4d6f8a0c1e3b5d7f9a2c4e6b8d0f1a";
    const UID: &str = "7b2c1e4a-93d5-4f0e-b6a8-2c9d1e3f5a7b";

    /// Runtime, container id, pod uid, QoS class.
    type Expected<'a> = Option<(Runtime, Option<&'a str>, Option<&'a str>, Option<&'a str>)>;

    fn check(path: &str, expected: Expected<'_>) {
        let got = identify(path).map(|i| {
            (
                i.runtime,
                i.container_id,
                i.pod_uid,
                i.qos_class.map(str::to_owned),
            )
        });
        let expected = expected.map(|(r, c, p, q)| {
            (
                r,
                c.map(str::to_owned),
                p.map(str::to_owned),
                q.map(str::to_owned),
            )
        });
        assert_eq!(got, expected, "{path}");
    }

    #[test]
    fn kubernetes_layouts_give_container_pod_and_qos() {
        let uid_ = UID.replace('-', "_");
        let k8s = |q| Some((Runtime::Kubernetes, Some(ID), Some(UID), Some(q)));
        // systemd driver, each QoS class.
        check(
            &format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"),
            k8s("burstable"),
        );
        check(
            &format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope"),
            k8s("besteffort"),
        );
        check(
            &format!("/kubepods.slice/kubepods-pod{uid_}.slice/docker-{ID}.scope"),
            k8s("guaranteed"),
        );
        // cgroupfs driver.
        check(
            &format!("/kubepods/burstable/pod{UID}/{ID}"),
            k8s("burstable"),
        );
        check(
            &format!("/kubepods/besteffort/pod{UID}/{ID}"),
            k8s("besteffort"),
        );
        check(&format!("/kubepods/pod{UID}/{ID}"), k8s("guaranteed"));
        // Under a kubelet's own slice (kind, k3s).
        check(
            &format!("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"),
            k8s("burstable"),
        );
        // The pod and QoS levels are not containers: the walk goes on below them.
        check(&format!("/kubepods/burstable/pod{UID}"), None);
        check("/kubepods.slice/kubepods-burstable.slice", None);
        check("/kubepods", None);
    }

    #[test]
    fn runtime_layouts_give_the_container_id() {
        let plain = |r| Some((r, Some(ID), None, None));
        check(&format!("/docker/{ID}"), plain(Runtime::Docker));
        check(
            &format!("/system.slice/docker-{ID}.scope"),
            plain(Runtime::Docker),
        );
        check(
            &format!("/system.slice/containerd-{ID}.scope"),
            plain(Runtime::Containerd),
        );
        check(&format!("/default/{ID}"), plain(Runtime::Containerd));
        check(
            &format!("/machine.slice/libpod-{ID}.scope"),
            plain(Runtime::Podman),
        );
        check(
            &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            plain(Runtime::Podman),
        );
        check(
            &format!("/libpod_parent/libpod-{ID}"),
            plain(Runtime::Podman),
        );
        // Not containers: conmon, short or non-hex ids, the runtimes' own parents.
        check(&format!("/machine.slice/libpod-conmon-{ID}.scope"), None);
        check("/docker/abc", None);
        check("/docker", None);
        check(&format!("/docker/{}", &ID[..63]), None);
        check(&format!("/docker/{}x", &ID[..63]), None);
    }

    #[test]
    fn services_are_units_and_names_are_short() {
        let service = identify("/system.slice/nginx.service").expect("a unit");
        assert_eq!(service.runtime, Runtime::Systemd);
        assert_eq!(service.unit.as_deref(), Some("nginx.service"));
        assert_eq!(service.name("/system.slice/nginx.service"), "nginx.service");
        assert_eq!(
            identify("/user.slice/user-1000.slice/user@1000.service"),
            None
        );
        assert_eq!(identify("/system.slice/.service"), None);
        assert_eq!(identify("/system.slice"), None);
        assert_eq!(identify(""), None);
        let docker = identify(&format!("/docker/{ID}")).expect("docker");
        assert_eq!(docker.name(""), format!("docker-{}", &ID[..12]));
        let k8s = identify(&format!("/kubepods/pod{UID}/{ID}")).expect("k8s");
        assert_eq!(k8s.name(""), format!("k8s-{}", &ID[..12]));
        let given = identify_given("/plimsoll-test/job 1");
        assert_eq!(given.runtime, Runtime::Cgroup);
        assert_eq!(given.name("/plimsoll-test/job 1"), "job-1");
    }

    #[test]
    fn the_walk_finds_containers_and_stops_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path();
        let make = |path: &str| {
            let d = top.join(path);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("memory.usage_in_bytes"), "0\n").expect("write");
        };
        make(&format!("docker/{ID}"));
        make(&format!("docker/{ID}/inner.service"));
        make(&format!("kubepods/burstable/pod{UID}/{ID}"));
        make("system.slice/cron.service");
        make("plimsoll-keeper-42/x.service");
        make("a/b/c/d/e/f/g.service");
        // A container dir without memory files (v2 without the controller) is left out.
        std::fs::create_dir_all(top.join(format!("default/{ID}"))).expect("mkdir");
        let hierarchy = Hierarchy {
            version: CgroupVersion::V1,
            top: top.to_owned(),
        };
        let mut found = Vec::new();
        assert_eq!(discover(&hierarchy, &mut found), 0);
        found.sort();
        let relative: Vec<String> = found
            .iter()
            .map(|p| p.strip_prefix(top).expect("under").display().to_string())
            .collect();
        assert_eq!(
            relative,
            [
                format!("docker/{ID}"),
                format!("kubepods/burstable/pod{UID}/{ID}"),
                "system.slice/cron.service".to_owned(),
            ]
        );
    }

    #[test]
    fn given_paths_resolve_or_are_refused_naming_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().join("memory");
        std::fs::create_dir_all(top.join("job")).expect("mkdir");
        std::fs::write(top.join("job/memory.usage_in_bytes"), "0\n").expect("write");
        let hierarchies = [Hierarchy {
            version: CgroupVersion::V1,
            top: top.clone(),
        }];
        let (_, found) = resolve(Path::new("job"), &hierarchies).expect("relative");
        assert_eq!(found, top.join("job"));
        let (_, found) = resolve(&top.join("job"), &hierarchies).expect("absolute");
        assert_eq!(found, top.join("job"));
        let error = resolve(Path::new("nope/x"), &hierarchies).expect_err("missing");
        assert!(
            error
                .to_string()
                .starts_with("no memory cgroup 'nope/x' under "),
            "{error}"
        );
        let error = resolve(Path::new("/etc"), &hierarchies).expect_err("outside");
        assert!(
            error.to_string().starts_with("cgroup '/etc' is not under"),
            "{error}"
        );
        let error = resolve(Path::new("../job"), &hierarchies).expect_err("dots");
        assert!(
            error
                .to_string()
                .starts_with("invalid cgroup path '../job'"),
            "{error}"
        );
    }

    fn v1_cgroup(top: &Path, path: &str) -> PathBuf {
        let dir = top.join(path);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let files = [
            ("memory.usage_in_bytes", "1048576\n"),
            (
                "memory.stat",
                "total_rss 1048576\ntotal_cache 0\ntotal_shmem 0\ntotal_inactive_file 0\n\
                 hierarchical_memory_limit 67108864\n",
            ),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write");
        }
        dir
    }

    #[test]
    fn bad_or_vanishing_cgroups_are_skipped_counted_or_gone_never_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path();
        let hierarchy = Hierarchy {
            version: CgroupVersion::V1,
            top: top.to_owned(),
        };
        let good = v1_cgroup(top, &format!("docker/{ID}"));
        let other = format!("{}{}", &ID[1..], "0");
        let flaky = v1_cgroup(top, &format!("docker/{other}"));
        // Found by the walk but unreadable at its first read: skipped and counted.
        let broken = v1_cgroup(top, "system.slice/broken.service");
        std::fs::write(broken.join("memory.stat"), "garbage\n").expect("write");
        let mut set = CgroupSet::new(Some(vec![hierarchy]));
        let now = Instant::now();
        let report = set.tick(now);
        assert_eq!(report.found.len(), 2, "{report:?}");
        assert_eq!(report.skipped, 1);
        assert_eq!(report.samples.len(), 2);
        // A file turned bad: a failed read, still watched; a cgroup removed: gone.
        std::fs::write(flaky.join("memory.oom_control"), "nonsense\n").expect("write");
        std::fs::remove_dir_all(&good).expect("rm");
        let report = set.tick(now + Duration::from_millis(100));
        assert!(
            report.found.is_empty() && report.skipped == 0,
            "no walk yet: {report:?}"
        );
        assert_eq!(report.gone, std::slice::from_ref(&good));
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, flaky);
        assert_eq!(set.len(), 1);
        // Repaired, it is read again; the walk does not find the gone one again.
        std::fs::write(
            flaky.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .expect("write");
        let report = set.tick(now + DISCOVER_EVERY * 2);
        assert_eq!(report.samples.len(), 1);
        assert_eq!(report.samples[0].1.oom_kill, Some(1));
        assert!(report.found.is_empty() && report.gone.is_empty());
        assert_eq!(report.skipped, 1, "the broken one, again");
    }
}
