//! Where a replay reads the chain from.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use aidledger_contracts::Genesis;
use aidledger_execution::{BlockOutcome, MemState};
use aidledger_storage::{Head, RocksStore, StorageError, Store, TxIndexed, TxLocation};
use aidledger_types::{codec, Block, CommitCertificate, Hash, StateAccumulator};

use crate::chainfile::{ChainReader, FileHeader, Record, GENESIS_MAX_BYTES};
use crate::failure::show_key;
use crate::index::{walk_index, SetSum, Walked};
use crate::{AuditError, Failure};

/// One height of the chain as the source holds it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub height: u64,
    pub block: Block,
    pub certificate: CommitCertificate,
}

/// The chain after a replay that verified every block.
pub struct ReplayEnd<'a> {
    /// 0 when there were no blocks.
    pub height: u64,
    /// The last block's hash (the genesis hash at height 0).
    pub block_hash: Hash,
    pub state: &'a MemState,
    pub accumulator: &'a StateAccumulator,
    /// Threads the source may use for its own end checks: the replay's
    /// count, whose checking threads have nothing left to do by then.
    pub threads: usize,
}

/// A block's transaction-index entries and receipts as a source read them
/// ahead, one per transaction, in order (see [`ChainSource::index_reader`]).
pub type IndexEntries = Vec<Result<Option<TxIndexed>, StorageError>>;

/// A chain to replay, read in height order from 1.
pub trait ChainSource {
    /// For messages: the path or what was opened.
    fn describe(&self) -> String;
    /// The genesis document, decoded and checked against the hash the
    /// source records for it.
    fn genesis(&mut self) -> Result<Genesis, Failure>;
    /// How many blocks the source says it holds, for the progress bar.
    fn expected_blocks(&self) -> Option<u64>;
    /// The next height, `None` after the last.
    fn next_entry(&mut self) -> Option<Result<Entry, Failure>>;
    /// Called after each block verified and executed, with what the replay
    /// computed, so a source can compare its own records (a store's
    /// transaction index, say). `ids` are the block's transaction ids, in
    /// order, as hashed once during verification.
    /// `index` is what [`ChainSource::index_reader`]'s store held for
    /// `ids`, read ahead on the verifier threads; `None` when it was not.
    fn check_block(
        &mut self,
        _block: &Block,
        _ids: &[Hash],
        _outcome: &BlockOutcome,
        _index: Option<IndexEntries>,
    ) -> Result<(), Failure> {
        Ok(())
    }
    /// A store whose transaction index [`ChainSource::check_block`]
    /// compares against, for the replay to read each block's entries ahead
    /// of execution, on the threads that verify its signatures, instead of
    /// on the one thread that executes. Only reading moves: every
    /// comparison stays in `check_block`, in order, so what a failure
    /// reports and the state at it do not change. Committed entries do not
    /// change either, so reading them early reads the same bytes.
    fn index_reader(&self) -> Option<Arc<dyn Store>> {
        None
    }
    /// Called once every block verified.
    fn check_end(&mut self, _end: &ReplayEnd<'_>) -> Result<(), Failure> {
        Ok(())
    }
    /// Called once the genesis is read, before the first block: a source
    /// may prepare its own checks, on up to `threads` threads.
    fn begin(&mut self, _threads: usize) {}
    /// Whether [`ChainSource::index_reader`]'s store is read ahead for each
    /// block's receipts by height ([`Store::receipts_at`], given to
    /// `check_block` as entries at the block's own locations) instead of
    /// for its index entries by id.
    fn receipts_by_height(&self) -> bool {
        false
    }
    /// When this source checks some of its records for the whole chain at
    /// once (the transaction index, ADR 008), a source that checks them
    /// block by block. After any failure the replay runs again on it, so
    /// the report names the first failure, and hands back the state at it,
    /// exactly as a block-by-block check finds them.
    fn again_block_by_block(&self) -> Option<Box<dyn ChainSource>> {
        None
    }
}

