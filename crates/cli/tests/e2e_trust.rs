#![allow(clippy::unwrap_used)]
// The slow-client check times the server's header deadline.
#![allow(clippy::disallowed_methods)]
//! End to end, with real `aidledger` processes on 127.0.0.1, the attacks
//! that used to stop or fork the consortium:
//!
//! - (issue 12) a transaction the contracts reject is sent to every node at
//!   once while it is being rejected, then resent, byte for byte, through
//!   every entry point (single submit, batch submit, the CLI) to every
//!   node. The consortium must keep committing, nothing may apply twice,
//!   every resend gets a clear answer, transactions behind a nonce gap must
//!   not raise the block rate, and the auditor's replay must pass;
//! - (issue 13) a validator restarted with its blocks but without its
//!   consensus safety state must not vote until the chain has moved past
//!   the heights it may have voted at, then take part again.
//!
//! The tests run one at a time: each starts a consortium of six processes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::consortium::{pid_of, signal, wait_exit, wait_until, Testnet};
use common::{ok as run_ok, run};
use serde_json::{json, Value};

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(40)))
        .build()
        .into()
}

/// Status code and JSON body (Null when the body is not JSON).
fn post(api: &str, path: &str, body: &Value) -> (u16, Value) {
    let mut r = agent()
        .post(&format!("{api}{path}"))
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {api}{path}: {e}"));
    let code = r.status().as_u16();
    let t = r.body_mut().read_to_string().unwrap_or_default();
    (code, serde_json::from_str(&t).unwrap_or(Value::Null))
}

/// `n` connections that send part of a request head and stop.
fn slow_clients(api: &str, n: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    let addr = api.trim_start_matches("http://");
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect()
}

