//! Stamps the git revision into `plimsoll --version` (`PLIMSOLL_REVISION`). One `git` call,
//! rerun only when HEAD or the branch it points to moves. Where there is no git checkout of this
//! workspace (a crate tarball), the revision cargo recorded when it packaged the crate
//! (`.cargo_vcs_info.json`), else "unknown". `PLIMSOLL_REVISION` in the environment wins
//! (for packagers that build from a tarball of their own).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PLIMSOLL_REVISION");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let revision = std::env::var("PLIMSOLL_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| from_git(&manifest_dir))
        .or_else(|| from_vcs_info(&manifest_dir))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PLIMSOLL_REVISION={revision}");
}

/// The short HEAD of the git checkout this crate sits in, when it is this workspace's own
/// (`crates/plimsoll` under the top level): a packaged crate unpacked inside some other
/// repository (cargo's own `target/package`) does not take that repository's revision.
fn from_git(manifest_dir: &Path) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(manifest_dir)
        .args([
            "rev-parse",
            "--show-toplevel",
            "--absolute-git-dir",
            "--git-common-dir",
            "HEAD",
            "--symbolic-full-name",
            "HEAD",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let [toplevel, git_dir, common_dir, revision, head_ref] = lines[..] else {
        return None;
    };
    let ours = manifest_dir.canonicalize().ok()?
        == Path::new(toplevel)
            .join("crates/plimsoll")
            .canonicalize()
            .ok()?;
    if !ours {
        return None;
    }
    // What moves when HEAD moves, and nothing else (not the other branches, which other
    // worktrees commit to): HEAD, its reflog (written at every commit, checkout or reset, also
    // when the branch is packed), the branch's file and packed-refs. A path that does not exist
    // would make cargo rerun this every build: name only those that do.
    let git_dir = Path::new(git_dir);
    let common_dir = git_dir.join(common_dir);
    let mut watched = vec![
        git_dir.join("HEAD"),
        git_dir.join("logs/HEAD"),
        common_dir.join("packed-refs"),
    ];
    if head_ref.starts_with("refs/") {
        watched.push(common_dir.join(head_ref));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(revision.chars().take(12).collect())
}

/// The revision `cargo package` wrote into the tarball (`{"git": {"sha1": "…"}}`), shortened.
fn from_vcs_info(manifest_dir: &Path) -> Option<String> {
    let path = manifest_dir.join(".cargo_vcs_info.json");
    let text = std::fs::read_to_string(&path).ok()?;
    println!("cargo:rerun-if-changed={}", path.display());
    let after = text.split("\"sha1\"").nth(1)?;
    let sha: String = after
        .trim_start_matches([' ', ':', '"', '\n', '\t'])
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    (sha.len() == 12).then_some(sha)
}
