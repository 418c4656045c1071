#![allow(clippy::unwrap_used)]
//! Catching up by sync over real RocksDB stores: a validator whose store
//! was wiped asks a peer for blocks as soon as one connects, and a large
//! response has its signatures verified on a second thread ahead of the
//! blocks' checks. A certified block with a bad signature is still
//! refused, with the blocks before it committed and nothing of it. The
//! blocks of one response are stored without waiting for the disk and
//! synced once, at the response's end.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aidledger_audit::synth::{build_chain, certificate, StateMode, SynthChain};
use aidledger_mempool::MempoolConfig;
use aidledger_node_core::{
    ConsensusSettings, CoreParts, Count, Effect, Event, NodeCore, SyncRequest, SyncResponse,
    Telemetry,
};
use aidledger_storage::{
    CommitBatch, Head, KeyValues, RocksStore, StateView, StorageError, Store, TxIndexed,
};
use aidledger_types::snapshot::{SetChange, SnapshotManifest};
use aidledger_types::{codec, Block, CommitCertificate, Hash, IdentifiedBlock, StateAccumulator};
use common::now;

/// Counts the transactions whose signatures were verified ahead.
#[derive(Clone, Default)]
struct Ahead(Arc<AtomicU64>);
impl Telemetry for Ahead {
    fn count(&self, c: Count, n: u64) {
        if matches!(c, Count::SyncPreverifiedTxs) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }
}
impl Ahead {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a [`Journal`] saw the core ask its store to make durable, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Write {
    /// `commit_block` of this height: a synced write.
    Synced(u64),
    /// `commit_block_deferred` of this height.
    Deferred(u64),
    /// `sync_writes`.
    Sync,
}

/// A store that forwards everything to another and notes every commit and
/// sync, to check when the core makes what it stores durable.
struct Journal {
    inner: Arc<dyn Store>,
    writes: Arc<Mutex<Vec<Write>>>,
}

impl Journal {
    fn note(&self, w: Write) {
        self.writes.lock().unwrap().push(w);
    }
}

impl Store for Journal {
    fn head(&self) -> Result<Option<Head>, StorageError> {
        self.inner.head()
    }
    fn block(&self, height: u64) -> Result<Option<Block>, StorageError> {
        self.inner.block(height)
    }
    fn block_hash(&self, height: u64) -> Result<Option<Hash>, StorageError> {
        self.inner.block_hash(height)
    }
    fn certificate(&self, height: u64) -> Result<Option<CommitCertificate>, StorageError> {
        self.inner.certificate(height)
    }
    fn block_events(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.block_events(height)
    }
    fn tx_location(&self, id: &Hash) -> Result<Option<TxIndexed>, StorageError> {
        self.inner.tx_location(id)
    }
    fn tx_locations(&self, ids: &[Hash]) -> Vec<Result<Option<TxIndexed>, StorageError>> {
        self.inner.tx_locations(ids)
    }
    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.state_get(key)
    }
    fn state_scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        self.inner.state_scan(prefix, start_after, limit)
    }
    fn state_view(&self) -> Box<dyn StateView + '_> {
        self.inner.state_view()
    }
    fn accumulator(&self) -> Result<StateAccumulator, StorageError> {
        self.inner.accumulator()
    }
    fn commit_block(&self, batch: CommitBatch) -> Result<(), StorageError> {
        let h = batch.block.header.height;
        self.inner.commit_block(batch)?;
        self.note(Write::Synced(h));
        Ok(())
    }
    fn commit_block_deferred(&self, batch: CommitBatch) -> Result<(), StorageError> {
        let h = batch.block.header.height;
        self.inner.commit_block_deferred(batch)?;
        self.note(Write::Deferred(h));
        Ok(())
    }
    fn sync_writes(&self) -> Result<(), StorageError> {
        self.inner.sync_writes()?;
        self.note(Write::Sync);
        Ok(())
    }
    fn check_commit_block(
        &self,
        block: &IdentifiedBlock,
        state_writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        receipts: &[Vec<u8>],
        block_events: &[u8],
        accumulator: &StateAccumulator,
        pending: Option<&aidledger_storage::PendingParent<'_>>,
    ) -> Result<(), StorageError> {
        self.inner.check_commit_block(
            block,
            state_writes,
            receipts,
            block_events,
            accumulator,
            pending,
        )
    }
    fn put_genesis(
        &self,
        genesis_hash: Hash,
        genesis_bytes: Vec<u8>,
        initial_state: BTreeMap<Vec<u8>, Vec<u8>>,
        accumulator: StateAccumulator,
    ) -> Result<(), StorageError> {
        self.inner
            .put_genesis(genesis_hash, genesis_bytes, initial_state, accumulator)
    }
    fn genesis(&self) -> Result<Option<(Hash, Vec<u8>)>, StorageError> {
        self.inner.genesis()
    }
    fn put_safety_state(&self, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.put_safety_state(bytes)
    }
    fn safety_state(&self) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.safety_state()
    }
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.meta_get(key)
    }
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.inner.meta_put(key, value)
    }
    fn base(&self) -> Result<u64, StorageError> {
        self.inner.base()
    }
    fn snapshot_begin(
        &self,
        genesis_hash: Hash,
        genesis_bytes: Vec<u8>,
        height: u64,
    ) -> Result<(), StorageError> {
        self.inner
            .snapshot_begin(genesis_hash, genesis_bytes, height)
    }
    fn snapshot_put_chunk(
        &self,
        height: u64,
        pairs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), StorageError> {
        self.inner.snapshot_put_chunk(height, pairs)
    }
    fn snapshot_finish(
        &self,
        manifest: &SnapshotManifest,
        set_changes: &[SetChange],
    ) -> Result<Head, StorageError> {
        self.inner.snapshot_finish(manifest, set_changes)
    }
    fn set_changes(&self, after: u64, limit: usize) -> Result<Vec<SetChange>, StorageError> {
        self.inner.set_changes(after, limit)
    }
    fn snapshot_installing(&self) -> Result<Option<u64>, StorageError> {
        self.inner.snapshot_installing()
    }
    fn blocks_range(&self, from: u64, to_inclusive: u64) -> Result<Vec<Block>, StorageError> {
        self.inner.blocks_range(from, to_inclusive)
    }
}

