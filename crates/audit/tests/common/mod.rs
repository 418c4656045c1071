//! A real chain for the audit tests, built without any node process: the
//! development consortium's transactions, blocks assembled with the
//! execution crate's `build_block`, commit certificates signed with the
//! validators' keys, everything committed into a RocksStore in a temporary
//! directory. The chain covers programs, deposits, an application and its
//! approvals, a plan with released and pending tranches, household
//! entitlements, a settlement, and a governance change of the validator
//! set (4 validators, then 3) part way through.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aidledger_contracts::condition_text::parse;
use aidledger_contracts::model::GovAction;
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{keys, Genesis, Proposal};
use aidledger_crypto::Keypair;
use aidledger_execution::testkit::{TxFactory, DEV_GENESIS_TIME};
use aidledger_execution::{
    build_block, genesis_state, BlockContext, BlockOutcome, MemState, ParentInfo,
};
use aidledger_storage::{CommitBatch, RocksStore, Store};
use aidledger_types::hash::sha256;
use aidledger_types::time::MS_PER_DAY;
use aidledger_types::{
    codec, Amount, Block, CommitCertificate, Hash, OrgId, Role, SignedTx, StateAccumulator,
    Timestamp, Validator, ValidatorSet,
};

pub const HOUR: u64 = 3_600_000;

pub struct ChainBuilder {
    pub genesis: Genesis,
    pub f: TxFactory,
    pub state: MemState,
    pub acc: StateAccumulator,
    pub parent: ParentInfo,
    pub store: RocksStore,
    /// Every validator key of the development consortium, by organisation.
    pub validator_keys: BTreeMap<OrgId, Keypair>,
    /// The height whose execution changed the validator set.
    pub set_changed_at: Option<u64>,
}

fn slug(s: &str) -> aidledger_types::Slug {
    s.parse().unwrap()
}

/// Signs a certificate for `block` with the first `signers` validators of
/// `set`, looking their keys up in `keys` (see `aidledger_audit::synth`).
pub fn certificate(
    chain: &aidledger_types::ChainId,
    set: &ValidatorSet,
    keys: &BTreeMap<OrgId, Keypair>,
    block: &Block,
    signers: usize,
) -> CommitCertificate {
    aidledger_audit::synth::certificate(chain, set, keys, block, signers).unwrap()
}

#[allow(unused_imports)] // used by some of the test binaries that share this file
pub use aidledger_audit::synth::vote_signature;

impl ChainBuilder {
    pub fn new(data: &Path) -> ChainBuilder {
        let (genesis, keys) = aidledger_execution::testkit::dev_genesis(4, 11);
        let validator_keys = keys.validators.iter().cloned().collect();
        let (map, acc) = genesis_state(&genesis).unwrap();
        let store = RocksStore::open(data).unwrap();
        store
            .put_genesis(
                genesis.hash(),
                codec::encode(&genesis),
                map.clone(),
                acc.clone(),
            )
            .unwrap();
        let parent = ParentInfo::genesis(&genesis).unwrap();
        let f = TxFactory::new(&genesis, keys);
        ChainBuilder {
            genesis,
            f,
            state: MemState::new(map),
            acc,
            parent,
            store,
            validator_keys,
            set_changed_at: None,
        }
    }

    pub fn time(&self) -> Timestamp {
        self.parent.timestamp
    }

