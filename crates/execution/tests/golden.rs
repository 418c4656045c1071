#![allow(clippy::unwrap_used)]
//! Golden state roots (ADR 017, contract upgrades): a released module
//! version's code never changes, because every chain that ran it must
//! replay to the same roots for as long as it is kept. Each chain below is
//! fixed (development keys, fixed times, a fixed workload that touches
//! every module) and its state root after every tenth block is pinned.
//!
//! If one of these fails, a change altered what a released version
//! computes. Do not update the constant: put the change in a new module
//! version, scheduled by governance (`schedule-upgrade`). Only a change to
//! the fixtures themselves (the test kit's genesis or workload), or a
//! format break before the first production genesis, may rewrite them;
//! run with `AIDLEDGER_PRINT_GOLDEN=1` to print the new values.

mod common;

use aidledger_contracts::model::{GovAction, ModuleVersion, Subject};
use aidledger_contracts::{newest_within, AttestValue, Condition, Genesis, TrancheStatus};
use aidledger_types::Timestamp;
use common::{govern, Chain, DAY};

const BLOCKS: u64 = 60;
const HOUR: u64 = DAY / 24;

fn mv(s: &str) -> ModuleVersion {
    s.parse().unwrap()
}

/// Runs the fixed workload on a chain whose genesis pins `ceiling`, with an
/// upgrade to `upgrade` scheduled at block 5 for block 30 if given, and
/// returns the state root after every tenth block.
fn run(ceiling: &[&str], upgrade: Option<&str>) -> Vec<String> {
    let ceiling: Vec<ModuleVersion> = ceiling.iter().map(|m| mv(m)).collect();
    let mut c = Chain::with(|g: &mut Genesis| g.modules = newest_within(&ceiling));
    let mut roots = Vec::new();
    let mut plans_created = false;
    for i in 0..BLOCKS {
        let mut txs = c.f.workload_block(i);
        let hh = aidledger_execution::testkit::TxFactory::household_id(0);
        if i == 2 {
            let mut tranches = vec![
                (
                    "dated",
                    500,
                    Condition::After(Timestamp(c.time().0 + 6 * HOUR)),
                ),
                (
                    "attested",
                    700,
                    Condition::Attested {
                        claim: "income-verified".parse().unwrap(),
                        by: "poverty-office".parse().unwrap(),
                        subject: Subject::Household(hh),
                    },
                ),
            ];
            if plans_version(&c) >= 4 {
                tranches.push(("valued", 900, valued(hh)));
            }
            txs.push(c.f.create_plan("golden", "relief", None, &tranches));
            plans_created = true;
        }
        if i == 3 && plans_created {
            txs.push(c.f.approve_plan("dev-bank", "golden"));
        }
        if i == 5 {
            if let Some(u) = upgrade {
                govern(
                    &mut c,
                    GovAction::ScheduleUpgrade {
                        modules: vec![mv(u)],
                        at_height: 30,
                    },
                );
            }
        }
        if i == 40 {
            // Under plans@4 this plan's last tranche uses the new function.
            let mut tranches = vec![("later", 300, Condition::After(Timestamp(c.time().0 + HOUR)))];
            if plans_version(&c) >= 4 {
                tranches.push(("valued", 400, valued(hh)));
            }
            txs.push(c.f.create_plan("golden-2", "relief", None, &tranches));
        }
        if i == 41 {
            txs.push(c.f.approve_plan("dev-bank", "golden-2"));
        }
        let t = Timestamp(c.time().0 + HOUR);
        c.block_at(t, txs);
        if (i + 1) % 10 == 0 {
            roots.push(c.root().to_hex());
        }
    }
    // The workload did what it is for: every tranche released.
    for plan in ["golden", "golden-2"] {
        for t in c.plan(plan).tranches {
            assert!(
                matches!(t.status, TrancheStatus::Released { .. }),
                "{plan}/{}: {:?}",
                t.id,
                t.status
            );
        }
    }
    roots
}