/// What `check_block` compares a block's transactions against, one entry
/// each: read by id from the index, or (`by_height`, the index checked
/// whole) the receipts read by height as entries at the block's own
/// locations. Read ahead on the verifier threads, or by `check_block`
/// when they did not. A failure found on receipts read by height is never
/// reported as it stands: the replay runs again reading by id
/// ([`ChainSource::again_block_by_block`]).
pub(crate) fn block_records(
    store: &dyn Store,
    by_height: bool,
    height: u64,
    ids: &[Hash],
) -> IndexEntries {
    if !by_height {
        return store.tx_locations(ids);
    }
    let count = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    (0..count)
        .zip(store.receipts_at(height, count))
        .map(|(index, r)| r.map(|found| found.map(|bytes| (TxLocation { height, index }, bytes))))
        .collect()
}

/// How a store source checks the transaction index.
enum IndexCheck {
    /// As one set: each block adds its transactions to a set hash,
    /// compared at the end with the hash of the walk over the whole index;
    /// receipts are read by height.
    Whole { walked: Walked },
    /// Entry by entry, as each block is checked, and at the end what the
    /// walk found beyond the chain (`None`: no walk, before
    /// [`ChainSource::begin`] or for a store that has none). For a store
    /// with entries of the form before ADR 025, when asked for, and after
    /// a failure of the whole check.
    PerBlock {
        walked: Option<Result<Walked, StorageError>>,
    },
}

fn decode_genesis(bytes: &[u8], recorded: &Hash) -> Result<Genesis, Failure> {
    let g: Genesis = codec::decode_with_limit(bytes, GENESIS_MAX_BYTES)
        .map_err(|e| Failure::at(0, "genesis", format!("does not decode: {e}")))?;
    if &g.hash() != recorded {
        return Err(Failure::at(
            0,
            "genesis",
            format!(
                "document hashes to {}, but {} is recorded as the genesis hash",
                g.hash().short(),
                recorded.short()
            ),
        ));
    }
    g.validate()
        .map_err(|e| Failure::at(0, "genesis", format!("is not valid: {e}")))?;
    Ok(g)
}

/// A node's store, normally its data directory opened read-only (which
/// works while the node runs and sees the chain as of the opening).
///
/// Besides the blocks and certificates it checks, against the replay, each
/// block's transaction index entries, receipts and own events and, at the end, the
/// head record, the stored state (every key and value) and the stored
/// state accumulator.
pub struct StoreSource {
    store: Arc<dyn Store>,
    label: String,
    head: Option<Head>,
    next: u64,
    index: IndexCheck,
    /// Check the index entry by entry whatever the store holds.
    per_block_only: bool,
    /// The transactions of the blocks checked so far, and (checking the
    /// index whole) their set hash.
    chain_txs: u64,
    chain_sum: SetSum,
}

impl StoreSource {
    /// Opens a data directory read-only.
    pub fn open_read_only(path: &Path) -> Result<StoreSource, AuditError> {
        if !path.is_dir() {
            return Err(AuditError::Invalid {
                what: path.display().to_string(),
                reason: "is not a data directory".into(),
            });
        }
        let store = RocksStore::open_read_only(path).map_err(|source| AuditError::Store {
            path: path.display().to_string(),
            source,
        })?;
        Ok(StoreSource::new(
            Arc::new(store),
            path.display().to_string(),
        ))
    }

    pub fn new(store: Arc<dyn Store>, label: String) -> StoreSource {
        StoreSource {
            store,
            label,
            head: None,
            next: 1,
            index: IndexCheck::PerBlock { walked: None },
            per_block_only: false,
            chain_txs: 0,
            chain_sum: SetSum::default(),
        }
    }

    /// A source that checks the transaction index entry by entry, as each
    /// block is checked, whatever the store holds: what a replay that
    /// checked it whole runs again on after a failure.
    pub fn checking_index_per_block(store: Arc<dyn Store>, label: String) -> StoreSource {
        StoreSource {
            per_block_only: true,
            ..StoreSource::new(store, label)
        }
    }

