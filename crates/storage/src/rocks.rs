//! The RocksDB store.
//!
//! One column family per kind of data, keys chosen so RocksDB's byte order
//! is the order we iterate in:
//!
//! | column family  | key                        | value                                   |
//! |----------------|----------------------------|-----------------------------------------|
//! | `blocks`       | height, big-endian u64     | `codec::encode(&Block)`                 |
//! | `certificates` | height, big-endian u64     | `codec::encode(&CommitCertificate)`     |
//! | `block_events` | height, big-endian u64     | the block's own events, opaque          |
//! | `state`        | the state key              | the state value, raw                    |
//! | `tx_index`     | the 32-byte transaction id | `codec::encode` of the location (12 bytes) |
//! | `receipts`     | height and index, big-endian u64 and u32 | the receipt, opaque   |
//! | `safety`       | `safety`                   | the consensus safety state, raw         |
//! | `meta`         | see [`keys`]               | head, genesis, accumulator, user data   |
//!
//! Receipts live apart from the index, keyed by where the transaction is,
//! so the index's random keys carry 12-byte values and the receipts are
//! written in key order (ADR 025). Stores written before that keep the
//! receipt inside each index entry; the reader takes both forms.
//!
//! State values, receipts, the safety state and user metadata are opaque
//! bytes owned by other crates, so they are stored as given; everything the store itself
//! interprets goes through the canonical codec and its strict decoder, and a
//! value that fails to decode is reported as [`StorageError::Corrupt`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType,
    DBRawIterator, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use tracing::debug;

use aidledger_types::codec::{self, CodecError};
use aidledger_types::snapshot::{SetChange, SnapshotManifest, SET_CHANGES_MAX};
use aidledger_types::state_root::AccumulatorBytes;
use aidledger_types::{Block, CommitCertificate, Hash, IdentifiedBlock, StateAccumulator};

use crate::error::corrupt;
use crate::snapshot::{
    check_begin, check_finish, check_installing, check_pairs, check_set_changes,
    recompute_accumulator, refuse_while_installing,
};
use crate::{
    check_block_commit, check_commit, check_genesis, check_meta, head_of, too_large, CommitBatch,
    Head, IndexEntry, KeyValues, StorageError, Store, TxIndexed, TxLocation, BLOCKS_RANGE_MAX,
    BLOCK_EVENTS_MAX_BYTES, CERTIFICATE_MAX_BYTES, META_VALUE_MAX_BYTES, RECEIPT_MAX_BYTES,
    SAFETY_STATE_MAX_BYTES, SCAN_LIMIT_MAX,
};

/// Shared LRU block cache for all column families.
const BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Total memtable memory across all column families.
const WRITE_BUFFERS_BYTES: usize = 64 * 1024 * 1024;
/// Memtable size of one column family.
const WRITE_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// The length of the prefix the state's filters hold for most keys (see
/// [`state_filter_prefix`]): "hh-region/" and 6 bytes of a region code,
/// for example.
pub(crate) const STATE_PREFIX_BYTES: usize = 16;
/// Keys under these leads have a longer filtered prefix: up to and
/// including their first `/` at or after the offset given. An attestation
/// about a household is keyed "att/h", the household's 32-byte hash (any
/// bytes, `/` included), the claim, "/" and the attesting organisation;
/// its filtered prefix is everything but the organisation. So the scan
/// for earlier attesters of one claim, which nearly always finds nothing,
/// is answered by the filters even when the household holds attestations
/// of other claims; with the first 16 bytes alone it seeked into every
/// memtable and level (docs/benchmarks.md, 2026-12-06). This is the
/// contracts' key layout (`contracts/src/keys.rs`) used for speed only:
/// whatever the layout, a scan seeks in prefix mode only when its prefix
/// fixes the filtered prefix of every key under it.
const STATE_LONG_PREFIXES: &[(&[u8], usize)] = &[(b"att/h", 37)];
/// The state's prefix extractor's name: RocksDB keeps it with each table
/// file and uses a file's prefix filter only under the same name. It must
/// change whenever [`state_filter_prefix`] does: under the old name, the
/// filters of files written before would be asked about prefixes they
/// never held, and scans would miss keys in them (a test reuses the fixed
/// extractor's name and loses keys).
const STATE_PREFIX_EXTRACTOR: &str = "aidledger.state-prefix.1";

/// The prefix of a state key that the state's filters hold, or `None` for
/// a key outside the extractor's domain (held by the whole-key filters
/// only). It depends on no byte after it: every key that starts with the
/// returned prefix has that same filtered prefix, which is what makes a
/// prefix-mode seek under any key it returns `Some` for exact.
pub(crate) fn state_filter_prefix(key: &[u8]) -> Option<&[u8]> {
    for (lead, from) in STATE_LONG_PREFIXES {
        if key.starts_with(lead) {
            let slash = key.get(*from..)?.iter().position(|b| *b == b'/')?;
            return key.get(..from + slash + 1);
        }
    }
    key.get(..STATE_PREFIX_BYTES)
}

/// [`state_filter_prefix`] as RocksDB calls it: only on keys in the domain.
fn state_prefix_transform(key: &[u8]) -> &[u8] {
    state_filter_prefix(key).unwrap_or(key)
}

/// Whether `key` has a filtered prefix: RocksDB's domain of the
/// extractor, and the prefixes a scan seeks under in prefix mode.
fn has_filtered_prefix(key: &[u8]) -> bool {
    state_filter_prefix(key).is_some()
}
/// The memtable Bloom filter's share of the memtable's size.
const MEMTABLE_BLOOM_RATIO: f64 = 0.1;
const MAX_OPEN_FILES: i32 = 512;
const MAX_TOTAL_WAL_BYTES: u64 = 256 * 1024 * 1024;

/// The column families.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cf {
    Blocks,
    Certificates,
    BlockEvents,
    State,
    TxIndex,
    Receipts,
    Safety,
    Meta,
}

impl Cf {
    pub const ALL: [Cf; 8] = [
        Cf::Blocks,
        Cf::Certificates,
        Cf::BlockEvents,
        Cf::State,
        Cf::TxIndex,
        Cf::Receipts,
        Cf::Safety,
        Cf::Meta,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Blocks => "blocks",
            Cf::Certificates => "certificates",
            Cf::BlockEvents => "block_events",
            Cf::State => "state",
            Cf::TxIndex => "tx_index",
            Cf::Receipts => "receipts",
            Cf::Safety => "safety",
            Cf::Meta => "meta",
        }
    }
}

/// Keys, public so tamper tests and tools can address raw entries.
pub mod keys {
    use aidledger_types::Hash;

    /// The key of a height in `blocks` and `certificates`. Big-endian, so
    /// byte order is height order.
    pub fn height(h: u64) -> [u8; 8] {
        h.to_be_bytes()
    }

    /// The key of a transaction in `tx_index`.
    pub fn tx(id: &Hash) -> [u8; 32] {
        id.0
    }

