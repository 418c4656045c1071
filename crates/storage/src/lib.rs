//! Storage for aidledger: blocks, commit certificates, state, the
//! transaction index, the consensus safety state and metadata.
//!
//! [`Store`] is the interface the rest of the node codes against. It has two
//! implementations with the same semantics, including validation:
//!
//! * [`RocksStore`], the durable one, with one column family per kind of data;
//! * [`MemStore`], BTreeMaps behind a lock, for tests and the simulator.
//!
//! Architecture Invariant: a block, its certificate, the state writes it
//! causes, its transaction index entries, the new accumulator and the new
//! head are written in one atomic, synced write. A process killed at any
//! moment restarts at a consistent head: every height up to the head is
//! complete and nothing above it exists.
//!
//! Architecture Invariant: every call that would break the chain (wrong
//! height, wrong parent, a certificate for another block, a state root that
//! disagrees with the accumulator, anything over a limit) is refused with an
//! error before anything is written.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use aidledger_types::block::{BLOCK_MAX_BYTES, BLOCK_MAX_TXS, VALIDATORS_MAX};
use aidledger_types::snapshot::{SetChange, SnapshotManifest};
use aidledger_types::{
    codec, Block, CommitCertificate, Hash, IdentifiedBlock, StateAccumulator, ValidatorSet,
};

mod error;
mod mem;
mod rocks;
pub mod snapshot;

pub use error::StorageError;
pub use mem::MemStore;
pub use rocks::{
    is_vanished_file, keys, Cf, LegacyTxEntry, PointInTime, RocksStateView, RocksStore, StoreMemory,
};

/// Most entries one `state_scan` returns; larger limits are clamped.
pub const SCAN_LIMIT_MAX: usize = 10_000;
/// Most blocks one `blocks_range` returns; larger ranges are truncated.
pub const BLOCKS_RANGE_MAX: usize = 1_000;
/// Longest state key, and longest state value (shared with snapshots).
pub use aidledger_types::snapshot::{STATE_KEY_MAX_BYTES, STATE_VALUE_MAX_BYTES};
/// Most state writes in one block, and most entries in the initial state.
pub const STATE_WRITES_MAX: usize = 1_000_000;
/// Longest encoded receipt.
pub const RECEIPT_MAX_BYTES: usize = 64 * 1024;
/// Largest encoded list of one block's own events (ADR 020): the end of
/// block's releases, payments and anomalies.
pub const BLOCK_EVENTS_MAX_BYTES: usize = 256 * 1024 * 1024;
/// Longest genesis document.
pub const GENESIS_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Longest consensus safety state.
pub const SAFETY_STATE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Longest metadata key.
pub const META_KEY_MAX_BYTES: usize = 128;
/// Longest metadata value.
pub const META_VALUE_MAX_BYTES: usize = 1024 * 1024;
/// Largest stored certificate: enough for `VALIDATORS_MAX` signatures.
pub(crate) const CERTIFICATE_MAX_BYTES: usize = 64 * 1024;

/// Key/value pairs returned by [`Store::state_scan`], in key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// The last committed block.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Head {
    pub height: u64,
    pub block_hash: Hash,
    /// The state root after the head block; equal to the stored
    /// accumulator's root.
    pub state_root: Hash,
}

/// Where a committed transaction is: its block height and its index in the
/// block.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
}

/// Everything one committed block writes, applied atomically by
/// [`Store::commit_block`].
#[derive(Clone, Debug)]
pub struct CommitBatch {
    /// The block, its body checked against its header once, by whoever
    /// made the batch (ADR 026): the store takes the ids from it.
    pub block: IdentifiedBlock,
    pub certificate: CommitCertificate,
    /// State writes caused by the block; `None` deletes the key.
    pub state_writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// One opaque encoded receipt per transaction, in the order of
    /// `block.txs`. Stored under the transaction's height and index; the
    /// tx index maps its id to that location (ADR 025).
    pub receipts: Vec<Vec<u8>>,
    /// The block's own events (those no transaction caused), encoded and
    /// opaque like the receipts. Kept so a node can prove one of them
    /// under the header's `event_root` (ADR 020).
    pub block_events: Vec<u8>,
    /// The state accumulator after this block. Persisted so a restart needs
    /// no recomputation; its root must equal `block.header.state_root`.
    pub accumulator: StateAccumulator,
    /// The set certifying the next block, given exactly when this block is
    /// the last of its set (its header's next-set hash differs from its
    /// set hash) and hashing to that next-set hash. The store keeps it with
    /// the header and certificate as a [`SetChange`], so a joiner holding
    /// only the genesis can follow every set change to a snapshot.
    pub next_validator_set: Option<ValidatorSet>,
}

