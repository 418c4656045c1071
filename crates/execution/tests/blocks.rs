#![allow(clippy::unwrap_used)]
//! Block validation: each check fails with its own variant naming the
//! height; build_block's output validates; genesis validates and
//! round-trips through JSON.

mod common;

use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::ContractError;
use aidledger_crypto::Keypair;
use aidledger_execution::testkit::{dev_genesis, TxFactory};
use aidledger_execution::{
    build_block, genesis_state, validate_block, BlockContext, BlockInvalid, ExecError, MemState,
    ParentInfo,
};
use aidledger_types::{Amount, Block, Hash, Role, Timestamp};
use common::Chain;

/// A valid block 1 built on the fresh chain, plus what it was built from.
fn built(c: &mut Chain) -> Block {
    let txs = vec![c.f.create_program("fund", 1_000), c.f.deposit("fund", 10)];
    let v: Vec<_> = txs.into_iter().map(|t| c.f.verified(t)).collect();
    let ctx = BlockContext {
        chain_id: c.genesis.chain_id.clone(),
        height: 1,
        timestamp: c.time().saturating_add_ms(500),
        proposer: c.f.keys.validators[1].1.public(),
    };
    let (block, outcome) = build_block(&c.parent, &ctx, 3, &v, &c.state, &c.acc).expect("build");
    assert_eq!(block.header.view, 3);
    assert_eq!(outcome.receipts.len(), 2);
    block
}

fn check(c: &Chain, b: &Block, now: Option<u64>) -> Result<(), BlockInvalid> {
    validate_block(b, &c.parent, now, 1_000, &c.state, &c.acc).map(|_| ())
}

#[test]
fn a_built_block_validates() {
    let mut c = Chain::new();
    let b = built(&mut c);
    check(&c, &b, Some(b.header.timestamp.0)).expect("valid");
}

