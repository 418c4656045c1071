#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1, two rules of
//! issue 14 that only the execution tests covered before:
//!
//! - **four eyes**: a plan created without an application commits its
//!   money but releases nothing until an approver of another policy
//!   organisation approves it with `aidledger tx approve-plan`. The
//!   officer who created it, an organisation outside the policy, and a
//!   second approval are refused with their codes;
//! - **the block-time floor** (ADR 014): every block from height 2 on
//!   carries a valid-looking certificate of its parent, and its time is
//!   at least the median of that certificate's signed commit times; the
//!   auditor's replay of the live chain checks the same rule and passes;
//! - (issue 15) **admin routes need the node's token**: without it, or
//!   with a wrong one, `POST /v1/admin/isolate` is 401 and changes
//!   nothing; with the token from the node's home it works.

mod common;

use std::time::Duration;

use common::consortium::{api_get as get, wait_until, Testnet};
use common::{ok as run_ok, run, stderr, stdout};

/// `POST /v1/admin/isolate` with an optional bearer token; the status.
fn isolate(api: &str, token: Option<&str>, on: bool) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut req = agent.post(&format!("{api}/v1/admin/isolate"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    req.send_json(serde_json::json!({ "isolated": on }))
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn height(api: &str) -> u64 {
    get(api, "/v1/status")
        .and_then(|s| s["height"].as_u64())
        .unwrap_or(0)
}

fn released(api: &str) -> u64 {
    get(api, "/v1/programs/four-eyes-fund")
        .and_then(|p| p["balances"]["released"].as_u64())
        .unwrap_or(u64::MAX)
}

fn tranche_status(api: &str) -> String {
    get(api, "/v1/plans/p1")
        .map(|p| p["tranches"][0]["status"].to_string().to_lowercase())
        .unwrap_or_default()
}

/// `aidledger tx approve-plan` for plan p1, with the JSON output.
fn approve(api: &str, key: &str) -> std::process::Output {
    run(&[
        "--output",
        "json",
        "tx",
        "approve-plan",
        "--node",
        api,
        "--key",
        key,
        "--plan",
        "p1",
        "--wait",
    ])
}

#[test]
fn a_plan_without_an_application_waits_for_a_second_organisation_and_block_time_has_a_floor() {
    let net = Testnet::up();
    let all = net.orgs();
    let by_id = |id: &str| all.iter().find(|o| o.id == id).unwrap().clone();
    let apis: Vec<String> = all.iter().map(|o| o.api.clone()).collect();
    wait_until("every node past height 1", 90, || {
        apis.iter().all(|a| height(a) >= 1)
    });
    let poverty = by_id("poverty-office");
    let dev = by_id("dev-bank");
    let finance = by_id("finance-bureau");
    let bank = by_id("state-bank");
    let key = |o: &common::consortium::Org, role: &str| {
        o.clients[role]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no {role}", o.id))
            .to_string()
    };
    let officer = key(&poverty, "program-officer");
    let api = poverty.api.clone();

    common::create_program(&api, &officer, "four-eyes-fund", "Four eyes fund");
    wait_until("the program on the bank's node", 60, || {
        get(&bank.api, "/v1/programs/four-eyes-fund").is_some()
    });
    common::deposit(
        &bank.api,
        &key(&bank, "disburser"),
        "four-eyes-fund",
        "100.00",
    );

    // One officer, no application: the plan is created awaiting approval.
    // Its condition already holds, yet nothing is released.
    let out = run_ok(&[
        "tx",
        "create-plan",
        "--node",
        &api,
        "--key",
        &officer,
        "--wait",
        "--id",
        "p1",
        "--program",
        "four-eyes-fund",
        "--amount",
        "30.00",
        "--to",
        "org:finance-bureau",
        "--condition",
        "after(2026-01-01)",
    ]);
    assert!(
        out.contains("approv"),
        "create-plan should say the plan awaits approval: {out}"
    );
    let plan = get(&api, "/v1/plans/p1").unwrap();
    assert_eq!(plan["approvals_needed"], 1, "{plan}");
    let h = height(&api);
    wait_until("three more blocks", 60, || height(&api) >= h + 3);
    assert_eq!(released(&api), 0, "released before approval");
    assert!(
        tranche_status(&api).contains("pending"),
        "{}",
        tranche_status(&api)
    );
    let program = get(&api, "/v1/programs/four-eyes-fund").unwrap();
    assert_eq!(program["balances"]["committed"], 3000, "{program}");

    // The creator cannot approve its own plan (it is not even an
    // approver); an approver outside the policy may not either.
    let own = approve(&api, &officer);
    assert!(!own.status.success(), "the creator approved its own plan");
    let said = format!("{}{}", stdout(&own), stderr(&own));
    assert!(
        said.contains("role-not-allowed") || said.contains("role not allowed"),
        "{said}"
    );
    let outsider = approve(&api, &key(&finance, "approver"));
    let said = format!("{}{}", stdout(&outsider), stderr(&outsider));
    assert!(said.contains("not-permitted"), "{said}");
    assert_eq!(released(&api), 0);

    // An approver of the other policy organisation: the plan is approved
    // and the tranche releases in the same block.
    let yes = approve(&dev.api, &key(&dev, "approver"));
    assert!(yes.status.success(), "{}{}", stdout(&yes), stderr(&yes));
    wait_until("the release on every node", 60, || {
        apis.iter().all(|a| released(a) == 3000)
    });
    assert!(
        tranche_status(&api).contains("released"),
        "{}",
        tranche_status(&api)
    );
    // A second approval of an approved plan is refused.
    let again = approve(&api, &key(&poverty, "approver"));
    let said = format!("{}{}", stdout(&again), stderr(&again));
    assert!(said.contains("wrong-status"), "{said}");

    // The block-time floor on the live chain: each header from height 2
    // carries its parent's certificate, whose signers' times are the
    // validators' clocks, and the block's time is at least their median.
    let top = height(&api);
    assert!(top >= 5, "height {top}");
    for h in 2..=top {
        let b = get(&api, &format!("/v1/blocks/{h}")).unwrap();
        let header = &b["header"];
        let cert = &header["parent_certificate"];
        assert_eq!(cert["height"], h - 1, "block {h}: {cert}");
        let parent = get(&api, &format!("/v1/blocks/{}", h - 1)).unwrap();
        assert_eq!(cert["block_hash"], parent["hash"], "block {h}");
        let mut times: Vec<u64> = cert["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["time"].as_u64().unwrap())
            .collect();
        assert!(times.len() >= 3, "block {h}: {cert}");
        times.sort_unstable();
        let median = times[(times.len() - 1) / 2];
        let ts = header["timestamp"].as_u64().unwrap();
        assert!(
            ts >= median,
            "block {h}: time {ts} below the median {median}"
        );
        // Honest validators vote after the parent was proposed, on clocks
        // that agree here, so the floor is not behind the parent's time.
        let parent_ts = parent["header"]["timestamp"].as_u64().unwrap();
        assert!(
            median + 1_000 >= parent_ts,
            "block {h}: median {median}, parent {parent_ts}"
        );
    }
    let b1 = get(&api, "/v1/blocks/1").unwrap();
    assert!(b1["header"]["parent_certificate"].is_null(), "{b1}");

    // The admin API (on in every testnet node) needs the node's token.
    let token_file = poverty.home.join("keys/admin.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the admin token must be private");
    let wrong = "0".repeat(token.len());
    assert_eq!(isolate(&api, None, true), 401);
    assert_eq!(isolate(&api, Some(&wrong), true), 401);
    // Another node's token does not open this node.
    let other = std::fs::read_to_string(dev.home.join("keys/admin.token")).unwrap();
    assert_ne!(other.trim(), token);
    assert_eq!(isolate(&api, Some(other.trim()), true), 401);
    // Nothing was cut off: the node still follows the chain.
    let h = height(&bank.api);
    wait_until("the poverty office's node to follow", 60, || {
        height(&api) > h
    });
    assert_eq!(isolate(&api, Some(token), true), 204);
    assert_eq!(isolate(&api, Some(token), false), 204);

    // The auditor's replay applies the same floor and passes.
    let home = poverty.home.to_str().unwrap().to_string();
    let r = run_ok(&["--output", "json", "audit", "replay", "--home", &home]);
    assert!(r.contains("blocks"), "{r}");
}
