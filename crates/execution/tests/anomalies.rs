#![allow(clippy::unwrap_used)]
//! Cross-checks raise anomalies by themselves; anomalies hold releases and
//! entitlement payments until resolved; entitlements pay each period once.

mod common;

use aidledger_contracts::condition_text::parse;
use aidledger_contracts::payload::{self, Payload, TrancheSpec};
use aidledger_contracts::{
    keys, Anomaly, AnomalyKind, AnomalyStatus, EventBody, HouseholdStatus, MoneyFlow, Recipient,
    Subject,
};
use aidledger_execution::testkit::TxFactory;
use aidledger_execution::BlockOutcome;
use aidledger_types::hash::sha256;
use aidledger_types::{Amount, Hash, Role, Timestamp};
use common::{Chain, DAY};

fn slug(s: &str) -> aidledger_types::Slug {
    s.parse().expect("slug")
}
fn text(s: &str) -> aidledger_types::Text {
    s.parse().expect("text")
}

fn raised(out: &BlockOutcome) -> Vec<(u64, String)> {
    out.receipts
        .iter()
        .flat_map(|r| r.events.iter())
        .chain(out.events.iter())
        .filter_map(|e| match &e.body {
            EventBody::AnomalyRaised { anomaly, code, .. } => Some((*anomaly, code.clone())),
            _ => None,
        })
        .collect()
}

