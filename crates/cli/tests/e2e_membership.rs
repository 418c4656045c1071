#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1 (issue 16,
//! part 1): membership by governance. A new organisation, absent from the
//! genesis, sets up its node with `aidledger init` against the running
//! consortium's genesis. Until governance registers its node key, every
//! member refuses its connections; once `add-node` executes, the members
//! admit it without a restart, it syncs from genesis, serves queries and
//! relays transactions. `remove-node` cuts it off again: its connections
//! are closed, and the consortium goes on without it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::consortium::{api_get, govern, height, status, wait_until, Org, Testnet};
use common::{ok, s};

const BIN: &str = env!("CARGO_BIN_EXE_aidledger");
const NEW_ORG: &str = "township-office";

fn key(o: &Org, role: &str) -> String {
    o.clients[role].as_str().unwrap().to_string()
}

/// The sum of a counter over the validators' `/metrics`.
fn metric_sum(apis: &[String], name: &str) -> u64 {
    apis.iter()
        .map(|a| common::consortium::metric(a, name).unwrap_or(0.0) as u64)
        .sum()
}

fn peers(api: &str) -> u64 {
    status(api).map_or(0, |s| s["peers"].as_u64().unwrap_or(0))
}

#[test]
fn a_new_organisation_joins_by_governance_and_a_removed_node_is_cut_off() {
    let mut net = Testnet::up();
    let all = net.orgs();
    let validators: Vec<Org> = all.iter().filter(|o| o.validator).cloned().collect();
    let apis: Vec<String> = validators.iter().map(|o| o.api.clone()).collect();
    let by_id = |id: &str| all.iter().find(|o| o.id == id).unwrap().clone();
    wait_until("every node at height 1", 90, || {
        all.iter().all(|o| height(&o.api) >= 1)
    });

    // 1. The new organisation's node, set up against the running
    //    consortium's genesis, which does not list it.
    let (home, api, node_key) = common::consortium::new_org_home(&net, NEW_ORG);
    let start = |home: &Path| {
        Command::new(BIN)
            .args(["node", "run", "--home", s(home)])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("node.log")).unwrap())
            .spawn()
            .unwrap()
    };
    net.extra.push(start(&home));
    wait_until("the new node's API", 60, || status(&api).is_some());

    // 2. Unregistered, it is refused by every member: no peer, no block.
    let denied_before = metric_sum(&apis, "aidledger_net_denied_connections_total");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(peers(&api), 0, "an unregistered node got a peer");
    assert_eq!(height(&api), 0, "an unregistered node synced");
    let denied = metric_sum(&apis, "aidledger_net_denied_connections_total");
    assert!(
        denied > denied_before,
        "the members did not refuse the new node ({denied_before} -> {denied})"
    );
    let log = std::fs::read_to_string(home.join("node.log")).unwrap();
    assert!(
        log.contains("not registered") && log.contains("gov-propose add-node"),
        "the node does not tell its operator what to ask for: {log}"
    );

    // 3. Governance adds the organisation, then registers its node. The
    //    members admit it without a restart; it syncs from genesis.
    let bank = by_id("state-bank");
    let dev = by_id("dev-bank");
    common::consortium::add_org(&bank, &dev, NEW_ORG, "Township Office");
    // A key that is no ed25519 point is refused before it is sent.
    common::fails(
        &[
            "tx",
            "gov-propose",
            "--node",
            &bank.api,
            "--key",
            &key(&bank, "admin"),
            "add-node",
            "--org",
            NEW_ORG,
            "--node-key",
            &"ff".repeat(32),
        ],
        2,
        "not a usable node key",
    );
    govern(
        &bank,
        &dev,
        &["add-node", "--org", NEW_ORG, "--node-key", &node_key],
    );
    let registered_at = height(&bank.api);
    wait_until("the new node syncs past its registration", 90, || {
        height(&api) >= registered_at
    });
    wait_until("the new node connects to every validator", 30, || {
        peers(&api) >= validators.len() as u64
    });
    let org = api_get(&api, &format!("/v1/orgs/{NEW_ORG}")).unwrap();
    assert_eq!(org["id"], NEW_ORG, "{org}");
    // Its blocks are the consortium's.
    let h = height(&api);
    assert_eq!(
        common::consortium::block_at(&api, h),
        common::consortium::block_at(&bank.api, h)
    );
    // It relays what its clients submit: a program created through it.
    let poverty = by_id("poverty-office");
    common::create_program(
        &api,
        &key(&poverty, "program-officer"),
        "joined-fund",
        "Submitted through the new member",
    );
    wait_until("every validator holds the program", 30, || {
        apis.iter()
            .all(|a| api_get(a, "/v1/programs/joined-fund").is_some())
    });

    // 4. Removal: every member closes its connections and refuses it; the
    //    consortium goes on without it.
    govern(&bank, &dev, &["remove-node", "--node-key", &node_key]);
    wait_until("the removed node loses its peers", 30, || peers(&api) == 0);
    let frozen = height(&api);
    common::deposit(&bank.api, &key(&bank, "disburser"), "joined-fund", "10.00");
    let after = height(&bank.api);
    assert!(after > frozen, "the consortium did not go on");
    std::thread::sleep(Duration::from_secs(5));
    assert!(height(&api) <= frozen + 1, "the removed node kept syncing");
    assert_eq!(peers(&api), 0, "a member admitted the removed node again");
    for v in &validators {
        let st = status(&v.api).unwrap();
        assert!(
            st["peers"].as_u64().unwrap() < all.len() as u64,
            "{} still counts the removed node: {st}",
            v.id
        );
        let log = std::fs::read_to_string(v.home.join("node.log")).unwrap_or_default();
        assert!(
            log.contains("the node registry changed"),
            "{} did not follow the registry",
            v.id
        );
    }

    // 5. Resending what was refused: governance cannot register the
    //    removed key again, under any organisation.
    let again = common::run(&[
        "tx",
        "gov-propose",
        "--node",
        &bank.api,
        "--key",
        &key(&bank, "admin"),
        "--wait",
        "add-node",
        "--org",
        "state-bank",
        "--node-key",
        &node_key,
    ]);
    let text = format!("{}{}", common::stdout(&again), common::stderr(&again));
    assert!(!again.status.success(), "{text}");
    assert!(text.contains("cannot be registered again"), "{text}");

    // 6. A careless operator starts the removed key on a store that holds
    //    its removal (a copy of a member's store): it refuses to start,
    //    and says what to do, before it opens the network or the API.
    let copy = net.tmp.path().join("copy-of-bank");
    ok(&["backup", "--home", s(&bank.home), "--out", s(&copy)]);
    common::consortium::install_node_key(&copy, &home.join("keys/node.json"));
    let cfg = std::fs::read_to_string(copy.join("config.toml")).unwrap();
    let cfg = cfg.replacen(
        &format!("org = \"{}\"", bank.id),
        &format!("org = \"{NEW_ORG}\""),
        1,
    );
    std::fs::write(copy.join("config.toml"), cfg).unwrap();
    let out = common::run(&["node", "run", "--home", s(&copy)]);
    let err = common::stderr(&out);
    assert!(!out.status.success(), "the removed key started: {err}");
    assert!(
        err.contains("was removed from the consortium at height")
            && err.contains("generate a new node key"),
        "{err}"
    );

    // 7. The auditor's replay accepts the membership history.
    common::consortium::replay_verified(&bank.home);
}
