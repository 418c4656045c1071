#![allow(clippy::unwrap_used)]
//! Module rules of docs/contracts.md, one rule per test, through block
//! execution: programs, applications, plans and releases, households,
//! attestations, settlements, governance, receipts and events. Every
//! refusal is checked to keep nothing but the signer's consumed nonce: the
//! block's writes, without the signer's account, equal an empty block's.

mod common;

use aidledger_contracts::condition_text::parse;
use aidledger_contracts::model::{GovAction, OrgKind, ParamValue, Params, ProposalStatus, Status};
use aidledger_contracts::payload::{self, Payload, TrancheSpec};
use aidledger_contracts::{
    keys, Anomaly, AnomalyKind, ApplicationStatus, AttestValue, Condition, Entitlement,
    EntitlementStatus, EventBody, Household, HouseholdStatus, MoneyEvent, MoneyFlow, Org, Party,
    Program, ProgramStatus, Proposal, Recipient, SettlementStatus, Subject, TrancheStatus,
};
use aidledger_crypto::Keypair;
use aidledger_execution::{apply_block, BlockOutcome, ExecError, StateRead};
use aidledger_types::hash::sha256;
use aidledger_types::{codec, Amount, Hash, OrgId, Role, SignedTx, Slug, Timestamp};
use common::{Chain, DAY};

fn slug(s: &str) -> Slug {
    s.parse().unwrap()
}
fn org(s: &str) -> OrgId {
    s.parse().unwrap()
}
fn text(s: &str) -> aidledger_types::Text {
    s.parse().unwrap()
}
fn cond(s: &str) -> Condition {
    parse(s).unwrap()
}

/// Runs `tx` alone in the next block and asserts it was refused with
/// `code`, emitted nothing, and changed nothing but its signer's nonce.
/// Returns the reason.
fn refused(c: &mut Chain, tx: SignedTx, code: &str) -> String {
    let signer = tx.body.signer;
    let nonce = c.account(&signer).nonce;
    let empty = apply_block(&c.state, &c.acc, &c.next_ctx(), &[]).unwrap();
    let out = c.block(vec![tx]);
    let r = &out.receipts[0];
    assert_eq!(
        r.rejection_code(),
        Some(code),
        "{} refused with the wrong code: {:?}",
        r.kind,
        r.outcome
    );
    assert!(r.events.is_empty(), "a refused transaction emitted events");
    let mut writes = out.writes.clone();
    assert!(
        writes.remove(&keys::account(&signer)).is_some(),
        "the nonce was not consumed"
    );
    assert_eq!(
        writes, empty.writes,
        "a refused transaction wrote more than its nonce"
    );
    assert_eq!(c.account(&signer).nonce, nonce + 1);
    match &r.outcome {
        aidledger_contracts::TxOutcome::Rejected { reason, .. } => reason.clone(),
        aidledger_contracts::TxOutcome::Applied => unreachable!(),
    }
}

/// Every event of a block: the transactions' then the end of block's.
fn all_events(out: &BlockOutcome) -> Vec<EventBody> {
    out.receipts
        .iter()
        .flat_map(|r| r.events.iter())
        .chain(out.events.iter())
        .map(|e| e.body.clone())
        .collect()
}

