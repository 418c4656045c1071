#![allow(clippy::unwrap_used)]
//! The condition language: text and binary round trips, bounds, and
//! refusal of malformed encodings.

use aidledger_contracts::condition::{MAX_DEPTH, MAX_NODES};
use aidledger_contracts::condition_text::{parse, print};
use aidledger_contracts::{AttestValue, Condition, Subject};
use aidledger_types::{codec, Hash, OrgId, Slug, Timestamp};
use proptest::prelude::*;

fn slug_s() -> impl Strategy<Value = Slug> {
    "[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,5})?".prop_map(|s| Slug::new(s).expect("slug"))
}
fn org_s() -> impl Strategy<Value = OrgId> {
    "[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,5})?".prop_map(|s| OrgId::new(s).expect("org"))
}
fn subject_s() -> impl Strategy<Value = Subject> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|b| Subject::Household(Hash(b))),
        slug_s().prop_map(Subject::Application),
        any::<u64>().prop_map(Subject::Release),
    ]
}
fn value_s() -> impl Strategy<Value = AttestValue> {
    prop_oneof![
        slug_s().prop_map(AttestValue::Code),
        any::<[u8; 32]>().prop_map(|b| AttestValue::Hash(Hash(b))),
    ]
}
fn time_s() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        (0u64..2_900_000).prop_map(|d| Timestamp(d * 86_400_000)),
        (0u64..250_000_000_000).prop_map(|s| Timestamp(s * 1000)),
        any::<u64>().prop_map(Timestamp),
    ]
}
fn leaf() -> impl Strategy<Value = Condition> {
    prop_oneof![
        time_s().prop_map(Condition::After),
        time_s().prop_map(Condition::Before),
        (1u32..5, proptest::collection::vec(org_s(), 1..4))
            .prop_map(|(k, of)| Condition::Approvals { k, of }),
        (slug_s(), org_s(), subject_s()).prop_map(|(claim, by, subject)| Condition::Attested {
            claim,
            by,
            subject
        }),
        (slug_s(), org_s(), subject_s(), value_s()).prop_map(|(claim, by, subject, value)| {
            Condition::AttestedValue {
                claim,
                by,
                subject,
                value,
            }
        }),
        slug_s().prop_map(Condition::Released),
        slug_s().prop_map(Condition::Settled),
        subject_s().prop_map(Condition::NoOpenAnomaly),
    ]
}
fn cond() -> impl Strategy<Value = Condition> {
    leaf()
        .prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..4).prop_map(Condition::All),
                proptest::collection::vec(inner.clone(), 1..4).prop_map(Condition::Any),
                inner.prop_map(|c| Condition::Not(Box::new(c))),
            ]
        })
        .prop_filter("within bounds", |c| {
            c.node_count() <= MAX_NODES && c.depth() <= MAX_DEPTH
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn printer_and_parser_round_trip(c in cond()) {
        let text = print(&c);
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&back, &c);
        prop_assert_eq!(print(&back), text);
    }

    #[test]
    fn binary_encoding_round_trips_canonically(c in cond()) {
        let bytes = codec::encode(&c);
        let back: Condition = codec::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &c);
        prop_assert_eq!(codec::encode(&back), bytes);
    }

    #[test]
    fn json_form_is_the_text_form(c in cond()) {
        let j = serde_json::to_string(&c).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&j, &serde_json::to_string(&print(&c)).map_err(|e| TestCaseError::fail(e.to_string()))?);
        let back: Condition = serde_json::from_str(&j).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, c);
    }

    #[test]
    fn the_parser_never_panics(s in "[a-z_():, \\[\\]0-9-]{0,80}") {
        let _ = parse(&s);
    }
}

#[test]
fn over_deep_or_oversized_trees_do_not_decode() {
    let mut deep = Condition::After(Timestamp(1));
    for _ in 0..MAX_DEPTH {
        deep = Condition::Not(Box::new(deep));
    }
    assert_eq!(deep.depth(), MAX_DEPTH + 1);
    assert!(codec::decode::<Condition>(&codec::encode(&deep)).is_err());
    let wide = Condition::All(
        (0..MAX_NODES)
            .map(|i| Condition::After(Timestamp(i as u64)))
            .collect(),
    );
    assert!(codec::decode::<Condition>(&codec::encode(&wide)).is_err());
    // A dangling operator or two roots are malformed postfix.
    let two_roots = codec::encode(&Condition::All(vec![
        Condition::After(Timestamp(1)),
        Condition::After(Timestamp(2)),
    ]));
    // Patch the final node count from 2 to 1: leaves one condition unconsumed.
    let mut patched = two_roots.clone();
    let n = patched.len();
    patched[n - 2] = 1;
    assert!(codec::decode::<Condition>(&patched).is_err());
}