    /// The key of a receipt in `receipts`: the transaction's height and
    /// index, big-endian, so byte order is chain order.
    pub fn receipt(height: u64, index: u32) -> [u8; 12] {
        let mut k = [0u8; 12];
        k[..8].copy_from_slice(&height.to_be_bytes());
        k[8..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// The key of the safety state in `safety`.
    pub const SAFETY: &[u8] = b"safety";
    /// `meta`: the encoded [`crate::Head`].
    pub const HEAD: &[u8] = b"sys/head";
    /// `meta`: the encoded genesis hash.
    pub const GENESIS_HASH: &[u8] = b"sys/genesis-hash";
    /// `meta`: the genesis document, raw.
    pub const GENESIS_DOC: &[u8] = b"sys/genesis-doc";
    /// `meta`: the encoded state accumulator after the head block.
    pub const ACCUMULATOR: &[u8] = b"sys/accumulator";
    /// `meta`: the encoded height of the snapshot this store joined from
    /// (its base); absent on a store with history from genesis.
    pub const BASE: &[u8] = b"sys/base";
    /// `meta`: the encoded height of an unfinished snapshot install.
    pub const INSTALLING: &[u8] = b"sys/snapshot-installing";
    /// `meta`: the prefix of the validator-set changes, by height.
    pub const SET_CHANGE_PREFIX: &[u8] = b"sys/set-change/";

    /// `meta`: the key of the set change at `height`. Big-endian, so byte
    /// order is height order.
    pub fn set_change(height: u64) -> Vec<u8> {
        [SET_CHANGE_PREFIX, &height.to_be_bytes()].concat()
    }

    /// `meta`: a key of [`crate::Store::meta_put`]. The prefix keeps user
    /// keys away from the `sys/` keys above.
    pub fn meta_user(key: &str) -> Vec<u8> {
        [b"user/".as_slice(), key.as_bytes()].concat()
    }
}

/// A transaction index entry as stores written before ADR 025 hold it:
/// the location and the receipt together. Read, never written.
#[derive(Serialize, Deserialize)]
pub struct LegacyTxEntry {
    pub location: TxLocation,
    pub receipt: Vec<u8>,
}

/// The encoded length of a [`TxLocation`], which is what `tx_index` holds
/// since ADR 025. An entry of the older form is at least 20 bytes.
const LOCATION_BYTES: usize = 12;

/// A decoded `tx_index` value.
enum IndexValue {
    /// The location; the receipt is in `receipts` under it.
    Location(TxLocation),
    /// An entry of the older form, receipt included.
    Legacy(TxLocation, Vec<u8>),
}

impl IndexValue {
    fn location(&self) -> TxLocation {
        match self {
            IndexValue::Location(l) | IndexValue::Legacy(l, _) => *l,
        }
    }
}

/// The durable store. Writes are synced; `commit_block` and `put_genesis`
/// are one atomic `WriteBatch` each.
pub struct RocksStore {
    db: DB,
    read_only: bool,
    /// Serialises the read-validate-write of `commit_block` and
    /// `put_genesis`, so two writers cannot both extend the same head.
    write_lock: Mutex<()>,
    /// Blocks whose transaction ids [`Store::check_commit_block`] found in
    /// no index entry, with the parent the check required
    /// ([`IndexChecked`]).
    index_checked: Mutex<IndexChecked>,
    path: PathBuf,
    // Held so the cache's lifetime visibly covers the database's, and
    // read for its usage (`memory`).
    cache: Cache,
}

/// Blocks remembered by [`IndexChecked`]: a pipelined validator checks at
/// most two heights ahead of its head (ADR 022), and views may propose
/// several candidates at one height.
const INDEX_CHECKED_MAX: usize = 16;

/// What the pre-vote check learnt about the transaction index, so the
/// commit that follows need not read it again for the same ids.
///
/// [`Store::check_commit_block`] of a block `B` reads the head `H`, then
/// every id of `B` from the index, and finds none; it also requires `B`'s
/// parent to be `H`, or the pending block `P` checked on `H`, and no id of
/// `B` to be among `P`'s. The index it read held at least the entries of
/// the chain up to `H` (only commits add entries, one block at a time on
/// the head). At `B`'s commit the head must be `B`'s parent (checked there
/// as always), so the index holds the chain up to `H`, plus `P`'s ids when
/// `P` is the parent: none of them is an id of `B`, and the commit skips
/// the read. A head never moves back; a snapshot install, the only other
/// writer of heads, forgets every entry.
#[derive(Default)]
struct IndexChecked {
    /// (block hash, its parent's hash), oldest first.
    blocks: std::collections::VecDeque<(Hash, Hash)>,
}

impl IndexChecked {
    fn remember(&mut self, block: Hash, parent: Hash) {
        if self.blocks.iter().any(|(b, _)| *b == block) {
            return;
        }
        if self.blocks.len() >= INDEX_CHECKED_MAX {
            self.blocks.pop_front();
        }
        self.blocks.push_back((block, parent));
    }

    /// Whether `block`, to be committed on `head`, was checked with `head`
    /// as its parent; the entry is used up either way.
    fn take(&mut self, block: Hash, head: Option<Hash>) -> bool {
        let Some(i) = self.blocks.iter().position(|(b, _)| *b == block) else {
            return false;
        };
        self.blocks
            .remove(i)
            .is_some_and(|(_, parent)| head == Some(parent))
    }
}

fn head_from(bytes: Option<Vec<u8>>) -> Result<Option<Head>, StorageError> {
    bytes
        .map(|b| decoded(Cf::Meta, keys::HEAD, codec::decode::<Head>(&b)))
        .transpose()
}

fn accumulator_from(bytes: Option<Vec<u8>>) -> Result<StateAccumulator, StorageError> {
    let key = keys::ACCUMULATOR;
    let Some(bytes) = bytes else {
        return Ok(StateAccumulator::new());
    };
    let raw: AccumulatorBytes = decoded(Cf::Meta, key, codec::decode(&bytes))?;
    StateAccumulator::from_bytes(&raw.0)
        .ok_or_else(|| corrupt(Cf::Meta.name(), key, "accumulator has the wrong length"))
}

fn scan_start<'k>(prefix: &'k [u8], start_after: Option<&'k [u8]>) -> &'k [u8] {
    match start_after {
        Some(s) if s >= prefix => s,
        _ => prefix,
    }
}

/// Read options for a scan under `prefix`: an upper bound just past every
/// key that starts with it, so the iterator stops at the bound instead of
/// seeking on to the next key of each level. Most scans on the commit path
/// find nothing (an attestation's subject and claim seen for the first
/// time), and for those the seek is the whole cost (`benches/scan.rs`).
///
/// A prefix that fixes a filtered prefix ([`state_filter_prefix`]) is
/// searched in prefix mode: every key under it, and the start key (the
/// prefix, or a `start_after` that starts with it), have that filtered
/// prefix, so the filters can rule out whole memtables and files. Any
/// other prefix is searched in total order, as every other iterator over
/// the state is.
fn scan_options(prefix: &[u8]) -> rocksdb::ReadOptions {
    let mut ro = total_order();
    if let Some(bound) = prefix_successor(prefix) {
        ro.set_iterate_upper_bound(bound);
    }
    if has_filtered_prefix(prefix) {
        prefix_mode(&mut ro);
    }
    ro
}

/// Whether a scan under `prefix` after `start_after` can find nothing
/// whatever is stored: the start is past every key under the prefix. Such
/// a scan is answered without seeking (a prefix-mode seek to a start with
/// another filtered prefix would be searched under that one).
fn past_prefix(prefix: &[u8], start_after: Option<&[u8]>) -> bool {
    start_after.is_some_and(|s| s > prefix && !s.starts_with(prefix))
}

/// Seeks search only the files and memtables whose prefix filter may hold
/// the sought key's filtered prefix, and the iterator ends where that
/// prefix changes.
fn prefix_mode(ro: &mut rocksdb::ReadOptions) {
    ro.set_total_order_seek(false);
    ro.set_prefix_same_as_start(true);
}

/// Read options that ignore the state's prefix extractor: an iterator
/// with them sees every key in order.
fn total_order() -> rocksdb::ReadOptions {
    let mut ro = rocksdb::ReadOptions::default();
    ro.set_total_order_seek(true);
    ro
}

/// The smallest key greater than every key that starts with `prefix`, or
/// `None` when there is none (an empty prefix or all 0xff bytes).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last != u8::MAX {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

/// The pairs of a state scan through `iter`, sought to [`scan_start`]:
/// at most `limit` (clamped to [`SCAN_LIMIT_MAX`]) under `prefix`,
/// strictly after `start_after`. Both a scan's own iterator and a state
/// view's reused one go through here.
fn scan_with(
    iter: &mut DBRawIterator<'_>,
    prefix: &[u8],
    start_after: Option<&[u8]>,
    limit: usize,
) -> Result<KeyValues, StorageError> {
    let limit = limit.min(SCAN_LIMIT_MAX);
    let mut out = Vec::new();
    if limit == 0 || past_prefix(prefix, start_after) {
        return Ok(out);
    }
    iter.seek(scan_start(prefix, start_after));
    while let Some((k, v)) = iter.item() {
        if !k.starts_with(prefix) {
            break;
        }
        if Some(k) != start_after {
            out.push((k.to_vec(), v.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        iter.next();
    }
    iter.status()?;
    Ok(out)
}

/// Committed data as of one moment (a RocksDB snapshot): every read
/// through it sees the same head, state and accumulator, whatever commits
/// meanwhile. A reader that scans the whole state (a report) uses it so
/// that its figures come from one block, never from two.
pub struct PointInTime<'a> {
    store: &'a RocksStore,
    snap: rocksdb::Snapshot<'a>,
}

impl RocksStore {
    /// A consistent read view of the committed data as it is now.
    pub fn point_in_time(&self) -> PointInTime<'_> {
        PointInTime {
            store: self,
            snap: self.db.snapshot(),
        }
    }
}

impl PointInTime<'_> {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.snap.get_cf(self.store.handle(cf)?, key)?)
    }

    pub fn head(&self) -> Result<Option<Head>, StorageError> {
        head_from(self.get(Cf::Meta, keys::HEAD)?)
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, StorageError> {
        let key = keys::height(height);
        self.get(Cf::Blocks, &key)?
            .map(|b| RocksStore::decode_block(height, &key, &b))
            .transpose()
    }

    pub fn accumulator(&self) -> Result<StateAccumulator, StorageError> {
        accumulator_from(self.get(Cf::Meta, keys::ACCUMULATOR)?)
    }

    pub fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(Cf::State, key)
    }

    pub fn state_scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        self.store
            .scan_state(Some(&self.snap), prefix, start_after, limit)
    }
}

/// [`Store::state_view`] of a RocksDB store: every read at one snapshot,
/// and scans through iterators made once and sought again for each scan,
/// instead of a new iterator for every scan. Building an iterator (a
/// merging iterator over every memtable and level) was 89 % of an
/// attestation's scan for earlier attesters, which nearly always finds
/// nothing (docs/benchmarks.md). Two iterators, made when first needed:
/// one in prefix mode for prefixes that fix a filtered prefix
/// ([`state_filter_prefix`]), one in total order for the others. Neither has an upper bound (it
/// cannot change between seeks); a scan stops at its first key outside
/// the prefix ([`scan_with`]).
pub struct RocksStateView<'a> {
    // Both iterators read at `snap`: declared before it, they are dropped
    // before it is released.
    prefixed: RefCell<Option<DBRawIterator<'a>>>,
    ordered: RefCell<Option<DBRawIterator<'a>>>,
    snap: rocksdb::Snapshot<'a>,
    store: &'a RocksStore,
}

impl<'a> RocksStateView<'a> {
    fn new(store: &'a RocksStore) -> Self {
        RocksStateView {
            prefixed: RefCell::new(None),
            ordered: RefCell::new(None),
            snap: store.db.snapshot(),
            store,
        }
    }

