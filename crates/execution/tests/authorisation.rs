#![allow(clippy::unwrap_used)]
//! Walks the whole authorisation table (`aidledger_types::authz::TABLE`):
//! every kind × role through the envelope check, and every kind × relation
//! through block execution, each cell expected allowed or refused as the
//! table says. A module that checks something else, or forgets to check,
//! fails a cell here.

mod common;

use aidledger_contracts::condition_text::parse;
use aidledger_contracts::model::{
    ApprovalPolicy, AttestValue, Eligibility, GovAction, HouseholdStatus, ParamValue, Recipient,
    Subject,
};
use aidledger_contracts::payload::{self, Payload, TrancheSpec};
use aidledger_contracts::{check_envelope, Overlay};
use aidledger_execution::testkit::{dev_genesis, TxFactory};
use aidledger_types::authz::{self, Relation};
use aidledger_types::hash::sha256;
use aidledger_types::{Amount, Role, SignedTx, Timestamp, TxBody, TxKind};
use common::Chain;

/// The organisation that stands in each relation to the fixture's subjects.
fn representative(r: Relation) -> &'static str {
    match r {
        Relation::Owner => "poverty-office",
        Relation::Funder => "state-bank",
        Relation::Policy => "dev-bank",
        Relation::Beneficiary => "county-unit",
        Relation::Other => "audit-office",
    }
}

fn slug(s: &str) -> aidledger_types::Slug {
    s.parse().unwrap()
}

/// Signs `p` with the first operator key of `org` (every account of the
/// fixture holds every role, so only relations decide).
fn sign(f: &mut TxFactory, org: &str, p: &Payload) -> SignedTx {
    let role = Role::ALL
        .into_iter()
        .find(|r| f.keys.operators.contains_key(&(org.parse().unwrap(), *r)))
        .unwrap();
    f.sign_as(org, role, p)
}

const HOUSEHOLD_SEED: &[u8] = b"authorisation fixture household";

/// A chain where each representative holds exactly its relation:
/// program `fund` (owner poverty-office, funder state-bank, policy
/// dev-bank), application `app` by the county unit (submitted), plan
/// `direct` awaiting approval and plan `funded` whose two tranches to the
/// county unit are released (release 0 unsettled; release 1 settled wrong,
/// with anomaly 0), a household registered by the county unit, program
/// `spare` to close, and proposal 0 by the finance bureau.
fn world() -> Chain {
    let mut c = Chain::with(|g| {
        for a in &mut g.accounts {
            a.roles = Role::ALL.to_vec();
        }
    });
    let program = |id: &str| {
        Payload::CreateProgram(payload::CreateProgram {
            id: slug(id),
            title: "Relief".parse().unwrap(),
            currency: "CNY".parse().unwrap(),
            decimals: 2,
            funding_orgs: vec!["state-bank".parse().unwrap()],
            budget_ceiling: Amount(1_000_000_000),
            policy: ApprovalPolicy {
                threshold: 1,
                orgs: vec!["dev-bank".parse().unwrap()],
            },
            region_scope: "gansu".parse().unwrap(),
        })
    };
    let deposit = Payload::Deposit(payload::Deposit {
        program: slug("fund"),
        amount: Amount(1_000_000),
    });
    let txs = vec![
        sign(&mut c.f, "poverty-office", &program("fund")),
        sign(&mut c.f, "poverty-office", &program("spare")),
        sign(&mut c.f, "state-bank", &deposit),
        sign(&mut c.f, "county-unit", &application("app")),
        sign(&mut c.f, "county-unit", &application("app2")),
        sign(
            &mut c.f,
            "dev-bank",
            &Payload::ApproveApplication(payload::ApplicationVote {
                application: slug("app2"),
                note: "fine".parse().unwrap(),
            }),
        ),
    ];
    c.ok(txs);
    let plan = |id: &str, app: Option<&str>, tranches: &[(&str, u64)]| {
        Payload::CreatePlan(payload::CreatePlan {
            id: slug(id),
            program: slug("fund"),
            application: app.map(slug),
            tranches: tranches
                .iter()
                .map(|(t, a)| TrancheSpec {
                    id: slug(t),
                    amount: Amount(*a),
                    recipient: Recipient::Org("county-unit".parse().unwrap()),
                    condition: parse("after(1)").unwrap(),
                })
                .collect(),
        })
    };
    let register = Payload::RegisterHousehold(payload::RegisterHousehold {
        id: sha256(HOUSEHOLD_SEED),
        region: "gansu/dingxi".parse().unwrap(),
    });
    let propose = Payload::GovPropose(payload::GovPropose {
        action: GovAction::SetParam {
            param: ParamValue::EntitlementBatch(900),
        },
    });
    let txs = vec![
        sign(
            &mut c.f,
            "poverty-office",
            &plan("direct", None, &[("t", 100)]),
        ),
        sign(
            &mut c.f,
            "poverty-office",
            &plan("funded", Some("app2"), &[("t1", 100), ("t2", 200)]),
        ),
        sign(&mut c.f, "county-unit", &register),
        sign(&mut c.f, "finance-bureau", &propose),
    ];
    c.ok(txs);
    assert_eq!(c.release(1).amount, Amount(200));
    let wrong = settle(1, 201);
    let tx = sign(&mut c.f, "state-bank", &wrong);
    c.ok(vec![tx]);
    assert!(c
        .get::<aidledger_contracts::Anomaly>(&aidledger_contracts::keys::anomaly(0))
        .is_some());
    c
}

