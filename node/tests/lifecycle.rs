#![allow(clippy::unwrap_used)]
//! The README's main job and the fault drills, end to end with real
//! `aidledger` processes on 127.0.0.1, at CI size:
//! * `aidledger testnet demo` runs the whole fund lifecycle and the
//!   auditor's replay, and exits 0;
//! * `aidledger testnet drill` kills, pauses and partitions validators
//!   under load and finds no lost transaction, fork or broken invariant.
//!
//! Each test lays out its own testnet in a temporary directory on free
//! ports and stops its nodes when it ends, pass or fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_aidledger");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("AIDLEDGER_NODE")
        .env_remove("AIDLEDGER_HOME")
        .output()
        .expect("run aidledger")
}

/// Stops the testnet's nodes when dropped.
struct Testnet {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Testnet {
    fn new() -> Testnet {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("net");
        Testnet { dir, _tmp: tmp }
    }
    fn d(&self) -> &str {
        self.dir.to_str().unwrap()
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        if self.dir.join("testnet.json").exists() {
            let _ = run(&["testnet", "down", "--dir", self.d()]);
        }
    }
}

fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let log = e.path().join("node.log");
        if let Ok(t) = std::fs::read_to_string(&log) {
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            out.push_str(&format!("--- {} (last lines)\n", log.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn last_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn demo_runs_the_whole_fund_lifecycle() {
    let net = Testnet::new();
    let out = run(&[
        "--output",
        "json",
        "testnet",
        "demo",
        "--dir",
        net.d(),
        "--date-delay",
        "20",
        "--period",
        "8",
    ]);
    assert!(
        out.status.success(),
        "demo failed:\nstdout: {}\nstderr: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        logs(&net.dir)
    );
    let r = last_json(&out);
    assert_eq!(r["ok"], true);
    assert_eq!(r["steps"].as_array().unwrap().len(), 10, "{r}");
    let b = &r["balances"];
    assert_eq!(b["deposited"].as_u64(), Some(20_000_000));
    assert_eq!(b["released"].as_u64(), Some(12_300_000));
    assert_eq!(b["settled"].as_u64(), Some(12_000_000));
    assert_eq!(b["available"].as_u64(), Some(7_700_000));
    // Every step acted through more than one organisation's node.
    let nodes: std::collections::BTreeSet<String> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["node"].as_str().map(str::to_string))
        .collect();
    assert!(nodes.len() >= 5, "steps went through {nodes:?}");

    // Run it again in the same directory: it reuses the consortium.
    let again = run(&[
        "--output",
        "json",
        "testnet",
        "demo",
        "--dir",
        net.d(),
        "--date-delay",
        "10",
        "--period",
        "6",
        "--stop",
    ]);
    assert!(
        again.status.success(),
        "second demo failed:\nstderr: {}\n{}",
        String::from_utf8_lossy(&again.stderr),
        logs(&net.dir)
    );
}

#[test]
fn drills_lose_nothing_and_never_fork() {
    let net = Testnet::new();
    let init = run(&["testnet", "init", "--dir", net.d()]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let out = run(&[
        "--output",
        "json",
        "testnet",
        "drill",
        "--dir",
        net.d(),
        "--rate",
        "20",
        "--duration",
        "45",
        "--kills",
        "2",
        "--seed",
        "7",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drill failed:\nstdout: {text}\nstderr: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs(&net.dir)
    );
    let r = last_json(&out);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["tx_lost"].as_u64(), Some(0));
    assert_eq!(r["tx_duplicated"].as_u64(), Some(0));
    assert!(r["drills_run"].as_u64().unwrap() >= 4, "{r}");
    assert!(r["tx_acknowledged"].as_u64().unwrap() > 100, "{r}");
    assert!(r["heights_compared"].as_u64().unwrap() > 5, "{r}");
}