    fn iterator(&self, prefixed: bool) -> Result<DBRawIterator<'a>, StorageError> {
        let mut ro = total_order();
        if prefixed {
            prefix_mode(&mut ro);
        }
        ro.set_snapshot(&self.snap);
        let store: &'a RocksStore = self.store;
        Ok(store.db.raw_iterator_cf_opt(store.handle(Cf::State)?, ro))
    }
}

impl crate::StateView for RocksStateView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.snap.get_cf(self.store.handle(Cf::State)?, key)?)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        let prefixed = has_filtered_prefix(prefix);
        let cell = if prefixed {
            &self.prefixed
        } else {
            &self.ordered
        };
        let mut slot = cell.borrow_mut();
        let iter = match &mut *slot {
            Some(iter) => iter,
            None => slot.insert(self.iterator(prefixed)?),
        };
        scan_with(iter, prefix, start_after, limit)
    }
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// A store's memory, from [`RocksStore::memory`], in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Active and immutable memtables, all column families.
    pub memtable_bytes: u64,
    /// The block cache's usage, pinned entries included.
    pub block_cache_bytes: u64,
    /// Of that, entries pinned (top-level indexes and filters, L0's).
    pub block_cache_pinned_bytes: u64,
    /// Table readers' memory outside the block cache.
    pub table_readers_bytes: u64,
}

/// Opens of a store a running node may be compacting before a table file
/// that went missing counts as a failure.
pub const READ_ONLY_OPEN_ATTEMPTS: u32 = 5;

/// Whether a failed open's `detail` names an old info log file (`LOG.old.*`)
/// that vanished: another process holding the store purged it first.
fn vanished_info_log(detail: &str) -> bool {
    is_vanished_file(detail) && detail.contains("/LOG.old.")
}

/// Whether RocksDB's error names a file that is not there: for a store a
/// running node holds open, a table file its compaction just deleted.
pub fn is_vanished_file(detail: &str) -> bool {
    detail.contains("No such file or directory")
}

/// RocksDB reports a held lock as an I/O error on its LOCK file: "While
/// lock file: <path>/LOCK: Resource temporarily unavailable" when another
/// process holds it, "lock hold by current process" when this one does.
/// Both become [`StorageError::Locked`]; anything else stays as it was.
fn lock_or_other(path: &Path, e: rocksdb::Error) -> StorageError {
    let detail = e.into_string();
    if detail.contains("While lock file") || detail.contains("lock hold by current process") {
        StorageError::Locked {
            path: path.display().to_string(),
            detail,
        }
    } else {
        StorageError::Rocks(detail)
    }
}

fn options() -> (Options, Cache) {
    let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    // Index and filter blocks count against the cache, so memory stays
    // bounded however large the database grows.
    table.set_cache_index_and_filter_blocks(true);
    table.set_bloom_filter(10.0, false);
    // ...and are partitioned into small blocks. A compacted state file of
    // a million households has a filter of about a megabyte; whole, it did
    // not fit one shard of the block cache (64 MB in 64 shards), so it was
    // evicted after every lookup and read back, with its checksum, on the
    // next: each state read cost a 1 MB copy, and execution ran 25 times
    // slower at 1M households than at 10k (perf, docs/benchmarks.md).
    // Partitions of 4 KB share the cache like data blocks, and only the
    // small top-level index of each file stays pinned.
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);

    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_open_files(MAX_OPEN_FILES);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_block_based_table_factory(&table);
    opts.set_db_write_buffer_size(WRITE_BUFFERS_BYTES);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    opts.set_keep_log_file_num(4);
    opts.set_max_log_file_size(8 * 1024 * 1024);
    // Recovery may drop only a torn last record of the write-ahead log
    // (what a crash leaves: never an acknowledged, synced write). Damage
    // anywhere else fails the open with a corruption error. RocksDB's
    // default, point-in-time recovery, silently stops at the first bad
    // record: a flipped byte made a node reopen 51 committed blocks
    // earlier, its latest safety state gone, without a word.
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
    opts.set_paranoid_checks(true);
    (opts, cache)
}

fn descriptors(opts: &Options) -> Vec<ColumnFamilyDescriptor> {
    Cf::ALL
        .iter()
        .map(|cf| {
            let mut o = opts.clone();
            if memtable_filtered(*cf) {
                // A Bloom filter over the memtable's whole keys (a tenth
                // of its size). Most point reads on the commit path look
                // for keys that are not there: every transaction id of a
                // block in the index, before it is stored, and a new
                // household or attestation before it is written. Without
                // it, each such read walked a skiplist of some hundred
                // thousand entries to learn nothing. That walk, for hits
                // and misses, was 7 % of a validator's CPU under load
                // (perf, docs/benchmarks.md).
                o.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
                o.set_memtable_whole_key_filtering(true);
            }
            if *cf == Cf::State {
                // The state's keys are filtered by a prefix
                // (`state_filter_prefix`) as well as whole, in memtables
                // and table files: a scan under a prefix that fixes it and
                // finds nothing is answered by the filters, without
                // seeking into each level (`scan_options`). Table files
                // written under another extractor (the first 16 bytes
                // before 2026-12-06, or none) are searched as before:
                // RocksDB checks the extractor's name a file was written
                // with before using its filter for prefixes.
                o.set_prefix_extractor(rocksdb::SliceTransform::create(
                    STATE_PREFIX_EXTRACTOR,
                    state_prefix_transform,
                    Some(has_filtered_prefix),
                ));
            }
            ColumnFamilyDescriptor::new(cf.name(), o)
        })
        .collect()
}

/// Whether a column family's memtables carry a Bloom filter: only those
/// read by key for keys that are often absent, the state and the
/// transaction index. The others are read by height for what was written
/// (blocks, certificates, receipts, block events) or hold a few keys
/// (safety state, meta); there every write paid a hash into a filter that
/// no read consulted (ADR 007, amendment of 2026-12-06).
fn memtable_filtered(cf: Cf) -> bool {
    matches!(cf, Cf::State | Cf::TxIndex)
}

/// RocksDB's option that holds back rewriting a bottommost table file
/// only to zero its sequence numbers (compaction reason
/// "BottommostFiles"), in seconds. Set to the largest value it takes, no
/// file is ever old enough: see [`RocksStore::open`].
const NO_SEQNO_ZEROING: (&str, &str) = ("bottommost_file_compaction_delay", "4294967295");

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

fn decoded<T>(cf: Cf, key: &[u8], r: Result<T, CodecError>) -> Result<T, StorageError> {
    r.map_err(|e| corrupt(cf.name(), key, e))
}

/// Decodes a transaction-index value stored under `key`, in either form.
fn index_value(key: &[u8], bytes: &[u8]) -> Result<IndexValue, StorageError> {
    if bytes.len() == LOCATION_BYTES {
        let location = decoded(Cf::TxIndex, key, codec::decode::<TxLocation>(bytes))?;
        return Ok(IndexValue::Location(location));
    }
    let entry: LegacyTxEntry = decoded(
        Cf::TxIndex,
        key,
        codec::decode_with_limit(bytes, RECEIPT_MAX_BYTES + 64),
    )?;
    too_large_stored(Cf::TxIndex, key, entry.receipt.len())?;
    Ok(IndexValue::Legacy(entry.location, entry.receipt))
}

/// A stored receipt longer than any commit accepts is damage.
fn too_large_stored(cf: Cf, key: &[u8], len: usize) -> Result<(), StorageError> {
    if len > RECEIPT_MAX_BYTES {
        return Err(corrupt(
            cf.name(),
            key,
            format!("receipt of {len} bytes, over the limit of {RECEIPT_MAX_BYTES}"),
        ));
    }
    Ok(())
}

/// The receipt stored under `location`, read as `got`; its absence is
/// damage, since the index entry naming it was written in the same batch.
/// What [`RocksStore::walk_cf`] calls on each pair: whether to go on, or
/// what stops the walk as an error.
type WalkFn<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StorageError> + 'a;

fn receipt_at(
    location: TxLocation,
    got: Result<Option<Vec<u8>>, StorageError>,
) -> Result<Vec<u8>, StorageError> {
    let key = keys::receipt(location.height, location.index);
    let bytes = got?.ok_or_else(|| {
        corrupt(
            Cf::Receipts.name(),
            &key,
            "the transaction index names a receipt that is not stored",
        )
    })?;
    too_large_stored(Cf::Receipts, &key, bytes.len())?;
    Ok(bytes)
}

impl RocksStore {
    /// Opens the store read-write, creating it if missing, and checks that
    /// the head is consistent (see [`RocksStore::check_head`]).
    pub fn open(path: impl AsRef<Path>) -> Result<RocksStore, StorageError> {
        let path = path.as_ref();
        let (opts, cache) = options();
        let db = DB::open_cf_descriptors(&opts, path, descriptors(&opts))
            .map_err(|e| lock_or_other(path, e))?;
        // A flushed table file whose keys overlap no older file (the
        // blocks, certificates, receipts and block events, written by
        // height, each file after the last) is bottommost for its keys,
        // and RocksDB then rewrites it whole only to zero its sequence
        // numbers, as soon as no snapshot covers them. That doubled what a validator wrote for
        // those families, and 17 of the 18 compactions of a loaded
        // validator were such rewrites (docs/benchmarks.md). Sequence
        // numbers left in place cost a few bytes a key on disk; merges of
        // overlapping files, which the state and the index need, are
        // unchanged. The option is not in RocksDB's C API as an option
        // setter, so it is set on the open database, for each family.
        let store = RocksStore {
            db,
            read_only: false,
            write_lock: Mutex::new(()),
            index_checked: Mutex::default(),
            path: path.to_path_buf(),
            cache,
        };
        for cf in Cf::ALL {
            store
                .db
                .set_options_cf(store.handle(cf)?, &[NO_SEQNO_ZEROING])?;
        }
        let head = store.check_head()?;
        debug!(path = %path.display(), height = head.map(|h| h.height), "store opened");
        Ok(store)
    }