fn application(id: &str) -> Payload {
    Payload::SubmitApplication(payload::SubmitApplication {
        id: slug(id),
        program: slug("fund"),
        applicant: "county-unit".parse().unwrap(),
        region: "gansu/dingxi".parse().unwrap(),
        requested: Amount(1_000),
        purpose: "Village road".parse().unwrap(),
        doc_hash: sha256(b"doc"),
    })
}

fn settle(release: u64, amount: u64) -> Payload {
    Payload::Settle(payload::Settle {
        release,
        amount: Amount(amount),
        bank_ref: sha256(b"bank ref"),
    })
}

/// A payload of `kind` that is valid in [`world`] for an organisation the
/// table allows; `tag` keeps new ids distinct.
fn payload_for(kind: TxKind, tag: &str) -> Payload {
    let vote = payload::ApplicationVote {
        application: slug("app"),
        note: "reviewed".parse().unwrap(),
    };
    match kind {
        TxKind::GovPropose => Payload::GovPropose(payload::GovPropose {
            action: GovAction::SetParam {
                param: ParamValue::EntitlementBatch(800),
            },
        }),
        TxKind::GovApprove => Payload::GovApprove(payload::GovApprove { proposal: 0 }),
        TxKind::CreateProgram => Payload::CreateProgram(payload::CreateProgram {
            id: slug(&format!("new-{tag}")),
            title: "New".parse().unwrap(),
            currency: "CNY".parse().unwrap(),
            decimals: 2,
            funding_orgs: vec!["state-bank".parse().unwrap()],
            budget_ceiling: Amount(1_000),
            policy: ApprovalPolicy {
                threshold: 1,
                orgs: vec!["dev-bank".parse().unwrap()],
            },
            region_scope: "gansu".parse().unwrap(),
        }),
        TxKind::Deposit => Payload::Deposit(payload::Deposit {
            program: slug("fund"),
            amount: Amount(10),
        }),
        TxKind::SubmitApplication => application("app3"),
        TxKind::ApproveApplication => Payload::ApproveApplication(vote),
        TxKind::RejectApplication => Payload::RejectApplication(vote),
        TxKind::CreatePlan => Payload::CreatePlan(payload::CreatePlan {
            id: slug("plan-new"),
            program: slug("fund"),
            application: None,
            tranches: vec![TrancheSpec {
                id: slug("t"),
                amount: Amount(1),
                recipient: Recipient::Org("county-unit".parse().unwrap()),
                condition: parse("after(1)").unwrap(),
            }],
        }),
        TxKind::Attest => Payload::Attest(payload::Attest {
            subject: Subject::Household(sha256(HOUSEHOLD_SEED)),
            claim: slug("resident"),
            value: AttestValue::Code(slug("yes")),
        }),
        TxKind::RegisterHousehold => Payload::RegisterHousehold(payload::RegisterHousehold {
            id: sha256(format!("new household {tag}").as_bytes()),
            region: "gansu".parse().unwrap(),
        }),
        TxKind::UpdateHousehold => Payload::UpdateHousehold(payload::UpdateHousehold {
            id: sha256(HOUSEHOLD_SEED),
            region: "gansu/longnan".parse().unwrap(),
            status: HouseholdStatus::Active,
        }),
        TxKind::SetEntitlement => Payload::SetEntitlement(payload::SetEntitlement {
            id: slug("monthly"),
            program: slug("fund"),
            amount: Amount(10),
            period_ms: aidledger_types::time::MS_PER_DAY,
            start: Timestamp(Chain::genesis_time().0 + 30 * aidledger_types::time::MS_PER_DAY),
            periods: 2,
            eligibility: Eligibility::Region("gansu".parse().unwrap()),
        }),
        TxKind::Settle => settle(0, 100),
        TxKind::CancelTranche => Payload::CancelTranche(payload::CancelTranche {
            plan: slug("direct"),
            tranche: slug("t"),
        }),
        TxKind::ResolveAnomaly => Payload::ResolveAnomaly(payload::ResolveAnomaly {
            anomaly: 0,
            note: "bank statement checked".parse().unwrap(),
        }),
        TxKind::CloseProgram => Payload::CloseProgram(payload::CloseProgram {
            program: slug("spare"),
        }),
        TxKind::ApprovePlan => Payload::ApprovePlan(payload::ApprovePlan {
            plan: slug("direct"),
        }),
    }
}

