#![allow(clippy::unwrap_used)]
//! A small chain driver for the execution tests: executes blocks with
//! `apply_block`, checks each with `validate_block`, commits the writes.
#![allow(dead_code)]

use aidledger_contracts::model::GovAction;
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{keys, Account, Application, EventBody, Plan, Program, Release};
use aidledger_execution::testkit::{dev_genesis, TxFactory, DEV_GENESIS_TIME};
use aidledger_execution::{
    apply_block, build_block, execute_verified_into, genesis_state, validate_block,
    validate_identified_with, BlockContext, BlockInvalid, BlockOutcome, Genesis, MemState,
    ParentInfo, StateRead,
};
use aidledger_types::{
    codec, Block, BlockHeader, Hash, PublicKey, Role, SignedTx, StateAccumulator, Timestamp,
};
use serde::{de::DeserializeOwned, Serialize};

pub const DAY: u64 = aidledger_types::time::MS_PER_DAY;

pub struct Chain {
    pub genesis: Genesis,
    pub state: MemState,
    pub acc: StateAccumulator,
    pub parent: ParentInfo,
    pub f: TxFactory,
    pub blocks: Vec<Block>,
}

impl Chain {
    pub fn new() -> Chain {
        Chain::with(|_| {})
    }

    /// A chain whose development genesis is adjusted by `edit` first.
    pub fn with(edit: impl FnOnce(&mut Genesis)) -> Chain {
        let (mut genesis, keys) = dev_genesis(4, 7);
        edit(&mut genesis);
        let (map, acc) = genesis_state(&genesis).expect("genesis");
        let parent = ParentInfo::genesis(&genesis).expect("parent");
        let f = TxFactory::new(&genesis, keys);
        Chain {
            genesis,
            state: MemState::new(map),
            acc,
            parent,
            f,
            blocks: Vec::new(),
        }
    }

    pub fn time(&self) -> Timestamp {
        self.parent.timestamp
    }

    pub fn root(&self) -> Hash {
        self.acc.root()
    }

    /// Executes a block at `time` with exactly `txs`, validates it as a
    /// validator would, and commits it.
    pub fn block_at(&mut self, time: Timestamp, txs: Vec<SignedTx>) -> BlockOutcome {
        let verified: Vec<_> = txs.iter().cloned().map(|t| self.f.verified(t)).collect();
        let proposer = self.f.keys.validators[0].1.public();
        let ctx = BlockContext {
            chain_id: self.genesis.chain_id.clone(),
            height: self.parent.height + 1,
            timestamp: time,
            proposer,
        };
        let outcome = apply_block(&self.state, &self.acc, &ctx, &verified).expect("apply_block");
        let header = BlockHeader {
            version: aidledger_types::HEADER_VERSION,
            chain_id: ctx.chain_id.clone(),
            height: ctx.height,
            view: 0,
            parent_hash: self.parent.hash,
            timestamp: time,
            proposer,
            tx_root: Block::compute_tx_root(&txs),
            tx_count: txs.len() as u32,
            state_root: outcome.state_root,
            event_root: outcome.event_root().0,
            event_count: outcome.event_root().1,
            validator_set_hash: self.parent.validator_set.hash(),
            next_validator_set_hash: outcome.validator_set.hash(),
            parent_certificate: self.parent.certificate.clone(),
        };
        let block = Block { header, txs };
        self.check_execution_into(&block, &verified, &outcome);
        let (_, again) = self.validate(&block, time).expect("validate_block");
        assert_eq!(again.state_root, outcome.state_root);
        assert_eq!(again.receipts, outcome.receipts);
        self.commit(&block, &outcome);
        assert_eq!(
            self.state.accumulator(),
            self.acc,
            "incremental accumulator drifted"
        );
        self.blocks.push(block);
        outcome
    }