    /// A state scan of the committed state, or of `snap`'s view of it.
    fn scan_state(
        &self,
        snap: Option<&rocksdb::Snapshot<'_>>,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        let mut ro = scan_options(prefix);
        if let Some(snap) = snap {
            ro.set_snapshot(snap);
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.handle(Cf::State)?, ro);
        scan_with(&mut iter, prefix, start_after, limit)
    }

    /// What the store holds in memory now, by RocksDB's own accounting:
    /// the memtables of every column family (bounded by
    /// `WRITE_BUFFERS_BYTES` plus those being flushed), the shared block
    /// cache (bounded by `BLOCK_CACHE_BYTES`, index and filter blocks
    /// included) and the table readers outside it. A property RocksDB
    /// cannot give counts as 0.
    pub fn memory(&self) -> StoreMemory {
        let mut m = StoreMemory {
            block_cache_bytes: self.cache.get_usage() as u64,
            block_cache_pinned_bytes: self.cache.get_pinned_usage() as u64,
            ..StoreMemory::default()
        };
        for cf in Cf::ALL {
            let Ok(h) = self.handle(cf) else { continue };
            let prop = |name: &str| {
                self.db
                    .property_int_value_cf(h, name)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            m.memtable_bytes += prop("rocksdb.cur-size-all-mem-tables");
            m.table_readers_bytes += prop("rocksdb.estimate-table-readers-mem");
        }
        m
    }

    /// [`RocksStore::open`], waiting up to `wait` while another process
    /// holds the store's lock: a restart can start the new process while
    /// the old one, though it has logged its exit, still holds the lock
    /// until its last thread has gone. `on_wait` is called once, when the
    /// first attempt finds the lock held. After `wait` the error is
    /// [`StorageError::Locked`], as from `open`.
    pub fn open_waiting(
        path: impl AsRef<Path>,
        wait: std::time::Duration,
        on_wait: impl FnOnce(&StorageError),
    ) -> Result<RocksStore, StorageError> {
        let path = path.as_ref();
        // Counted in pauses, not read from a clock (the storage crate reads
        // none): the wait is at least `wait`, longer by the attempts' own
        // time.
        const PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
        let mut pauses_left = wait.as_millis().div_ceil(PAUSE.as_millis());
        let mut on_wait = Some(on_wait);
        loop {
            match RocksStore::open(path) {
                Err(e @ StorageError::Locked { .. }) if pauses_left > 0 => {
                    if let Some(f) = on_wait.take() {
                        f(&e);
                    }
                    pauses_left -= 1;
                    std::thread::sleep(PAUSE);
                }
                // While the holder runs, an open can also fail on the
                // holder's own housekeeping: RocksDB deletes old info logs
                // (`LOG.old.*`) on open, and one the holder deleted first
                // is gone (seen in CI). Waited out like the lock.
                Err(StorageError::Rocks(detail))
                    if pauses_left > 0 && vanished_info_log(&detail) =>
                {
                    pauses_left -= 1;
                    std::thread::sleep(PAUSE);
                }
                other => return other,
            }
        }
    }

    /// Opens the store read-only. This takes no lock, so it works while a
    /// node has the same directory open; it sees the data as of the moment
    /// it opened (reopen to see more). Writes return
    /// [`StorageError::ReadOnly`]. The head is not checked here, so an
    /// auditor can open a damaged store and report what is wrong itself.
    ///
    /// A running node's compaction may delete a table file between the
    /// moment the open reads the MANIFEST and the moment it opens that
    /// file (RocksDB then reports the file missing and the MANIFEST
    /// "may be corrupted"). That is the store moving, not damage: the open
    /// is tried again from a fresh MANIFEST, at most
    /// [`READ_ONLY_OPEN_ATTEMPTS`] times; a file that stays missing is
    /// reported.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<RocksStore, StorageError> {
        let path = path.as_ref();
        let mut attempt = 1;
        loop {
            match RocksStore::open_read_only_once(path) {
                Err(StorageError::Rocks(detail))
                    if attempt < READ_ONLY_OPEN_ATTEMPTS && is_vanished_file(&detail) =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn open_read_only_once(path: &Path) -> Result<RocksStore, StorageError> {
        let (mut opts, cache) = options();
        opts.create_if_missing(false);
        opts.create_missing_column_families(false);
        // Only the column families the store has: one written before a
        // column family was added (`receipts`, ADR 025) opens without it,
        // and reads that would need it report it missing.
        let present = DB::list_cf(&opts, path)?;
        let wanted = descriptors(&opts)
            .into_iter()
            .filter(|d| present.iter().any(|p| p == d.name()));
        let db = DB::open_cf_descriptors_read_only(&opts, path, wanted, false)?;
        Ok(RocksStore {
            db,
            read_only: true,
            write_lock: Mutex::new(()),
            index_checked: Mutex::default(),
            path: path.to_path_buf(),
            cache,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Checks the invariants a restart relies on: the head block exists
    /// with the head's hash, nothing exists above it, and the accumulator's
    /// root is the head's state root. Returns the head.
    pub fn check_head(&self) -> Result<Option<Head>, StorageError> {
        let head = self.head()?;
        let acc = self.accumulator()?;
        let next = head.map_or(1, |h| h.height.saturating_add(1));
        let next_key = keys::height(next);
        if self.raw_get(Cf::Blocks, &next_key)?.is_some() {
            return Err(corrupt(
                Cf::Blocks.name(),
                &next_key,
                "a block exists above the head",
            ));
        }
        if let Some(h) = head {
            let key = keys::height(h.height);
            let block = self
                .block(h.height)?
                .ok_or_else(|| corrupt(Cf::Blocks.name(), &key, "the head block is missing"))?;
            if block.hash() != h.block_hash {
                return Err(corrupt(
                    Cf::Blocks.name(),
                    &key,
                    "the head block's hash differs from the head",
                ));
            }
            if acc.root() != h.state_root || block.header.state_root != h.state_root {
                return Err(corrupt(
                    Cf::Meta.name(),
                    keys::ACCUMULATOR,
                    "the accumulator root differs from the head's state root",
                ));
            }
        }
        Ok(head)
    }

    /// Flushes the memtables and waits, at most `timeout`, until background
    /// compaction has caught up. For bulk loads and benchmarks: a node that
    /// has grown to a million households over months holds them compacted,
    /// so a measurement taken straight after a bulk load would time the
    /// load's compaction debt, not the size of the state.
    pub fn settle(&self, timeout: std::time::Duration) -> Result<(), StorageError> {
        self.writable()?;
        let mut o = rocksdb::WaitForCompactOptions::default();
        o.set_flush(true);
        o.set_timeout(u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX));
        Ok(self.db.wait_for_compact(&o)?)
    }

    /// Writes a consistent copy of the whole store (every column family,
    /// the safety state included) to `dir`, which must not exist yet, while
    /// the store stays open and in use: a RocksDB checkpoint (ADR 017,
    /// hot backup). The memtables are flushed first; table files are hard
    /// links where `dir` is on the same filesystem, copies otherwise. A
    /// checkpoint is taken at one sequence number and every commit is one
    /// batch, so the copy holds a whole number of commits and opens with
    /// [`RocksStore::open`] at a consistent head. Returns that head.
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<Option<Head>, StorageError> {
        self.writable()?;
        let dir = dir.as_ref();
        if dir.exists() {
            return Err(StorageError::Rocks(format!(
                "checkpoint: {} exists; a checkpoint goes to a new directory",
                dir.display()
            )));
        }
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        let copy = RocksStore::open_read_only(dir)?;
        copy.check_head()
    }

    /// Deletes this node's consensus safety state (synced): for `aidledger
    /// restore --other-key`, which puts another key's backup under this
    /// node's key, where that state records votes this key never cast.
    pub fn forget_safety_state(&self) -> Result<(), StorageError> {
        self.raw_delete(Cf::Safety, keys::SAFETY)
    }

    /// Reads a raw stored value, for tamper tests and tools.
    pub fn raw_get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.handle(cf)?, key)?)
    }

    /// Writes a raw value with no validation at all, for tamper tests.
    pub fn raw_put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.writable()?;
        Ok(self
            .db
            .put_cf_opt(self.handle(cf)?, key, value, &synced())?)
    }

    /// Deletes a raw value with no validation at all, for tamper tests.
    pub fn raw_delete(&self, cf: Cf, key: &[u8]) -> Result<(), StorageError> {
        self.writable()?;
        Ok(self.db.delete_cf_opt(self.handle(cf)?, key, &synced())?)
    }

    fn handle(&self, cf: Cf) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StorageError::Rocks(format!("column family {} is missing", cf.name())))
    }

    fn writable(&self) -> Result<(), StorageError> {
        if self.read_only {
            Err(StorageError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Stores a block as [`Store::commit_block`] does, with `wo`.
    fn commit_block_with(&self, batch: CommitBatch, wo: &WriteOptions) -> Result<(), StorageError> {
        self.writable()?;
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        refuse_while_installing(self.snapshot_installing()?)?;
        let head = self.head()?;
        let genesis = self.genesis_hash()?;
        let checked = self
            .index_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(batch.block.hash(), head.as_ref().map(|h| h.block_hash));
        check_commit(&batch, head.as_ref(), genesis, &mut |ids| {
            if checked {
                // Absent at the pre-vote check, and nothing has been
                // indexed since but what that check allowed for
                // (`IndexChecked`).
                Ok(vec![None; ids.len()])
            } else {
                self.indexed_heights(ids)
            }
        })?;
        let set_change = crate::set_change_of(&batch);

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
        let new_head = head_of(&block);
        let (blocks, certs, state, txs, receipt_cf, meta) = (
            self.handle(Cf::Blocks)?,
            self.handle(Cf::Certificates)?,
            self.handle(Cf::State)?,
            self.handle(Cf::TxIndex)?,
            self.handle(Cf::Receipts)?,
            self.handle(Cf::Meta)?,
        );
        let hkey = keys::height(height);
        let mut wb = WriteBatch::default();
        wb.put_cf(blocks, hkey, codec::encode(&block));
        wb.put_cf(certs, hkey, codec::encode(&certificate));
        wb.put_cf(self.handle(Cf::BlockEvents)?, hkey, block_events);
        let writes = state_writes.len();
        for (k, v) in state_writes {
            match v {
                Some(v) => wb.put_cf(state, k, v),
                None => wb.delete_cf(state, k),
            }
        }
        // Index entries in key order: the memtable's skip list then finds
        // each entry's place from the previous one's instead of searching
        // from the top (transaction ids are random, so in block order each
        // insert searched the whole list). Receipts are keyed by height and
        // index, in order already.
        let mut index: Vec<([u8; 32], u32)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (keys::tx(id), i as u32))
            .collect();
        index.sort_unstable_by_key(|e| e.0);
        for (key, index) in index {
            wb.put_cf(txs, key, codec::encode(&TxLocation { height, index }));
        }
        for (i, receipt) in receipts.into_iter().enumerate() {
            wb.put_cf(receipt_cf, keys::receipt(height, i as u32), receipt);
        }
        wb.put_cf(
            meta,
            keys::ACCUMULATOR,
            codec::encode(&AccumulatorBytes(accumulator.to_bytes())),
        );
        wb.put_cf(meta, keys::HEAD, codec::encode(&new_head));
        if let Some(c) = set_change {
            wb.put_cf(meta, keys::set_change(height), codec::encode(&c));
        }
        self.db.write_opt(wb, wo)?;
        debug!(
            height,
            txs = ids.len(),
            writes,
            block = %new_head.block_hash.short(),
            "block stored"
        );
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        Ok(self.db.write_opt(batch, &synced())?)
    }

    fn meta_u64(&self, key: &[u8]) -> Result<Option<u64>, StorageError> {
        self.raw_get(Cf::Meta, key)?
            .map(|b| decoded(Cf::Meta, key, codec::decode::<u64>(&b)))
            .transpose()
    }

    fn genesis_hash(&self) -> Result<Option<Hash>, StorageError> {
        let key = keys::GENESIS_HASH;
        self.raw_get(Cf::Meta, key)?
            .map(|b| decoded(Cf::Meta, key, codec::decode::<Hash>(&b)))
            .transpose()
    }

    /// One `MultiGet` of `keys` in `cf`, a result per key, in order. A
    /// column family the store lacks (a read-only store from before it
    /// existed) fails every slot.
    fn multi_get<K: AsRef<[u8]>>(
        &self,
        cf: Cf,
        keys: &[K],
    ) -> Vec<Result<Option<Vec<u8>>, StorageError>> {
        match self.handle(cf) {
            Ok(h) => self
                .db
                .batched_multi_get_cf(h, keys, false)
                .into_iter()
                .map(|r| Ok(r?.map(|p| p.to_vec())))
                .collect(),
            Err(e) => keys
                .iter()
                .map(|_| Err(StorageError::Rocks(e.to_string())))
                .collect(),
        }
    }

    /// Like [`RocksStore::multi_get`] for `keys` in strictly ascending
    /// order, with one forward iterator: each key is taken where the
    /// iterator already stands and sought only when it is not there. A
    /// block's receipts are stored under consecutive keys, so reading them
    /// for its transactions seeks once; a `MultiGet` searched the filter,
    /// the index and the data block again for every key (most of the
    /// replay's index check, perf, docs/benchmarks.md). Keys out of order
    /// go to `multi_get`.
    fn ascending_get<K: AsRef<[u8]>>(
        &self,
        cf: Cf,
        keys: &[K],
    ) -> Vec<Result<Option<Vec<u8>>, StorageError>> {
        if !keys.windows(2).all(|w| w[0].as_ref() < w[1].as_ref()) {
            return self.multi_get(cf, keys);
        }
        let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
            return Vec::new();
        };
        // A column family the store lacks: `multi_get` fails every slot.
        let Ok(h) = self.handle(cf) else {
            return self.multi_get(cf, keys);
        };
        let mut ro = total_order();
        // Nothing past the last key is read ahead or decoded.
        let mut bound = last.as_ref().to_vec();
        bound.push(0);
        ro.set_iterate_upper_bound(bound);
        let mut iter = self.db.raw_iterator_cf_opt(h, ro);
        iter.seek(first.as_ref());
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let k = k.as_ref();
            if !(iter.valid() && iter.key() == Some(k)) {
                iter.seek(k);
            }
            match (iter.valid(), iter.key(), iter.value()) {
                (true, Some(found), Some(v)) if found == k => {
                    out.push(Ok(Some(v.to_vec())));
                    iter.next();
                }
                _ => match iter.status() {
                    Ok(()) => out.push(Ok(None)),
                    Err(e) => out.push(Err(e.into())),
                },
            }
        }
        out
    }

    /// The `tx_index` values of `ids`, decoded, in one `MultiGet`.
    fn index_values(&self, ids: &[Hash]) -> Vec<Result<Option<IndexValue>, StorageError>> {
        let keys: Vec<[u8; 32]> = ids.iter().map(keys::tx).collect();
        self.multi_get(Cf::TxIndex, &keys)
            .into_iter()
            .zip(&keys)
            .map(|(r, key)| r?.map(|bytes| index_value(key, &bytes)).transpose())
            .collect()
    }

    /// The heights at which `ids` are indexed, read in one `MultiGet` of
    /// the index alone: the commit path's duplicate check needs no
    /// receipt.
    fn indexed_heights(&self, ids: &[Hash]) -> Result<Vec<Option<u64>>, StorageError> {
        self.index_values(ids)
            .into_iter()
            .map(|r| r.map(|found| found.map(|v| v.location().height)))
            .collect()
    }

    fn forget_index_checks(&self) {
        self.index_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .blocks
            .clear();
    }

    /// Calls `f` on every pair of `cf` with `from <= key < to`, in key
    /// order, until it answers false or fails: one bounded iterator that
    /// lends `f` its bytes. A walk reads each block once, so it leaves the
    /// block cache alone (caching would only evict what the node's reads
    /// keep there). A read error ends the walk as an error, never early.
    fn walk_cf(
        &self,
        cf: Cf,
        from: &[u8],
        to: Option<&[u8]>,
        f: &mut WalkFn<'_>,
    ) -> Result<(), StorageError> {
        let mut ro = total_order();
        ro.fill_cache(false);
        if let Some(to) = to {
            ro.set_iterate_upper_bound(to.to_vec());
        }
        let mut iter = self.db.raw_iterator_cf_opt(self.handle(cf)?, ro);
        iter.seek(from);
        while let Some((k, v)) = iter.item() {
            if !f(k, v)? {
                return Ok(());
            }
            iter.next();
        }
        iter.status()?;
        Ok(())
    }

    fn decode_block(height: u64, key: &[u8], bytes: &[u8]) -> Result<Block, StorageError> {
        let block = Block::decode(bytes).map_err(|e| corrupt(Cf::Blocks.name(), key, e))?;
        if block.header.height != height {
            return Err(corrupt(
                Cf::Blocks.name(),
                key,
                format!("block claims height {}", block.header.height),
            ));
        }
        Ok(block)
    }
}

