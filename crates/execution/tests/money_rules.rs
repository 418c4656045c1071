#![allow(clippy::unwrap_used)]
//! Money goes only where the rules say (issue 14): each defect found by
//! trying the chain as a careless operator or a dishonest insider, as a
//! test that fails without its fix.

mod common;

use aidledger_contracts::model::{Eligibility, GovAction, OrgKind, ParamValue, Status};
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{EventBody, HouseholdStatus, MoneyFlow, Party};
use aidledger_execution::BlockOutcome;
use aidledger_types::{Amount, Hash, Role, Timestamp};
use common::{Chain, DAY};

fn payments(out: &BlockOutcome) -> Vec<(Hash, u32)> {
    let mut v: Vec<(Hash, u32)> = out
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Money(m) if m.flow == MoneyFlow::Disbursement && m.entitlement.is_some() => {
                match &m.to {
                    Party::Household(h) => Some((*h, m.period.unwrap_or(u32::MAX))),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn forfeits(out: &BlockOutcome) -> Vec<(Hash, u32, u32, String)> {
    out.events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::EntitlementForfeited {
                household,
                from,
                through,
                reason,
                ..
            } => Some((*household, *from, *through, reason.clone())),
            _ => None,
        })
        .collect()
}

fn raised_codes(out: &BlockOutcome) -> Vec<String> {
    out.receipts
        .iter()
        .flat_map(|r| r.events.iter())
        .chain(out.events.iter())
        .filter_map(|e| match &e.body {
            EventBody::AnomalyRaised { code, .. } => Some(code.clone()),
            _ => None,
        })
        .collect()
}

fn funded(c: &mut Chain) {
    let p = c.f.create_program("fund", 1_000_000_000);
    let d = c.f.deposit("fund", 1_000_000);
    c.ok(vec![p, d]);
}

fn register_at(c: &mut Chain, n: u64, region: &str) -> (Hash, aidledger_types::SignedTx) {
    let id = aidledger_execution::testkit::TxFactory::household_id(10_000 + n);
    let tx = c.f.sign_as(
        "poverty-office",
        Role::Registrar,
        &Payload::RegisterHousehold(payload::RegisterHousehold {
            id,
            region: region.parse().unwrap(),
        }),
    );
    (id, tx)
}

fn move_to(c: &mut Chain, h: Hash, region: &str) -> aidledger_types::SignedTx {
    c.f.sign_as(
        "poverty-office",
        Role::Registrar,
        &Payload::UpdateHousehold(payload::UpdateHousehold {
            id: h,
            region: region.parse().unwrap(),
            status: HouseholdStatus::Active,
        }),
    )
}

fn list_entitlement(
    c: &mut Chain,
    id: &str,
    start: Timestamp,
    households: Vec<Hash>,
) -> aidledger_types::SignedTx {
    c.f.sign_as(
        "poverty-office",
        Role::ProgramOfficer,
        &Payload::SetEntitlement(payload::SetEntitlement {
            id: id.parse().unwrap(),
            program: "fund".parse().unwrap(),
            amount: Amount(1_000),
            period_ms: 10 * DAY,
            start,
            periods: 3,
            eligibility: Eligibility::List(households),
        }),
    )
}

#[test]
fn a_listed_household_outside_the_program_scope_is_not_paid_and_raises_an_anomaly() {
    let mut c = Chain::new();
    funded(&mut c);
    let (inside, r1) = register_at(&mut c, 1, "gansu/dingxi/village-0");
    let (outside, r2) = register_at(&mut c, 2, "qinghai/xining");
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let e = list_entitlement(&mut c, "listed", start, vec![inside, outside]);
    c.ok(vec![r1, r2, e]);

    let out = c.block_at(start, vec![]);
    assert_eq!(payments(&out), vec![(inside, 0)]);
    assert_eq!(raised_codes(&out), vec!["ineligible-recipient".to_string()]);
    let f = forfeits(&out);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].0, f[0].1, f[0].2), (outside, 0, 0));
    assert!(f[0].3.contains("outside the program scope"), "{}", f[0].3);

    // Every later period: still not paid, and the anomaly is raised once.
    let out = c.block_at(Timestamp(start.0 + 10 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(inside, 1)]);
    // (The unsettled first payment is overdue by now: that anomaly is
    // about the release, not the household.)
    assert!(
        !raised_codes(&out).contains(&"ineligible-recipient".to_string()),
        "{:?}",
        raised_codes(&out)
    );
    let b = c.program("fund").balances;
    assert_eq!(b.released.0, 2 * 1_000);
    assert!(b.conserved());
}

