//! What `watch` reads of `/proc` besides memory (the probe reads that): a process's command
//! line, its name, and its state and parent from `stat`.

use std::fs;
use std::io;
use std::path::Path;

/// The command line of `pid`, one string per argument (`/proc/PID/cmdline` split on NULs);
/// empty for kernel threads and zombies.
pub(super) fn command(proc_root: &Path, pid: u32) -> io::Result<Vec<String>> {
    let bytes = fs::read(proc_root.join(pid.to_string()).join("cmdline"))?;
    Ok(split_command(&bytes))
}

fn split_command(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The name the kernel keeps for `pid` (`/proc/PID/comm`, at most 15 bytes).
pub(super) fn name(proc_root: &Path, pid: u32) -> io::Result<String> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))?;
    Ok(text.trim_end_matches('\n').to_owned())
}

/// The fields of `/proc/PID/stat` that `watch` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    /// The state letter: `R`, `S`, `D`, `Z` (zombie), …
    pub(super) state: char,
    /// The parent's pid; 0 for the roots of the pid namespace.
    pub(super) ppid: u32,
}

pub(super) fn stat(proc_root: &Path, pid: u32) -> io::Result<Stat> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed /proc/{pid}/stat '{text}'"),
        )
    })
}

/// After the name in parentheses (which may itself hold spaces and parentheses): the state,
/// then the parent's pid.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid })
}

/// Whether `pid` has exited and only waits for its parent to reap it (or is gone already).
pub(super) fn exited(proc_root: &Path, pid: u32) -> bool {
    stat(proc_root, pid).map_or(true, |stat| matches!(stat.state, 'Z' | 'X'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_on_nuls_keeping_empty_arguments() {
        assert_eq!(split_command(b"sleep\x0030\x00"), ["sleep", "30"]);
        assert_eq!(split_command(b"a\x00\x00b\x00"), ["a", "", "b"]);
        // A process that rewrote its arguments may leave no trailing NUL.
        assert_eq!(
            split_command(b"nginx: master process"),
            ["nginx: master process"]
        );
        assert!(split_command(b"").is_empty());
    }

    #[test]
    fn stat_is_read_after_the_last_parenthesis() {
        assert_eq!(
            parse_stat("42 (a) b (c)) S 7 42 42 0 -1"),
            Some(Stat {
                state: 'S',
                ppid: 7
            })
        );
        assert_eq!(
            parse_stat("9 (sleep) Z 1 9"),
            Some(Stat {
                state: 'Z',
                ppid: 1
            })
        );
        assert_eq!(parse_stat("9 (sleep"), None);
        assert_eq!(parse_stat("9 (sleep) S x"), None);
    }
}
