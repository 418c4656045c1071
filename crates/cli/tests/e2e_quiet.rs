#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1 (issue 16,
//! part 6): a quiet chain. With a 30 s heartbeat, an idle consortium makes
//! a block only when the heartbeat falls due, without a view change; a
//! tranche whose condition is a date releases within one block interval of
//! that date, although no transaction comes to wake the chain; `aidledger
//! status` says what is due next and why.

mod common;

use std::time::Duration;

use common::consortium::{api_get as get, wait_until, Org, Testnet};
use common::ok;
use serde_json::Value;

const HEARTBEAT_MS: u64 = 30_000;
/// The node's `consensus.empty_block_interval_ms` default: the pace of a
/// block that is due.
const BLOCK_INTERVAL_MS: u64 = 1_000;

fn status(api: &str) -> Value {
    get(api, "/v1/status").unwrap_or(Value::Null)
}

fn height(api: &str) -> u64 {
    status(api)["height"].as_u64().unwrap_or(0)
}

#[allow(clippy::disallowed_methods)] // the test reads the wall clock for its dates
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn an_idle_consortium_stays_quiet_and_a_date_still_releases_on_time() {
    let heartbeat = HEARTBEAT_MS.to_string();
    let net = Testnet::up_with(&["--idle-block-interval-ms", &heartbeat]);
    let all = net.orgs();
    let validators: Vec<Org> = all.iter().filter(|o| o.validator).cloned().collect();
    let apis: Vec<String> = all.iter().map(|o| o.api.clone()).collect();
    let by_id = |id: &str| all.iter().find(|o| o.id == id).unwrap().clone();
    // Block 1 is due at the genesis time.
    wait_until("every node at height 1", 90, || {
        apis.iter().all(|a| height(a) >= 1)
    });
    let api = validators[0].api.clone();

    // 1. Idle: about one block per heartbeat, no view change.
    let s0 = status(&api);
    let h0 = s0["height"].as_u64().unwrap();
    let views0: Vec<u64> = validators
        .iter()
        .map(|v| status(&v.api)["view"].as_u64().unwrap())
        .collect();
    assert_eq!(s0["next_due_reason"], "heartbeat", "{s0}");
    let due = s0["next_due_ms"].as_u64().unwrap();
    let last = s0["last_block_time_ms"].as_u64().unwrap();
    assert_eq!(due, last + HEARTBEAT_MS, "{s0}");
    let idle_from = wall_ms();
    // A follower asks for the next block with a wait instead of polling:
    // the answer comes when the block commits, a heartbeat away (each ask
    // waits at most 15 s, under the client's 20 s timeout).
    let mut asks = 0;
    let next = loop {
        asks += 1;
        if let Some(b) = get(&api, &format!("/v1/blocks/{}?wait_ms=15000", h0 + 1)) {
            break b;
        }
        assert!(
            asks < 4,
            "block {} did not come in {asks} waits of 15 s",
            h0 + 1
        );
    };
    assert_eq!(next["header"]["height"].as_u64(), Some(h0 + 1), "{next}");
    println!(
        "idle: block {} came to a waiting follower after {asks} ask(s)",
        h0 + 1
    );
    let waited = wall_ms().saturating_sub(idle_from);
    std::thread::sleep(Duration::from_millis(
        (2 * HEARTBEAT_MS + 5_000).saturating_sub(waited),
    ));
    let h1 = height(&api);
    assert!(
        (h0 + 1..=h0 + 3).contains(&h1),
        "{} s idle with a {} s heartbeat went from height {h0} to {h1}",
        (2 * HEARTBEAT_MS + 5_000) / 1000,
        HEARTBEAT_MS / 1000
    );
    let views1: Vec<u64> = validators
        .iter()
        .map(|v| status(&v.api)["view"].as_u64().unwrap())
        .collect();
    assert_eq!(views0, views1, "an idle chain changed views");
    println!(
        "idle: height {h0} -> {h1} in {} s",
        (2 * HEARTBEAT_MS + 5_000) / 1000
    );
    // Consecutive idle blocks are a heartbeat apart.
    let t = |h: u64| {
        get(&api, &format!("/v1/blocks/{h}")).unwrap()["header"]["timestamp"]
            .as_u64()
            .unwrap()
    };
    for h in h0 + 1..=h1 {
        let gap = t(h) - t(h - 1);
        assert!(
            gap >= HEARTBEAT_MS,
            "blocks {} and {h} are {gap} ms apart, less than the heartbeat",
            h - 1
        );
    }

    // 2. A date condition releases on time with nothing else going on.
    let poverty = by_id("poverty-office");
    let dev = by_id("dev-bank");
    let bank = by_id("state-bank");
    let key = |o: &Org, role: &str| o.clients[role].as_str().unwrap().to_string();
    let officer = key(&poverty, "program-officer");
    common::create_program(&poverty.api, &officer, "quiet-fund", "Quiet fund");
    common::deposit(&bank.api, &key(&bank, "disburser"), "quiet-fund", "100.00");
    let date = (wall_ms() + 25_000) / 1000 * 1000;
    ok(&[
        "tx",
        "create-plan",
        "--node",
        &poverty.api,
        "--key",
        &officer,
        "--wait",
        "--id",
        "p1",
        "--program",
        "quiet-fund",
        "--amount",
        "30.00",
        "--to",
        "org:finance-bureau",
        "--condition",
        &format!("after({date})"),
    ]);
    ok(&[
        "tx",
        "approve-plan",
        "--node",
        &dev.api,
        "--key",
        &key(&dev, "approver"),
        "--plan",
        "p1",
        "--wait",
    ]);
    assert!(wall_ms() < date, "the setup took too long to test the date");
    // The approved plan's date is what the chain waits for now.
    wait_until("the tranche's date is due next", 30, || {
        let s = status(&api);
        s["next_due_reason"] == "tranche" && s["next_due_ms"].as_u64() == Some(date)
    });
    let h2 = height(&api);
    wait_until("the release", 60, || get(&api, "/v1/releases/0").is_some());
    let r = get(&api, "/v1/releases/0").unwrap();
    let at = r["time"].as_u64().unwrap();
    assert!(
        at >= date && at - date <= BLOCK_INTERVAL_MS,
        "released at {at}, {} ms after the date {date}",
        at as i64 - date as i64
    );
    println!(
        "date {date}: released at {at} ({} ms later), height {}",
        at - date,
        r["height"]
    );
    // Nothing but the release's block (and, since it changed state, one
    // more) was made while waiting for the date.
    let released_at = r["height"].as_u64().unwrap();
    assert!(
        released_at <= h2 + 2,
        "the chain made {} blocks while waiting for the date",
        released_at - h2
    );
    // Every node agrees on the release.
    for a in &apis {
        wait_until("the release on every node", 30, || {
            get(a, "/v1/releases/0").is_some_and(|x| x == r)
        });
    }
}
