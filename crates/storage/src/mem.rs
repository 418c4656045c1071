//! The in-memory store, for tests and the simulator.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use aidledger_types::snapshot::{SetChange, SnapshotManifest, SET_CHANGES_MAX};
use aidledger_types::{Block, CommitCertificate, Hash, IdentifiedBlock, StateAccumulator};

use crate::snapshot::{
    check_finish, check_installing, check_pairs, check_set_changes, refuse_while_installing,
};
use crate::{
    check_block_commit, check_commit, check_genesis, check_meta, head_of, too_large, CommitBatch,
    Head, IndexEntry, KeyValues, StorageError, Store, TxIndexed, TxLocation,
    SAFETY_STATE_MAX_BYTES, SCAN_LIMIT_MAX,
};

#[derive(Clone, Default)]
struct Inner {
    genesis: Option<(Hash, Vec<u8>)>,
    head: Option<Head>,
    blocks: BTreeMap<u64, Block>,
    certificates: BTreeMap<u64, CommitCertificate>,
    block_events: BTreeMap<u64, Vec<u8>>,
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    tx_index: BTreeMap<Hash, (TxLocation, Vec<u8>)>,
    accumulator: StateAccumulator,
    safety: Option<Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
    /// The snapshot height this store joined from; `None` for history
    /// from genesis.
    base: Option<u64>,
    /// An unfinished snapshot install's height.
    installing: Option<u64>,
    set_changes: BTreeMap<u64, SetChange>,
}

/// BTreeMaps behind a lock, with the same validation as [`crate::RocksStore`].
///
/// Every write is applied whole or not at all, which models a synced write:
/// the simulator models a crash by keeping a [`MemStore::snapshot`] and
/// dropping the live store.
#[derive(Default)]
pub struct MemStore {
    inner: RwLock<Inner>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// A deep copy of everything stored now.
    pub fn snapshot(&self) -> MemStore {
        MemStore {
            inner: RwLock::new(self.read().clone()),
        }
    }

    /// Deletes the consensus safety state, as a lost or deleted file
    /// would: for the simulator's amnesia faults.
    pub fn forget_safety_state(&self) {
        self.write().safety = None;
    }

    // A panic while holding the lock cannot leave a half-applied write
    // behind (writes are built first and swapped in last), so a poisoned
    // lock still guards consistent data and is safe to use.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ordered prefix scan over a map, shared by the in-memory store and tests.
pub(crate) fn scan_map(
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: &[u8],
    start_after: Option<&[u8]>,
    limit: usize,
) -> KeyValues {
    let limit = limit.min(SCAN_LIMIT_MAX);
    let lower: Bound<&[u8]> = match start_after {
        Some(s) if s >= prefix => Bound::Excluded(s),
        _ => Bound::Included(prefix),
    };
    map.range::<[u8], _>((lower, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Store for MemStore {
    fn head(&self) -> Result<Option<Head>, StorageError> {
        Ok(self.read().head)
    }

    fn block(&self, height: u64) -> Result<Option<Block>, StorageError> {
        Ok(self.read().blocks.get(&height).cloned())
    }

    fn block_hash(&self, height: u64) -> Result<Option<Hash>, StorageError> {
        let inner = self.read();
        if height == 0 {
            return Ok(inner.genesis.as_ref().map(|g| g.0));
        }
        Ok(inner.certificates.get(&height).map(|c| c.block_hash))
    }

    fn block_events(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().block_events.get(&height).cloned())
    }

    fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>, StorageError> {
        Ok(self.read().certificates.get(&height).cloned())
    }

    fn tx_location(&self, id: &Hash) -> Result<Option<TxIndexed>, StorageError> {
        Ok(self.read().tx_index.get(id).cloned())
    }

    /// Every entry holds its receipt here, as the index's older form did.
    fn index_walk(
        &self,
        from: &Hash,
        to: Option<&Hash>,
        f: &mut dyn FnMut(&IndexEntry) -> bool,
    ) -> Option<Result<(), StorageError>> {
        let inner = self.read();
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        for (id, (location, _)) in inner.tx_index.range((Bound::Included(from), upper)) {
            let entry = IndexEntry {
                id: *id,
                location: *location,
                receipt_inline: true,
            };
            if !f(&entry) {
                break;
            }
        }
        Some(Ok(()))
    }

    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().state.get(key).cloned())
    }

    fn state_scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        Ok(scan_map(&self.read().state, prefix, start_after, limit))
    }

    fn accumulator(&self) -> Result<StateAccumulator, StorageError> {
        Ok(self.read().accumulator.clone())
    }

    fn check_commit_block(
        &self,
        block: &IdentifiedBlock,
        state_writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        receipts: &[Vec<u8>],
        block_events: &[u8],
        accumulator: &StateAccumulator,
        pending: Option<&crate::PendingParent<'_>>,
    ) -> Result<(), StorageError> {
        let inner = self.read();
        refuse_while_installing(inner.installing)?;
        let genesis = inner.genesis.as_ref().map(|g| g.0);
        let tx_index = &inner.tx_index;
        check_block_commit(
            block,
            crate::Outputs {
                state_writes,
                receipts,
                block_events,
                accumulator,
            },
            inner.head.as_ref(),
            genesis,
            &mut |ids| {
                Ok(ids
                    .iter()
                    .map(|id| tx_index.get(id).map(|(loc, _)| loc.height))
                    .collect())
            },
            pending,
        )
    }