#[test]
fn every_kind_and_relation_is_allowed_or_refused_as_the_table_says() {
    let mut cells = 0;
    for rule in &authz::TABLE {
        for rel in Relation::ALL {
            let allowed = authz::refusal(rule.kind, &[rel]).is_none();
            let mut c = world();
            let org = representative(rel);
            let p = payload_for(rule.kind, rel.as_str());
            assert_eq!(p.kind(), rule.kind);
            let tx = sign(&mut c.f, org, &p);
            let out = c.block(vec![tx]);
            let r = &out.receipts[0];
            if allowed {
                assert!(
                    r.is_applied(),
                    "{} by {org} ({}) should apply: {:?}",
                    rule.kind,
                    rel.as_str(),
                    r.outcome
                );
            } else {
                assert_eq!(
                    r.rejection_code(),
                    Some("not-permitted"),
                    "{} by {org} ({}) should be refused: {:?}",
                    rule.kind,
                    rel.as_str(),
                    r.outcome
                );
            }
            cells += 1;
        }
    }
    assert_eq!(cells, TxKind::ALL.len() * Relation::ALL.len());
}

#[test]
fn every_kind_and_role_passes_the_envelope_check_as_the_table_says() {
    let (g, keys) = dev_genesis(4, 11);
    let (state, _) = aidledger_execution::genesis_state(&g).unwrap();
    let mut cells = 0;
    for rule in &authz::TABLE {
        for role in Role::ALL {
            // Any organisation's single-role account for `role`.
            let (_, kp) = keys
                .operators
                .iter()
                .find(|((_, r), _)| *r == role)
                .unwrap();
            let body = TxBody {
                chain_id: g.chain_id.clone(),
                nonce: 0,
                signer: kp.public(),
                kind: rule.kind,
                payload: Vec::new(),
            };
            let mut o = Overlay::new(&state);
            let verdict = check_envelope(&mut o, &body);
            let want = rule.roles.contains(&role);
            match verdict {
                Ok(_) => assert!(want, "{} signed by a {role} passed", rule.kind),
                Err(e) => {
                    assert!(!want, "{} signed by a {role} refused: {e}", rule.kind);
                    assert_eq!(e.code(), "role-not-allowed", "{e}");
                }
            }
            // Admission asks the same table.
            assert_eq!(rule.kind.allowed_roles(), rule.roles);
            cells += 1;
        }
    }
    assert_eq!(cells, TxKind::ALL.len() * Role::ALL.len());
}