fn money(out: &BlockOutcome) -> Vec<MoneyEvent> {
    all_events(out)
        .into_iter()
        .filter_map(|e| match e {
            EventBody::Money(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// The tranches released in the block, as (plan, tranche, amount).
fn released(out: &BlockOutcome) -> Vec<(String, String, u64)> {
    money(out)
        .into_iter()
        .filter(|m| m.flow == MoneyFlow::Disbursement)
        .map(|m| {
            (
                m.plan.map(|p| p.to_string()).unwrap_or_default(),
                m.tranche.map(|t| t.to_string()).unwrap_or_default(),
                m.amount.0,
            )
        })
        .collect()
}

fn raised(out: &BlockOutcome) -> Vec<(Subject, String)> {
    all_events(out)
        .into_iter()
        .filter_map(|e| match e {
            EventBody::AnomalyRaised { subject, code, .. } => Some((subject, code)),
            _ => None,
        })
        .collect()
}

/// (deposited, available, committed, released, settled, returned)
fn balances(c: &Chain, program: &str) -> (u64, u64, u64, u64, u64, u64) {
    let b = c.program(program).balances;
    assert!(b.conserved(), "{b:?}");
    (
        b.deposited.0,
        b.available.0,
        b.committed.0,
        b.released.0,
        b.settled.0,
        b.returned.0,
    )
}

/// The create-program payload of `TxFactory::create_program`, editable.
fn program_payload(id: &str, ceiling: u64) -> payload::CreateProgram {
    payload::CreateProgram {
        id: slug(id),
        title: text("Targeted poverty relief"),
        currency: "CNY".parse().unwrap(),
        decimals: 2,
        funding_orgs: vec![org("state-bank"), org("dev-bank")],
        budget_ceiling: Amount(ceiling),
        policy: aidledger_contracts::ApprovalPolicy {
            threshold: 2,
            orgs: vec![
                org("dev-bank"),
                org("finance-bureau"),
                org("poverty-office"),
            ],
        },
        region_scope: "gansu".parse().unwrap(),
    }
}

fn create_program(
    c: &mut Chain,
    id: &str,
    edit: impl FnOnce(&mut payload::CreateProgram),
) -> SignedTx {
    let mut p = program_payload(id, 1_000_000);
    edit(&mut p);
    officer(c, Payload::CreateProgram(p))
}

/// The poverty office's program officer, who owns the factory's programs.
fn officer(c: &mut Chain, p: Payload) -> SignedTx {
    c.f.sign_as("poverty-office", Role::ProgramOfficer, &p)
}

fn funded(c: &mut Chain, deposit: u64) {
    let p = c.f.create_program("fund", 1_000_000_000);
    let d = c.f.deposit("fund", deposit);
    c.ok(vec![p, d]);
}

fn submit(c: &mut Chain, id: &str, program: &str, region: &str, requested: u64) -> SignedTx {
    c.f.sign_as(
        "county-unit",
        Role::ProgramOfficer,
        &Payload::SubmitApplication(payload::SubmitApplication {
            id: slug(id),
            program: slug(program),
            applicant: org("county-unit"),
            region: region.parse().unwrap(),
            requested: Amount(requested),
            purpose: text("a village well"),
            doc_hash: sha256(id.as_bytes()),
        }),
    )
}

fn vote(c: &mut Chain, by: &str, application: &str, approve: bool) -> SignedTx {
    let v = payload::ApplicationVote {
        application: slug(application),
        note: text("reviewed"),
    };
    let p = if approve {
        Payload::ApproveApplication(v)
    } else {
        Payload::RejectApplication(v)
    };
    c.f.sign_as(by, Role::Approver, &p)
}

/// Submits application `id` to `program` and has two policy organisations
/// approve it.
fn approved_application(c: &mut Chain, id: &str, program: &str, requested: u64) {
    let s = submit(c, id, program, "gansu/dingxi", requested);
    c.ok(vec![s]);
    let a = vote(c, "poverty-office", id, true);
    let b = vote(c, "dev-bank", id, true);
    c.ok(vec![a, b]);
    assert_eq!(c.application(id).status, ApplicationStatus::Approved);
}

fn cancel(c: &mut Chain, plan: &str, tranche: &str) -> SignedTx {
    officer(
        c,
        Payload::CancelTranche(payload::CancelTranche {
            plan: slug(plan),
            tranche: slug(tranche),
        }),
    )
}

fn settle(c: &mut Chain, release: u64, amount: u64) -> SignedTx {
    c.f.sign_as(
        "state-bank",
        Role::Disburser,
        &Payload::Settle(payload::Settle {
            release,
            amount: Amount(amount),
            bank_ref: sha256(format!("bank ref {release} {amount}").as_bytes()),
        }),
    )
}

fn propose(c: &mut Chain, action: GovAction) -> SignedTx {
    c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose { action }),
    )
}

fn approve_proposal(c: &mut Chain, by: &str, proposal: u64) -> SignedTx {
    c.f.sign_as(
        by,
        Role::Admin,
        &Payload::GovApprove(payload::GovApprove { proposal }),
    )
}

/// Proposes `action` (state bank) and approves it (dev bank) in one block:
/// the threshold is 2, so it executes.
fn govern(c: &mut Chain, action: GovAction) -> BlockOutcome {
    let id: u64 = c.get(keys::PROPOSAL_SEQ).unwrap_or(0);
    let p = propose(c, action);
    let a = approve_proposal(c, "dev-bank", id);
    let out = c.ok(vec![p, a]);
    let executed = out.receipts[1]
        .events
        .iter()
        .any(|e| e.body == EventBody::ProposalExecuted { proposal: id });
    assert!(executed, "proposal {id} did not execute");
    out
}

fn set_org_status(c: &mut Chain, id: &str, status: Status) -> BlockOutcome {
    let o: Org = c.get(&keys::org(&org(id))).unwrap();
    govern(
        c,
        GovAction::UpdateOrg {
            id: o.id,
            name: o.name,
            kind: o.kind,
            status,
        },
    )
}

// --- Programs --------------------------------------------------------------

#[test]
fn a_programs_policy_threshold_must_be_between_one_and_the_number_of_policy_orgs() {
    let mut c = Chain::new();
    let tx = create_program(&mut c, "zero", |p| p.policy.threshold = 0);
    refused(&mut c, tx, "invalid");
    let tx = create_program(&mut c, "four", |p| p.policy.threshold = 4);
    let why = refused(&mut c, tx, "invalid");
    assert!(why.contains("threshold must be 1 to 3, got 4"), "{why}");
    let tx = create_program(&mut c, "three", |p| p.policy.threshold = 3);
    c.ok(vec![tx]);
    assert_eq!(c.program("three").policy.threshold, 3);
    assert!(c.get::<Program>(&keys::program(&slug("zero"))).is_none());
    assert!(c.get::<Program>(&keys::program(&slug("four"))).is_none());
}

#[test]
fn a_programs_organisations_are_distinct_one_to_thirty_two_and_stored_sorted() {
    let mut c = Chain::new();
    let tx = create_program(&mut c, "p", |p| {
        p.funding_orgs = vec![org("state-bank"), org("state-bank")]
    });
    assert!(refused(&mut c, tx, "invalid").contains("named twice"));
    let tx = create_program(&mut c, "p", |p| {
        p.policy.orgs = vec![org("dev-bank"), org("poverty-office"), org("dev-bank")]
    });
    assert!(refused(&mut c, tx, "invalid").contains("named twice"));
    let tx = create_program(&mut c, "p", |p| p.funding_orgs = vec![]);
    refused(&mut c, tx, "invalid");
    let tx = create_program(&mut c, "p", |p| {
        p.policy.orgs = vec![];
        p.policy.threshold = 1;
    });
    refused(&mut c, tx, "invalid");
    let tx = create_program(&mut c, "p", |p| {
        p.funding_orgs = (0..33).map(|i| org(&format!("bank-{i}"))).collect()
    });
    assert!(refused(&mut c, tx, "invalid").contains("1 to 32"));

    let tx = create_program(&mut c, "p", |p| {
        p.funding_orgs = vec![org("state-bank"), org("finance-bureau"), org("dev-bank")];
        p.policy.orgs = vec![org("poverty-office"), org("dev-bank")];
    });
    c.ok(vec![tx]);
    let p = c.program("p");
    assert_eq!(
        p.funding_orgs,
        vec![org("dev-bank"), org("finance-bureau"), org("state-bank")]
    );
    assert_eq!(p.policy.orgs, vec![org("dev-bank"), org("poverty-office")]);
    assert_eq!(p.owner, org("poverty-office"), "the signer's org owns it");
}

#[test]
fn a_programs_funding_and_policy_orgs_must_exist_and_be_active() {
    let mut c = Chain::new();
    let tx = create_program(&mut c, "p", |p| {
        p.funding_orgs = vec![org("state-bank"), org("nobody")]
    });
    refused(&mut c, tx, "not-found");
    let tx = create_program(&mut c, "p", |p| {
        p.policy.orgs = vec![org("dev-bank"), org("nobody")]
    });
    refused(&mut c, tx, "not-found");
    set_org_status(&mut c, "audit-office", Status::Suspended);
    let tx = create_program(&mut c, "p", |p| {
        p.funding_orgs = vec![org("state-bank"), org("audit-office")]
    });
    refused(&mut c, tx, "org-not-active");
    let tx = create_program(&mut c, "p", |p| {
        p.policy.orgs = vec![org("dev-bank"), org("audit-office")]
    });
    refused(&mut c, tx, "org-not-active");
}

#[test]
fn decimals_are_at_most_eight_and_the_budget_ceiling_is_positive() {
    let mut c = Chain::new();
    let tx = create_program(&mut c, "p", |p| p.decimals = 9);
    refused(&mut c, tx, "invalid");
    let tx = create_program(&mut c, "p", |p| p.budget_ceiling = Amount(0));
    refused(&mut c, tx, "invalid");
    let a = create_program(&mut c, "eight", |p| p.decimals = 8);
    let b = create_program(&mut c, "none", |p| {
        p.decimals = 0;
        p.budget_ceiling = Amount(1)
    });
    c.ok(vec![a, b]);
    assert_eq!(c.program("eight").decimals, 8);
    assert_eq!(c.program("none").budget_ceiling, Amount(1));
}

#[test]
fn deposits_may_fill_the_budget_ceiling_exactly_and_never_pass_it() {
    let mut c = Chain::new();
    let p = c.f.create_program("fund", 10_000);
    let d1 = c.f.deposit("fund", 4_000);
    let d2 = c.f.sign_as(
        "dev-bank",
        Role::Disburser,
        &Payload::Deposit(payload::Deposit {
            program: slug("fund"),
            amount: Amount(6_000),
        }),
    );
    c.ok(vec![p, d1, d2]);
    assert_eq!(balances(&c, "fund"), (10_000, 10_000, 0, 0, 0, 0));
    let one_more = c.f.deposit("fund", 1);
    refused(&mut c, one_more, "ceiling-exceeded");
    assert_eq!(balances(&c, "fund"), (10_000, 10_000, 0, 0, 0, 0));
    // Each deposit is an incoming-funds entry of the program's ledger.
    let ledger: Vec<MoneyEvent> = c
        .state
        .scan(&keys::ledger_prefix(&slug("fund")), None, 10)
        .unwrap()
        .into_iter()
        .map(|(_, v)| codec::decode(&v).unwrap())
        .collect();
    let seen: Vec<_> = ledger
        .iter()
        .map(|m| {
            (
                m.seq,
                m.flow,
                m.flow.iati_code(),
                m.amount.0,
                m.from.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                0,
                MoneyFlow::IncomingFunds,
                1,
                4_000,
                Party::Org(org("state-bank"))
            ),
            (
                1,
                MoneyFlow::IncomingFunds,
                1,
                6_000,
                Party::Org(org("dev-bank"))
            ),
        ]
    );
    assert!(ledger
        .iter()
        .all(|m| m.to == Party::Program(slug("fund")) && !m.flow.is_reversal()));
}

#[test]
fn a_closed_program_returns_its_funds_ends_its_entitlements_and_refuses_everything() {
    let mut c = Chain::new();
    funded(&mut c, 5_000);
    let (_, reg) = c.f.register_household();
    let start = Timestamp(c.time().0 + 10_000);
    let ent = c.f.set_entitlement("monthly", "fund", 100, start, DAY, 3);
    c.ok(vec![reg, ent]);
    let close = officer(
        &mut c,
        Payload::CloseProgram(payload::CloseProgram {
            program: slug("fund"),
        }),
    );
    let out = c.ok(vec![close]);
    let events = all_events(&out);
    assert!(events.contains(&EventBody::ProgramClosed {
        program: slug("fund")
    }));
    let m = money(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].flow, m[0].flow.iati_code(), m[0].flow.is_reversal()),
        (MoneyFlow::FundsReturned, 1, true)
    );
    assert_eq!(m[0].amount, Amount(5_000));
    assert_eq!(m[0].from, Party::Program(slug("fund")));
    assert_eq!(c.program("fund").status, ProgramStatus::Closed);
    assert_eq!(balances(&c, "fund"), (5_000, 0, 0, 0, 0, 5_000));

    // The entitlement ends by the next block and pays nothing, ever.
    let next = c.block(vec![]);
    let ended = [&out, &next].iter().any(|o| {
        all_events(o).contains(&EventBody::EntitlementEnded {
            entitlement: slug("monthly"),
        })
    });
    assert!(ended, "no entitlement-ended event");
    let e: Entitlement = c.get(&keys::entitlement(&slug("monthly"))).unwrap();
    assert_eq!(e.status, EntitlementStatus::Ended);
    let later = c.block_at(Timestamp(start.0 + DAY), vec![]);
    assert!(money(&later).is_empty());

    let txs = vec![
        c.f.deposit("fund", 1),
        c.f.create_plan("p", "fund", None, &[("t", 1, cond("after(1)"))]),
        submit(&mut c, "a", "fund", "gansu", 1),
        c.f.set_entitlement("again", "fund", 1, start, DAY, 1),
        officer(
            &mut c,
            Payload::CloseProgram(payload::CloseProgram {
                program: slug("fund"),
            }),
        ),
    ];
    for tx in txs {
        let why = refused(&mut c, tx, "wrong-status");
        assert!(why.contains("closed"), "{why}");
    }
}