#[test]
fn an_entitlement_cannot_list_an_unregistered_household() {
    let mut c = Chain::new();
    funded(&mut c);
    let (known, r1) = register_at(&mut c, 1, "gansu/dingxi/village-0");
    c.ok(vec![r1]);
    let ghost = aidledger_execution::testkit::TxFactory::household_id(99_999);
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let e = list_entitlement(&mut c, "listed", start, vec![known, ghost]);
    let out = c.block(vec![e]);
    let r = &out.receipts[0];
    assert!(!r.is_applied());
    assert!(
        format!("{:?}", r.outcome).contains("is not registered"),
        "{:?}",
        r.outcome
    );
}

#[test]
fn a_household_that_moved_out_forfeits_the_periods_it_was_away() {
    let mut c = Chain::new();
    funded(&mut c);
    let (h, r) = register_at(&mut c, 1, "gansu/dingxi/village-0");
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let e =
        c.f.set_entitlement("monthly", "fund", 1_000, start, 10 * DAY, 4);
    c.ok(vec![r, e]);
    assert_eq!(payments(&c.block_at(start, vec![])), vec![(h, 0)]);

    // It leaves the region for the whole of period 1...
    let away = move_to(&mut c, h, "qinghai/xining");
    c.ok(vec![away]);
    let out = c.block_at(Timestamp(start.0 + 10 * DAY), vec![]);
    assert!(payments(&out).is_empty());
    // ...and comes back in period 2: paid for period 2, never for 1.
    let back = move_to(&mut c, h, "gansu/dingxi/village-1");
    c.ok(vec![back]);
    let out = c.block_at(Timestamp(start.0 + 20 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(h, 2)]);
    let f = forfeits(&out);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].1, f[0].2), (1, 1));
    let out = c.block_at(Timestamp(start.0 + 30 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(h, 3)]);
    assert_eq!(c.program("fund").balances.released.0, 3 * 1_000);
}

#[test]
fn a_chain_that_skips_a_period_still_pays_it_to_households_that_never_left() {
    // No block at all during period 1: no scan missed the household, so
    // the catch-up pays period 1 (forfeiture is for absence, not for a
    // quiet chain).
    let mut c = Chain::new();
    funded(&mut c);
    let (h, r) = register_at(&mut c, 1, "gansu/dingxi/village-0");
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let e =
        c.f.set_entitlement("monthly", "fund", 1_000, start, 10 * DAY, 3);
    c.ok(vec![r, e]);
    assert_eq!(payments(&c.block_at(start, vec![])), vec![(h, 0)]);
    let out = c.block_at(Timestamp(start.0 + 20 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(h, 1), (h, 2)]);
}

#[test]
fn two_identical_entitlements_pay_a_household_once_per_period() {
    // The second entitlement's periods overlap time already paid: each is
    // forfeited with a reason instead of paid twice.
    let mut c = Chain::new();
    funded(&mut c);
    let (h1, r1) = register_at(&mut c, 1, "gansu/dingxi/village-0");
    let (h2, r2) = register_at(&mut c, 2, "gansu/dingxi/village-2");
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let a =
        c.f.set_entitlement("monthly-a", "fund", 1_000, start, 10 * DAY, 3);
    let b =
        c.f.set_entitlement("monthly-b", "fund", 1_000, start, 10 * DAY, 3);
    c.ok(vec![r1, r2, a, b]);
    for k in 0..3u64 {
        let out = c.block_at(Timestamp(start.0 + k * 10 * DAY), vec![]);
        assert_eq!(
            payments(&out),
            {
                let mut v = vec![(h1, k as u32), (h2, k as u32)];
                v.sort();
                v
            },
            "period {k}"
        );
    }
    let b = c.program("fund").balances;
    assert_eq!(b.released.0, 6 * 1_000);
    assert!(b.conserved());
}

