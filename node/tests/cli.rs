//! The `aidledger` command line, run as a process: keys, genesis, init,
//! household ids, testnet layout, argument checking, and the transaction
//! flow against a fake node API on loopback.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aidledger"));
    c.env_remove("AIDLEDGER_HOME").env_remove("AIDLEDGER_NODE");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}\n{}",
        stderr(&o),
        stdout(&o)
    );
    stdout(&o)
}

/// Runs a command that must fail with `code` and a one-line error.
fn fails(args: &[&str], code: i32, needle: &str) -> String {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}{}", stdout(&o));
    assert!(err.starts_with("error: "), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
    err
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn gen_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    let pk = ok(&["keys", "generate", "--out", s(&p)]).trim().to_string();
    (p, pk)
}

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
        "expected bank",
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

/// A listener that must never see a connection.
fn silent_listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

#[test]
fn bad_arguments_fail_before_contacting_a_node() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = gen_key(d.path(), "po.json");
    let key = s(&key);
    let (listener, url) = silent_listener();
    let program = |ceiling: &str, region: &str| {
        vec![
            "--node".to_string(),
            url.clone(),
            "tx".into(),
            "create-program".into(),
            "--key".into(),
            key.into(),
            "--id".into(),
            "p1".into(),
            "--title".into(),
            "Roads".into(),
            "--currency".into(),
            "CNY".into(),
            "--funding-orgs".into(),
            "state-bank".into(),
            "--ceiling".into(),
            ceiling.into(),
            "--threshold".into(),
            "1".into(),
            "--policy-orgs".into(),
            "dev-bank".into(),
            "--region-scope".into(),
            region.into(),
        ]
    };
    let refs = |v: &Vec<String>| {
        v.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let run_v = |v: Vec<String>, needle: &str| {
        let joined = refs(&v);
        let args: Vec<&str> = joined.split('\u{0}').collect();
        fails(&args, 2, needle);
    };
    run_v(program("12.345", "gansu"), "at most 2 decimal places");
    run_v(program("12.34", "Gansu/"), "region code");
    let hh = "ab".repeat(32);
    for (args, needle) in [
        (
            vec![
                "tx",
                "deposit",
                "--key",
                key,
                "--program",
                "p1",
                "--amount",
                "1.2.3",
            ],
            "invalid amount",
        ),
        (
            vec![
                "tx",
                "deposit",
                "--key",
                key,
                "--program",
                "p1",
                "--amount",
                "12.345",
                "--decimals",
                "2",
            ],
            "at most 2 decimal places",
        ),
        (
            vec![
                "tx",
                "set-entitlement",
                "--key",
                key,
                "--id",
                "e1",
                "--program",
                "p1",
                "--amount",
                "10",
                "--period",
                "30d",
                "--start",
                "2026-02-30",
                "--periods",
                "3",
                "--region",
                "gansu",
            ],
            "no such day",
        ),
        (
            vec![
                "tx",
                "create-plan",
                "--key",
                key,
                "--id",
                "plan",
                "--program",
                "p1",
                "--tranche",
                "id=t1,amount=1,to=org:county-unit,when=all(after(2026-03-01)",
            ],
            "condition syntax error",
        ),
        (
            vec![
                "tx",
                "create-plan",
                "--key",
                key,
                "--id",
                "plan",
                "--program",
                "p1",
                "--amount",
                "1",
                "--to",
                "org:x",
                "--condition",
                "later(2026-01-01)",
            ],
            "condition syntax error",
        ),
        (
            vec![
                "tx",
                "register-household",
                "--key",
                key,
                "--household",
                "xyz",
                "--region",
                "gansu",
            ],
            "64 hex",
        ),
        (
            vec![
                "tx",
                "register-household",
                "--key",
                key,
                "--household",
                &hh,
                "--region",
                "a/b/c/d",
            ],
            "three segments",
        ),
        (
            vec![
                "tx",
                "attest",
                "--key",
                key,
                "--subject",
                "hh:12",
                "--claim",
                "poor",
                "--value",
                "code:yes",
            ],
            "64 hex",
        ),
        (
            vec![
                "tx",
                "attest",
                "--key",
                key,
                "--subject",
                "app:x",
                "--claim",
                "poor",
                "--value",
                "yes",
            ],
            "code:<slug>",
        ),
        (
            vec![
                "tx",
                "gov-propose",
                "--key",
                key,
                "add-account",
                "--account",
                "00",
                "--org",
                "x",
                "--roles",
                "admin",
            ],
            "64 hex",
        ),
        (
            vec![
                "tx",
                "gov-propose",
                "--key",
                key,
                "set-param",
                "--name",
                "speed",
                "--value",
                "1",
            ],
            "unknown parameter",
        ),
        (
            vec![
                "tx",
                "resolve-anomaly",
                "--key",
                key,
                "--anomaly",
                "1",
                "--note",
                " ",
            ],
            "--note",
        ),
        (
            vec!["tx", "deposit", "--program", "p1", "--amount", "1"],
            "--key",
        ),
        (vec!["query", "block", "tip"], "latest"),
        (vec!["query", "household", "12"], "64 hex"),
        (vec!["tx", "no-such-kind"], "unrecognized subcommand"),
    ] {
        let mut full = vec!["--node", url.as_str()];
        full.extend(args);
        fails(&full, 2, needle);
    }
    assert!(listener.accept().is_err(), "a node was contacted");
}

