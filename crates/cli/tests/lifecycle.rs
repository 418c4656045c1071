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

mod common;
#[path = "lifecycle/explorer.rs"]
mod explorer;

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

fn home_of(dir: &Path, org: &str) -> PathBuf {
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    let o = t["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == org)
        .unwrap();
    PathBuf::from(o["home"].as_str().unwrap())
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "aidledger {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The auditor's tools on the chain the live consortium produced: replay
/// of a running node's data and of an exported file, a flipped byte in the
/// file caught, the report, and the exports (IATI checked against the
/// official 2.03 schema when `../shared` and xmllint are present).
fn audit_the_live_chain(dir: &Path) {
    let bank = home_of(dir, "state-bank");
    let b = bank.to_str().unwrap();
    let r = last_json(&ok(&["--output", "json", "audit", "replay", "--home", b]));
    assert!(r.to_string().contains("blocks"), "{r}");

    let file = dir.join("chain.aidl");
    let f = file.to_str().unwrap();
    ok(&["export-blocks", "--home", b, "--out", f]);
    ok(&["audit", "replay", "--blocks", f]);
    let bytes = std::fs::read(&file).unwrap();
    for pos in [bytes.len() / 3, bytes.len() / 2, bytes.len() - 40] {
        let mut t = bytes.clone();
        t[pos] ^= 0x01;
        let bad = dir.join("tampered.aidl");
        std::fs::write(&bad, &t).unwrap();
        let out = run(&["audit", "replay", "--blocks", bad.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a flipped byte at {pos} went unnoticed"
        );
    }

    let report = last_json(&ok(&["--output", "json", "audit", "report", "--home", b]));
    let programs = report["programs"].as_array().unwrap();
    assert!(!programs.is_empty(), "{report}");
    for p in programs {
        let n = |k: &str| p[k].as_u64().unwrap_or_else(|| panic!("{k} in {p}"));
        assert_eq!(
            n("deposited"),
            n("available") + n("committed") + n("released") + n("returned"),
            "{p}"
        );
    }

    for fmt in ["json", "csv", "iati"] {
        let out = dir.join(format!("export.{fmt}"));
        ok(&[
            "audit",
            "export",
            "--home",
            b,
            "--format",
            fmt,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            std::fs::metadata(&out).unwrap().len() > 100,
            "{fmt} export is empty"
        );
    }
    let csv = std::fs::read_to_string(dir.join("export.csv")).unwrap();
    assert!(csv.lines().count() > 10, "{csv}");
    let schema = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/iati-2.03/iati-activities-schema.xsd");
    if !schema.exists() {
        eprintln!(
            "NOTICE: {} is absent; skipping the IATI schema check",
            schema.display()
        );
        return;
    }
    match Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&schema)
        .arg(dir.join("export.iati"))
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "the IATI export of the live chain is not valid IATI 2.03:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("NOTICE: xmllint not runnable ({e}); skipping the IATI schema check"),
    }
}

fn get(api: &str, path: &str) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .build()
        .into();
    let text = agent
        .get(&format!("{api}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Follows `next` from `first` (a path with a query), joining the arrays
/// `lists` of every page. Bounded in pages.
fn walk(api: &str, first: &str, lists: &[&str]) -> (Vec<Vec<Value>>, usize) {
    let mut joined = vec![Vec::new(); lists.len()];
    let mut path = first.to_string();
    for pages in 1..=500 {
        let v = get(api, &path);
        for (i, l) in lists.iter().enumerate() {
            joined[i].extend(
                v[*l]
                    .as_array()
                    .unwrap_or_else(|| panic!("{l}: {v}"))
                    .clone(),
            );
        }
        match v["next"].as_str() {
            Some(c) => path = format!("{first}&after={c}"),
            None => return (joined, pages),
        }
    }
    panic!("{first}: more than 500 pages");
}

/// Every kind of answer the live chain gives, checked against the schema
/// the node's OpenAPI document gives for it (ADR 019).
fn answers_fit_the_document(api: &str) {
    let doc = get(api, "/v1/openapi.json");
    let check = |template: &str, path: &str| -> Value {
        let v = get(api, path);
        common::openapi::conforms(&doc, "get", template, 200, &v);
        v
    };
    let mut wrong = check("/v1/status", "/v1/status");
    // The check itself catches an answer that does not fit.
    wrong["height"] = Value::String("tall".into());
    assert!(
        std::panic::catch_unwind(|| {
            common::openapi::conforms(&doc, "get", "/v1/status", 200, &wrong)
        })
        .is_err(),
        "a height that is not a number must not fit the document"
    );
    check("/v1/problems", "/v1/problems");
    check("/v1/orgs", "/v1/orgs?limit=2");
    check("/v1/anomalies", "/v1/anomalies");
    let latest = check("/v1/blocks/latest", "/v1/blocks/latest");
    check("/v1/blocks/{height}", "/v1/blocks/2");
    let programs = check("/v1/programs", "/v1/programs");
    let (mut checked_household, mut checked_application) = (false, false);
    for p in programs["items"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        check("/v1/programs/{id}", &format!("/v1/programs/{id}"));
        check(
            "/v1/programs/{id}/trace",
            &format!("/v1/programs/{id}/trace?limit=2"),
        );
        let whole = check(
            "/v1/programs/{id}/trace",
            &format!("/v1/programs/{id}/trace?limit=1000"),
        );
        for r in whole["releases"].as_array().unwrap() {
            check("/v1/releases/{id}", &format!("/v1/releases/{}", r["id"]));
            if let Some(h) = r["recipient"]["household"].as_str() {
                check("/v1/households/{id}", &format!("/v1/households/{h}"));
                check(
                    "/v1/households/{id}/trace",
                    &format!("/v1/households/{h}/trace"),
                );
                checked_household = true;
            }
            if let Some(plan) = r["source"]["tranche"]["plan"].as_str() {
                let plan = check("/v1/plans/{id}", &format!("/v1/plans/{plan}"));
                let app = plan["application"].as_str().unwrap();
                check("/v1/applications/{id}", &format!("/v1/applications/{app}"));
                check(
                    "/v1/applications/{id}/trace",
                    &format!("/v1/applications/{app}/trace"),
                );
                checked_application = true;
            }
        }
    }
    assert!(
        checked_household && checked_application,
        "the demo pays households and tranches"
    );
    // The explorer's reads (ADR 021).
    let blocks = check("/v1/blocks", "/v1/blocks?limit=3");
    assert_eq!(blocks["items"].as_array().unwrap().len(), 3, "{blocks}");
    let apps = check("/v1/applications", "/v1/applications");
    assert!(!apps["items"].as_array().unwrap().is_empty(), "{apps}");
    let mut plans_seen = 0;
    for p in programs["items"].as_array().unwrap() {
        let id = p["id"].as_str().unwrap();
        check(
            "/v1/applications",
            &format!("/v1/applications?program={id}"),
        );
        let plans = check(
            "/v1/programs/{id}/plans",
            &format!("/v1/programs/{id}/plans"),
        );
        for v in plans["items"].as_array().unwrap() {
            plans_seen += 1;
            // Only tranches that still wait are evaluated (the demo's have
            // all released by now; contracts/tests/conditions.rs checks
            // the verdicts).
            let pending = v["plan"]["tranches"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["status"].get("pending").is_some())
                .count();
            assert_eq!(v["tranches"].as_array().unwrap().len(), pending, "{v}");
        }
    }
    assert!(plans_seen > 0, "the demo has a plan");
    // The block list runs down from the head to block 1 with no gap.
    let (blocks, _) = walk(api, "/v1/blocks?limit=7", &["items"]);
    let heights: Vec<u64> = blocks[0]
        .iter()
        .map(|b| b["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights.last(), Some(&1), "{heights:?}");
    assert!(heights.windows(2).all(|w| w[0] == w[1] + 1), "{heights:?}");
    let regions = check("/v1/reports/regions", "/v1/reports/regions");
    // A township's code (three segments), so that its county covers it.
    let code = regions["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["region"].as_str())
        .find(|r| r.split('/').count() == 3)
        .expect("a township's row");
    let one = check(
        "/v1/reports/region",
        &format!("/v1/reports/region?code={code}"),
    );
    assert_eq!(one["region"], code);
    let county = code.split('/').take(2).collect::<Vec<_>>().join("/");
    let whole = check(
        "/v1/reports/region",
        &format!("/v1/reports/region?code={county}"),
    );
    assert!(
        whole["rows"].as_array().unwrap().len() > one["rows"].as_array().unwrap().len(),
        "the county {county} has its own row and {code}'s: {whole}"
    );
    let head = latest["header"]["height"].as_u64().unwrap();
    let with_txs = (1..=head.min(40))
        .map(|h| get(api, &format!("/v1/blocks/{h}")))
        .find(|b| !b["txs"].as_array().unwrap().is_empty())
        .expect("a block with transactions");
    for tx in with_txs["txs"].as_array().unwrap().iter().take(3) {
        let id = tx["id"].as_str().unwrap();
        check("/v1/txs/{id}", &format!("/v1/txs/{id}"));
        let signer = tx["signer"].as_str().unwrap();
        check("/v1/accounts/{key}", &format!("/v1/accounts/{signer}"));
    }
}

/// A bank's confirmation file (`tx settle-file`): the confirmation that
/// matches an unsettled release settles it, a wrong amount, an unknown
/// release, a release settled under another reference and a bad row are
/// listed and not sent, and a re-run sends nothing more.
fn settle_file_settles_what_matches(dir: &Path) {
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    let bank = t["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "state-bank")
        .unwrap();
    let api = bank["api"].as_str().unwrap().to_string();
    let key = bank["clients"]["disburser"].as_str().unwrap().to_string();
    let programs = get(&api, "/v1/programs")["items"]
        .as_array()
        .unwrap()
        .clone();
    let mut unsettled = Vec::new();
    let mut settled = Vec::new();
    for p in &programs {
        let id = p["id"].as_str().unwrap();
        let trace = get(&api, &format!("/v1/programs/{id}/trace?limit=1000"));
        for r in trace["releases"].as_array().unwrap() {
            let decimals = p["decimals"].as_u64().unwrap() as u32;
            let amount = r["amount"].as_u64().unwrap();
            let text = format!(
                "{}.{:0width$}",
                amount / 10u64.pow(decimals),
                amount % 10u64.pow(decimals),
                width = decimals as usize
            );
            if r["settlement"].is_null() {
                unsettled.push((r["id"].as_u64().unwrap(), text));
            } else {
                settled.push((r["id"].as_u64().unwrap(), text));
            }
        }
    }
    assert!(
        unsettled.len() >= 2 && !settled.is_empty(),
        "{unsettled:?} {settled:?}"
    );
    let (good, good_amount) = &unsettled[0];
    let (short, _) = &unsettled[1];
    let (done, done_amount) = &settled[0];
    let file = dir.join("bank-confirmations.csv");
    std::fs::write(
        &file,
        format!(
            "release,amount,bank_ref\n{good},{good_amount},BANK-REF-0001\n{short},0.01,BANK-REF-0002\n\
             999999,1.00,BANK-REF-0003\n{done},{done_amount},BANK-REF-0004\nabc,1.00,BANK-REF-0005\n"
        ),
    )
    .unwrap();
    let result = dir.join("bank-confirmations.csv.result.csv");
    let settle = || {
        run(&[
            "tx",
            "settle-file",
            "--node",
            &api,
            "--key",
            &key,
            "--csv",
            file.to_str().unwrap(),
        ])
    };
    let out = settle();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = || -> Vec<Vec<String>> {
        csv::Reader::from_path(&result)
            .unwrap()
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    };
    let by_line = |rows: &[Vec<String>], line: &str| -> Vec<String> {
        rows.iter().find(|r| r[0] == line).unwrap().clone()
    };
    let first = rows();
    assert_eq!(first.len(), 5);
    assert_eq!(by_line(&first, "2")[5], "done", "{first:?}");
    assert_eq!(by_line(&first, "3")[5], "mismatch", "{first:?}");
    assert_eq!(by_line(&first, "4")[5], "mismatch", "{first:?}");
    assert_eq!(by_line(&first, "5")[5], "mismatch", "{first:?}");
    assert_eq!(by_line(&first, "6")[5], "bad-row", "{first:?}");
    let r = get(&api, &format!("/v1/releases/{good}"));
    assert_eq!(r["settlement"]["status"], "confirmed", "{r}");
    let r = get(&api, &format!("/v1/releases/{short}"));
    assert!(r["settlement"].is_null(), "a mismatch is not sent: {r}");
    // Again: the settled one is unchanged, nothing new is sent.
    let again = settle();
    assert_eq!(again.status.code(), Some(1));
    let second = rows();
    assert_eq!(by_line(&second, "2")[5], "unchanged", "{second:?}");
    assert!(
        second.iter().all(|r| r[6].is_empty()),
        "nothing sent: {second:?}"
    );
}

/// Lists and traces come in pages (ADR 019): pages of one item join to
/// what one large page holds, and to what the CLI gathers; nothing is cut.
fn pages_join_to_the_whole(dir: &Path) {
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    let api = t["orgs"][0]["api"].as_str().unwrap().to_string();
    answers_fit_the_document(&api);
    let (programs, pages) = walk(&api, "/v1/programs?limit=1", &["items"]);
    assert!(!programs[0].is_empty());
    assert_eq!(
        pages,
        programs[0].len(),
        "one program a page, and no empty page after the last"
    );
    let cli = last_json(&ok(&[
        "--output", "json", "query", "programs", "--node", &api,
    ]));
    assert_eq!(cli, Value::Array(programs[0].clone()));
    let (orgs, _) = walk(&api, "/v1/orgs?limit=2", &["items"]);
    assert_eq!(
        orgs[0],
        get(&api, "/v1/orgs?limit=1000")["items"]
            .as_array()
            .unwrap()
            .clone()
    );

    let lists = ["ledger", "releases", "anomalies"];
    for p in &programs[0] {
        let id = p["id"].as_str().unwrap();
        let whole = get(&api, &format!("/v1/programs/{id}/trace?limit=1000"));
        assert!(whole["next"].is_null(), "{whole}");
        let (paged, pages) = walk(&api, &format!("/v1/programs/{id}/trace?limit=1"), &lists);
        for (i, l) in lists.iter().enumerate() {
            assert_eq!(&paged[i], whole[*l].as_array().unwrap(), "{id}: {l}");
        }
        let ledger = paged[0].len();
        assert_eq!(
            ledger as u64,
            p["ledger_seq"].as_u64().unwrap(),
            "{id}: every ledger entry"
        );
        assert!(pages >= ledger, "{id}: one ledger entry a page");
        let cli = last_json(&ok(&[
            "--output", "json", "query", "trace", id, "--node", &api,
        ]));
        for l in lists {
            assert_eq!(cli[l], whole[l], "{id}: the CLI's {l}");
        }
    }

    // The household and application traces come in pages too, joining to
    // the whole (and to what the CLI gathers).
    let lists = ["attestations", "releases", "ledger", "anomalies"];
    let mut households = std::collections::BTreeSet::new();
    for p in &programs[0] {
        let id = p["id"].as_str().unwrap();
        let whole = get(&api, &format!("/v1/programs/{id}/trace?limit=1000"));
        for e in whole["ledger"].as_array().unwrap() {
            if let Some(h) = e["to"]["household"].as_str() {
                households.insert(h.to_string());
            }
        }
    }
    assert!(!households.is_empty(), "the demo paid households");
    let apps: Vec<String> = get(&api, "/v1/applications?limit=100")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!apps.is_empty(), "the demo has applications");
    let traces = households
        .iter()
        .take(3)
        .map(|h| {
            (
                format!("/v1/households/{h}/trace"),
                vec!["--household", h.as_str()],
            )
        })
        .chain(apps.iter().map(|a| {
            (
                format!("/v1/applications/{a}/trace"),
                vec!["--application", a.as_str()],
            )
        }));
    for (path, how) in traces {
        let whole = get(&api, &format!("{path}?limit=1000"));
        assert!(whole["next"].is_null(), "{path}: {whole}");
        let (paged, pages) = walk(&api, &format!("{path}?limit=1"), &lists);
        let mut items = 0;
        for (i, l) in lists.iter().enumerate() {
            assert_eq!(&paged[i], whole[*l].as_array().unwrap(), "{path}: {l}");
            items += paged[i].len();
        }
        assert!(
            items > 0 || path.starts_with("/v1/applications/"),
            "{path}: a paid household with an empty trace"
        );
        assert!(pages > 1 || items <= lists.len(), "{path}: in pages");
        let mut args = vec!["--output", "json", "query", "trace"];
        args.extend(how);
        args.extend(["--node", &api]);
        let cli = last_json(&ok(&args));
        for l in lists {
            assert_eq!(cli[l], whole[l], "{path}: the CLI's {l}");
        }
        assert!(cli.get("next").is_none_or(Value::is_null), "{path}: {cli}");
    }
}

/// The explorer in a headless browser (`lifecycle/explorer.rs`), after a
/// hostile signer gave a program a title that is markup.
fn explorer_shows_the_chain(dir: &Path) {
    if !explorer::browser_available() {
        return;
    }
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
    let org = |id: &str| {
        t["orgs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == id)
            .unwrap()
            .clone()
    };
    let bank = org("state-bank");
    let api = bank["api"].as_str().unwrap();
    let officer = org("poverty-office")["clients"]["program-officer"]
        .as_str()
        .unwrap()
        .to_string();
    let title = "<img src=x onerror=\"window.__pwned=1\">";
    ok(&[
        "tx",
        "create-program",
        "--id",
        "hostile-title",
        "--title",
        title,
        "--currency",
        "CNY",
        "--ceiling",
        "1000.00",
        "--funding-orgs",
        "state-bank",
        "--threshold",
        "1",
        "--policy-orgs",
        "poverty-office",
        "--region-scope",
        "gansu/linxia",
        "--node",
        api,
        "--key",
        &officer,
        "--wait",
    ]);
    let home = home_of(dir, "state-bank");
    let h = home.to_str().unwrap();
    let report = last_json(&ok(&["--output", "json", "audit", "report", "--home", h]));
    let region = report["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["released"].as_u64().unwrap_or(0) > 0)
        .expect("a region that received money")["region"]
        .as_str()
        .unwrap()
        .to_string();
    // The county above the region's code, so that its rows are summed.
    let county: String = region.split('/').take(2).collect::<Vec<_>>().join("/");
    let regional = last_json(&ok(&[
        "--output", "json", "audit", "report", "--home", h, "--region", &county,
    ]));
    // The node serves a report for a few seconds before it builds a newer
    // one (ADR 021): wait until its report is as new as the CLI's.
    let as_of = regional["as_of"]["height"].as_u64().unwrap();
    common::consortium::wait_until("the node's report to reach the CLI's height", 30, || {
        get(api, "/v1/reports/regions")["as_of"]["height"]
            .as_u64()
            .is_some_and(|h| h >= as_of)
    });
    explorer::explorer_agrees_with_the_audit_report(
        api,
        &explorer::Expected {
            report,
            regional,
            hostile: Some(("hostile-title".into(), title.into())),
            genesis: home.join("genesis.json"),
        },
    );
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

    audit_the_live_chain(&net.dir);
    pages_join_to_the_whole(&net.dir);
    settle_file_settles_what_matches(&net.dir);
    explorer_shows_the_chain(&net.dir);

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

/// Whether this machine can make network namespaces (root and iproute2).
fn namespaces_available() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                == Some("0")
        })
        .unwrap_or(false);
    let ip = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    root && ip
}

/// Real partitions between network namespaces: a 2|2 split commits
/// nothing and recovers within 2 × the round timeout of healing; a 1|3
/// split keeps the majority committing; a flapping link and a one-way
/// block change nothing lasting. The namespaces are gone afterwards.
#[test]
fn namespace_partitions_recover_within_two_round_timeouts() {
    if !namespaces_available() {
        eprintln!(
            "NOTICE: skipping the namespace partition drill: it needs root and iproute2 (`ip netns`)"
        );
        return;
    }
    let net = Testnet::new();
    let init = run(&["testnet", "init", "--dir", net.d()]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let child = Command::new(BIN)
        .args([
            "--output",
            "json",
            "testnet",
            "drill",
            "--dir",
            net.d(),
            "--partition",
            "2:2",
            "--partition",
            "1:3",
            "--partition",
            "flap",
            "--partition",
            "oneway",
            "--hold",
            "8",
            "--rate",
            "30",
            "--seed",
            "11",
        ])
        .env_remove("AIDLEDGER_NODE")
        .env_remove("AIDLEDGER_HOME")
        .env_remove("AIDLEDGER_TESTNET_NETNS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run aidledger");
    let tag = format!("al{}", child.id());
    let out = child.wait_with_output().expect("drill output");
    let text = String::from_utf8_lossy(&out.stdout);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.contains(&format!("{tag}-")),
        "the drill left namespaces behind: {left}"
    );
    assert!(
        out.status.success(),
        "drill failed:\nstdout: {text}\nstderr: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs(&net.dir)
    );
    let r = last_json(&out);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["tx_lost"].as_u64(), Some(0), "{r}");
    assert_eq!(r["tx_duplicated"].as_u64(), Some(0), "{r}");
    assert!(
        r["partition_method"]
            .as_str()
            .unwrap()
            .contains("namespaces"),
        "{r}"
    );
    let parts = r["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 4, "{r}");
    for p in parts {
        let rec = p["recovery_ms"].as_u64().expect("recovered");
        let limit = p["recovery_limit_ms"].as_u64().unwrap();
        assert!(rec <= limit, "{p}");
        assert_eq!(p["ok"], true, "{p}");
    }
    // 2|2: no side has a quorum, nothing commits while it holds.
    assert_eq!(parts[0]["quorum_side"], false, "{r}");
    assert_eq!(parts[0]["committed_during_hold"].as_u64(), Some(0), "{r}");
    // 1|3: the three keep going.
    assert!(
        parts[1]["committed_during_hold"].as_u64().unwrap() > 0,
        "{r}"
    );
    // The nodes were not running before the drill, and are not after it.
    for e in std::fs::read_dir(&net.dir).unwrap().flatten() {
        let pid = e.path().join("node.pid");
        assert!(!pid.exists(), "{} is still there", pid.display());
    }
}
