//! Recognising a Node.js command and preparing its environment: the agent preloaded through
//! NODE_OPTIONS (keeping the user's own options), and a heap cap from the budget.

use std::path::{Path, PathBuf};

/// Where the Node.js agent's files are.
#[derive(Debug, Clone)]
pub(crate) struct AgentSetup {
    /// The agent script, written to the data dir.
    pub(crate) script: PathBuf,
    /// Where heap snapshots go.
    pub(crate) snapshot_dir: PathBuf,
}

/// The agent's source, shipped inside the binary and written to the data dir at start. Read
/// through the crate's `agents` link to the workspace's `agents/`, so that the packaged crate
/// (which copies what the link points to) has it too.
pub(crate) const AGENT_JS: &str = include_str!("../../agents/node/plimsoll-agent.js");

/// The share of the budget given to V8's old space when the user sets no cap of their own: the
/// rest is for the young generation, code, Buffers and the native heap.
pub(crate) const OLD_SPACE_SHARE: f64 = 0.7;

/// Is `command` a Node.js program: `node`/`nodejs`, a package manager running a script
/// (`npm`, `npx`, `yarn`, `pnpm`), or a script whose shebang names node?
pub(crate) fn is_node_command(command: &[String], cwd: Option<&Path>) -> bool {
    let Some(program) = command.first() else {
        return false;
    };
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if matches!(
        name.as_str(),
        "node" | "nodejs" | "npm" | "npx" | "yarn" | "pnpm"
    ) {
        return true;
    }
    let path = match cwd {
        Some(cwd) if !Path::new(program).is_absolute() => cwd.join(program),
        _ => Path::new(program).to_path_buf(),
    };
    shebang_names_node(&path)
}

fn shebang_names_node(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 128];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(read) = file.read(&mut head) else {
        return false;
    };
    let head = String::from_utf8_lossy(&head[..read]);
    let first = head.lines().next().unwrap_or_default();
    first.starts_with("#!") && first.contains("node")
}

/// Prepares the agent for `command` when it is a Node.js program (and `enabled`): writes the
/// script into `data_dir/agent/` and makes `data_dir/snapshots/`.
pub(crate) fn setup(
    data_dir: &Path,
    command: &[String],
    cwd: Option<&Path>,
    enabled: bool,
) -> anyhow::Result<Option<AgentSetup>> {
    use anyhow::Context;
    if !enabled || !is_node_command(command, cwd) {
        return Ok(None);
    }
    let agent_dir = data_dir.join("agent");
    let snapshot_dir = data_dir.join("snapshots");
    for dir in [&agent_dir, &snapshot_dir] {
        crate::common::create_private_dir(dir)?;
    }
    let script = agent_dir.join("plimsoll-agent.js");
    if std::fs::read_to_string(&script).ok().as_deref() != Some(AGENT_JS) {
        let temporary = agent_dir.join("plimsoll-agent.js.tmp");
        std::fs::write(&temporary, AGENT_JS).with_context(|| {
            format!(
                "cannot write the Node.js agent to '{}'",
                temporary.display()
            )
        })?;
        std::fs::rename(&temporary, &script)
            .with_context(|| format!("cannot write the Node.js agent to '{}'", script.display()))?;
    }
    Ok(Some(AgentSetup {
        script,
        snapshot_dir,
    }))
}

/// NODE_OPTIONS for the target: the agent preloaded, a heap cap when there is a budget and the
/// user set none, and a snapshot written near the heap limit — followed by the user's own
/// options, which win where they overlap.
pub(crate) fn node_options(
    user: Option<&str>,
    agent: &Path,
    budget: Option<u64>,
    snapshot_dir: &Path,
) -> String {
    let user = user.unwrap_or_default().trim();
    let mut options = vec![format!("--require={}", quote(agent))];
    let capped = user.contains("--max-old-space-size") || user.contains("--max_old_space_size");
    if let (Some(budget), false) = (budget, capped) {
        let mib = ((budget as f64 * OLD_SPACE_SHARE) / (1024.0 * 1024.0))
            .floor()
            .max(16.0) as u64;
        options.push(format!("--max-old-space-size={mib}"));
    }
    if !user.contains("--heapsnapshot-near-heap-limit") {
        options.push("--heapsnapshot-near-heap-limit=1".to_owned());
        options.push(format!("--diagnostic-dir={}", quote(snapshot_dir)));
    }
    if !user.is_empty() {
        options.push(user.to_owned());
    }
    options.join(" ")
}

/// A path as NODE_OPTIONS reads it: quoted when it has spaces.
fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(' ') {
        format!("\"{}\"", text.replace('"', "\\\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn node_commands_are_recognised() {
        assert!(is_node_command(&strings(&["node", "server.js"]), None));
        assert!(is_node_command(&strings(&["/usr/local/bin/node"]), None));
        assert!(is_node_command(&strings(&["npm", "start"]), None));
        assert!(!is_node_command(&strings(&["python3", "app.py"]), None));
        assert!(!is_node_command(&[], None));
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("cli"),
            "#!/usr/bin/env node\nconsole.log(1)\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("tool"), "#!/bin/sh\necho 1\n").expect("write");
        assert!(is_node_command(&strings(&["./cli"]), Some(dir.path())));
        assert!(!is_node_command(&strings(&["./tool"]), Some(dir.path())));
    }

    #[test]
    fn options_keep_the_users_and_cap_the_heap_from_the_budget() {
        let agent = Path::new("/data/agent/plimsoll-agent.js");
        let snapshots = Path::new("/data/snapshots");
        let options = node_options(
            Some("--enable-source-maps"),
            agent,
            Some(1 << 30),
            snapshots,
        );
        assert_eq!(
            options,
            "--require=/data/agent/plimsoll-agent.js --max-old-space-size=716 \
             --heapsnapshot-near-heap-limit=1 --diagnostic-dir=/data/snapshots --enable-source-maps"
        );
        let theirs = node_options(
            Some("--max-old-space-size=300"),
            agent,
            Some(1 << 30),
            snapshots,
        );
        assert!(!theirs.contains("716"), "{theirs}");
        assert!(theirs.ends_with("--max-old-space-size=300"), "{theirs}");
        assert!(!node_options(None, agent, None, snapshots).contains("max-old-space-size"));
    }
}