#[test]
fn a_hostile_deeply_nested_payload_is_refused_without_recursion() {
    // 20,000 `not` nodes in postfix form: the decoder's explicit stack and
    // node limit refuse it without recursing.
    let mut c = Condition::After(Timestamp(1));
    for _ in 0..MAX_DEPTH - 1 {
        c = Condition::Not(Box::new(c));
    }
    let mut bytes = codec::encode(&c);
    // Node count is a u64 prefix; each `not` is a 4-byte variant tag (2).
    let count = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) + 20_000;
    bytes[..8].copy_from_slice(&count.to_le_bytes());
    for _ in 0..20_000 {
        bytes.extend_from_slice(&2u32.to_le_bytes());
    }
    assert!(codec::decode::<Condition>(&bytes).is_err());
}

#[test]
fn validation_explains_what_is_wrong() {
    let t = |s: &str| Slug::new(s).expect("slug");
    let ids = [t("a"), t("b")];
    let cases = [
        (
            "approvals(1, of: [x])",
            false,
            "needs a plan that funds an application",
        ),
        ("approvals(3, of: [x, y])", true, "must need 1 to 2"),
        ("approvals(1, of: [x, x])", true, "twice"),
        ("released(a)", false, "refers to itself"),
        ("settled(zzz)", false, "no tranche zzz"),
    ];
    for (text, has_app, needle) in cases {
        let c = parse(text).expect(text);
        let e = c.validate(&ids, &t("a"), has_app, 4).expect_err(text);
        assert!(e.to_string().contains(needle), "{text}: {e}");
    }
    parse("all(released(b), after(2026-03-01))")
        .expect("ok")
        .validate(&ids, &t("a"), false, 3)
        .expect("valid");
    // attested_value exists from plans@4 on, also deep inside a tree.
    let v = parse(
        "any(after(2026-03-01), not(attested_value(c, by: x, subject: app:p, value: code:ok)))",
    )
    .expect("parses under any version");
    let e = v.validate(&ids, &t("a"), false, 3).expect_err("plans@3");
    assert!(e.to_string().contains("needs plans@4"), "{e}");
    v.validate(&ids, &t("a"), false, 4).expect("plans@4");
}

/// `explain` agrees with the contracts' evaluation: the whole condition's
/// verdict is the one `all`/`any` of its leaves gives, and a negated leaf
/// is shown negated with the verdict that counts for the condition.
mod explain {
    use super::*;
    use aidledger_contracts::condition::{explain, EvalEnv};
    use aidledger_contracts::Plan;
    use aidledger_types::PublicKey;
    use std::collections::BTreeMap;

    fn empty_plan() -> Plan {
        Plan {
            id: Slug::new("p").unwrap(),
            program: Slug::new("fund").unwrap(),
            application: None,
            tranches: vec![],
            created_height: 1,
            created_by: PublicKey([1; 32]),
            approvals_needed: 0,
            approvals: vec![],
        }
    }

    fn dated() -> impl Strategy<Value = Condition> {
        prop_oneof![
            (0u64..100).prop_map(|t| Condition::After(Timestamp(t))),
            (0u64..100).prop_map(|t| Condition::Before(Timestamp(t))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn the_verdict_is_what_the_leaves_make(
            leaves in proptest::collection::vec(dated(), 1..6),
            now in 0u64..100,
            any_of in any::<bool>(),
        ) {
            let plan = empty_plan();
            let env = EvalEnv { plan: &plan, application: None };
            let store = BTreeMap::new();
            let c = if any_of { Condition::Any(leaves.clone()) } else { Condition::All(leaves.clone()) };
            let (holds, states) = explain(&c, &store, 1, Timestamp(now), &env).unwrap();
            prop_assert_eq!(states.len(), leaves.len());
            let want = if any_of { states.iter().any(|l| l.holds) } else { states.iter().all(|l| l.holds) };
            prop_assert_eq!(holds, want);
            for (l, s) in leaves.iter().zip(&states) {
                prop_assert_eq!(&s.condition, &print(l));
            }
            // Under `not`, every leaf is shown negated and its verdict flips.
            let (nholds, nstates) =
                explain(&Condition::Not(Box::new(c)), &store, 1, Timestamp(now), &env).unwrap();
            prop_assert_eq!(nholds, !holds);
            for (s, n) in states.iter().zip(&nstates) {
                prop_assert_eq!(n.holds, !s.holds);
                prop_assert!(n.condition.starts_with("not"), "{}", n.condition);
            }
        }
    }
}
