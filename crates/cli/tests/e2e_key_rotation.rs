#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1 (issue 16,
//! part 1): a validator's node key is replaced while the node keeps
//! running and voting, under load. The operator stages the new key on the
//! running node (`aidledger keys stage`), governance executes
//! `replace-node-key` at a stated height. The node's peer id changes as
//! soon as the new key is registered; from the stated height the new key
//! signs (the header's validator-set hash changes there), the old key is
//! refused by every member, and the old key file is kept under
//! `keys/retired/`. A restart keeps the new key.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::consortium::{
    free_port, govern, height, metric, pid_of, signal, status, wait_exit, wait_until, Org, Testnet,
};
use common::{ok, s};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aidledger");
/// Blocks between the proposal and the height it names: the test genesis'
/// activation delay plus room for the approval.
const AHEAD: u64 = 40;

fn field(api: &str, name: &str) -> String {
    status(api).unwrap()[name].as_str().unwrap().to_string()
}

fn header(api: &str, h: u64) -> Value {
    common::consortium::block_json(api, h).unwrap()["header"].clone()
}

fn log_of(home: &Path) -> String {
    std::fs::read_to_string(home.join("node.log")).unwrap_or_default()
}

#[test]
fn a_validator_replaces_its_node_key_while_it_keeps_voting() {
    let mut net = Testnet::up();
    let d = net.d().to_string();
    let all = net.orgs();
    let four: Vec<Org> = all.iter().filter(|o| o.validator).cloned().collect();
    assert_eq!(four.len(), 4);
    let apis: Vec<String> = all.iter().map(|o| o.api.clone()).collect();
    wait_until("every node past height 2", 90, || {
        apis.iter().all(|a| height(a) >= 2)
    });
    let (bank, dev, rot, other) = (
        four[0].clone(),
        four[1].clone(),
        four[2].clone(),
        four[3].clone(),
    );
    let old_key = field(&rot.api, "node_key");
    let old_peer = field(&rot.api, "peer_id");
    let old_file = net.tmp.path().join("old-node-key.json");
    std::fs::copy(rot.home.join("keys/node.json"), &old_file).unwrap();

    let load_out = net.tmp.path().join("load.json");
    let load = common::consortium::start_load(&net, 50, 100, &load_out);

    // 1. Stage the new key on the running node. Careless resends: staging
    //    the key it signs with, or a second, different key, is refused.
    common::fails(
        &[
            "keys",
            "stage",
            "--home",
            s(&rot.home),
            "--file",
            s(&rot.home.join("keys/node.json")),
        ],
        2,
        "the key the node signs with now",
    );
    let staged: Value = serde_json::from_str(&ok(&[
        "--output",
        "json",
        "keys",
        "stage",
        "--home",
        s(&rot.home),
        "--generate",
    ]))
    .unwrap();
    let new_key = staged["new_key"].as_str().unwrap().to_string();
    let new_peer = staged["new_peer_id"].as_str().unwrap().to_string();
    assert_eq!(staged["old_key"], old_key.as_str());
    let (other_file, _) = common::gen_key(net.tmp.path(), "another");
    common::fails(
        &[
            "keys",
            "stage",
            "--home",
            s(&rot.home),
            "--file",
            s(&other_file),
        ],
        1,
        "already holds a staged key",
    );
    wait_until("the running node picks the staged key up", 30, || {
        log_of(&rot.home).contains("replacement key staged")
    });
    assert_eq!(
        field(&rot.api, "peer_id"),
        old_peer,
        "moved before governance"
    );

    // 2. Governance replaces the key at a stated height. The node's peer
    //    id moves at once; the old key signs until the height.
    let at = height(&bank.api) + AHEAD;
    let old_hash = header(&bank.api, height(&bank.api))["validator_set_hash"].clone();
    govern(
        &bank,
        &dev,
        &[
            "replace-node-key",
            "--old-key",
            &old_key,
            "--new-key",
            &new_key,
            "--at-height",
            &at.to_string(),
        ],
    );
    wait_until("the node's peer id moves to the new key", 60, || {
        status(&rot.api).is_some_and(|st| st["peer_id"] == new_peer.as_str())
    });
    let st = status(&rot.api).unwrap();
    assert_eq!(
        st["node_key"],
        old_key.as_str(),
        "signing key moved early: {st}"
    );
    assert!(
        height(&bank.api) < at,
        "the test was too slow for its height"
    );
    wait_until("the node reconnects under its new identity", 60, || {
        status(&rot.api).is_some_and(|st| st["peers"].as_u64().unwrap_or(0) >= 3)
    });

    // 3. At the height the new key signs.
    wait_until("the replacement's height", 180, || height(&bank.api) >= at);
    assert_eq!(header(&bank.api, at - 1)["validator_set_hash"], old_hash);
    assert_ne!(
        header(&bank.api, at)["validator_set_hash"],
        old_hash,
        "the seat did not move at {at}"
    );
    wait_until("the node signs with its new key", 60, || {
        status(&rot.api).is_some_and(|st| {
            st["node_key"] == new_key.as_str() && st["validator"] == true && st["voting"] == true
        })
    });
    let keys_dir = rot.home.join("keys");
    assert!(keys_dir.join(format!("retired/{old_key}.json")).exists());
    assert!(!keys_dir.join("node-next.json").exists());
    let shown: Value = serde_json::from_str(&ok(&[
        "keys",
        "show",
        s(&keys_dir.join("node.json")),
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(shown["public_key"], new_key.as_str());

    // 4. It keeps voting: with one other validator stopped, a quorum (3 of
    //    4) needs the rotated node's new signatures.
    let pid = pid_of(&other.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    let h = height(&bank.api);
    wait_until("progress that needs the new key's votes", 90, || {
        height(&bank.api) >= h + 5
    });
    ok(&["testnet", "up", "--dir", &d]);

    // 5. The old key is refused: a node started with it on an empty store
    //    (whose genesis still lists it) gets no peer and no block, and
    //    the members count the refusals.
    let impostor = net.tmp.path().join("old-key-node");
    common::consortium::install_node_key(&impostor, &old_file);
    let testnet: Value =
        serde_json::from_str(&std::fs::read_to_string(net.dir.join("testnet.json")).unwrap())
            .unwrap();
    let api_port = free_port();
    let imp_api = format!("http://127.0.0.1:{api_port}");
    let mut init: Vec<String> = [
        "init",
        "--home",
        s(&impostor),
        "--org",
        &rot.id,
        "--genesis",
        s(&net.dir.join("genesis.json")),
        "--api-listen",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    init.push(format!("127.0.0.1:{api_port}"));
    init.push("--p2p-listen".into());
    init.push(format!("/ip4/127.0.0.1/tcp/{}", free_port()));
    for o in testnet["orgs"].as_array().unwrap() {
        if o["id"] != rot.id.as_str() {
            init.push("--peer".into());
            init.push(o["p2p"].as_str().unwrap().to_string());
        }
    }
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    ok(&init);
    let denied = |apis: &[String]| -> f64 {
        apis.iter()
            .map(|a| metric(a, "aidledger_net_denied_connections_total").unwrap_or(0.0))
            .sum()
    };
    let validator_apis: Vec<String> = four.iter().map(|o| o.api.clone()).collect();
    let before = denied(&validator_apis);
    net.extra.push(
        Command::new(BIN)
            .args(["node", "run", "--home", s(&impostor)])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(impostor.join("node.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("the old-key node's API", 60, || status(&imp_api).is_some());
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        status(&imp_api).unwrap()["peers"],
        0,
        "a member admitted the old key"
    );
    assert_eq!(height(&imp_api), 0, "the old key synced");
    let after = denied(&validator_apis);
    assert!(
        after > before,
        "no member refused the old key ({before} -> {after})"
    );

    // A careless operator starts the old key on a copy of the node's own
    // store, which holds the replacement: refused before the network
    // starts, naming the key to use instead.
    let copy = net.tmp.path().join("copy-of-rotated");
    ok(&["backup", "--home", s(&rot.home), "--out", s(&copy)]);
    common::consortium::install_node_key(&copy, &old_file);
    let out = common::run(&["node", "run", "--home", s(&copy)]);
    let err = common::stderr(&out);
    assert!(!out.status.success(), "the replaced key started: {err}");
    assert!(
        err.contains(&format!("was replaced by {new_key}")) && err.contains("keys stage"),
        "{err}"
    );

    // 6. Governance cannot bring the old key back.
    let again = common::run(&[
        "tx",
        "gov-propose",
        "--node",
        &bank.api,
        "--key",
        bank.clients["admin"].as_str().unwrap(),
        "--wait",
        "add-node",
        "--org",
        &rot.id,
        "--node-key",
        &old_key,
    ]);
    let text = format!("{}{}", common::stdout(&again), common::stderr(&again));
    assert!(!again.status.success(), "{text}");
    assert!(text.contains("cannot be registered again"), "{text}");

    // 7. A restart keeps the new key and the new peer id.
    let pid = pid_of(&rot.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    ok(&["testnet", "up", "--dir", &d]);
    wait_until("the rotated node votes again after a restart", 90, || {
        status(&rot.api).is_some_and(|st| {
            st["node_key"] == new_key.as_str()
                && st["peer_id"] == new_peer.as_str()
                && st["voting"] == true
        })
    });

    // 8. The load lost nothing; every node agrees; the replay accepts it.
    common::consortium::finish_load(load, &load_out);
    common::consortium::every_node_agrees(&all);
}