    /// The end's check of the index: the whole set, or what a walk found
    /// beyond the entries checked one by one.
    fn check_index_end(&self) -> Result<(), Failure> {
        let failure = |reason: String| Failure {
            height: None,
            object: "transaction index".into(),
            reason,
        };
        match &self.index {
            IndexCheck::PerBlock { walked: None } => Ok(()),
            IndexCheck::Whole { walked, .. } => {
                if walked.entries == self.chain_txs && walked.sum == self.chain_sum {
                    Ok(())
                } else {
                    Err(failure("differs from the chain's transactions".into()))
                }
            }
            IndexCheck::PerBlock {
                walked: Some(Err(e)),
            } => Err(failure(format!("cannot be read whole: {e}"))),
            IndexCheck::PerBlock {
                walked: Some(Ok(w)),
            } => {
                // Every transaction of the chain has its entry (each block
                // checked them), and ids are unique keys: what is over
                // the chain's count is entries for nothing in the chain.
                if w.entries == self.chain_txs {
                    Ok(())
                } else {
                    Err(failure(format!(
                        "holds entries for transactions not in the chain: {} entries for {} \
                         transactions",
                        w.entries, self.chain_txs
                    )))
                }
            }
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

impl ChainSource for StoreSource {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn genesis(&mut self) -> Result<Genesis, Failure> {
        let (hash, bytes) = self
            .store
            .genesis()
            .map_err(|e| Failure::at(0, "genesis", format!("cannot be read: {e}")))?
            .ok_or_else(|| Failure::at(0, "genesis", "is missing from the store"))?;
        let g = decode_genesis(&bytes, &hash)?;
        self.head = self.store.head().map_err(|e| Failure {
            height: None,
            object: "head record".into(),
            reason: format!("cannot be read: {e}"),
        })?;
        Ok(g)
    }

    fn expected_blocks(&self) -> Option<u64> {
        Some(self.head.map_or(0, |h| h.height))
    }

    fn next_entry(&mut self) -> Option<Result<Entry, Failure>> {
        let last = self.head.map_or(0, |h| h.height);
        let h = self.next;
        if h > last {
            return None;
        }
        self.next = h.saturating_add(1);
        let block = match self.store.block(h) {
            Ok(Some(b)) => b,
            Ok(None) => return Some(Err(Failure::at(h, "block", "missing"))),
            Err(e) => {
                return Some(Err(Failure::at(
                    h,
                    "block",
                    format!("does not decode: {e}"),
                )))
            }
        };
        let certificate = match self.store.certificate(h) {
            Ok(Some(c)) => c,
            Ok(None) => return Some(Err(Failure::at(h, "certificate", "missing"))),
            Err(e) => {
                return Some(Err(Failure::at(
                    h,
                    "certificate",
                    format!("does not decode: {e}"),
                )))
            }
        };
        Some(Ok(Entry {
            height: h,
            block,
            certificate,
        }))
    }

    fn index_reader(&self) -> Option<Arc<dyn Store>> {
        Some(self.store.clone())
    }

    fn check_block(
        &mut self,
        block: &Block,
        ids: &[Hash],
        outcome: &BlockOutcome,
        index: Option<IndexEntries>,
    ) -> Result<(), Failure> {
        let h = block.height();
        self.chain_txs += ids.len() as u64;
        let whole = self.receipts_by_height();
        if whole {
            for (i, id) in (0u32..).zip(ids) {
                self.chain_sum.add(id, h, i);
            }
        }
        let found = match index {
            Some(found) if found.len() == ids.len() => found,
            _ => block_records(self.store.as_ref(), whole, h, ids),
        };
        for (i, (entry, receipt)) in found.into_iter().zip(&outcome.receipts).enumerate() {
            let obj = || format!("tx {i}");
            let (loc, bytes) = entry
                .map_err(|e| {
                    Failure::at(
                        h,
                        obj(),
                        format!("index entry or receipt cannot be read: {e}"),
                    )
                })?
                .ok_or_else(|| Failure::at(h, obj(), "is missing from the transaction index"))?;
            if loc.height != h || loc.index as usize != i {
                return Err(Failure::at(
                    h,
                    obj(),
                    format!(
                        "is indexed at height {} index {} instead",
                        loc.height, loc.index
                    ),
                ));
            }
            if bytes != codec::encode(receipt) {
                return Err(Failure::at(
                    h,
                    obj(),
                    "stored receipt differs from the replayed receipt",
                ));
            }
        }
        // The block's own events, which payment proofs are built from.
        let own = self
            .store
            .block_events(h)
            .map_err(|e| Failure::at(h, "block events", format!("cannot be read: {e}")))?;
        match own {
            Some(bytes) if bytes == codec::encode(&outcome.events) => Ok(()),
            Some(_) => Err(Failure::at(
                h,
                "block events",
                "differ from the replayed ones",
            )),
            None => Err(Failure::at(h, "block events", "are missing from the store")),
        }
    }

    fn begin(&mut self, threads: usize) {
        let walked = walk_index(self.store.as_ref(), threads);
        self.index = match walked {
            Some(Ok(walked)) if walked.receipts_inline == 0 && !self.per_block_only => {
                IndexCheck::Whole { walked }
            }
            walked => IndexCheck::PerBlock { walked },
        };
    }

    fn receipts_by_height(&self) -> bool {
        matches!(self.index, IndexCheck::Whole { .. })
    }

    fn again_block_by_block(&self) -> Option<Box<dyn ChainSource>> {
        match self.index {
            IndexCheck::Whole { .. } => Some(Box::new(StoreSource::checking_index_per_block(
                self.store.clone(),
                self.label.clone(),
            ))),
            _ => None,
        }
    }

    fn check_end(&mut self, end: &ReplayEnd<'_>) -> Result<(), Failure> {
        // The index first: checked block by block, it would have failed
        // before any of the end's checks.
        self.check_index_end()?;
        let h = end.height;
        let above = h.saturating_add(1);
        match self.store.block(above) {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(Failure::at(
                    above,
                    "block",
                    "exists above the head the store records",
                ))
            }
            Err(e) => {
                return Err(Failure::at(
                    above,
                    "block",
                    format!("cannot be read above the head: {e}"),
                ))
            }
        }
        if let Some(head) = self.head {
            if head.block_hash != end.block_hash || head.state_root != end.accumulator.root() {
                return Err(Failure::at(
                    h,
                    "head record",
                    "differs from the replayed head block and state root",
                ));
            }
        }
        // The stored state, key by key, against the replay's.
        compare_state(self.store.as_ref(), end.state, h, end.threads)?;
        let acc = self
            .store
            .accumulator()
            .map_err(|e| Failure::at(h, "state accumulator", format!("cannot be read: {e}")))?;
        if &acc != end.accumulator {
            return Err(Failure::at(
                h,
                "state accumulator",
                "stored accumulator differs from the replayed one",
            ));
        }
        Ok(())
    }
}

/// Keys the stored state is walked in, at least, per thread: a smaller
/// state is compared on one.
const STATE_PART_MIN_KEYS: usize = 50_000;

/// The stored state against the replayed one, every key and value. The
/// failure is the first difference in key order, however many threads
/// compare: each compares its own range of keys, split at the replayed
/// state's keys, and the lowest range that differs is reported.
fn compare_state(
    store: &dyn Store,
    replayed: &MemState,
    h: u64,
    threads: usize,
) -> Result<(), Failure> {
    compare_state_in_parts(store, replayed, h, threads, STATE_PART_MIN_KEYS)
}

/// [`compare_state`] with at least `part_min_keys` replayed keys a thread.
fn compare_state_in_parts(
    store: &dyn Store,
    replayed: &MemState,
    h: u64,
    threads: usize,
    part_min_keys: usize,
) -> Result<(), Failure> {
    let keys = replayed.map().len();
    let parts = threads.min(keys / part_min_keys.max(1)).max(1);
    if parts == 1 {
        return compare_range(store, replayed, h, b"", None);
    }
    // Range i is [bounds[i], bounds[i + 1]); the first starts at the
    // smallest key, the last has no end.
    let step = keys.div_ceil(parts);
    let mut bounds: Vec<&[u8]> = vec![b""];
    bounds.extend(
        replayed
            .map()
            .keys()
            .step_by(step)
            .skip(1)
            .map(Vec::as_slice),
    );
    let range = |i: usize| compare_range(store, replayed, h, bounds[i], bounds.get(i + 1).copied());
    std::thread::scope(|s| {
        let others: Vec<_> = (1..bounds.len())
            .map(|i| s.spawn(move || range(i)))
            .collect();
        let first = range(0);
        let mut verdicts = vec![first];
        for t in others {
            verdicts.push(t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        verdicts.into_iter().collect::<Result<(), Failure>>()
    })
}

/// [`compare_state`] over the keys `from <= key < to` (to the last key
/// when `to` is `None`).
fn compare_range(
    store: &dyn Store,
    replayed: &MemState,
    h: u64,
    from: &[u8],
    to: Option<&[u8]>,
) -> Result<(), Failure> {
    let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
    let mut replayed = replayed
        .map()
        .range::<[u8], _>((Bound::Included(from), upper))
        .peekable();
    let mut diff: Option<Failure> = None;
    let walked = store.state_walk(from, to, &mut |k, v| {
        if let Some((rk, _)) = replayed.peek() {
            if rk.as_slice() < k {
                diff = Some(Failure::at(
                    h,
                    "state",
                    format!("key {} is missing from the stored state", show_key(rk)),
                ));
                return false;
            }
        }
        match replayed.next() {
            Some((rk, rv)) if rk.as_slice() == k => {
                if rv.as_slice() != v {
                    diff = Some(Failure::at(
                        h,
                        "state",
                        format!(
                            "key {}: stored value differs from the replayed value",
                            show_key(k)
                        ),
                    ));
                    return false;
                }
                true
            }
            _ => {
                diff = Some(Failure::at(
                    h,
                    "state",
                    format!(
                        "key {} is stored but not in the replayed state",
                        show_key(k)
                    ),
                ));
                false
            }
        }
    });
    walked.map_err(|e| Failure::at(h, "state", format!("cannot be read: {e}")))?;
    if let Some(f) = diff {
        return Err(f);
    }
    if let Some((rk, _)) = replayed.next() {
        return Err(Failure::at(
            h,
            "state",
            format!("key {} is missing from the stored state", show_key(rk)),
        ));
    }
    Ok(())
}

/// A chain file written by [`crate::chainfile::write_chain_file`].
pub struct FileSource {
    reader: ChainReader,
    label: String,
    header: Option<FileHeader>,
    next: u64,
    done: bool,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<FileSource, AuditError> {
        let f = std::fs::File::open(path).map_err(|source| AuditError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(FileSource::from_reader(
            Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
            path.display().to_string(),
        ))
    }

    pub fn from_reader(r: Box<dyn std::io::Read + Send>, label: String) -> FileSource {
        FileSource {
            reader: ChainReader::new(r),
            label,
            header: None,
            next: 1,
            done: false,
        }
    }

    /// The file's header, once [`ChainSource::genesis`] has read it.
    pub fn header(&self) -> Option<&FileHeader> {
        self.header.as_ref()
    }
}

impl ChainSource for FileSource {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn genesis(&mut self) -> Result<Genesis, Failure> {
        let (header, bytes) = self.reader.start()?;
        let g = decode_genesis(&bytes, &header.genesis_hash)?;
        if g.chain_id.as_str() != header.chain_id {
            return Err(Failure::file(format!(
                "header names chain {:?}, the genesis chain {:?}",
                header.chain_id,
                g.chain_id.as_str()
            )));
        }
        self.header = Some(header);
        Ok(g)
    }

    fn expected_blocks(&self) -> Option<u64> {
        self.header.as_ref().map(|h| h.blocks)
    }

    fn next_entry(&mut self) -> Option<Result<Entry, Failure>> {
        if self.done {
            return None;
        }
        let h = self.next;
        match self.reader.next(h) {
            Ok(Record::Entry(block, certificate)) => {
                self.next = h.saturating_add(1);
                Some(Ok(Entry {
                    height: h,
                    block,
                    certificate,
                }))
            }
            Ok(Record::End) => {
                self.done = true;
                let records = h - 1;
                if let Err(f) = self.reader.finish(records) {
                    return Some(Err(f));
                }
                let header = self.header.as_ref()?;
                if header.blocks != records
                    || header.last_height != records
                    || header.first_height != u64::from(records > 0)
                {
                    return Some(Err(Failure::file(format!(
                        "header announces {} blocks up to height {}, the file holds {records}",
                        header.blocks, header.last_height
                    ))));
                }
                None
            }
            Err(f) => {
                self.done = true;
                Some(Err(f))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use aidledger_execution::MemState;
    use aidledger_storage::{RocksStore, Store};
    use aidledger_types::{Hash, StateAccumulator};

    use super::compare_state_in_parts;
    use crate::Failure;

    fn key(i: usize) -> Vec<u8> {
        format!("k/{i:05}").into_bytes()
    }

    /// A damaged table file under the stored state: every thread count
    /// reports that the state cannot be read, never a verified state.
    #[test]
    fn a_damaged_state_table_is_reported_as_unreadable_on_every_thread_count() {
        let stored: BTreeMap<Vec<u8>, Vec<u8>> =
            (0..120).map(|i| (key(i), vec![i as u8; 64])).collect();
        let mut acc = StateAccumulator::new();
        for (k, v) in &stored {
            acc.insert(k, v);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = RocksStore::open(&path).unwrap();
            store
                .put_genesis(Hash([7; 32]), b"genesis".to_vec(), stored.clone(), acc)
                .unwrap();
        }
        // Reopening flushed the state into a table file; flip a byte in
        // the data blocks at the start of every table file.
        drop(RocksStore::open(&path).unwrap());
        let mut damaged = 0;
        for e in std::fs::read_dir(&path).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "sst") {
                let mut bytes = std::fs::read(&p).unwrap();
                bytes[40] ^= 0x5a;
                std::fs::write(&p, bytes).unwrap();
                damaged += 1;
            }
        }
        assert!(damaged > 0, "no table file to damage");
        let store = RocksStore::open_read_only(&path).unwrap();
        let replayed = MemState::new(stored);
        for threads in 1..=4 {
            let f = compare_state_in_parts(&store, &replayed, 5, threads, 10).unwrap_err();
            assert_eq!(f.object, "state", "{f}");
            assert!(
                f.reason.starts_with("cannot be read"),
                "{threads} threads: {f}"
            );
        }
    }

    /// Whatever the number of threads, and wherever the ranges split, the
    /// comparison reports the first difference in key order: a key missing
    /// on either side or a value that differs, alone or with another
    /// difference further on, at the first key, at a range's first key,
    /// inside ranges and at the last key.
    #[test]
    fn the_state_comparison_reports_the_first_difference_whatever_the_threads() {
        const KEYS: usize = 120;
        let stored: BTreeMap<Vec<u8>, Vec<u8>> =
            (0..KEYS).map(|i| (key(i), vec![i as u8])).collect();
        let mut acc = StateAccumulator::new();
        for (k, v) in &stored {
            acc.insert(k, v);
        }
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path().join("db")).unwrap();
        store
            .put_genesis(Hash([7; 32]), b"genesis".to_vec(), stored.clone(), acc)
            .unwrap();
        // 120 keys in parts of at least 10: up to 12 ranges, split every
        // 10 to 60 keys, so these land on and beside the splits.
        let places = [0, 1, 9, 10, 11, 19, 20, 29, 30, 40, 59, 60, 61, 89, 90, 119];
        // 0: the replay lacks the key; 1: it holds a value the store does
        // not; 2: the replay holds an extra key just after it (the store
        // lacks it).
        let tamper = |m: &mut BTreeMap<Vec<u8>, Vec<u8>>, at: usize, kind: u8| match kind {
            0 => {
                m.remove(&key(at));
            }
            1 => {
                m.insert(key(at), b"other".to_vec());
            }
            _ => {
                let mut k = key(at);
                k.push(b'+');
                m.insert(k, b"extra".to_vec());
            }
        };
        let verdict = |replayed: &MemState, threads: usize| {
            compare_state_in_parts(&store, replayed, 5, threads, 10)
        };
        let detail = |f: Failure| f.to_string();
        let mut cases = vec![(None, None)];
        for &a in &places {
            for kind in 0..3u8 {
                cases.push((Some((a, kind)), None));
                for &b in places.iter().filter(|&&b| b > a + 1).take(3) {
                    cases.push((Some((a, kind)), Some((b, (kind + 1) % 3))));
                }
            }
        }
        for (first, second) in cases {
            let mut m = stored.clone();
            for (at, kind) in first.into_iter().chain(second) {
                tamper(&mut m, at, kind);
            }
            let replayed = MemState::new(m);
            let one = verdict(&replayed, 1).map_err(detail);
            match first {
                None => assert_eq!(one, Ok(()), "untouched"),
                Some((at, kind)) => {
                    let e = one.clone().unwrap_err();
                    let name = String::from_utf8(key(at)).unwrap();
                    assert!(e.contains(&name), "{first:?}: {e}");
                    match kind {
                        0 => assert!(e.contains("is stored but not in the replayed state"), "{e}"),
                        1 => assert!(e.contains("stored value differs"), "{e}"),
                        _ => assert!(e.contains("is missing from the stored state"), "{e}"),
                    }
                }
            }
            for threads in 2..=13 {
                assert_eq!(
                    verdict(&replayed, threads).map_err(detail),
                    one,
                    "{first:?} {second:?} on {threads} threads"
                );
            }
        }
    }
}