    /// Builds, certifies and commits a block at `time` from `txs`.
    pub fn block_at(&mut self, time: Timestamp, txs: Vec<SignedTx>) -> (Block, BlockOutcome) {
        let verified: Vec<_> = txs.into_iter().map(|t| self.f.verified(t)).collect();
        let set = self.parent.validator_set.clone();
        let height = self.parent.height + 1;
        let view = height % 3;
        let proposer = set.leader(view).key;
        let ctx = BlockContext {
            chain_id: self.genesis.chain_id.clone(),
            height,
            timestamp: time,
            proposer,
        };
        let (block, outcome) =
            build_block(&self.parent, &ctx, view, &verified, &self.state, &self.acc).unwrap();
        let cert = certificate(
            &self.genesis.chain_id,
            &set,
            &self.validator_keys,
            &block,
            set.quorum(),
        );
        self.store
            .commit_block(CommitBatch {
                block: aidledger_types::IdentifiedBlock::new(block.clone()).unwrap(),
                certificate: cert.clone(),
                state_writes: outcome.writes.clone(),
                receipts: outcome.receipts.iter().map(codec::encode).collect(),
                block_events: codec::encode(&outcome.events),
                accumulator: outcome.accumulator.clone(),
                next_validator_set: (outcome.validator_set.hash()
                    != block.header.validator_set_hash)
                    .then(|| outcome.validator_set.clone()),
            })
            .unwrap();
        self.state.apply(&outcome.writes);
        self.acc = outcome.accumulator.clone();
        if outcome.validator_set != set {
            self.set_changed_at = Some(height);
        }
        self.parent = self.parent.child(&block, &outcome, Some(cert));
        self.f.resync(&self.state).unwrap();
        (block, outcome)
    }

    /// A block 12 hours after the previous one.
    pub fn block(&mut self, txs: Vec<SignedTx>) -> (Block, BlockOutcome) {
        let t = self.time().saturating_add_ms(12 * HOUR);
        self.block_at(t, txs)
    }

    /// Like `block`, asserting every transaction applied.
    pub fn ok(&mut self, txs: Vec<SignedTx>) -> (Block, BlockOutcome) {
        let (b, out) = self.block(txs);
        for r in &out.receipts {
            assert!(r.is_applied(), "tx {} rejected: {:?}", r.index, r.outcome);
        }
        (b, out)
    }

    fn open_proposal(&self) -> u64 {
        let all = aidledger_audit::scan_all(&self.state, keys::PROPOSAL_PREFIX).unwrap();
        all.iter()
            .map(|(_, v)| codec::decode::<Proposal>(v).unwrap())
            .filter(|p| p.status == aidledger_contracts::model::ProposalStatus::Open)
            .map(|p| p.id)
            .max()
            .unwrap()
    }
}

/// The release of a plan's tranche: (id, amount).
pub fn tranche_release(state: &MemState, plan: &str, tranche: &str) -> (u64, Amount) {
    let all = aidledger_audit::scan_all(state, keys::RELEASE_PREFIX).unwrap();
    all.iter()
        .map(|(_, v)| codec::decode::<aidledger_contracts::Release>(v).unwrap())
        .find(|r| {
            matches!(&r.source, aidledger_contracts::ReleaseSource::Tranche { plan: p, tranche: t }
                if p.as_str() == plan && t.as_str() == tranche)
        })
        .map(|r| (r.id, r.amount))
        .expect("tranche released")
}

