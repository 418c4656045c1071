#![allow(clippy::unwrap_used)]
//! Property tests over random sequences of valid and invalid transactions,
//! with exact resends of earlier ones (applied, rejected or left out):
//! money is conserved at every height, nothing is released twice or before
//! its condition holds, no transaction is ever included twice (so none that
//! was rejected applies later), every transaction on the chain is refused
//! if a block tries to hold it again, and two independent executions agree
//! on every state root.

mod common;

use std::collections::BTreeMap;

use aidledger_contracts::condition_text::parse;
use aidledger_contracts::payload::{self, Payload, TrancheSpec};
use aidledger_contracts::{keys, Attestation, Program, Recipient, Release, ReleaseSource, Subject};
use aidledger_execution::StateRead;
use aidledger_types::hash::sha256;
use aidledger_types::{codec, Amount, Hash, Role, Timestamp};
use common::{Chain, DAY};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Deposit(u64),
    Plan(Vec<(u64, u64, bool, bool)>),
    Cancel(usize, usize),
    Register(bool),
    Attest(usize, bool, bool),
    Resolve(u64),
    Settle(u64, bool),
    Entitlement(u32),
    BadRole,
    WrongNonce,
    /// Resend, byte for byte, the n-th transaction sent so far (applied,
    /// rejected or left out).
    Resend(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..5_000).prop_map(Op::Deposit),
        proptest::collection::vec(
            (1u64..3_000, 0u64..20 * DAY, any::<bool>(), any::<bool>()),
            1..4
        )
        .prop_map(Op::Plan),
        (0usize..6, 0usize..4).prop_map(|(p, t)| Op::Cancel(p, t)),
        any::<bool>().prop_map(Op::Register),
        (0usize..6, any::<bool>(), any::<bool>()).prop_map(|(h, o, v)| Op::Attest(h, o, v)),
        (0u64..8).prop_map(Op::Resolve),
        (0u64..12, any::<bool>()).prop_map(|(r, exact)| Op::Settle(r, exact)),
        (1u32..4).prop_map(Op::Entitlement),
        Just(Op::BadRole),
        Just(Op::WrongNonce),
        (0usize..64).prop_map(Op::Resend),
        (0usize..64).prop_map(Op::Resend),
    ]
}

fn slug(s: &str) -> aidledger_types::Slug {
    s.parse().expect("slug")
}

/// What the test remembers about the tranches it planned: the time before
/// which each may not be released, and the attestation it waits for.
/// A tranche's earliest release time and the attestation it waits for.
type Gate = (Timestamp, Option<(Hash, String)>);

#[derive(Default)]
struct Model {
    plans: Vec<(String, usize)>,
    households: Vec<Hash>,
    after: BTreeMap<(String, String), Gate>,
    entitlements: u32,
    wrong: u64,
    /// Every transaction sent so far, in order.
    sent: Vec<aidledger_types::SignedTx>,
}

