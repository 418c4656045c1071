#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1 (issue 16,
//! part 4): a snapshot join. The consortium's nodes take a snapshot every
//! 20 heights while a load runs. A new organisation, absent from the
//! genesis and registered by governance, starts its node with
//! `--from-snapshot` on an empty store: it follows the validator set from
//! its genesis, checks the highest snapshot offered against its certificate
//! and every chunk against the certified root, and then follows the chain.
//! It serves queries from the snapshot height on, answers 410 `pruned`
//! below it, and the auditor's replay refuses its home while it verifies an
//! archive node's. A restart with the same flag goes on from its store.
//! One validator's snapshot files are damaged: it is never a source.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::consortium::{
    api_get, block_at, finish_load, govern, height, new_org_home, replay_verified, start_load,
    status, wait_until, Testnet,
};
use common::{run, s};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aidledger");
const NEW_ORG: &str = "township-office";
const INTERVAL: u64 = 20;

fn start(home: &Path, log: &str) -> Child {
    Command::new(BIN)
        .args(["node", "run", "--home", s(home), "--from-snapshot"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.join(log)).unwrap())
        .spawn()
        .unwrap()
}

fn http_status(api: &str, path: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut r = agent.get(&format!("{api}{path}")).call().unwrap();
    let code = r.status().as_u16();
    let body = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    (code, body)
}

#[test]
#[allow(clippy::disallowed_methods)] // waits on the wall clock
fn a_new_organisation_joins_from_a_snapshot_and_serves_queries_from_there() {
    // A consortium whose nodes snapshot every INTERVAL heights.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    let d = s(&dir).to_string();
    common::ok(&["testnet", "init", "--dir", &d]);
    let mut net = Testnet {
        dir,
        tmp,
        extra: Vec::new(),
    };
    for o in net.orgs() {
        let cfg = o.home.join("config.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains("interval_blocks = 10000"), "{text}");
        std::fs::write(
            &cfg,
            text.replace(
                "interval_blocks = 10000",
                &format!("interval_blocks = {INTERVAL}"),
            ),
        )
        .unwrap();
    }
    common::ok(&["testnet", "up", "--dir", &d]);
    let all = net.orgs();
    let by_id = |id: &str| all.iter().find(|o| o.id == id).unwrap().clone();
    let (bank, dev) = (by_id("state-bank"), by_id("dev-bank"));
    wait_until("every node at height 1", 90, || {
        all.iter().all(|o| height(&o.api) >= 1)
    });

    // The new organisation's home, and its registration.
    let (home, api, node_key) = new_org_home(&net, NEW_ORG);
    common::consortium::add_org(&bank, &dev, NEW_ORG, "Township Office");
    govern(
        &bank,
        &dev,
        &["add-node", "--org", NEW_ORG, "--node-key", &node_key],
    );

    // Load until two snapshots exist on every validator.
    let load_out = net.tmp.path().join("load.json");
    let load = start_load(&net, 40, 40, &load_out);
    // A snapshot's directory is named by the head its checkpoint held:
    // the interval height, or under load a block or two past it.
    let highest_snapshot = |o: &common::consortium::Org| -> u64 {
        std::fs::read_dir(o.home.join("snapshots"))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let h: u64 = e.file_name().to_str()?.parse().ok()?;
                e.path().join("manifest.bin").is_file().then_some(h)
            })
            .max()
            .unwrap_or(0)
    };
    wait_until("a second snapshot on every validator", 120, || {
        all.iter()
            .filter(|o| o.validator)
            .all(|o| highest_snapshot(o) >= 2 * INTERVAL)
    });

    // A damaged disk: one validator's snapshot manifests are cut short.
    // It still offers them, but never serves them, and the join goes on
    // from the others.
    let damaged = by_id("finance-bureau");
    for e in std::fs::read_dir(damaged.home.join("snapshots")).unwrap() {
        let m = e.unwrap().path().join("manifest.bin");
        if m.is_file() {
            let bytes = std::fs::read(&m).unwrap();
            std::fs::write(&m, &bytes[..bytes.len() / 2]).unwrap();
        }
    }

    // The new node joins from the highest snapshot offered.
    net.extra.push(start(&home, "node.log"));
    wait_until("the new node's API", 180, || status(&api).is_some());
    let st = status(&api).unwrap();
    let base = st["base"].as_u64().unwrap();
    // A snapshot holds the first head its checkpoint saw at or after an
    // interval height: under load, sometimes a block or two later.
    assert!(base >= 2 * INTERVAL, "base {base}: {st}");
    let log = std::fs::read_to_string(home.join("node.log")).unwrap();
    assert!(log.contains("joined from a snapshot"), "{log}");
    assert!(!log.contains("bad chunk"), "{log}");
    // It follows the chain from there and agrees with the consortium.
    let target = height(&bank.api);
    wait_until("the joined node catches up", 120, || height(&api) >= target);
    assert_eq!(block_at(&api, target), block_at(&bank.api, target));
    assert_eq!(block_at(&api, base), block_at(&bank.api, base));

    // Queries from the snapshot height on; 410 `pruned` below it.
    let org = api_get(&api, &format!("/v1/orgs/{NEW_ORG}")).unwrap();
    assert_eq!(org["id"], NEW_ORG, "{org}");
    assert_eq!(
        api_get(&api, "/v1/orgs").unwrap(),
        api_get(&bank.api, "/v1/orgs").unwrap()
    );
    let (code, body) = http_status(&api, &format!("/v1/blocks/{}", base - 1));
    assert_eq!(code, 410, "{body}");
    assert_eq!(body["code"], "pruned", "{body}");
    let (code, _) = http_status(&bank.api, &format!("/v1/blocks/{}", base - 1));
    assert_eq!(code, 200);

    finish_load(load, &load_out);
    // Its last block is the consortium's.
    let h = height(&bank.api);
    wait_until("the joined node at the consortium's height", 60, || {
        height(&api) >= h
    });
    assert_eq!(block_at(&api, h), block_at(&bank.api, h));

    // A restart with the flag goes on from its store.
    let mut node = net.extra.pop().unwrap();
    common::consortium::signal(node.id() as i32, "-TERM");
    node.wait().unwrap();
    net.extra.push(start(&home, "node2.log"));
    wait_until("the restarted node's API", 60, || status(&api).is_some());
    assert_eq!(status(&api).unwrap()["base"].as_u64(), Some(base));
    let log2 = std::fs::read_to_string(home.join("node2.log")).unwrap();
    assert!(log2.contains("nothing to do"), "{log2}");

    // The auditor's replay: refused on the pruned node, verified on an
    // archive node.
    let out = run(&["audit", "replay", "--home", s(&home)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("starts at height {base}")), "{err}");
    replay_verified(&bank.home);
}