#[test]
fn each_money_movement_changes_the_balances_as_the_guide_tabulates() {
    let mut c = Chain::new();
    funded(&mut c, 10_000);
    assert_eq!(balances(&c, "fund"), (10_000, 10_000, 0, 0, 0, 0));
    let plan = c.f.create_plan(
        "p",
        "fund",
        None,
        &[
            ("a", 3_000, cond("after(1)")),
            ("b", 2_000, cond("after(2100-01-01)")),
        ],
    );
    c.ok(vec![plan]);
    assert_eq!(balances(&c, "fund"), (10_000, 5_000, 5_000, 0, 0, 0));
    let approve = c.f.approve_plan("dev-bank", "p");
    c.ok(vec![approve]);
    assert_eq!(balances(&c, "fund"), (10_000, 5_000, 2_000, 3_000, 0, 0));
    let s = settle(&mut c, 0, 3_000);
    c.ok(vec![s]);
    assert_eq!(
        balances(&c, "fund"),
        (10_000, 5_000, 2_000, 3_000, 3_000, 0)
    );
    // Closing needs nothing committed.
    let close = Payload::CloseProgram(payload::CloseProgram {
        program: slug("fund"),
    });
    let tx = officer(&mut c, close.clone());
    assert!(refused(&mut c, tx, "wrong-status").contains("committed"));
    let x = cancel(&mut c, "p", "b");
    c.ok(vec![x]);
    assert_eq!(balances(&c, "fund"), (10_000, 7_000, 0, 3_000, 3_000, 0));
    let tx = officer(&mut c, close);
    c.ok(vec![tx]);
    assert_eq!(balances(&c, "fund"), (10_000, 0, 0, 3_000, 3_000, 7_000));

    let ledger: Vec<(u8, bool, u64)> = c
        .state
        .scan(&keys::ledger_prefix(&slug("fund")), None, 20)
        .unwrap()
        .into_iter()
        .map(|(_, v)| {
            let m: MoneyEvent = codec::decode(&v).unwrap();
            (m.flow.iati_code(), m.flow.is_reversal(), m.amount.0)
        })
        .collect();
    assert_eq!(
        ledger,
        vec![
            (1, false, 10_000),
            (2, false, 3_000),
            (2, false, 2_000),
            (3, false, 3_000),
            (4, false, 3_000),
            (2, true, 2_000),
            (1, true, 7_000),
        ]
    );
}

// --- Applications ------------------------------------------------------------

#[test]
fn an_application_must_lie_within_the_programs_region_scope() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    for (id, region) in [
        ("a", "qinghai"),
        ("b", "gansu-north"),
        ("c", "qinghai/gansu"),
    ] {
        let tx = submit(&mut c, id, "fund", region, 10);
        let why = refused(&mut c, tx, "invalid");
        assert!(why.contains("outside"), "{region}: {why}");
    }
    let d = submit(&mut c, "d", "fund", "gansu", 10);
    let e = submit(&mut c, "e", "fund", "gansu/dingxi/village-1", 10);
    c.ok(vec![d, e]);
    assert_eq!(c.application("e").status, ApplicationStatus::Submitted);
}

#[test]
fn the_requested_amount_is_between_one_and_the_budget_ceiling() {
    let mut c = Chain::new();
    let p = c.f.create_program("fund", 50_000);
    c.ok(vec![p]);
    let tx = submit(&mut c, "zero", "fund", "gansu", 0);
    refused(&mut c, tx, "invalid");
    let tx = submit(&mut c, "over", "fund", "gansu", 50_001);
    refused(&mut c, tx, "invalid");
    let tx = submit(&mut c, "max", "fund", "gansu", 50_000);
    let out = c.ok(vec![tx]);
    assert!(all_events(&out).contains(&EventBody::ApplicationSubmitted {
        application: slug("max"),
        program: slug("fund"),
    }));
    assert_eq!(c.application("max").requested, Amount(50_000));
}

#[test]
fn an_application_id_is_taken_once_and_must_name_an_existing_program() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let tx = submit(&mut c, "well", "fund", "gansu", 300);
    c.ok(vec![tx]);
    let tx = submit(&mut c, "well", "fund", "gansu", 900);
    refused(&mut c, tx, "already-exists");
    assert_eq!(c.application("well").requested, Amount(300));
    let tx = submit(&mut c, "elsewhere", "nope", "gansu", 300);
    refused(&mut c, tx, "not-found");
}

#[test]
fn an_application_is_rejected_as_soon_as_its_threshold_can_no_longer_be_reached() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    // 2 of 3: one rejection leaves it open, the second rejects it.
    let s = submit(&mut c, "a", "fund", "gansu", 100);
    c.ok(vec![s]);
    let r1 = vote(&mut c, "dev-bank", "a", false);
    let out = c.ok(vec![r1]);
    assert_eq!(
        all_events(&out),
        vec![EventBody::ApplicationVoted {
            application: slug("a"),
            org: org("dev-bank"),
            approve: false
        }]
    );
    assert_eq!(c.application("a").status, ApplicationStatus::Submitted);
    let r2 = vote(&mut c, "finance-bureau", "a", false);
    let out = c.ok(vec![r2]);
    assert!(
        all_events(&out).contains(&EventBody::ApplicationStatusChanged {
            application: slug("a"),
            status: ApplicationStatus::Rejected
        })
    );
    assert_eq!(c.application("a").status, ApplicationStatus::Rejected);
    // Rejected is final: no later approval, rejection or plan.
    let tx = vote(&mut c, "poverty-office", "a", true);
    refused(&mut c, tx, "wrong-status");
    let tx = vote(&mut c, "poverty-office", "a", false);
    refused(&mut c, tx, "wrong-status");
    let tx =
        c.f.create_plan("p", "fund", Some("a"), &[("t", 10, cond("after(1)"))]);
    refused(&mut c, tx, "wrong-status");

    // 3 of 3: a single rejection already makes the threshold unreachable.
    let p = create_program(&mut c, "strict", |p| p.policy.threshold = 3);
    let d = c.f.deposit("strict", 1_000);
    c.ok(vec![p, d]);
    let s = submit(&mut c, "b", "strict", "gansu", 100);
    c.ok(vec![s]);
    let r = vote(&mut c, "poverty-office", "b", false);
    c.ok(vec![r]);
    assert_eq!(c.application("b").status, ApplicationStatus::Rejected);
}

#[test]
fn late_approvals_count_while_approved_but_not_once_completed() {
    let mut c = Chain::new();
    funded(&mut c, 10_000);
    approved_application(&mut c, "x", "fund", 1_000);
    let late = vote(&mut c, "finance-bureau", "x", true);
    let out = c.ok(vec![late]);
    assert_eq!(
        all_events(&out),
        vec![EventBody::ApplicationVoted {
            application: slug("x"),
            org: org("finance-bureau"),
            approve: true
        }],
        "no status change"
    );
    let a = c.application("x");
    assert_eq!(a.status, ApplicationStatus::Approved);
    assert_eq!(a.votes.len(), 3);

    // Completed: its one tranche released at the end of the plan's block.
    approved_application(&mut c, "z", "fund", 1_000);
    let plan =
        c.f.create_plan("pz", "fund", Some("z"), &[("t", 1_000, cond("after(1)"))]);
    c.ok(vec![plan]);
    assert_eq!(c.application("z").status, ApplicationStatus::Completed);
    let tx = vote(&mut c, "finance-bureau", "z", true);
    refused(&mut c, tx, "wrong-status");
}

#[test]
fn a_plan_funds_only_an_approved_application_of_its_own_program_once() {
    let mut c = Chain::new();
    funded(&mut c, 10_000);
    let other = c.f.create_program("other", 1_000_000);
    let d = c.f.deposit("other", 10_000);
    let s = submit(&mut c, "pending", "fund", "gansu", 500);
    c.ok(vec![other, d, s]);
    let tx = c.f.create_plan(
        "p1",
        "fund",
        Some("pending"),
        &[("t", 100, cond("after(1)"))],
    );
    refused(&mut c, tx, "wrong-status");

    approved_application(&mut c, "ok", "fund", 500);
    let tx =
        c.f.create_plan("p2", "other", Some("ok"), &[("t", 100, cond("after(1)"))]);
    assert!(refused(&mut c, tx, "invalid").contains("belongs to program fund"));
    // The whole request, in two tranches, is allowed.
    let never = cond("before(2000-01-01)");
    let tx = c.f.create_plan(
        "p3",
        "fund",
        Some("ok"),
        &[("t1", 200, never.clone()), ("t2", 300, never.clone())],
    );
    let out = c.ok(vec![tx]);
    assert!(all_events(&out).contains(&EventBody::PlanCreated {
        plan: slug("p3"),
        program: slug("fund"),
        total: Amount(500),
        approvals_needed: 0,
    }));
    let a = c.application("ok");
    assert_eq!(a.status, ApplicationStatus::Funded);
    assert_eq!(a.plan, Some(slug("p3")));
    assert_eq!(
        c.plan("p3").approvals_needed,
        0,
        "the policy already decided"
    );
    let tx =
        c.f.create_plan("p4", "fund", Some("ok"), &[("t", 1, never)]);
    refused(&mut c, tx, "wrong-status");
}

