//! Smoke test of `aidledger bench suite`: only its in-process parts (the
//! machine's limits, the replay of a small synthetic chain, execution with
//! few and more households, snapshot join against replay join), at tiny
//! sizes, so it runs in seconds. The testnet part is exercised by running
//! the suite itself.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use serde_json::Value;

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what} = {x}");
    x
}

#[test]
fn bench_suite_in_process_parts_report_positive_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("suite.json");
    let o = common::bin()
        .args([
            "bench",
            "suite",
            "--only",
            "limits,replay,households,join",
            "--tiny",
            "--output",
            "json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bench suite failed:\n{}\n{}",
        common::stdout(&o),
        common::stderr(&o)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    // The last line of stdout is the same document.
    let stdout = common::stdout(&o);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["rows"], doc["rows"]);
    assert_eq!(
        doc["errors"].as_array().unwrap().len(),
        0,
        "{}",
        doc["errors"]
    );

    let l = &doc["parts"]["limits"];
    for k in [
        "verify_single_per_core",
        "verify_batch_per_core",
        "verify_batch_all_cores",
        "sha256_mb_s",
        "sha256_1k_msgs_s",
        "rocks_batch_commits_s",
        "rocks_batch_mb_s",
        "rocks_small_synced_writes_s",
    ] {
        positive(&l[k], k);
    }
    let runs = doc["parts"]["replay"]["runs"].as_array().unwrap();
    assert!(!runs.is_empty());
    for r in runs {
        positive(&r["tx_per_s"], "replay tx/s");
        positive(&r["ratio_to_batch_verify"], "replay ratio");
        assert!(r["txs"].as_u64().unwrap() >= 3_000);
    }
    let hh = doc["parts"]["households"]["runs"].as_array().unwrap();
    assert_eq!(hh.len(), 2);
    for r in hh {
        positive(&r["tx_per_s"], "households tx/s");
        assert!(r["entitlement_payments"].as_u64().unwrap() > 0, "{r}");
    }
    assert!(doc["parts"]["households"]["loss_pct"].is_number());
    // Snapshot join against replay join: the installed state's root was
    // checked against the chain's by the suite itself.
    let j = &doc["parts"]["join"];
    assert!(j["chain_txs"].as_u64().unwrap() >= 3_000, "{j}");
    assert!(j["households"].as_u64().unwrap() >= 1_000, "{j}");
    assert!(j["chunks"].as_u64().unwrap() >= 1, "{j}");
    positive(&j["replay_s"], "replay join s");
    positive(&j["snapshot_join_s"], "snapshot join s");
    // Every row with a bound has its ratio.
    for row in doc["rows"].as_array().unwrap() {
        let metric = row["metric"].as_str().unwrap();
        if metric.contains("loss") {
            continue; // the loss may be zero or negative
        }
        positive(&row["value"], metric);
        if row["bound"] != "(this is a limit)" && row["bound"] != "-" {
            positive(&row["ratio"], metric);
        }
    }
    assert!(doc["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(doc["parts"].get("testnet").is_none());
}

/// A validator count outside 4 to 7 is refused before anything runs.
#[test]
fn bench_suite_refuses_a_validator_count_outside_four_to_seven() {
    for bad in ["3", "8", "0", "-1", "four"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("suite.json");
        let o = common::bin()
            .args(["bench", "suite", "--only", "testnet", "--validators", bad])
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "--validators {bad}");
        // "-1" reads as an unknown flag; either way the error names what
        // was wrong.
        let err = common::stderr(&o);
        assert!(
            err.contains("--validators") || err.contains(&format!("'{bad}'")),
            "--validators {bad}: {err}"
        );
        assert!(!out.exists(), "--validators {bad} wrote a result");
    }
}