/// How the core in [`setup_as`] follows the chain.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Follower {
    /// A validator that ran on this chain before, on a wiped store: it
    /// catches up without a replica and without voting.
    WipedValidator,
    /// A node whose key is no validator's: no replica.
    Observer,
}

/// A core for a validator of the development consortium that ran on this
/// chain before, over `c`'s store holding only the genesis: it catches up
/// by sync without voting. Or, by `follower`, a fresh validator or an
/// observer over the same store.
fn wiped_validator(
    c: &SynthChain,
    ahead: &Ahead,
    writes: &Arc<Mutex<Vec<Write>>>,
    follower: Follower,
) -> NodeCore {
    let mut base = common::parts(c);
    if follower == Follower::Observer {
        base.key = aidledger_crypto::Keypair::generate();
    }
    let store: Arc<dyn Store> = Arc::new(Journal {
        inner: base.store.clone(),
        writes: writes.clone(),
    });
    let parts = CoreParts {
        store,
        consensus: ConsensusSettings {
            sync_batch: 200,
            ..base.consensus
        },
        mempool: MempoolConfig::default(),
        sync_response_max_bytes: 48 << 20,
        accept_missing_safety_state: false,
        ran_before: follower == Follower::WipedValidator,
        telemetry: Box::new(ahead.clone()),
        ..base
    };
    NodeCore::new(parts, now(1_000)).unwrap()
}

/// The sync request among `effects`: its tag and the height it asks from.
fn sync_request(effects: &[Effect]) -> Option<(u64, u64)> {
    effects.iter().find_map(|e| match e {
        Effect::Request { tag, data, .. } => match codec::decode(data) {
            Ok(SyncRequest::Blocks { from, .. }) => Some((*tag, from)),
            _ => None,
        },
        _ => None,
    })
}

/// Blocks `from..=to` of `store` with their certificates.
fn blocks(store: &RocksStore, from: u64, to: u64) -> Vec<(Block, CommitCertificate)> {
    (from..=to)
        .map(|h| {
            (
                store.block(h).unwrap().unwrap(),
                store.certificate(h).unwrap().unwrap(),
            )
        })
        .collect()
}

fn answer(
    core: &mut NodeCore,
    ms: u64,
    tag: u64,
    head: u64,
    blocks: Vec<(Block, CommitCertificate)>,
) -> Vec<Effect> {
    let data = codec::encode(&SyncResponse {
        head,
        base: 1,
        blocks,
    });
    core.handle(now(ms), Event::SyncResponse { tag, data })
        .unwrap()
}

