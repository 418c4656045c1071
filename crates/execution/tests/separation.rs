#![allow(clippy::unwrap_used)]
//! Separation of duties (issue 14): one officer never moves money alone.
//! A plan without an approved application waits for an approver of the
//! program's policy other than its creator (four eyes by default,
//! `params.plan_approvals` organisations in general), and an anomaly that
//! holds a large amount is resolved by two people. Each test fails without
//! its rule.

mod common;

use aidledger_contracts::condition_text::parse;
use aidledger_contracts::model::{AnomalyStatus, GovAction, ParamValue};
use aidledger_contracts::payload::{self, Payload, TrancheSpec};
use aidledger_contracts::{keys, Anomaly, EventBody, MoneyFlow, Recipient};
use aidledger_crypto::Keypair;
use aidledger_execution::BlockOutcome;
use aidledger_types::hash::sha256;
use aidledger_types::{Amount, Role, SignedTx};
use common::Chain;

fn funded(c: &mut Chain) {
    let p = c.f.create_program("fund", 1_000_000_000);
    let d = c.f.deposit("fund", 10_000_000);
    c.ok(vec![p, d]);
}

fn released(out: &BlockOutcome) -> u64 {
    out.events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Money(m) if m.flow == MoneyFlow::Disbursement => Some(m.amount.0),
            _ => None,
        })
        .sum()
}

fn rejected_with(out: &BlockOutcome, i: usize, text: &str) {
    let r = &out.receipts[i];
    assert!(!r.is_applied(), "tx {i} applied, expected: {text}");
    let why = format!("{:?}", r.outcome);
    assert!(why.contains(text), "{why}");
}

/// A plan of one 1,000-unit tranche to the county unit, due now.
fn direct_plan(c: &mut Chain, id: &str) -> SignedTx {
    c.f.create_plan(
        id,
        "fund",
        None,
        &[("t", 1_000, parse("after(1)").unwrap())],
    )
}

/// Genesis edit: the poverty office's program officer may also approve.
fn officer_also_approves(g: &mut aidledger_contracts::Genesis, officer: &Keypair) {
    let a = g
        .accounts
        .iter_mut()
        .find(|a| a.key == officer.public())
        .unwrap();
    a.roles.push(Role::Approver);
}

fn officer_key(seed_chain: &Chain) -> Keypair {
    seed_chain
        .f
        .keys
        .op("poverty-office", Role::ProgramOfficer)
        .clone()
}

#[test]
fn a_plan_without_an_application_releases_nothing_until_another_person_approves() {
    let mut c = Chain::new();
    funded(&mut c);
    let plan = direct_plan(&mut c, "p");
    let out = c.ok(vec![plan]);
    // The money is committed at once (no one can spend it twice), but
    // nothing is released, block after block.
    assert_eq!(released(&out), 0);
    assert_eq!(c.program("fund").balances.committed.0, 1_000);
    assert_eq!(released(&c.block(vec![])), 0);
    assert!(!c.plan("p").approved());
    // An approver of a policy organisation approves: released in that block.
    let a = c.f.approve_plan("finance-bureau", "p");
    let out = c.ok(vec![a]);
    assert_eq!(released(&out), 1_000);
    assert!(out.receipts[0].events.iter().any(|e| matches!(
        &e.body,
        EventBody::PlanApproved {
            approved: true,
            approvals: 1,
            needed: 1,
            ..
        }
    )));
    // Approving again is refused: nothing is awaiting.
    let again = c.f.approve_plan("dev-bank", "p");
    rejected_with(&c.block(vec![again]), 0, "approved");
}

#[test]
fn the_creator_of_a_plan_cannot_approve_it_even_holding_the_approver_role() {
    let probe = Chain::new();
    let officer = officer_key(&probe);
    let mut c = Chain::with(|g| officer_also_approves(g, &officer));
    funded(&mut c);
    let plan = direct_plan(&mut c, "p");
    c.ok(vec![plan]);
    let own = Payload::ApprovePlan(payload::ApprovePlan {
        plan: "p".parse().unwrap(),
    });
    let tx = c.f.sign_as("poverty-office", Role::ProgramOfficer, &own);
    let out = c.block(vec![tx]);
    rejected_with(&out, 0, "creator cannot approve");
    assert_eq!(released(&out), 0);
    // Another person of the same organisation may: four eyes, not four
    // organisations.
    let a = c.f.approve_plan("poverty-office", "p");
    assert_eq!(released(&c.ok(vec![a])), 1_000);
}