#[test]
fn tx_without_a_node_says_so() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = gen_key(d.path(), "k.json");
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    fails(
        &[
            "--node",
            &url,
            "tx",
            "deposit",
            "--key",
            s(&key),
            "--program",
            "p1",
            "--amount",
            "10.00",
        ],
        1,
        "cannot reach the node",
    );
    fails(
        &["--node", &url, "query", "status"],
        1,
        "cannot reach the node",
    );
    fails(&["--node", &url, "status", "--output", "json"], 1, &url);
}

type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A fake node API answering from `route(method, path, body)`.
fn fake_node(route: fn(&str, &str, &str) -> (u16, Value)) -> (String, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let (code, v) = route(&method, &path, &body);
            seen2.lock().unwrap().push((method, path, body));
            let text = v.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (url, seen)
}

const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn status_json() -> Value {
    json!({
        "chain_id": "aid-fake", "org": "state-bank", "node_key": ZERO, "validator": true,
        "genesis_hash": ZERO, "height": 7, "block_hash": ZERO, "state_root": ZERO, "view": 1,
        "leader": "dev-bank", "peers": 5, "mempool_txs": 0, "last_block_time_ms": 0
    })
}

fn fake_route(method: &str, path: &str, body: &str) -> (u16, Value) {
    match (method, path) {
        ("GET", "/v1/status") => (200, status_json()),
        ("GET", p) if p.starts_with("/v1/accounts/") => {
            let key = p.trim_start_matches("/v1/accounts/");
            (
                200,
                json!({"key": key, "org": "state-bank", "roles": ["disburser"], "nonce": 4, "status": "active"}),
            )
        }
        ("GET", "/v1/programs/p1") => (
            200,
            json!({
                "id": "p1", "title": "Roads", "currency": "CNY", "decimals": 2, "owner": "poverty-office",
                "funding_orgs": ["state-bank"], "budget_ceiling": 100000000,
                "policy": {"threshold": 1, "orgs": ["dev-bank"]}, "region_scope": "gansu", "status": "open",
                "balances": {"deposited": 125000, "available": 125000, "committed": 0, "released": 0, "settled": 0, "returned": 0},
                "ledger_seq": 1, "created_height": 2
            }),
        ),
        ("GET", _) => (
            404,
            json!({"error": "program p2 does not exist", "code": "not-found"}),
        ),
        ("POST", "/v1/txs") => {
            let req: Value = serde_json::from_str(body).unwrap();
            let bytes = hex::decode(req["tx"].as_str().unwrap()).unwrap();
            let tx = aidledger_types::SignedTx::decode(&bytes).unwrap();
            let verified = aidledger_crypto::verify_tx(tx.clone(), &tx.body.chain_id).is_ok();
            if !verified || tx.body.nonce != 4 {
                return (
                    400,
                    json!({"error": "bad signature or nonce", "code": "admission"}),
                );
            }
            if tx.body.kind == aidledger_types::TxKind::GovPropose {
                return (
                    400,
                    json!({"error": "mempool is full", "code": "admission"}),
                );
            }
            let id = tx.id().to_hex();
            if req["wait_ms"].as_u64().unwrap() == 0 {
                return (
                    200,
                    json!({"id": id, "status": "pending", "height": null, "index": null, "receipt": null}),
                );
            }
            let outcome = if tx.body.kind == aidledger_types::TxKind::Settle {
                json!({"rejected": {"code": "not-found", "reason": "release 9 does not exist"}})
            } else {
                json!("applied")
            };
            (
                200,
                json!({"id": id, "status": "committed", "height": 8, "index": 0, "receipt": {
                    "index": 0, "tx_id": id, "kind": tx.body.kind, "signer": tx.body.signer, "height": 8,
                    "outcome": outcome, "events": []
                }}),
            )
        }
        _ => (
            405,
            json!({"error": "method not allowed", "code": "bad-request"}),
        ),
    }
}