impl Store for RocksStore {
    fn head(&self) -> Result<Option<Head>, StorageError> {
        head_from(self.raw_get(Cf::Meta, keys::HEAD)?)
    }

    fn block(&self, height: u64) -> Result<Option<Block>, StorageError> {
        let key = keys::height(height);
        self.raw_get(Cf::Blocks, &key)?
            .map(|b| Self::decode_block(height, &key, &b))
            .transpose()
    }

    fn block_hash(&self, height: u64) -> Result<Option<Hash>, StorageError> {
        if height == 0 {
            return self.genesis_hash();
        }
        Ok(self.certificate(height)?.map(|c| c.block_hash))
    }

    fn block_events(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let key = keys::height(height);
        let bytes = self.raw_get(Cf::BlockEvents, &key)?;
        if let Some(b) = &bytes {
            if b.len() > BLOCK_EVENTS_MAX_BYTES {
                return Err(corrupt(
                    Cf::BlockEvents.name(),
                    &key,
                    "larger than the block events limit",
                ));
            }
        }
        Ok(bytes)
    }

    fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>, StorageError> {
        let key = keys::height(height);
        let Some(bytes) = self.raw_get(Cf::Certificates, &key)? else {
            return Ok(None);
        };
        let cert: CommitCertificate = decoded(
            Cf::Certificates,
            &key,
            codec::decode_with_limit(&bytes, CERTIFICATE_MAX_BYTES),
        )?;
        if cert.height != height {
            return Err(corrupt(
                Cf::Certificates.name(),
                &key,
                format!("certificate claims height {}", cert.height),
            ));
        }
        Ok(Some(cert))
    }

