#![allow(clippy::unwrap_used)]
//! Every rejection path: a table of (transaction, expected reason code).
//! Each case asserts the receipt names the reason and that nothing changed
//! but the signer's nonce, which an included transaction consumes whether
//! it applies or not (ADR 010). Transactions that break the inclusion rule
//! (unknown signer, wrong nonce, wrong chain) make the block invalid.

mod common;

use aidledger_contracts::condition_text::parse;
use aidledger_contracts::model::{GovAction, Recipient, Status};
use aidledger_contracts::payload::{self, Payload, TrancheSpec};
use aidledger_contracts::{Condition, TxOutcome};
use aidledger_crypto::{verify_tx, Keypair, Purpose};
use aidledger_execution::{apply_block, BlockContext, ExecError};
use aidledger_types::hash::sha256;
use aidledger_types::{Amount, ChainId, Role, SignedTx, TxBody, TxKind};
use common::Chain;

fn slug(s: &str) -> aidledger_types::Slug {
    s.parse().expect("slug")
}
fn text(s: &str) -> aidledger_types::Text {
    s.parse().expect("text")
}

/// A chain with a funded program, an approved application, a household,
/// a suspended account and a suspended organisation.
fn setup() -> Chain {
    let mut c = Chain::new();
    let create = c.f.create_program("fund", 10_000);
    let dep = c.f.deposit("fund", 1_000);
    let submit = c.f.sign_as(
        "county-unit",
        Role::ProgramOfficer,
        &Payload::SubmitApplication(payload::SubmitApplication {
            id: slug("app1"),
            program: slug("fund"),
            applicant: "county-unit".parse().expect("org"),
            region: "gansu/dingxi".parse().expect("region"),
            requested: Amount(500),
            purpose: text("well"),
            doc_hash: sha256(b"doc"),
        }),
    );
    let (_, hh) = c.f.register_household();
    c.ok(vec![create, dep, submit, hh]);
    let vote = Payload::ApproveApplication(payload::ApplicationVote {
        application: slug("app1"),
        note: text(""),
    });
    let v1 = c.f.sign_as("poverty-office", Role::Approver, &vote);
    let v2 = c.f.sign_as("dev-bank", Role::Approver, &vote);
    // Governance: suspend audit-office's attester; add and suspend an org.
    let suspended_key = c.f.keys.op("audit-office", Role::Attester).public();
    let vc = Keypair::from_seed([42u8; 32]);
    let actions = vec![
        GovAction::SetAccountStatus {
            key: suspended_key,
            status: Status::Suspended,
        },
        GovAction::AddOrg {
            id: "village-committee".parse().expect("org"),
            name: text("Village committee"),
            kind: aidledger_contracts::OrgKind::ImplementingUnit,
        },
    ];
    let mut txs = vec![v1, v2];
    for a in actions {
        txs.push(c.f.sign_as(
            "state-bank",
            Role::Admin,
            &Payload::GovPropose(payload::GovPropose { action: a }),
        ));
    }
    c.ok(txs);
    let approve = |p: u64| Payload::GovApprove(payload::GovApprove { proposal: p });
    let a0 = c.f.sign_as("dev-bank", Role::Admin, &approve(0));
    let a1 = c.f.sign_as("dev-bank", Role::Admin, &approve(1));
    c.ok(vec![a0, a1]);
    let add_acct = GovAction::AddAccount {
        key: vc.public(),
        org: "village-committee".parse().expect("org"),
        roles: vec![Role::Registrar],
    };
    let p2 = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose { action: add_acct }),
    );
    c.ok(vec![p2]);
    let a2 = c.f.sign_as("poverty-office", Role::Admin, &approve(2));
    c.ok(vec![a2]);
    let suspend_org = GovAction::UpdateOrg {
        id: "village-committee".parse().expect("org"),
        name: text("Village committee"),
        kind: aidledger_contracts::OrgKind::ImplementingUnit,
        status: Status::Suspended,
    };
    let p3 = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose {
            action: suspend_org,
        }),
    );
    let a3 = c.f.sign_as("finance-bureau", Role::Admin, &approve(3));
    c.ok(vec![p3]);
    c.ok(vec![a3]);
    assert_eq!(
        c.application("app1").status,
        aidledger_contracts::ApplicationStatus::Approved
    );
    c
}