// --- Plans and releases --------------------------------------------------------

#[test]
fn a_plan_has_one_to_thirty_two_tranches() {
    let mut c = Chain::new();
    funded(&mut c, 1_000_000);
    let names: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    fn tranches(names: &[String]) -> Vec<(&str, u64, Condition)> {
        names
            .iter()
            .map(|t| (t.as_str(), 1, cond("before(2000-01-01)")))
            .collect()
    }
    let spec = |n: usize| tranches(&names[..n]);
    let tx = c.f.create_plan("p", "fund", None, &spec(0));
    refused(&mut c, tx, "invalid");
    let tx = c.f.create_plan("p", "fund", None, &spec(33));
    assert!(refused(&mut c, tx, "invalid").contains("1 to 32"));
    let tx = c.f.create_plan("p", "fund", None, &spec(32));
    c.ok(vec![tx]);
    assert_eq!(c.plan("p").tranches.len(), 32);
    assert_eq!(c.get::<u32>(keys::PENDING_COUNT), Some(32));
    assert_eq!(
        c.get::<u32>(&keys::program_pending_count(&slug("fund"))),
        Some(32)
    );
    assert_eq!(balances(&c, "fund"), (1_000_000, 999_968, 32, 0, 0, 0));
}

#[test]
fn tranche_ids_are_distinct_and_amounts_positive() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let tx = c.f.create_plan(
        "p",
        "fund",
        None,
        &[("t", 1, cond("after(1)")), ("t", 2, cond("after(1)"))],
    );
    assert!(refused(&mut c, tx, "invalid").contains("share an id"));
    let tx = c.f.create_plan(
        "p",
        "fund",
        None,
        &[("a", 1, cond("after(1)")), ("b", 0, cond("after(1)"))],
    );
    refused(&mut c, tx, "invalid");
    assert!(c
        .get::<aidledger_contracts::Plan>(&keys::plan(&slug("p")))
        .is_none());
}

#[test]
fn a_second_plan_in_the_same_block_sees_the_first_ones_commitment() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let never = cond("before(2000-01-01)");
    let p1 =
        c.f.create_plan("p1", "fund", None, &[("t", 600, never.clone())]);
    let p2 = c.f.create_plan("p2", "fund", None, &[("t", 500, never)]);
    let out = c.block(vec![p1, p2]);
    assert!(out.receipts[0].is_applied());
    assert_eq!(out.receipts[1].rejection_code(), Some("insufficient-funds"));
    assert_eq!(balances(&c, "fund"), (1_000, 400, 600, 0, 0, 0));
    assert!(c
        .get::<aidledger_contracts::Plan>(&keys::plan(&slug("p2")))
        .is_none());
}

#[test]
fn a_release_is_seen_by_later_tranches_of_its_plan_in_the_same_block_not_earlier_ones() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let plan = c.f.create_plan(
        "p",
        "fund",
        None,
        &[
            ("a", 10, cond("released(b)")),
            ("b", 20, cond("after(1)")),
            ("c", 30, cond("released(b)")),
        ],
    );
    let approve = c.f.approve_plan("dev-bank", "p");
    let out = c.ok(vec![plan, approve]);
    assert_eq!(
        released(&out),
        vec![("p".into(), "b".into(), 20), ("p".into(), "c".into(), 30)]
    );
    let out = c.block(vec![]);
    assert_eq!(released(&out), vec![("p".into(), "a".into(), 10)]);
    let t = c.plan("p").tranches;
    let ids: Vec<_> = t.iter().map(|t| t.status.clone()).collect();
    assert_eq!(
        ids,
        vec![
            TrancheStatus::Released { release: 2 },
            TrancheStatus::Released { release: 0 },
            TrancheStatus::Released { release: 1 },
        ]
    );
    assert_eq!(c.get::<u32>(keys::PENDING_COUNT), Some(0));
}

#[test]
fn settled_waits_for_a_confirmed_settlement_not_a_disputed_one() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let plan = c.f.create_plan(
        "p",
        "fund",
        None,
        &[
            ("t1", 100, cond("after(1)")),
            ("t2", 200, cond("settled(t1)")),
        ],
    );
    let approve = c.f.approve_plan("dev-bank", "p");
    let out = c.ok(vec![plan, approve]);
    assert_eq!(released(&out), vec![("p".into(), "t1".into(), 100)]);
    let wrong = settle(&mut c, 0, 99);
    let out = c.ok(vec![wrong]);
    assert!(released(&out).is_empty(), "a disputed settlement");
    assert_eq!(
        raised(&out),
        vec![(Subject::Release(0), "settlement-mismatch".into())]
    );
    let right = settle(&mut c, 0, 100);
    let out = c.ok(vec![right]);
    assert_eq!(released(&out), vec![("p".into(), "t2".into(), 200)]);
}

#[test]
fn only_a_pending_tranche_can_be_cancelled_and_its_money_returns() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let plan = c.f.create_plan(
        "p",
        "fund",
        None,
        &[
            ("a", 100, cond("after(1)")),
            ("b", 200, cond("after(2100-01-01)")),
        ],
    );
    let approve = c.f.approve_plan("dev-bank", "p");
    c.ok(vec![plan, approve]);
    let tx = cancel(&mut c, "p", "a");
    refused(&mut c, tx, "wrong-status");
    let tx = cancel(&mut c, "p", "zz");
    refused(&mut c, tx, "not-found");
    let tx = cancel(&mut c, "nope", "a");
    refused(&mut c, tx, "not-found");
    let tx = cancel(&mut c, "p", "b");
    let out = c.ok(vec![tx]);
    let m = money(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].flow, m[0].flow.iati_code(), m[0].flow.is_reversal()),
        (MoneyFlow::CommitmentCancelled, 2, true)
    );
    assert_eq!(
        (m[0].plan.clone(), m[0].tranche.clone(), m[0].amount),
        (Some(slug("p")), Some(slug("b")), Amount(200))
    );
    assert_eq!(m[0].to, Party::Program(slug("fund")));
    assert_eq!(c.plan("p").tranches[1].status, TrancheStatus::Cancelled);
    assert_eq!(balances(&c, "fund"), (1_000, 900, 0, 100, 0, 0));
    assert_eq!(c.get::<u32>(keys::PENDING_COUNT), Some(0));
    let tx = cancel(&mut c, "p", "b");
    refused(&mut c, tx, "wrong-status");
}

#[test]
fn a_funded_application_ends_cancelled_or_completed_with_its_last_pending_tranche() {
    let mut c = Chain::new();
    funded(&mut c, 10_000);
    let later = cond("after(2100-01-01)");
    approved_application(&mut c, "all-off", "fund", 1_000);
    approved_application(&mut c, "half", "fund", 1_000);
    let p1 = c.f.create_plan(
        "p1",
        "fund",
        Some("all-off"),
        &[("a", 400, later.clone()), ("b", 600, later.clone())],
    );
    let p2 = c.f.create_plan(
        "p2",
        "fund",
        Some("half"),
        &[("a", 400, cond("after(1)")), ("b", 600, later)],
    );
    c.ok(vec![p1, p2]);
    assert_eq!(c.application("all-off").status, ApplicationStatus::Funded);
    assert_eq!(c.application("half").status, ApplicationStatus::Funded);
    let x = cancel(&mut c, "p1", "a");
    c.ok(vec![x]);
    assert_eq!(c.application("all-off").status, ApplicationStatus::Funded);
    let x = cancel(&mut c, "p1", "b");
    let y = cancel(&mut c, "p2", "b");
    let out = c.ok(vec![x, y]);
    let events = all_events(&out);
    assert!(events.contains(&EventBody::ApplicationStatusChanged {
        application: slug("all-off"),
        status: ApplicationStatus::Cancelled
    }));
    assert!(events.contains(&EventBody::ApplicationStatusChanged {
        application: slug("half"),
        status: ApplicationStatus::Completed
    }));
    assert_eq!(balances(&c, "fund"), (10_000, 9_600, 0, 400, 0, 0));
}

