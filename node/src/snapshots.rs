//! The snapshots a node takes and serves to joiners (ADR 017 part 4).
//!
//! After committing a height divisible by `snapshot.interval_blocks`, the
//! node takes a RocksDB checkpoint of its store (hard links, at one
//! sequence number, while commits go on) into `HOME/snapshots/.taking`,
//! cuts the checkpoint's state into a manifest on a blocking thread, and
//! renames the directory to `HOME/snapshots/<height>` once the manifest is
//! written, so a snapshot directory with a height for a name is always
//! complete. It keeps `snapshot.keep` of them.
//!
//! The checkpoint runs beside the commits, so it holds the first head it
//! sees at or after the interval height: on a busy chain sometimes a block
//! or two later, and then nodes offer different heights. A joiner fetches
//! from every peer offering the height it chose. (Pinning the exact height
//! without holding up consensus needs a pinned read view written out to
//! chunk files; see ADR 017, step 13 as built.)
//!
//! Peers ask over the sync protocol (`SnapshotOffers`, `SnapshotManifest`,
//! `SnapshotChunk`). The answers are read on blocking threads, at most
//! [`SERVING_MAX`] at a time; a request beyond that is answered with
//! nothing, and the joiner asks again or asks another peer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use aidledger_storage::snapshot::{chunk_pairs, manifest_at_head};
use aidledger_storage::{RocksStore, Store};
use aidledger_types::codec;
use aidledger_types::snapshot::{SnapshotChunk, SnapshotManifest, MANIFEST_MAX_BYTES};
use aidledger_types::wire::{
    SnapshotChunkResponse, SnapshotManifestResponse, SnapshotOffersResponse, SyncRequest,
    SNAPSHOT_OFFERS_MAX,
};
use anyhow::{Context, Result};

use crate::config::SnapshotSection;

/// Most snapshot requests answered at once.
pub const SERVING_MAX: usize = 4;
const TAKING: &str = ".taking";
const MANIFEST_FILE: &str = "manifest.bin";
const DB_DIR: &str = "db";

/// One snapshot opened for serving: its checkpoint and its manifest.
struct Open {
    height: u64,
    store: RocksStore,
    manifest: SnapshotManifest,
}

pub struct Snapshots {
    dir: PathBuf,
    cfg: SnapshotSection,
    store: Arc<RocksStore>,
    /// The highest height taken or being taken.
    last: u64,
    taking: Arc<AtomicBool>,
    serving: Arc<AtomicUsize>,
    open: Arc<Mutex<Option<Open>>>,
}

/// The heights of the complete snapshots in `dir`, lowest first.
pub fn heights(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u64>().ok())
        .filter(|h| dir.join(h.to_string()).join(MANIFEST_FILE).is_file())
        .collect();
    out.sort_unstable();
    out
}

impl Snapshots {
    pub fn new(home: &Path, cfg: SnapshotSection, store: Arc<RocksStore>) -> Snapshots {
        let dir = home.join("snapshots");
        // A snapshot cut short by a stop is never complete; start over.
        let _ = std::fs::remove_dir_all(dir.join(TAKING));
        let last = heights(&dir).last().copied().unwrap_or(0);
        Snapshots {
            dir,
            cfg,
            store,
            last,
            taking: Arc::new(AtomicBool::new(false)),
            serving: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(Mutex::new(None)),
        }
    }

    /// Called after each commit: takes a snapshot, in the background, at
    /// every `interval_blocks`-th height (one at a time; a height reached
    /// while one is being taken waits for the next interval).
    pub fn committed(&mut self, height: u64) {
        let every = self.cfg.interval_blocks;
        if every == 0 || height == 0 || !height.is_multiple_of(every) || height <= self.last {
            return;
        }
        if self.taking.swap(true, Ordering::SeqCst) {
            return;
        }
        self.last = height;
        let (dir, store, keep, taking) = (
            self.dir.clone(),
            self.store.clone(),
            self.cfg.keep,
            self.taking.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            match take(&dir, &store, keep) {
                Ok((h, chunks)) => tracing::info!(
                    height = h,
                    chunks,
                    secs = format!("{:.2}", started.elapsed().as_secs_f64()),
                    "snapshot taken"
                ),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "taking a snapshot failed"),
            }
            taking.store(false, Ordering::SeqCst);
        });
    }

    /// Whether `req` is a snapshot request, which [`Snapshots::serve`]
    /// answers (the core answers the others).
    pub fn handles(req: &SyncRequest) -> bool {
        matches!(
            req,
            SyncRequest::SnapshotOffers
                | SyncRequest::SnapshotManifest { .. }
                | SyncRequest::SnapshotChunk { .. }
        )
    }

    /// Answers a snapshot request on a blocking thread and hands the answer
    /// to `reply`.
    pub fn serve(&self, req: SyncRequest, reply: impl FnOnce(Vec<u8>) + Send + 'static) {
        let busy = self.serving.fetch_add(1, Ordering::SeqCst) >= SERVING_MAX;
        let (dir, store, open, serving) = (
            self.dir.clone(),
            self.store.clone(),
            self.open.clone(),
            self.serving.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let answer = answer(&dir, &store, &open, req, busy);
            serving.fetch_sub(1, Ordering::SeqCst);
            reply(answer);
        });
    }
}