    fn tx_location(&self, id: &Hash) -> Result<Option<TxIndexed>, StorageError> {
        self.tx_locations(std::slice::from_ref(id))
            .pop()
            .unwrap_or(Ok(None))
    }

    /// One RocksDB `MultiGet` of the index for the whole list and one of
    /// the receipts it names: the auditor's replay checks every
    /// transaction of a block against the index. [`Store::tx_location`]
    /// is this for a list of one.
    fn tx_locations(&self, ids: &[Hash]) -> Vec<Result<Option<TxIndexed>, StorageError>> {
        let values = self.index_values(ids);
        // The receipts of the entries of the current form, in one more
        // MultiGet, in the order of the list.
        let wanted: Vec<[u8; 12]> = values
            .iter()
            .filter_map(|v| match v {
                Ok(Some(IndexValue::Location(l))) => Some(keys::receipt(l.height, l.index)),
                _ => None,
            })
            .collect();
        let mut receipts = self.ascending_get(Cf::Receipts, &wanted).into_iter();
        values
            .into_iter()
            .map(|v| match v? {
                None => Ok(None),
                Some(IndexValue::Legacy(l, receipt)) => Ok(Some((l, receipt))),
                Some(IndexValue::Location(l)) => {
                    let got = receipts.next().unwrap_or_else(|| {
                        Err(StorageError::Rocks("receipt lookup came back short".into()))
                    });
                    Ok(Some((l, receipt_at(l, got)?)))
                }
            })
            .collect()
    }

    /// [`RocksStore::walk_cf`] over the index, decoding each entry.
    fn index_walk(
        &self,
        from: &Hash,
        to: Option<&Hash>,
        f: &mut dyn FnMut(&IndexEntry) -> bool,
    ) -> Option<Result<(), StorageError>> {
        let to = to.map(keys::tx);
        Some(self.walk_cf(
            Cf::TxIndex,
            &keys::tx(from),
            to.as_ref().map(|t| &t[..]),
            &mut |k, v| {
                let id = <[u8; 32]>::try_from(k)
                    .map_err(|_| corrupt(Cf::TxIndex.name(), k, "a key that is not an id"))?;
                let (location, receipt_inline) = match index_value(k, v)? {
                    IndexValue::Location(l) => (l, false),
                    IndexValue::Legacy(l, _) => (l, true),
                };
                Ok(f(&IndexEntry {
                    id: Hash(id),
                    location,
                    receipt_inline,
                }))
            },
        ))
    }