    /// The replay's way to execute (`execute_verified_into`), on a copy of
    /// the state: the outcome `apply_block` gave, the state the writes
    /// make, and the undo puts it back; a header whose state root is not
    /// the block's leaves the state untouched.
    fn check_execution_into(
        &self,
        block: &Block,
        verified: &[aidledger_crypto::VerifiedTx],
        outcome: &BlockOutcome,
    ) {
        let before = self.state.clone();
        let mut into = before.clone();
        let (got, undo) = execute_verified_into(block, verified, &mut into, &self.acc)
            .expect("execute_verified_into");
        assert_eq!(got.state_root, outcome.state_root);
        assert_eq!(got.accumulator, outcome.accumulator);
        assert_eq!(got.writes, outcome.writes);
        assert_eq!(got.receipts, outcome.receipts);
        assert_eq!(got.events, outcome.events);
        let mut applied = before.clone();
        applied.apply(&outcome.writes);
        assert_eq!(into, applied, "the state after execute_verified_into");
        assert_eq!(undo.olds().len(), got.writes.len());
        into.undo(&got.writes, undo);
        assert_eq!(into, before, "the state after the undo");
        let mut other = block.clone();
        other.header.state_root = Hash([0xee; 32]);
        let mut into = before.clone();
        assert!(matches!(
            execute_verified_into(&other, verified, &mut into, &self.acc),
            Err(BlockInvalid::StateRootMismatch { .. })
        ));
        assert_eq!(into, before, "a refused block leaves the state as it was");
    }

    /// Validates `block` as a voting validator whose clock reads `time`
    /// would. The harness moves time on with empty blocks wherever a test
    /// needs, which a quiet chain's proposer would not make before the
    /// state's due time and validators would not vote for (ADR 017;
    /// `tests/next_due.rs` covers that rule): such a block is checked
    /// without the clock, as a plain replay of execution would.
    pub fn validate(
        &self,
        block: &Block,
        time: Timestamp,
    ) -> Result<(Vec<aidledger_crypto::VerifiedTx>, BlockOutcome), BlockInvalid> {
        let mut now = Some(time.0);
        let mut r = validate_block(block, &self.parent, now, 10_000, &self.state, &self.acc);
        if matches!(r, Err(BlockInvalid::EmptyBeforeDue { .. })) {
            now = None;
            r = validate_block(block, &self.parent, now, 10_000, &self.state, &self.acc);
        }
        // A validator checks the body once and validates the identified
        // block (ADR 026): the same verdict on every block the tests make.
        match aidledger_types::IdentifiedBlock::new(block.clone()) {
            Ok(ib) => {
                let other = validate_identified_with(
                    &ib,
                    &self.parent,
                    now,
                    10_000,
                    &self.state,
                    &self.acc,
                    &|_, _| None,
                );
                assert_eq!(
                    format!("{other:?}"),
                    format!("{r:?}"),
                    "validate_identified_with and validate_block differ"
                );
            }
            Err(_) => assert!(
                r.is_err(),
                "a body that does not match its header validated"
            ),
        }
        r
    }

    /// The context of the next block, one second after the previous one.
    pub fn next_ctx(&self) -> BlockContext {
        BlockContext {
            chain_id: self.genesis.chain_id.clone(),
            height: self.parent.height + 1,
            timestamp: self.parent.timestamp.saturating_add_ms(1000),
            proposer: self.f.keys.validators[0].1.public(),
        }
    }

    /// Has a proposer build a block at `time` from `candidates` with
    /// `build_block` (which leaves out what may not be included), validates
    /// it as a validator would, and commits it.
    pub fn build_at(
        &mut self,
        time: Timestamp,
        candidates: Vec<SignedTx>,
    ) -> (Block, BlockOutcome) {
        let verified: Vec<_> = candidates.into_iter().map(|t| self.f.verified(t)).collect();
        let ctx = BlockContext {
            timestamp: time,
            ..self.next_ctx()
        };
        let (block, outcome) =
            build_block(&self.parent, &ctx, 0, &verified, &self.state, &self.acc).expect("build");
        let (_, again) = self
            .validate(&block, time)
            .expect("a built block validates");
        assert_eq!(again.state_root, outcome.state_root);
        assert_eq!(again.receipts, outcome.receipts);
        self.commit(&block, &outcome);
        self.blocks.push(block.clone());
        (block, outcome)
    }

    /// Moves the tip to `block`: its writes and accumulator applied, and
    /// certified by the validators voting at the block's own time.
    pub fn commit(&mut self, block: &Block, outcome: &BlockOutcome) {
        self.state.apply(&outcome.writes);
        self.acc = outcome.accumulator.clone();
        let cert = self.f.keys.certify(
            &self.genesis.chain_id,
            &self.parent.validator_set,
            block,
            block.header.timestamp,
        );
        self.parent = self.parent.child(block, outcome, Some(cert));
    }