/// A source chain: the setup block, then three blocks of 300 workload
/// transactions (900 in one response, above the threshold for verifying
/// ahead on a second thread).
fn source(dir: &std::path::Path) -> (RocksStore, u64) {
    let built = build_chain(&dir.join("src"), 900, 300, 2).unwrap();
    assert_eq!(built.blocks, 4);
    (RocksStore::open(dir.join("src")).unwrap(), built.blocks)
}

/// A source chain, a wiped validator over a store holding only the
/// genesis, and the sync request it sent when a peer connected.
struct Setup {
    _dir: tempfile::TempDir,
    src: RocksStore,
    head: u64,
    c: SynthChain,
    ahead: Ahead,
    /// Every commit and sync the core asked of its store.
    writes: Arc<Mutex<Vec<Write>>>,
    core: NodeCore,
    tag: u64,
}

fn setup() -> Setup {
    setup_as(Follower::WipedValidator)
}

fn setup_as(follower: Follower) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (src, head) = source(dir.path());
    let c = SynthChain::new(&dir.path().join("dst"), StateMode::Store).unwrap();
    let ahead = Ahead::default();
    let writes = Arc::default();
    let mut core = wiped_validator(&c, &ahead, &writes, follower);
    // A peer connects: the request goes out now, not at the sync tick.
    let out = core.handle(now(1_010), Event::Peers(vec![0])).unwrap();
    let (tag, from) = sync_request(&out).expect("a sync request as soon as a peer connects");
    assert_eq!(from, 1);
    Setup {
        _dir: dir,
        src,
        head,
        c,
        ahead,
        writes,
        core,
        tag,
    }
}

impl Setup {
    /// Answers the request in flight with `blocks`.
    fn answer(&mut self, ms: u64, blocks: Vec<(Block, CommitCertificate)>) {
        answer(&mut self.core, ms, self.tag, self.head, blocks);
    }

    /// The commits and syncs since the last call.
    fn writes(&self) -> Vec<Write> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }

    /// After a refusal at `refused`: the next sync tick asks from there,
    /// an honest answer from `from` on brings the node to the source's
    /// head and state, so the refusal changed nothing.
    fn recovers_from(&mut self, refused: u64, from: u64) {
        let out = self.core.handle(now(12_000), Event::Tick).unwrap();
        let (tag, asked) = sync_request(&out).expect("asks again at the next sync tick");
        assert_eq!(asked, refused);
        self.tag = tag;
        self.answer(12_010, blocks(&self.src, from, self.head));
        assert_eq!(self.core.status().height, self.head);
        assert_eq!(
            self.core.status().state_root,
            self.src.accumulator().unwrap().root()
        );
    }
}

#[test]
fn a_wiped_validator_asks_at_once_and_catches_up_with_signatures_verified_ahead() {
    let mut s = setup();
    s.answer(1_020, blocks(&s.src, 1, s.head));
    let st = s.core.status();
    assert_eq!(st.height, s.head, "every block of the response committed");
    assert_eq!(st.state_root, s.src.accumulator().unwrap().root());
    assert_eq!(s.c.store.head().unwrap().unwrap().height, s.head);
    assert!(
        !st.is_voting,
        "caught up after an empty start: abstains first"
    );
    let txs: u64 = (1..=s.head)
        .map(|h| s.src.block(h).unwrap().unwrap().txs.len() as u64)
        .sum();
    assert_eq!(s.ahead.get(), txs, "every signature verified ahead");
    assert_eq!(
        s.writes(),
        deferred_then_sync(1, s.head),
        "the response's blocks stored without waiting for the disk, then one sync"
    );
}

/// What the core asks of its store for a sync response whose blocks
/// `from..=to` it takes: each stored deferred, then one sync at the end
/// (ADR 007 amendment of 2026-12-06).
fn deferred_then_sync(from: u64, to: u64) -> Vec<Write> {
    (from..=to)
        .map(Write::Deferred)
        .chain([Write::Sync])
        .collect()
}