fn payments(out: &BlockOutcome) -> Vec<(Hash, u32)> {
    out.events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Money(m) if m.flow == MoneyFlow::Disbursement && m.entitlement.is_some() => {
                match &m.to {
                    aidledger_contracts::Party::Household(h) => {
                        Some((*h, m.period.unwrap_or(u32::MAX)))
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

fn resolve(c: &mut Chain, id: u64) -> BlockOutcome {
    let txs = c.resolve_txs(id);
    c.ok(txs)
}

fn funded(c: &mut Chain) {
    let p = c.f.create_program("fund", 1_000_000_000);
    let d = c.f.deposit("fund", 1_000_000);
    c.ok(vec![p, d]);
}

#[test]
fn duplicate_household_raises_an_anomaly_and_holds_its_tranche_until_resolved() {
    let mut c = Chain::new();
    funded(&mut c);
    let (h, reg) = c.f.register_household();
    c.ok(vec![reg]);
    // A second registrar registers the same id: applied, but flagged.
    let dup = c.f.sign_as(
        "county-unit",
        Role::Registrar,
        &Payload::RegisterHousehold(payload::RegisterHousehold {
            id: h,
            region: "gansu/dingxi".parse().expect("r"),
        }),
    );
    let out = c.ok(vec![dup]);
    assert_eq!(raised(&out), vec![(0, "duplicate-household".to_string())]);
    let hh: aidledger_contracts::Household = c.get(&keys::household(&h)).expect("household");
    assert_eq!(
        hh.registered_by.as_str(),
        "poverty-office",
        "the first file is untouched"
    );

    // A tranche to the household is due now but held.
    let plan = Payload::CreatePlan(payload::CreatePlan {
        id: slug("p"),
        program: slug("fund"),
        application: None,
        tranches: vec![TrancheSpec {
            id: slug("t"),
            amount: Amount(500),
            recipient: Recipient::Household(h),
            condition: parse("after(2026-01-01)").expect("c"),
        }],
    });
    let tx = c.f.sign_as("poverty-office", Role::ProgramOfficer, &plan);
    let approve = c.f.approve_plan("dev-bank", "p");
    let out = c.ok(vec![tx, approve]);
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e.body, EventBody::TrancheHeld { .. })));
    assert!(!out
        .events
        .iter()
        .any(|e| matches!(&e.body, EventBody::Money(m) if m.flow == MoneyFlow::Disbursement)));
    let out = c.block(vec![]);
    assert!(
        out.events.is_empty(),
        "a hold is reported once: {:?}",
        out.events
    );

    // Resolving releases it in the same block.
    let out = resolve(&mut c, 0);
    assert!(out.events.iter().any(|e| matches!(&e.body, EventBody::Money(m) if m.flow == MoneyFlow::Disbursement && m.amount == Amount(500))));
    let a: Anomaly = c.get(&keys::anomaly(0)).expect("anomaly");
    assert!(matches!(a.status, AnomalyStatus::Resolved { .. }));
}

#[test]
fn conflicting_attestations_raise_an_anomaly_and_agreeing_ones_do_not() {
    let mut c = Chain::new();
    let (h, reg) = c.f.register_household();
    c.ok(vec![reg]);
    let s = Subject::Household(h);
    let a1 =
        c.f.attest("poverty-office", s.clone(), "income-band", "below-line");
    let a2 =
        c.f.attest("finance-bureau", s.clone(), "income-band", "below-line");
    let out = c.ok(vec![a1, a2]);
    assert!(raised(&out).is_empty());
    let a3 =
        c.f.attest("county-unit", s.clone(), "income-band", "above-line");
    let out = c.ok(vec![a3]);
    assert_eq!(
        raised(&out),
        vec![(0, "conflicting-attestation".to_string())]
    );
    let a: Anomaly = c.get(&keys::anomaly(0)).expect("anomaly");
    assert_eq!(a.subject, s);
    assert!(matches!(a.kind, AnomalyKind::ConflictingAttestation { .. }));
    // The same organisation cannot attest the same claim twice.
    let again = c.f.attest("county-unit", s, "income-band", "below-line");
    let out = c.block(vec![again]);
    assert_eq!(out.receipts[0].rejection_code(), Some("already-exists"));
}

/// Issue 14, defect 1: the county unit, the applicant and so the
/// recipient, resolved the anomaly against its own application and took
/// the money. A resolver's organisation must not be the one the anomaly
/// holds money for.
#[test]
fn a_recipient_cannot_resolve_an_anomaly_that_holds_its_own_money() {
    let mut c = Chain::new();
    funded(&mut c);
    let submit = c.f.sign_as(
        "county-unit",
        Role::ProgramOfficer,
        &Payload::SubmitApplication(payload::SubmitApplication {
            id: slug("well"),
            program: slug("fund"),
            applicant: "county-unit".parse().expect("org"),
            region: "gansu/dingxi".parse().expect("region"),
            requested: aidledger_types::Amount(3_000),
            purpose: text("a well"),
            doc_hash: aidledger_types::hash::sha256(b"doc"),
        }),
    );
    c.ok(vec![submit]);
    let s = Subject::Application(slug("well"));
    let a1 =
        c.f.attest("poverty-office", s.clone(), "site-checked", "yes");
    let a2 =
        c.f.attest("finance-bureau", s.clone(), "site-checked", "no");
    let out = c.ok(vec![a1, a2]);
    let (id, code) = raised(&out).pop().expect("an anomaly");
    assert_eq!(code, "conflicting-attestation");
    let by_recipient = c.f.sign_as(
        "county-unit",
        Role::ProgramOfficer,
        &Payload::ResolveAnomaly(payload::ResolveAnomaly {
            anomaly: id,
            note: text("fine"),
        }),
    );
    let out = c.block(vec![by_recipient]);
    assert_eq!(out.receipts[0].rejection_code(), Some("not-permitted"));
    let a: Anomaly = c.get(&keys::anomaly(id)).expect("anomaly");
    assert_eq!(a.status, AnomalyStatus::Open, "still holding");
    // Another organisation's auditor may resolve it.
    resolve(&mut c, id);
    let a: Anomaly = c.get(&keys::anomaly(id)).expect("anomaly");
    assert!(matches!(a.status, AnomalyStatus::Resolved { .. }));
}

#[test]
fn release_to_an_ineligible_household_raises_an_anomaly() {
    let mut c = Chain::new();
    funded(&mut c);
    let stranger = sha256(b"never registered");
    let plan = Payload::CreatePlan(payload::CreatePlan {
        id: slug("p"),
        program: slug("fund"),
        application: None,
        tranches: vec![TrancheSpec {
            id: slug("t"),
            amount: Amount(500),
            recipient: Recipient::Household(stranger),
            condition: parse("after(1)").expect("c"),
        }],
    });
    let tx = c.f.sign_as("poverty-office", Role::ProgramOfficer, &plan);
    let approve = c.f.approve_plan("dev-bank", "p");
    let out = c.ok(vec![tx, approve]);
    assert_eq!(raised(&out), vec![(0, "ineligible-recipient".to_string())]);
    assert_eq!(c.program("fund").balances.released, Amount(0));
    // Held while the anomaly is open: no new anomaly every block.
    let out = c.block(vec![]);
    assert!(raised(&out).is_empty());
    // Cancelling returns the commitment.
    let cancel = c.f.sign_as(
        "poverty-office",
        Role::ProgramOfficer,
        &Payload::CancelTranche(payload::CancelTranche {
            plan: slug("p"),
            tranche: slug("t"),
        }),
    );
    c.ok(vec![cancel]);
    let b = c.program("fund").balances;
    assert_eq!((b.available.0, b.committed.0), (1_000_000, 0));
}

#[test]
fn settlement_mismatch_and_overdue_settlement_raise_anomalies() {
    let mut c = Chain::new();
    funded(&mut c);
    let tx = c.f.create_plan(
        "p",
        "fund",
        None,
        &[
            ("a", 100, parse("after(1)").expect("c")),
            ("b", 200, parse("after(1)").expect("c")),
        ],
    );
    let approve = c.f.approve_plan("dev-bank", "p");
    c.ok(vec![tx, approve]);
    assert_eq!(c.program("fund").balances.released.0, 300);
    let settle = |r: u64, a: u64| {
        Payload::Settle(payload::Settle {
            release: r,
            amount: Amount(a),
            bank_ref: sha256(b"bank ref"),
        })
    };
    let wrong = c.f.sign_as("state-bank", Role::Disburser, &settle(0, 99));
    let out = c.ok(vec![wrong]);
    assert_eq!(raised(&out), vec![(0, "settlement-mismatch".to_string())]);
    assert_eq!(c.program("fund").balances.settled.0, 0);
    let right = c.f.sign_as("state-bank", Role::Disburser, &settle(0, 100));
    c.ok(vec![right]);
    assert_eq!(c.program("fund").balances.settled.0, 100);
    let twice = c.f.sign_as("state-bank", Role::Disburser, &settle(0, 100));
    assert_eq!(
        c.block(vec![twice]).receipts[0].rejection_code(),
        Some("wrong-status")
    );

    // Release 1 was made at block 2; it becomes overdue after the deadline.
    let made = c.release(1).time;
    let deadline = c.genesis.params.settlement_deadline_ms;
    let out = c.block_at(Timestamp(made.0 + deadline), vec![]);
    assert!(
        raised(&out).is_empty(),
        "exactly at the deadline is not overdue"
    );
    let out = c.block_at(Timestamp(made.0 + deadline + 1), vec![]);
    assert_eq!(raised(&out), vec![(1, "settlement-overdue".to_string())]);
    let out = c.block(vec![]);
    assert!(raised(&out).is_empty(), "overdue is raised once");
}

#[test]
fn entitlements_pay_each_period_once_and_hold_then_catch_up_after_resolve() {
    let mut c = Chain::new();
    funded(&mut c);
    let (h1, r1) = c.f.register_household();
    let (h2, r2) = c.f.register_household();
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let ent =
        c.f.set_entitlement("monthly", "fund", 1_000, start, 10 * DAY, 3);
    c.ok(vec![r1, r2, ent]);

    // Before the start: nothing. At the start: period 0 for both.
    let out = c.block_at(Timestamp(start.0 - 1), vec![]);
    assert!(payments(&out).is_empty());
    let out = c.block_at(start, vec![]);
    let mut p = payments(&out);
    p.sort();
    let mut expect = vec![(h1, 0), (h2, 0)];
    expect.sort();
    assert_eq!(p, expect);
    // Later blocks in the same period pay nothing.
    let out = c.block_at(Timestamp(start.0 + DAY), vec![]);
    assert!(payments(&out).is_empty());

    // Conflicting attestations about h1 open an anomaly: h1 is held in period 1.
    let a1 =
        c.f.attest("poverty-office", Subject::Household(h1), "resident", "yes");
    let a2 =
        c.f.attest("county-unit", Subject::Household(h1), "resident", "no");
    c.ok(vec![a1, a2]);
    let out = c.block_at(Timestamp(start.0 + 10 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(h2, 1)]);
    assert!(out.events.iter().any(|e| matches!(&e.body, EventBody::EntitlementHeld { household, period: 1, .. } if *household == h1)));
    let out = c.block_at(Timestamp(start.0 + 20 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(h2, 2)]);

    // Resolving pays h1's missed periods 1 and 2, once.
    let out = resolve(&mut c, 0);
    assert_eq!(payments(&out), vec![(h1, 1), (h1, 2)]);
    let out = c.block_at(Timestamp(start.0 + 40 * DAY), vec![]);
    assert!(
        payments(&out).is_empty(),
        "never twice, and nothing after the last period"
    );
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e.body, EventBody::EntitlementEnded { .. })));
    let b = c.program("fund").balances;
    assert_eq!(b.released.0, 6 * 1_000);
    assert!(b.conserved());
}

