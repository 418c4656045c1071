#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1 (issue 16,
//! part 2): a contract upgrade at a governance-set height on a running
//! consortium, upgraded one binary at a time before the height.
//!
//! The consortium starts as the previous release would run it: the test
//! knob `AIDLEDGER_TEST_MODULES=plans@3` makes `testnet init` pin plans@3
//! and each node behave as a build without plans@4. A plan using the new
//! condition function `attested_value` is refused. The nodes restart one
//! at a time without the knob (the new binary), except one validator.
//! Governance schedules plans@4 at a height; the restricted node says at
//! once that it lacks it, and stops after the block before the height
//! without executing it. The others switch at the height: the same plan
//! is now accepted and releases when the attested value matches. A
//! careless operator who starts an upgraded node on the old binary is
//! refused; the stopped node, restarted on the new binary, catches up,
//! and the auditor's replay from genesis verifies the whole chain, both
//! versions included.

mod common;

use std::path::Path;

use common::consortium::{
    api_get, every_node_agrees, govern, height, metric, pid_of, restart_node, signal, status,
    wait_exit, wait_until, Org, Testnet,
};
use common::{ok, run, run_env, s, stderr, stdout};
use serde_json::Value;

const OLD: (&str, &str) = ("AIDLEDGER_TEST_MODULES", "plans@3");
/// Blocks between the proposal and the upgrade height: the test genesis'
/// activation delay plus room for the approval.
const AHEAD: u64 = 40;

fn key(o: &Org, role: &str) -> String {
    o.clients[role]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {role}", o.id))
        .to_string()
}

