//! `aidledger audit replay|report|export` and `export-blocks`, run as
//! processes on a chain built with the real execution crate and committed
//! into a node home's data directory (no node process needed).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

#[path = "../../audit/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aidledger_storage::{keys as skeys, Cf, RocksStore};
use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aidledger"));
    c.env_remove("AIDLEDGER_HOME").env_remove("AIDLEDGER_NODE");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}\n{}",
        err(&o),
        out(&o)
    );
    out(&o)
}

/// `audit replay --home home --output json` that fails with status 1:
/// its JSON report.
fn failed_replay_json(home: &Path) -> Value {
    let o = run(&["audit", "replay", "--home", p(home), "--output", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    serde_json::from_str(&out(&o)).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn shared_schema() -> Option<PathBuf> {
    let xsd = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/iati-2.03/iati-activities-schema.xsd");
    if xsd.is_file() {
        Some(xsd)
    } else {
        eprintln!(
            "NOTICE: {} is absent; skipping the IATI schema validation",
            xsd.display()
        );
        None
    }
}

#[test]
fn replay_of_a_node_home_verifies_and_summarises() {
    let b = common::built(2);
    let home = b.dir.path();
    let text = ok(&["audit", "replay", "--home", p(home)]);
    assert!(
        text.contains(&format!("blocks         {}", b.head)),
        "{text}"
    );
    assert!(text.contains("programs       2"), "{text}");
    assert!(text.contains("tx/s"), "{text}");
    assert!(text.contains("result         verified"), "{text}");

    let json: Value = serde_json::from_str(&ok(&[
        "audit",
        "replay",
        "--home",
        p(home),
        "--output",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["summary"]["blocks"], b.head);
    assert_eq!(json["summary"]["validator_set_changes"], 1);
    assert!(json["failure"].is_null());
}

#[test]
fn replay_names_the_first_failing_height_and_exits_1() {
    let b = common::built(2);
    {
        let s = RocksStore::open(b.data()).unwrap();
        s.raw_delete(Cf::Blocks, &skeys::height(4)).unwrap();
    }
    let o = run(&["audit", "replay", "--home", p(b.dir.path())]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert_eq!(
        err(&o).trim_end(),
        "error: audit failed: height 4: block missing"
    );
    assert!(out(&o).contains("blocks         3"), "{}", out(&o));

    let v = failed_replay_json(b.dir.path());
    assert_eq!(v["verified"], false);
    assert_eq!(v["failure"]["height"], 4);
    assert_eq!(v["failure"]["object"], "block");
    assert_eq!(v["message"], "height 4: block missing");
}

/// The index is checked as one set, and a failure is placed by a second,
/// entry-by-entry run (ADR 008): through the command, an index entry for
/// no transaction of the chain fails at the end, and an entry deleted
/// below a later altered receipt is still named at its own block.
#[test]
fn replay_checks_the_transaction_index_whole_and_names_its_first_failure() {
    let b = common::built(2);
    let stranger = aidledger_types::Hash([0x5a; 32]);
    {
        let s = RocksStore::open(b.data()).unwrap();
        let location = aidledger_storage::TxLocation {
            height: 2,
            index: 0,
        };
        s.raw_put(
            Cf::TxIndex,
            &skeys::tx(&stranger),
            &aidledger_types::codec::encode(&location),
        )
        .unwrap();
    }
    let o = run(&["audit", "replay", "--home", p(b.dir.path())]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let e = err(&o);
    assert!(
        e.trim_end().starts_with(
            "error: audit failed: transaction index holds entries for transactions not in the chain:"
        ),
        "{e}"
    );
    assert!(
        out(&o).contains(&format!("blocks         {}", b.head)),
        "{}",
        out(&o)
    );

    let b = common::built(2);
    {
        let s = RocksStore::open(b.data()).unwrap();
        let block = aidledger_storage::Store::block(&s, 2).unwrap().unwrap();
        s.raw_delete(Cf::TxIndex, &skeys::tx(&block.txs[0].id()))
            .unwrap();
        let key = skeys::receipt(4, 0);
        let mut r = s.raw_get(Cf::Receipts, &key).unwrap().unwrap();
        r[0] ^= 1;
        s.raw_put(Cf::Receipts, &key, &r).unwrap();
    }
    let v = failed_replay_json(b.dir.path());
    assert_eq!(
        v["message"],
        "height 2: tx 0 is missing from the transaction index"
    );
    assert_eq!(v["summary"]["blocks"], 1);
}

#[test]
fn export_blocks_then_replay_the_file_offline() {
    let b = common::built(2);
    let file = b.dir.path().join("chain.aidl");
    let text = ok(&[
        "export-blocks",
        "--home",
        p(b.dir.path()),
        "--out",
        p(&file),
    ]);
    assert!(text.contains(&format!("{} blocks", b.head)), "{text}");
    let text = ok(&["audit", "replay", "--blocks", p(&file)]);
    assert!(text.contains("result         verified"), "{text}");

    // The trusted genesis pins the chain.
    let gfile = b.dir.path().join("genesis.json");
    std::fs::write(&gfile, serde_json::to_string_pretty(&b.genesis).unwrap()).unwrap();
    ok(&[
        "audit",
        "replay",
        "--blocks",
        p(&file),
        "--genesis",
        p(&gfile),
    ]);

    let mut bytes = std::fs::read(&file).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    let o = run(&["audit", "replay", "--blocks", p(&file)]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).starts_with("error: audit failed: "), "{}", err(&o));
}

#[test]
fn report_and_exports_from_a_node_home() {
    let b = common::built(2);
    let home = b.dir.path();
    let v: Value = serde_json::from_str(&ok(&[
        "audit",
        "report",
        "--home",
        p(home),
        "--output",
        "json",
    ]))
    .unwrap();
    let programs = v["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 2);
    let road = programs.iter().find(|p| p["id"] == "road-fund").unwrap();
    assert_eq!(road["deposited"], 6_000_000);
    assert_eq!(road["available"], 3_800_000);
    assert_eq!(road["committed"], 1_200_000);
    assert_eq!(road["released"], 1_000_000);
    assert_eq!(road["settled"], 1_000_000);
    assert_eq!(road["returned"], 0);
    assert_eq!(
        road["sources"]["deposited"]["txs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let text = ok(&["audit", "report", "--home", p(home)]);
    assert!(text.contains("road-fund"), "{text}");
    assert!(text.contains("households"), "{text}");

    for (format, name) in [("json", "x.json"), ("csv", "x.csv"), ("iati", "x.xml")] {
        let path = home.join(name);
        ok(&[
            "audit",
            "export",
            "--home",
            p(home),
            "--format",
            format,
            "--out",
            p(&path),
        ]);
        assert!(std::fs::metadata(&path).unwrap().len() > 100, "{format}");
    }
    let csv = std::fs::read_to_string(home.join("x.csv")).unwrap();
    assert!(csv.starts_with("height,time,tx_id,program,from,to,amount,currency,type"));

    // Two exports to one path at once (each through its own temporary
    // file): both succeed, the file is one whole export, and no temporary
    // file is left behind.
    let same = home.join("same.json");
    let exports: Vec<_> = (0..2)
        .map(|_| {
            bin()
                .args([
                    "audit",
                    "export",
                    "--home",
                    p(home),
                    "--format",
                    "json",
                    "--out",
                ])
                .arg(&same)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in exports {
        assert!(c.wait().unwrap().success());
    }
    let whole: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&same).unwrap()).unwrap();
    assert!(whole["movements"].as_array().is_some_and(|m| !m.is_empty()));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&same).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "an export is for others to read");
    }
    let left: Vec<_> = std::fs::read_dir(home)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    if let Some(xsd) = shared_schema() {
        match Command::new("xmllint")
            .args(["--noout", "--schema", p(&xsd), p(&home.join("x.xml"))])
            .output()
        {
            Ok(o) => assert!(o.status.success(), "{}", err(&o)),
            Err(e) => eprintln!("NOTICE: xmllint not runnable ({e}); skipping"),
        }
    }
}

#[test]
fn audit_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["audit", "replay"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--home"), "{}", err(&o));
    let o = run(&["audit", "replay", "--home", p(dir.path())]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("no data directory"), "{}", err(&o));
    let o = run(&["audit", "replay", "--blocks", p(&dir.path().join("none"))]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    for threads in ["0", "257", "100000"] {
        let o = run(&[
            "audit",
            "replay",
            "--home",
            p(dir.path()),
            "--threads",
            threads,
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(err(&o).contains("--threads"), "{}", err(&o));
    }
    let o = run(&[
        "audit",
        "export",
        "--home",
        p(dir.path()),
        "--format",
        "pdf",
        "--out",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    // trace needs exactly one of a program, --application, --household.
    let o = run(&["query", "trace"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = run(&["query", "trace", "fund", "--application", "app"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

/// County and township reports (`audit report --region`): each row lies in
/// the region, the totals are the rows' sums, and a province's totals are
/// the programs' totals. The same figures as JSON, CSV and text.
#[test]
fn regional_reports_add_up() {
    let b = common::built(2);
    let home = p(b.dir.path());
    let whole: Value = serde_json::from_str(&ok(&[
        "audit", "report", "--home", home, "--output", "json",
    ]))
    .unwrap();
    let regions: Vec<String> = whole["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["region"].as_str().unwrap().to_string())
        .collect();
    assert!(!regions.is_empty(), "{whole}");
    let province = regions[0].split('/').next().unwrap().to_string();
    let sum = |key: &str| -> u64 {
        whole["programs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[key].as_u64().unwrap())
            .sum()
    };
    let regional = |region: &str| -> Value {
        serde_json::from_str(&ok(&[
            "audit", "report", "--home", home, "--region", region, "--output", "json",
        ]))
        .unwrap()
    };
    let g = regional(&province);
    let totals = g["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 1, "one currency: {g}");
    for key in ["deposited", "released", "settled"] {
        assert_eq!(totals[0][key].as_u64().unwrap(), sum(key), "{key}: {g}");
    }
    // Every narrower code: its rows lie in it, and its totals are theirs.
    for code in &regions {
        let g = regional(code);
        let rows = g["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{code}");
        for r in rows {
            let r_code = r["region"].as_str().unwrap();
            assert!(
                r_code == code || r_code.starts_with(&format!("{code}/")),
                "{r_code} in {code}"
            );
        }
        for t in g["totals"].as_array().unwrap() {
            let cur = t["currency"].as_str().unwrap();
            let of = |key: &str| -> u64 {
                rows.iter()
                    .filter(|r| r["currency"] == cur)
                    .map(|r| r[key].as_u64().unwrap())
                    .sum()
            };
            assert_eq!(t["released"].as_u64().unwrap(), of("released"), "{code}");
            assert_eq!(t["settled"].as_u64().unwrap(), of("settled"), "{code}");
        }
        assert_eq!(
            g["households_reached"].as_u64().unwrap() as usize,
            g["households"].as_array().unwrap().len(),
            "{code}: each household reached is listed"
        );
    }
    // CSV: region rows, then a total per currency, equal to the JSON.
    let text = ok(&[
        "audit", "report", "--home", home, "--region", &province, "--output", "csv",
    ]);
    let mut r = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(&r.headers().unwrap()[0], "level");
    let records: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let total = records.iter().find(|x| &x[0] == "total").unwrap();
    assert_eq!(&total[1], province.as_str());
    assert_eq!(total[4].parse::<u64>().unwrap(), sum("released"));
    // Text names the total.
    let text = ok(&["audit", "report", "--home", home, "--region", &province]);
    assert!(text.contains(&format!("TOTAL {province}")), "{text}");
    // A region with nothing in it, and bad arguments.
    let g = regional("nowhere");
    assert!(g["rows"].as_array().unwrap().is_empty());
    let o = run(&[
        "audit",
        "report",
        "--home",
        home,
        "--region",
        "Not A Region",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = run(&["--output", "csv", "status", "--home", home]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("audit report"), "{}", err(&o));
}
