#![allow(clippy::unwrap_used)]
//! Catching up by sync over real RocksDB stores: a validator whose store
//! was wiped asks a peer for blocks as soon as one connects, and a large
//! response has its signatures verified on a second thread ahead of the
//! blocks' checks. A certified block with a bad signature is still
//! refused, with the blocks before it committed and nothing of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aidledger_audit::synth::StateMode;
use aidledger_audit::synth::{build_chain, certificate, SynthChain};
use aidledger_mempool::MempoolConfig;
use aidledger_node_core::{
    ConsensusSettings, CoreParts, Count, Effect, Event, Mutants, NodeCore, Now, StoreState,
    SyncRequest, SyncResponse, Telemetry,
};
use aidledger_storage::{RocksStore, Store};
use aidledger_types::{codec, Block, CommitCertificate};

fn now(ms: u64) -> Now {
    Now {
        wall_ms: 1_700_000_000_000 + ms,
        mono_ms: ms,
    }
}

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
    let store: Arc<dyn Store> = c.store.clone();
    let key = c.validator_keys.values().next().unwrap().clone();
    let members = aidledger_execution::read_nodes(&StoreState(store.as_ref()))
        .unwrap()
        .into_iter()
        .map(|n| n.key)
        .filter(|k| *k != key.public())
        .collect();
    let parts = CoreParts {
        chain_id: c.genesis.chain_id.clone(),
        consensus: ConsensusSettings {
            max_block_txs: 1_000,
            max_block_bytes: 4 << 20,
            block_interval_ms: 200,
            empty_block_interval_ms: 1_000,
            round_timeout_ms: 2_000,
            max_clock_drift_ms: 5_000,
            sync_batch: 200,
        },
        mempool: MempoolConfig::default(),
        gossip_max_bytes: 1 << 20,
        sync_response_max_bytes: 48 << 20,
        key,
        next_key: None,
        store,
        members,
        parent: c.parent.clone(),
        acc: c.acc.clone(),
        accept_missing_safety_state: false,
        ran_before: true,
        restored: false,
        telemetry: Box::new(ahead.clone()),
        mutants: Mutants::default(),
        module_ceiling: Vec::new(),
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

#[test]
fn a_wiped_validator_asks_at_once_and_catches_up_with_signatures_verified_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let (src, head) = source(dir.path());
    let c = SynthChain::new(&dir.path().join("dst"), StateMode::Store).unwrap();
    let ahead = Ahead::default();
    let mut core = wiped_validator(&c, &ahead);

    // A peer connects: the request goes out now, not at the sync tick.
    let out = core.handle(now(1_010), Event::Peers(vec![0])).unwrap();
    let (tag, from) = sync_request(&out).expect("a sync request as soon as a peer connects");
    assert_eq!(from, 1);

    answer(&mut core, 1_020, tag, head, blocks(&src, 1, head));
    let s = core.status();
    assert_eq!(s.height, head, "every block of the response committed");
    assert_eq!(s.state_root, src.accumulator().unwrap().root());
    assert_eq!(c.store.head().unwrap().unwrap().height, head);
    assert!(
        !s.is_voting,
        "caught up after an empty start: abstains first"
    );
}

#[test]
fn a_certified_block_with_a_bad_signature_is_refused_after_the_good_ones_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (src, head) = source(dir.path());
    let c = SynthChain::new(&dir.path().join("dst"), StateMode::Store).unwrap();
    let ahead = Ahead::default();
    let mut core = wiped_validator(&c, &ahead);
    let out = core.handle(now(1_010), Event::Peers(vec![0])).unwrap();
    let (tag, _) = sync_request(&out).unwrap();

    // Height 3 with one signature spoiled, its transaction root remade and
    // certified by a quorum of the validators' keys: only the node's own
    // signature check can refuse it.
    let mut resp = blocks(&src, 1, head);
    let (bad, _) = &mut resp[2];
    bad.txs[150].signature.0[10] ^= 0x40;
    bad.header.tx_root = Block::compute_tx_root(&bad.txs);
    let set = &c.parent.validator_set;
    resp[2].1 = certificate(
        &c.genesis.chain_id,
        set,
        &c.validator_keys,
        &resp[2].0,
        set.quorum(),
    )
    .unwrap();
    let spoiled_root = src.accumulator().unwrap().root();

    answer(&mut core, 1_020, tag, head, resp);
    assert_eq!(core.status().height, 2, "the blocks before it committed");
    assert_eq!(c.store.head().unwrap().unwrap().height, 2);
    assert!(
        c.store.block(3).unwrap().is_none(),
        "nothing of the refused block is stored"
    );

    // The honest blocks from another peer: the refusal changed nothing.
    let out = core.handle(now(12_000), Event::Tick).unwrap();
    let (tag, from) = sync_request(&out).expect("asks again at the next sync tick");
    assert_eq!(from, 3);
    answer(&mut core, 12_010, tag, head, blocks(&src, 3, head));
    assert_eq!(core.status().height, head);
    assert_eq!(core.status().state_root, spoiled_root);
}

#[test]
fn nothing_is_verified_ahead_under_a_certificate_the_validators_did_not_sign() {
    let dir = tempfile::tempdir().unwrap();
    let (src, head) = source(dir.path());
    let c = SynthChain::new(&dir.path().join("dst"), StateMode::Store).unwrap();
    let ahead = Ahead::default();
    let mut core = wiped_validator(&c, &ahead);
    let out = core.handle(now(1_010), Event::Peers(vec![0])).unwrap();
    let (tag, _) = sync_request(&out).unwrap();

    // A hostile peer: height 2 (300 transactions) carries height 3's
    // certificate, and heights 3 and 4 follow it. No quorum certified
    // height 2 as sent, so nothing from it on is verified ahead: the
    // peer cannot buy this node's signature work with a bad certificate.
    let mut resp = blocks(&src, 1, head);
    resp[1].1 = resp[2].1.clone();
    let setup_txs = resp[0].0.txs.len() as u64;

    answer(&mut core, 1_020, tag, head, resp);
    assert_eq!(core.status().height, 1, "refused at the bad certificate");
    assert_eq!(
        ahead.get(),
        setup_txs,
        "only the block below the bad certificate was verified ahead"
    );
}

#[test]
fn only_the_run_of_blocks_that_extends_the_tip_is_taken_from_a_response() {
    let dir = tempfile::tempdir().unwrap();
    let (src, head) = source(dir.path());
    let c = SynthChain::new(&dir.path().join("dst"), StateMode::Store).unwrap();
    let ahead = Ahead::default();
    let mut core = wiped_validator(&c, &ahead);
    let out = core.handle(now(1_010), Event::Peers(vec![0])).unwrap();
    let (tag, _) = sync_request(&out).unwrap();

    // Heights 1, 2, 4, 3: a gap after 2. Heights 1 and 2 commit, and
    // nothing after the gap is verified ahead or taken.
    let mut resp = blocks(&src, 1, head);
    resp.swap(2, 3);
    let first_two = (resp[0].0.txs.len() + resp[1].0.txs.len()) as u64;
    answer(&mut core, 1_020, tag, head, resp);
    assert_eq!(core.status().height, 2);
    assert_eq!(ahead.get(), first_two);

    // Then a response that repeats what this node holds and goes on.
    let out = core.handle(now(12_000), Event::Tick).unwrap();
    let (tag, from) = sync_request(&out).unwrap();
    assert_eq!(from, 3);
    answer(&mut core, 12_010, tag, head, blocks(&src, 1, head));
    assert_eq!(core.status().height, head);
    assert_eq!(core.status().state_root, src.accumulator().unwrap().root());
}
