#![allow(clippy::unwrap_used)]
//! Cross-department checks set by governance (issue 14): declarative rules
//! over attestations, evaluated deterministically at each attestation,
//! raising `cross-check` anomalies that hold a household's payments.

mod common;

use aidledger_contracts::model::{ClaimTest, CrossCheck, GovAction, Subject};
use aidledger_contracts::{keys, Anomaly, AnomalyKind, AnomalyStatus, EventBody, MoneyFlow};
use aidledger_execution::BlockOutcome;
use aidledger_types::{Hash, Timestamp};
use common::{govern, refused, Chain, DAY};

fn test(claim: &str, by: &str, value: &str) -> ClaimTest {
    ClaimTest {
        claim: claim.parse().unwrap(),
        by: by.parse().unwrap(),
        value: value.parse().unwrap(),
    }
}

/// "Income above the line per the finance bureau while flagged poor per
/// the poverty office."
fn income_rule() -> CrossCheck {
    CrossCheck {
        id: "income-vs-poverty".parse().unwrap(),
        description:
            "income above the line per the finance bureau, flagged poor per the poverty office"
                .parse()
                .unwrap(),
        when: vec![
            test("income-level", "finance-bureau", "above-line"),
            test("poverty-status", "poverty-office", "poor"),
        ],
    }
}

fn cross_check_anomalies(c: &Chain) -> Vec<(u64, Subject, AnomalyStatus)> {
    let mut out = Vec::new();
    for id in 0..64 {
        let Some(a) = c.get::<Anomaly>(&keys::anomaly(id)) else {
            break;
        };
        if let AnomalyKind::CrossCheck { .. } = a.kind {
            out.push((a.id, a.subject, a.status));
        }
    }
    out
}

fn household(c: &mut Chain) -> Hash {
    let (h, reg) = c.f.register_household();
    c.ok(vec![reg]);
    h
}

fn attest(c: &mut Chain, org: &str, h: Hash, claim: &str, value: &str) -> BlockOutcome {
    let tx = c.f.attest(org, Subject::Household(h), claim, value);
    c.ok(vec![tx])
}

#[test]
fn a_mismatch_between_departments_raises_an_anomaly_in_either_order() {
    let mut c = Chain::new();
    govern(
        &mut c,
        GovAction::SetCrossCheck {
            check: income_rule(),
        },
    );
    let (h1, h2) = (household(&mut c), household(&mut c));
    // Poverty office first, then the finance bureau.
    attest(&mut c, "poverty-office", h1, "poverty-status", "poor");
    assert!(cross_check_anomalies(&c).is_empty(), "one test alone holds");
    let out = attest(&mut c, "finance-bureau", h1, "income-level", "above-line");
    assert!(out.receipts[0].events.iter().any(|e| matches!(
        &e.body,
        EventBody::AnomalyRaised { code, .. } if code == "cross-check"
    )));
    // The other order.
    attest(&mut c, "finance-bureau", h2, "income-level", "above-line");
    attest(&mut c, "poverty-office", h2, "poverty-status", "poor");
    let found = cross_check_anomalies(&c);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].1, Subject::Household(h1));
    assert_eq!(found[1].1, Subject::Household(h2));
}

#[test]
fn consistent_attestations_raise_nothing() {
    let mut c = Chain::new();
    govern(
        &mut c,
        GovAction::SetCrossCheck {
            check: income_rule(),
        },
    );
    let h = household(&mut c);
    attest(&mut c, "poverty-office", h, "poverty-status", "poor");
    attest(&mut c, "finance-bureau", h, "income-level", "below-line");
    // The same claim from an organisation the rule does not name.
    attest(&mut c, "county-unit", h, "income-level", "above-line");
    assert!(cross_check_anomalies(&c).is_empty());
}

#[test]
fn without_the_rule_nothing_is_raised_and_removing_it_stops_new_ones() {
    let mut c = Chain::new();
    let h = household(&mut c);
    attest(&mut c, "poverty-office", h, "poverty-status", "poor");
    attest(&mut c, "finance-bureau", h, "income-level", "above-line");
    assert!(cross_check_anomalies(&c).is_empty(), "no rule in force");
    govern(
        &mut c,
        GovAction::SetCrossCheck {
            check: income_rule(),
        },
    );
    govern(
        &mut c,
        GovAction::RemoveCrossCheck {
            id: "income-vs-poverty".parse().unwrap(),
        },
    );
    let h2 = household(&mut c);
    attest(&mut c, "poverty-office", h2, "poverty-status", "poor");
    attest(&mut c, "finance-bureau", h2, "income-level", "above-line");
    assert!(cross_check_anomalies(&c).is_empty(), "rule removed");
    // Removing it again is refused.
    refused(
        &govern(
            &mut c,
            GovAction::RemoveCrossCheck {
                id: "income-vs-poverty".parse().unwrap(),
            },
        ),
        "does not exist",
    );
}