/// `AIDLEDGER_BLESS_DOCS=1` rewrites the table in the guide from the code.
#[test]
fn the_contracts_guide_holds_the_table_as_the_code_has_it() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/contracts.md");
    let guide = std::fs::read_to_string(path).unwrap();
    let start = "<!-- authorisation table: generated from aidledger_types::authz::markdown() -->\n";
    let end = "<!-- end of authorisation table -->";
    let from = guide
        .find(start)
        .expect("table start marker in docs/contracts.md")
        + start.len();
    let to = guide[from..].find(end).expect("table end marker") + from;
    if std::env::var_os("AIDLEDGER_BLESS_DOCS").is_some() {
        let fresh = format!("{}{}{}", &guide[..from], authz::markdown(), &guide[to..]);
        std::fs::write(path, fresh).unwrap();
        return;
    }
    assert_eq!(
        &guide[from..to],
        authz::markdown(),
        "docs/contracts.md's authorisation table differs from the code's; paste authz::markdown()"
    );
}

/// The refused relations decide even when the organisation also holds an
/// allowed one: the policy organisation that applied, that a plan pays,
/// or the funder a release pays, is refused.
#[test]
fn a_refused_relation_wins_over_an_allowed_one() {
    // dev-bank is in the policy and applies for itself.
    let mut c = world();
    let own = Payload::SubmitApplication(payload::SubmitApplication {
        applicant: "dev-bank".parse().unwrap(),
        ..match application("own") {
            Payload::SubmitApplication(s) => s,
            _ => unreachable!(),
        }
    });
    let tx = sign(&mut c.f, "dev-bank", &own);
    c.ok(vec![tx]);
    let vote = Payload::ApproveApplication(payload::ApplicationVote {
        application: slug("own"),
        note: "mine".parse().unwrap(),
    });
    let tx = sign(&mut c.f, "dev-bank", &vote);
    let out = c.block(vec![tx]);
    assert_eq!(out.receipts[0].rejection_code(), Some("not-permitted"));

    // A plan paying dev-bank: dev-bank may not approve it.
    let plan = Payload::CreatePlan(payload::CreatePlan {
        id: slug("to-policy"),
        program: slug("fund"),
        application: None,
        tranches: vec![TrancheSpec {
            id: slug("t"),
            amount: Amount(5),
            recipient: Recipient::Org("dev-bank".parse().unwrap()),
            condition: parse("after(1)").unwrap(),
        }],
    });
    let tx = sign(&mut c.f, "poverty-office", &plan);
    c.ok(vec![tx]);
    let approve = Payload::ApprovePlan(payload::ApprovePlan {
        plan: slug("to-policy"),
    });
    let tx = sign(&mut c.f, "dev-bank", &approve);
    let out = c.block(vec![tx]);
    assert_eq!(out.receipts[0].rejection_code(), Some("not-permitted"));
    assert!(format!("{:?}", out.receipts[0].outcome).contains("the beneficiary"));

    // A release paying the funder: the funder may not settle it.
    let mut c = world();
    let plan = Payload::CreatePlan(payload::CreatePlan {
        id: slug("to-funder"),
        program: slug("fund"),
        application: None,
        tranches: vec![TrancheSpec {
            id: slug("t"),
            amount: Amount(7),
            recipient: Recipient::Org("state-bank".parse().unwrap()),
            condition: parse("after(1)").unwrap(),
        }],
    });
    let tx = sign(&mut c.f, "poverty-office", &plan);
    let approve = Payload::ApprovePlan(payload::ApprovePlan {
        plan: slug("to-funder"),
    });
    let a = sign(&mut c.f, "dev-bank", &approve);
    c.ok(vec![tx, a]);
    assert_eq!(c.release(2).amount, Amount(7));
    let tx = sign(&mut c.f, "state-bank", &settle(2, 7));
    let out = c.block(vec![tx]);
    assert_eq!(out.receipts[0].rejection_code(), Some("not-permitted"));
}