    /// A block one second after the previous one.
    pub fn block(&mut self, txs: Vec<SignedTx>) -> BlockOutcome {
        let t = self.parent.timestamp.saturating_add_ms(1000);
        self.block_at(t, txs)
    }

    /// Asserts every transaction in the block applied.
    pub fn ok(&mut self, txs: Vec<SignedTx>) -> BlockOutcome {
        let out = self.block(txs);
        for r in &out.receipts {
            assert!(
                r.is_applied(),
                "tx {} ({}) rejected: {:?}",
                r.index,
                r.kind,
                r.outcome
            );
        }
        out
    }

    pub fn get<T: Serialize + DeserializeOwned>(&self, key: &[u8]) -> Option<T> {
        self.state
            .get(key)
            .expect("get")
            .map(|b| codec::decode(&b).expect("decode"))
    }

    pub fn program(&self, id: &str) -> Program {
        self.get(&keys::program(&id.parse().expect("slug")))
            .expect("program")
    }
    pub fn plan(&self, id: &str) -> Plan {
        self.get(&keys::plan(&id.parse().expect("slug")))
            .expect("plan")
    }
    pub fn application(&self, id: &str) -> Application {
        self.get(&keys::application(&id.parse().expect("slug")))
            .expect("application")
    }
    pub fn release(&self, id: u64) -> Release {
        self.get(&keys::release(id)).expect("release")
    }
    pub fn account(&self, key: &PublicKey) -> Account {
        self.get(&keys::account(key)).expect("account")
    }
    /// The transactions that resolve anomaly `id`, for one block: the
    /// audit office's auditor, then, where the anomaly takes two people (a
    /// household's always does; others from
    /// `params.anomaly_second_review_from`), the poverty office's program
    /// officer confirming.
    pub fn resolve_txs(&mut self, id: u64) -> Vec<SignedTx> {
        use aidledger_contracts::payload::{Payload, ResolveAnomaly};
        use aidledger_contracts::{Anomaly, Params, Subject};
        use aidledger_types::Role;
        let a: Anomaly = self.get(&keys::anomaly(id)).expect("anomaly");
        let params: Params = self.get(keys::PARAMS).expect("params");
        let held = match &a.subject {
            Subject::Household(_) => None,
            Subject::Application(x) => Some(self.application(x.as_str()).requested),
            Subject::Release(r) => Some(self.release(*r).amount),
        };
        let two = held.is_none_or(|h| h.0 >= params.anomaly_second_review_from);
        let tx = |f: &mut TxFactory, org: &str, role: Role| {
            f.sign_as(
                org,
                role,
                &Payload::ResolveAnomaly(ResolveAnomaly {
                    anomaly: id,
                    note: "checked with the county".parse().expect("note"),
                }),
            )
        };
        let mut txs = vec![tx(&mut self.f, "audit-office", Role::Auditor)];
        if two {
            txs.push(tx(&mut self.f, "poverty-office", Role::ProgramOfficer));
        }
        txs
    }

    pub fn genesis_time() -> Timestamp {
        DEV_GENESIS_TIME
    }
}

/// Proposes `action` (state bank) and, if the proposal was accepted,
/// approves it in the next block (dev bank): the development threshold is
/// 2, so it executes there. Returns the last block's outcome.
pub fn govern(c: &mut Chain, action: GovAction) -> BlockOutcome {
    let p = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose { action }),
    );
    let out = c.block(vec![p]);
    if !out.receipts[0].is_applied() {
        return out;
    }
    let id = match out.receipts[0].events.iter().find_map(|e| match &e.body {
        EventBody::ProposalCreated { proposal, .. } => Some(*proposal),
        _ => None,
    }) {
        Some(id) => id,
        None => panic!("no proposal-created event: {:?}", out.receipts[0].events),
    };
    let a = c.f.sign_as(
        "dev-bank",
        Role::Admin,
        &Payload::GovApprove(payload::GovApprove { proposal: id }),
    );
    c.ok(vec![a])
}

/// Asserts the block's first transaction was refused with `text` in its
/// receipt.
pub fn refused(out: &BlockOutcome, text: &str) {
    let r = &out.receipts[0];
    assert!(!r.is_applied(), "applied; expected refusal: {text}");
    let why = format!("{:?}", r.outcome);
    assert!(why.contains(text), "{why}");
}
