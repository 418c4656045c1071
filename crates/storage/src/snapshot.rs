//! Snapshots of a store's state (ADR 017 part 4): cutting the state at the
//! head into the chunks of a manifest, reading a chunk's pairs back, and
//! the checks an install makes. The chunk format and its verification are
//! in [`aidledger_types::snapshot`].
//!
//! The state is read in pages ([`Store::state_scan`]), each its own read,
//! so the functions here must run on a store nothing commits to meanwhile:
//! a checkpoint of a running node's store, a stopped node's store, or a
//! [`crate::MemStore::snapshot`]. A manifest cut from a moving store would
//! not sum to its block's root, and a joiner would refuse it.

use aidledger_types::snapshot::{
    pair_cost, ChunkCutter, ChunkInfo, SnapshotManifest, CHUNK_MAX_BYTES, SNAPSHOT_FORMAT,
};
use aidledger_types::StateAccumulator;

use crate::{
    too_large, KeyValues, StorageError, Store, SCAN_LIMIT_MAX, STATE_KEY_MAX_BYTES,
    STATE_VALUE_MAX_BYTES,
};

/// A visitor of state pairs: `Ok(false)` stops the walk.
type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<bool, StorageError>;

/// Calls `f` on every state pair from `first` (inclusive; the start when
/// `None`) in key order, until it returns `false`.
fn for_each_pair(
    store: &dyn Store,
    first: Option<&[u8]>,
    f: Visit<'_>,
) -> Result<(), StorageError> {
    let mut after: Option<Vec<u8>> = None;
    if let Some(k) = first {
        if let Some(v) = store.state_get(k)? {
            if !f(k, &v)? {
                return Ok(());
            }
        }
        after = Some(k.to_vec());
    }
    loop {
        let page = store.state_scan(b"", after.as_deref(), SCAN_LIMIT_MAX)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        let last = last.clone();
        for (k, v) in &page {
            if !f(k, v)? {
                return Ok(());
            }
        }
        after = Some(last);
    }
}

/// The manifest of the state at the store's head: the head block, its
/// certificate and the state cut into chunks. `None` before block 1.
pub fn manifest_at_head(store: &dyn Store) -> Result<Option<SnapshotManifest>, StorageError> {
    let Some(head) = store.head()? else {
        return Ok(None);
    };
    let missing = |what: &str| {
        StorageError::Snapshot(format!(
            "the head block {}'s {what} is missing",
            head.height
        ))
    };
    let block = store.block(head.height)?.ok_or_else(|| missing("body"))?;
    let certificate = store
        .certificate(head.height)?
        .ok_or_else(|| missing("certificate"))?;
    let mut cutter = ChunkCutter::new();
    for_each_pair(store, None, &mut |k, v| {
        cutter.push(k, v)?;
        Ok(true)
    })?;
    Ok(Some(SnapshotManifest {
        format: SNAPSHOT_FORMAT,
        block,
        certificate,
        chunks: cutter.finish(),
    }))
}