/// Whether the server still holds `c` open (a read neither ends nor fails).
fn still_open(c: &std::net::TcpStream) -> bool {
    use std::io::Read;
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 512];
    match (&*c).read(&mut buf) {
        Ok(0) => false,
        // The server may answer 408 before it closes.
        Ok(_) => (&*c).read(&mut buf).map(|n| n > 0).unwrap_or(false),
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Sends only the headers of a POST declaring `declared` body bytes, and
/// returns the status line of the answer (the server must not wait for the
/// body).
fn declared_only(api: &str, path: &str, declared: u64) -> String {
    use std::io::{BufRead, BufReader, Write};
    let addr = api.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap_or_default();
    line
}

fn get(api: &str, path: &str) -> Option<Value> {
    let mut r = agent().get(&format!("{api}{path}")).call().ok()?;
    if !r.status().is_success() {
        return None;
    }
    serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
}

fn height(api: &str) -> u64 {
    get(api, "/v1/status")
        .and_then(|s| s["height"].as_u64())
        .unwrap_or(0)
}

#[allow(clippy::disallowed_methods)]
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn block_hash_at(api: &str, h: u64) -> Option<String> {
    get(api, &format!("/v1/blocks/{h}")).and_then(|v| v["hash"].as_str().map(str::to_string))
}

/// `aidledger tx deposit` into the test's program, with `extra` flags.
fn deposit(api: &str, key: &str, amount: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "tx",
        "deposit",
        "--node",
        api,
        "--key",
        key,
        "--program",
        "resend-fund",
        "--amount",
        amount,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Like [`deposit`], asserting success; returns stdout.
fn deposit_ok(api: &str, key: &str, amount: &str, extra: &[&str]) -> String {
    let out = deposit(api, key, amount, extra);
    assert!(
        out.status.success(),
        "deposit failed:\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A deposit signed by `key`, not submitted: (id, nonce, hex bytes).
fn signed_deposit(api: &str, key: &str, amount: &str, nonce: Option<u64>) -> (String, u64, String) {
    let n = nonce.map(|n| n.to_string());
    let mut extra = vec!["--dry-run", "--output", "json"];
    if let Some(n) = &n {
        extra.extend(["--nonce", n.as_str()]);
    }
    let v: Value = serde_json::from_str(&deposit_ok(api, key, amount, &extra)).unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["nonce"].as_u64().unwrap(),
        v["tx"].as_str().unwrap().to_string(),
    )
}

fn deposited(api: &str) -> u64 {
    get(api, "/v1/programs/resend-fund").unwrap()["balances"]["deposited"]
        .as_u64()
        .unwrap()
}

/// One consortium at a time on this 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_rejected_transaction_resent_everywhere_never_stops_the_chain_nor_applies() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = Testnet::up();
    let all = net.orgs();
    let apis: Vec<String> = all.iter().map(|o| o.api.clone()).collect();
    let by_id = |id: &str| all.iter().find(|o| o.id == id).unwrap().clone();
    wait_until("every node past height 1", 90, || {
        apis.iter().all(|a| height(a) >= 1)
    });

    // 300 clients that never finish their headers do not take the API
    // away: health and status still answer at once; the server cuts the
    // slow clients off after its header timeout (30 s), checked at the end.
    let slow_started = std::time::Instant::now();
    let slow = slow_clients(&apis[0], 300);
    let t = std::time::Instant::now();
    let health = agent()
        .get(&format!("{}/health", apis[0]))
        .call()
        .map(|r| r.status().as_u16());
    assert_eq!(health.ok(), Some(200), "health with slow clients held");
    assert!(
        get(&apis[0], "/v1/status").is_some(),
        "status with slow clients held"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // A body declared over a route's limit gets 413 at once, from the
    // declared length, with none of it sent.
    for (path, declared) in [("/v1/txs", 100_000_000u64), ("/v1/txs/batch", 17 << 20)] {
        let status = declared_only(&apis[0], path, declared);
        assert!(status.starts_with("HTTP/1.1 413"), "{path}: {status}");
    }

    let poverty = by_id("poverty-office");
    let bank = by_id("state-bank");
    let officer = poverty.clients["program-officer"]
        .as_str()
        .unwrap()
        .to_string();
    let disburser = bank.clients["disburser"].as_str().unwrap().to_string();
    common::create_program(&poverty.api, &officer, "resend-fund", "Resend fund");
    // Committed at the officer's node; the bank's node may be a block
    // behind, and the CLI checks the program against the node it asks.
    wait_until("the program on every node", 60, || {
        apis.iter()
            .all(|a| get(a, "/v1/programs/resend-fund").is_some())
    });
    deposit_ok(&bank.api, &disburser, "100.00", &["--wait"]);

    // 1. Over the ceiling: the contracts will reject it. Its bytes reach
    //    every node at once, by single and by batch submission, while it
    //    is being proposed and rejected.
    let (id, nonce, tx) = signed_deposit(&bank.api, &disburser, "2000000.00", None);
    let answers: Vec<(String, u16, Value)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for api in &apis {
            let one = tx.clone();
            handles.push(s.spawn(move || {
                let (c, v) = post(api, "/v1/txs", &json!({ "tx": one, "wait_ms": 15_000 }));
                (format!("single {api}"), c, v)
            }));
            let batch = tx.clone();
            handles.push(s.spawn(move || {
                let (c, v) = post(api, "/v1/txs/batch", &json!({ "txs": [batch] }));
                (format!("batch {api}"), c, v)
            }));
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (what, code, v) in &answers {
        // Admitted (200/202), or refused at admission because it is already
        // pending or already on the chain (422); never a server error.
        assert!(matches!(code, 200 | 202 | 422), "{what}: HTTP {code}: {v}");
        if *code == 422 {
            assert!(
                matches!(
                    v["code"].as_str(),
                    Some("already-pending" | "nonce-too-low")
                ),
                "{what}: {v}"
            );
        }
    }
    wait_until("the rejected tx committed on every node", 60, || {
        apis.iter()
            .all(|a| get(a, &format!("/v1/txs/{id}")).is_some_and(|v| v["status"] == "committed"))
    });
    let st = get(&bank.api, &format!("/v1/txs/{id}")).unwrap();
    let h = st["height"].as_u64().unwrap();
    assert_eq!(
        st["receipt"]["outcome"]["rejected"]["code"], "ceiling-exceeded",
        "{st}"
    );
    assert!(
        st["next_step"]
            .as_str()
            .is_some_and(|s| s.contains("sign and submit a new transaction")),
        "a rejection tells the user what to do: {st}"
    );

    // 2. Resent through every entry point, to every node.
    for api in &apis {
        let (code, v) = post(api, "/v1/txs", &json!({ "tx": tx }));
        assert_eq!(code, 200, "single resend at {api}: {v}");
        assert_eq!(v["status"], "committed", "{v}");
        assert_eq!(v["height"].as_u64(), Some(h), "{v}");

        let (code, v) = post(api, "/v1/txs/batch", &json!({ "txs": [tx, tx] }));
        assert_eq!(code, 200, "batch resend at {api}: {v}");
        assert_eq!(v["admitted"].as_u64(), Some(0), "{v}");
        for item in v["results"].as_array().unwrap() {
            assert_eq!(item["included_at"].as_u64(), Some(h), "{item}");
            assert_eq!(item["code"], "already-included", "{item}");
            let e = item["error"].as_str().unwrap();
            assert!(
                e.contains(&format!("already included at height {h}"))
                    && e.contains("rejected: ceiling-exceeded"),
                "{e}"
            );
        }

        // The CLI, told to reuse the nonce, signs the same bytes again.
        let n = nonce.to_string();
        let out = deposit(api, &disburser, "2000000.00", &["--nonce", &n]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&id), "{}", text(&out.stdout));
        assert!(
            text(&out.stdout).contains("rejected: ceiling-exceeded"),
            "{}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains("nonce is used"),
            "{}",
            text(&out.stderr)
        );

        // A different transaction with the used nonce is refused at once.
        let out = deposit(api, &disburser, "1.00", &["--nonce", &n]);
        assert!(!out.status.success());
        let e = text(&out.stderr);
        assert!(
            e.contains(&format!("nonce {nonce} is already used")) && e.contains("sign a new"),
            "{e}"
        );
    }

    // 3. The consortium keeps committing, and agrees.
    let h1 = apis.iter().map(|a| height(a)).max().unwrap();
    wait_until("three more blocks on every node", 60, || {
        apis.iter().all(|a| height(a) >= h1 + 3)
    });
    let first = block_hash_at(&apis[0], h1 + 2);
    assert!(first.is_some());
    for a in &apis {
        assert_eq!(block_hash_at(a, h1 + 2), first, "{a} disagrees");
    }

    // 4. Nothing applied twice: a fresh deposit (the CLI takes the next
    //    nonce) applies, and the books hold exactly the two good deposits.
    let out = deposit_ok(&bank.api, &disburser, "1.00", &["--wait"]);
    assert!(out.contains("applied"), "{out}");
    let hd = apis.iter().map(|a| height(a)).max().unwrap();
    wait_until("every node at the last deposit", 60, || {
        apis.iter().all(|a| height(a) >= hd)
    });
    for a in &apis {
        assert_eq!(deposited(a), 10_100, "at {a}");
    }

    // 5. Two transactions behind a nonce gap wait; they do not make the
    //    leader propose faster than its empty-block pace.
    let count_blocks = |ms: u64| {
        let a = height(&bank.api);
        sleep_ms(ms);
        height(&bank.api) - a
    };
    let before = count_blocks(5_000);
    let next = nonce + 2; // the rejected one and the good one used two
    for k in [10u64, 11] {
        let (_, _, gapped) = signed_deposit(&bank.api, &disburser, "1.00", Some(next + k));
        let (code, v) = post(&bank.api, "/v1/txs", &json!({ "tx": gapped }));
        assert_eq!(code, 202, "a gapped tx waits in the pool: {v}");
    }
    let after = count_blocks(5_000);
    assert!(
        after <= before + 4,
        "two gapped transactions raised the block rate: {before} blocks in 5 s, then {after}"
    );
    let pool = get(&bank.api, "/v1/status").unwrap()["mempool_txs"]
        .as_u64()
        .unwrap();
    assert!(pool >= 2, "the gapped transactions are still pending");

    // 6. No node stopped, and the auditor's replay of a node's data passes.
    for o in &all {
        assert!(get(&o.api, "/v1/status").is_some(), "{} stopped", o.id);
        let log = std::fs::read_to_string(o.home.join("node.log")).unwrap_or_default();
        assert!(
            !log.contains("stopped on a fatal error"),
            "{} logged a fatal error",
            o.id
        );
    }
    let audit = by_id("audit-office");
    let out = run_ok(&[
        "audit",
        "replay",
        "--home",
        audit.home.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true, "{out}");
    // The slow clients were cut off by the header timeout.
    let waited = slow_started.elapsed();
    if waited < Duration::from_secs(33) {
        std::thread::sleep(Duration::from_secs(33) - waited);
    }
    let open = slow.into_iter().filter(still_open).count();
    assert_eq!(
        open, 0,
        "{open} of 300 slow clients still held after the header timeout"
    );
    // And counted, as were the two 413s.
    let metrics = agent()
        .get(&format!("{}/metrics", apis[0]))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert!(value("aidledger_api_header_timeouts_total") >= 300);
    assert!(value("aidledger_api_payload_too_large_total") >= 2);
}

fn log_of(home: &Path) -> String {
    std::fs::read_to_string(home.join("node.log")).unwrap_or_default()
}

#[test]
fn a_validator_that_lost_its_safety_state_abstains_then_rejoins() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = Testnet::up();
    let all = net.orgs();
    let apis: Vec<String> = all.iter().map(|o| o.api.clone()).collect();
    wait_until("every node past height 3", 90, || {
        apis.iter().all(|a| height(a) >= 3)
    });
    let text_of = |path: &Path| std::fs::read_to_string(path).unwrap();
    let testnet: Value = serde_json::from_str(&text_of(&net.dir.join("testnet.json"))).unwrap();
    let leader = get(&apis[0], "/v1/status").unwrap()["leader"]
        .as_str()
        .unwrap()
        .to_string();
    let victim_id = testnet["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["validator"] == true && o["id"] != leader.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = all.iter().find(|o| o.id == victim_id).unwrap().clone();

    // Stop it, and take away its safety state but not its blocks.
    let pid = pid_of(&victim.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    let tip = {
        use aidledger_storage::{keys, Cf, RocksStore, Store};
        let store = RocksStore::open(victim.home.join("data")).unwrap();
        assert!(store.safety_state().unwrap().is_some());
        store.raw_delete(Cf::Safety, keys::SAFETY).unwrap();
        store.head().unwrap().unwrap().height
    };
    assert!(tip >= 3);

    // Restarted, it says why it abstains and follows the chain by sync.
    run_ok(&["testnet", "up", "--dir", net.d()]);
    let want = format!(
        "not voting until the consortium has committed height {}",
        tip + 1
    );
    wait_until("the abstention in the log", 60, || {
        log_of(&victim.home).contains(&want)
    });
    let others: Vec<&str> = all
        .iter()
        .filter(|o| o.id != victim_id)
        .map(|o| o.api.as_str())
        .collect();
    let h = others.iter().map(|a| height(a)).max().unwrap();
    wait_until("the others commit on, the victim follows", 90, || {
        height(&victim.api) >= h + 3 && others.iter().all(|a| height(a) >= h + 3)
    });
    wait_until("the victim votes again", 60, || {
        log_of(&victim.home).contains("voting again")
    });
    // It takes part again: with the victim back, one more validator down
    // still leaves a quorum only if the victim votes. Stop another
    // non-leader validator and the chain must go on.
    let leader_now = get(&apis[0], "/v1/status").unwrap()["leader"]
        .as_str()
        .unwrap()
        .to_string();
    let second = testnet["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| {
            o["validator"] == true
                && o["id"] != leader_now.as_str()
                && o["id"] != victim_id.as_str()
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = all.iter().find(|o| o.id == second).unwrap().clone();
    signal(pid_of(&second.home), "-TERM");
    let h2 = height(&victim.api);
    wait_until(
        "three validators, the victim among them, commit",
        90,
        || height(&victim.api) >= h2 + 3,
    );
    let first = block_hash_at(&victim.api, h2 + 2);
    for o in all.iter().filter(|o| o.id != second.id) {
        wait_until("each running node reaches the height", 60, || {
            height(&o.api) >= h2 + 2
        });
        assert_eq!(block_hash_at(&o.api, h2 + 2), first, "{} disagrees", o.id);
        assert!(
            !log_of(&o.home).contains("stopped on a fatal error"),
            "{}",
            o.id
        );
    }
}
