#![allow(clippy::unwrap_used)]
//! Contract upgrades at a governance-set height (ADR 017, part 2): the
//! module versions a block runs are a pure function of the state before
//! it. Blocks below the height run the old version, blocks from it the
//! new one; the switch is written in the upgrade block and covered by its
//! state root. A version this build lacks stops execution at the height,
//! never earlier, and never silently.

mod common;

use aidledger_contracts::model::{GovAction, ModuleVersion, Subject};
use aidledger_contracts::{
    keys, newest_within, AttestValue, Condition, ContractError, EventBody, Genesis,
    ScheduledUpgrade, TrancheStatus,
};
use aidledger_execution::{apply_block, read_modules, ExecError};
use aidledger_types::Timestamp;
use common::{govern, refused, Chain};

fn mv(s: &str) -> ModuleVersion {
    s.parse().unwrap()
}

/// A chain whose genesis pins plans@3, as the first release did.
fn on_plans_3() -> Chain {
    Chain::with(|g: &mut Genesis| g.modules = newest_within(&[mv("plans@3")]))
}

fn plans_version(c: &Chain) -> u32 {
    read_modules(&c.state)
        .unwrap()
        .into_iter()
        .find(|m| m.name == "plans")
        .unwrap()
        .version
}

fn schedule(modules: &[&str], at_height: u64) -> GovAction {
    GovAction::ScheduleUpgrade {
        modules: modules.iter().map(|m| mv(m)).collect(),
        at_height,
    }
}

/// The earliest height an upgrade proposed in the next block may name.
fn earliest(c: &Chain) -> u64 {
    c.parent.height + 1 + c.genesis.params.activation_delay_blocks
}

fn attested_value(claim: &str, subject: &Subject, code: &str) -> Condition {
    Condition::AttestedValue {
        claim: claim.parse().unwrap(),
        by: "county-unit".parse().unwrap(),
        subject: subject.clone(),
        value: AttestValue::Code(code.parse().unwrap()),
    }
}

#[test]
fn a_genesis_may_pin_any_carried_versions_but_only_the_fixed_names_in_order() {
    let c = on_plans_3();
    assert_eq!(plans_version(&c), 3);
    let mut g = c.genesis.clone();
    g.modules = newest_within(&[]);
    g.validate().unwrap();
    g.modules[6].version = 99;
    let e = g.validate().unwrap_err().to_string();
    assert!(
        e.contains("plans@99") && e.contains("does not carry"),
        "{e}"
    );
    let mut g = c.genesis.clone();
    g.modules.swap(0, 1);
    let e = g.validate().unwrap_err().to_string();
    assert!(e.contains("expected exactly"), "{e}");
    let mut g = c.genesis.clone();
    g.modules.pop();
    assert!(g.validate().is_err());
}

#[test]
fn an_upgrade_switches_the_plans_version_at_its_height_and_not_before() {
    let mut c = on_plans_3();
    let (hh, reg) = c.f.register_household();
    let subject = Subject::Household(hh);
    let txs = vec![
        c.f.create_program("relief", 1_000_000),
        c.f.deposit("relief", 500_000),
        reg,
    ];
    c.ok(txs);
    // Under plans@3 the condition does not exist yet.
    let plan = |c: &mut Chain, id: &str| {
        c.f.create_plan(
            id,
            "relief",
            None,
            &[
                ("done", 100, attested_value("works", &subject, "complete")),
                ("other", 100, attested_value("works", &subject, "partial")),
            ],
        )
    };
    let tx = plan(&mut c, "road");
    let out = c.block(vec![tx]);
    refused(&out, "needs plans@4");
    assert_eq!(out.receipts[0].rejection_code(), Some("bad-condition"));

    let at = earliest(&c) + 3;
    let out = govern(&mut c, schedule(&["plans@4"], at));
    assert!(out.receipts.iter().flat_map(|r| &r.events).any(
        |e| matches!(&e.body, EventBody::UpgradeScheduled { at_height, .. } if *at_height == at)
    ));
    let pending: ScheduledUpgrade = c.get(keys::UPGRADE_SCHEDULED).unwrap();
    assert_eq!(pending.modules, vec![mv("plans@4")]);

    // Still plans@3 in every block below the height, the last one too.
    while c.parent.height < at - 2 {
        c.block(vec![]);
        assert_eq!(plans_version(&c), 3);
    }
    let tx = plan(&mut c, "road");
    refused(&c.block(vec![tx]), "needs plans@4");
    assert_eq!((c.parent.height, plans_version(&c)), (at - 1, 3));
    c.block(vec![]);
    assert_eq!((c.parent.height, plans_version(&c)), (at, 4));
    assert!(c.get::<ScheduledUpgrade>(keys::UPGRADE_SCHEDULED).is_none());

    // From the height on, the new condition is accepted and evaluated.
    let tx = plan(&mut c, "road");
    c.ok(vec![tx]);
    let approve = c.f.approve_plan("dev-bank", "road");
    c.ok(vec![approve]);
    let attest =
        c.f.attest("county-unit", subject.clone(), "works", "complete");
    c.ok(vec![attest]);
    c.block(vec![]);
    let p = c.plan("road");
    assert!(
        matches!(p.tranches[0].status, TrancheStatus::Released { .. }),
        "{:?}",
        p.tranches[0].status
    );
    assert!(
        !matches!(p.tranches[1].status, TrancheStatus::Released { .. }),
        "a different value must not release: {:?}",
        p.tranches[1].status
    );
}

