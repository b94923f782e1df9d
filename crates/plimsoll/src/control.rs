//! The control socket: how `plimsoll snapshot TARGET` reaches a running supervisor. One unix
//! socket per supervisor process in the data dir's `run/` (mode 0600: the local user's
//! permission is the authorization), one JSON line each way: `{"target", "action"}` in,
//! `{"status": "done"|"unsupported"|"failed"|"unknown-target", …}` out.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::agent::SocketFile;
use crate::registry::{AdminAction, AdminReply, AdminRequest, Registry};

/// How long a request may take (a heap snapshot of a big heap takes a while).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts answering requests on this supervisor's control socket in `run_dir`; the socket file
/// goes away when the returned guard is dropped.
pub(crate) fn listen(run_dir: &Path, registry: Arc<Registry>) -> Result<SocketFile> {
    let path = run_dir.join(format!("control-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on control socket '{}'", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket '{}'", path.display()))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, registry.clone()));
        }
    });
    Ok(SocketFile::new(path))
}

async fn answer(stream: UnixStream, registry: Arc<Registry>) {
    let (read, mut write) = stream.into_split();
    let mut lines = AsyncBufReader::new(read).lines();
    let Ok(Some(line)) = lines.next_line().await else {
        return;
    };
    let reply = match parse_request(&line) {
        Ok((target, action)) => handle(&target, action, &registry).await,
        Err(reply) => reply,
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
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let reply: Value = serde_json::from_str(&line)
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