#[test]
fn a_before_window_releases_only_before_its_instant_and_after_only_from_it() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let g = Chain::genesis_time().0;
    // Block 1 is at g + 1s (funded); this plan's block at g + 2s.
    let t = Timestamp(g + 4_000);
    let at = |s: &str| cond(&format!("{s}({})", t.0));
    let plan = c.f.create_plan(
        "p",
        "fund",
        None,
        &[
            ("early", 10, at("before")),
            ("late", 20, at("after")),
            ("missed", 30, cond("before(2026-01-01)")),
        ],
    );
    let approve = c.f.approve_plan("dev-bank", "p");
    let out = c.ok(vec![plan, approve]);
    assert_eq!(released(&out), vec![("p".into(), "early".into(), 10)]);
    let out = c.block_at(Timestamp(t.0 - 1), vec![]);
    assert!(released(&out).is_empty(), "one millisecond early");
    let out = c.block_at(t, vec![]);
    assert_eq!(released(&out), vec![("p".into(), "late".into(), 20)]);
    // A window that closed before the plan existed never opens.
    c.block_at(Timestamp(t.0 + 100 * DAY), vec![]);
    assert_eq!(
        c.plan("p").tranches[2].status,
        TrancheStatus::Pending { held: false }
    );
    assert_eq!(balances(&c, "fund"), (1_000, 940, 30, 30, 0, 0));
}

#[test]
fn consortium_wide_pending_tranches_are_limited_and_releases_give_room_back() {
    let mut c = Chain::with(|g| g.params.max_pending_tranches = 3);
    funded(&mut c, 1_000);
    let now = cond("after(1)");
    let p1 = c.f.create_plan(
        "p1",
        "fund",
        None,
        &[("a", 1, now.clone()), ("b", 1, now.clone())],
    );
    c.ok(vec![p1]);
    let tx = c.f.create_plan(
        "p2",
        "fund",
        None,
        &[("a", 1, now.clone()), ("b", 1, now.clone())],
    );
    let why = refused(&mut c, tx, "limit");
    assert!(
        why.contains("pending tranches is 4, the limit is 3"),
        "{why}"
    );
    let p2 =
        c.f.create_plan("p2", "fund", None, &[("a", 1, now.clone())]);
    c.ok(vec![p2]);
    assert_eq!(c.get::<u32>(keys::PENDING_COUNT), Some(3));
    // p1's two tranches release once approved, and their room comes back.
    let approve = c.f.approve_plan("dev-bank", "p1");
    let out = c.ok(vec![approve]);
    assert_eq!(released(&out).len(), 2);
    assert_eq!(c.get::<u32>(keys::PENDING_COUNT), Some(1));
    let p3 =
        c.f.create_plan("p3", "fund", None, &[("a", 1, now.clone()), ("b", 1, now)]);
    c.ok(vec![p3]);
    assert_eq!(c.get::<u32>(keys::PENDING_COUNT), Some(3));
}

#[test]
fn a_tranche_to_a_suspended_organisation_is_held_once_and_released_once_it_is_active() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let plan =
        c.f.create_plan("p", "fund", None, &[("t", 100, cond("after(1)"))]);
    c.ok(vec![plan]);
    set_org_status(&mut c, "county-unit", Status::Suspended);
    // New plans may not name it as a recipient.
    let tx =
        c.f.create_plan("q", "fund", None, &[("t", 100, cond("after(1)"))]);
    refused(&mut c, tx, "org-not-active");
    let approve = c.f.approve_plan("dev-bank", "p");
    let out = c.ok(vec![approve]);
    assert!(released(&out).is_empty());
    let held: Vec<_> = out
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::TrancheHeld {
                plan,
                tranche,
                reason,
            } => Some((plan.clone(), tranche.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!((&held[0].0, &held[0].1), (&slug("p"), &slug("t")));
    assert!(held[0].2.contains("not active"), "{}", held[0].2);
    assert_eq!(
        c.plan("p").tranches[0].status,
        TrancheStatus::Pending { held: true }
    );
    let out = c.block(vec![]);
    assert!(out.events.is_empty(), "a hold is reported once");
    let out = set_org_status(&mut c, "county-unit", Status::Active);
    assert_eq!(released(&out), vec![("p".into(), "t".into(), 100)]);
}

#[test]
fn organisations_named_by_a_plan_must_exist() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    approved_application(&mut c, "road", "fund", 500);
    let tx = c.f.create_plan(
        "p",
        "fund",
        Some("road"),
        &[(
            "t",
            10,
            cond("attested(done, by: nobody, subject: app:road)"),
        )],
    );
    refused(&mut c, tx, "not-found");
    let tx = officer(
        &mut c,
        Payload::CreatePlan(payload::CreatePlan {
            id: slug("p"),
            program: slug("fund"),
            application: None,
            tranches: vec![TrancheSpec {
                id: slug("t"),
                amount: Amount(10),
                recipient: Recipient::Org(org("nobody")),
                condition: cond("after(1)"),
            }],
        }),
    );
    refused(&mut c, tx, "not-found");
}

#[test]
fn conditions_breaking_a_shape_bound_fail_as_bad_payload() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let group = |n: u64| Condition::All((0..n).map(|i| Condition::After(Timestamp(i))).collect());
    let too_many_nodes = Condition::All(vec![group(15), group(15), group(15), group(15)]);
    assert_eq!(too_many_nodes.node_count(), 65);
    for bad in [
        Condition::All(vec![]),
        Condition::Any(vec![]),
        too_many_nodes,
    ] {
        let tx = c.f.create_plan("p", "fund", None, &[("t", 10, bad)]);
        refused(&mut c, tx, "bad-payload");
    }
    // 64 nodes are fine.
    let at_limit = Condition::All(vec![group(15), group(15), group(15), group(14)]);
    let tx = c.f.create_plan("p", "fund", None, &[("t", 10, at_limit)]);
    c.ok(vec![tx]);
}

// --- Households ------------------------------------------------------------------

#[test]
fn the_zero_hash_is_not_a_household_id() {
    let mut c = Chain::new();
    let tx = c.f.sign_as(
        "poverty-office",
        Role::Registrar,
        &Payload::RegisterHousehold(payload::RegisterHousehold {
            id: Hash::ZERO,
            region: "gansu".parse().unwrap(),
        }),
    );
    refused(&mut c, tx, "invalid");
    assert!(c.get::<Household>(&keys::household(&Hash::ZERO)).is_none());
}

#[test]
fn a_household_update_must_change_something_and_only_its_registrar_org_makes_it() {
    let mut c = Chain::new();
    let (h, reg) = c.f.register_household();
    c.ok(vec![reg]);
    let first: Household = c.get(&keys::household(&h)).unwrap();
    let update = |region: &str, status: HouseholdStatus| {
        Payload::UpdateHousehold(payload::UpdateHousehold {
            id: h,
            region: region.parse().unwrap(),
            status,
        })
    };
    let same = update(first.region.as_str(), HouseholdStatus::Active);
    let tx = c.f.sign_as("poverty-office", Role::Registrar, &same);
    assert!(refused(&mut c, tx, "invalid").contains("nothing changes"));
    let moved = update("gansu/dingxi/village-2", HouseholdStatus::Inactive);
    let tx = c.f.sign_as("county-unit", Role::Registrar, &moved);
    refused(&mut c, tx, "not-permitted");
    let tx = c.f.sign_as("poverty-office", Role::Registrar, &moved);
    let out = c.ok(vec![tx]);
    assert_eq!(
        all_events(&out),
        vec![EventBody::HouseholdUpdated { household: h }]
    );
    let now: Household = c.get(&keys::household(&h)).unwrap();
    assert_eq!(now.region.as_str(), "gansu/dingxi/village-2");
    assert_eq!(now.status, HouseholdStatus::Inactive);
    assert_eq!(now.registered_by, org("poverty-office"));
    // The region index follows the household.
    assert!(c
        .state
        .get(&keys::household_region(&first.region, &h))
        .unwrap()
        .is_none());
    assert!(c
        .state
        .get(&keys::household_region(&now.region, &h))
        .unwrap()
        .is_some());
}