#[test]
fn inactive_households_forfeit_periods_and_late_registrations_start_at_the_next_scan() {
    let mut c = Chain::new();
    funded(&mut c);
    let (h1, r1) = c.f.register_household();
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let ent =
        c.f.set_entitlement("monthly", "fund", 1_000, start, 10 * DAY, 3);
    c.ok(vec![r1, ent]);
    let out = c.block_at(start, vec![]);
    assert_eq!(payments(&out), vec![(h1, 0)]);
    let up = c.f.sign_as(
        "poverty-office",
        Role::Registrar,
        &Payload::UpdateHousehold(payload::UpdateHousehold {
            id: h1,
            region: "gansu/dingxi/village-0".parse().expect("r"),
            status: HouseholdStatus::Inactive,
        }),
    );
    let (h2, r2) = c.f.register_household();
    c.ok(vec![up, r2]);
    let out = c.block_at(Timestamp(start.0 + 10 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(h2, 1)]);
    let _ = TxFactory::household_id(0);
}

#[test]
fn a_large_entitlement_scan_is_spread_over_blocks_and_pays_each_household_once() {
    let mut c = Chain::with(|g| g.params.entitlement_batch = 2);
    funded(&mut c);
    let mut txs = Vec::new();
    let mut all = Vec::new();
    for _ in 0..5 {
        let (h, tx) = c.f.register_household();
        all.push(h);
        txs.push(tx);
    }
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    txs.push(c.f.set_entitlement("monthly", "fund", 10, start, 10 * DAY, 2));
    c.ok(txs);
    let mut paid = Vec::new();
    let mut per_block = Vec::new();
    for i in 0..4 {
        let out = c.block_at(Timestamp(start.0 + i), vec![]);
        per_block.push(payments(&out).len());
        paid.extend(payments(&out));
    }
    assert_eq!(per_block, vec![2, 2, 1, 0]);
    paid.sort();
    let mut expect: Vec<(Hash, u32)> = all.iter().map(|h| (*h, 0)).collect();
    expect.sort();
    assert_eq!(paid, expect);
}
