#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1: issue 15's
//! bad-input matrix. Each row sends one bad input through one entry point
//! (the single and batch submit routes, the admin route, reads, the CLI, a
//! node's config, a damaged store) and checks the answer's status, code
//! and message. Afterwards nothing bad was admitted, and every node agrees
//! on the chain it keeps committing.
//!
//! Rows tested elsewhere on real processes: slow-header clients
//! (`e2e_trust.rs`), bad-signature floods (`e2e_flood.rs`), handshakes that
//! never finish (aidledger-network's tests), and outsiders' connections
//! (`e2e_consortium.rs`).

mod common;

use std::path::Path;
use std::time::Duration;

use aidledger_crypto::{read_key_file, Keypair};
use aidledger_types::{ChainId, SignedTx};
use common::consortium::{pid_of, signal, wait_exit, wait_until, Org, Testnet};
use common::{bin, run, stderr};
use serde_json::{json, Value};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(40)))
        .build()
        .into()
}

/// Status, code and detail of an answer (empty when not an error). Every
/// error is a problem (RFC 9457, ADR 019) whose status is the answer's.
fn answer(mut r: ureq::http::Response<ureq::Body>) -> (u16, String, String, Value) {
    let status = r.status().as_u16();
    let media = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = v["code"].as_str().unwrap_or_default().to_string();
    let error = v["detail"].as_str().unwrap_or_default().to_string();
    if status >= 400 {
        assert_eq!(media, "application/problem+json", "{status}: {text}");
        assert_eq!(v["status"], json!(status), "{text}");
        assert_eq!(v["type"], json!(format!("/v1/problems#{code}")), "{text}");
        assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{text}");
    }
    (status, code, error, v)
}

fn post_raw(api: &str, path: &str, body: &str) -> (u16, String, String, Value) {
    answer(
        agent()
            .post(&format!("{api}{path}"))
            .header("content-type", "application/json")
            .send(body)
            .unwrap(),
    )
}

/// A request head declaring a `len`-byte body, and no body: the answer
/// must come from the declared length alone.
fn declared(api: &str, path: &str, len: u64) -> (u16, String, String, Value) {
    use std::io::{Read, Write};
    let addr = api.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = v["code"].as_str().unwrap_or_default().to_string();
    let error = v["detail"].as_str().unwrap_or_default().to_string();
    (status, code, error, v)
}

#[allow(clippy::disallowed_methods)] // a row checks that a wait was waited
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn get(api: &str, path: &str) -> (u16, String, String, Value) {
    answer(agent().get(&format!("{api}{path}")).call().unwrap())
}

/// One row: the answer must have this status and code, and its error text
/// must contain `needle`.
#[track_caller]
fn expect(row: &str, got: (u16, String, String, Value), status: u16, code: &str, needle: &str) {
    let (s, c, e, v) = got;
    assert_eq!((s, c.as_str()), (status, code), "{row}: got {s} {c}: {v}");
    assert!(e.contains(needle), "{row}: {e:?} lacks {needle:?}");
    // Never a data path or a library's text.
    assert!(!e.contains("/data/") && !e.contains(".sst"), "{row}: {e}");
}

struct Signer {
    key: Keypair,
    chain: ChainId,
    nonce: u64,
}

fn signer(t: &Testnet, api: &str, role: &str) -> Signer {
    let path = t
        .orgs()
        .iter()
        .find_map(|o| o.clients[role].as_str().map(String::from))
        .unwrap();
    let key = read_key_file(Path::new(&path)).unwrap();
    let chain = ChainId::new(get(api, "/v1/status").3["chain_id"].as_str().unwrap()).unwrap();
    let nonce = get(api, &format!("/v1/accounts/{}", key.public().to_hex())).3["nonce"]
        .as_u64()
        .unwrap();
    Signer { key, chain, nonce }
}

fn deposit(s: &Signer, chain: &ChainId, nonce: u64) -> SignedTx {
    common::unfunded_deposit(&s.key, chain, nonce)
}

fn submit(api: &str, tx: &SignedTx) -> (u16, String, String, Value) {
    post_raw(
        api,
        "/v1/txs",
        &json!({ "tx": hex::encode(tx.encode()) }).to_string(),
    )
}

fn height(api: &str) -> u64 {
    get(api, "/v1/status").3["height"].as_u64().unwrap_or(0)
}

fn block_hash(api: &str, h: u64) -> Option<String> {
    let (s, _, _, v) = get(api, &format!("/v1/blocks/{h}"));
    (s == 200).then(|| v["hash"].as_str().unwrap_or_default().to_string())
}