#[test]
fn the_upgrade_block_records_the_switch_in_an_event_and_its_state_root() {
    let mut c = on_plans_3();
    let at = earliest(&c) + 1;
    govern(&mut c, schedule(&["plans@4"], at));
    while c.parent.height < at - 1 {
        let out = c.block(vec![]);
        assert!(!out
            .events
            .iter()
            .any(|e| matches!(e.body, EventBody::ModulesUpgraded { .. })));
    }
    let root_before = c.root();
    let out = c.block(vec![]);
    assert_eq!(
        out.events.first().map(|e| &e.body),
        Some(&EventBody::ModulesUpgraded {
            from: vec![mv("plans@3")],
            to: vec![mv("plans@4")],
        })
    );
    assert!(out.writes.contains_key(keys::MODULES));
    assert_ne!(c.root(), root_before);
}

#[test]
fn upgrades_are_refused_unless_they_move_forward_modules_the_chain_runs() {
    let mut c = on_plans_3();
    let at = earliest(&c) + 10;
    refused(
        &govern(&mut c, schedule(&["payments@2"], at)),
        "not a module of this chain",
    );
    refused(
        &govern(&mut c, schedule(&["plans@3"], at)),
        "is not newer than plans@3",
    );
    refused(
        &govern(&mut c, schedule(&["plans@2"], at)),
        "is not newer than plans@3",
    );
    refused(
        &govern(&mut c, schedule(&["plans@4", "plans@5"], at)),
        "named twice",
    );
    refused(&govern(&mut c, schedule(&[], at)), "name 1 to 9 modules");
    let soon = earliest(&c) - 1;
    refused(&govern(&mut c, schedule(&["plans@4"], soon)), "too soon");
    let at = earliest(&c) + 10;
    govern(&mut c, schedule(&["plans@4"], at));
    refused(
        &govern(&mut c, schedule(&["governance@4"], at + 5)),
        "already scheduled",
    );
}

#[test]
fn a_cancelled_upgrade_never_applies_and_a_cancel_names_its_height() {
    let mut c = on_plans_3();
    let cancel = |at_height| GovAction::CancelUpgrade { at_height };
    refused(&govern(&mut c, cancel(100)), "no upgrade is scheduled");
    let at = earliest(&c) + 5;
    govern(&mut c, schedule(&["plans@4"], at));
    refused(
        &govern(&mut c, cancel(at + 1)),
        &format!("scheduled is for height {at}"),
    );
    let out = govern(&mut c, cancel(at));
    assert!(out.receipts[0].events.iter().any(
        |e| matches!(&e.body, EventBody::UpgradeCancelled { at_height, .. } if *at_height == at)
    ));
    while c.parent.height < at + 2 {
        c.block(vec![]);
    }
    assert_eq!(plans_version(&c), 3);
    // Once the height has passed, there is nothing left to cancel.
    let at = earliest(&c) + 2;
    govern(&mut c, schedule(&["plans@4"], at));
    while c.parent.height < at {
        c.block(vec![]);
    }
    refused(&govern(&mut c, cancel(at)), "no upgrade is scheduled");
    assert_eq!(plans_version(&c), 4);
}

/// Governance cannot know which builds the members run, and must not: the
/// state root may not depend on it. So a version no build carries is
/// scheduled like any other, and every block below its height executes;
/// the block at the height does not, with an error that names what is
/// missing (the node stops there, see the node core).
#[test]
fn a_version_this_build_lacks_stops_execution_exactly_at_the_upgrade_height() {
    let mut c = on_plans_3();
    let at = earliest(&c) + 2;
    govern(&mut c, schedule(&["plans@9"], at));
    while c.parent.height < at - 1 {
        c.block(vec![]);
    }
    let ctx = aidledger_execution::BlockContext {
        timestamp: Timestamp(c.time().0 + 1000),
        ..c.next_ctx()
    };
    let e = apply_block(&c.state, &c.acc, &ctx, &[]).unwrap_err();
    match &e {
        ExecError::Contract {
            height,
            source: ContractError::UnsupportedModule { name, version, .. },
        } => {
            assert_eq!((*height, name.as_str(), *version), (at, "plans", 9));
        }
        other => panic!("expected an unsupported module, got {other}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("plans@9") && text.contains("install a release"),
        "{text}"
    );
}

#[test]
fn the_condition_text_round_trips_attested_value() {
    let text = "attested_value(works, by: county-unit, subject: app:road, value: code:complete)";
    let c = aidledger_contracts::condition_text::parse(text).unwrap();
    assert_eq!(aidledger_contracts::condition_text::print(&c), text);
    let h = "a".repeat(64);
    let text =
        format!("attested_value(works, by: county-unit, subject: app:road, value: hash:{h})");
    let c = aidledger_contracts::condition_text::parse(&text).unwrap();
    assert_eq!(aidledger_contracts::condition_text::print(&c), text);
    for bad in [
        "attested_value(works, by: county-unit, subject: app:road)",
        "attested_value(works, by: county-unit, subject: app:road, value: complete)",
        "attested_value(works, by: county-unit, subject: app:road, value: hash:12)",
    ] {
        assert!(
            aidledger_contracts::condition_text::parse(bad).is_err(),
            "{bad}"
        );
    }
}
