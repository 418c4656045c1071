#![allow(clippy::unwrap_used)]
//! End to end, with real `aidledger` processes on 127.0.0.1 (issue 16,
//! part 5): a hot backup of a validator under load is itself a node home
//! that `audit replay` verifies; `restore` refuses what would be unsafe
//! (another chain's or another key's backup without `--other-key`, a
//! running node, a backup changed after it was taken); a validator
//! restored from an older backup rejoins the running consortium, catches
//! up without voting, votes again, and agrees with the others, while the
//! load loses nothing.

mod common;

use std::path::Path;
use std::process::Command;

use common::consortium::{
    block_at, height, pid_of, signal, status, wait_exit, wait_until, Org, Testnet,
};
use common::{fails, mode, ok, s};
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The node's log without terminal colours.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

fn replay_ok(home: &Path) -> Value {
    json(&ok(&[
        "audit",
        "replay",
        "--home",
        s(home),
        "--output",
        "json",
    ]))
}

#[test]
fn a_hot_backup_verifies_and_a_restored_validator_rejoins_under_load() {
    let net = Testnet::up();
    let d = net.d().to_string();
    let all = net.orgs();
    let validators: Vec<Org> = all.iter().filter(|o| o.validator).cloned().collect();
    assert_eq!(validators.len(), 4);
    let v = validators[3].clone();
    let other = validators[0].clone();
    let apis: Vec<&str> = all.iter().map(|o| o.api.as_str()).collect();
    wait_until("every node past height 2", 90, || {
        apis.iter().all(|a| height(a) >= 2)
    });

    // Load through the whole test: bounded in rate and time.
    let load_out = net.tmp.path().join("load.json");
    let load = common::consortium::start_load(&net, 60, 45, &load_out);
    let h0 = height(&v.api);
    wait_until("the load commits a few blocks", 60, || {
        height(&v.api) >= h0 + 3
    });

    // 1. A hot backup of a running validator, under load.
    let bk = net.tmp.path().join("backup-hot");
    let b = json(&ok(&[
        "backup",
        "--home",
        s(&v.home),
        "--out",
        s(&bk),
        "--output",
        "json",
    ]));
    assert_eq!(b["hot"], Value::Bool(true), "{b}");
    assert_eq!(b["with_key"], Value::Bool(false), "{b}");
    let bk_height = b["height"].as_u64().unwrap();
    assert!(bk_height >= h0, "{b}");
    assert_eq!(mode(&bk), 0o700);
    assert!(!bk.join("keys").exists(), "the node key was copied");
    assert!(bk.join("genesis.json").is_file() && bk.join("ran-on-chain").is_file());
    let cfg = std::fs::read_to_string(bk.join("config.toml")).unwrap();
    assert!(cfg.contains("data_dir = \"data\""), "{cfg}");
    // The copy is a node home an auditor verifies from genesis.
    let r = replay_ok(&bk);
    assert_eq!(r["verified"], Value::Bool(true), "{r}");
    assert_eq!(r["summary"]["head_hash"], b["block_hash"], "{r}");
    // The block the backup holds at its head is the consortium's.
    assert_eq!(
        block_at(&other.api, bk_height).unwrap().0,
        b["block_hash"].as_str().unwrap()
    );
    // A backup never goes inside the store it copies.
    fails(
        &[
            "backup",
            "--home",
            s(&v.home),
            "--out",
            s(&v.home.join("data/inner")),
        ],
        2,
        "inside the node's data directory",
    );
    // A backup never overwrites.
    fails(
        &["backup", "--home", s(&v.home), "--out", s(&bk)],
        2,
        "exists",
    );

    // 2. Restore refuses a running node, and another key's backup unless
    //    told; a restore into a running home is refused even then.
    fails(
        &["restore", "--home", s(&other.home), "--from", s(&bk)],
        2,
        "--other-key",
    );
    fails(
        &[
            "restore",
            "--home",
            s(&other.home),
            "--from",
            s(&bk),
            "--other-key",
        ],
        2,
        "running",
    );
    fails(
        &["restore", "--home", s(&v.home), "--from", s(&bk)],
        2,
        "running",
    );

    // 3. Stop the validator; the consortium moves on without it.
    let pid = pid_of(&v.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    assert!(!v.home.join("control.sock").exists(), "socket left behind");
    let stopped_at = validators[..3]
        .iter()
        .map(|o| height(&o.api))
        .max()
        .unwrap();
    wait_until("the other three commit 5 more blocks", 120, || {
        validators[..3]
            .iter()
            .all(|o| height(&o.api) >= stopped_at + 5)
    });

    // A cold backup of the stopped node, with its key.
    let cold = net.tmp.path().join("backup-cold");
    let c = json(&ok(&[
        "backup",
        "--home",
        s(&v.home),
        "--out",
        s(&cold),
        "--with-key",
        "--output",
        "json",
    ]));
    assert_eq!(c["hot"], Value::Bool(false), "{c}");
    assert_eq!(mode(&cold.join("keys/node.json")), 0o600);
    assert!(c["height"].as_u64().unwrap() >= bk_height);

    // A backup changed after it was taken is refused, and so is a backup
    // of another chain.
    let bad = net.tmp.path().join("backup-bad");
    assert!(Command::new("cp")
        .args(["-r", s(&cold), s(&bad)])
        .status()
        .unwrap()
        .success());
    let mut m = json(&std::fs::read_to_string(bad.join("backup.json")).unwrap());
    m["height"] = Value::from(m["height"].as_u64().unwrap() + 1);
    std::fs::write(bad.join("backup.json"), m.to_string()).unwrap();
    fails(
        &["restore", "--home", s(&v.home), "--from", s(&bad)],
        1,
        "changed after the backup",
    );
    m["genesis_hash"] = Value::from("00".repeat(32));
    std::fs::write(bad.join("backup.json"), m.to_string()).unwrap();
    fails(
        &["restore", "--home", s(&v.home), "--from", s(&bad)],
        2,
        "refusing to mix chains",
    );
    std::fs::remove_file(bad.join("backup.json")).unwrap();
    fails(
        &["restore", "--home", s(&v.home), "--from", s(&bad)],
        2,
        "not a finished backup",
    );
    // A damaged copy does not open, and is refused.
    let broken = net.tmp.path().join("backup-broken");
    assert!(Command::new("cp")
        .args(["-r", s(&cold), s(&broken)])
        .status()
        .unwrap()
        .success());
    std::fs::remove_file(broken.join("data/CURRENT")).unwrap();
    fails(
        &["restore", "--home", s(&v.home), "--from", s(&broken)],
        1,
        "does not open",
    );
    // A failed restore changed nothing and left nothing behind.
    assert!(!v.home.join("restored").exists());
    let names: Vec<String> = std::fs::read_dir(&v.home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("restoring") || n.contains("before-restore")),
        "{names:?}"
    );

    // 4. Restore the older, hot backup and start the node.
    let out = json(&ok(&[
        "restore",
        "--home",
        s(&v.home),
        "--from",
        s(&bk),
        "--output",
        "json",
    ]));
    assert_eq!(out["height"].as_u64(), Some(bk_height), "{out}");
    let aside = out["set_aside"].as_str().unwrap();
    assert!(Path::new(aside).join("CURRENT").is_file(), "{out}");
    assert!(v.home.join("restored").is_file());
    let log_before = std::fs::read_to_string(v.home.join("node.log")).unwrap_or_default();
    ok(&["testnet", "up", "--dir", &d]);
    wait_until("the restored node's API", 60, || status(&v.api).is_some());
    // It opened at the backup's height, below the consortium's, and does
    // not vote until it has caught up.
    wait_until("the restored validator votes again", 180, || {
        status(&v.api).is_some_and(|s| s["voting"] == Value::Bool(true))
    });
    let log = std::fs::read_to_string(v.home.join("node.log")).unwrap_or_default();
    let log = strip_ansi(&log[log_before.len().min(log.len())..]);
    assert!(
        log.contains("restored from a backup"),
        "the node did not notice the restore:\n{log}"
    );
    let opened = log
        .lines()
        .find(|l| l.contains("opened chain"))
        .unwrap_or_default();
    assert!(
        opened.contains(&format!("height={bk_height} ")),
        "did not open at the backup's height {bk_height}: {opened}"
    );
    assert!(bk_height < stopped_at + 5);
    wait_until("the restore marker is removed", 30, || {
        !v.home.join("restored").exists()
    });

    // 5. The load finishes with nothing lost or applied twice, and every
    //    validator agrees, the restored one included.
    common::consortium::finish_load(load, &load_out);
    let target = validators.iter().map(|o| height(&o.api)).max().unwrap();
    wait_until("every validator at the same height", 120, || {
        validators.iter().all(|o| height(&o.api) >= target)
    });
    let expect = block_at(&other.api, target).unwrap();
    for o in &validators {
        assert_eq!(block_at(&o.api, target).as_ref(), Some(&expect), "{}", o.id);
    }
    // The restored node's store verifies from genesis, while it runs.
    let r = replay_ok(&v.home);
    assert_eq!(r["verified"], Value::Bool(true), "{r}");

    // 6. Another key's backup, told so: one observer's hot backup seeds
    //    the other observer's home (a replacement machine). The copy's
    //    safety state is dropped, and the node follows the chain again.
    let observers: Vec<Org> = all.iter().filter(|o| !o.validator).cloned().collect();
    let (src, dst) = (&observers[0], &observers[1]);
    let obk = net.tmp.path().join("backup-observer");
    ok(&["backup", "--home", s(&src.home), "--out", s(&obk)]);
    let pid = pid_of(&dst.home);
    signal(pid, "-TERM");
    wait_exit(pid, 30);
    let out = json(&ok(&[
        "restore",
        "--home",
        s(&dst.home),
        "--from",
        s(&obk),
        "--other-key",
        "--output",
        "json",
    ]));
    assert!(
        out["safety_state"].as_str().unwrap().starts_with("dropped"),
        "{out}"
    );
    ok(&["testnet", "up", "--dir", &d]);
    let target = validators.iter().map(|o| height(&o.api)).max().unwrap();
    wait_until("the reseeded observer follows the chain", 120, || {
        height(&dst.api) >= target
    });
    assert_eq!(
        block_at(&dst.api, target),
        block_at(&other.api, target),
        "the reseeded observer disagrees"
    );
    wait_until("its restore marker is removed", 60, || {
        !dst.home.join("restored").exists()
    });
    // It speaks for its own organisation, under its own key.
    let st = status(&dst.api).unwrap();
    assert_eq!(st["org"].as_str(), Some(dst.id.as_str()), "{st}");
}
