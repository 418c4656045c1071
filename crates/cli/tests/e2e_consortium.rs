#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1: a local
//! consortium of four validators and two observers commits transactions
//! submitted at different nodes; refuses a non-member peer; survives the
//! leader being killed; brings the killed node back; and resyncs a node
//! whose data directory was wiped.

mod common;

use std::process::Command;
use std::time::Duration;

use common::consortium::{
    block_at, height, orgs, pid_of, signal, status, wait_exit, wait_until, Org, Testnet,
};
use common::ok as run_ok;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aidledger");

/// Every node in `apis` has the same block hash and state root at `h`.
fn agree_at(apis: &[&str], h: u64) -> bool {
    let first = block_at(apis[0], h);
    first.is_some() && apis.iter().all(|a| block_at(a, h) == first)
}

#[test]
fn four_org_consortium_commits_refuses_outsiders_and_recovers() {
    let mut net = Testnet::up();
    let dir = net.dir.clone();
    let d = net.d().to_string();
    let all = orgs(&dir);
    assert_eq!(all.iter().filter(|o| o.validator).count(), 4);
    let validators: Vec<Org> = all.iter().filter(|o| o.validator).cloned().collect();
    let apis: Vec<&str> = all.iter().map(|o| o.api.as_str()).collect();
    let by_id = |id: &str| all.iter().find(|o| o.id == id).unwrap().clone();

    // 1. Blocks commit everywhere.
    wait_until("every node past height 2", 90, || {
        apis.iter().all(|a| height(a) >= 2)
    });

    // 2. Transactions submitted at different nodes commit on all of them
    //    with the same state.
    let poverty = by_id("poverty-office");
    let bank = by_id("state-bank");
    let officer = poverty.clients["program-officer"]
        .as_str()
        .unwrap()
        .to_string();
    let disburser = bank.clients["disburser"].as_str().unwrap().to_string();
    common::create_program(&poverty.api, &officer, "e2e-fund", "End-to-end fund");
    run_ok(&[
        "tx",
        "deposit",
        "--node",
        &bank.api,
        "--key",
        &disburser,
        "--wait",
        "--program",
        "e2e-fund",
        "--amount",
        "2500.50",
    ]);
    let h = apis.iter().map(|a| height(a)).max().unwrap();
    wait_until("all nodes at the deposit's height", 60, || {
        apis.iter().all(|a| height(a) >= h)
    });
    assert!(agree_at(&apis, h), "nodes disagree at height {h}");
    for a in &apis {
        let out = run_ok(&[
            "query", "program", "e2e-fund", "--node", a, "--output", "json",
        ]);
        let p: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            p["balances"]["deposited"].as_u64(),
            Some(250_050),
            "at {a}: {p}"
        );
    }

    // 3. A peer whose key is not in genesis is refused: a node of another
    //    consortium, told to dial every member of this one, gets no peers.
    let other = net.tmp.path().join("other");
    let o = other.to_str().unwrap().to_string();
    run_ok(&["testnet", "init", "--dir", &o, "--validators", "1"]);
    let outsider = orgs(&other).into_iter().find(|x| x.validator).unwrap();
    let cfg_path = outsider.home.join("config.toml");
    let mut cfg: toml::Value =
        toml::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let peers: Vec<toml::Value> = std::fs::read_to_string(dir.join("state-bank/config.toml"))
        .ok()
        .and_then(|t| toml::from_str::<toml::Value>(&t).ok())
        .and_then(|c| c["network"]["peers"].as_array().cloned())
        .unwrap();
    cfg["network"]["peers"] = toml::Value::Array(peers);
    std::fs::write(&cfg_path, toml::to_string(&cfg).unwrap()).unwrap();
    let child = Command::new(BIN)
        .args(["node", "run", "--home", outsider.home.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(outsider.home.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    net.extra.push(child);
    wait_until("the outsider's API", 60, || status(&outsider.api).is_some());
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        status(&outsider.api).unwrap()["peers"].as_u64(),
        Some(0),
        "outsider got a peer"
    );
    for a in &apis {
        let peers = status(a).unwrap()["peers"].as_u64().unwrap();
        assert!(peers <= (all.len() - 1) as u64, "{a} has {peers} peers");
    }

    // 4. Kill the leader with SIGKILL: the others change view and go on.
    let s = status(&validators[0].api).unwrap();
    let leader_id = s["leader"].as_str().unwrap().to_string();
    let view_before = s["view"].as_u64().unwrap();
    let leader = by_id(&leader_id);
    let leader_pid = pid_of(&leader.home);
    signal(leader_pid, "-KILL");
    wait_exit(leader_pid, 10);
    let alive: Vec<&str> = validators
        .iter()
        .filter(|v| v.id != leader_id)
        .map(|v| v.api.as_str())
        .collect();
    let h0 = alive.iter().map(|a| height(a)).max().unwrap();
    wait_until("the survivors commit 3 more blocks", 120, || {
        alive.iter().all(|a| height(a) >= h0 + 3)
    });
    let view_after = status(alive[0]).unwrap()["view"].as_u64().unwrap();
    assert!(
        view_after > view_before,
        "no view change: {view_before} -> {view_after}"
    );

    // 5. The killed node restarts from its RocksDB data and catches up.
    run_ok(&["testnet", "up", "--dir", &d]);
    let target = alive.iter().map(|a| height(a)).max().unwrap();
    wait_until("the restarted leader catches up", 120, || {
        height(&leader.api) >= target
    });
    assert!(agree_at(&[alive[0], leader.api.as_str()], target));

    // 6. A node started with an empty data directory syncs the whole chain.
    let wiped = validators
        .iter()
        .find(|v| v.id != leader_id)
        .unwrap()
        .clone();
    let pid = pid_of(&wiped.home);
    signal(pid, "-TERM");
    wait_exit(pid, 20);
    std::fs::remove_dir_all(wiped.home.join("data")).unwrap();
    run_ok(&["testnet", "up", "--dir", &d]);
    let target = apis
        .iter()
        .filter(|a| **a != wiped.api)
        .map(|a| height(a))
        .max()
        .unwrap();
    wait_until("the wiped node resyncs", 180, || {
        height(&wiped.api) >= target
    });
    assert!(agree_at(&[leader.api.as_str(), wiped.api.as_str()], 1));
    assert!(agree_at(&[leader.api.as_str(), wiped.api.as_str()], target));
    // It learned from the sync that the chain went on without its store,
    // so it held back its vote (it may have voted at the height in flight
    // before the wipe), and votes again once caught up and one height on.
    let log = std::fs::read_to_string(wiped.home.join("node.log")).unwrap_or_default();
    assert!(
        log.contains("has run on this chain before but its store is empty"),
        "the wiped validator did not notice it had lost its data:\n{log}"
    );
    wait_until("the wiped validator votes again", 60, || {
        status(&wiped.api).is_some_and(|s| s["voting"] == Value::Bool(true))
    });
}
