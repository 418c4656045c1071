#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1: issue 15's
//! flood of bad signatures against the leader, through `aidledger bench
//! flood`, beside a probe that commits legitimate transactions through
//! another validator (ADR 016).
//!
//! What must hold, whatever the machine's speed:
//! - every probe commits, during the flood too;
//! - no forged transaction is admitted;
//! - the flood's refusals and the node's counters agree: every `503 busy`
//!   the flooders saw is in the leader's `aidledger_admission_busy_total`;
//! - a resent forgery is refused before any signature work, with the same
//!   reason, and a `503` carries `Retry-After`.
//!
//! Figures (latency with and without the flood, view changes) are for
//! `docs/benchmarks.md`, not assertions here.

mod common;

use std::time::Duration;

use common::consortium::Testnet;
use common::{bin, stdout};
use serde_json::{json, Value};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(40)))
        .build()
        .into()
}

fn metric(api: &str, name: &str) -> f64 {
    common::consortium::metric(api, name).unwrap_or_else(|| panic!("no metric {name} at {api}"))
}

#[test]
fn a_flood_of_bad_signatures_at_the_leader_admits_nothing_and_every_probe_commits() {
    let t = Testnet::up();
    let status: Value = agent()
        .get(&format!("{}/v1/status", t.orgs()[0].api))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let leader = status["leader"].as_str().unwrap().to_string();
    let leader_api = t.orgs().into_iter().find(|o| o.id == leader).unwrap().api;

    let out = bin()
        .args([
            "bench",
            "flood",
            "--dir",
            t.d(),
            "--senders",
            "4",
            "--duration",
            "10",
            "--baseline",
            "3",
            "--probe-interval-ms",
            "200",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "bench flood failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    eprintln!("{r}");
    assert_eq!(r["target"], json!(leader));
    for phase in ["baseline", "flooded"] {
        assert!(r[phase]["probes"].as_u64().unwrap() > 0, "{phase}: {r}");
        assert_eq!(r[phase]["timed_out"], json!(0), "{phase}: {r}");
    }
    assert_eq!(r["flood_txs_admitted"], json!(0), "{r}");
    assert_eq!(r["flood_other_errors"], json!(0), "{r}");
    let refused = r["flood_txs_refused"].as_u64().unwrap();
    let busy = r["flood_busy_503"].as_u64().unwrap();
    assert!(refused + busy > 0, "the flood reached the node: {r}");
    assert_eq!(
        metric(&leader_api, "aidledger_admission_busy_total") as u64,
        busy,
        "every 503 the flooders saw is counted"
    );
    assert!(metric(&leader_api, "aidledger_refused_txs_total") as u64 >= refused);

    // A forgery, then the same bytes again: the second is refused at the
    // screen with the same reason (the verdict cache), which costs no
    // signature check.
    let tx = forged_deposit(&t, &leader_api);
    let submit = |api: &str| {
        let mut r = agent()
            .post(&format!("{api}/v1/txs"))
            .send_json(json!({ "tx": tx }))
            .unwrap();
        let code = r.status().as_u16();
        let body: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        (code, body)
    };
    let (c1, b1) = submit(&leader_api);
    let (c2, b2) = submit(&leader_api);
    assert_eq!((c1, c2), (422, 422), "{b1} {b2}");
    assert!(b1["detail"].as_str().unwrap().contains("signature"), "{b1}");
    assert_eq!((&b1["code"], &b1["detail"]), (&b2["code"], &b2["detail"]));
    assert_eq!(b1["code"], "bad-signature", "{b1}");
}

/// Nodes stopped in the middle of a load, with admission, gossip and
/// commits all busy, stop by themselves within `testnet down`'s grace,
/// and each closes its store before it says "stopped cleanly". No
/// admission worker, API connection or task holds the store past the
/// shutdown, so no RocksDB work is left as the process exits. A node
/// whose admission workers still held it crashed there now and then,
/// after saying it had stopped cleanly.
#[test]
fn nodes_stopped_under_load_close_their_store_before_they_say_they_stopped() {
    let mut t = Testnet::up();
    let load = bin()
        .args([
            "bench",
            "load",
            "--dir",
            t.d(),
            "--rate",
            "6000",
            "--duration",
            "60",
            "--drain",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.extra.push(load);
    let api = t.orgs()[0].api.clone();
    common::consortium::wait_until("the load commits", 90, || {
        common::consortium::metric(&api, "aidledger_committed_txs_total").unwrap_or(0.0) >= 3_000.0
    });
    t.down_cleanly();
}

/// A deposit in a real disburser's name with its next nonce, whose
/// signature has one bit of s flipped: the right shape, but it does not
/// verify.
fn forged_deposit(t: &Testnet, api: &str) -> String {
    let key = disbursers(t).remove(0);
    let nonce = nonce_of(&key, api);
    let mut tx = deposits(&key, api, nonce, nonce + 1).remove(0);
    tx.signature.0[32] ^= 1;
    hex::encode(tx.encode())
}

fn get_json(url: &str) -> Value {
    agent()
        .get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

/// The testnet's disburser keys, one per organisation that has one.
fn disbursers(t: &Testnet) -> Vec<aidledger_crypto::Keypair> {
    t.orgs()
        .iter()
        .filter_map(|o| o.clients["disburser"].as_str().map(String::from))
        .map(|f| aidledger_crypto::read_key_file(std::path::Path::new(&f)).unwrap())
        .collect()
}

/// `key`'s next nonce, as the node at `api` has it committed.
fn nonce_of(key: &aidledger_crypto::Keypair, api: &str) -> u64 {
    let key = key.public().to_hex();
    get_json(&format!("{api}/v1/accounts/{key}"))["nonce"]
        .as_u64()
        .unwrap()
}

/// Deposits signed by `key` with nonces `from..to` (to a program that
/// does not exist: the receipts are rejections, which is no matter to
/// admission).
fn deposits(
    key: &aidledger_crypto::Keypair,
    api: &str,
    from: u64,
    to: u64,
) -> Vec<aidledger_types::SignedTx> {
    let status = get_json(&format!("{api}/v1/status"));
    let chain = aidledger_types::ChainId::new(status["chain_id"].as_str().unwrap()).unwrap();
    (from..to)
        .map(|nonce| common::unfunded_deposit(key, &chain, nonce))
        .collect()
}

fn post_batch(api: &str, txs: &[String]) -> (u16, Option<String>, Value) {
    let mut r = agent()
        .post(&format!("{api}/v1/txs/batch"))
        .send_json(json!({ "txs": txs }))
        .unwrap();
    let code = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    (code, retry, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn hexes(txs: &[aidledger_types::SignedTx]) -> Vec<String> {
    txs.iter().map(|tx| hex::encode(tx.encode())).collect()
}

/// ADR 023 on real processes: with the chain stalled (two of four
/// validators stopped), a node takes an account's transactions up to its
/// backlog limit and refuses the rest with `mempool-full`; a batch from it
/// is then refused whole with 503 and `Retry-After` before any work, and
/// a single one by the core; another office's transaction still gets in;
/// once the chain moves again the backlog drains and the refused
/// transactions, resent, are taken and commit.
#[test]
fn a_stalled_chain_holds_back_the_account_that_fills_the_backlog_and_takes_it_again_once_it_moves()
{
    use common::consortium::{height, pid_of, signal, wait_exit, wait_until};
    // Above the per-account grace (16), so the floor is what binds.
    const FLOOR: usize = 20;

    let t = Testnet::up();
    let orgs = t.orgs();
    let validators: Vec<_> = orgs.iter().filter(|o| o.validator).cloned().collect();
    let x = validators[0].clone();
    // A small backlog floor on x (and blocks no bigger than it, as the
    // config requires).
    let pid = pid_of(&x.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    let config = x.home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let small = text
        .replace(
            "backlog_min_txs = 10000",
            &format!("backlog_min_txs = {FLOOR}"),
        )
        .replace("max_block_txs = 5000", &format!("max_block_txs = {FLOOR}"));
    assert_ne!(small, text, "the config names the backlog floor");
    std::fs::write(&config, small).unwrap();
    common::ok(&["testnet", "up", "--dir", t.d()]);
    let others = height(&validators[1].api);
    wait_until("x back and caught up", 120, || height(&x.api) >= others);

    // Stall the chain: two of four validators stopped.
    for o in &validators[2..4] {
        let pid = pid_of(&o.home);
        signal(pid, "-TERM");
        wait_exit(pid, 30);
    }
    assert_eq!(
        metric(&x.api, "aidledger_mempool_backlog_txs") as usize,
        FLOOR
    );
    assert_eq!(metric(&x.api, "aidledger_mempool_txs"), 0.0);

    let keys = disbursers(&t);
    assert!(keys.len() >= 2, "two offices with a disburser");
    let (heavy, light) = (&keys[0], &keys[1]);
    let n0 = nonce_of(heavy, &x.api);
    let txs = hexes(&deposits(heavy, &x.api, n0, n0 + 40));
    let (code, _, body) = post_batch(&x.api, &txs[..30]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["admitted"], json!(FLOOR), "{body}");
    for r in &body["results"].as_array().unwrap()[FLOOR..] {
        assert_eq!(r["code"], "mempool-full", "{r}");
        assert!(
            r["error"].as_str().unwrap().contains("backlog limit"),
            "{r}"
        );
    }

    // The snapshot shows the pool at its limit: the next batch is refused
    // whole, before any signature work, and tells when to retry; a single
    // transaction of the same account goes to the core, which refuses it.
    wait_until("the snapshot shows the full backlog", 10, || {
        metric(&x.api, "aidledger_mempool_txs") as usize >= FLOOR
    });
    let refused_before = metric(&x.api, "aidledger_backlog_refused_txs_total");
    let (code, retry, body) = post_batch(&x.api, &txs[FLOOR..]);
    assert_eq!(code, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(body["code"], "mempool-full", "{body}");
    let submit = |tx: &str| {
        let mut r = agent()
            .post(&format!("{}/v1/txs", x.api))
            .send_json(json!({ "tx": tx }))
            .unwrap();
        let code = r.status().as_u16();
        (code, r.body_mut().read_json::<Value>().unwrap())
    };
    let (code, b) = submit(&txs[FLOOR]);
    assert_eq!(code, 503, "{b}");
    assert_eq!(b["code"], "mempool-full", "{b}");
    assert_eq!(
        metric(&x.api, "aidledger_backlog_refused_txs_total") - refused_before,
        (txs.len() - FLOOR + 1) as f64,
        "the whole batch and the single one are counted"
    );

    // Another office submitting as it goes is not shut out.
    let n1 = nonce_of(light, &x.api);
    let other = hexes(&deposits(light, &x.api, n1, n1 + 1));
    let (code, b) = submit(&other[0]);
    assert_eq!(code, 202, "{b}");

    // The chain moves again: the backlog drains, and the refused
    // transactions, resent, are taken and commit.
    common::ok(&["testnet", "up", "--dir", t.d()]);
    wait_until("x's backlog drains", 120, || {
        metric(&x.api, "aidledger_mempool_txs") == 0.0
    });
    let (code, _, body) = post_batch(&x.api, &txs[FLOOR..]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["admitted"], json!(txs.len() - FLOOR), "{body}");
    let last = body["results"][txs.len() - FLOOR - 1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("the last resent transaction commits", 120, || {
        common::consortium::api_get(&x.api, &format!("/v1/txs/{last}"))
            .is_some_and(|v| v["status"] == "committed")
    });
}
