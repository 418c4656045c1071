//! Helpers shared by the storage tests: a model chain that builds valid
//! commit batches, and the conformance suite both stores must pass.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use aidledger_storage::{
    CommitBatch, Head, StorageError, Store, TxLocation, BLOCKS_RANGE_MAX, META_KEY_MAX_BYTES,
    RECEIPT_MAX_BYTES, SAFETY_STATE_MAX_BYTES, SCAN_LIMIT_MAX, STATE_KEY_MAX_BYTES,
};
use aidledger_types::hash::sha256;
use aidledger_types::{
    Block, BlockHeader, ChainId, CommitCertificate, CommitSignature, Hash, IdentifiedBlock,
    PublicKey, Signature, SignedTx, StateAccumulator, Timestamp, TxBody, TxKind,
};

/// Asserts that `r` failed with corruption reported in column family
/// `want_cf`.
pub fn assert_corrupt(r: Result<impl std::fmt::Debug, StorageError>, want_cf: &str) {
    match r {
        Err(StorageError::Corrupt { cf, .. }) => assert_eq!(cf, want_cf),
        other => panic!("expected corruption in {want_cf}, got {other:?}"),
    }
}

pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

pub fn chain_id() -> ChainId {
    ChainId::new("storage-test").unwrap()
}

/// A transaction whose id is a function of `nonce` alone.
/// Changes the header of a batch's block; the body still matches it.
pub fn rewrite(b: &mut CommitBatch, change: impl FnOnce(&mut Block)) {
    let mut block = b.block.block().clone();
    change(&mut block);
    b.block = IdentifiedBlock::new(block).expect("the body still matches the header");
}

pub fn tx(nonce: u64) -> SignedTx {
    SignedTx {
        body: TxBody {
            chain_id: chain_id(),
            nonce,
            signer: PublicKey([7; 32]),
            kind: TxKind::Deposit,
            payload: nonce.to_le_bytes().to_vec(),
        },
        signature: Signature([0; 64]),
    }
}

pub fn genesis_hash() -> Hash {
    sha256(b"test genesis")
}

pub fn genesis_doc() -> Vec<u8> {
    b"{\"chain\":\"storage-test\"}".to_vec()
}

pub fn initial_state() -> State {
    let mut s = State::new();
    s.insert(b"init/a".to_vec(), b"1".to_vec());
    s.insert(b"init/b".to_vec(), b"2".to_vec());
    s
}

pub fn from_scratch(state: &State) -> StateAccumulator {
    let mut a = StateAccumulator::new();
    for (k, v) in state {
        a.insert(k, v);
    }
    a
}

/// Writes from string pairs; `None` deletes.
pub fn w(pairs: &[(&str, Option<&str>)]) -> Writes {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
        .collect()
}

pub fn receipt(height: u64, index: usize) -> Vec<u8> {
    format!("receipt {height}/{index}").into_bytes()
}

/// A model of the chain a store should hold: it builds valid batches and
/// tracks the expected state.
#[derive(Clone)]
pub struct Chain {
    pub height: u64,
    pub parent: Hash,
    pub state: State,
    pub acc: StateAccumulator,
    pub next_nonce: u64,
    pub batches: Vec<CommitBatch>,
}

impl Chain {
    pub fn new(genesis: Hash, initial: &State) -> Chain {
        Chain {
            height: 0,
            parent: genesis,
            state: initial.clone(),
            acc: from_scratch(initial),
            next_nonce: 0,
            batches: Vec::new(),
        }
    }

    /// `n` transactions never used before in this chain.
    pub fn fresh_txs(&mut self, n: usize) -> Vec<SignedTx> {
        (0..n)
            .map(|_| {
                self.next_nonce += 1;
                tx(self.next_nonce)
            })
            .collect()
    }