fn txs_for(c: &mut Chain, m: &mut Model, ops: &[Op]) -> Vec<aidledger_types::SignedTx> {
    let t0 = Chain::genesis_time();
    let mut txs = Vec::new();
    for op in ops {
        match op {
            Op::Deposit(a) => txs.push(c.f.deposit("fund", *a)),
            Op::Plan(tranches) => {
                let id = format!("p{}", m.plans.len());
                let mut specs = Vec::new();
                for (i, (amount, offset, to_household, attested)) in tranches.iter().enumerate() {
                    let tid = format!("t{i}");
                    let at = Timestamp(t0.0 + offset);
                    let hh = m
                        .households
                        .first()
                        .copied()
                        .filter(|_| *to_household || *attested);
                    let (text, att) = match (attested, hh) {
                        (true, Some(h)) => (
                            format!("all(after({}), attested(claim-{i}, by: poverty-office, subject: hh:{}))", at.0, h.to_hex()),
                            Some((h, format!("claim-{i}"))),
                        ),
                        _ => (format!("after({})", at.0), None),
                    };
                    let recipient = match (to_household, hh) {
                        (true, Some(h)) => Recipient::Household(h),
                        _ => Recipient::Org("county-unit".parse().expect("org")),
                    };
                    m.after.insert((id.clone(), tid.clone()), (at, att));
                    specs.push(TrancheSpec {
                        id: slug(&tid),
                        amount: Amount(*amount),
                        recipient,
                        condition: parse(&text).expect("condition"),
                    });
                }
                m.plans.push((id.clone(), specs.len()));
                let p = Payload::CreatePlan(payload::CreatePlan {
                    id: slug(&id),
                    program: slug("fund"),
                    application: None,
                    tranches: specs,
                });
                txs.push(c.f.sign_as("poverty-office", Role::ProgramOfficer, &p));
                // Four eyes: another person approves in the same block.
                txs.push(c.f.approve_plan("dev-bank", &id));
            }
            Op::Cancel(p, t) => {
                let Some((id, n)) = m.plans.get(*p).cloned() else {
                    continue;
                };
                let p = Payload::CancelTranche(payload::CancelTranche {
                    plan: slug(&id),
                    tranche: slug(&format!("t{}", t % n.max(1))),
                });
                txs.push(c.f.sign_as("poverty-office", Role::ProgramOfficer, &p));
            }
            Op::Register(dup) => {
                if *dup && !m.households.is_empty() {
                    let p = Payload::RegisterHousehold(payload::RegisterHousehold {
                        id: m.households[0],
                        region: "gansu".parse().expect("r"),
                    });
                    txs.push(c.f.sign_as("county-unit", Role::Registrar, &p));
                } else {
                    let (h, tx) = c.f.register_household();
                    m.households.push(h);
                    txs.push(tx);
                }
            }
            Op::Attest(h, other_org, value) => {
                let Some(h) = m.households.get(h % m.households.len().max(1)).copied() else {
                    continue;
                };
                let org = if *other_org {
                    "county-unit"
                } else {
                    "poverty-office"
                };
                let claim = format!("claim-{}", (h.0[0] % 3));
                txs.push(c.f.attest(
                    org,
                    Subject::Household(h),
                    &claim,
                    if *value { "yes" } else { "no" },
                ));
            }
            Op::Resolve(a) => {
                let p = Payload::ResolveAnomaly(payload::ResolveAnomaly {
                    anomaly: *a,
                    note: "checked".parse().expect("t"),
                });
                txs.push(c.f.sign_as("audit-office", Role::Auditor, &p.clone()));
                // A second person, where the anomaly takes two (refused,
                // harmlessly, where one was enough).
                txs.push(c.f.sign_as("poverty-office", Role::ProgramOfficer, &p));
            }
            Op::Settle(r, exact) => {
                let amount = c
                    .get::<Release>(&keys::release(*r))
                    .map_or(1, |rel| rel.amount.0);
                let amount = if *exact { amount } else { amount + 1 };
                let p = Payload::Settle(payload::Settle {
                    release: *r,
                    amount: Amount(amount),
                    bank_ref: sha256(b"ref"),
                });
                txs.push(c.f.sign_as("state-bank", Role::Disburser, &p));
            }
            Op::Entitlement(periods) => {
                m.entitlements += 1;
                let id = format!("e{}", m.entitlements);
                txs.push(c.f.set_entitlement(
                    &id,
                    "fund",
                    100,
                    Timestamp(t0.0 + DAY),
                    3 * DAY,
                    *periods,
                ));
            }
            Op::BadRole => {
                let p = Payload::Deposit(payload::Deposit {
                    program: slug("fund"),
                    amount: Amount(1),
                });
                txs.push(c.f.sign_as("poverty-office", Role::Registrar, &p));
            }
            Op::WrongNonce => {
                let kp = c.f.keys.op("state-bank", Role::Disburser).clone();
                let n = c.f.next_nonce(&kp.public()) + 3;
                // A distinct amount keeps two such transactions distinct.
                m.wrong += 1;
                let p = Payload::Deposit(payload::Deposit {
                    program: slug("fund"),
                    amount: Amount(m.wrong),
                });
                txs.push(c.f.sign_with_nonce(&kp, &p, n));
            }
            Op::Resend(i) => {
                if !m.sent.is_empty() {
                    txs.push(m.sent[i % m.sent.len()].clone());
                }
            }
        }
    }
    m.sent.extend(txs.iter().cloned());
    txs
}