    fn commit_block(&self, batch: CommitBatch) -> Result<(), StorageError> {
        let mut inner = self.write();
        refuse_while_installing(inner.installing)?;
        let genesis = inner.genesis.as_ref().map(|g| g.0);
        {
            let tx_index = &inner.tx_index;
            check_commit(&batch, inner.head.as_ref(), genesis, &mut |ids| {
                Ok(ids
                    .iter()
                    .map(|id| tx_index.get(id).map(|(loc, _)| loc.height))
                    .collect())
            })?;
        }
        if let Some(c) = crate::set_change_of(&batch) {
            inner.set_changes.insert(c.header.height, c);
        }
        let CommitBatch {
            block,
            certificate,
            state_writes,
            receipts,
            block_events,
            accumulator,
            next_validator_set: _,
        } = batch;
        let (block, ids) = block.into_parts();
        let height = block.header.height;
        // Nothing below can fail, so the write is all or nothing.
        for (i, (id, receipt)) in ids.into_iter().zip(receipts).enumerate() {
            let loc = TxLocation {
                height,
                index: i as u32,
            };
            inner.tx_index.insert(id, (loc, receipt));
        }
        for (k, v) in state_writes {
            match v {
                Some(v) => inner.state.insert(k, v),
                None => inner.state.remove(&k),
            };
        }
        inner.head = Some(head_of(&block));
        inner.accumulator = accumulator;
        inner.certificates.insert(height, certificate);
        inner.block_events.insert(height, block_events);
        inner.blocks.insert(height, block);
        Ok(())
    }

    fn put_genesis(
        &self,
        genesis_hash: Hash,
        genesis_bytes: Vec<u8>,
        initial_state: BTreeMap<Vec<u8>, Vec<u8>>,
        accumulator: StateAccumulator,
    ) -> Result<(), StorageError> {
        let mut inner = self.write();
        if let Some((stored, _)) = &inner.genesis {
            if *stored == genesis_hash {
                return Ok(());
            }
            return Err(StorageError::GenesisMismatch {
                stored: *stored,
                given: genesis_hash,
            });
        }
        check_genesis(&genesis_bytes, &initial_state, &accumulator)?;
        if inner.head.is_some() || !inner.state.is_empty() {
            return Err(StorageError::NotEmpty);
        }
        inner.genesis = Some((genesis_hash, genesis_bytes));
        inner.state = initial_state;
        inner.accumulator = accumulator;
        Ok(())
    }

    fn genesis(&self) -> Result<Option<(Hash, Vec<u8>)>, StorageError> {
        Ok(self.read().genesis.clone())
    }

    fn base(&self) -> Result<u64, StorageError> {
        Ok(self.read().base.unwrap_or(1))
    }

    fn snapshot_begin(
        &self,
        genesis_hash: Hash,
        genesis_bytes: Vec<u8>,
        height: u64,
    ) -> Result<(), StorageError> {
        let mut inner = self.write();
        crate::snapshot::check_begin(
            inner.head.is_some(),
            inner.genesis.as_ref().map(|g| g.0),
            genesis_hash,
            &genesis_bytes,
            height,
        )?;
        inner.genesis = Some((genesis_hash, genesis_bytes));
        inner.state.clear();
        inner.accumulator = StateAccumulator::new();
        inner.installing = Some(height);
        Ok(())
    }

    fn snapshot_put_chunk(
        &self,
        height: u64,
        pairs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StorageError> {
        let mut inner = self.write();
        check_installing(inner.installing, height)?;
        check_pairs(pairs)?;
        for (k, v) in pairs {
            inner.state.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    fn snapshot_finish(
        &self,
        manifest: &SnapshotManifest,
        set_changes: &[SetChange],
    ) -> Result<Head, StorageError> {
        let mut inner = self.write();
        let height = manifest.height();
        check_installing(inner.installing, height)?;
        check_set_changes(set_changes, height)?;
        let mut acc = StateAccumulator::new();
        for (k, v) in &inner.state {
            acc.insert(k, v);
        }
        let acc = check_finish(manifest, (acc, inner.state.len() as u64))?;
        let head = head_of(&manifest.block);
        inner.blocks.insert(height, manifest.block.clone());
        inner
            .certificates
            .insert(height, manifest.certificate.clone());
        inner.accumulator = acc;
        inner.head = Some(head);
        inner.base = Some(height);
        inner.installing = None;
        inner.set_changes = set_changes
            .iter()
            .map(|c| (c.header.height, c.clone()))
            .collect();
        Ok(head)
    }

    fn set_changes(&self, after: u64, limit: usize) -> Result<Vec<SetChange>, StorageError> {
        let inner = self.read();
        Ok(inner
            .set_changes
            .range(after.saturating_add(1)..)
            .take(limit.min(SET_CHANGES_MAX))
            .map(|(_, c)| c.clone())
            .collect())
    }

    fn snapshot_installing(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.read().installing)
    }

    fn put_safety_state(&self, bytes: &[u8]) -> Result<(), StorageError> {
        too_large(
            "safety state size in bytes",
            bytes.len(),
            SAFETY_STATE_MAX_BYTES,
        )?;
        self.write().safety = Some(bytes.to_vec());
        Ok(())
    }

    fn safety_state(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().safety.clone())
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().meta.get(key).cloned())
    }

    fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_meta(key, value)?;
        self.write().meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}