    /// A valid batch for the next height; does not advance the model.
    pub fn build(&self, writes: Writes, txs: Vec<SignedTx>) -> CommitBatch {
        let mut acc = self.acc.clone();
        for (k, v) in &writes {
            acc.apply(k, self.state.get(k).map(Vec::as_slice), v.as_deref());
        }
        let height = self.height + 1;
        let header = BlockHeader {
            version: aidledger_types::HEADER_VERSION,
            chain_id: chain_id(),
            height,
            view: height % 3,
            parent_hash: self.parent,
            timestamp: Timestamp(height * 1000),
            proposer: PublicKey([1; 32]),
            tx_root: Block::compute_tx_root(&txs),
            tx_count: txs.len() as u32,
            state_root: acc.root(),
            event_root: Hash::ZERO,
            event_count: 0,
            validator_set_hash: Hash::ZERO,
            next_validator_set_hash: Hash::ZERO,
            parent_certificate: None,
        };
        let block = Block { header, txs };
        let certificate = CommitCertificate {
            height,
            view: height % 3,
            block_hash: block.hash(),
            signatures: vec![CommitSignature {
                validator: 0,
                time: Timestamp(0),
                signature: Signature([9; 64]),
            }],
        };
        let receipts = (0..block.txs.len()).map(|i| receipt(height, i)).collect();
        CommitBatch {
            block: IdentifiedBlock::new(block).expect("the fixture's body matches its header"),
            certificate,
            state_writes: writes,
            receipts,
            block_events: Vec::new(),
            accumulator: acc,
            next_validator_set: None,
        }
    }

    /// Advances the model past a committed batch.
    pub fn apply(&mut self, b: &CommitBatch) {
        for (k, v) in &b.state_writes {
            match v {
                Some(v) => self.state.insert(k.clone(), v.clone()),
                None => self.state.remove(k),
            };
        }
        self.acc = b.accumulator.clone();
        self.height = b.block.header.height;
        self.parent = b.block.hash();
        self.batches.push(b.clone());
    }

    /// Builds, commits (which must succeed) and applies a block.
    pub fn commit(&mut self, store: &dyn Store, writes: Writes, n_txs: usize) -> CommitBatch {
        let txs = self.fresh_txs(n_txs);
        let b = self.build(writes, txs);
        store.commit_block(b.clone()).unwrap();
        self.apply(&b);
        b
    }

    pub fn head(&self) -> Option<Head> {
        self.batches.last().map(|b| Head {
            height: b.block.header.height,
            block_hash: b.block.hash(),
            state_root: b.block.header.state_root,
        })
    }
}

/// Stores the test genesis with `state` as its initial state.
pub fn genesis_with(store: &dyn Store, state: &State) {
    store
        .put_genesis(
            genesis_hash(),
            genesis_doc(),
            state.clone(),
            from_scratch(state),
        )
        .unwrap();
}

/// Stores the test genesis with the usual initial state.
pub fn store_genesis(store: &dyn Store) {
    genesis_with(store, &initial_state());
}