#[test]
fn each_header_check_has_its_own_failure() {
    let mut c = Chain::new();
    let good = built(&mut c);
    let t = good.header.timestamp;
    type Mutate = Box<dyn Fn(&mut Block)>;
    type Case = (&'static str, Mutate, Option<u64>, fn(&BlockInvalid) -> bool);
    let other_key = Keypair::from_seed([5u8; 32]).public();
    let cases: Vec<Case> = vec![
        (
            "chain",
            Box::new(|b| b.header.chain_id = "elsewhere".parse().expect("c")),
            None,
            |e| matches!(e, BlockInvalid::WrongChain { height: 1, .. }),
        ),
        ("height", Box::new(|b| b.header.height = 2), None, |e| {
            matches!(
                e,
                BlockInvalid::WrongHeight {
                    expected: 1,
                    got: 2
                }
            )
        }),
        (
            "parent",
            Box::new(|b| b.header.parent_hash = Hash([1; 32])),
            None,
            |e| matches!(e, BlockInvalid::WrongParent { height: 1, .. }),
        ),
        (
            "time equal to parent",
            Box::new(|b| b.header.timestamp = Chain::genesis_time()),
            None,
            |e| matches!(e, BlockInvalid::TimestampNotMonotonic { .. }),
        ),
        (
            "time ahead of the clock",
            Box::new(|_| {}),
            Some(t.0 - 1_001),
            |e| matches!(e, BlockInvalid::TimestampTooFarAhead { .. }),
        ),
        (
            "proposer",
            Box::new(move |b| b.header.proposer = other_key),
            None,
            |e| matches!(e, BlockInvalid::UnknownProposer { .. }),
        ),
        (
            "validator set",
            Box::new(|b| b.header.validator_set_hash = Hash([2; 32])),
            None,
            |e| matches!(e, BlockInvalid::ValidatorSetMismatch { .. }),
        ),
        (
            "next validator set",
            Box::new(|b| b.header.next_validator_set_hash = Hash([2; 32])),
            None,
            |e| matches!(e, BlockInvalid::NextValidatorSetMismatch { .. }),
        ),
        (
            "header version",
            Box::new(|b| b.header.version = aidledger_types::HEADER_VERSION_PIPELINED + 1),
            None,
            |e| matches!(e, BlockInvalid::HeaderVersion { .. }),
        ),
        ("tx count", Box::new(|b| b.header.tx_count = 3), None, |e| {
            matches!(
                e,
                BlockInvalid::TxCount {
                    header: 3,
                    body: 2,
                    ..
                }
            )
        }),
        (
            "tx root",
            Box::new(|b| b.header.tx_root = Hash([3; 32])),
            None,
            |e| matches!(e, BlockInvalid::TxRoot { .. }),
        ),
        (
            "signature",
            // The tx root covers signatures: recompute it so the header
            // still matches and the signature check is what fails.
            Box::new(|b| {
                b.txs[1].signature.0[0] ^= 1;
                b.header.tx_root = Block::compute_tx_root(&b.txs);
            }),
            None,
            |e| matches!(e, BlockInvalid::TxSignature { index: 1, .. }),
        ),
        (
            "state root",
            Box::new(|b| b.header.state_root = Hash([4; 32])),
            None,
            |e| matches!(e, BlockInvalid::StateRootMismatch { height: 1, .. }),
        ),
    ];
    for (name, mutate, now, expected) in cases {
        let mut b = good.clone();
        mutate(&mut b);
        let e = check(&c, &b, now).expect_err(name);
        assert!(expected(&e), "{name}: got {e}");
        assert!(
            e.to_string().contains("block 1") || e.to_string().contains("block 2"),
            "{name}: {e}"
        );
    }
    // A duplicate transaction (with consistent header) is its own failure.
    let mut b = good.clone();
    b.txs.push(b.txs[0].clone());
    b.header.tx_count = 3;
    b.header.tx_root = Block::compute_tx_root(&b.txs);
    assert!(matches!(
        check(&c, &b, None),
        Err(BlockInvalid::DuplicateTx { index: 2, .. })
    ));
    // Replay (no clock) accepts what the drift check would refuse.
    check(&c, &good, None).expect("replay ignores drift");
}

#[test]
fn build_block_skips_out_of_sequence_nonces_but_keeps_other_rejections() {
    let mut c = Chain::new();
    let create = c.f.create_program("fund", 1_000);
    let kp = c.f.keys.op("state-bank", Role::Disburser).clone();
    let future = c.f.sign_with_nonce(
        &kp,
        &Payload::Deposit(payload::Deposit {
            program: "fund".parse().expect("s"),
            amount: Amount(1),
        }),
        5,
    );
    let zero = c.f.sign_with_nonce(
        &kp,
        &Payload::Deposit(payload::Deposit {
            program: "fund".parse().expect("s"),
            amount: Amount(0),
        }),
        0,
    );
    let v: Vec<_> = [create, future, zero]
        .into_iter()
        .map(|t| c.f.verified(t))
        .collect();
    let ctx = BlockContext {
        chain_id: c.genesis.chain_id.clone(),
        height: 1,
        timestamp: c.time().saturating_add_ms(1),
        proposer: c.f.keys.validators[0].1.public(),
    };
    let (block, out) = build_block(&c.parent, &ctx, 0, &v, &c.state, &c.acc).expect("build");
    assert_eq!(block.txs.len(), 2, "the future nonce was skipped");
    assert_eq!(out.receipts[1].rejection_code(), Some("invalid"));
    check(&c, &block, None).expect("valid");
}

#[test]
fn genesis_round_trips_through_json_and_validates() {
    let (g, _) = dev_genesis(5, 1);
    let json = serde_json::to_string_pretty(&g).expect("json");
    let back: aidledger_contracts::Genesis = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, g);
    assert_eq!(back.hash(), g.hash());
    g.validate().expect("valid");
    assert!(json.contains("\"state-bank\""), "readable ids");
    assert_eq!(g.validators.len(), 5);
    let (g2, _) = dev_genesis(5, 1);
    assert_eq!(g2.hash(), g.hash(), "deterministic fixtures");
    let (g3, _) = dev_genesis(5, 2);
    assert_ne!(g3.hash(), g.hash());
}