fn plan_payload(id: &str, amount: u64, application: Option<&str>, cond: Condition) -> Payload {
    Payload::CreatePlan(payload::CreatePlan {
        id: slug(id),
        program: slug("fund"),
        application: application.map(slug),
        tranches: vec![TrancheSpec {
            id: slug("t"),
            amount: Amount(amount),
            recipient: Recipient::Org("county-unit".parse().expect("org")),
            condition: cond,
        }],
    })
}

fn raw(
    c: &Chain,
    key: &Keypair,
    kind: TxKind,
    payload: Vec<u8>,
    nonce: u64,
    chain: &ChainId,
) -> SignedTx {
    let body = TxBody {
        chain_id: chain.clone(),
        nonce,
        signer: key.public(),
        kind,
        payload,
    };
    let signature = key.sign(chain, Purpose::Tx, body.id().as_bytes());
    let _ = c;
    SignedTx { body, signature }
}

#[test]
fn every_rejection_names_its_reason_and_changes_nothing() {
    let c = setup();
    let f = &c.f;
    let chain = c.genesis.chain_id.clone();
    let k = |o: &str, r: Role| f.keys.op(o, r).clone();
    let n = |kp: &Keypair| f.next_nonce(&kp.public());
    let signed = |o: &str, r: Role, p: Payload| {
        let kp = k(o, r);
        f.sign_with_nonce(&kp, &p, n(&kp))
    };
    let deposit = |amount: u64| {
        Payload::Deposit(payload::Deposit {
            program: slug("fund"),
            amount: Amount(amount),
        })
    };
    let deep = "not(".repeat(8) + "after(1)" + &")".repeat(8);
    let deep: Condition = {
        // Nine levels cannot be parsed or decoded, so build it by hand.
        let mut c = parse("after(1)").expect("cond");
        for _ in 0..8 {
            c = Condition::Not(Box::new(c));
        }
        let _ = deep;
        c
    };
    let other_chain: ChainId = "other-chain".parse().expect("chain");
    let registrar = k("poverty-office", Role::Registrar);
    let mut garbage_trailing = deposit(5).encode();
    garbage_trailing.push(0);

    let cases: Vec<(&str, SignedTx, &str)> = vec![
        (
            "registrar may not deposit",
            signed("poverty-office", Role::Registrar, deposit(5)),
            "role-not-allowed",
        ),
        (
            "nonce from the future",
            f.sign_with_nonce(&k("state-bank", Role::Disburser), &deposit(5), 99),
            "wrong-nonce",
        ),
        (
            "unknown key",
            f.sign_with_nonce(&Keypair::from_seed([9u8; 32]), &deposit(5), 0),
            "unknown-account",
        ),
        (
            "suspended account",
            signed(
                "audit-office",
                Role::Attester,
                Payload::Attest(payload::Attest {
                    subject: aidledger_contracts::Subject::Application(slug("app1")),
                    claim: slug("x"),
                    value: aidledger_contracts::AttestValue::Code(slug("y")),
                }),
            ),
            "account-suspended",
        ),
        (
            "suspended organisation",
            f.sign_with_nonce(
                &Keypair::from_seed([42u8; 32]),
                &Payload::RegisterHousehold(payload::RegisterHousehold {
                    id: sha256(b"new"),
                    region: "gansu".parse().expect("r"),
                }),
                0,
            ),
            "org-not-active",
        ),
        (
            "wrong chain id",
            raw(
                &c,
                &k("state-bank", Role::Disburser),
                TxKind::Deposit,
                deposit(5).encode(),
                n(&k("state-bank", Role::Disburser)),
                &other_chain,
            ),
            "wrong-chain",
        ),
        (
            "garbage payload",
            raw(
                &c,
                &k("state-bank", Role::Disburser),
                TxKind::Deposit,
                vec![1, 2, 3],
                n(&k("state-bank", Role::Disburser)),
                &chain,
            ),
            "bad-payload",
        ),
        (
            "trailing payload bytes",
            raw(
                &c,
                &k("state-bank", Role::Disburser),
                TxKind::Deposit,
                garbage_trailing,
                n(&k("state-bank", Role::Disburser)),
                &chain,
            ),
            "bad-payload",
        ),
        (
            "zero deposit",
            signed("state-bank", Role::Disburser, deposit(0)),
            "invalid",
        ),
        (
            "deposit over the ceiling",
            signed("state-bank", Role::Disburser, deposit(9_001)),
            "ceiling-exceeded",
        ),
        (
            "deposit by a non-funder",
            signed("finance-bureau", Role::Disburser, deposit(5)),
            "not-permitted",
        ),
        (
            "deposit to no program",
            signed(
                "state-bank",
                Role::Disburser,
                Payload::Deposit(payload::Deposit {
                    program: slug("nope"),
                    amount: Amount(5),
                }),
            ),
            "not-found",
        ),
        (
            "program id taken",
            f.sign_with_nonce(
                &k("poverty-office", Role::ProgramOfficer),
                &Payload::CreateProgram(payload::CreateProgram {
                    id: slug("fund"),
                    title: text("x"),
                    currency: "CNY".parse().expect("c"),
                    decimals: 2,
                    funding_orgs: vec!["state-bank".parse().expect("o")],
                    budget_ceiling: Amount(1),
                    policy: aidledger_contracts::ApprovalPolicy {
                        threshold: 1,
                        orgs: vec!["dev-bank".parse().expect("o")],
                    },
                    region_scope: "gansu".parse().expect("r"),
                }),
                n(&k("poverty-office", Role::ProgramOfficer)),
            ),
            "already-exists",
        ),
        (
            "plan beyond available funds",
            signed(
                "poverty-office",
                Role::ProgramOfficer,
                plan_payload("p1", 1_001, None, parse("after(1)").expect("c")),
            ),
            "insufficient-funds",
        ),
        (
            "plan by another org's officer",
            signed(
                "dev-bank",
                Role::ProgramOfficer,
                plan_payload("p1", 10, None, parse("after(1)").expect("c")),
            ),
            "not-permitted",
        ),
        (
            "approvals without an application",
            signed(
                "poverty-office",
                Role::ProgramOfficer,
                plan_payload(
                    "p1",
                    10,
                    None,
                    parse("approvals(1, of: [dev-bank])").expect("c"),
                ),
            ),
            "bad-condition",
        ),
        (
            "approvals by an org outside the policy",
            signed(
                "poverty-office",
                Role::ProgramOfficer,
                plan_payload(
                    "p1",
                    10,
                    Some("app1"),
                    parse("approvals(1, of: [state-bank])").expect("c"),
                ),
            ),
            "bad-condition",
        ),
        // A too-deep tree cannot even be decoded: the postfix decoder refuses it.
        (
            "condition too deep",
            signed(
                "poverty-office",
                Role::ProgramOfficer,
                plan_payload("p1", 10, None, deep),
            ),
            "bad-payload",
        ),
        (
            "condition names a missing tranche",
            signed(
                "poverty-office",
                Role::ProgramOfficer,
                plan_payload("p1", 10, None, parse("released(nope)").expect("c")),
            ),
            "bad-condition",
        ),
        (
            "plan over the request",
            signed(
                "poverty-office",
                Role::ProgramOfficer,
                plan_payload("p1", 501, Some("app1"), parse("after(1)").expect("c")),
            ),
            "invalid",
        ),
        (
            "reject an approved application",
            signed(
                "finance-bureau",
                Role::Approver,
                Payload::RejectApplication(payload::ApplicationVote {
                    application: slug("app1"),
                    note: text(""),
                }),
            ),
            "wrong-status",
        ),
        (
            "vote twice",
            signed(
                "dev-bank",
                Role::Approver,
                Payload::ApproveApplication(payload::ApplicationVote {
                    application: slug("app1"),
                    note: text(""),
                }),
            ),
            "already-voted",
        ),
        (
            "approver outside the policy",
            signed(
                "state-bank",
                Role::Approver,
                Payload::ApproveApplication(payload::ApplicationVote {
                    application: slug("app1"),
                    note: text(""),
                }),
            ),
            "not-permitted",
        ),
        (
            "settle an unknown release",
            signed(
                "state-bank",
                Role::Disburser,
                Payload::Settle(payload::Settle {
                    release: 7,
                    amount: Amount(1),
                    bank_ref: sha256(b"r"),
                }),
            ),
            "not-found",
        ),
        (
            "resolve an unknown anomaly",
            signed(
                "audit-office",
                Role::Auditor,
                Payload::ResolveAnomaly(payload::ResolveAnomaly {
                    anomaly: 3,
                    note: text("checked"),
                }),
            ),
            "not-found",
        ),
        (
            "approve a proposal twice",
            signed(
                "dev-bank",
                Role::Admin,
                Payload::GovApprove(payload::GovApprove { proposal: 0 }),
            ),
            "wrong-status",
        ),
        (
            "attest about nothing",
            signed(
                "county-unit",
                Role::Attester,
                Payload::Attest(payload::Attest {
                    subject: aidledger_contracts::Subject::Application(slug("nope")),
                    claim: slug("x"),
                    value: aidledger_contracts::AttestValue::Code(slug("y")),
                }),
            ),
            "not-found",
        ),
        (
            "update an unknown household",
            signed(
                "poverty-office",
                Role::Registrar,
                Payload::UpdateHousehold(payload::UpdateHousehold {
                    id: sha256(b"none"),
                    region: "gansu".parse().expect("r"),
                    status: aidledger_contracts::HouseholdStatus::Inactive,
                }),
            ),
            "not-found",
        ),
        (
            "apply for another org",
            signed(
                "poverty-office",
                Role::ProgramOfficer,
                Payload::SubmitApplication(payload::SubmitApplication {
                    id: slug("a2"),
                    program: slug("fund"),
                    applicant: "county-unit".parse().expect("o"),
                    region: "gansu".parse().expect("r"),
                    requested: Amount(1),
                    purpose: text(""),
                    doc_hash: sha256(b""),
                }),
            ),
            "not-permitted",
        ),
        (
            "close with nothing wrong but by a bank",
            signed(
                "state-bank",
                Role::ProgramOfficer,
                Payload::CloseProgram(payload::CloseProgram {
                    program: slug("fund"),
                }),
            ),
            "not-permitted",
        ),
        (
            "entitlement with no periods",
            signed(
                "poverty-office",
                Role::ProgramOfficer,
                Payload::SetEntitlement(payload::SetEntitlement {
                    id: slug("e"),
                    program: slug("fund"),
                    amount: Amount(1),
                    period_ms: 1,
                    start: aidledger_types::Timestamp(0),
                    periods: 0,
                    eligibility: aidledger_contracts::Eligibility::Region(
                        "gansu".parse().expect("r"),
                    ),
                }),
            ),
            "invalid",
        ),
    ];
    let _ = registrar;

    let proposer = f.keys.validators[0].1.public();
    let ctx = BlockContext {
        chain_id: chain.clone(),
        height: c.parent.height + 1,
        timestamp: c.time().saturating_add_ms(1000),
        proposer,
    };
    let empty = apply_block(&c.state, &c.acc, &ctx, &[]).expect("empty block");
    // Breaking the inclusion rule (ADR 010) makes the whole block invalid:
    // such a transaction never gets a receipt and never moves a nonce.
    let not_includable = ["wrong-nonce", "unknown-account", "wrong-chain"];
    for (name, tx, code) in cases {
        let signer = tx.body.signer;
        let verify_chain = tx.body.chain_id.clone();
        let v = verify_tx(tx, &verify_chain).expect("signed");
        if not_includable.contains(&code) {
            match apply_block(&c.state, &c.acc, &ctx, &[v]) {
                Err(ExecError::NotIncludable { reason, index, .. }) => {
                    assert_eq!(reason.code(), code, "{name}: {reason}");
                    assert_eq!(index, 0);
                }
                other => panic!("{name}: expected not includable ({code}), got {other:?}"),
            }
            continue;
        }
        let out = apply_block(&c.state, &c.acc, &ctx, &[v]).expect("apply");
        match &out.receipts[0].outcome {
            TxOutcome::Rejected { code: got, reason } => {
                assert_eq!(
                    got, code,
                    "{name}: rejected as {got} ({reason}), expected {code}"
                );
                assert!(!reason.is_empty());
            }
            TxOutcome::Applied => panic!("{name}: applied, expected {code}"),
        }
        assert!(
            out.receipts[0].events.is_empty(),
            "{name}: a rejected tx emitted events"
        );
        // The one write beyond an empty block's: the signer's account,
        // whose nonce the rejected transaction consumed.
        let account_key = aidledger_contracts::keys::account(&signer);
        let mut writes = out.writes.clone();
        let account = writes
            .remove(&account_key)
            .flatten()
            .unwrap_or_else(|| panic!("{name}: the nonce was not consumed"));
        assert_eq!(
            writes, empty.writes,
            "{name}: writes beyond the nonce differ from an empty block"
        );
        let before = c
            .get::<aidledger_contracts::Account>(&account_key)
            .expect("account");
        let after: aidledger_contracts::Account =
            aidledger_types::codec::decode(&account).expect("account decodes");
        assert_eq!(after.nonce, before.nonce + 1, "{name}: nonce not consumed");
        assert_eq!(
            after,
            aidledger_contracts::Account {
                nonce: before.nonce + 1,
                ..before
            },
            "{name}: the account changed beyond its nonce"
        );
    }
}

