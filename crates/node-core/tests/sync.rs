#![allow(clippy::unwrap_used)]
//! Catching up by sync over real RocksDB stores: a validator whose store
//! was wiped asks a peer for blocks as soon as one connects, and a large
//! response has its signatures verified on a second thread ahead of the
//! blocks' checks. A certified block with a bad signature is still
//! refused, with the blocks before it committed and nothing of it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aidledger_audit::synth::{build_chain, certificate, StateMode, SynthChain};
use aidledger_mempool::MempoolConfig;
use aidledger_node_core::{
    ConsensusSettings, CoreParts, Count, Effect, Event, NodeCore, SyncRequest, SyncResponse,
    Telemetry,
};
use aidledger_storage::{RocksStore, Store};
use aidledger_types::{codec, Block, CommitCertificate};
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

/// A core for a validator of the development consortium that ran on this
/// chain before, over `c`'s store holding only the genesis: it catches up
/// by sync without voting.
fn wiped_validator(c: &SynthChain, ahead: &Ahead) -> NodeCore {
    let base = common::parts(c);
    let parts = CoreParts {
        consensus: ConsensusSettings {
            sync_batch: 200,
            ..base.consensus
        },
        mempool: MempoolConfig::default(),
        sync_response_max_bytes: 48 << 20,
        accept_missing_safety_state: false,
        ran_before: true,
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
    core: NodeCore,
    tag: u64,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (src, head) = source(dir.path());
    let c = SynthChain::new(&dir.path().join("dst"), StateMode::Store).unwrap();
    let ahead = Ahead::default();
    let mut core = wiped_validator(&c, &ahead);
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
        core,
        tag,
    }
}

impl Setup {
    /// Answers the request in flight with `blocks`.
    fn answer(&mut self, ms: u64, blocks: Vec<(Block, CommitCertificate)>) {
        answer(&mut self.core, ms, self.tag, self.head, blocks);
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
    s.recovers_from(3, 3);
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
    s.recovers_from(2, 2);
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
    // Then a response that repeats what this node holds and goes on.
    s.recovers_from(3, 1);
}