#[test]
fn invalid_genesis_is_refused_with_a_clear_reason() {
    let (g, _) = dev_genesis(4, 1);
    let mut dup_org = g.clone();
    dup_org.orgs.push(dup_org.orgs[0].clone());
    let mut dup_key = g.clone();
    dup_key.accounts.push(dup_key.accounts[0].clone());
    let mut orphan = g.clone();
    orphan.accounts[0].org = "nobody".parse().expect("o");
    let mut modules = g.clone();
    modules.modules[0].version = 99;
    let mut missing = g.clone();
    missing.modules.pop();
    let mut threshold = g.clone();
    threshold.params.governance_threshold = 50;
    let mut val_org = g.clone();
    val_org.orgs.retain(|o| o.id.as_str() != "dev-bank");
    val_org.accounts.retain(|a| a.org.as_str() != "dev-bank");
    for (name, bad, needle) in [
        ("duplicate org", dup_org, "listed twice"),
        ("duplicate key", dup_key, "listed twice"),
        ("unknown account org", orphan, "unknown organisation"),
        ("module version", modules, "does not carry governance@99"),
        ("missing module", missing, "expected exactly"),
        ("threshold", threshold, "governance threshold"),
        ("validator org", val_org, "validator"),
    ] {
        let e = bad.validate().expect_err(name);
        assert!(matches!(e, ContractError::Genesis { .. }), "{name}: {e}");
        assert!(e.to_string().contains(needle), "{name}: {e}");
        assert!(
            matches!(genesis_state(&bad), Err(ExecError::Genesis(_))),
            "{name}"
        );
    }
}

#[test]
fn the_workload_factory_produces_valid_transactions_block_after_block() {
    let (g, keys) = dev_genesis(4, 3);
    let (map, mut acc) = genesis_state(&g).expect("genesis");
    let mut state = MemState::new(map);
    let mut parent = ParentInfo::genesis(&g).expect("parent");
    let mut f = TxFactory::new(&g, keys);
    for i in 0..5u64 {
        let txs: Vec<_> = f
            .workload_block(i)
            .into_iter()
            .map(|t| f.verified(t))
            .collect();
        let ctx = BlockContext {
            chain_id: g.chain_id.clone(),
            height: i + 1,
            timestamp: Timestamp(parent.timestamp.0 + 60_000),
            proposer: f.keys.validators[(i % 4) as usize].1.public(),
        };
        let (block, out) = build_block(&parent, &ctx, 0, &txs, &state, &acc).expect("build");
        assert_eq!(block.txs.len(), txs.len());
        assert!(
            out.receipts.iter().all(|r| r.is_applied()),
            "{:?}",
            out.receipts
        );
        let (_, again) = validate_block(&block, &parent, None, 1_000, &state, &acc).expect("valid");
        assert_eq!(again.state_root, out.state_root);
        state.apply(&out.writes);
        acc = out.accumulator.clone();
        let cert = f
            .keys
            .certify(&g.chain_id, &parent.validator_set, &block, ctx.timestamp);
        parent = parent.child(&block, &out, Some(cert));
    }
    assert_eq!(state.accumulator().root(), acc.root());
}