#[test]
fn a_rotated_key_is_still_the_creator() {
    let probe = Chain::new();
    let officer = officer_key(&probe);
    let mut c = Chain::with(|g| officer_also_approves(g, &officer));
    funded(&mut c);
    let plan = direct_plan(&mut c, "p");
    c.ok(vec![plan]);
    // Governance rotates the creator's key.
    let new = Keypair::from_seed(sha256(b"separation test fixture: rotated officer").0);
    let rotate = GovAction::RotateKey {
        old: officer.public(),
        new: new.public(),
    };
    let p = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose { action: rotate }),
    );
    let a = c.f.sign_as(
        "dev-bank",
        Role::Admin,
        &Payload::GovApprove(payload::GovApprove { proposal: 0 }),
    );
    c.ok(vec![p, a]);
    assert_eq!(c.account(&new.public()).key, new.public());
    let nonce = c.account(&new.public()).nonce;
    let own = Payload::ApprovePlan(payload::ApprovePlan {
        plan: "p".parse().unwrap(),
    });
    let tx = c.f.sign_with_nonce(&new, &own, nonce);
    rejected_with(&c.block(vec![tx]), 0, "creator cannot approve");
}

#[test]
fn only_the_programs_policy_organisations_approve() {
    let mut c = Chain::new();
    funded(&mut c);
    let plan = direct_plan(&mut c, "p");
    c.ok(vec![plan]);
    // The state bank has an approver but is not in the program's policy.
    let a = c.f.approve_plan("state-bank", "p");
    let out = c.block(vec![a]);
    rejected_with(&out, 0, "approval policy");
    assert_eq!(released(&out), 0);
    // The wrong role is refused before the module looks.
    let wrong = c.f.sign_as(
        "dev-bank",
        Role::Disburser,
        &Payload::ApprovePlan(payload::ApprovePlan {
            plan: "p".parse().unwrap(),
        }),
    );
    rejected_with(&c.block(vec![wrong]), 0, "role");
}

#[test]
fn governance_can_require_several_organisations_and_each_counts_once() {
    let mut c = Chain::with(|g| g.params.plan_approvals = 2);
    funded(&mut c);
    let plan = direct_plan(&mut c, "p");
    c.ok(vec![plan]);
    let a1 = c.f.approve_plan("dev-bank", "p");
    let out = c.ok(vec![a1]);
    assert_eq!(released(&out), 0, "one of two approvals");
    let a1_again = c.f.approve_plan("dev-bank", "p");
    rejected_with(&c.block(vec![a1_again]), 0, "already");
    let a2 = c.f.approve_plan("finance-bureau", "p");
    assert_eq!(released(&c.ok(vec![a2])), 1_000);
    // A plan funded from an approved application needs nothing more.
    assert_eq!(c.plan("p").approvals_needed, 2);
}

#[test]
fn a_plan_the_policy_could_never_approve_is_refused_at_creation() {
    // The policy has three organisations; four approvals can never come.
    let mut c = Chain::with(|g| g.params.plan_approvals = 4);
    funded(&mut c);
    let plan = direct_plan(&mut c, "p");
    let out = c.block(vec![plan]);
    rejected_with(&out, 0, "approval policy, which has 3 active");
    assert_eq!(c.program("fund").balances.committed.0, 0);
}

#[test]
fn governance_cannot_turn_four_eyes_off() {
    let mut c = Chain::new();
    let p = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose {
            action: GovAction::SetParam {
                param: ParamValue::PlanApprovals(0),
            },
        }),
    );
    rejected_with(&c.block(vec![p]), 0, "second person");
    let (mut g, _) = aidledger_execution::testkit::dev_genesis(4, 3);
    g.params.plan_approvals = 0;
    assert!(g.validate().is_err());
}

#[test]
fn a_plan_awaiting_approval_can_be_cancelled_and_its_money_returns() {
    let mut c = Chain::new();
    funded(&mut c);
    let plan = direct_plan(&mut c, "p");
    c.ok(vec![plan]);
    let cancel = c.f.sign_as(
        "poverty-office",
        Role::ProgramOfficer,
        &Payload::CancelTranche(payload::CancelTranche {
            plan: "p".parse().unwrap(),
            tranche: "t".parse().unwrap(),
        }),
    );
    c.ok(vec![cancel]);
    let b = c.program("fund").balances;
    assert_eq!((b.available.0, b.committed.0), (10_000_000, 0));
    // Nothing is left to approve.
    let a = c.f.approve_plan("dev-bank", "p");
    rejected_with(&c.block(vec![a]), 0, "without a pending tranche");
}