/// The pairs of one chunk of a manifest cut from this store's state.
pub fn chunk_pairs(store: &dyn Store, info: &ChunkInfo) -> Result<KeyValues, StorageError> {
    // The count comes from a manifest file; cap what is reserved for it.
    let mut out = Vec::with_capacity((info.pairs as usize).min(65_536));
    let mut bytes = 0usize;
    for_each_pair(store, Some(&info.first_key), &mut |k, v| {
        if k > info.last_key.as_slice() {
            return Ok(false);
        }
        bytes += pair_cost(k, v);
        if bytes > CHUNK_MAX_BYTES {
            return Err(StorageError::Snapshot(
                "the chunk's range holds more than a chunk: the state changed since the \
                 manifest was cut"
                    .into(),
            ));
        }
        out.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
    Ok(out)
}

/// The accumulator of every pair in the store's state, computed from
/// scratch, and their number.
pub fn recompute_accumulator(store: &dyn Store) -> Result<(StateAccumulator, u64), StorageError> {
    let mut acc = StateAccumulator::new();
    let mut n = 0u64;
    for_each_pair(store, None, &mut |k, v| {
        acc.insert(k, v);
        n += 1;
        Ok(true)
    })?;
    Ok((acc, n))
}

/// What [`Store::snapshot_put_chunk`] checks of the pairs it is given.
pub(crate) fn check_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StorageError> {
    let mut bytes = 0usize;
    let mut previous: Option<&[u8]> = None;
    for (k, v) in pairs {
        too_large("state key size in bytes", k.len(), STATE_KEY_MAX_BYTES)?;
        too_large("state value size in bytes", v.len(), STATE_VALUE_MAX_BYTES)?;
        if previous.is_some_and(|p| p >= k.as_slice()) {
            return Err(StorageError::Snapshot(
                "a chunk's keys are not in strictly increasing order".into(),
            ));
        }
        previous = Some(k);
        bytes += pair_cost(k, v);
    }
    too_large("snapshot chunk size in bytes", bytes, CHUNK_MAX_BYTES)
}

/// The install's unfinished mark must name `height`.
pub(crate) fn check_installing(marked: Option<u64>, height: u64) -> Result<(), StorageError> {
    match marked {
        Some(h) if h == height => Ok(()),
        Some(h) => Err(StorageError::Snapshot(format!(
            "the install under way is at height {h}, not {height}"
        ))),
        None => Err(StorageError::Snapshot(
            "no snapshot install is under way (begin one first)".into(),
        )),
    }
}

/// What [`Store::snapshot_finish`] checks before it writes: the manifest
/// itself, and the stored pairs (`stored`, recomputed from scratch) being
/// exactly the certified state. Returns the accumulator to store.
pub(crate) fn check_finish(
    manifest: &SnapshotManifest,
    stored: (StateAccumulator, u64),
) -> Result<StateAccumulator, StorageError> {
    let sum = manifest.check()?;
    let pairs: u64 = manifest.chunks.iter().map(|c| u64::from(c.pairs)).sum();
    let (acc, n) = stored;
    if n != pairs || acc != sum {
        return Err(StorageError::Snapshot(format!(
            "the stored state ({n} pairs, root {}) is not the state block {} certifies \
             ({pairs} pairs, root {}): a chunk is missing or was stored twice",
            acc.root(),
            manifest.height(),
            sum.root()
        )));
    }
    Ok(acc)
}

/// What [`Store::snapshot_begin`] checks: no committed block, the same
/// genesis as any stored, a height above 0.
pub(crate) fn check_begin(
    has_head: bool,
    stored_genesis: Option<aidledger_types::Hash>,
    genesis_hash: aidledger_types::Hash,
    genesis_bytes: &[u8],
    height: u64,
) -> Result<(), StorageError> {
    if has_head {
        return Err(StorageError::Snapshot(
            "the store already holds blocks; a snapshot installs into a store without any".into(),
        ));
    }
    if let Some(stored) = stored_genesis {
        if stored != genesis_hash {
            return Err(StorageError::GenesisMismatch {
                stored,
                given: genesis_hash,
            });
        }
    }
    too_large(
        "genesis size in bytes",
        genesis_bytes.len(),
        crate::GENESIS_MAX_BYTES,
    )?;
    if height == 0 {
        return Err(StorageError::Snapshot(
            "a snapshot is taken after a committed block; height 0 is the genesis".into(),
        ));
    }
    Ok(())
}

/// The shape of the set changes an install keeps: strictly ascending
/// heights no higher than the snapshot's, each certificate naming its
/// header, each header the last of its set and naming the incoming set.
/// Their signatures are the caller's to verify.
pub(crate) fn check_set_changes(
    changes: &[aidledger_types::snapshot::SetChange],
    height: u64,
) -> Result<(), StorageError> {
    let mut previous = 0u64;
    let mut incoming: Option<aidledger_types::Hash> = None;
    for c in changes {
        let h = c.header.height;
        let bad = |reason: &str| {
            Err(StorageError::Snapshot(format!(
                "the set change at height {h}: {reason}"
            )))
        };
        if h <= previous || h > height {
            return bad("heights must rise and not pass the snapshot's");
        }
        previous = h;
        if c.certificate.height != h || c.certificate.block_hash != c.header.hash() {
            return bad("its certificate is for another block");
        }
        if c.header.next_validator_set_hash == c.header.validator_set_hash
            || c.validators.hash() != c.header.next_validator_set_hash
        {
            return bad("its header does not name its incoming set");
        }
        // Each change leaves the set the one before it brought in.
        if incoming.is_some_and(|i| i != c.header.validator_set_hash) {
            return bad("it does not follow from the change before it");
        }
        incoming = Some(c.header.next_validator_set_hash);
    }
    too_large(
        "set changes in a snapshot install",
        changes.len(),
        1_000_000,
    )
}

/// Refuses a commit on a store whose snapshot install is unfinished.
pub(crate) fn refuse_while_installing(marked: Option<u64>) -> Result<(), StorageError> {
    match marked {
        Some(h) => Err(StorageError::Snapshot(format!(
            "a snapshot install at height {h} is unfinished; nothing commits until it is \
             finished or begun again"
        ))),
        None => Ok(()),
    }
}