#[test]
fn queries_read_params_validators_and_admission() {
    let mut c = Chain::new();
    let params = aidledger_execution::read_params(&c.state).expect("params");
    assert_eq!(params, c.genesis.params);
    assert_eq!(
        aidledger_execution::read_validator_set(&c.state).expect("vs"),
        c.genesis.validators
    );
    let ok = c.f.create_program("fund", 1);
    let acct = aidledger_execution::admission(&c.state, &ok.body).expect("admitted");
    assert_eq!(acct.nonce, 0);
    let bad = c.f.sign_as(
        "poverty-office",
        Role::Registrar,
        &Payload::Deposit(payload::Deposit {
            program: "fund".parse().expect("s"),
            amount: Amount(1),
        }),
    );
    match aidledger_execution::admission(&c.state, &bad.body) {
        Err(ExecError::Refused(e)) => assert_eq!(e.code(), "role-not-allowed"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_validator_set_change_takes_effect_at_its_stated_height() {
    use aidledger_contracts::model::GovAction;
    let mut c = Chain::new();
    let old = c.parent.validator_set.clone();
    let newset = aidledger_types::ValidatorSet::new(old.validators()[1..].to_vec()).expect("vs");
    let p = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose {
            action: GovAction::SetValidators {
                validators: newset.clone(),
                at_height: c.parent.height + 4,
            },
        }),
    );
    let a = c.f.sign_as(
        "dev-bank",
        Role::Admin,
        &Payload::GovApprove(payload::GovApprove { proposal: 0 }),
    );
    let out = c.ok(vec![p]);
    assert_eq!(out.validator_set, old);
    let out = c.ok(vec![a]);
    assert_eq!(out.validator_set, old, "scheduled for a later height");
    // The block before the stated height changes the set: the next one is
    // the first the new set signs.
    let out = c.ok(vec![]);
    assert_eq!(out.validator_set, newset);
    assert_eq!(c.parent.validator_set, newset);
    // The headers name the change where it happens: the last block of the
    // old set says the next is the new set's, and only that block.
    let names: Vec<(Hash, Hash)> = c
        .blocks
        .iter()
        .map(|b| {
            (
                b.header.validator_set_hash,
                b.header.next_validator_set_hash,
            )
        })
        .collect();
    let last = names.len() - 1;
    assert_eq!(names[last], (old.hash(), newset.hash()));
    assert!(names[..last]
        .iter()
        .all(|(a, b)| a == b && *a == old.hash()));
    // The next block must name the new set, and the removed validator can
    // no longer propose.
    let ctx = BlockContext {
        chain_id: c.genesis.chain_id.clone(),
        height: c.parent.height + 1,
        timestamp: c.time().saturating_add_ms(1),
        proposer: c.f.keys.validators[0].1.public(),
    };
    let (block, _) = build_block(&c.parent, &ctx, 0, &[], &c.state, &c.acc).expect("build");
    assert_eq!(block.header.validator_set_hash, newset.hash());
    assert!(matches!(
        check(&c, &block, None),
        Err(BlockInvalid::UnknownProposer { .. })
    ));
}

#[test]
fn known_verifications_are_reused_but_never_trusted_for_other_bytes() {
    use aidledger_execution::validate_block_with;
    let mut c = Chain::new();
    let b = built(&mut c);
    let now = Some(b.header.timestamp.0);
    let plain = validate_block(&b, &c.parent, now, 1_000, &c.state, &c.acc).expect("valid");
    // Every transaction known: the same outcome, nothing verified again.
    let known: Vec<_> = b.txs.iter().map(|t| c.f.verified(t.clone())).collect();
    let lookup =
        |tx: &aidledger_types::SignedTx, _: &Hash| known.iter().find(|v| v.tx() == tx).cloned();
    let cached =
        validate_block_with(&b, &c.parent, now, 1_000, &c.state, &c.acc, &lookup).expect("valid");
    assert_eq!(cached.1.state_root, plain.1.state_root);
    assert_eq!(cached.0.len(), b.txs.len());

    // A block whose second signature was altered: a cache that answers with
    // the verification of the original bytes must not make it pass.
    let mut bad = b.clone();
    bad.txs[1].signature.0[0] ^= 1;
    bad.header.tx_root = Block::compute_tx_root(&bad.txs);
    let original = known[1].clone();
    let lying = |_: &aidledger_types::SignedTx, _: &Hash| Some(original.clone());
    let err = validate_block_with(&bad, &c.parent, now, 1_000, &c.state, &c.acc, &lying)
        .expect_err("altered signature");
    assert!(
        matches!(err, BlockInvalid::TxSignature { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn the_body_check_takes_ids_only_from_the_blocks_own_verified_transactions() {
    use aidledger_execution::{check_body, check_body_verified};
    let mut c = Chain::new();
    let b = built(&mut c);
    let verified: Vec<_> = b.txs.iter().map(|t| c.f.verified(t.clone())).collect();
    check_body_verified(&b, &verified).expect("the block's own verified transactions");

    // Verified transactions in another order, or too few: not the block's,
    // so their ids are not used; the block itself is still whole.
    let mut swapped = verified.clone();
    swapped.swap(0, 1);
    check_body_verified(&b, &swapped).expect("ids hashed from the block");
    check_body_verified(&b, &verified[..1]).expect("ids hashed from the block");

    // A body the header does not commit to fails as check_body fails it,
    // whichever verified transactions come with it.
    let mut bad = b.clone();
    bad.txs.swap(0, 1);
    let expected = check_body(&bad).expect_err("reordered");
    for v in [&verified[..], &swapped[..]] {
        let got = check_body_verified(&bad, v).expect_err("reordered");
        assert_eq!(got.to_string(), expected.to_string());
    }
}

/// Committed state that counts the reads of each key.
struct Counting<'a> {
    inner: &'a MemState,
    gets: std::cell::RefCell<std::collections::BTreeMap<Vec<u8>, u32>>,
}

impl aidledger_execution::StateRead for Counting<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        *self.gets.borrow_mut().entry(key.to_vec()).or_default() += 1;
        self.inner.get(key)
    }
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError> {
        self.inner.scan(prefix, start_after, limit)
    }
}

#[test]
fn a_block_reads_each_committed_key_from_the_store_once() {
    use aidledger_execution::StateRead;
    let (g, keys) = dev_genesis(4, 3);
    let (map, acc) = genesis_state(&g).expect("genesis");
    let state = MemState::new(map);
    let parent = ParentInfo::genesis(&g).expect("parent");
    let mut f = TxFactory::new(&g, keys);
    // Two workload blocks' worth from the same few signers: the chain id,
    // accounts, organisations and programs are read by many of them.
    let mut txs = f.workload_block(0);
    txs.extend(f.workload_block(1));
    let txs: Vec<_> = txs.into_iter().map(|t| f.verified(t)).collect();
    assert!(txs.len() >= 10, "{} transactions", txs.len());
    let ctx = BlockContext {
        chain_id: g.chain_id.clone(),
        height: 1,
        timestamp: Timestamp(parent.timestamp.0 + 60_000),
        proposer: f.keys.validators[0].1.public(),
    };
    let counting = Counting {
        inner: &state,
        gets: Default::default(),
    };
    let (block, out) = build_block(&parent, &ctx, 0, &txs, &counting, &acc).expect("build");
    assert_eq!(block.txs.len(), txs.len());
    let reads = counting.gets.borrow().clone();
    assert!(!reads.is_empty());
    for (key, n) in &reads {
        assert_eq!(
            *n,
            1,
            "key {:?} read {n} times",
            String::from_utf8_lossy(key)
        );
    }
    // The same block on the plain state, and validated on the counting
    // one: the same outcome, and each key again read once.
    let (_, plain) = validate_block(&block, &parent, None, 1_000, &state, &acc).expect("valid");
    assert_eq!(plain.state_root, out.state_root);
    assert_eq!(plain.receipts, out.receipts);
    counting.gets.borrow_mut().clear();
    let (_, again) = validate_block(&block, &parent, None, 1_000, &counting, &acc).expect("valid");
    assert_eq!(again.state_root, out.state_root);
    assert!(counting.gets.borrow().values().all(|n| *n == 1));
    assert!(state.get(b"no such key").expect("get").is_none());
}