/// The whole state, read page by page.
pub fn full_state(store: &dyn Store) -> State {
    let mut out = State::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .state_scan(b"", after.as_deref(), SCAN_LIMIT_MAX)
            .unwrap();
        let done = page.len() < SCAN_LIMIT_MAX;
        after = page.last().map(|(k, _)| k.clone());
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// Everything a refused call must leave unchanged.
#[derive(Debug, PartialEq)]
pub struct Fingerprint {
    head: Option<Head>,
    acc: Hash,
    state: State,
    genesis: Option<(Hash, Vec<u8>)>,
    next_block: Option<Block>,
    next_cert: Option<CommitCertificate>,
}

pub fn fingerprint(store: &dyn Store) -> Fingerprint {
    let head = store.head().unwrap();
    let next = head.map_or(1, |h| h.height + 1);
    Fingerprint {
        head,
        acc: store.accumulator().unwrap().root(),
        state: full_state(store),
        genesis: store.genesis().unwrap(),
        next_block: store.block(next).unwrap(),
        next_cert: store.certificate(next).unwrap(),
    }
}

/// Checks that the store holds exactly what the model says.
pub fn assert_matches_model(store: &dyn Store, chain: &Chain) {
    assert_eq!(store.head().unwrap(), chain.head());
    assert_eq!(full_state(store), chain.state);
    let acc = store.accumulator().unwrap();
    assert_eq!(acc, chain.acc);
    assert_eq!(acc, from_scratch(&chain.state));
    for b in &chain.batches {
        let h = b.block.header.height;
        assert_eq!(store.block(h).unwrap().as_ref(), Some(b.block.block()));
        assert_eq!(store.certificate(h).unwrap().as_ref(), Some(&b.certificate));
        assert_eq!(store.block_hash(h).unwrap(), Some(b.block.hash()));
        for (i, t) in b.block.block().txs.iter().enumerate() {
            let loc = TxLocation {
                height: h,
                index: i as u32,
            };
            assert_eq!(
                store.tx_location(&t.id()).unwrap(),
                Some((loc, receipt(h, i)))
            );
        }
    }
    assert_eq!(store.block(chain.height + 1).unwrap(), None);
    assert_eq!(store.certificate(chain.height + 1).unwrap(), None);
}

/// Every refusal `commit_block` owes, at the chain's next height. Each one
/// must leave the store exactly as it was.
fn assert_refusals(store: &dyn Store, chain: &mut Chain) {
    let before = fingerprint(store);
    let txs = chain.fresh_txs(2);
    let good = chain.build(w(&[("refused/x", Some("1"))]), txs.clone());
    let next = chain.height + 1;
    // The pre-vote check takes the good batch, changing nothing.
    store
        .check_commit_block(
            &good.block,
            &good.state_writes,
            &good.receipts,
            &good.block_events,
            &good.accumulator,
            None,
        )
        .expect("the pre-vote check takes a good block");
    assert_eq!(fingerprint(store), before, "the pre-vote check wrote");
    let refuse = |b: CommitBatch, want: &dyn Fn(&StorageError) -> bool| {
        // What a validator checks before it votes refuses the same blocks
        // with the same error, so a certified block always commits; only
        // the certificate, which does not exist at vote time, is left out.
        let pre = store.check_commit_block(
            &b.block,
            &b.state_writes,
            &b.receipts,
            &b.block_events,
            &b.accumulator,
            None,
        );
        let err = store.commit_block(b).unwrap_err();
        assert!(want(&err), "unexpected error: {err:?}");
        match &err {
            StorageError::CertificateMismatch { .. } => {
                assert_eq!(pre, Ok(()), "the pre-vote check has no certificate")
            }
            _ => assert_eq!(
                pre.map_err(|e| e.to_string()),
                Err(err.to_string()),
                "pre-vote check and commit differ"
            ),
        }
        assert_eq!(
            fingerprint(store),
            before,
            "a refused commit changed the store"
        );
    };

    for wrong in [next + 1, next.saturating_sub(1), 0, u64::MAX] {
        let mut b = good.clone();
        rewrite(&mut b, |blk| blk.header.height = wrong);
        refuse(b, &|e| {
            *e == StorageError::HeightMismatch {
                expected: next,
                got: wrong,
            }
        });
    }

    let mut b = good.clone();
    rewrite(&mut b, |blk| {
        blk.header.parent_hash = sha256(b"not the parent")
    });
    b.certificate.block_hash = b.block.hash();
    refuse(
        b,
        &|e| matches!(e, StorageError::ParentMismatch { height, .. } if *height == next),
    );

    let mut b = good.clone();
    b.certificate.block_hash = sha256(b"another block");
    refuse(b, &|e| {
        matches!(e, StorageError::CertificateMismatch { .. })
    });
    let mut b = good.clone();
    b.certificate.height += 1;
    refuse(b, &|e| {
        matches!(e, StorageError::CertificateMismatch { .. })
    });

    let mut b = good.clone();
    b.receipts.pop();
    refuse(b, &|e| {
        matches!(
            e,
            StorageError::ReceiptCountMismatch {
                txs: 2,
                receipts: 1,
                ..
            }
        )
    });

    let mut b = good.clone();
    b.accumulator = StateAccumulator::new();
    refuse(b, &|e| matches!(e, StorageError::StateRootMismatch { .. }));

    // A body that does not match its header cannot be put in a batch at
    // all (ADR 026): the store's body check is the type's.
    let mut body = good.block.block().clone();
    body.txs.push(tx(u64::MAX));
    assert!(IdentifiedBlock::new(body).is_err());

    let b = chain.build(w(&[]), vec![txs[0].clone(), txs[0].clone()]);
    refuse(b, &|e| matches!(e, StorageError::DuplicateTx { .. }));
    if let Some(old) = chain
        .batches
        .first()
        .and_then(|b| b.block.block().txs.first())
    {
        let b = chain.build(w(&[]), vec![old.clone()]);
        refuse(b, &|e| {
            matches!(
                e,
                StorageError::DuplicateTx {
                    existing_height: 1,
                    ..
                }
            )
        });
    }

    let long_key = "k".repeat(STATE_KEY_MAX_BYTES + 1);
    let b = chain.build(w(&[(long_key.as_str(), Some("v"))]), vec![]);
    refuse(b, &|e| matches!(e, StorageError::TooLarge { .. }));
    let mut b = good.clone();
    b.receipts[0] = vec![0; RECEIPT_MAX_BYTES + 1];
    refuse(b, &|e| matches!(e, StorageError::TooLarge { .. }));
}

/// The conformance suite. `store` must be empty.
pub fn run_conformance(store: &dyn Store) {
    // An empty store.
    assert_eq!(store.head().unwrap(), None);
    assert_eq!(store.genesis().unwrap(), None);
    assert_eq!(store.accumulator().unwrap(), StateAccumulator::new());
    assert_eq!(store.block(1).unwrap(), None);
    assert_eq!(store.block_hash(0).unwrap(), None);
    assert_eq!(store.safety_state().unwrap(), None);
    assert!(store.blocks_range(0, 10).unwrap().is_empty());

    // Genesis.
    let g = genesis_hash();
    let init = initial_state();
    let mut chain = Chain::new(g, &init);
    let early = chain.build(w(&[]), vec![]);
    assert_eq!(store.commit_block(early), Err(StorageError::NoGenesis));
    assert!(matches!(
        store.put_genesis(g, genesis_doc(), init.clone(), StateAccumulator::new()),
        Err(StorageError::GenesisAccumulatorMismatch { .. })
    ));
    assert_eq!(store.genesis().unwrap(), None);
    store
        .put_genesis(g, genesis_doc(), init.clone(), from_scratch(&init))
        .unwrap();
    store
        .put_genesis(g, genesis_doc(), init.clone(), from_scratch(&init))
        .unwrap();
    let other = sha256(b"other genesis");
    assert_eq!(
        store.put_genesis(other, vec![], State::new(), StateAccumulator::new()),
        Err(StorageError::GenesisMismatch {
            stored: g,
            given: other
        })
    );
    assert_eq!(store.genesis().unwrap(), Some((g, genesis_doc())));
    assert_eq!(store.block_hash(0).unwrap(), Some(g));
    assert_matches_model(store, &chain);

    // Refusals at height 1, where the parent must be the genesis hash.
    assert_refusals(store, &mut chain);

    // A chain with writes, deletes and transactions.
    chain.commit(store, w(&[("a", Some("1")), ("b", Some("2"))]), 1);
    chain.commit(store, w(&[("a", Some("10")), ("init/a", None)]), 3);
    chain.commit(store, w(&[]), 0);
    chain.commit(store, w(&[("b", None), ("never-set", None)]), 2);
    assert_matches_model(store, &chain);
    assert_eq!(store.state_get(b"a").unwrap(), Some(b"10".to_vec()));
    assert_eq!(store.state_get(b"b").unwrap(), None);
    assert_eq!(store.state_get(b"init/a").unwrap(), None);
    assert_eq!(store.state_get(b"init/b").unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.tx_location(&tx(u64::MAX - 1).id()).unwrap(), None);

    // Refusals on top of a chain, including a transaction already indexed.
    assert_refusals(store, &mut chain);
    assert_eq!(
        store.put_genesis(other, vec![], State::new(), StateAccumulator::new()),
        Err(StorageError::GenesisMismatch {
            stored: g,
            given: other
        })
    );
    store
        .put_genesis(g, genesis_doc(), init.clone(), from_scratch(&init))
        .unwrap();
    assert_matches_model(store, &chain);

    // Prefix scans.
    chain.commit(
        store,
        w(&[
            ("sca", Some("0")),
            ("scan", Some("1")),
            ("scan/a", Some("2")),
            ("scan/ab", Some("3")),
            ("scan/b", Some("4")),
            ("scan/c", Some("5")),
            ("scao", Some("6")),
        ]),
        1,
    );
    let keys = |prefix: &str, after: Option<&str>, limit: usize| -> Vec<String> {
        store
            .state_scan(prefix.as_bytes(), after.map(str::as_bytes), limit)
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    };
    assert_eq!(
        keys("scan/", None, 100),
        ["scan/a", "scan/ab", "scan/b", "scan/c"]
    );
    assert_eq!(
        keys("scan", None, 100),
        ["scan", "scan/a", "scan/ab", "scan/b", "scan/c"]
    );
    assert_eq!(keys("scan/", None, 2), ["scan/a", "scan/ab"]);
    assert_eq!(keys("scan/", Some("scan/a"), 1), ["scan/ab"]);
    assert_eq!(keys("scan/", Some("scan/ab"), 100), ["scan/b", "scan/c"]);
    assert_eq!(
        keys("scan/", Some("scan/aa"), 100),
        ["scan/ab", "scan/b", "scan/c"]
    );
    assert_eq!(
        keys("scan/", Some("a"), 100),
        ["scan/a", "scan/ab", "scan/b", "scan/c"]
    );
    assert!(keys("scan/", Some("scan/c"), 100).is_empty());
    assert!(keys("scan/", Some("z"), 100).is_empty());
    assert!(keys("scan/", None, 0).is_empty());
    assert!(keys("nothing/", None, 100).is_empty());
    assert_eq!(
        store.state_scan(b"scan/", None, 1).unwrap(),
        vec![(b"scan/a".to_vec(), b"2".to_vec())]
    );
    chain.commit(store, w(&[("scan/ab", None)]), 0);
    assert_eq!(keys("scan/", None, 100), ["scan/a", "scan/b", "scan/c"]);

    // The scan limit is clamped.
    let bulk: Writes = (0..SCAN_LIMIT_MAX + 50)
        .map(|i| (format!("bulk/{i:06}").into_bytes(), Some(vec![1])))
        .collect();
    chain.commit(store, bulk, 0);
    assert_eq!(
        store.state_scan(b"bulk/", None, usize::MAX).unwrap().len(),
        SCAN_LIMIT_MAX
    );
    let tail = store
        .state_scan(
            b"bulk/",
            Some(format!("bulk/{:06}", SCAN_LIMIT_MAX - 1).as_bytes()),
            usize::MAX,
        )
        .unwrap();
    assert_eq!(tail.len(), 50);
    assert_matches_model(store, &chain);

    // Block ranges for sync.
    let head = chain.height;
    let all: Vec<Block> = chain
        .batches
        .iter()
        .map(|b| b.block.block().clone())
        .collect();
    assert_eq!(store.blocks_range(1, head).unwrap(), all);
    assert_eq!(store.blocks_range(0, 2).unwrap(), all[..2].to_vec());
    assert_eq!(store.blocks_range(2, 3).unwrap(), all[1..3].to_vec());
    assert_eq!(
        store.blocks_range(head, u64::MAX).unwrap(),
        all[all.len() - 1..].to_vec()
    );
    assert!(store.blocks_range(head + 1, head + 5).unwrap().is_empty());
    assert!(store.blocks_range(3, 2).unwrap().is_empty());
    assert!(head < BLOCKS_RANGE_MAX as u64);

    // Safety state.
    store.put_safety_state(b"view 1").unwrap();
    assert_eq!(store.safety_state().unwrap(), Some(b"view 1".to_vec()));
    store.put_safety_state(b"view 2").unwrap();
    assert_eq!(store.safety_state().unwrap(), Some(b"view 2".to_vec()));
    assert!(matches!(
        store.put_safety_state(&vec![0; SAFETY_STATE_MAX_BYTES + 1]),
        Err(StorageError::TooLarge { .. })
    ));
    assert_eq!(store.safety_state().unwrap(), Some(b"view 2".to_vec()));

    // Metadata, in a key space of its own.
    assert_eq!(store.meta_get("peer-book").unwrap(), None);
    store.meta_put("peer-book", b"peers").unwrap();
    assert_eq!(
        store.meta_get("peer-book").unwrap(),
        Some(b"peers".to_vec())
    );
    store.meta_put("sys/head", b"not a head").unwrap();
    store.meta_put("head", b"not a head").unwrap();
    assert_eq!(
        store.meta_get("sys/head").unwrap(),
        Some(b"not a head".to_vec())
    );
    assert!(matches!(
        store.meta_put(&"k".repeat(META_KEY_MAX_BYTES + 1), b""),
        Err(StorageError::TooLarge { .. })
    ));
    assert_matches_model(store, &chain);
}
