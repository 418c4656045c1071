#![allow(clippy::unwrap_used)]
//! A program's whole life, block by block: deposits, an application and
//! its approvals, a plan of three conditioned tranches released
//! automatically at exactly the right blocks, settlements, and closing.

mod common;

use aidledger_contracts::condition_text::parse;
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{
    keys, ApplicationStatus, EventBody, MoneyEvent, MoneyFlow, ProgramStatus, Subject,
    TrancheStatus,
};
use aidledger_execution::StateRead;
use aidledger_types::hash::sha256;
use aidledger_types::{Amount, Role, Timestamp};
use common::{Chain, DAY};

fn slug(s: &str) -> aidledger_types::Slug {
    s.parse().expect("slug")
}

fn releases_in(out: &aidledger_execution::BlockOutcome) -> Vec<(String, u64)> {
    out.events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Money(m) if m.flow == MoneyFlow::Disbursement => Some((
                m.tranche
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                m.amount.0,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn program_lifecycle_releases_tranches_at_exactly_the_right_blocks() {
    let mut c = Chain::new();
    let t1 = Timestamp(Chain::genesis_time().0 + 10 * DAY);

    // Block 1: the program and two deposits.
    let create = c.f.create_program("road-fund", 10_000_000);
    let dep1 = c.f.deposit("road-fund", 5_000_000);
    let dep2 = c.f.sign_as(
        "dev-bank",
        Role::Disburser,
        &Payload::Deposit(payload::Deposit {
            program: slug("road-fund"),
            amount: Amount(1_000_000),
        }),
    );
    c.ok(vec![create, dep1, dep2]);
    let p = c.program("road-fund");
    assert_eq!(
        (p.balances.deposited.0, p.balances.available.0),
        (6_000_000, 6_000_000)
    );

    // Block 2: the county unit applies.
    let submit = c.f.sign_as(
        "county-unit",
        Role::ProgramOfficer,
        &Payload::SubmitApplication(payload::SubmitApplication {
            id: slug("village-road"),
            program: slug("road-fund"),
            applicant: "county-unit".parse().expect("org"),
            region: "gansu/dingxi/village-1".parse().expect("region"),
            requested: Amount(3_000_000),
            purpose: "Village access road".parse().expect("text"),
            doc_hash: sha256(b"road design documents"),
        }),
    );
    c.ok(vec![submit]);
    assert_eq!(
        c.application("village-road").status,
        ApplicationStatus::Submitted
    );

    // Block 3: two organisations approve; the policy needs two.
    let vote = |a: &str| {
        Payload::ApproveApplication(payload::ApplicationVote {
            application: slug(a),
            note: "ok".parse().expect("text"),
        })
    };
    let a1 =
        c.f.sign_as("poverty-office", Role::Approver, &vote("village-road"));
    c.ok(vec![a1]);
    assert_eq!(
        c.application("village-road").status,
        ApplicationStatus::Submitted
    );
    let a2 =
        c.f.sign_as("dev-bank", Role::Approver, &vote("village-road"));
    c.ok(vec![a2]);
    assert_eq!(
        c.application("village-road").status,
        ApplicationStatus::Approved
    );

    // Block 4: the plan commits 3,000,000.
    let cond1 = parse(&format!("after({})", t1.date_string())).expect("cond");
    let cond2 = parse(&format!(
        "all(after({}), attested(construction-phase-1-complete, by: county-unit, subject: app:village-road), approvals(2, of: [poverty-office, dev-bank]))",
        t1.date_string()
    ))
    .expect("cond");
    let cond3 =
        parse("all(released(t2), approvals(3, of: [poverty-office, dev-bank, finance-bureau]))")
            .expect("cond");
    let plan = c.f.create_plan(
        "road-plan",
        "road-fund",
        Some("village-road"),
        &[
            ("t1", 1_000_000, cond1),
            ("t2", 1_200_000, cond2),
            ("t3", 800_000, cond3),
        ],
    );
    let out = c.ok(vec![plan]);
    assert!(releases_in(&out).is_empty());
    let p = c.program("road-fund");
    assert_eq!(
        (p.balances.available.0, p.balances.committed.0),
        (3_000_000, 3_000_000)
    );
    assert_eq!(
        c.application("village-road").status,
        ApplicationStatus::Funded
    );

    // The block just before t1 releases nothing; the block at t1 releases t1 only.
    let out = c.block_at(Timestamp(t1.0 - 1), vec![]);
    assert!(releases_in(&out).is_empty(), "released before the date");
    let out = c.block_at(t1, vec![]);
    assert_eq!(releases_in(&out), vec![("t1".to_string(), 1_000_000)]);
    assert!(matches!(
        c.plan("road-plan").tranches[0].status,
        TrancheStatus::Released { release: 0 }
    ));

    // t2 waits for the attestation, and is released in the block that carries it.
    let out = c.block(vec![]);
    assert!(releases_in(&out).is_empty());
    let att = c.f.attest(
        "county-unit",
        Subject::Application(slug("village-road")),
        "construction-phase-1-complete",
        "done",
    );
    let out = c.ok(vec![att]);
    assert_eq!(releases_in(&out), vec![("t2".to_string(), 1_200_000)]);

    // t3 waits for a third approval.
    let out = c.block(vec![]);
    assert!(releases_in(&out).is_empty());
    let a3 =
        c.f.sign_as("finance-bureau", Role::Approver, &vote("village-road"));
    let out = c.ok(vec![a3]);
    assert_eq!(releases_in(&out), vec![("t3".to_string(), 800_000)]);
    assert_eq!(
        c.application("village-road").status,
        ApplicationStatus::Completed
    );
    let p = c.program("road-fund");
    assert_eq!(
        (p.balances.committed.0, p.balances.released.0),
        (0, 3_000_000)
    );

    // The bank settles all three releases.
    let settle = |r: u64, amount: u64| {
        Payload::Settle(payload::Settle {
            release: r,
            amount: Amount(amount),
            bank_ref: sha256(format!("ref-{r}").as_bytes()),
        })
    };
    let s: Vec<_> = [(0, 1_000_000), (1, 1_200_000), (2, 800_000)]
        .iter()
        .map(|(r, a)| c.f.sign_as("state-bank", Role::Disburser, &settle(*r, *a)))
        .collect();
    c.ok(s);
    assert!(c.release(2).is_settled());
    assert_eq!(c.program("road-fund").balances.settled.0, 3_000_000);

    // Closing returns the rest.
    let close = c.f.sign_as(
        "poverty-office",
        Role::ProgramOfficer,
        &Payload::CloseProgram(payload::CloseProgram {
            program: slug("road-fund"),
        }),
    );
    c.ok(vec![close]);
    let p = c.program("road-fund");
    assert_eq!(p.status, ProgramStatus::Closed);
    let b = p.balances;
    assert_eq!(
        (
            b.deposited.0,
            b.available.0,
            b.committed.0,
            b.released.0,
            b.settled.0,
            b.returned.0
        ),
        (6_000_000, 0, 0, 3_000_000, 3_000_000, 3_000_000)
    );
    assert!(b.conserved());

    // The money ledger in state alone tells the whole story, in order.
    let ledger = c
        .state
        .scan(&keys::ledger_prefix(&slug("road-fund")), None, 100)
        .expect("scan");
    let flows: Vec<u8> = ledger
        .iter()
        .map(|(_, v)| {
            aidledger_types::codec::decode::<MoneyEvent>(v)
                .expect("event")
                .flow
                .iati_code()
        })
        .collect();
    assert_eq!(flows, vec![1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 1]);
    let last: MoneyEvent =
        aidledger_types::codec::decode(&ledger[ledger.len() - 1].1).expect("event");
    assert_eq!(last.flow, MoneyFlow::FundsReturned);
    assert!(last.flow.is_reversal());
}