#[test]
fn a_certified_block_with_a_bad_signature_is_refused_after_the_good_ones_commit() {
    let mut s = setup();
    // Height 3 with one signature spoiled, its transaction root remade and
    // certified by a quorum of the validators' keys: only the node's own
    // signature check can refuse it.
    let mut resp = blocks(&s.src, 1, s.head);
    let (bad, _) = &mut resp[2];
    bad.txs[150].signature.0[10] ^= 0x40;
    bad.header.tx_root = Block::compute_tx_root(&bad.txs);
    let set = &s.c.parent.validator_set;
    resp[2].1 = certificate(
        &s.c.genesis.chain_id,
        set,
        &s.c.validator_keys,
        &resp[2].0,
        set.quorum(),
    )
    .unwrap();

    s.answer(1_020, resp);
    assert_eq!(s.core.status().height, 2, "the blocks before it committed");
    assert_eq!(s.c.store.head().unwrap().unwrap().height, 2);
    assert!(
        s.c.store.block(3).unwrap().is_none(),
        "nothing of the refused block is stored"
    );
    assert_eq!(
        s.writes(),
        deferred_then_sync(1, 2),
        "the blocks before the refused one are synced all the same"
    );
    s.recovers_from(3, 3);
    assert_eq!(s.writes(), deferred_then_sync(3, s.head));
}

/// A peer serves block 3 with its certified header and another body: two
/// of its transactions swapped. The header, hash and certificate are the
/// genuine ones. A wiped validator catching up and an observer, both
/// without a replica (their cores check the body once, ADR 026, before
/// executing; execution would refuse this body too, as its receipts and
/// state differ), refuse it, keep the blocks before it, store nothing of
/// it, and take the genuine block after. A replica's own check of a synced
/// body is `consensus/tests/normal_case.rs`.
#[test]
fn a_certified_header_with_another_body_is_refused_without_a_replica() {
    for follower in [Follower::WipedValidator, Follower::Observer] {
        let mut s = setup_as(follower);
        assert!(!s.core.status().is_voting, "no replica for {follower:?}");
        let mut resp = blocks(&s.src, 1, s.head);
        let genuine = resp[2].0.hash();
        resp[2].0.txs.swap(10, 200);
        assert_eq!(resp[2].0.hash(), genuine, "the same header");
        s.answer(1_020, resp);
        assert_eq!(s.core.status().height, 2, "{follower:?}");
        assert_eq!(s.c.store.head().unwrap().unwrap().height, 2);
        assert!(
            s.c.store.block(3).unwrap().is_none(),
            "nothing of the refused block is stored ({follower:?})"
        );
        s.recovers_from(3, 3);
        assert_eq!(s.c.store.block(3).unwrap().unwrap().hash(), genuine);
    }
}

#[test]
fn nothing_is_verified_ahead_under_a_certificate_the_validators_did_not_sign() {
    let mut s = setup();
    // A hostile peer: height 2 (300 transactions) carries height 3's
    // certificate, and heights 3 and 4 follow it. No quorum certified
    // height 2 as sent, so nothing from it on is verified ahead: the
    // peer cannot buy this node's signature work with a bad certificate.
    let mut resp = blocks(&s.src, 1, s.head);
    resp[1].1 = resp[2].1.clone();
    let setup_txs = resp[0].0.txs.len() as u64;

    s.answer(1_020, resp);
    assert_eq!(s.core.status().height, 1, "refused at the bad certificate");
    assert_eq!(
        s.ahead.get(),
        setup_txs,
        "only the block below the bad certificate was verified ahead"
    );
    assert_eq!(s.writes(), deferred_then_sync(1, 1));
    s.recovers_from(2, 2);
    assert_eq!(s.writes(), deferred_then_sync(2, s.head));
}

#[test]
fn only_the_run_of_blocks_that_extends_the_tip_is_taken_from_a_response() {
    let mut s = setup();
    // Heights 1, 2, 4, 3: a gap after 2. Heights 1 and 2 commit, and
    // nothing after the gap is verified ahead or taken.
    let mut resp = blocks(&s.src, 1, s.head);
    resp.swap(2, 3);
    let first_two = (resp[0].0.txs.len() + resp[1].0.txs.len()) as u64;
    s.answer(1_020, resp);
    assert_eq!(s.core.status().height, 2);
    assert_eq!(s.ahead.get(), first_two);
    assert_eq!(s.writes(), deferred_then_sync(1, 2));
    // Then a response that repeats what this node holds and goes on: the
    // blocks it holds are neither stored nor synced again.
    s.recovers_from(3, 1);
    assert_eq!(s.writes(), deferred_then_sync(3, s.head));
}
