//! Hot backup and restore (ADR 017, part 5): the node's control socket,
//! which takes RocksDB checkpoints while the node runs, and the files a
//! backup and a restore leave behind.
//!
//! The control socket (`HOME/control.sock`, mode 0600) answers one
//! request per connection, one line each way:
//! `checkpoint <absolute directory>` → `{"ok":true,"head":{...}}` or
//! `{"ok":false,"error":"..."}`. Only the user the node runs as may
//! connect (checked with the peer's credentials as well as the mode).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aidledger_storage::{Head, RocksStore};
use aidledger_types::{Hash, PublicKey};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The control socket, relative to the home.
pub const CONTROL_SOCKET: &str = "control.sock";
/// The marker `aidledger restore` leaves in the home: the node catches up
/// before it votes, and deletes the marker once it has.
pub const RESTORED_MARKER: &str = "restored";
/// A backup's manifest, written last: a directory without it is not a
/// finished backup.
pub const MANIFEST: &str = "backup.json";
/// The manifest's format version.
pub const MANIFEST_FORMAT: u32 = 1;

/// Longest request line accepted on the control socket.
const REQUEST_MAX_BYTES: usize = 4096;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a checkpoint may take before the client gives up waiting.
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(600);

/// What a backup holds, in `DIR/backup.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub chain_id: String,
    pub genesis_hash: Hash,
    /// The head the copy holds: the restore checks the copy against it.
    pub height: u64,
    pub block_hash: Hash,
    pub state_root: Hash,
    /// The key of the node the copy was taken from: its safety state in
    /// the copy records that key's votes.
    pub node_key: PublicKey,
    pub org: String,
    /// Taken from a running node (through its control socket) or from a
    /// stopped one's store.
    pub hot: bool,
    /// The node key file is in the copy (`--with-key`).
    pub with_key: bool,
    /// Wall-clock time the copy was taken, in ms since the epoch.
    pub taken_at_ms: u64,
    /// The `aidledger` version that took it.
    pub version: String,
}

/// The head as the control socket reports it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeadInfo {
    pub height: u64,
    pub block_hash: Hash,
    pub state_root: Hash,
}

impl From<Head> for HeadInfo {
    fn from(h: Head) -> HeadInfo {
        HeadInfo {
            height: h.height,
            block_hash: h.block_hash,
            state_root: h.state_root,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head: Option<HeadInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What `aidledger restore` writes into `HOME/restored`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoredMarker {
    pub chain_id: String,
    pub genesis_hash: Hash,
    /// The head the restored store started from.
    pub height: u64,
    pub restored_at_ms: u64,
    pub from: PathBuf,
}

/// Reads the home's restore marker, if any. A marker for another chain, or
/// one that cannot be read, stops the start: the home is not what the
/// operator thinks it is.
pub fn read_restored_marker(
    home: &Path,
    chain_id: &str,
    genesis_hash: &Hash,
) -> Result<Option<PathBuf>> {
    let path = home.join(RESTORED_MARKER);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let m: RestoredMarker = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a restore marker written by aidledger restore",
            path.display()
        )
    })?;
    if m.chain_id != chain_id || m.genesis_hash != *genesis_hash {
        bail!(
            "{} says this home was restored for chain {} (genesis {}), not this one ({} {})",
            path.display(),
            m.chain_id,
            m.genesis_hash.short(),
            chain_id,
            genesis_hash.short()
        );
    }
    Ok(Some(path))
}

/// Listens on `HOME/control.sock` for checkpoint requests until the task
/// is dropped. A stale socket file (a node that did not stop cleanly) is
/// replaced: the caller holds the store's lock, so no other node runs on
/// this home.
pub fn serve_control(home: &Path, store: Arc<RocksStore>) -> Result<tokio::task::JoinHandle<()>> {
    let path = home.join(CONTROL_SOCKET);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 600 {}", path.display()))?;
    }
    let me = nix::unistd::geteuid().as_raw();
    tracing::info!(socket = %path.display(), "control socket ready (aidledger backup)");
    Ok(tokio::spawn(async move {
        loop {
            let (conn, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match conn.peer_cred() {
                Ok(c) if c.uid() == me => {}
                other => {
                    tracing::warn!(peer = ?other.map(|c| c.uid()), "control socket: refused a caller that is not this node's user");
                    continue;
                }
            }
            // One request at a time: checkpoints are not meant to overlap.
            serve_one(conn, &store).await;
        }
    }))
}