/// A released tranche of `amount` to the county unit, settled with the
/// wrong amount: a settlement-mismatch anomaly (id 0) on the release.
fn disputed_release(c: &mut Chain, amount: u64) {
    let plan = c.f.create_plan(
        "p",
        "fund",
        None,
        &[("t", amount, parse("after(1)").unwrap())],
    );
    let a = c.f.approve_plan("dev-bank", "p");
    c.ok(vec![plan, a]);
    let settle = c.f.sign_as(
        "state-bank",
        Role::Disburser,
        &Payload::Settle(payload::Settle {
            release: 0,
            amount: Amount(amount + 1),
            bank_ref: sha256(b"bank ref"),
        }),
    );
    c.ok(vec![settle]);
    let a: Anomaly = c.get(&keys::anomaly(0)).unwrap();
    assert_eq!(a.status, AnomalyStatus::Open);
}

fn resolve_as(c: &mut Chain, org: &str, role: Role) -> SignedTx {
    c.f.sign_as(
        org,
        role,
        &Payload::ResolveAnomaly(payload::ResolveAnomaly {
            anomaly: 0,
            note: "bank statement checked".parse().unwrap(),
        }),
    )
}

#[test]
fn an_anomaly_on_a_large_amount_takes_two_people() {
    let mut c = Chain::with(|g| g.params.anomaly_second_review_from = 5_000);
    funded(&mut c);
    disputed_release(&mut c, 5_000);
    // The first review keeps it open.
    let first = resolve_as(&mut c, "audit-office", Role::Auditor);
    let out = c.ok(vec![first]);
    assert!(out.receipts[0]
        .events
        .iter()
        .any(|e| matches!(e.body, EventBody::AnomalyReviewed { anomaly: 0, .. })));
    let a: Anomaly = c.get(&keys::anomaly(0)).unwrap();
    assert_eq!(a.status, AnomalyStatus::Open);
    assert!(a.first_review.is_some());
    // The same person again is refused.
    let again = resolve_as(&mut c, "audit-office", Role::Auditor);
    rejected_with(&c.block(vec![again]), 0, "second person");
    // A second person resolves it.
    let second = resolve_as(&mut c, "poverty-office", Role::ProgramOfficer);
    c.ok(vec![second]);
    let a: Anomaly = c.get(&keys::anomaly(0)).unwrap();
    assert!(matches!(a.status, AnomalyStatus::Resolved { .. }));
}

#[test]
fn an_anomaly_below_the_amount_takes_one_person() {
    let mut c = Chain::with(|g| g.params.anomaly_second_review_from = 5_000);
    funded(&mut c);
    disputed_release(&mut c, 4_999);
    let first = resolve_as(&mut c, "audit-office", Role::Auditor);
    c.ok(vec![first]);
    let a: Anomaly = c.get(&keys::anomaly(0)).unwrap();
    assert!(matches!(a.status, AnomalyStatus::Resolved { .. }));
    assert!(a.first_review.is_none());
}

#[test]
fn a_household_anomaly_always_takes_two_people_and_the_beneficiary_is_never_one() {
    let mut c = Chain::new();
    funded(&mut c);
    let stranger = sha256(b"never registered");
    let plan = Payload::CreatePlan(payload::CreatePlan {
        id: "p".parse().unwrap(),
        program: "fund".parse().unwrap(),
        application: None,
        tranches: vec![TrancheSpec {
            id: "t".parse().unwrap(),
            amount: Amount(1),
            recipient: Recipient::Household(stranger),
            condition: parse("after(1)").unwrap(),
        }],
    });
    let tx = c.f.sign_as("poverty-office", Role::ProgramOfficer, &plan);
    let a = c.f.approve_plan("dev-bank", "p");
    c.ok(vec![tx, a]);
    // A one-unit payment, yet the household anomaly needs two.
    let first = resolve_as(&mut c, "audit-office", Role::Auditor);
    c.ok(vec![first]);
    let an: Anomaly = c.get(&keys::anomaly(0)).unwrap();
    assert_eq!(an.status, AnomalyStatus::Open);
    let second = resolve_as(&mut c, "poverty-office", Role::ProgramOfficer);
    c.ok(vec![second]);
    let an: Anomaly = c.get(&keys::anomaly(0)).unwrap();
    assert!(matches!(an.status, AnomalyStatus::Resolved { .. }));
}

#[test]
fn the_recipient_of_a_release_can_be_neither_reviewer() {
    let mut c = Chain::with(|g| g.params.anomaly_second_review_from = 0);
    funded(&mut c);
    disputed_release(&mut c, 100);
    // The county unit receives release 0: refused as first or second.
    let own = resolve_as(&mut c, "county-unit", Role::ProgramOfficer);
    rejected_with(&c.block(vec![own]), 0, "the beneficiary");
    let first = resolve_as(&mut c, "audit-office", Role::Auditor);
    c.ok(vec![first]);
    let own = resolve_as(&mut c, "county-unit", Role::ProgramOfficer);
    rejected_with(&c.block(vec![own]), 0, "the beneficiary");
}
