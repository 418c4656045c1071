//! The `aidledger` command line, run as a process: keys, genesis, init,
//! household ids and the testnet layout.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

#[test]
fn keys_generate_and_show() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("sub/op.json");
    let pk = ok(&["keys", "generate", "--out", s(&p), "--label", "desk 1"]);
    let pk = pk.trim();
    assert_eq!(pk.len(), 64, "{pk}");
    assert!(pk.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(mode(&p), 0o600);

    let shown = ok(&["keys", "show", s(&p)]);
    assert!(shown.contains(pk), "{shown}");
    assert!(shown.contains("peer id"), "{shown}");
    assert!(shown.contains("desk 1"), "{shown}");
    let j: Value = serde_json::from_str(&ok(&["keys", "show", s(&p), "--output", "json"])).unwrap();
    assert_eq!(j["public_key"], pk);
    assert!(
        j["peer_id"].as_str().unwrap().starts_with("12D3KooW"),
        "{j}"
    );

    // Never overwrite; refuse bad files with the reason.
    fails(&["keys", "generate", "--out", s(&p)], 1, "already exists");
    let junk = d.path().join("junk.json");
    std::fs::write(&junk, "{not json").unwrap();
    std::fs::set_permissions(&junk, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    fails(&["keys", "show", s(&junk)], 1, "not a key file");
    let open = d.path().join("open.json");
    std::fs::copy(&p, &open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    fails(&["keys", "show", s(&open)], 1, "chmod 600");
    fails(
        &["keys", "show", s(&d.path().join("missing.json"))],
        1,
        "missing.json",
    );
}

#[test]
fn genesis_is_composed_step_by_step() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("genesis.json");
    let g = s(&g);
    ok(&[
        "genesis",
        "new",
        "--chain-id",
        "aid-test",
        "--out",
        g,
        "--time",
        "2026-01-01",
    ]);
    fails(
        &["genesis", "new", "--chain-id", "aid-test", "--out", g],
        1,
        "already exists",
    );
    fails(
        &[
            "genesis",
            "new",
            "--chain-id",
            "Aid Test",
            "--out",
            "x.json",
        ],
        2,
        "chain id",
    );
    fails(&["genesis", "validate", "--file", g], 1, "no validators");

    ok(&[
        "genesis",
        "add-org",
        "--file",
        g,
        "--id",
        "state-bank",
        "--name",
        "State Bank",
        "--kind",
        "bank",
    ]);
    ok(&[
        "genesis",
        "add-org",
        "--file",
        g,
        "--id",
        "dev-bank",
        "--name",
        "Dev Bank",
        "--kind",
        "development-bank",
    ]);
    fails(
        &[
            "genesis", "add-org", "--file", g, "--id", "dev-bank", "--name", "Again", "--kind",
            "bank",
        ],
        2,
        "already in the genesis",
    );
    fails(
        &[
            "genesis", "add-org", "--file", g, "--id", "shop", "--name", "S", "--kind", "shop",
        ],
        2,
        "possible values: bank, development-bank",
    );
    fails(
        &[
            "genesis", "add-org", "--file", g, "--id", "Bad Id", "--name", "S", "--kind", "bank",
        ],
        2,
        "organisation id",
    );

    let (_, v1) = gen_key(d.path(), "v1.json");
    let (_, v2) = gen_key(d.path(), "v2.json");
    let (_, a1) = gen_key(d.path(), "a1.json");
    let (_, a2) = gen_key(d.path(), "a2.json");
    let (_, obs) = gen_key(d.path(), "obs.json");
    ok(&[
        "genesis",
        "add-validator",
        "--file",
        g,
        "--org",
        "state-bank",
        "--key",
        &v1,
    ]);
    ok(&[
        "genesis",
        "add-validator",
        "--file",
        g,
        "--org",
        "dev-bank",
        "--key",
        &v2,
    ]);
    fails(
        &[
            "genesis",
            "add-validator",
            "--file",
            g,
            "--org",
            "dev-bank",
            "--key",
            &a1,
        ],
        2,
        "already runs a validator",
    );
    fails(
        &[
            "genesis",
            "add-validator",
            "--file",
            g,
            "--org",
            "nobody",
            "--key",
            &a1,
        ],
        2,
        "not in the genesis",
    );
    fails(
        &[
            "genesis",
            "add-validator",
            "--file",
            g,
            "--org",
            "dev-bank",
            "--key",
            "abcd",
        ],
        2,
        "64 hex",
    );
    ok(&[
        "genesis",
        "add-node-key",
        "--file",
        g,
        "--org",
        "dev-bank",
        "--key",
        &obs,
    ]);
    fails(
        &[
            "genesis",
            "add-node-key",
            "--file",
            g,
            "--org",
            "state-bank",
            "--key",
            &v2,
        ],
        2,
        "already used",
    );

    ok(&[
        "genesis",
        "add-account",
        "--file",
        g,
        "--org",
        "state-bank",
        "--key",
        &a1,
        "--roles",
        "admin,disburser",
    ]);
    // The threshold of 2 needs two organisations with an admin.
    fails(
        &["genesis", "validate", "--file", g],
        1,
        "governance threshold",
    );
    fails(
        &[
            "genesis",
            "add-account",
            "--file",
            g,
            "--org",
            "dev-bank",
            "--key",
            &a2,
            "--roles",
            "admin,boss",
        ],
        2,
        "invalid role",
    );
    fails(
        &[
            "genesis",
            "add-account",
            "--file",
            g,
            "--org",
            "dev-bank",
            "--key",
            &a1,
            "--roles",
            "admin",
        ],
        2,
        "already in the genesis",
    );
    ok(&[
        "genesis",
        "add-account",
        "--file",
        g,
        "--org",
        "dev-bank",
        "--key",
        &a2,
        "--roles",
        "admin,approver",
    ]);

    let out = ok(&["genesis", "validate", "--file", g, "--output", "json"]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["validators"], 2);
    assert_eq!(j["genesis_hash"].as_str().unwrap().len(), 64);

    // The file is a real genesis.
    let text = std::fs::read_to_string(g).unwrap();
    let genesis: aidledger_contracts::Genesis = serde_json::from_str(&text).unwrap();
    genesis.validate().unwrap();
    assert_eq!(genesis.hash().to_hex(), j["genesis_hash"]);
    assert_eq!(genesis.orgs[1].node_keys.len(), 1);

    fails(
        &[
            "genesis",
            "validate",
            "--file",
            s(&d.path().join("nope.json")),
        ],
        1,
        "nope.json",
    );
    std::fs::write(d.path().join("junk.json"), "[]").unwrap();
    fails(
        &[
            "genesis",
            "validate",
            "--file",
            s(&d.path().join("junk.json")),
        ],
        2,
        "not a genesis file",
    );
}

#[test]
fn init_creates_a_home() {
    let d = tempfile::tempdir().unwrap();
    let g = d.path().join("genesis.json");
    ok(&["genesis", "new", "--chain-id", "aid-init", "--out", s(&g)]);
    ok(&[
        "genesis",
        "add-org",
        "--file",
        s(&g),
        "--id",
        "audit-office",
        "--name",
        "Audit",
        "--kind",
        "auditor",
    ]);
    let home = d.path().join("home");
    let out = ok(&[
        "init",
        "--home",
        s(&home),
        "--org",
        "audit-office",
        "--genesis",
        s(&g),
        "--api-listen",
        "127.0.0.1:1",
        "--output",
        "json",
    ]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["node_key"].as_str().unwrap().len(), 64);
    assert!(j["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    assert_eq!(j["genesis_complete"], false);
    assert!(home.join("config.toml").exists() && home.join("genesis.json").exists());
    assert!(home.join("data").is_dir());
    assert_eq!(mode(&home.join("keys/node.json")), 0o600);
    let cfg = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(
        cfg.contains("org = \"audit-office\"") && cfg.contains("127.0.0.1:1"),
        "{cfg}"
    );

    fails(
        &[
            "init",
            "--home",
            s(&home),
            "--org",
            "audit-office",
            "--genesis",
            s(&g),
        ],
        1,
        "--force",
    );
    // --force keeps the node key.
    let again: Value = serde_json::from_str(&ok(&[
        "init",
        "--home",
        s(&home),
        "--org",
        "audit-office",
        "--genesis",
        s(&g),
        "--force",
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(again["node_key"], j["node_key"]);
    assert_eq!(again["key_created"], false);
    let other = d.path().join("other");
    fails(
        &[
            "init",
            "--home",
            s(&other),
            "--org",
            "nobody",
            "--genesis",
            s(&g),
        ],
        2,
        "not in the genesis",
    );
    fails(
        &[
            "init",
            "--home",
            s(&other),
            "--org",
            "audit-office",
            "--genesis",
            s(&g),
            "--peer",
            "/ip4/10.0.0.1/tcp/1",
        ],
        2,
        "/p2p/",
    );
    fails(
        &["init", "--org", "audit-office", "--genesis", s(&g)],
        2,
        "--home",
    );
}

#[test]
fn household_id_is_sha256_of_salt_and_local_id() {
    let out = ok(&[
        "household-id",
        "--salt",
        "county-salt-7",
        "--local-id",
        "HH-000123",
    ]);
    let want = aidledger_types::hash::sha256(b"county-salt-7HH-000123").to_hex();
    assert_eq!(out.trim(), want);
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("salt");
    std::fs::write(&f, "county-salt-7\n").unwrap();
    let out = ok(&[
        "household-id",
        "--salt-file",
        s(&f),
        "--local-id",
        "HH-000123",
    ]);
    assert_eq!(out.trim(), want);
    fails(
        &["household-id", "--salt", "", "--local-id", "x"],
        2,
        "salt",
    );
    fails(&["household-id", "--local-id", "x"], 2, "--salt");
}

fn testnet_json(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap()
}

fn ports_of(t: &Value) -> Vec<u16> {
    let mut out = Vec::new();
    for o in t["orgs"].as_array().unwrap() {
        let api = o["api"].as_str().unwrap();
        out.push(api.rsplit(':').next().unwrap().parse().unwrap());
        let p2p = o["p2p"].as_str().unwrap();
        out.push(p2p.split('/').nth(4).unwrap().parse().unwrap());
    }
    out
}

#[test]
fn testnet_init_lays_out_a_consortium() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a");
    ok(&["testnet", "init", "--dir", s(&a)]);
    let t = testnet_json(&a);
    assert!(t["chain_id"]
        .as_str()
        .unwrap()
        .starts_with("aidledger-testnet-"));
    let orgs = t["orgs"].as_array().unwrap();
    let ids: Vec<&str> = orgs.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "state-bank",
            "dev-bank",
            "poverty-office",
            "finance-bureau",
            "audit-office",
            "county-unit"
        ]
    );
    let validators: Vec<bool> = orgs
        .iter()
        .map(|o| o["validator"].as_bool().unwrap())
        .collect();
    assert_eq!(validators, [true, true, true, true, false, false]);
    for o in orgs {
        let home = PathBuf::from(o["home"].as_str().unwrap());
        for f in ["config.toml", "genesis.json", "keys/node.json"] {
            assert!(home.join(f).exists(), "{}", home.join(f).display());
        }
        assert!(home.join("data").is_dir());
        assert_eq!(mode(&home.join("keys/node.json")), 0o600);
        assert!(o["api"].as_str().unwrap().starts_with("http://127.0.0.1:"));
        assert!(o["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
        let clients = o["clients"].as_object().unwrap();
        assert!(clients.contains_key("admin"), "{o}");
        for (_, p) in clients {
            let p = Path::new(p.as_str().unwrap());
            assert_eq!(mode(p), 0o600, "{}", p.display());
            ok(&["keys", "show", s(p)]);
        }
        let cfg = std::fs::read_to_string(home.join("config.toml")).unwrap();
        assert_eq!(cfg.matches("/p2p/").count(), orgs.len() - 1, "{cfg}");
        // Each home's genesis validates and is the same chain.
        let v: Value = serde_json::from_str(&ok(&[
            "genesis",
            "validate",
            "--file",
            s(&home.join("genesis.json")),
            "--output",
            "json",
        ]))
        .unwrap();
        assert_eq!(v["genesis_hash"], t["genesis_hash"]);
    }
    let roles = |org: &str| -> Vec<String> {
        let o = orgs.iter().find(|o| o["id"] == org).unwrap();
        o["clients"].as_object().unwrap().keys().cloned().collect()
    };
    assert!(roles("county-unit").contains(&"registrar".to_string()));
    assert!(roles("dev-bank").contains(&"approver".to_string()));
    assert!(roles("audit-office").contains(&"auditor".to_string()));
    assert!(roles("state-bank").contains(&"disburser".to_string()));

    // Refuse to overwrite, unless forced.
    fails(&["testnet", "init", "--dir", s(&a)], 1, "--force");
    ok(&[
        "testnet",
        "init",
        "--dir",
        s(&a),
        "--force",
        "--validators",
        "1",
    ]);
    let t1 = testnet_json(&a);
    let nv = t1["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["validator"] == true)
        .count();
    assert_eq!(nv, 1);

    // A second testnet beside it never shares a port.
    let b = d.path().join("b");
    ok(&["testnet", "init", "--dir", s(&b), "--validators", "7"]);
    let t2 = testnet_json(&b);
    assert_eq!(t2["orgs"].as_array().unwrap().len(), 9);
    assert_ne!(t1["chain_id"], t2["chain_id"]);
    let pa = ports_of(&t1);
    let pb = ports_of(&t2);
    assert!(pa.iter().all(|p| !pb.contains(p)), "{pa:?} {pb:?}");

    fails(
        &[
            "testnet",
            "init",
            "--dir",
            s(&d.path().join("c")),
            "--validators",
            "8",
        ],
        2,
        "1..=7",
    );
    fails(
        &["testnet", "up", "--dir", s(&d.path().join("none"))],
        1,
        "testnet init",
    );
}

/// Stops a test's testnet when the test ends, passed or failed.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run(&["testnet", "down", "--dir", &self.0]);
    }
}

/// A testnet laid out by `testnet init` in a temporary directory: the
/// directory (removed when dropped), the testnet's path, and the guard
/// that stops its nodes (declared last, so dropped first).
fn initialised_testnet() -> (tempfile::TempDir, PathBuf, Down) {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("net");
    ok(&["testnet", "init", "--dir", s(&dir)]);
    let down = Down(s(&dir).to_string());
    (d, dir, down)
}

/// A node that exits while `testnet up` waits for it: the error carries the
/// end of its log, since a test's temporary directory (log included) is
/// gone by the time anyone reads a failed run. The nodes that did start
/// are stopped by `testnet down`.
#[test]
fn a_node_that_exits_at_start_is_named_with_the_end_of_its_log() {
    let (_d, dir, _down) = initialised_testnet();
    let net = s(&dir);
    let config = dir.join("county-unit").join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\nthis line = = is not toml\n");
    std::fs::write(&config, text).unwrap();
    let out = run(&["testnet", "up", "--dir", net]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: the node of county-unit exited"),
        "{err}"
    );
    let log = std::fs::read_to_string(dir.join("county-unit").join("node.log")).unwrap();
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        err.contains(last.trim()),
        "the error carries the log's last line {last:?}: {err}"
    );
}

/// A node started while another process still holds its store (a restart
/// racing the previous instance's exit) waits for the lock, says so in its
/// log, and starts once it is released, instead of exiting on RocksDB's
/// lock error.
#[test]
fn a_node_waits_for_a_store_another_process_still_holds() {
    let (_d, dir, _down) = initialised_testnet();
    let net = s(&dir);
    let home = dir.join("county-unit");
    let data = home.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let held = aidledger_storage::RocksStore::open(&data).unwrap();
    let up = {
        let net = net.to_string();
        std::thread::spawn(move || run(&["testnet", "up", "--dir", &net]))
    };
    let log = home.join("node.log");
    common::consortium::wait_until("the node to say it waits for the store", 30, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("held by another process; waiting"))
    });
    drop(held);
    let out = up.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status = ok(&["testnet", "status", "--dir", net]);
    assert!(status.contains("county-unit"), "{status}");
    // The node runs with glibc's malloc settings (procs.rs, the operator
    // guide): the caller's own values, or the testnet's.
    let pid = std::fs::read_to_string(home.join("node.pid")).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", pid.trim())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for var in ["MALLOC_ARENA_MAX=", "MALLOC_MMAP_THRESHOLD_="] {
        assert!(environ.split('\0').any(|v| v.starts_with(var)), "{var}");
    }
}

/// Shell completions for every shell clap_complete knows, naming the
/// commands; the manual pages, one per command; bad arguments refused.
#[test]
fn completions_and_manual_pages() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = ok(&["completions", shell]);
        for word in ["testnet", "trace", "node"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = run(&["completions", "nosh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let said = ok(&["man", "--out", d]);
    assert!(said.contains("manual pages"), "{said}");
    for page in ["aidledger.1", "aidledger-tx.1", "aidledger-audit-export.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    let out = run(&["man", "--out", &format!("{d}/missing")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