#[test]
fn an_inactive_household_is_not_paid_its_tranche_until_active_and_cleared() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let (h, reg) = c.f.register_household();
    c.ok(vec![reg]);
    let region = c.get::<Household>(&keys::household(&h)).unwrap().region;
    let set = |status| {
        Payload::UpdateHousehold(payload::UpdateHousehold {
            id: h,
            region: region.clone(),
            status,
        })
    };
    let off = c.f.sign_as(
        "poverty-office",
        Role::Registrar,
        &set(HouseholdStatus::Inactive),
    );
    c.ok(vec![off]);
    let plan = officer(
        &mut c,
        Payload::CreatePlan(payload::CreatePlan {
            id: slug("p"),
            program: slug("fund"),
            application: None,
            tranches: vec![TrancheSpec {
                id: slug("t"),
                amount: Amount(250),
                recipient: Recipient::Household(h),
                condition: cond("after(1)"),
            }],
        }),
    );
    let approve = c.f.approve_plan("dev-bank", "p");
    let out = c.ok(vec![plan, approve]);
    assert!(released(&out).is_empty());
    assert_eq!(
        raised(&out),
        vec![(Subject::Household(h), "ineligible-recipient".into())]
    );
    let a: Anomaly = c.get(&keys::anomaly(0)).unwrap();
    assert!(
        matches!(&a.kind, AnomalyKind::IneligibleRecipient { reason, .. } if reason.contains("inactive"))
    );
    // Active again, it stays held while the anomaly is open, raising nothing more.
    let on = c.f.sign_as(
        "poverty-office",
        Role::Registrar,
        &set(HouseholdStatus::Active),
    );
    let out = c.ok(vec![on]);
    assert!(released(&out).is_empty() && raised(&out).is_empty());
    let txs = c.resolve_txs(0);
    let out = c.ok(txs);
    assert_eq!(released(&out), vec![("p".into(), "t".into(), 250)]);
    let m = money(&out);
    assert_eq!(m[0].to, Party::Household(h));
}

// --- Attestations --------------------------------------------------------------------

#[test]
fn an_attestation_needs_an_existing_subject_and_an_org_attests_a_claim_once() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let (h, reg) = c.f.register_household();
    let plan =
        c.f.create_plan("p", "fund", None, &[("t", 10, cond("after(1)"))]);
    let approve = c.f.approve_plan("dev-bank", "p");
    c.ok(vec![reg, plan, approve]);
    let tx = c.f.attest(
        "county-unit",
        Subject::Household(sha256(b"nobody")),
        "visited",
        "yes",
    );
    refused(&mut c, tx, "not-found");
    let tx =
        c.f.attest("county-unit", Subject::Release(99), "paid", "yes");
    refused(&mut c, tx, "not-found");
    let tx =
        c.f.attest("county-unit", Subject::Release(0), "paid", "yes");
    let out = c.ok(vec![tx]);
    assert_eq!(
        all_events(&out),
        vec![EventBody::Attested {
            subject: Subject::Release(0),
            claim: slug("paid"),
            org: org("county-unit"),
        }]
    );
    let hashed = c.f.sign_as(
        "county-unit",
        Role::Attester,
        &Payload::Attest(payload::Attest {
            subject: Subject::Household(h),
            claim: slug("survey"),
            value: AttestValue::Hash(sha256(b"survey form")),
        }),
    );
    c.ok(vec![hashed]);
    // Once per (subject, claim) and organisation, even with the same value.
    let tx =
        c.f.attest("county-unit", Subject::Release(0), "paid", "yes");
    refused(&mut c, tx, "already-exists");
    let att: aidledger_contracts::Attestation = c
        .get(&keys::attestation(
            &Subject::Household(h),
            &slug("survey"),
            &org("county-unit"),
        ))
        .unwrap();
    assert_eq!(att.value, AttestValue::Hash(sha256(b"survey form")));
}

// --- Settlements -----------------------------------------------------------------------

/// A funded program whose one tranche (500 to the county unit) is released
/// as release 0.
fn one_release(c: &mut Chain) {
    funded(c, 1_000);
    let plan =
        c.f.create_plan("p", "fund", None, &[("t", 500, cond("after(1)"))]);
    let approve = c.f.approve_plan("dev-bank", "p");
    c.ok(vec![plan, approve]);
    assert_eq!(c.release(0).amount, Amount(500));
}

#[test]
fn a_confirmed_settlement_records_an_expenditure_and_is_never_overdue() {
    let mut c = Chain::new();
    one_release(&mut c);
    let s = settle(&mut c, 0, 500);
    let out = c.ok(vec![s]);
    let events = all_events(&out);
    assert!(events.contains(&EventBody::Settled {
        release: 0,
        amount: Amount(500),
        status: SettlementStatus::Confirmed,
    }));
    let m = money(&out);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].flow, m[0].flow.iati_code()),
        (MoneyFlow::Expenditure, 4)
    );
    assert_eq!(
        (m[0].release, m[0].plan.clone(), m[0].tranche.clone()),
        (Some(0), Some(slug("p")), Some(slug("t")))
    );
    assert_eq!(m[0].to, Party::Org(org("county-unit")));
    let r = c.release(0);
    assert!(r.is_settled());
    assert_eq!(r.settlement.unwrap().org, org("state-bank"));
    assert!(c.state.get(&keys::unsettled(0)).unwrap().is_none());
    let deadline = c.genesis.params.settlement_deadline_ms;
    let made = c.release(0).time.0;
    let out = c.block_at(Timestamp(made + deadline + 1), vec![]);
    assert!(raised(&out).is_empty());
}

#[test]
fn a_disputed_release_still_becomes_overdue_once_and_can_then_be_settled() {
    let mut c = Chain::new();
    one_release(&mut c);
    let s = settle(&mut c, 0, 499);
    let out = c.ok(vec![s]);
    assert!(all_events(&out).contains(&EventBody::Settled {
        release: 0,
        amount: Amount(499),
        status: SettlementStatus::Disputed,
    }));
    assert_eq!(balances(&c, "fund").4, 0, "nothing settled");
    let made = c.release(0).time.0;
    let deadline = c.genesis.params.settlement_deadline_ms;
    let out = c.block_at(Timestamp(made + deadline + 1), vec![]);
    assert_eq!(
        raised(&out),
        vec![(Subject::Release(0), "settlement-overdue".into())]
    );
    assert!(c.release(0).overdue_flagged);
    let out = c.block(vec![]);
    assert!(raised(&out).is_empty());
    let s = settle(&mut c, 0, 500);
    c.ok(vec![s]);
    assert!(c.release(0).is_settled());
    assert_eq!(balances(&c, "fund").4, 500);
    let s = settle(&mut c, 0, 500);
    refused(&mut c, s, "wrong-status");
}

// --- Governance --------------------------------------------------------------------

#[test]
fn a_new_organisation_and_its_account_can_transact_once_their_proposals_execute() {
    let mut c = Chain::new();
    let out = govern(
        &mut c,
        GovAction::AddOrg {
            id: org("village-committee"),
            name: text("Village committee"),
            kind: OrgKind::ImplementingUnit,
        },
    );
    assert!(all_events(&out).contains(&EventBody::OrgChanged {
        org: org("village-committee")
    }));
    let o: Org = c.get(&keys::org(&org("village-committee"))).unwrap();
    assert_eq!(o.status, Status::Active);
    let kp = Keypair::from_seed([61; 32]);
    let out = govern(
        &mut c,
        GovAction::AddAccount {
            key: kp.public(),
            org: org("village-committee"),
            roles: vec![Role::Registrar],
        },
    );
    assert!(all_events(&out).contains(&EventBody::AccountChanged { key: kp.public() }));
    let a = c.account(&kp.public());
    assert_eq!((a.nonce, a.status), (0, Status::Active));
    let id = sha256(b"village household");
    let tx = c.f.sign(
        &kp,
        &Payload::RegisterHousehold(payload::RegisterHousehold {
            id,
            region: "gansu/dingxi".parse().unwrap(),
        }),
    );
    c.ok(vec![tx]);
    let h: Household = c.get(&keys::household(&id)).unwrap();
    assert_eq!(h.registered_by, org("village-committee"));
}

#[test]
fn set_roles_replaces_what_an_account_may_sign() {
    let mut c = Chain::new();
    let (h, reg) = c.f.register_household();
    c.ok(vec![reg]);
    let key = c.f.keys.op("county-unit", Role::Registrar).public();
    govern(
        &mut c,
        GovAction::SetRoles {
            key,
            roles: vec![Role::Attester, Role::Attester],
        },
    );
    assert_eq!(c.account(&key).roles, vec![Role::Attester]);
    let tx = c.f.sign_as(
        "county-unit",
        Role::Registrar,
        &Payload::RegisterHousehold(payload::RegisterHousehold {
            id: sha256(b"another"),
            region: "gansu".parse().unwrap(),
        }),
    );
    refused(&mut c, tx, "role-not-allowed");
    // The same key now attests.
    let kp = c.f.keys.op("county-unit", Role::Registrar).clone();
    let tx = c.f.sign(
        &kp,
        &Payload::Attest(payload::Attest {
            subject: Subject::Household(h),
            claim: slug("visited"),
            value: AttestValue::Code(slug("yes")),
        }),
    );
    c.ok(vec![tx]);
}