fn propose(c: &mut Chain, by: &str, action: GovAction) -> BlockOutcome {
    let tx = c.f.sign_as(
        by,
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose { action }),
    );
    c.block(vec![tx])
}

fn approve(c: &mut Chain, by: &str, proposal: u64) -> BlockOutcome {
    let tx = c.f.sign_as(
        by,
        Role::Admin,
        &Payload::GovApprove(payload::GovApprove { proposal }),
    );
    c.block(vec![tx])
}

fn rejected_with(out: &BlockOutcome, text: &str) {
    let r = &out.receipts[0];
    assert!(!r.is_applied(), "applied, expected a rejection: {text}");
    let why = format!("{:?}", r.outcome);
    assert!(why.contains(text), "{why}");
}

fn suspend(org: &str, name: &str, kind: OrgKind) -> GovAction {
    GovAction::UpdateOrg {
        id: org.parse().unwrap(),
        name: name.parse().unwrap(),
        kind,
        status: Status::Suspended,
    }
}

#[test]
fn the_governance_threshold_can_never_exceed_the_organisations_that_can_approve() {
    // Six organisations, five of them with an admin account (the county
    // unit has none); threshold 2.
    let mut c = Chain::new();
    let threshold = |t| GovAction::SetParam {
        param: ParamValue::GovernanceThreshold(t),
    };
    rejected_with(&propose(&mut c, "state-bank", threshold(7)), "threshold");
    rejected_with(&propose(&mut c, "state-bank", threshold(6)), "threshold");

    // Two proposals, each fine alone: a threshold of 5, and suspending the
    // audit office. Once the suspension executes, the threshold is
    // checked again and refused: 5 > 4 organisations that can approve.
    assert!(propose(&mut c, "state-bank", threshold(5)).receipts[0].is_applied());
    let s = suspend("audit-office", "Audit Office", OrgKind::Auditor);
    assert!(propose(&mut c, "state-bank", s).receipts[0].is_applied());
    assert!(approve(&mut c, "dev-bank", 1).receipts[0].is_applied());
    rejected_with(&approve(&mut c, "dev-bank", 0), "threshold");

    // A threshold of 4 executes; then suspending one more organisation
    // would leave 3 that can approve: refused at once.
    assert!(propose(&mut c, "state-bank", threshold(4)).receipts[0].is_applied());
    assert!(approve(&mut c, "dev-bank", 2).receipts[0].is_applied());
    let s = suspend("finance-bureau", "Finance Bureau", OrgKind::FinanceBureau);
    rejected_with(&propose(&mut c, "state-bank", s), "threshold");
    // Suspending the county unit, which has no admin, changes nothing.
    let s = suspend(
        "county-unit",
        "County Implementation Unit",
        OrgKind::ImplementingUnit,
    );
    assert!(propose(&mut c, "state-bank", s).receipts[0].is_applied());
}

#[test]
fn a_genesis_whose_threshold_no_set_of_organisations_can_reach_is_refused() {
    let (mut g, _) = aidledger_execution::testkit::dev_genesis(4, 7);
    g.params.governance_threshold = 6;
    let e = g.validate().unwrap_err().to_string();
    assert!(e.contains("governance threshold"), "{e}");
    g.params.governance_threshold = 5;
    g.validate().unwrap();
}

#[test]
fn an_entitlement_overlapping_part_of_a_paid_period_is_not_paid_for_it() {
    let mut c = Chain::new();
    funded(&mut c);
    let (h, r) = register_at(&mut c, 1, "gansu/dingxi/village-0");
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let a =
        c.f.set_entitlement("monthly", "fund", 1_000, start, 10 * DAY, 1);
    // Starts half-way through the first entitlement's only period.
    let later = list_entitlement(&mut c, "listed", Timestamp(start.0 + 5 * DAY), vec![h]);
    c.ok(vec![r, a, later]);
    assert_eq!(payments(&c.block_at(start, vec![])), vec![(h, 0)]);
    let out = c.block_at(Timestamp(start.0 + 5 * DAY), vec![]);
    assert!(payments(&out).is_empty());
    assert!(
        forfeits(&out)[0].3.contains("already paid"),
        "{:?}",
        forfeits(&out)
    );
    // Its next period starts after the paid window ends: paid.
    let out = c.block_at(Timestamp(start.0 + 15 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(h, 1)]);
}