async fn serve_one(conn: tokio::net::UnixStream, store: &Arc<RocksStore>) {
    let (rd, mut wr) = conn.into_split();
    let mut line = Vec::new();
    let mut rd = BufReader::new(rd).take(REQUEST_MAX_BYTES as u64 + 1);
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, rd.read_until(b'\n', &mut line)).await {
        Err(_) => error_reply("no request within 5 s"),
        Ok(Err(e)) => error_reply(&format!("reading the request: {e}")),
        Ok(Ok(_)) if line.len() > REQUEST_MAX_BYTES || !line.ends_with(b"\n") => {
            error_reply("the request is not one line of at most 4096 bytes")
        }
        Ok(Ok(_)) => handle_request(&line, store).await,
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = wr.write_all(&out).await;
    let _ = wr.shutdown().await;
}

fn error_reply(msg: &str) -> Reply {
    Reply {
        ok: false,
        head: None,
        error: Some(msg.to_string()),
    }
}

// node/ is where the clock may be read; this times the checkpoint for the log.
#[allow(clippy::disallowed_methods)]
async fn handle_request(line: &[u8], store: &Arc<RocksStore>) -> Reply {
    let Ok(text) = std::str::from_utf8(line) else {
        return error_reply("the request is not UTF-8");
    };
    let text = text.trim_end_matches('\n');
    if text == "ping" {
        return Reply {
            ok: true,
            head: None,
            error: None,
        };
    }
    let Some(dir) = text.strip_prefix("checkpoint ") else {
        return error_reply("unknown request (expected: checkpoint <absolute directory>)");
    };
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() {
        return error_reply("the checkpoint directory must be an absolute path");
    }
    let store = store.clone();
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || store.checkpoint(&dir).map(|h| (h, dir)))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match result {
        Ok((Some(head), dir)) => {
            tracing::info!(
                height = head.height,
                dir = %dir.display(),
                ms = started.elapsed().as_millis() as u64,
                "checkpoint taken"
            );
            Reply {
                ok: true,
                head: Some(head.into()),
                error: None,
            }
        }
        Ok((None, _)) => error_reply("the store is empty: nothing to back up"),
        Err(e) => {
            tracing::warn!(error = %e, "checkpoint failed");
            error_reply(&format!("checkpoint failed: {e}"))
        }
    }
}

/// What the control socket of a home says about a checkpoint request.
pub enum Control {
    /// No node answers on the socket: none runs, or it predates the socket.
    NotRunning,
    /// The node took the checkpoint.
    Taken(HeadInfo),
}

/// Asks the node running on `home` to checkpoint its store into `dir`.
pub fn request_checkpoint(home: &Path, dir: &Path) -> Result<Control> {
    use std::io::{BufRead, Read, Write};
    let path = home.join(CONTROL_SOCKET);
    let mut conn = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Control::NotRunning)
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    conn.set_read_timeout(Some(CHECKPOINT_TIMEOUT))?;
    conn.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let dir = dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not valid UTF-8", dir.display()))?;
    if dir.contains('\n') {
        bail!("the backup directory's path contains a newline");
    }
    conn.write_all(format!("checkpoint {dir}\n").as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(conn.take(64 * 1024))
        .read_line(&mut line)
        .with_context(|| format!("reading the node's answer on {}", path.display()))?;
    let reply: Reply = serde_json::from_str(&line)
        .with_context(|| format!("the node's answer on {} is not valid", path.display()))?;
    match (reply.ok, reply.head) {
        (true, Some(h)) => Ok(Control::Taken(h)),
        _ => bail!(
            "the running node refused: {}",
            reply.error.unwrap_or_else(|| "no reason given".into())
        ),
    }
}