fn check_invariants(c: &Chain, m: &Model) {
    for (_, v) in c.state.scan(keys::PROGRAM_PREFIX, None, 100).expect("scan") {
        let p: Program = codec::decode(&v).expect("program");
        assert!(
            p.balances.conserved(),
            "program {} not conserved: {:?}",
            p.id,
            p.balances
        );
    }
    let mut seen = BTreeMap::new();
    for (_, v) in c
        .state
        .scan(keys::RELEASE_PREFIX, None, 10_000)
        .expect("scan")
    {
        let r: Release = codec::decode(&v).expect("release");
        let key = match &r.source {
            ReleaseSource::Tranche { plan, tranche } => {
                let (after, att) = m
                    .after
                    .get(&(plan.to_string(), tranche.to_string()))
                    .expect("known tranche");
                assert!(
                    r.time >= *after,
                    "tranche {plan}/{tranche} released at {} before {}",
                    r.time.0,
                    after.0
                );
                // Never released before another person approved it.
                let pl: aidledger_contracts::Plan = c.get(&keys::plan(plan)).expect("plan");
                assert!(
                    pl.approved()
                        && pl.approvals.iter().all(|a| a.by != pl.created_by)
                        && (pl.application.is_some() || !pl.approvals.is_empty()),
                    "plan {plan} released without its approvals: {:?}",
                    pl.approvals
                );
                if let Some((h, claim)) = att {
                    let a: Attestation = c
                        .get(&keys::attestation(
                            &Subject::Household(*h),
                            &slug(claim),
                            &"poverty-office".parse().expect("o"),
                        ))
                        .expect("released without its attestation");
                    assert!(a.height <= r.height, "released before it was attested");
                }
                format!("{plan}/{tranche}")
            }
            ReleaseSource::Entitlement {
                entitlement,
                period,
            } => {
                let Recipient::Household(h) = r.recipient else {
                    panic!("entitlement to an org")
                };
                format!("{entitlement}/{}/{period}", h.to_hex())
            }
        };
        assert!(
            seen.insert(key.clone(), r.id).is_none(),
            "{key} released twice"
        );
    }
}

/// What the chain has done with each transaction id.
#[derive(Default)]
struct Inclusions {
    /// Height and outcome of every included transaction.
    included: BTreeMap<Hash, (u64, bool)>,
}

impl Inclusions {
    /// Records a block's receipts; panics if a transaction is included a
    /// second time (which would also mean a rejected one applied later).
    fn record(&mut self, height: u64, out: &aidledger_execution::BlockOutcome) {
        for r in &out.receipts {
            if let Some((at, applied)) = self.included.insert(r.tx_id, (height, r.is_applied())) {
                panic!(
                    "tx {} included at height {at} ({}) and again at {height} ({})",
                    r.tx_id.short(),
                    if applied { "applied" } else { "rejected" },
                    if r.is_applied() {
                        "applied"
                    } else {
                        "rejected"
                    },
                );
            }
        }
    }
}

fn run(blocks: &[(u64, Vec<Op>)]) -> Vec<Hash> {
    let mut c = Chain::new();
    let mut m = Model::default();
    let mut inc = Inclusions::default();
    let setup = vec![
        c.f.create_program("fund", 1_000_000),
        c.f.deposit("fund", 20_000),
    ];
    let out = c.ok(setup);
    inc.record(c.parent.height, &out);
    let mut roots = vec![c.root()];
    for (advance, ops) in blocks {
        let txs = txs_for(&mut c, &mut m, ops);
        let t = Timestamp(c.time().0 + advance);
        let (_, out) = c.build_at(t, txs);
        inc.record(c.parent.height, &out);
        c.f.resync(&c.state).expect("resync");
        check_invariants(&c, &m);
        // Every transaction already on the chain, applied or rejected, is
        // refused if a block tries to hold it again.
        for tx in m.sent.iter().filter(|t| inc.included.contains_key(&t.id())) {
            let v = c.f.verified(tx.clone());
            match aidledger_execution::apply_block(&c.state, &c.acc, &c.next_ctx(), &[v]) {
                Err(aidledger_execution::ExecError::NotIncludable { .. }) => {}
                other => panic!(
                    "tx {} is on the chain but a block may hold it again: {other:?}",
                    tx.id().short()
                ),
            }
        }
        roots.push(c.root());
    }
    roots
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_workloads_conserve_money_release_once_and_replay_identically(
        blocks in proptest::collection::vec((1u64..4 * DAY, proptest::collection::vec(op(), 0..6)), 1..10)
    ) {
        let a = run(&blocks);
        let b = run(&blocks);
        prop_assert_eq!(a, b);
    }
}