#[test]
fn one_program_cannot_take_every_pending_tranche_from_the_others() {
    let mut c = Chain::with(|g| g.params.max_pending_tranches_per_program = 3);
    let never = || aidledger_contracts::condition_text::parse("before(2000-01-01)").unwrap();
    let a = c.f.create_program("greedy", 1_000_000_000);
    let da = c.f.deposit("greedy", 1_000_000);
    let b = c.f.create_program("other", 1_000_000_000);
    let db = c.f.deposit("other", 1_000_000);
    c.ok(vec![a, da, b, db]);
    let p1 = c.f.create_plan(
        "p1",
        "greedy",
        None,
        &[("t1", 1, never()), ("t2", 1, never()), ("t3", 1, never())],
    );
    c.ok(vec![p1]);
    let p2 = c.f.create_plan("p2", "greedy", None, &[("t1", 1, never())]);
    rejected_with(&c.block(vec![p2]), "pending tranches of one program");
    // The other program still has its own room.
    let p3 = c.f.create_plan("p3", "other", None, &[("t1", 1, never())]);
    c.ok(vec![p3]);
    // Cancelling one of the greedy program's tranches gives it room back.
    let cancel = c.f.sign_as(
        "poverty-office",
        Role::ProgramOfficer,
        &Payload::CancelTranche(payload::CancelTranche {
            plan: "p1".parse().unwrap(),
            tranche: "t1".parse().unwrap(),
        }),
    );
    c.ok(vec![cancel]);
    let p4 = c.f.create_plan("p4", "greedy", None, &[("t1", 1, never())]);
    c.ok(vec![p4]);
}

#[test]
fn an_all_with_seventeen_children_fails_as_the_contracts_guide_says() {
    use aidledger_contracts::Condition;
    let seventeen = vec![Condition::After(Timestamp(1)); 17];
    // As text: refused before anything is signed.
    let text = format!("all({})", vec!["after(1)"; 17].join(", "));
    let e = aidledger_contracts::condition_text::parse(&text).unwrap_err();
    assert_eq!(e.code(), "condition-syntax", "{e}");
    assert!(e.to_string().contains("17 children"), "{e}");
    // As a payload: the decoder refuses it (docs/contracts.md, Encoding).
    let mut c = Chain::new();
    funded(&mut c);
    let p =
        c.f.create_plan("wide", "fund", None, &[("t", 1, Condition::All(seventeen))]);
    let out = c.block(vec![p]);
    assert_eq!(out.receipts[0].rejection_code(), Some("bad-payload"));
    // Sixteen is fine.
    let sixteen = vec![Condition::After(Timestamp(1)); 16];
    let p =
        c.f.create_plan("ok", "fund", None, &[("t", 1, Condition::All(sixteen))]);
    c.ok(vec![p]);
}

#[test]
fn an_approval_from_an_organisation_suspended_since_no_longer_counts() {
    let mut c = Chain::new(); // threshold 2
    let batch = GovAction::SetParam {
        param: ParamValue::EntitlementBatch(5),
    };
    assert!(propose(&mut c, "state-bank", batch).receipts[0].is_applied()); // proposal 0
    let s = suspend("state-bank", "State Bank", OrgKind::Bank);
    assert!(propose(&mut c, "dev-bank", s).receipts[0].is_applied()); // proposal 1
    assert!(approve(&mut c, "poverty-office", 1).receipts[0].is_applied());
    // Proposal 0 has state-bank's approval, now suspended: dev-bank's is
    // the only live one, so nothing executes yet.
    assert!(approve(&mut c, "dev-bank", 0).receipts[0].is_applied());
    let p: aidledger_contracts::model::Params = c.get(aidledger_contracts::keys::PARAMS).unwrap();
    assert_ne!(p.entitlement_batch, 5);
    assert!(approve(&mut c, "poverty-office", 0).receipts[0].is_applied());
    let p: aidledger_contracts::model::Params = c.get(aidledger_contracts::keys::PARAMS).unwrap();
    assert_eq!(p.entitlement_batch, 5);
}

