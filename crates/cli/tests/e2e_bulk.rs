#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1: bulk work
//! from files (issue 17 part 3). A county's household spreadsheet is
//! imported with `tx import-households`: bad rows are reported with their
//! line and sent nowhere, good rows land on the chain under their salted
//! ids, and a re-run sends nothing for what is done. A changed row is
//! updated, and a dry run sends nothing.

mod common;

use std::path::Path;

use common::consortium::{api_get, Testnet};
use common::run;
use serde_json::Value;

const SALT: &str = "county-unit-test-salt-e2e-bulk";
const VILLAGE: &str = "gansu/linxia/dongxiang";

fn salted(local: &str) -> String {
    let mut b = SALT.as_bytes().to_vec();
    b.extend_from_slice(local.as_bytes());
    aidledger_types::hash::sha256(&b).to_hex()
}

fn results(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "line",
            "local_id",
            "household",
            "action",
            "result",
            "tx",
            "detail"
        ]
    );
    r.records().map(Result::unwrap).collect()
}

fn nonce(api: &str, key: &str) -> u64 {
    let pk = aidledger_crypto::read_key_file(Path::new(key))
        .unwrap()
        .public()
        .to_hex();
    api_get(api, &format!("/v1/accounts/{pk}")).unwrap()["nonce"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_county_file_imports_once_with_bad_rows_named_and_reruns_change_nothing() {
    let t = Testnet::up();
    let org = t
        .orgs()
        .into_iter()
        .find(|o| o.clients.get("registrar").is_some_and(Value::is_string))
        .expect("an organisation with a registrar");
    let key = org.clients["registrar"].as_str().unwrap().to_string();
    let api = org.api.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("county.csv");

    // 45 good rows (every fifth inactive), then five bad ones.
    let mut text = String::from("local_id,region,status\n");
    for i in 0..45 {
        let status = if i % 5 == 0 { "inactive" } else { "active" };
        text.push_str(&format!("hh-{i:04},{VILLAGE},{status}\n"));
    }
    text.push_str(&format!(",{VILLAGE},active\n")); // line 47: no id
    text.push_str("hh-bad-region,Gansu Province,active\n"); // line 48
    text.push_str(&format!("hh-bad-status,{VILLAGE},moved\n")); // line 49
    text.push_str(&format!("hh-0003,{VILLAGE},active\n")); // line 50: repeated
    text.push_str(&format!("{},{VILLAGE},active\n", "x".repeat(300))); // line 51
    text.push_str("local_id,region,status\n"); // line 52: a second header
    text.push_str(&format!("hh-extra,{VILLAGE},active,surplus\n")); // line 53
    text.push_str(",,\n"); // line 54: empty cells, skipped
    std::fs::write(&file, &text).unwrap();
    let result = dir.path().join("result.csv");
    let import = |extra: &[&str]| {
        let mut args = vec![
            "tx",
            "import-households",
            "--node",
            &api,
            "--key",
            &key,
            "--csv",
            file.to_str().unwrap(),
            "--salt",
            SALT,
            "--result",
            result.to_str().unwrap(),
            "--batch",
            "20",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };

    let before = nonce(&api, &key);
    let out = import(&[]);
    assert_eq!(out.status.code(), Some(1), "bad rows make the run fail");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    for (line, why) in [
        (47, "local_id is empty"),
        (48, "region"),
        (49, "expected active or inactive"),
        (50, "first at line 5"),
        (51, "over 256 bytes"),
        (52, "a second header row"),
        (53, "unreadable row"),
    ] {
        assert!(
            stderr.contains(&format!("line {line}: ")) && stderr.contains(why),
            "line {line}: {why}: {stderr}"
        );
    }
    let rows = results(&result);
    assert_eq!(rows.len(), 52, "every row but the empty one has a result");
    let bad: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[4] == "bad-row").collect();
    assert_eq!(bad.len(), 7);
    assert!(bad.iter().all(|r| r[2].is_empty() && r[5].is_empty()));
    let done: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[4] == "done").collect();
    assert_eq!(done.len(), 45, "{rows:?}");
    // Nine inactive households took a registration and an update each.
    assert_eq!(nonce(&api, &key), before + 45 + 9);
    for i in [0, 1, 44] {
        let local = format!("hh-{i:04}");
        let h = api_get(&api, &format!("/v1/households/{}", salted(&local))).unwrap();
        assert_eq!(h["region"], VILLAGE);
        let status = if i % 5 == 0 { "inactive" } else { "active" };
        assert_eq!(h["status"], status, "{local}: {h}");
        let row = rows.iter().find(|r| r[1] == *local).unwrap();
        assert_eq!(&row[2], salted(&local), "the result names the salted id");
    }
    // Nothing of a bad row reached the chain.
    assert!(api_get(&api, &format!("/v1/households/{}", salted("hh-bad-status"))).is_none());

    // The same file again: nothing to send.
    let n = nonce(&api, &key);
    let again = import(&[]);
    assert_eq!(again.status.code(), Some(1), "the bad rows are still bad");
    let rows = results(&result);
    assert_eq!(rows.iter().filter(|r| &r[4] == "unchanged").count(), 45);
    assert_eq!(nonce(&api, &key), n, "a re-run sends nothing");

    // Bad rows removed and one household moved: one update, the rest
    // unchanged; a dry run first sends nothing.
    let fixed: String = text
        .lines()
        .take(46)
        .map(|l| {
            if l.starts_with("hh-0007,") {
                "hh-0007,gansu/linxia/hezheng,active\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&file, fixed).unwrap();
    let dry = import(&["--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let rows = results(&result);
    let moved = rows.iter().find(|r| &r[1] == "hh-0007").unwrap();
    assert_eq!((&moved[3], &moved[4]), ("update", "not-sent"), "{moved:?}");
    assert_eq!(nonce(&api, &key), n);
    let real = import(&[]);
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    let rows = results(&result);
    assert_eq!(rows.iter().filter(|r| &r[4] == "unchanged").count(), 44);
    let moved = rows.iter().find(|r| &r[1] == "hh-0007").unwrap();
    assert_eq!((&moved[3], &moved[4]), ("update", "done"), "{moved:?}");
    let h = api_get(&api, &format!("/v1/households/{}", salted("hh-0007"))).unwrap();
    assert_eq!(h["region"], "gansu/linxia/hezheng");
    assert_eq!(nonce(&api, &key), n + 1);

    // A file that is not a county file at all: a clear refusal.
    std::fs::write(&file, "name,address\nA,B\n").unwrap();
    let out = import(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("local_id and region"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
