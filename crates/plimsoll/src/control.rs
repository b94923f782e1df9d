//! The control socket: how `plimsoll snapshot TARGET` reaches a running supervisor. One unix
//! socket per supervisor process in the data dir's `run/` (the socket 0600 in a directory
//! forced to 0700, and the peer's uid checked with `SO_PEERCRED`: the local user's permission
//! is the authorization), one JSON line each way, at most `MAX_LINE` bytes, cut off while
//! read: `{"target", "action"}` in, `{"status": "done"|"unsupported"|"failed"|"unknown-target",
//! …}` out.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::agent::SocketFile;
use crate::fds::Burst;
use crate::registry::{AdminAction, AdminReply, AdminRequest, Registry};

/// How long a request may take (a heap snapshot of a big heap takes a while).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a client may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest line either side reads, newline included; a request is a few dozen bytes.
const MAX_LINE: u64 = 64 * 1024;
/// How long the accept loop waits before accepting again after an error (no descriptor left).
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Starts answering requests on this supervisor's control socket in `run_dir`; the socket file
/// goes away when the returned guard is dropped.
pub(crate) fn listen(run_dir: &Path, registry: Arc<Registry>) -> Result<SocketFile> {
    make_private(run_dir)?;
    let path = run_dir.join(format!("control-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on control socket '{}'", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket '{}'", path.display()))?;
    tokio::spawn(accept(listener, registry));
    Ok(SocketFile::new(path))
}

/// Makes `dir` (created when missing) this user's alone: mode 0700, refused when another user
/// owns it (then its permissions are not ours to trust).
fn make_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    crate::common::create_private_dir(dir)?;
    let owner = std::fs::metadata(dir)
        .with_context(|| format!("cannot read '{}'", dir.display()))?
        .uid();
    let own = nix::unistd::geteuid().as_raw();
    if owner != own {
        bail!(
            "'{}' belongs to uid {owner}, not to this user (uid {own}): give a data dir of your own",
            dir.display()
        );
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make '{}' private (mode 0700)", dir.display()))
}

/// Accepts for as long as the supervisor runs: an error (out of descriptors, say) is logged
/// once per burst and retried after a moment, never the end of the loop.
async fn accept(listener: UnixListener, registry: Arc<Registry>) {
    let own = nix::unistd::geteuid().as_raw();
    let mut failing = Burst::new(Duration::from_secs(10));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let peer = stream.peer_cred().ok().map(|cred| cred.uid());
                if let Some(refusal) = refusal(peer, own) {
                    tracing::warn!("control socket: {refusal}");
                    tokio::spawn(refuse(stream, refusal));
                    continue;
                }
                tokio::spawn(answer(stream, registry.clone()));
            }
            Err(error) => {
                if let Some(times) = failing.hit(std::time::Instant::now()) {
                    tracing::warn!(%error, times, "control socket: cannot accept; retrying");
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// Why a peer with uid `peer` may not use the socket of a supervisor running as `own`.
fn refusal(peer: Option<u32>, own: u32) -> Option<String> {
    match peer {
        Some(uid) if uid == own => None,
        Some(uid) => Some(format!(
            "refused a client of uid {uid}: only uid {own} may use it"
        )),
        None => Some("refused a client whose uid cannot be read".to_owned()),
    }
}

async fn refuse(stream: UnixStream, why: String) {
    let (_, mut write) = stream.into_split();
    let reply = json!({ "status": "failed", "error": why });
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
}

async fn answer(stream: UnixStream, registry: Arc<Registry>) {
    let (read, mut write) = stream.into_split();
    let mut limited = AsyncBufReader::new(read.take(MAX_LINE));
    let mut raw = Vec::new();
    let Ok(Ok(_)) = tokio::time::timeout(READ_TIMEOUT, limited.read_until(b'\n', &mut raw)).await
    else {
        return;
    };
    let reply = if raw.last() != Some(&b'\n') && raw.len() as u64 >= MAX_LINE {
        json!({ "status": "failed", "error": format!("request line longer than {MAX_LINE} bytes") })
    } else {
        match parse_request(&String::from_utf8_lossy(&raw)) {
            Ok((target, action)) => handle(&target, action, &registry).await,
            Err(reply) => reply,
        }
    };
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
}

/// A request line's target and action, or the reply that refuses it.
pub(crate) fn parse_request(line: &str) -> Result<(String, AdminAction), Value> {
    let request = serde_json::from_str::<Value>(line)
        .map_err(|error| json!({ "status": "failed", "error": format!("bad request: {error}") }))?;
    let target = request["target"].as_str().unwrap_or_default().to_owned();
    let action = match request["action"].as_str() {
        Some("snapshot") => AdminAction::Snapshot,
        Some("gc") => AdminAction::Gc,
        Some("clear-cache") => AdminAction::ClearCache,
        Some("restart") => AdminAction::Restart,
        Some("leak-check") => AdminAction::LeakCheck,
        other => {
            return Err(json!({ "status": "failed", "error": format!("unknown action {other:?}") }))
        }
    };
    Ok((target, action))
}

async fn handle(target: &str, action: AdminAction, registry: &Registry) -> Value {
    let Some(view) = registry.get(target) else {
        return json!({ "status": "unknown-target" });
    };
    let Some(admin) = view.admin else {
        return json!({ "status": "unsupported", "error": format!("target '{target}' is watched, not owned") });
    };
    let (reply, answer) = oneshot::channel();
    if admin.send(AdminRequest { action, reply }).await.is_err() {
        return json!({ "status": "failed", "error": format!("target '{target}' has stopped") });
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
        Ok(Ok(AdminReply::Done(result))) => json!({ "status": "done", "result": result }),
        Ok(Ok(AdminReply::Unsupported(why))) => json!({ "status": "unsupported", "error": why }),
        Ok(Ok(AdminReply::Failed(why))) => json!({ "status": "failed", "error": why }),
        Ok(Err(_)) => {
            json!({ "status": "failed", "error": format!("target '{target}' has stopped") })
        }
        Err(_) => json!({ "status": "failed", "error": "no answer in time" }),
    }
}

/// Asks every supervisor with a control socket in `data_dir` to do `action` to `target`; returns
/// the result of the one that has it.
pub(crate) fn request(data_dir: &Path, target: &str, action: &str) -> Result<Value> {
    let run_dir = data_dir.join("run");
    let mut sockets: Vec<PathBuf> = std::fs::read_dir(&run_dir)
        .with_context(|| {
            format!(
                "no supervisor is running with data dir '{}'",
                data_dir.display()
            )
        })?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with("control-") && name.ends_with(".sock")
        })
        .collect();
    sockets.sort();
    for socket in &sockets {
        let Ok(mut stream) = StdUnixStream::connect(socket) else {
            continue; // a stale socket of a supervisor that is gone
        };
        stream.set_read_timeout(Some(REQUEST_TIMEOUT + Duration::from_secs(5)))?;
        writeln!(stream, "{}", json!({ "target": target, "action": action }))?;
        let mut line = Vec::new();
        BufReader::new((&stream).take(MAX_LINE)).read_until(b'\n', &mut line)?;
        let reply: Value = serde_json::from_slice(&line)
            .with_context(|| format!("bad answer from '{}'", socket.display()))?;
        match reply["status"].as_str() {
            Some("unknown-target") => continue,
            Some("done") => return Ok(reply["result"].clone()),
            _ => bail!(
                "cannot {action} target '{target}': {}",
                reply["error"].as_str().unwrap_or("no reason given")
            ),
        }
    }
    bail!(
        "no running supervisor in '{}' has a target named '{target}'",
        data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use plimsoll_analysis::LevelConfig;
    use tokio::sync::mpsc;

    use super::*;
    use crate::registry::TargetView;

    /// A registry with target `api` whose loop answers every request with `{"ok": true}`.
    fn registry() -> Arc<Registry> {
        let registry = Registry::new();
        let (sender, mut receiver) = mpsc::channel::<AdminRequest>(4);
        tokio::spawn(async move {
            while let Some(request) = receiver.recv().await {
                let _ = request.reply.send(AdminReply::Done(json!({"ok": true})));
            }
        });
        let mut view = TargetView::new("api", LevelConfig::recommended(), true);
        view.admin = Some(sender);
        registry.insert(view);
        registry
    }

    async fn exchange(socket: &Path, sent: &[u8]) -> Value {
        let mut stream = UnixStream::connect(socket).await.expect("connect");
        // The server may answer and close before a long line is all sent.
        let _ = stream.write_all(sent).await;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
            .await
            .expect("an answer in time")
            .expect("read");
        serde_json::from_slice(&raw).expect("a JSON answer")
    }

    #[tokio::test]
    async fn the_run_dir_is_forced_private_and_the_owner_is_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let run_dir = dir.path().join("run");
        std::fs::create_dir(&run_dir).expect("run dir");
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let socket = listen(&run_dir, registry()).expect("listen");
        let mode = std::fs::metadata(&run_dir)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let data_dir = dir.path().to_path_buf();
        let result = tokio::task::spawn_blocking(move || request(&data_dir, "api", "gc"))
            .await
            .expect("join")
            .expect("the same user is answered");
        assert_eq!(result, json!({"ok": true}));
        drop(socket);
    }

    #[tokio::test]
    async fn a_line_past_the_cap_is_refused_while_read_and_the_socket_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _socket = listen(dir.path(), registry()).expect("listen");
        let path = dir
            .path()
            .join(format!("control-{}.sock", std::process::id()));
        // The cap's worth with no newline: the answer comes without waiting for one.
        let long = vec![b'x'; 64 * 1024];
        let reply = exchange(&path, &long).await;
        assert_eq!(reply["status"], "failed");
        assert_eq!(reply["error"], "request line longer than 65536 bytes");
        let reply = exchange(&path, b"{\"target\": \"nope\", \"action\": \"gc\"}\n").await;
        assert_eq!(reply["status"], "unknown-target");
        let reply = exchange(&path, b"not json\n").await;
        assert_eq!(reply["status"], "failed");
    }

    #[test]
    fn only_the_supervisors_own_uid_is_served() {
        assert_eq!(refusal(Some(1000), 1000), None);
        assert_eq!(
            refusal(Some(1001), 1000).as_deref(),
            Some("refused a client of uid 1001: only uid 1000 may use it")
        );
        assert!(refusal(None, 1000).is_some());
    }
}