#[test]
fn taking_away_the_last_admins_below_the_threshold_is_refused() {
    let mut c = Chain::new();
    let threshold = |t| GovAction::SetParam {
        param: ParamValue::GovernanceThreshold(t),
    };
    // Threshold 5: every organisation with an admin must approve.
    assert!(propose(&mut c, "state-bank", threshold(5)).receipts[0].is_applied());
    assert!(approve(&mut c, "dev-bank", 0).receipts[0].is_applied());
    // Suspending the audit office's only admin account, or taking its
    // admin role away, would leave four organisations that can approve.
    let admin = c.f.keys.op("audit-office", Role::Admin).public();
    let by_status = GovAction::SetAccountStatus {
        key: admin,
        status: Status::Suspended,
    };
    let by_roles = GovAction::SetRoles {
        key: admin,
        roles: vec![Role::Auditor],
    };
    for (i, action) in [by_status, by_roles].into_iter().enumerate() {
        let id = 1 + i as u64;
        assert!(propose(&mut c, "state-bank", action).receipts[0].is_applied());
        for org in ["dev-bank", "poverty-office", "finance-bureau"] {
            assert!(approve(&mut c, org, id).receipts[0].is_applied());
        }
        rejected_with(&approve(&mut c, "audit-office", id), "threshold");
    }
}

#[test]
fn a_held_household_that_never_left_still_gets_every_held_period() {
    // The absence rule must not eat periods held by an anomaly: the
    // household was in the region at every scan.
    let mut c = Chain::new();
    funded(&mut c);
    let (h, r) = register_at(&mut c, 1, "gansu/dingxi/village-0");
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let e =
        c.f.set_entitlement("monthly", "fund", 1_000, start, 10 * DAY, 3);
    c.ok(vec![r, e]);
    assert_eq!(payments(&c.block_at(start, vec![])), vec![(h, 0)]);
    let a1 = c.f.attest(
        "poverty-office",
        aidledger_contracts::Subject::Household(h),
        "resident",
        "yes",
    );
    let a2 = c.f.attest(
        "county-unit",
        aidledger_contracts::Subject::Household(h),
        "resident",
        "no",
    );
    c.ok(vec![a1, a2]);
    assert!(payments(&c.block_at(Timestamp(start.0 + 10 * DAY), vec![])).is_empty());
    assert!(payments(&c.block_at(Timestamp(start.0 + 20 * DAY), vec![])).is_empty());
    let anomaly = c
        .get::<aidledger_contracts::Anomaly>(&aidledger_contracts::keys::anomaly(0))
        .unwrap();
    assert_eq!(anomaly.id, 0);
    let resolve = c.resolve_txs(0);
    let out = c.ok(resolve);
    assert_eq!(payments(&out), vec![(h, 1), (h, 2)]);
}

#[test]
fn an_inactive_household_forfeits_the_periods_it_was_inactive_for() {
    let mut c = Chain::new();
    funded(&mut c);
    let (h, r) = register_at(&mut c, 1, "gansu/dingxi/village-0");
    let start = Timestamp(Chain::genesis_time().0 + DAY);
    let e =
        c.f.set_entitlement("monthly", "fund", 1_000, start, 10 * DAY, 4);
    c.ok(vec![r, e]);
    assert_eq!(payments(&c.block_at(start, vec![])), vec![(h, 0)]);
    let status = |c: &mut Chain, s| {
        c.f.sign_as(
            "poverty-office",
            Role::Registrar,
            &Payload::UpdateHousehold(payload::UpdateHousehold {
                id: h,
                region: "gansu/dingxi/village-0".parse().unwrap(),
                status: s,
            }),
        )
    };
    let off = status(&mut c, HouseholdStatus::Inactive);
    c.ok(vec![off]);
    assert!(payments(&c.block_at(Timestamp(start.0 + 10 * DAY), vec![])).is_empty());
    let on = status(&mut c, HouseholdStatus::Active);
    c.ok(vec![on]);
    let out = c.block_at(Timestamp(start.0 + 20 * DAY), vec![]);
    assert_eq!(payments(&out), vec![(h, 2)]);
}