#[test]
fn tx_flow_against_a_fake_node() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = gen_key(d.path(), "disburser.json");
    let key = s(&key);
    let (url, seen) = fake_node(fake_route);

    // Amounts are read in the program's decimals, learnt from the node.
    let out = ok(&[
        "--node",
        &url,
        "tx",
        "deposit",
        "--key",
        key,
        "--program",
        "p1",
        "--amount",
        "1250.00",
    ]);
    let id = out.lines().next().unwrap();
    assert_eq!(id.len(), 64, "{out}");
    let posted = seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.0 == "POST")
        .cloned()
        .unwrap();
    let req: Value = serde_json::from_str(&posted.2).unwrap();
    assert_eq!(req["wait_ms"], 0);
    let tx = aidledger_types::SignedTx::decode(&hex::decode(req["tx"].as_str().unwrap()).unwrap())
        .unwrap();
    assert_eq!(tx.id().to_hex(), id);
    assert_eq!(tx.body.chain_id.as_str(), "aid-fake");
    match aidledger_contracts::Payload::decode(tx.body.kind, &tx.body.payload).unwrap() {
        aidledger_contracts::Payload::Deposit(p) => assert_eq!(p.amount.0, 125_000),
        other => panic!("{other:?}"),
    }
    fails(
        &[
            "--node",
            &url,
            "tx",
            "deposit",
            "--key",
            key,
            "--program",
            "p1",
            "--amount",
            "1.001",
        ],
        2,
        "at most 2 decimal places",
    );

    // --wait prints the height and the outcome.
    let out = ok(&[
        "--node",
        &url,
        "tx",
        "deposit",
        "--key",
        key,
        "--program",
        "p1",
        "--amount",
        "1",
        "--wait",
    ]);
    assert!(out.contains("height 8: applied"), "{out}");
    let out = ok(&[
        "--node",
        &url,
        "tx",
        "deposit",
        "--key",
        key,
        "--program",
        "p1",
        "--amount",
        "1",
        "--wait",
        "--output",
        "json",
    ]);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["status"], "committed");

    // A rejection exits non-zero with its code and reason.
    let o = run(&[
        "--node",
        &url,
        "tx",
        "settle",
        "--key",
        key,
        "--release",
        "9",
        "--amount",
        "1",
        "--program",
        "p1",
        "--bank-ref",
        "BANK-REF-1",
        "--wait",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("rejected: not-found: release 9 does not exist"),
        "{}",
        stdout(&o)
    );

    // API errors are shown as `error: <error>`.
    fails(
        &[
            "--node",
            &url,
            "tx",
            "deposit",
            "--key",
            key,
            "--program",
            "p2",
            "--amount",
            "1",
        ],
        1,
        "program p2 does not exist",
    );
    fails(
        &[
            "--node",
            &url,
            "tx",
            "gov-propose",
            "--key",
            key,
            "add-org",
            "--id",
            "new-org",
            "--name",
            "A new member org",
            "--kind",
            "bank",
        ],
        1,
        "error: mempool is full",
    );

    // Queries: JSON passes through; text is readable.
    let j: Value = serde_json::from_str(&ok(&[
        "--node", &url, "query", "status", "--output", "json",
    ]))
    .unwrap();
    for k in [
        "height",
        "view",
        "leader",
        "peers",
        "state_root",
        "block_hash",
    ] {
        assert!(j.get(k).is_some(), "{k} missing: {j}");
    }
    let text = ok(&["--node", &url, "status"]);
    assert!(
        text.contains("height") && text.contains("dev-bank"),
        "{text}"
    );
    let text = ok(&["--node", &url, "query", "program", "p1"]);
    assert!(text.contains("1250.00 CNY"), "{text}");
}