#[test]
fn a_suspended_account_is_refused_until_reactivated() {
    let mut c = Chain::new();
    let key = c.f.keys.op("county-unit", Role::Registrar).public();
    let out = govern(
        &mut c,
        GovAction::SetAccountStatus {
            key,
            status: Status::Suspended,
        },
    );
    assert!(all_events(&out).contains(&EventBody::AccountChanged { key }));
    let register = |c: &mut Chain, n: &[u8]| {
        c.f.sign_as(
            "county-unit",
            Role::Registrar,
            &Payload::RegisterHousehold(payload::RegisterHousehold {
                id: sha256(n),
                region: "gansu".parse().unwrap(),
            }),
        )
    };
    let tx = register(&mut c, b"one");
    refused(&mut c, tx, "account-suspended");
    assert!(c
        .get::<Household>(&keys::household(&sha256(b"one")))
        .is_none());
    govern(
        &mut c,
        GovAction::SetAccountStatus {
            key,
            status: Status::Active,
        },
    );
    let tx = register(&mut c, b"two");
    c.ok(vec![tx]);
    assert_eq!(c.account(&key).nonce, 2, "the refused one used a nonce");
}

#[test]
fn a_rotated_key_carries_its_nonce_and_the_old_key_is_gone_for_good() {
    let mut c = Chain::new();
    let old = c.f.keys.op("county-unit", Role::Registrar).clone();
    let new = Keypair::from_seed([62; 32]);
    let register = |n: &[u8]| {
        Payload::RegisterHousehold(payload::RegisterHousehold {
            id: sha256(n),
            region: "gansu".parse().unwrap(),
        })
    };
    let tx = c.f.sign(&old, &register(b"before"));
    c.ok(vec![tx]);
    let out = govern(
        &mut c,
        GovAction::RotateKey {
            old: old.public(),
            new: new.public(),
        },
    );
    assert!(all_events(&out).contains(&EventBody::KeyRotated {
        old: old.public(),
        new: new.public()
    }));
    let a = c.account(&new.public());
    assert_eq!((a.nonce, a.org.clone()), (1, org("county-unit")));
    assert_eq!(a.roles, vec![Role::Registrar]);
    assert!(c
        .get::<aidledger_contracts::Account>(&keys::account(&old.public()))
        .is_none());
    // The old key's next transaction may not even be included.
    let stale = c.f.sign_with_nonce(&old, &register(b"stale"), 1);
    let v = c.f.verified(stale);
    match apply_block(&c.state, &c.acc, &c.next_ctx(), &[v]) {
        Err(ExecError::NotIncludable { reason, .. }) => {
            assert_eq!(reason.code(), "unknown-account")
        }
        other => panic!("expected not includable, got {other:?}"),
    }
    let tx = c.f.sign_with_nonce(&new, &register(b"after"), 1);
    c.ok(vec![tx]);
    // No account can ever be added for the retired key.
    let tx = propose(
        &mut c,
        GovAction::AddAccount {
            key: old.public(),
            org: org("county-unit"),
            roles: vec![Role::Registrar],
        },
    );
    assert!(refused(&mut c, tx, "invalid").contains("retired"));
}

#[test]
fn parameters_outside_their_documented_bounds_are_refused() {
    let mut c = Chain::new();
    for param in [
        ParamValue::GovernanceThreshold(0),
        ParamValue::GovernanceThreshold(101),
        ParamValue::GovernanceThreshold(7),
        ParamValue::BlockTimeDriftMs(0),
        ParamValue::SettlementDeadlineMs(0),
        ParamValue::MaxPendingTranches(0),
        ParamValue::MaxPendingTranchesPerProgram(0),
        ParamValue::EntitlementBatch(0),
        ParamValue::PlanApprovals(0),
        ParamValue::PlanApprovals(257),
        ParamValue::ActivationDelayBlocks(1),
        ParamValue::ActivationDelayBlocks(100_001),
    ] {
        let tx = propose(&mut c, GovAction::SetParam { param });
        refused(&mut c, tx, "invalid");
    }
    let before = c.genesis.params.clone();
    assert_eq!(c.get::<Params>(keys::PARAMS).unwrap(), before);
    // Zero is allowed for the second-review amount: everything takes two.
    let out = govern(
        &mut c,
        GovAction::SetParam {
            param: ParamValue::AnomalySecondReviewFrom(0),
        },
    );
    assert!(all_events(&out).contains(&EventBody::ParamChanged {
        name: "anomaly-second-review-from".into()
    }));
    let out = govern(
        &mut c,
        GovAction::SetParam {
            param: ParamValue::PlanApprovals(256),
        },
    );
    assert!(all_events(&out).contains(&EventBody::ParamChanged {
        name: "plan-approvals".into()
    }));
    let p: Params = c.get(keys::PARAMS).unwrap();
    assert_eq!((p.anomaly_second_review_from, p.plan_approvals), (0, 256));
}

#[test]
fn a_proposal_is_approved_once_per_org_and_one_that_no_longer_applies_stays_open() {
    let mut c = Chain::new();
    let add = GovAction::AddOrg {
        id: org("new-org"),
        name: text("New organisation"),
        kind: OrgKind::Bank,
    };
    let p0 = propose(&mut c, add.clone());
    let p1 = propose(&mut c, add);
    let out = c.ok(vec![p0, p1]);
    assert!(all_events(&out).contains(&EventBody::ProposalCreated {
        proposal: 1,
        org: org("state-bank")
    }));
    // The proposer's organisation already counts as the first approval.
    let tx = approve_proposal(&mut c, "state-bank", 0);
    refused(&mut c, tx, "already-voted");
    let tx = approve_proposal(&mut c, "dev-bank", 99);
    refused(&mut c, tx, "not-found");
    let tx = approve_proposal(&mut c, "dev-bank", 0);
    let out = c.ok(vec![tx]);
    let events = all_events(&out);
    assert!(events.contains(&EventBody::ProposalApproved {
        proposal: 0,
        org: org("dev-bank"),
        approvals: 2
    }));
    assert!(events.contains(&EventBody::ProposalExecuted { proposal: 0 }));
    // The twin is re-checked when it would execute: the org exists now.
    let tx = approve_proposal(&mut c, "dev-bank", 1);
    refused(&mut c, tx, "already-exists");
    let p: Proposal = c.get(&keys::proposal(1)).unwrap();
    assert_eq!(p.status, ProposalStatus::Open);
    assert_eq!(p.approvals, vec![org("state-bank")]);
    let p: Proposal = c.get(&keys::proposal(0)).unwrap();
    assert_eq!(p.status, ProposalStatus::Executed);
    let tx = approve_proposal(&mut c, "finance-bureau", 0);
    refused(&mut c, tx, "wrong-status");
}

// --- Receipts and events --------------------------------------------------------------

#[test]
fn receipts_and_events_carry_the_documented_fields() {
    let mut c = Chain::new();
    let create = c.f.create_program("fund", 1_000_000);
    c.ok(vec![create]);
    let dep = c.f.deposit("fund", 1_000);
    let plan =
        c.f.create_plan("p", "fund", None, &[("t", 400, cond("after(1)"))]);
    let approve = c.f.approve_plan("dev-bank", "p");
    let bad = c.f.deposit("fund", 0);
    let txs = vec![dep, plan, approve, bad];
    let time = Timestamp(c.time().0 + 1_000);
    let out = c.block_at(time, txs.clone());
    let height = c.parent.height;
    assert_eq!(out.receipts.len(), 4);
    for (i, (r, tx)) in out.receipts.iter().zip(&txs).enumerate() {
        assert_eq!(r.index, i as u32);
        assert_eq!(r.tx_id, tx.id());
        assert_eq!(r.kind, tx.body.kind);
        assert_eq!(r.signer, tx.body.signer);
        assert_eq!(r.height, height);
        for e in &r.events {
            assert_eq!((e.height, e.tx), (height, Some(tx.id())));
        }
    }
    assert_eq!(out.receipts[3].rejection_code(), Some("invalid"));
    assert!(out.receipts[3].events.is_empty());
    // End-of-block actions carry no transaction.
    assert!(!out.events.is_empty());
    assert!(out
        .events
        .iter()
        .all(|e| e.height == height && e.tx.is_none()));
    let m = money(&out);
    let shape: Vec<_> = m
        .iter()
        .map(|m| (m.seq, m.flow, m.tx.is_some(), m.height, m.time))
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, MoneyFlow::IncomingFunds, true, height, time),
            (1, MoneyFlow::Commitment, true, height, time),
            (2, MoneyFlow::Disbursement, false, height, time),
        ]
    );
    assert_eq!(m[0].tx, Some(txs[0].id()));
    assert_eq!(m[1].tx, Some(txs[1].id()));
    let cny: aidledger_types::Currency = "CNY".parse().unwrap();
    assert!(m
        .iter()
        .all(|m| m.program == slug("fund") && m.currency == cny && m.amount.0 > 0));
    assert_eq!(
        (m[1].from.clone(), m[1].to.clone()),
        (
            Party::Org(org("poverty-office")),
            Party::Org(org("county-unit"))
        )
    );
    assert_eq!(
        (m[2].from.clone(), m[2].to.clone(), m[2].release),
        (
            Party::Program(slug("fund")),
            Party::Org(org("county-unit")),
            Some(0)
        )
    );
}