#[test]
fn a_rejected_tx_consumes_its_nonce_and_can_never_apply_later() {
    let mut c = Chain::new();
    let create = c.f.create_program("fund", 10_000);
    c.ok(vec![create]);
    let kp = c.f.keys.op("state-bank", Role::Disburser).clone();
    let n = c.f.next_nonce(&kp.public());
    // Refused now: the program's ceiling is 10,000 and 20,000 is asked.
    let big = c.f.sign_with_nonce(
        &kp,
        &Payload::Deposit(payload::Deposit {
            program: slug("fund"),
            amount: Amount(20_000),
        }),
        n,
    );
    let out = c.block(vec![big.clone()]);
    assert_eq!(out.receipts[0].rejection_code(), Some("ceiling-exceeded"));
    assert_eq!(c.account(&kp.public()).nonce, n + 1, "nonce consumed");
    // The same bytes, resent, may not be included again: not in the next
    // block, and not in a block built by a proposer that was given them.
    let v = c.f.verified(big.clone());
    let ctx = c.next_ctx();
    match apply_block(&c.state, &c.acc, &ctx, std::slice::from_ref(&v)) {
        Err(ExecError::NotIncludable { reason, .. }) => {
            assert_eq!(reason.code(), "wrong-nonce", "{reason}")
        }
        other => panic!("a resent rejected tx must not be includable: {other:?}"),
    }
    let (block, _) = aidledger_execution::build_block(&c.parent, &ctx, 0, &[v], &c.state, &c.acc)
        .expect("build");
    assert!(
        block.txs.is_empty(),
        "the builder must leave the resend out"
    );
    // The next transaction takes the next nonce and applies.
    let good = c.f.sign_with_nonce(
        &kp,
        &Payload::Deposit(payload::Deposit {
            program: slug("fund"),
            amount: Amount(10),
        }),
        n + 1,
    );
    c.ok(vec![good]);
    assert_eq!(c.account(&kp.public()).nonce, n + 2);
}

#[test]
fn a_tx_repeated_within_one_block_is_not_includable() {
    let mut c = Chain::new();
    let create = c.f.create_program("fund", 10_000);
    let v = c.f.verified(create.clone());
    let ctx = BlockContext {
        chain_id: c.genesis.chain_id.clone(),
        height: 1,
        timestamp: c.time().saturating_add_ms(1),
        proposer: c.f.keys.validators[0].1.public(),
    };
    match apply_block(&c.state, &c.acc, &ctx, &[v.clone(), v]) {
        Err(ExecError::NotIncludable { index, reason, .. }) => {
            assert_eq!(index, 1);
            assert_eq!(reason.code(), "duplicate-tx");
        }
        other => panic!("expected not includable, got {other:?}"),
    }
}