/// True if a node answers on the home's control socket.
pub fn node_answers(home: &Path) -> bool {
    use std::io::Write;
    match std::os::unix::net::UnixStream::connect(home.join(CONTROL_SOCKET)) {
        Ok(mut c) => {
            let _ = c.write_all(b"ping\n");
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failed test

    use super::*;

    fn ask(home: &Path, line: &[u8]) -> Reply {
        use std::io::{Read, Write};
        let mut c = std::os::unix::net::UnixStream::connect(home.join(CONTROL_SOCKET)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = c.write_all(line);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        serde_json::from_str(&out).unwrap()
    }

    /// Bad requests on the control socket get a clear refusal and change
    /// nothing; the socket is the owner's only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_control_socket_refuses_bad_requests_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let store = Arc::new(RocksStore::open(home.path().join("data")).unwrap());
        // A stale socket file from an unclean stop is replaced.
        std::fs::write(home.path().join(CONTROL_SOCKET), b"stale").unwrap();
        let task = serve_control(home.path(), store).unwrap();
        let sock = home.path().join(CONTROL_SOCKET);
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let h = home.path().to_path_buf();
        let replies = tokio::task::spawn_blocking(move || {
            let target = h.join("copy");
            let long = format!("checkpoint /{}\n", "a".repeat(5000));
            vec![
                ask(&h, b"ping\n"),
                ask(&h, b"format disk\n"),
                ask(&h, b"checkpoint relative/dir\n"),
                ask(&h, long.as_bytes()),
                ask(&h, b"checkpoint /no-newline"),
                ask(&h, &[0xff, 0xfe, b'\n']),
                // An empty store has nothing to back up; the directory
                // RocksDB may have begun is not a backup either way.
                ask(&h, format!("checkpoint {}\n", target.display()).as_bytes()),
                ask(&h, format!("checkpoint {}\n", h.display()).as_bytes()),
            ]
        })
        .await
        .unwrap();
        assert!(replies[0].ok, "ping: {:?}", replies[0]);
        let errors: Vec<String> = replies[1..]
            .iter()
            .map(|r| {
                assert!(!r.ok && r.head.is_none(), "{r:?}");
                r.error.clone().unwrap()
            })
            .collect();
        assert!(errors[0].contains("unknown request"), "{errors:?}");
        assert!(errors[1].contains("absolute"), "{errors:?}");
        assert!(errors[2].contains("one line"), "{errors:?}");
        assert!(errors[3].contains("one line"), "{errors:?}");
        assert!(errors[4].contains("UTF-8"), "{errors:?}");
        assert!(errors[5].contains("empty"), "{errors:?}");
        assert!(errors[6].contains("exists"), "{errors:?}");
        task.abort();
    }

    /// Nothing listening: the backup command knows to open the store
    /// itself.
    #[test]
    fn no_socket_means_no_running_node() {
        let home = tempfile::tempdir().unwrap();
        assert!(matches!(
            request_checkpoint(home.path(), &home.path().join("x")).unwrap(),
            Control::NotRunning
        ));
        assert!(!node_answers(home.path()));
    }

    #[test]
    fn a_restore_marker_for_another_chain_or_garbage_stops_the_start() {
        let home = tempfile::tempdir().unwrap();
        let g = aidledger_types::hash::sha256(b"genesis");
        assert_eq!(read_restored_marker(home.path(), "c", &g).unwrap(), None);
        let m = RestoredMarker {
            chain_id: "c".into(),
            genesis_hash: g,
            height: 7,
            restored_at_ms: 1,
            from: PathBuf::from("/b"),
        };
        let path = home.path().join(RESTORED_MARKER);
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(
            read_restored_marker(home.path(), "c", &g).unwrap(),
            Some(path.clone())
        );
        let e = read_restored_marker(home.path(), "other", &g).unwrap_err();
        assert!(e.to_string().contains("restored for chain c"), "{e}");
        std::fs::write(&path, b"not json").unwrap();
        let e = read_restored_marker(home.path(), "c", &g).unwrap_err();
        assert!(e.to_string().contains("not a restore marker"), "{e}");
    }
}