    /// One forward iterator over the block's consecutive keys.
    fn receipts_at(&self, height: u64, count: u32) -> Vec<Result<Option<Vec<u8>>, StorageError>> {
        let wanted: Vec<[u8; 12]> = (0..count).map(|i| keys::receipt(height, i)).collect();
        self.ascending_get(Cf::Receipts, &wanted)
            .into_iter()
            .zip(&wanted)
            .map(|(got, key)| {
                let got = got?;
                if let Some(bytes) = &got {
                    too_large_stored(Cf::Receipts, key, bytes.len())?;
                }
                Ok(got)
            })
            .collect()
    }

    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.raw_get(Cf::State, key)
    }

    fn state_scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        self.scan_state(None, prefix, start_after, limit)
    }

    fn state_view(&self) -> Box<dyn crate::StateView + '_> {
        Box::new(RocksStateView::new(self))
    }

    /// [`RocksStore::walk_cf`] over the state.
    fn state_walk(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        self.walk_cf(Cf::State, from, to, &mut |k, v| Ok(f(k, v)))
    }

    fn accumulator(&self) -> Result<StateAccumulator, StorageError> {
        accumulator_from(self.raw_get(Cf::Meta, keys::ACCUMULATOR)?)
    }

    fn commit_block(&self, batch: CommitBatch) -> Result<(), StorageError> {
        self.commit_block_with(batch, &synced())
    }

    fn commit_block_deferred(&self, batch: CommitBatch) -> Result<(), StorageError> {
        self.commit_block_with(batch, &WriteOptions::default())
    }

    fn sync_writes(&self) -> Result<(), StorageError> {
        self.writable()?;
        // One write-ahead log for every column family: syncing it makes
        // every earlier write durable, in order.
        Ok(self.db.flush_wal(true)?)
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
        refuse_while_installing(self.snapshot_installing()?)?;
        let head = self.head()?;
        let genesis = self.genesis_hash()?;
        check_block_commit(
            block,
            crate::Outputs {
                state_writes,
                receipts,
                block_events,
                accumulator,
            },
            head.as_ref(),
            genesis,
            &mut |ids| self.indexed_heights(ids),
            pending,
        )?;
        self.index_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remember(block.hash(), block.header.parent_hash);
        Ok(())
    }

    fn put_genesis(
        &self,
        genesis_hash: Hash,
        genesis_bytes: Vec<u8>,
        initial_state: BTreeMap<Vec<u8>, Vec<u8>>,
        accumulator: StateAccumulator,
    ) -> Result<(), StorageError> {
        self.writable()?;
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stored) = self.genesis_hash()? {
            if stored == genesis_hash {
                return Ok(());
            }
            return Err(StorageError::GenesisMismatch {
                stored,
                given: genesis_hash,
            });
        }
        check_genesis(&genesis_bytes, &initial_state, &accumulator)?;
        let state = self.handle(Cf::State)?;
        let state_empty = self
            .db
            .iterator_cf_opt(state, total_order(), IteratorMode::Start)
            .next()
            .transpose()?
            .is_none();
        if self.head()?.is_some() || !state_empty {
            return Err(StorageError::NotEmpty);
        }
        let meta = self.handle(Cf::Meta)?;
        let mut wb = WriteBatch::default();
        for (k, v) in &initial_state {
            wb.put_cf(state, k, v);
        }
        wb.put_cf(meta, keys::GENESIS_HASH, codec::encode(&genesis_hash));
        wb.put_cf(meta, keys::GENESIS_DOC, &genesis_bytes);
        wb.put_cf(
            meta,
            keys::ACCUMULATOR,
            codec::encode(&AccumulatorBytes(accumulator.to_bytes())),
        );
        self.write(wb)?;
        debug!(genesis = %genesis_hash.short(), entries = initial_state.len(), "genesis stored");
        Ok(())
    }

    fn genesis(&self) -> Result<Option<(Hash, Vec<u8>)>, StorageError> {
        let Some(hash) = self.genesis_hash()? else {
            return Ok(None);
        };
        let doc = self.raw_get(Cf::Meta, keys::GENESIS_DOC)?.ok_or_else(|| {
            corrupt(
                Cf::Meta.name(),
                keys::GENESIS_DOC,
                "genesis hash stored without its document",
            )
        })?;
        Ok(Some((hash, doc)))
    }

    fn base(&self) -> Result<u64, StorageError> {
        Ok(self.meta_u64(keys::BASE)?.unwrap_or(1))
    }

    fn snapshot_begin(
        &self,
        genesis_hash: Hash,
        genesis_bytes: Vec<u8>,
        height: u64,
    ) -> Result<(), StorageError> {
        self.writable()?;
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        check_begin(
            self.head()?.is_some(),
            self.genesis_hash()?,
            genesis_hash,
            &genesis_bytes,
            height,
        )?;
        let (state, meta) = (self.handle(Cf::State)?, self.handle(Cf::Meta)?);
        let mut wb = WriteBatch::default();
        // Every key is at most STATE_KEY_MAX_BYTES long, so every key sorts
        // below this bound: the range deletes the whole state, an earlier
        // unfinished install or the genesis state alike.
        let end = [0xffu8; crate::STATE_KEY_MAX_BYTES + 1];
        wb.delete_range_cf(state, [].as_slice(), end.as_slice());
        wb.put_cf(meta, keys::GENESIS_HASH, codec::encode(&genesis_hash));
        wb.put_cf(meta, keys::GENESIS_DOC, &genesis_bytes);
        wb.delete_cf(meta, keys::ACCUMULATOR);
        wb.put_cf(meta, keys::INSTALLING, codec::encode(&height));
        self.write(wb)?;
        debug!(height, "snapshot install begun");
        Ok(())
    }

    fn snapshot_put_chunk(
        &self,
        height: u64,
        pairs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StorageError> {
        self.writable()?;
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        check_installing(self.snapshot_installing()?, height)?;
        check_pairs(pairs)?;
        let state = self.handle(Cf::State)?;
        let mut wb = WriteBatch::default();
        for (k, v) in pairs {
            wb.put_cf(state, k, v);
        }
        self.write(wb)
    }

    fn snapshot_finish(
        &self,
        manifest: &SnapshotManifest,
        set_changes: &[SetChange],
    ) -> Result<Head, StorageError> {
        self.writable()?;
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_index_checks();
        let height = manifest.height();
        check_installing(self.snapshot_installing()?, height)?;
        check_set_changes(set_changes, height)?;
        let acc = check_finish(manifest, recompute_accumulator(self)?)?;
        let head = head_of(&manifest.block);
        let (blocks, certs, meta) = (
            self.handle(Cf::Blocks)?,
            self.handle(Cf::Certificates)?,
            self.handle(Cf::Meta)?,
        );
        let hkey = keys::height(height);
        let mut wb = WriteBatch::default();
        wb.put_cf(blocks, hkey, codec::encode(&manifest.block));
        wb.put_cf(certs, hkey, codec::encode(&manifest.certificate));
        wb.put_cf(
            meta,
            keys::ACCUMULATOR,
            codec::encode(&AccumulatorBytes(acc.to_bytes())),
        );
        wb.put_cf(meta, keys::HEAD, codec::encode(&head));
        wb.put_cf(meta, keys::BASE, codec::encode(&height));
        wb.delete_cf(meta, keys::INSTALLING);
        for c in set_changes {
            wb.put_cf(meta, keys::set_change(c.header.height), codec::encode(c));
        }
        self.write(wb)?;
        debug!(height, "snapshot installed");
        Ok(head)
    }

    fn snapshot_installing(&self) -> Result<Option<u64>, StorageError> {
        self.meta_u64(keys::INSTALLING)
    }

    fn set_changes(&self, after: u64, limit: usize) -> Result<Vec<SetChange>, StorageError> {
        let limit = limit.min(SET_CHANGES_MAX);
        let start = keys::set_change(after.saturating_add(1));
        let iter = self.db.iterator_cf(
            self.handle(Cf::Meta)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(keys::SET_CHANGE_PREFIX) {
                break;
            }
            out.push(decoded(
                Cf::Meta,
                &k,
                codec::decode_with_limit::<SetChange>(&v, META_VALUE_MAX_BYTES),
            )?);
        }
        Ok(out)
    }

    fn put_safety_state(&self, bytes: &[u8]) -> Result<(), StorageError> {
        self.writable()?;
        too_large(
            "safety state size in bytes",
            bytes.len(),
            SAFETY_STATE_MAX_BYTES,
        )?;
        self.raw_put(Cf::Safety, keys::SAFETY, bytes)
    }

    fn safety_state(&self) -> Result<Option<Vec<u8>>, StorageError> {
        self.raw_get(Cf::Safety, keys::SAFETY)
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.raw_get(Cf::Meta, &keys::meta_user(key))
    }

    fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.writable()?;
        check_meta(key, value)?;
        self.raw_put(Cf::Meta, &keys::meta_user(key), value)
    }

    /// Reads the range with one iterator, so the blocks come from one
    /// consistent view of the database.
    fn blocks_range(&self, from: u64, to_inclusive: u64) -> Result<Vec<Block>, StorageError> {
        let mut out = Vec::new();
        let first = from.max(1);
        if first > to_inclusive {
            return Ok(out);
        }
        let start = keys::height(first);
        let iter = self.db.iterator_cf(
            self.handle(Cf::Blocks)?,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut expected = first;
        for item in iter {
            let (k, v) = item?;
            if expected > to_inclusive
                || out.len() >= BLOCKS_RANGE_MAX
                || *k != keys::height(expected)
            {
                break;
            }
            out.push(Self::decode_block(expected, &k, &v)?);
            expected = match expected.checked_add(1) {
                Some(n) => n,
                None => break,
            };
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{
        prefix_successor, state_filter_prefix, IndexChecked, INDEX_CHECKED_MAX, STATE_PREFIX_BYTES,
    };
    use aidledger_types::Hash;
    use proptest::prelude::*;

    fn h(i: u8) -> Hash {
        Hash([i; 32])
    }

    #[test]
    fn only_a_vanished_old_info_log_is_waited_out() {
        let ci = "IO error: No such file or directory: while unlink() file: \
                  /tmp/x/data/LOG.old.1796636128789500: No such file or directory";
        assert!(super::vanished_info_log(ci));
        // A missing table file is damage, not housekeeping.
        assert!(!super::vanished_info_log(
            "IO error: No such file or directory: While open a file for random read: \
             /tmp/x/data/000123.sst: No such file or directory"
        ));
        assert!(!super::vanished_info_log("Corruption: LOG.old.1 is bad"));
    }

    /// The iterator's answers are `MultiGet`'s, key for key: present and
    /// absent keys, runs and gaps, before the first and after the last
    /// stored key, over a memtable and a table file at once; out-of-order
    /// lists go to `MultiGet` itself.
    #[test]
    fn reading_ascending_keys_answers_like_multi_get() {
        use super::{Cf, RocksStore};
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path().join("db")).unwrap();
        let key = |h: u64, i: u32| super::keys::receipt(h, i);
        // Heights 1..=6, indices with gaps; the even heights flushed to a
        // table file, the odd ones left in the memtable.
        for h in 1..=6u64 {
            for i in (0..40u32).filter(|i| i % 7 != 3) {
                store
                    .raw_put(Cf::Receipts, &key(h, i), &[h as u8, i as u8])
                    .unwrap();
            }
            if h % 2 == 0 {
                store
                    .db
                    .flush_cf(store.handle(Cf::Receipts).unwrap())
                    .unwrap();
            }
        }
        let same_answers = |keys: &[[u8; 12]]| {
            let got = store.ascending_get(Cf::Receipts, keys);
            let want = store.multi_get(Cf::Receipts, keys);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.as_ref().unwrap(), w.as_ref().unwrap(), "keys {keys:?}");
            }
        };
        // One block's receipts in a run, as the replay asks; heights 0
        // and 7 hold nothing.
        for h in 0..8 {
            same_answers(&(0..40).map(|i| key(h, i)).collect::<Vec<_>>());
        }
        // Any list, sorted or not (one store for every case: the cases
        // only read it).
        let lists = (
            proptest::collection::vec((0u64..8, 0u32..45), 0..50),
            any::<bool>(),
        );
        proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300))
            .run(&lists, |(picks, sorted)| {
                let mut keys: Vec<[u8; 12]> = picks.iter().map(|(h, i)| key(*h, *i)).collect();
                if sorted {
                    keys.sort();
                    keys.dedup();
                }
                same_answers(&keys);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_remembered_check_counts_only_on_its_parent_and_only_once() {
        let mut c = IndexChecked::default();
        c.remember(h(1), h(0));
        // Another head: not used, and used up.
        assert!(!c.take(h(1), Some(h(9))));
        assert!(!c.take(h(1), Some(h(0))));
        // No head at all (an empty store).
        c.remember(h(1), h(0));
        assert!(!c.take(h(1), None));
        // The parent as head: used once.
        c.remember(h(2), h(1));
        c.remember(h(2), h(1));
        assert!(c.take(h(2), Some(h(1))));
        assert!(!c.take(h(2), Some(h(1))));
        // Never checked.
        assert!(!c.take(h(3), Some(h(2))));
    }

    #[test]
    fn remembered_checks_are_bounded_oldest_first() {
        let mut c = IndexChecked::default();
        let n = INDEX_CHECKED_MAX as u8 + 4;
        for i in 1..=n {
            c.remember(h(i), h(i - 1));
        }
        assert_eq!(c.blocks.len(), INDEX_CHECKED_MAX);
        for i in 1..=4 {
            assert!(!c.take(h(i), Some(h(i - 1))), "block {i} was forgotten");
        }
        for i in 5..=n {
            assert!(c.take(h(i), Some(h(i - 1))));
        }
    }

    /// A household attestation's key: "att/h", the hash, claim, "/", org.
    fn attestation(hash: [u8; 32], claim: &str, org: &str) -> Vec<u8> {
        let mut k = b"att/h".to_vec();
        k.extend_from_slice(&hash);
        k.extend_from_slice(claim.as_bytes());
        k.push(b'/');
        k.extend_from_slice(org.as_bytes());
        k
    }

    /// A store written by a build before 2026-12-06, whose state filters
    /// held the first 16 bytes of each key, then opened by this build:
    /// RocksDB must not use the old files' filters for the new prefixes.
    /// Every scan under every cut of every key, through the store and a
    /// view, over old files, new files and the memtable, is exact.
    #[test]
    fn scans_are_exact_over_files_written_under_the_16_byte_extractor() {
        use crate::Store;
        use rocksdb::{ColumnFamilyDescriptor, SliceTransform, DB};
        use std::collections::BTreeMap;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let hashes = [
            [b'/'; 32],
            [7; 32],
            [b'/', 1, 2, b'/'].repeat(8).try_into().unwrap(),
        ];
        let all: Vec<Vec<u8>> = hashes
            .iter()
            .flat_map(|h| {
                ["in", "income", "disability"]
                    .into_iter()
                    .flat_map(move |c| ["a", "tax"].into_iter().map(move |o| attestation(*h, c, o)))
            })
            .collect();
        // A third each: old files, new files, the memtable.
        let part = |i: usize| all.iter().skip(i).step_by(3).cloned().collect::<Vec<_>>();
        let mut model = BTreeMap::new();
        {
            let (opts, _cache) = super::options();
            let legacy: Vec<ColumnFamilyDescriptor> = super::Cf::ALL
                .iter()
                .map(|cf| {
                    let mut o = opts.clone();
                    if *cf == super::Cf::State {
                        o.set_prefix_extractor(SliceTransform::create_fixed_prefix(16));
                    }
                    ColumnFamilyDescriptor::new(cf.name(), o)
                })
                .collect();
            let db = DB::open_cf_descriptors(&opts, &path, legacy).unwrap();
            let cf = db.cf_handle(super::Cf::State.name()).unwrap();
            for k in part(0) {
                db.put_cf(cf, &k, b"old").unwrap();
                model.insert(k, b"old".to_vec());
            }
            db.flush_cf(cf).unwrap();
        }
        let store = super::RocksStore::open(&path).unwrap();
        for k in part(1) {
            store.raw_put(super::Cf::State, &k, b"new").unwrap();
            model.insert(k, b"new".to_vec());
        }
        store
            .db
            .flush_cf(store.handle(super::Cf::State).unwrap())
            .unwrap();
        for k in part(2) {
            store.raw_put(super::Cf::State, &k, b"mem").unwrap();
            model.insert(k, b"mem".to_vec());
        }
        let files = std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sst")
            })
            .count();
        assert!(files >= 2, "old and new table files: {files}");
        let view = store.state_view();
        for key in &all {
            for cut in [0, 5, 36, 37, 38, 40, 41, 42, 43, 44, 47, key.len()] {
                let prefix = &key[..cut.min(key.len())];
                let want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(store.state_scan(prefix, None, 100).unwrap(), want);
                assert_eq!(view.scan(prefix, None, 100).unwrap(), want);
            }
        }
    }

    #[test]
    fn filtered_prefixes_of_the_state_layout() {
        // A hash full of '/' bytes: the claim's slash is the one after it.
        let hash = [b'/'; 32];
        let key = attestation(hash, "income", "civil-affairs");
        let scan = &key[..key.len() - "civil-affairs".len()];
        assert_eq!(state_filter_prefix(&key), Some(scan));
        assert_eq!(state_filter_prefix(scan), Some(scan));
        // The household alone, or a claim cut short, fixes nothing.
        assert_eq!(state_filter_prefix(&key[..37]), None);
        assert_eq!(state_filter_prefix(&key[..40]), None);
        // Any other key: its first 16 bytes, if it has them.
        let region = b"hh-region/530102/abc";
        assert_eq!(
            state_filter_prefix(region),
            Some(&region[..STATE_PREFIX_BYTES])
        );
        assert_eq!(state_filter_prefix(b"gov/params"), None);
        assert_eq!(state_filter_prefix(b""), None);
    }

    #[test]
    fn successors_of_edge_prefixes() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b"att/"), Some(b"att0".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
    }

    proptest! {
        /// A key starts with the prefix exactly when it lies in
        /// [prefix, successor): the bound a scan uses loses no key under
        /// the prefix and admits none outside it.
        #[test]
        fn the_bound_is_exactly_the_prefix(
            prefix in proptest::collection::vec(prop_oneof![Just(0xffu8), Just(0u8), any::<u8>()], 0..4),
            key in proptest::collection::vec(prop_oneof![Just(0xffu8), Just(0u8), any::<u8>()], 0..6),
        ) {
            let inside = key.as_slice() >= prefix.as_slice()
                && prefix_successor(&prefix).is_none_or(|b| key < b);
            prop_assert_eq!(inside, key.starts_with(&prefix));
        }

        /// The filtered prefix depends on no byte after it: a key's
        /// filtered prefix is a prefix of the key, is its own filtered
        /// prefix, and is every longer key's that starts with it. This is
        /// what makes a prefix-mode seek under such a prefix exact.
        #[test]
        fn the_filtered_prefix_depends_on_nothing_after_it(
            lead in prop_oneof![Just(b"att/h".to_vec()), Just(b"att/a".to_vec()), Just(b"att/".to_vec()), Just(Vec::new())],
            body in proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'a'), any::<u8>()], 0..48),
            tail in proptest::collection::vec(prop_oneof![Just(b'/'), any::<u8>()], 0..8),
        ) {
            let key = [lead, body].concat();
            if let Some(p) = state_filter_prefix(&key) {
                prop_assert!(key.starts_with(p));
                prop_assert_eq!(state_filter_prefix(p), Some(p));
                let longer = [key.as_slice(), tail.as_slice()].concat();
                prop_assert_eq!(state_filter_prefix(&longer), Some(p));
            }
        }
    }

    /// The names of `db`'s table files in column family `cf`.
    fn table_files(db: &rocksdb::DB, cf: super::Cf) -> Vec<String> {
        let mut v: Vec<String> = db
            .live_files()
            .unwrap()
            .into_iter()
            .filter(|f| f.column_family_name == cf.name())
            .map(|f| f.name)
            .collect();
        v.sort();
        v
    }

    /// Waits (at most 20 s) until `db` has no compaction scheduled or
    /// running, without flushing.
    fn quiet(db: &rocksdb::DB) {
        let mut o = rocksdb::WaitForCompactOptions::default();
        o.set_timeout(20_000_000);
        db.wait_for_compact(&o).unwrap();
    }

    /// A flushed file of blocks overlaps no older file, so it is
    /// bottommost for its keys. RocksDB, left to its default, rewrites such
    /// a file whole only to zero its sequence numbers once a snapshot newer
    /// than it is released (shown here first, on a database opened with
    /// the store's options alone); the store turns that off, and the file
    /// it flushed stays as written.
    #[test]
    fn a_flushed_bottommost_file_is_not_rewritten_to_zero_its_sequence_numbers() {
        use super::{Cf, RocksStore};
        use rocksdb::DB;

        // Writes 50 blocks and flushes them under a snapshot, as a node
        // reads through one per block; RocksDB reconsiders bottommost
        // files when one is released. Returns the table files as flushed.
        let blocks = |db: &DB| {
            let cf = db.cf_handle(Cf::Blocks.name()).unwrap();
            for h in 1u64..=50 {
                db.put_cf(cf, super::keys::height(h), [h as u8; 1000])
                    .unwrap();
            }
            let held = db.snapshot();
            db.flush_cf(cf).unwrap();
            let flushed = table_files(db, Cf::Blocks);
            assert_eq!(flushed.len(), 1, "one flushed file: {flushed:?}");
            db.put_cf(cf, b"later", b"x").unwrap();
            drop(held);
            drop(db.snapshot());
            // The rewrite, if any, is scheduled by now.
            quiet(db);
            flushed
        };

        let dir = tempfile::tempdir().unwrap();
        {
            let (opts, _cache) = super::options();
            let path = dir.path().join("plain");
            let db = DB::open_cf_descriptors(&opts, path, super::descriptors(&opts)).unwrap();
            let flushed = blocks(&db);
            assert_ne!(
                table_files(&db, Cf::Blocks),
                flushed,
                "RocksDB's default rewrites the bottommost file (the case this guards against)"
            );
        }

        let store = RocksStore::open(dir.path().join("store")).unwrap();
        let flushed = blocks(&store.db);
        assert_eq!(table_files(&store.db, Cf::Blocks), flushed);
        // The data is all there, by the store's own reads.
        let cf = store.handle(Cf::Blocks).unwrap();
        for h in 1u64..=50 {
            let v = store
                .db
                .get_cf(cf, super::keys::height(h))
                .unwrap()
                .unwrap();
            assert_eq!(v, vec![h as u8; 1000]);
        }
    }

    /// RocksDB writes an options file at every open and option change;
    /// the store takes its options from code, never from that file, so a
    /// damaged one (a careless edit, a bad disk block) neither stops the
    /// store from opening nor changes what it holds.
    #[test]
    fn a_damaged_options_file_does_not_stop_the_store_or_change_it() {
        use super::{Cf, RocksStore};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = RocksStore::open(&path).unwrap();
            store.raw_put(Cf::Meta, b"k", b"v").unwrap();
        }
        let mut damaged = 0;
        for e in std::fs::read_dir(&path).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().starts_with("OPTIONS-") {
                std::fs::write(e.path(), b"\x00 not an options file [CFOptions \"").unwrap();
                damaged += 1;
            }
        }
        assert!(damaged > 0, "the store wrote an options file");
        let store = RocksStore::open(&path).unwrap();
        assert_eq!(store.raw_get(Cf::Meta, b"k").unwrap().unwrap(), b"v");
    }

    /// Every family has the delay, and only the state's and the index's
    /// memtables carry a Bloom filter (every family had one before). Both
    /// settings are in the options file RocksDB writes, read back here.
    #[test]
    fn options_file_names_the_delay_and_memtable_filters_only_where_absent_keys_are_read() {
        use super::{Cf, RocksStore};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(RocksStore::open(&path).unwrap());
        let latest = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("OPTIONS-"))
            .max_by_key(|n| n["OPTIONS-".len()..].parse::<u64>().unwrap())
            .unwrap();
        let text = std::fs::read_to_string(path.join(latest)).unwrap();
        for cf in Cf::ALL {
            let section = text
                .split("[CFOptions \"")
                .find(|s| s.starts_with(&format!("{}\"]", cf.name())))
                .unwrap_or_else(|| panic!("no options for {}", cf.name()));
            let ratio = section
                .lines()
                .find_map(|l| l.trim().strip_prefix("memtable_prefix_bloom_size_ratio="))
                .unwrap();
            let ratio: f64 = ratio.parse().unwrap();
            assert_eq!(
                ratio > 0.0,
                super::memtable_filtered(cf),
                "{}: {ratio}",
                cf.name()
            );
            let delay = section
                .lines()
                .find_map(|l| l.trim().strip_prefix("bottommost_file_compaction_delay="))
                .unwrap();
            assert_eq!(delay, super::NO_SEQNO_ZEROING.1, "{}", cf.name());
        }
        assert!(super::memtable_filtered(Cf::State) && super::memtable_filtered(Cf::TxIndex));
    }
}