/// Reads of the committed state through a [`Store::state_view`].
pub trait StateView {
    /// As [`Store::state_get`].
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// As [`Store::state_scan`].
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError>;
}

/// The view of a store that keeps nothing: every read goes to the store as
/// it is now. Right for a store whose reads cost no more one at a time (a
/// map in memory).
struct LiveView<'a, S: ?Sized>(&'a S);

impl<S: Store + ?Sized> StateView for LiveView<'_, S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.state_get(key)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        self.0.state_scan(prefix, start_after, limit)
    }
}

/// A transaction's place in the chain and its encoded receipt.
pub type TxIndexed = (TxLocation, Vec<u8>);

/// One transaction-index entry as [`Store::index_walk`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: Hash,
    pub location: TxLocation,
    /// The entry holds its receipt itself: the form written before
    /// receipts were stored by height (ADR 025).
    pub receipt_inline: bool,
}

/// The storage interface. Both implementations validate identically.
pub trait Store: Send + Sync {
    /// The last committed block, or `None` before block 1 is committed.
    fn head(&self) -> Result<Option<Head>, StorageError>;
    fn block(&self, height: u64) -> Result<Option<Block>, StorageError>;
    /// The hash of the block at `height`, read from its certificate so the
    /// block body is not decoded. Height 0 gives the genesis hash.
    fn block_hash(&self, height: u64) -> Result<Option<Hash>, StorageError>;
    fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>, StorageError>;
    /// The block's own events as [`CommitBatch::block_events`] gave them;
    /// `None` below the store's base or for a height not committed.
    fn block_events(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// The location of a committed transaction and its receipt.
    fn tx_location(&self, id: &Hash) -> Result<Option<TxIndexed>, StorageError>;
    /// [`Store::tx_location`] of many transactions, one result each, in
    /// order. A store may read them in one batch.
    fn tx_locations(&self, ids: &[Hash]) -> Vec<Result<Option<TxIndexed>, StorageError>> {
        ids.iter().map(|id| self.tx_location(id)).collect()
    }
    /// Calls `f` on every transaction-index entry with `from <= id < to`
    /// (to the last id when `to` is `None`), in id order, until `f` returns
    /// false: an auditor's check of the whole index at once (ADR 008). An
    /// entry that does not decode is an error. `None` when the store has no
    /// such walk (this default); a caller then reads entries by id.
    fn index_walk(
        &self,
        _from: &Hash,
        _to: Option<&Hash>,
        _f: &mut dyn FnMut(&IndexEntry) -> bool,
    ) -> Option<Result<(), StorageError>> {
        None
    }
    /// The receipts stored by height (ADR 025) of block `height`'s
    /// transactions `0..count`, one result each, in order; `None` where
    /// none is stored by height (this default, and entries of the older
    /// form, which hold their receipt in the index).
    fn receipts_at(&self, _height: u64, count: u32) -> Vec<Result<Option<Vec<u8>>, StorageError>> {
        (0..count).map(|_| Ok(None)).collect()
    }
    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Ordered scan of keys starting with `prefix`, strictly after
    /// `start_after` if given, at most `limit` entries (clamped to
    /// [`SCAN_LIMIT_MAX`]).
    fn state_scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError>;
    /// Calls `f` on every state pair with `from <= key < to` (to the last
    /// key when `to` is `None`), in key order, until `f` returns false: a
    /// walk over a whole range, as an auditor's final comparison makes. A
    /// store may lend `f` its own bytes instead of copying each pair (RocksDB:
    /// one iterator over the range, which leaves the block cache as it
    /// was). `f` must not call the store. This default reads
    /// [`Store::state_scan`]'s pages.
    fn state_walk(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let below_end = |k: &[u8]| to.is_none_or(|t| k < t);
        if !below_end(from) {
            return Ok(());
        }
        // `from` itself, then the pages strictly after it.
        if let Some(v) = self.state_get(from)? {
            if !f(from, &v) {
                return Ok(());
            }
        }
        let mut after = from.to_vec();
        loop {
            let page = self.state_scan(b"", Some(&after), SCAN_LIMIT_MAX)?;
            for (k, v) in &page {
                if !below_end(k) || !f(k, v) {
                    return Ok(());
                }
            }
            match page.into_iter().last() {
                Some((k, _)) => after = k,
                None => return Ok(()),
            }
        }
    }
    /// A view of the committed state for many reads in a row while
    /// nothing commits, as one block's execution makes: its reads answer
    /// as [`Store::state_get`] and [`Store::state_scan`] do. What a view
    /// sees of a commit made while it lives depends on the store (a
    /// RocksDB view reads at a snapshot and sees none; the default view
    /// reads the store as it is), so a caller drops its view before it
    /// commits. A store may keep what makes reads cheap inside it (RocksDB:
    /// one iterator, sought again for each scan, instead of a new iterator
    /// for every scan), so a view is for one task and a short time: it
    /// holds the files and memtables of its moment until dropped.
    fn state_view(&self) -> Box<dyn StateView + '_> {
        Box::new(LiveView(self))
    }
    /// The accumulator of the current state; the empty accumulator when
    /// nothing is stored.
    fn accumulator(&self) -> Result<StateAccumulator, StorageError>;
    /// Atomically stores a block with everything it writes and moves the
    /// head. Refuses, changing nothing, unless the block's height is
    /// head + 1 (1 when empty), its parent is the head's hash (the genesis
    /// hash for height 1), the certificate is for this block, there is one
    /// receipt per transaction, the accumulator's root is the header's
    /// state root, no transaction is already indexed and everything is
    /// within the limits. That the body
    /// matches the header is the batch's type's guarantee
    /// ([`IdentifiedBlock`], ADR 026).
    fn commit_block(&self, batch: CommitBatch) -> Result<(), StorageError>;
    /// [`Store::commit_block`], with the same checks and the same atomic
    /// batch, without waiting for the disk: the block is readable at once
    /// and survives the process's death, but a power loss may take it,
    /// with every later block committed this way, until the next synced
    /// write or [`Store::sync_writes`] (ADR 007 amendment, 2026-12-06).
    /// Only for certified blocks another node can serve again: catch-up.
    fn commit_block_deferred(&self, batch: CommitBatch) -> Result<(), StorageError> {
        self.commit_block(batch)
    }
    /// Makes every write so far durable, as a synced write would.
    fn sync_writes(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Every check [`Store::commit_block`] makes, except those on the
    /// certificate, without writing. A validator runs it before it votes
    /// for a block, so a block it certifies always commits unless the
    /// disk itself fails (ADR 010). `pending: None` checks the block on
    /// the head; `Some` on a parent checked but not committed yet
    /// (ADR 022): the checks `commit_block` will make once that parent has
    /// committed on top of the head.
    fn check_commit_block(
        &self,
        block: &IdentifiedBlock,
        state_writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        receipts: &[Vec<u8>],
        block_events: &[u8],
        accumulator: &StateAccumulator,
        pending: Option<&PendingParent<'_>>,
    ) -> Result<(), StorageError>;
    /// Atomically stores the genesis document and the initial state.
    /// Idempotent with the same hash; refused with a different one. The
    /// accumulator must be the initial state's accumulator.
    fn put_genesis(
        &self,
        genesis_hash: Hash,
        genesis_bytes: Vec<u8>,
        initial_state: BTreeMap<Vec<u8>, Vec<u8>>,
        accumulator: StateAccumulator,
    ) -> Result<(), StorageError>;
    fn genesis(&self) -> Result<Option<(Hash, Vec<u8>)>, StorageError>;
    /// Consensus safety state: opaque bytes, written with a synced write.
    /// The caller writes it BEFORE sending any message that depends on it.
    fn put_safety_state(&self, bytes: &[u8]) -> Result<(), StorageError>;
    fn safety_state(&self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Free-form metadata for other crates. Its key space is separate from
    /// the store's own bookkeeping, so it cannot overwrite the head.
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;

    /// The lowest height whose block this store holds: 1 on a store that
    /// keeps all history from genesis (an archive), `S` on one that joined
    /// from a snapshot at `S` (pruned, ADR 017 part 4). Blocks, their
    /// certificates and the transaction index exist from the base on.
    fn base(&self) -> Result<u64, StorageError>;

    /// Starts installing a snapshot at `height` into a store with no
    /// committed block: stores the genesis document (the same one, if one
    /// is stored), clears the state and marks the install unfinished.
    /// Starting again discards an unfinished install. Until
    /// [`Store::snapshot_finish`], nothing commits on this store.
    fn snapshot_begin(
        &self,
        genesis_hash: Hash,
        genesis_bytes: Vec<u8>,
        height: u64,
    ) -> Result<(), StorageError>;

    /// Adds one chunk's pairs (checked against the manifest by the caller)
    /// to an install begun at `height`. Keys must be sorted strictly and
    /// within the limits.
    fn snapshot_put_chunk(
        &self,
        height: u64,
        pairs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StorageError>;

    /// Finishes an install: checks the manifest, recomputes the
    /// accumulator of every stored pair and refuses unless it is the one
    /// the manifest's block certifies; then atomically stores the block,
    /// its certificate, the accumulator, the head and the base, and clears
    /// the unfinished mark. Returns the new head.
    ///
    /// `set_changes` are the validator-set changes from genesis up to and
    /// including `S`, which the caller followed and verified to reach the
    /// set that certified `S`; the store keeps them to serve later joiners
    /// (see [`Store::set_changes`]) and checks only their shape.
    fn snapshot_finish(
        &self,
        manifest: &SnapshotManifest,
        set_changes: &[SetChange],
    ) -> Result<Head, StorageError>;

    /// The validator-set changes at heights above `after`, in height order,
    /// at most `limit` (clamped to [`aidledger_types::snapshot::SET_CHANGES_MAX`]).
    fn set_changes(&self, after: u64, limit: usize) -> Result<Vec<SetChange>, StorageError>;

    /// The height of an unfinished snapshot install, if one is under way
    /// (or was cut short by a crash: the caller begins it again).
    fn snapshot_installing(&self) -> Result<Option<u64>, StorageError>;

    /// Blocks `from..=to_inclusive` in order, for block sync. Stops at the
    /// first missing height and returns at most [`BLOCKS_RANGE_MAX`] blocks.
    /// Height 0 is the genesis, which is not a block, so it is skipped.
    fn blocks_range(&self, from: u64, to_inclusive: u64) -> Result<Vec<Block>, StorageError> {
        let mut out = Vec::new();
        let mut h = from.max(1);
        while h <= to_inclusive && out.len() < BLOCKS_RANGE_MAX {
            match self.block(h)? {
                Some(b) => out.push(b),
                None => break,
            }
            h = match h.checked_add(1) {
                Some(n) => n,
                None => break,
            };
        }
        Ok(out)
    }
}

pub(crate) fn too_large(what: &'static str, len: usize, limit: usize) -> Result<(), StorageError> {
    if len > limit {
        Err(StorageError::TooLarge { what, len, limit })
    } else {
        Ok(())
    }
}

/// Where each transaction id is already indexed (its height), one answer
/// per id, in order.
pub(crate) type IndexedAt<'a> =
    &'a mut dyn FnMut(&[Hash]) -> Result<Vec<Option<u64>>, StorageError>;

/// Checks a commit batch against the current head and genesis, without
/// writing. `indexed_at` reports where transaction ids are already indexed.
pub(crate) fn check_commit(
    batch: &CommitBatch,
    head: Option<&Head>,
    genesis: Option<Hash>,
    indexed_at: IndexedAt<'_>,
) -> Result<(), StorageError> {
    check_block_commit(
        &batch.block,
        Outputs {
            state_writes: &batch.state_writes,
            receipts: &batch.receipts,
            block_events: &batch.block_events,
            accumulator: &batch.accumulator,
        },
        head,
        genesis,
        indexed_at,
        None,
    )?;
    too_large(
        "certificate signature count",
        batch.certificate.signatures.len(),
        VALIDATORS_MAX,
    )?;
    let height = batch.block.height();
    check_next_set(&batch.block.header, batch.next_validator_set.as_ref())?;
    let block_hash = batch.block.hash();
    let cert = &batch.certificate;
    if cert.height != height || cert.block_hash != block_hash {
        return Err(StorageError::CertificateMismatch {
            height,
            block_hash,
            cert_height: cert.height,
            cert_block: cert.block_hash,
        });
    }
    Ok(())
}

/// A batch carries the next validator set exactly when its block is the
/// last of its set, and then the set its header names.
pub(crate) fn check_next_set(
    header: &aidledger_types::BlockHeader,
    next: Option<&ValidatorSet>,
) -> Result<(), StorageError> {
    let changes = header.next_validator_set_hash != header.validator_set_hash;
    let height = header.height;
    match next {
        None if changes => Err(StorageError::NextValidatorSet {
            height,
            reason: "the block changes the set but the batch carries no next set".into(),
        }),
        Some(_) if !changes => Err(StorageError::NextValidatorSet {
            height,
            reason: "the block does not change the set but the batch carries a next set".into(),
        }),
        Some(v) if v.hash() != header.next_validator_set_hash => {
            Err(StorageError::NextValidatorSet {
                height,
                reason: format!(
                    "the batch's next set hashes to {}, the header names {}",
                    v.hash(),
                    header.next_validator_set_hash
                ),
            })
        }
        _ => Ok(()),
    }
}

/// The set change a committed batch records, if its block is the last of
/// its set.
pub(crate) fn set_change_of(batch: &CommitBatch) -> Option<SetChange> {
    batch.next_validator_set.as_ref().map(|v| SetChange {
        header: batch.block.header.clone(),
        certificate: batch.certificate.clone(),
        validators: v.clone(),
    })
}

/// What a block writes besides itself, as the commit checks see it.
pub(crate) struct Outputs<'a> {
    pub state_writes: &'a BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub receipts: &'a [Vec<u8>],
    pub block_events: &'a [u8],
    pub accumulator: &'a StateAccumulator,
}

/// Everything [`check_commit`] checks except the certificate: what a
/// validator checks before it votes, so a block it helps certify is one
/// its store will take ([`Store::check_commit_block`]).
/// A block checked on top of the head but not committed yet, which the
/// block being checked extends (ADR 022).
#[derive(Clone, Copy, Debug)]
pub struct PendingParent<'a> {
    pub height: u64,
    pub hash: Hash,
    /// Its transaction ids: the child may not hold them again.
    pub ids: &'a [Hash],
}

pub(crate) fn check_block_commit(
    block: &IdentifiedBlock,
    outputs: Outputs<'_>,
    head: Option<&Head>,
    genesis: Option<Hash>,
    indexed_at: IndexedAt<'_>,
    pending: Option<&PendingParent<'_>>,
) -> Result<(), StorageError> {
    let Outputs {
        state_writes,
        receipts,
        block_events,
        accumulator,
    } = outputs;
    let genesis = genesis.ok_or(StorageError::NoGenesis)?;
    let header = &block.header;
    let height = header.height;
    let (mut expected_height, mut expected_parent) = match head {
        Some(h) => (h.height.saturating_add(1), h.block_hash),
        None => (1, genesis),
    };
    if let Some(p) = pending {
        // The pending parent must itself be the head's child.
        if p.height != expected_height {
            return Err(StorageError::HeightMismatch {
                expected: expected_height.saturating_add(1),
                got: header.height,
            });
        }
        (expected_height, expected_parent) = (p.height.saturating_add(1), p.hash);
    }
    if height != expected_height {
        return Err(StorageError::HeightMismatch {
            expected: expected_height,
            got: height,
        });
    }
    if header.parent_hash != expected_parent {
        return Err(StorageError::ParentMismatch {
            height,
            expected: expected_parent,
            got: header.parent_hash,
        });
    }

    too_large("block transaction count", block.txs.len(), BLOCK_MAX_TXS)?;
    too_large(
        "encoded block size in bytes",
        codec::encoded_len(block.block()),
        BLOCK_MAX_BYTES,
    )?;
    too_large(
        "state writes in one block",
        state_writes.len(),
        STATE_WRITES_MAX,
    )?;
    for (k, v) in state_writes {
        too_large("state key size in bytes", k.len(), STATE_KEY_MAX_BYTES)?;
        if let Some(v) = v {
            too_large("state value size in bytes", v.len(), STATE_VALUE_MAX_BYTES)?;
        }
    }
    for r in receipts {
        too_large("receipt size in bytes", r.len(), RECEIPT_MAX_BYTES)?;
    }
    too_large(
        "encoded block events size in bytes",
        block_events.len(),
        BLOCK_EVENTS_MAX_BYTES,
    )?;

    // The body matches the header, and these are its ids: the type says
    // so (ADR 026).
    let ids = block.ids();
    if receipts.len() != ids.len() {
        return Err(StorageError::ReceiptCountMismatch {
            height,
            txs: ids.len(),
            receipts: receipts.len(),
        });
    }
    let root = accumulator.root();
    if root != header.state_root {
        return Err(StorageError::StateRootMismatch {
            height,
            header: header.state_root,
            accumulator: root,
        });
    }

    // A repeated id would overwrite the earlier location in the index and
    // break the promise that an id names one committed transaction.
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        if !seen.insert(*id) {
            return Err(StorageError::DuplicateTx {
                id: *id,
                height,
                existing_height: height,
            });
        }
    }
    let found = indexed_at(ids)?;
    if found.len() != ids.len() {
        return Err(StorageError::Corrupt {
            cf: "tx_index",
            key: String::new(),
            reason: format!("{} answers for {} ids", found.len(), ids.len()),
        });
    }
    let in_pending: std::collections::BTreeSet<&Hash> =
        pending.map(|p| p.ids.iter().collect()).unwrap_or_default();
    for (id, at) in ids.iter().zip(found) {
        let at = at.or_else(|| {
            pending
                .filter(|_| in_pending.contains(id))
                .map(|p| p.height)
        });
        if let Some(existing_height) = at {
            return Err(StorageError::DuplicateTx {
                id: *id,
                height,
                existing_height,
            });
        }
    }
    Ok(())
}