#[test]
fn every_money_event_is_also_stored_in_the_programs_ledger_in_order() {
    let mut c = Chain::new();
    let mut emitted = Vec::new();
    let create = c.f.create_program("fund", 1_000_000);
    let dep = c.f.deposit("fund", 10_000);
    emitted.extend(money(&c.ok(vec![create, dep])));
    let plan = c.f.create_plan(
        "p",
        "fund",
        None,
        &[
            ("a", 1_000, cond("after(1)")),
            ("b", 2_000, cond("released(a)")),
            ("c", 3_000, cond("after(2100-01-01)")),
        ],
    );
    let approve = c.f.approve_plan("dev-bank", "p");
    emitted.extend(money(&c.ok(vec![plan, approve])));
    let s0 = settle(&mut c, 0, 1_000);
    let s1 = settle(&mut c, 1, 2_000);
    let x = cancel(&mut c, "p", "c");
    emitted.extend(money(&c.ok(vec![s0, s1, x])));
    let (_, reg) = c.f.register_household();
    let start = Timestamp(c.time().0 + 1_000);
    let ent = c.f.set_entitlement("e", "fund", 100, start, DAY, 2);
    emitted.extend(money(&c.ok(vec![reg, ent])));
    emitted.extend(money(&c.block(vec![])));
    let ledger: Vec<MoneyEvent> = c
        .state
        .scan(&keys::ledger_prefix(&slug("fund")), None, 100)
        .unwrap()
        .into_iter()
        .map(|(_, v)| codec::decode(&v).unwrap())
        .collect();
    assert_eq!(ledger, emitted);
    let seqs: Vec<u64> = ledger.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (0..ledger.len() as u64).collect::<Vec<_>>());
    let flows: Vec<MoneyFlow> = ledger.iter().map(|m| m.flow).collect();
    use MoneyFlow::*;
    assert_eq!(
        flows,
        vec![
            IncomingFunds,
            Commitment,
            Commitment,
            Commitment,
            Disbursement,
            Disbursement,
            Expenditure,
            Expenditure,
            CommitmentCancelled,
            Disbursement,
        ]
    );
    assert_eq!(c.program("fund").ledger_seq, ledger.len() as u64);
}

#[test]
fn at_most_256_organisations_can_exist() {
    let mut c = Chain::with(|g| {
        let have = g.orgs.len();
        for i in have..256 {
            g.orgs.push(aidledger_contracts::GenesisOrg {
                id: org(&format!("extra-{i}")),
                name: text("Extra member"),
                kind: OrgKind::Bank,
                node_keys: vec![],
            });
        }
    });
    let tx = propose(
        &mut c,
        GovAction::AddOrg {
            id: org("one-too-many"),
            name: text("One too many"),
            kind: OrgKind::Bank,
        },
    );
    let why = refused(&mut c, tx, "limit");
    assert!(why.contains("257"), "{why}");
}

#[test]
fn at_most_32_cross_checks_are_in_force_and_replacing_one_adds_none() {
    use aidledger_contracts::model::{ClaimTest, CrossCheck};
    let check = |id: &str, value: &str| CrossCheck {
        id: slug(id),
        description: text("income above the line while flagged poor"),
        when: vec![ClaimTest {
            claim: slug("income-level"),
            by: org("finance-bureau"),
            value: slug(value),
        }],
    };
    let mut c = Chain::new();
    for i in 0..32 {
        let out = govern(
            &mut c,
            GovAction::SetCrossCheck {
                check: check(&format!("rule-{i}"), "above-line"),
            },
        );
        assert!(all_events(&out).contains(&EventBody::CrossCheckChanged {
            id: slug(&format!("rule-{i}")),
            active: true
        }));
    }
    let tx = propose(
        &mut c,
        GovAction::SetCrossCheck {
            check: check("rule-32", "above-line"),
        },
    );
    refused(&mut c, tx, "limit");
    govern(
        &mut c,
        GovAction::SetCrossCheck {
            check: check("rule-0", "far-above-line"),
        },
    );
    let kept: CrossCheck = c.get(&keys::cross_check(&slug("rule-0"))).unwrap();
    assert_eq!(kept.when[0].value, slug("far-above-line"));
    // Removing one makes room again.
    govern(&mut c, GovAction::RemoveCrossCheck { id: slug("rule-5") });
    govern(
        &mut c,
        GovAction::SetCrossCheck {
            check: check("rule-32", "above-line"),
        },
    );
}

#[test]
fn a_validator_set_names_only_existing_active_organisations() {
    use aidledger_types::{Validator, ValidatorSet};
    let mut c = Chain::new();
    let set = |orgs: &[&str]| {
        ValidatorSet::new(
            orgs.iter()
                .enumerate()
                .map(|(i, o)| Validator {
                    org: org(o),
                    key: Keypair::from_seed([100 + i as u8; 32]).public(),
                })
                .collect(),
        )
        .unwrap()
    };
    set_org_status(&mut c, "audit-office", Status::Suspended);
    let at = c.parent.height + 10;
    let tx = propose(
        &mut c,
        GovAction::SetValidators {
            validators: set(&["state-bank", "audit-office"]),
            at_height: at,
        },
    );
    refused(&mut c, tx, "org-not-active");
    let tx = propose(
        &mut c,
        GovAction::SetValidators {
            validators: set(&["state-bank", "nobody"]),
            at_height: at,
        },
    );
    refused(&mut c, tx, "not-found");
    // Active organisations, but keys no registered node holds: a set no
    // process can serve would halt the chain.
    let good = set(&["state-bank", "dev-bank"]);
    let tx = propose(
        &mut c,
        GovAction::SetValidators {
            validators: good.clone(),
            at_height: at,
        },
    );
    refused(&mut c, tx, "invalid");
    for v in good.validators() {
        govern(
            &mut c,
            GovAction::AddNode {
                org: v.org.clone(),
                key: v.key,
            },
        );
    }
    // Too soon: the activation delay (2 blocks in the test genesis)
    // counts from the block that executes the change.
    let soon = c.parent.height + 2;
    let tx = propose(
        &mut c,
        GovAction::SetValidators {
            validators: good.clone(),
            at_height: soon,
        },
    );
    refused(&mut c, tx, "invalid");
    let out = govern(
        &mut c,
        GovAction::SetValidators {
            validators: good.clone(),
            at_height: at,
        },
    );
    assert!(
        all_events(&out).contains(&EventBody::ValidatorSetScheduled {
            hash: good.hash(),
            at_height: at,
        })
    );
    // One change at a time.
    let tx = propose(
        &mut c,
        GovAction::SetValidators {
            validators: good.clone(),
            at_height: at + 5,
        },
    );
    refused(&mut c, tx, "invalid");
    // The set in force changes at the end of block at - 1, not before.
    let mut out = out;
    while c.parent.height + 1 < at {
        assert_ne!(out.validator_set, good, "in force before {at}");
        out = c.ok(vec![]);
    }
    assert_eq!(c.parent.height, at - 1);
    assert!(all_events(&out).contains(&EventBody::ValidatorSetChanged { hash: good.hash() }));
    assert_eq!(out.validator_set, good);
}

#[test]
fn an_anomaly_is_resolved_with_a_note_that_is_not_blank_and_only_once() {
    let mut c = Chain::new();
    funded(&mut c, 1_000);
    let s = submit(&mut c, "well", "fund", "gansu", 300);
    c.ok(vec![s]);
    let subject = Subject::Application(slug("well"));
    let a = c.f.attest("poverty-office", subject.clone(), "site", "ok");
    let b =
        c.f.attest("finance-bureau", subject.clone(), "site", "flooded");
    let out = c.ok(vec![a, b]);
    assert_eq!(
        raised(&out),
        vec![(subject, "conflicting-attestation".into())]
    );
    let resolve = |note: &str| {
        Payload::ResolveAnomaly(payload::ResolveAnomaly {
            anomaly: 0,
            note: text(note),
        })
    };
    let tx = c.f.sign_as("audit-office", Role::Auditor, &resolve("   "));
    assert!(refused(&mut c, tx, "invalid").contains("note"));
    // 300 is below the second-review amount: one person resolves it.
    let tx =
        c.f.sign_as("audit-office", Role::Auditor, &resolve("site visited"));
    let out = c.ok(vec![tx]);
    assert_eq!(
        all_events(&out),
        vec![EventBody::AnomalyResolved {
            anomaly: 0,
            org: org("audit-office")
        }]
    );
    let tx =
        c.f.sign_as("audit-office", Role::Auditor, &resolve("again"));
    refused(&mut c, tx, "wrong-status");
}