fn answer(
    dir: &Path,
    store: &RocksStore,
    open: &Mutex<Option<Open>>,
    req: SyncRequest,
    busy: bool,
) -> Vec<u8> {
    match req {
        SyncRequest::SnapshotOffers => {
            let mut hs = heights(dir);
            let skip = hs.len().saturating_sub(SNAPSHOT_OFFERS_MAX);
            hs.drain(..skip);
            codec::encode(&SnapshotOffersResponse {
                head: store.head().ok().flatten().map_or(0, |h| h.height),
                base: store.base().unwrap_or(1),
                heights: hs,
            })
        }
        SyncRequest::SnapshotManifest { height } => {
            let manifest = if busy {
                None
            } else {
                with_open(dir, open, height, |o| o.manifest.clone())
            };
            codec::encode(&SnapshotManifestResponse { manifest })
        }
        SyncRequest::SnapshotChunk { height, index } => {
            let chunk = if busy {
                None
            } else {
                with_open(dir, open, height, |o| {
                    let info = o.manifest.chunks.get(index as usize)?;
                    match chunk_pairs(&o.store, info) {
                        Ok(pairs) => Some(SnapshotChunk {
                            height,
                            index,
                            pairs,
                        }),
                        Err(e) => {
                            tracing::warn!(height, index, error = %e, "reading a snapshot chunk failed");
                            None
                        }
                    }
                })
                .flatten()
            };
            codec::encode(&SnapshotChunkResponse { chunk })
        }
        _ => Vec::new(),
    }
}

/// Runs `f` on snapshot `height`, opening it (and closing the one open
/// before) if needed. `None` when this node does not hold it.
fn with_open<T>(
    dir: &Path,
    open: &Mutex<Option<Open>>,
    height: u64,
    f: impl FnOnce(&Open) -> T,
) -> Option<T> {
    let mut g = open.lock().unwrap_or_else(|e| e.into_inner());
    if g.as_ref().map(|o| o.height) != Some(height) {
        // A height this node does not hold costs a directory listing, and
        // the snapshot open for others stays open.
        if !heights(dir).contains(&height) {
            return None;
        }
        let path = dir.join(height.to_string());
        match open_snapshot(&path, height) {
            Ok(o) => *g = Some(o),
            Err(e) => {
                tracing::warn!(height, error = %format!("{e:#}"), "a snapshot cannot be served");
                return None;
            }
        }
    }
    g.as_ref().map(f)
}

fn open_snapshot(path: &Path, height: u64) -> Result<Open> {
    let manifest = read_manifest(&path.join(MANIFEST_FILE))?;
    // A damaged file is never offered to joiners.
    manifest
        .check()
        .with_context(|| format!("{} does not check", path.display()))?;
    anyhow::ensure!(
        manifest.height() == height,
        "{} holds a manifest for height {}",
        path.display(),
        manifest.height()
    );
    let store = RocksStore::open_read_only(path.join(DB_DIR))?;
    Ok(Open {
        height,
        store,
        manifest,
    })
}

fn read_manifest(path: &Path) -> Result<SnapshotManifest> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    codec::decode_with_limit(&bytes, MANIFEST_MAX_BYTES)
        .with_context(|| format!("decoding {}", path.display()))
}

/// Takes one snapshot: checkpoint, manifest, rename, prune. Returns its
/// height and chunk count.
fn take(dir: &Path, store: &RocksStore, keep: usize) -> Result<(u64, usize)> {
    let tmp = dir.join(TAKING);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    store
        .checkpoint(tmp.join(DB_DIR))
        .context("checkpoint of the store")?;
    let copy = RocksStore::open_read_only(tmp.join(DB_DIR))?;
    let manifest = manifest_at_head(&copy)?.context("the checkpoint holds no block")?;
    // The manifest sums to its block's root, or the checkpoint is not a
    // whole head: never offer it.
    manifest
        .check()
        .context("the manifest just cut does not check")?;
    drop(copy);
    let height = manifest.height();
    let chunks = manifest.chunks.len();
    let file = tmp.join(MANIFEST_FILE);
    {
        use std::io::Write;
        let mut f =
            std::fs::File::create(&file).with_context(|| format!("writing {}", file.display()))?;
        f.write_all(&codec::encode(&manifest))?;
        // On disk before the rename makes the snapshot count as complete.
        f.sync_all()?;
    }
    let done = dir.join(height.to_string());
    if done.exists() {
        std::fs::remove_dir_all(&tmp)?;
        return Ok((height, chunks));
    }
    std::fs::rename(&tmp, &done).with_context(|| format!("renaming to {}", done.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    let all = heights(dir);
    for h in &all[..all.len().saturating_sub(keep)] {
        let old = dir.join(h.to_string());
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::warn!(error = %e, "cannot delete old snapshot {}", old.display());
        }
    }
    Ok((height, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_numeric_directories_are_snapshots() {
        let d = tempfile::tempdir().unwrap();
        for name in ["10", "30", "20", ".taking", "x"] {
            std::fs::create_dir_all(d.path().join(name)).unwrap();
        }
        for name in ["10", "30", ".taking", "x"] {
            std::fs::write(d.path().join(name).join(MANIFEST_FILE), b"").unwrap();
        }
        assert_eq!(heights(d.path()), vec![10, 30]);
        assert!(heights(&d.path().join("missing")).is_empty());
    }
}