/// The plans@4 condition the workload uses: household 0's income attested
/// below the line by the poverty office.
fn valued(hh: aidledger_types::Hash) -> Condition {
    Condition::AttestedValue {
        claim: "income-verified".parse().unwrap(),
        by: "poverty-office".parse().unwrap(),
        subject: Subject::Household(hh),
        value: AttestValue::Code("below-line".parse().unwrap()),
    }
}

fn plans_version(c: &Chain) -> u32 {
    aidledger_execution::read_modules(&c.state)
        .unwrap()
        .into_iter()
        .find(|m| m.name == "plans")
        .unwrap()
        .version
}

fn check(name: &str, got: Vec<String>, want: &[&str]) {
    if std::env::var_os("AIDLEDGER_PRINT_GOLDEN").is_some() {
        println!("{name}: {got:#?}");
        return;
    }
    assert_eq!(
        got, want,
        "{name}: the state roots of a released module version changed (see this file's header)"
    );
}

#[test]
fn plans_3_keeps_its_roots() {
    check("plans@3", run(&["plans@3"], None), &PLANS_3);
}

#[test]
fn plans_4_keeps_its_roots() {
    check("plans@4", run(&["plans@4"], None), &PLANS_4);
}

#[test]
fn an_upgrade_from_plans_3_to_4_keeps_its_roots() {
    let got = run(&["plans@3"], Some("plans@4"));
    // Below the upgrade height the chain is the plans@3 chain but for the
    // governance transactions; from it on it differs.
    check("plans@3 to 4 at 30", got, &UPGRADE_3_TO_4);
}

const PLANS_3: [&str; 6] = [
    "a646f53b4e33e6902763ec22f217e0f8f3a970242e1c165af3b7bbfe6930d6f4",
    "62b940d7f29d7a13879b3caab236f2a99fa1cb38a24bfce511fa81037b83c414",
    "a41ea83b2f00c2fb06457ad2ba5b6426901c05947c3d61e15bcb2accf299be6e",
    "e3f021b0254d61e7981269d10d9f0d987b0fd58987e9c6b76aa88a03460e479c",
    "e3aa4b7044aa6a97a876c3dfb184b43dda0e5cae45a7968943a53cd054830608",
    "036509edc0d5b337211e4d8798e67c831da39bbfdf5455cda8679fd491de2385",
];
const PLANS_4: [&str; 6] = [
    "3037fb9845af8393e4016d2c248be6c2776c3aed5bd0ee8aad1f3cc0f0bfdebe",
    "873154a48f32bc22c6b050560608c64211b4708dc2f5f963e409bdd115dfbaa2",
    "f481ec2f90e7f23d559c05c0ab72628affb5f78b782c07fcbb60a194da219061",
    "31568cc8313612a3d169b5f5d8ff38138c4e26a80ab617b72fdb2faaa58792e4",
    "88fea891282465a711089e378c28d6188a86e24459daf69f9066de8f155d687e",
    "d04bbdfa15d8da0f038565dc6b42203fbb4b9f5289609b4d7dab6653f19bc46c",
];
const UPGRADE_3_TO_4: [&str; 6] = [
    "636ab5cd8db6c8a383976a643bc93d14d958a995c34c65567646bb0a86b25c8d",
    "90dc88ddfe019467f27c26758a88841a49b976be1659d8d1c4aaca452218f0f9",
    "4bbd2d7efd40bdd3d7ab77f8aac046210176ef5ff689ce55161348c02952b086",
    "7530379b0c669ccafb026c748de18fd523b983f9fed38af0e26ed3941e440589",
    "a86c38143bd313ac7f2a49245f1cba53778d4740a6ec8422fec43cd663e12204",
    "be7c7d9443ba4e7f9086305a65f9f9d16376bdf61e32d31a03e8bfe28f4bf451",
];