/// Checks a genesis call's sizes and that the accumulator is the initial
/// state's, so the state root at height 0 is right by construction.
pub(crate) fn check_genesis(
    genesis_bytes: &[u8],
    initial_state: &BTreeMap<Vec<u8>, Vec<u8>>,
    accumulator: &StateAccumulator,
) -> Result<(), StorageError> {
    too_large(
        "genesis size in bytes",
        genesis_bytes.len(),
        GENESIS_MAX_BYTES,
    )?;
    too_large(
        "initial state entry count",
        initial_state.len(),
        STATE_WRITES_MAX,
    )?;
    let mut computed = StateAccumulator::new();
    for (k, v) in initial_state {
        too_large("state key size in bytes", k.len(), STATE_KEY_MAX_BYTES)?;
        too_large("state value size in bytes", v.len(), STATE_VALUE_MAX_BYTES)?;
        computed.insert(k, v);
    }
    if &computed != accumulator {
        return Err(StorageError::GenesisAccumulatorMismatch {
            given: accumulator.root(),
            computed: computed.root(),
        });
    }
    Ok(())
}

pub(crate) fn check_meta(key: &str, value: &[u8]) -> Result<(), StorageError> {
    too_large("metadata key size in bytes", key.len(), META_KEY_MAX_BYTES)?;
    too_large(
        "metadata value size in bytes",
        value.len(),
        META_VALUE_MAX_BYTES,
    )
}

/// The head a committed block produces.
pub(crate) fn head_of(block: &Block) -> Head {
    Head {
        height: block.header.height,
        block_hash: block.hash(),
        state_root: block.header.state_root,
    }
}