#[test]
fn the_anomaly_holds_the_households_payments_until_two_people_resolve_it() {
    let mut c = Chain::new();
    let p = c.f.create_program("fund", 1_000_000_000);
    let d = c.f.deposit("fund", 1_000_000);
    c.ok(vec![p, d]);
    govern(
        &mut c,
        GovAction::SetCrossCheck {
            check: income_rule(),
        },
    );
    let h = household(&mut c);
    attest(&mut c, "poverty-office", h, "poverty-status", "poor");
    attest(&mut c, "finance-bureau", h, "income-level", "above-line");
    let start = c.time();
    let e =
        c.f.set_entitlement("monthly", "fund", 100, start.saturating_add_ms(DAY), DAY, 3);
    c.ok(vec![e]);
    let paid = |out: &BlockOutcome| {
        out.events
            .iter()
            .any(|e| matches!(&e.body, EventBody::Money(m) if m.flow == MoneyFlow::Disbursement))
    };
    let out = c.block_at(Timestamp(start.0 + 2 * DAY), vec![]);
    assert!(!paid(&out), "held by the cross-check anomaly");
    let (id, _, _) = cross_check_anomalies(&c)[0].clone();
    let txs = c.resolve_txs(id);
    assert_eq!(txs.len(), 2, "a household anomaly takes two people");
    let out = c.ok(txs);
    assert!(paid(&out), "paid once resolved");
    // No new anomaly for the same rule from later, unrelated attestations.
    attest(&mut c, "county-unit", h, "resident", "yes");
    assert_eq!(cross_check_anomalies(&c).len(), 1);
}

#[test]
fn one_open_anomaly_per_rule_and_subject() {
    let mut c = Chain::new();
    let mut rule = income_rule();
    rule.when.push(test("vehicle", "county-unit", "car"));
    govern(&mut c, GovAction::SetCrossCheck { check: rule });
    let h = household(&mut c);
    attest(&mut c, "poverty-office", h, "poverty-status", "poor");
    attest(&mut c, "finance-bureau", h, "income-level", "above-line");
    assert!(cross_check_anomalies(&c).is_empty(), "two of three tests");
    attest(&mut c, "county-unit", h, "vehicle", "car");
    assert_eq!(cross_check_anomalies(&c).len(), 1);
    // A second rule over the same facts raises its own anomaly once.
    let mut other = income_rule();
    other.id = "second-look".parse().unwrap();
    other.when = vec![test("vehicle", "county-unit", "car")];
    govern(&mut c, GovAction::SetCrossCheck { check: other });
    let h2 = household(&mut c);
    attest(&mut c, "county-unit", h2, "vehicle", "car");
    assert_eq!(cross_check_anomalies(&c).len(), 2);
}

#[test]
fn malformed_rules_are_refused_by_governance() {
    let mut c = Chain::new();
    let with = |f: &dyn Fn(&mut CrossCheck)| {
        let mut r = income_rule();
        f(&mut r);
        GovAction::SetCrossCheck { check: r }
    };
    refused(&govern(&mut c, with(&|r| r.when.clear())), "1 to 4 tests");
    refused(
        &govern(
            &mut c,
            with(&|r| {
                for i in 0..3 {
                    r.when.push(test(&format!("claim-{i}"), "county-unit", "x"));
                }
            }),
        ),
        "1 to 4 tests",
    );
    refused(
        &govern(
            &mut c,
            with(&|r| r.when.push(test("income-level", "finance-bureau", "other"))),
        ),
        "same claim",
    );
    refused(
        &govern(&mut c, with(&|r| r.when[0].by = "nobody".parse().unwrap())),
        "does not exist",
    );
    refused(
        &govern(&mut c, with(&|r| r.description = " ".parse().unwrap())),
        "description",
    );
    // At most 32 checks in force.
    for i in 0..32 {
        let out = govern(
            &mut c,
            with(&|r| r.id = format!("rule-{i}").parse().unwrap()),
        );
        assert!(
            out.receipts[0].is_applied(),
            "rule {i}: {:?}",
            out.receipts[0].outcome
        );
    }
    refused(
        &govern(&mut c, with(&|r| r.id = "rule-32".parse().unwrap())),
        "cross-checks",
    );
    // Replacing an existing one is fine at the limit.
    let out = govern(&mut c, with(&|r| r.id = "rule-0".parse().unwrap()));
    assert!(out.receipts[0].is_applied());
}