fn modules(api: &str) -> Vec<String> {
    status(api).unwrap()["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

fn log_of(home: &Path) -> String {
    std::fs::read_to_string(home.join("node.log")).unwrap_or_default()
}

/// `create-plan` of one tranche paying 1.00 to finance-bureau.
fn create_plan(o: &Org, id: &str, condition: &str) -> std::process::Output {
    run(&[
        "--output",
        "json",
        "tx",
        "create-plan",
        "--node",
        &o.api,
        "--key",
        &key(o, "program-officer"),
        "--wait",
        "--id",
        id,
        "--program",
        "upgrade-fund",
        "--amount",
        "1.00",
        "--to",
        "org:finance-bureau",
        "--condition",
        condition,
    ])
}

fn approve_plan(o: &Org, id: &str) {
    ok(&[
        "tx",
        "approve-plan",
        "--node",
        &o.api,
        "--key",
        &key(o, "approver"),
        "--plan",
        id,
        "--wait",
    ]);
}

fn tranche(api: &str, plan: &str) -> Value {
    api_get(api, &format!("/v1/plans/{plan}")).unwrap()["tranches"][0]["status"].clone()
}

#[test]
fn a_contract_upgrade_takes_effect_at_its_height_on_a_consortium_upgraded_one_binary_at_a_time() {
    let net = Testnet::up_env(&[], &[OLD]);
    let all = net.orgs();
    let by_id = |id: &str| all.iter().find(|o| o.id == id).unwrap().clone();
    let apis: Vec<String> = all.iter().map(|o| o.api.clone()).collect();
    wait_until("every node past height 2", 90, || {
        apis.iter().all(|a| height(a) >= 2)
    });
    let (poverty, bank, dev) = (
        by_id("poverty-office"),
        by_id("state-bank"),
        by_id("dev-bank"),
    );
    let stay_old = all
        .iter()
        .find(|o| o.validator && o.id != poverty.id && o.id != bank.id && o.id != dev.id)
        .unwrap()
        .clone();
    let attester = all
        .iter()
        .find(|o| o.clients.get("attester").is_some())
        .unwrap()
        .clone();
    for a in &apis {
        assert!(modules(a).contains(&"plans@3".to_string()), "{a}");
    }

    // A fund, and one release to attest about.
    common::create_program(
        &poverty.api,
        &key(&poverty, "program-officer"),
        "upgrade-fund",
        "Upgrade fund",
    );
    wait_until("the program on the bank's node", 60, || {
        api_get(&bank.api, "/v1/programs/upgrade-fund").is_some()
    });
    common::deposit(
        &bank.api,
        &key(&bank, "disburser"),
        "upgrade-fund",
        "100.00",
    );
    let out = create_plan(&poverty, "first", "after(2026-01-01)");
    assert!(out.status.success(), "{}", stderr(&out));
    approve_plan(&dev, "first");
    wait_until("the first release", 60, || {
        tranche(&poverty.api, "first")["released"].is_object()
    });
    let release = tranche(&poverty.api, "first")["released"]["release"]
        .as_u64()
        .unwrap();
    let valued = format!(
        "attested_value(paid-out, by: {}, subject: release:{release}, value: code:confirmed)",
        attester.id
    );

    // 1. Under plans@3 the new function does not exist.
    let out = create_plan(&poverty, "valued", &valued);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "plans@3 accepted attested_value");
    assert!(
        said.contains("bad-condition") && said.contains("needs plans@4"),
        "{said}"
    );

    // 2. The nodes move to the new binary one at a time, all but one
    //    validator; the consortium keeps committing throughout.
    for o in all.iter().filter(|o| o.id != stay_old.id) {
        restart_node(&net, o, &[], &bank.api);
    }

    // 3. A careless proposal of a version no build carries is stopped by
    //    the CLI; then governance schedules plans@4.
    common::fails(
        &[
            "tx",
            "gov-propose",
            "--node",
            &bank.api,
            "--key",
            &key(&bank, "admin"),
            "schedule-upgrade",
            "--module",
            "plans@40",
            "--at-height",
            "100000",
        ],
        2,
        "does not carry plans@40",
    );
    let at = height(&bank.api) + AHEAD;
    govern(
        &bank,
        &dev,
        &[
            "schedule-upgrade",
            "--module",
            "plans@4",
            "--at-height",
            &at.to_string(),
        ],
    );
    // The restricted node says at once that it lacks the version; the
    // others carry it.
    wait_until("every node sees the scheduled upgrade", 60, || {
        apis.iter()
            .all(|a| status(a).is_some_and(|st| st["upgrade"]["at_height"] == at))
    });
    let st = status(&stay_old.api).unwrap();
    assert_eq!(
        st["upgrade"]["missing"],
        serde_json::json!(["plans@4"]),
        "{st}"
    );
    assert_eq!(
        metric(&stay_old.api, "aidledger_upgrade_missing_modules"),
        Some(1.0)
    );
    let shown = common::stdout(&run(&["query", "status", "--node", &stay_old.api]));
    assert!(shown.contains("THIS BUILD LACKS plans@4"), "{shown}");
    assert_eq!(
        status(&bank.api).unwrap()["upgrade"]["missing"],
        serde_json::json!([])
    );
    assert!(
        height(&bank.api) < at - 2,
        "the test was too slow for its height"
    );
    let out = create_plan(&poverty, "valued", &valued);
    assert!(!out.status.success(), "accepted before the height");

    // 4. At the height: the restricted node stops after the block before
    //    it, naming what it lacks; the rest switch to plans@4.
    wait_until("the upgrade height", 180, || height(&bank.api) >= at);
    let old_pid = pid_of(&stay_old.home);
    wait_exit(old_pid, 60);
    let log = log_of(&stay_old.home);
    assert!(
        log.contains("does not carry") && log.contains("plans@4"),
        "{log}"
    );
    let stopped_at = height(&bank.api);
    assert!(stopped_at >= at);
    assert!(modules(&bank.api).contains(&"plans@4".to_string()));

    // The new function now works: the plan is accepted, waits for the
    // attestation, and releases when the value matches.
    let out = create_plan(&poverty, "valued", &valued);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    approve_plan(&dev, "valued");
    assert!(tranche(&poverty.api, "valued")["pending"].is_object());
    ok(&[
        "tx",
        "attest",
        "--node",
        &attester.api,
        "--key",
        &key(&attester, "attester"),
        "--wait",
        "--subject",
        &format!("release:{release}"),
        "--claim",
        "paid-out",
        "--value",
        "code:confirmed",
    ]);
    wait_until("the attested_value tranche releases", 60, || {
        tranche(&poverty.api, "valued")["released"].is_object()
    });

    // 5. A careless operator starts an upgraded node on the old binary:
    //    refused at start, naming the version.
    let pid = pid_of(&dev.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    let out = run_env(&["node", "run", "--home", s(&dev.home)], &[OLD]);
    let err = stderr(&out);
    assert!(!out.status.success(), "the old build ran an upgraded chain");
    assert!(
        err.contains("runs plans@4, which this build") && err.contains("does not carry"),
        "{err}"
    );

    // 6. Both nodes come back on the new binary and catch up; every node
    //    agrees, and the auditor's replay verifies both versions.
    ok(&["testnet", "up", "--dir", net.d()]);
    let members: Vec<Org> = all.clone();
    wait_until("the stopped nodes catch up", 120, || {
        height(&stay_old.api) > stopped_at && height(&dev.api) > stopped_at
    });
    assert!(modules(&stay_old.api).contains(&"plans@4".to_string()));
    every_node_agrees(&members);
}