/// The standard audit chain, committed into `data`. `extra` workload
/// blocks (at least 2) follow the scripted ones.
pub fn standard_chain(data: &Path, extra: u64) -> ChainBuilder {
    let mut c = ChainBuilder::new(data);
    let t1 = Timestamp(DEV_GENESIS_TIME.0 + 2 * MS_PER_DAY);

    // 1: programs, deposits, an entitlement and two households (workload
    // block 0), plus a second program with deposits from two banks.
    let mut txs = c.f.workload_block(0);
    txs.push(c.f.create_program("road-fund", 10_000_000));
    txs.push(c.f.deposit("road-fund", 5_000_000));
    txs.push(c.f.sign_as(
        "dev-bank",
        Role::Disburser,
        &Payload::Deposit(payload::Deposit {
            program: slug("road-fund"),
            amount: Amount(1_000_000),
        }),
    ));
    c.ok(txs);

    // 2: an application by the county unit.
    let submit = c.f.sign_as(
        "county-unit",
        Role::ProgramOfficer,
        &Payload::SubmitApplication(payload::SubmitApplication {
            id: slug("village-road"),
            program: slug("road-fund"),
            applicant: "county-unit".parse().unwrap(),
            region: "gansu/dingxi/village-1".parse().unwrap(),
            requested: Amount(3_000_000),
            purpose: "Village access road".parse().unwrap(),
            doc_hash: sha256(b"road design documents"),
        }),
    );
    c.ok(vec![submit]);

    // 3: two approvals.
    let vote = |a: &str| {
        Payload::ApproveApplication(payload::ApplicationVote {
            application: slug(a),
            note: "ok".parse().unwrap(),
        })
    };
    let a1 =
        c.f.sign_as("poverty-office", Role::Approver, &vote("village-road"));
    let a2 =
        c.f.sign_as("dev-bank", Role::Approver, &vote("village-road"));
    c.ok(vec![a1, a2]);

    // 4: a plan: t1 after a date, t2 far in the future (stays pending).
    let cond1 = parse(&format!("after({})", t1.date_string())).unwrap();
    let cond2 = parse("after(2030-01-01)").unwrap();
    let plan = c.f.create_plan(
        "road-plan",
        "road-fund",
        Some("village-road"),
        &[("t1", 1_000_000, cond1), ("t2", 1_200_000, cond2)],
    );
    c.ok(vec![plan]);

    // 5..7: time passes; t1 and the first entitlement periods are released.
    let (h2, reg) = c.f.register_household();
    let att = c.f.attest(
        "poverty-office",
        aidledger_contracts::Subject::Household(h2),
        "income-verified",
        "below-line",
    );
    c.ok(vec![reg, att]);
    c.ok(vec![]);
    c.ok(vec![]);

    // 8: the bank settles tranche t1's release.
    let (release, amount) = tranche_release(&c.state, "road-plan", "t1");
    let settle = c.f.sign_as(
        "state-bank",
        Role::Disburser,
        &Payload::Settle(payload::Settle {
            release,
            amount,
            bank_ref: sha256(b"bank ref t1"),
        }),
    );
    c.ok(vec![settle]);

    // 9, 10: governance takes the finance bureau out of the validator set.
    let four = c.parent.validator_set.clone();
    let three = ValidatorSet::new(
        four.validators()
            .iter()
            .filter(|v| v.org.as_str() != "finance-bureau")
            .cloned()
            .collect::<Vec<Validator>>(),
    )
    .unwrap();
    let propose = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose {
            // Proposed at +1, approved at +2, in force from +4.
            action: GovAction::SetValidators {
                validators: three,
                at_height: c.parent.height + 4,
            },
        }),
    );
    c.ok(vec![propose]);
    let id = c.open_proposal();
    let approve = c.f.sign_as(
        "dev-bank",
        Role::Admin,
        &Payload::GovApprove(payload::GovApprove { proposal: id }),
    );
    c.ok(vec![approve]);
    c.ok(vec![]);
    assert!(c.set_changed_at.is_some(), "the validator set changed");
    assert_eq!(c.parent.validator_set.len(), 3);

    // 11..: steady workload, certified by the new set.
    for i in 1..=extra.max(2) {
        let txs = c.f.workload_block(i);
        c.ok(txs);
    }
    c
}

/// A built chain in a temporary directory; the store is closed so tests
/// can reopen it read-write (to tamper) or read-only (to audit).
pub struct Built {
    pub dir: tempfile::TempDir,
    pub genesis: Genesis,
    pub head: u64,
    pub set_changed_at: u64,
    pub validator_keys: BTreeMap<OrgId, Keypair>,
    pub last_state_root: Hash,
}

impl Built {
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

pub fn built(extra: u64) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = standard_chain(&data, extra);
    let out = Built {
        genesis: c.genesis.clone(),
        head: c.parent.height,
        set_changed_at: c.set_changed_at.unwrap(),
        validator_keys: c.validator_keys.clone(),
        last_state_root: c.acc.root(),
        dir,
    };
    drop(c);
    out
}