/// The node's `/metrics`, as text.
fn metrics_text(api: &str) -> String {
    agent()
        .get(&format!("{api}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// `promtool check metrics` on a live node's `/metrics`: every metric has
/// help text, counters are counters. Skipped, with a notice, where
/// promtool is absent (`scripts/prereqs.sh promtool` installs it).
fn promtool_finds_nothing(api: &str) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("NOTICE: promtool is absent; skipping the metrics lint");
        return;
    };
    let text = metrics_text(api);
    assert!(text.contains("aidledger_net_gossip_in_total"), "{text}");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

#[test]
fn every_bad_input_gets_a_clear_answer_and_changes_nothing() {
    let t = Testnet::up();
    let all = t.orgs();
    let api = all[0].api.clone();
    wait_until("height 1", 60, || height(&api) >= 1);

    // --- The single submit route ---
    expect(
        "not JSON",
        post_raw(&api, "/v1/txs", "tx=1"),
        400,
        "bad-request",
        "",
    );
    expect(
        "not declared as JSON",
        answer(
            agent()
                .post(&format!("{api}/v1/txs"))
                .header("content-type", "text/plain")
                .send(r#"{"tx": "00"}"#)
                .unwrap(),
        ),
        415,
        "unsupported-media-type",
        "application/json",
    );
    expect(
        "wrong JSON type",
        post_raw(&api, "/v1/txs", r#"{"tx": 5}"#),
        400,
        "bad-request",
        "tx",
    );
    expect(
        "not hex",
        post_raw(&api, "/v1/txs", r#"{"tx": "zz"}"#),
        400,
        "bad-request",
        "hex",
    );
    expect(
        "not a transaction",
        post_raw(&api, "/v1/txs", r#"{"tx": "00ff"}"#),
        400,
        "bad-request",
        "tx:",
    );
    expect(
        "a declared body over the route's limit",
        declared(&api, "/v1/txs", 300 * 1024),
        413,
        "payload-too-large",
        "limit",
    );

    let disburser = signer(&t, &api, "disburser");
    let chain = disburser.chain.clone();
    let mut forged = deposit(&disburser, &chain, disburser.nonce);
    forged.signature.0[32] ^= 1;
    expect(
        "bad signature",
        submit(&api, &forged),
        422,
        "bad-signature",
        "signature is invalid",
    );
    expect(
        "the same bad signature again",
        submit(&api, &forged),
        422,
        "bad-signature",
        "signature is invalid",
    );
    let other_chain = ChainId::new("another-chain").unwrap();
    expect(
        "another chain",
        submit(&api, &deposit(&disburser, &other_chain, disburser.nonce)),
        422,
        "wrong-chain",
        "another-chain",
    );
    let stranger = Signer {
        key: Keypair::generate(),
        chain: chain.clone(),
        nonce: 0,
    };
    expect(
        "unknown account",
        submit(&api, &deposit(&stranger, &chain, 0)),
        422,
        "unknown-account",
        "unknown account",
    );
    let registrar = signer(&t, &api, "registrar");
    expect(
        "a role that may not deposit",
        submit(&api, &deposit(&registrar, &chain, registrar.nonce)),
        422,
        "role-not-allowed",
        "role not allowed",
    );
    expect(
        "nonce far ahead",
        submit(
            &api,
            &deposit(&disburser, &chain, disburser.nonce + 1_000_000),
        ),
        422,
        "nonce-too-high",
        "too far ahead",
    );

    // --- The batch route ---
    let many: Vec<String> = vec![String::new(); 2_001];
    expect(
        "2,001 transactions",
        post_raw(&api, "/v1/txs/batch", &json!({ "txs": many }).to_string()),
        400,
        "bad-request",
        "2000",
    );
    let (s, _, _, v) = post_raw(
        &api,
        "/v1/txs/batch",
        &json!({ "txs": [hex::encode(forged.encode()), "zz", ""] }).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["admitted"], json!(0), "{v}");
    let errs: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap_or_default())
        .collect();
    assert!(errs[0].contains("signature is invalid"), "{errs:?}");
    assert!(errs[1].contains("hex") && !errs[2].is_empty(), "{errs:?}");
    let codes: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        codes,
        ["bad-signature", "bad-request", "bad-request"],
        "{v}"
    );
    expect(
        "a declared body over 16 MiB",
        declared(&api, "/v1/txs/batch", 17 << 20),
        413,
        "payload-too-large",
        "limit",
    );

    // --- Reads and routes ---
    expect(
        "height not a number",
        get(&api, "/v1/blocks/abc"),
        400,
        "bad-request",
        "",
    );
    expect(
        "a block not yet made",
        get(&api, "/v1/blocks/99999999"),
        404,
        "not-found",
        "",
    );
    for (row, path, needle) in [
        (
            "a wait that is not a number",
            "/v1/blocks/1?wait_ms=soon",
            "wait_ms",
        ),
        ("a negative wait", "/v1/blocks/1?wait_ms=-1", "wait_ms"),
        (
            "a wait over the most",
            "/v1/blocks/1?wait_ms=60001",
            "0 to 60000",
        ),
    ] {
        expect(row, get(&api, path), 400, "bad-request", needle);
    }
    // A wait for a block that does not come ends with the same 404, after
    // the wait and not before it; a committed block is answered at once.
    let t0 = now();
    expect(
        "a block not made within the wait",
        get(&api, "/v1/blocks/99999999?wait_ms=300"),
        404,
        "not-found",
        "",
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    // (Were it to wait, the agent's 40 s timeout would fail the call.)
    assert_eq!(get(&api, "/v1/blocks/1?wait_ms=60000").0, 200);
    expect("a bad id", get(&api, "/v1/txs/xyz"), 400, "bad-request", "");
    expect(
        "no such route",
        get(&api, "/v1/nope"),
        404,
        "not-found",
        "/v1/nope",
    );
    expect(
        "a path that is not UTF-8",
        get(&api, "/v1/orgs/%FF%FE"),
        400,
        "bad-request",
        "",
    );
    expect(
        "a method the route does not take",
        answer(agent().delete(&format!("{api}/v1/status")).call().unwrap()),
        405,
        "method-not-allowed",
        "DELETE",
    );

    // --- Pages (ADR 019) ---
    for (row, path, code, needle) in [
        ("limit 0", "/v1/orgs?limit=0", "bad-limit", "1 to 1000"),
        (
            "limit over the most",
            "/v1/orgs?limit=1001",
            "bad-limit",
            "1000",
        ),
        (
            "limit not a number",
            "/v1/orgs?limit=abc",
            "bad-request",
            "limit",
        ),
        (
            "a cursor not hex",
            "/v1/programs?after=zz",
            "bad-cursor",
            "hex",
        ),
        (
            "another list's cursor",
            &format!("/v1/programs?after={}", hex::encode(b"org/state-bank")),
            "bad-cursor",
            "this list",
        ),
        (
            "a cursor too long",
            &format!("/v1/anomalies?after={}", "ab".repeat(5000)),
            "bad-cursor",
            "long",
        ),
        (
            "a trace cursor of the wrong shape",
            "/v1/programs/some-fund/trace?after=-",
            "bad-cursor",
            "trace",
        ),
        (
            "a household trace cursor of another trace's shape",
            "/v1/households/0000000000000000000000000000000000000000000000000000000000000000/trace?after=-.-.-",
            "bad-cursor",
            "trace",
        ),
        (
            "a household trace page over the limit",
            "/v1/households/0000000000000000000000000000000000000000000000000000000000000000/trace?limit=1001",
            "bad-limit",
            "",
        ),
        // The explorer's reads (ADR 021).
        (
            "a block page over 100",
            "/v1/blocks?limit=101",
            "bad-limit",
            "100",
        ),
        (
            "a block cursor of 0",
            "/v1/blocks?after=0",
            "bad-cursor",
            "height",
        ),
        (
            "a block cursor past u64",
            "/v1/blocks?after=99999999999999999999",
            "bad-cursor",
            "height",
        ),
        (
            "a block cursor not a number",
            "/v1/blocks?after=ff",
            "bad-cursor",
            "height",
        ),
        (
            "a plan page over 20",
            "/v1/programs/some-fund/plans?limit=21",
            "bad-limit",
            "1 to 20",
        ),
        (
            "an application filter that is no program id",
            "/v1/applications?program=Not%20A%20Slug",
            "bad-request",
            "",
        ),
        (
            "a region report with no code",
            "/v1/reports/region",
            "bad-request",
            "code",
        ),
        (
            "a region code that climbs",
            "/v1/reports/region?code=../../etc",
            "bad-request",
            "",
        ),
        (
            "a payment proof with no period",
            "/v1/proofs/payment?household=00&program=some-fund",
            "bad-request",
            "period",
        ),
        (
            "a payment proof for a household id that is not 64 hex",
            "/v1/proofs/payment?household=zz&program=some-fund&period=1",
            "bad-request",
            "household",
        ),
        (
            "a payment proof for a period past u32",
            "/v1/proofs/payment?household=0000000000000000000000000000000000000000000000000000000000000000&program=some-fund&period=4294967296",
            "bad-request",
            "period",
        ),
        (
            "a payment proof with an unknown parameter",
            "/v1/proofs/payment?household=0000000000000000000000000000000000000000000000000000000000000000&program=some-fund&period=1&amount=9",
            "bad-request",
            "amount",
        ),
        (
            "a payment proof QR code for a program id that is no slug",
            "/v1/proofs/payment/qr.svg?household=0000000000000000000000000000000000000000000000000000000000000000&program=Not%20A%20Slug&period=1",
            "bad-request",
            "program",
        ),
    ] {
        expect(row, get(&api, path), 400, code, needle);
    }
    expect(
        "a payment proof of a payment never made",
        get(
            &api,
            "/v1/proofs/payment?household=0000000000000000000000000000000000000000000000000000000000000000&program=no-such-fund&period=1",
        ),
        404,
        "not-found",
        "no-such-fund",
    );
    expect(
        "the plans of a program that does not exist",
        get(&api, "/v1/programs/no-such-fund/plans"),
        404,
        "not-found",
        "no-such-fund",
    );
    // The explorer is served with its policy, and its script names no
    // other origin (the unit test reads the files; this reads the wire).
    let page = agent().get(&format!("{api}/")).call().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // Pages of one organisation join to the whole list.
    let whole = get(&api, "/v1/orgs?limit=1000").3;
    assert!(whole["next"].is_null(), "{whole}");
    let mut joined = Vec::new();
    let mut path = "/v1/orgs?limit=1".to_string();
    for _ in 0..50 {
        let v = get(&api, &path).3;
        joined.extend(v["items"].as_array().unwrap().clone());
        match v["next"].as_str() {
            Some(c) => path = format!("/v1/orgs?limit=1&after={c}"),
            None => break,
        }
    }
    assert_eq!(&joined, whole["items"].as_array().unwrap());
    // The served OpenAPI document is the generated one (its own tests
    // validate it and walk every route against it).
    let (s, _, _, doc) = get(&api, "/v1/openapi.json");
    assert_eq!(s, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    assert!(
        doc["paths"]["/v1/programs/{id}/trace"]["get"]["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "after")),
        "the program trace's page parameters are documented"
    );
    // The memory gauges: the process's resident set, and the store's
    // memtables (never empty: an empty memtable holds its arena).
    let text = metrics_text(&api);
    let gauge = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert!(gauge("aidledger_resident_bytes") > 10e6, "{text}");
    assert!(gauge("aidledger_store_memtable_bytes") > 0.0, "{text}");
    gauge("aidledger_store_block_cache_bytes");
    gauge("aidledger_store_table_readers_bytes");
    // The metrics pass Prometheus's own lint.
    promtool_finds_nothing(&api);
    // Every code the API answers with is documented.
    let (s, _, _, problems) = get(&api, "/v1/problems");
    assert_eq!(s, 200);
    for code in [
        "nonce-too-low",
        "role-not-allowed",
        "already-included",
        "rate-limited",
    ] {
        assert!(
            problems
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["code"] == code),
            "{code}: {problems}"
        );
    }
    let (s, _, _, v) = get(&api, &format!("/v1/txs/{}", forged.id().to_hex()));
    assert_eq!((s, v["status"].as_str()), (200, Some("unknown")), "{v}");

    // --- The admin route (on in a testnet) ---
    let isolate = |token: Option<&str>| {
        let mut req = agent().post(&format!("{api}/v1/admin/isolate"));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        answer(req.send_json(json!({ "isolated": true })).unwrap())
    };
    expect(
        "admin, no token",
        isolate(None),
        401,
        "unauthorized",
        "token",
    );
    expect(
        "admin, a wrong token",
        isolate(Some("00")),
        401,
        "unauthorized",
        "token",
    );

    // --- The CLI ---
    let key = all[0].clients["disburser"].as_str().unwrap().to_string();
    let out = run(&[
        "tx",
        "deposit",
        "--node",
        &api,
        "--key",
        &key,
        "--program",
        "p",
        "--amount",
        "abc",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("amount"), "{}", stderr(&out));
    let out = run(&["query", "status", "--node", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("127.0.0.1:9"), "{}", stderr(&out));

    // --- A node's config, and a damaged store, on the audit office's node ---
    let observer: Org = all.iter().find(|o| !o.validator).unwrap().clone();
    wait_until("the observer holds block 2", 60, || {
        height(&observer.api) >= 2
    });
    let pid = pid_of(&observer.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    let config = observer.home.join("config.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    let start = || {
        bin()
            .args(["node", "run", "--home", observer.home.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let small_lane = good.replace("lane_txs = 4096", "lane_txs = 10");
    assert_ne!(small_lane, good, "the config names admission.lane_txs");
    std::fs::write(&config, small_lane).unwrap();
    let out = start();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("admission.lane_txs"),
        "{}",
        stderr(&out)
    );
    let psk = observer.home.join("keys/consortium.psk");
    std::fs::write(&psk, format!("{}\n", "ab".repeat(32))).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let with_psk = good.replacen(
        "[network]\n",
        &format!("[network]\npsk_file = \"{}\"\n", psk.display()),
        1,
    );
    assert_ne!(with_psk, good, "the config has a [network] section");
    std::fs::write(&config, with_psk).unwrap();
    let out = start();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    std::fs::write(&config, &good).unwrap();
    std::fs::remove_file(&psk).unwrap();
    // node.org naming another organisation than the key's.
    let own = format!("org = \"{}\"", observer.id);
    let other = all.iter().find(|o| o.id != observer.id).unwrap();
    let wrong_org = good.replacen(&own, &format!("org = \"{}\"", other.id), 1);
    assert_ne!(wrong_org, good, "the config names the node's organisation");
    std::fs::write(&config, wrong_org).unwrap();
    let out = start();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("belongs to {} in the node registry", observer.id)),
        "{}",
        stderr(&out)
    );
    std::fs::write(&config, &good).unwrap();

    // A damaged block 1 (one byte more) and a damaged account record.
    let account_key = aidledger_contracts::keys::account(&disburser.key.public());
    {
        use aidledger_storage::{keys, Cf, RocksStore};
        let store = RocksStore::open(observer.home.join("data")).unwrap();
        let mut b = store
            .raw_get(Cf::Blocks, &keys::height(1))
            .unwrap()
            .unwrap();
        b.push(0);
        store.raw_put(Cf::Blocks, &keys::height(1), &b).unwrap();
        let mut a = store.raw_get(Cf::State, &account_key).unwrap().unwrap();
        a.truncate(a.len() / 2);
        store.raw_put(Cf::State, &account_key, &a).unwrap();
    }
    let up = run(&["testnet", "up", "--dir", t.d()]);
    assert!(
        up.status.success(),
        "the damaged node did not start: {}",
        std::fs::read_to_string(observer.home.join("node.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let obs = observer.api.clone();
    wait_until("the damaged node answers", 60, || {
        agent().get(&format!("{obs}/health")).call().is_ok()
    });
    for path in [
        "/v1/blocks/1".to_string(),
        format!("/v1/accounts/{}", disburser.key.public().to_hex()),
    ] {
        let (s, c, e, v) = get(&obs, &path);
        assert_eq!((s, c.as_str()), (500, "internal"), "{path}: {v}");
        assert!(e.starts_with("internal error "), "{path}: {e}");
        assert!(
            !e.contains('/') && !e.to_lowercase().contains("corrupt"),
            "{path}: the client sees an id only: {e}"
        );
        let id = e
            .trim_start_matches("internal error ")
            .split(':')
            .next()
            .unwrap()
            .to_string();
        let log = std::fs::read_to_string(observer.home.join("node.log")).unwrap();
        assert!(log.contains(&id), "{path}: the log has error {id}");
    }
    // The damage is the node's own; an undamaged node answers.
    assert_eq!(get(&api, "/v1/blocks/1").0, 200);

    // --- Afterwards: the consortium commits, and agrees on its chain ---
    let validators: Vec<String> = all
        .iter()
        .filter(|o| o.validator)
        .map(|o| o.api.clone())
        .collect();
    let h0 = validators.iter().map(|a| height(a)).max().unwrap();
    wait_until("three more blocks everywhere", 90, || {
        validators.iter().all(|a| height(a) >= h0 + 3)
    });
    let h = h0 + 3;
    let first = block_hash(&validators[0], h).unwrap();
    for a in &validators {
        assert_eq!(
            block_hash(a, h).as_deref(),
            Some(first.as_str()),
            "{a} at {h}"
        );
    }
    wait_until("the damaged observer follows", 90, || height(&obs) >= h);
    assert_eq!(block_hash(&obs, h).as_deref(), Some(first.as_str()));
    // Nothing bad was admitted: the disburser's nonce has not moved.
    assert_eq!(
        get(
            &api,
            &format!("/v1/accounts/{}", disburser.key.public().to_hex())
        )
        .3["nonce"]
            .as_u64(),
        Some(disburser.nonce)
    );
}
