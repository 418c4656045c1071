//! The `aidledger` command line, run as a process: argument checking
//! before any node is contacted, and the transaction flow against a fake
//! node API on loopback.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

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
    let (key, pk) = gen_key(d.path(), "po.json");
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
    let not_a_point = "ff".repeat(32);
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
                "gov-propose",
                "set-cross-check",
                "--key",
                key,
                "--id",
                "income",
                "--description",
                "d",
                "--when",
                "income-level=above-line",
            ],
            "expected CLAIM@ORG=CODE",
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
        (
            vec![
                "tx",
                "gov-propose",
                "--key",
                key,
                "replace-node-key",
                "--old-key",
                &pk,
                "--new-key",
                &not_a_point,
                "--at-height",
                "100",
            ],
            "not a usable node key",
        ),
        (
            vec![
                "tx",
                "gov-propose",
                "--key",
                key,
                "replace-node-key",
                "--old-key",
                &pk,
                "--new-key",
                &pk,
                "--at-height",
                "100",
            ],
            "are the same key",
        ),
        (
            vec![
                "tx",
                "gov-propose",
                "--key",
                key,
                "schedule-upgrade",
                "--module",
                "plans",
                "--at-height",
                "100",
            ],
            "expected name@version",
        ),
        (
            vec![
                "tx",
                "gov-propose",
                "--key",
                key,
                "schedule-upgrade",
                "--module",
                "Plans@4",
                "--at-height",
                "100",
            ],
            "is not a module name",
        ),
        (
            vec![
                "tx",
                "gov-propose",
                "--key",
                key,
                "schedule-upgrade",
                "--at-height",
                "100",
            ],
            "--module",
        ),
        (
            vec![
                "tx",
                "create-plan",
                "--key",
                key,
                "--id",
                "p",
                "--program",
                "p1",
                "--amount",
                "1",
                "--to",
                "org:x",
                "--condition",
                "attested_value(c, by: x, subject: app:a, value: maybe)",
            ],
            "code:<slug>",
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

/// A problem answer (RFC 9457) as the node sends one.
fn problem(status: u16, code: &str, detail: &str) -> Value {
    json!({"type": format!("/v1/problems#{code}"), "title": code, "status": status,
           "detail": detail, "code": code})
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
        ("GET", _) => (404, problem(404, "not-found", "program p2 does not exist")),
        ("POST", "/v1/txs") => {
            let req: Value = serde_json::from_str(body).unwrap();
            let bytes = hex::decode(req["tx"].as_str().unwrap()).unwrap();
            let tx = aidledger_types::SignedTx::decode(&bytes).unwrap();
            let verified = aidledger_crypto::verify_tx(tx.clone(), &tx.body.chain_id).is_ok();
            if !verified || tx.body.nonce != 4 {
                return (422, problem(422, "bad-signature", "bad signature or nonce"));
            }
            if tx.body.kind == aidledger_types::TxKind::GovPropose {
                return (503, problem(503, "mempool-full", "mempool is full"));
            }
            let id = tx.id().to_hex();
            if req["wait_ms"].as_u64().unwrap() == 0 {
                return (
                    200,
                    json!({"id": id, "status": "pending", "height": null, "index": null, "receipt": null}),
                );
            }
            let release = match aidledger_contracts::Payload::decode(tx.body.kind, &tx.body.payload)
            {
                Ok(aidledger_contracts::Payload::Settle(p)) => Some(p.release),
                _ => None,
            };
            let mut events = json!([]);
            let outcome = match release {
                Some(10) => {
                    // A settlement whose amount differs: applied, but recorded
                    // as disputed with an anomaly.
                    let ev = |body| aidledger_contracts::Event {
                        height: 8,
                        tx: Some(tx.id()),
                        body,
                    };
                    events = serde_json::to_value(vec![
                        ev(aidledger_contracts::EventBody::Settled {
                            release: 10,
                            amount: aidledger_types::Amount(100),
                            status: aidledger_contracts::SettlementStatus::Disputed,
                        }),
                        ev(aidledger_contracts::EventBody::AnomalyRaised {
                            anomaly: 3,
                            subject: aidledger_contracts::Subject::Release(10),
                            code: "settlement-mismatch".into(),
                        }),
                    ])
                    .unwrap();
                    json!("applied")
                }
                Some(_) => {
                    json!({"rejected": {"code": "not-found", "reason": "release 9 does not exist"}})
                }
                None => json!("applied"),
            };
            (
                200,
                json!({"id": id, "status": "committed", "height": 8, "index": 0, "receipt": {
                    "index": 0, "tx_id": id, "kind": tx.body.kind, "signer": tx.body.signer, "height": 8,
                    "outcome": outcome, "events": events
                }}),
            )
        }
        _ => (
            405,
            problem(405, "method-not-allowed", "method not allowed"),
        ),
    }
}

#[test]
fn tx_flow_against_a_fake_node() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = gen_key(d.path(), "disburser.json");
    let key = s(&key);
    let (url, seen) = fake_node(fake_route);

    // --decimals must agree with the program's: 5 at 0 decimals would
    // have been 0.05 on this 2-decimal program.
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
            "5",
            "--decimals",
            "0",
        ],
        2,
        "does not match program p1",
    );

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

    // A settlement the chain recorded as disputed is applied, but the
    // operator is told so, not just `applied`.
    let o = run(&[
        "--node",
        &url,
        "tx",
        "settle",
        "--key",
        key,
        "--release",
        "10",
        "--amount",
        "1",
        "--program",
        "p1",
        "--bank-ref",
        "BANK-REF-2",
        "--wait",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("recorded as DISPUTED"), "{out}");
    assert!(out.contains("settlement-mismatch"), "{out}");

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

/// The help of `aidledger tx` and of every kind prints the authorisation
/// table's row for it, from the table execution uses.
#[test]
fn tx_help_shows_who_may_sign_from_the_authorisation_table() {
    use aidledger_types::authz;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aidledger"))
        .args(["tx", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(authz::help_table().trim_end()),
        "tx --help lacks the table:\n{text}"
    );
    for rule in &authz::TABLE {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_aidledger"))
            .args(["tx", rule.kind.as_str(), "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&authz::help_line(rule.kind)),
            "tx {} --help lacks its row:\n{text}",
            rule.kind
        );
    }
}
