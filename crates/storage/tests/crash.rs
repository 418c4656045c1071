//! Crash consistency: a child process commits blocks to a RocksStore in a
//! loop and is killed with SIGKILL at varying moments; after every kill the
//! parent reopens the store and checks it holds exactly a prefix of the
//! chain the child was writing, with consistent state, index and
//! accumulator.

// Test helpers outside #[test] functions panic on failure, as the tests do.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aidledger_storage::{RocksStore, Store};
use aidledger_types::{SignedTx, StateAccumulator};
use common::*;

/// Set only in the child: the store directory to write to.
const CHILD_ENV: &str = "AIDLEDGER_STORAGE_CHILD_DIR";
const CHILD_TEST: &str = "crash_child_commits_forever";
const ITERATIONS: u64 = 25;
/// A stray child stops on its own after this many commits.
const CHILD_MAX_COMMITS: u64 = 20_000;

/// The state writes of block `h`: a deterministic function of the height,
/// with overwrites, deletes of present and absent keys, and growing state.
fn writes_at(h: u64) -> Writes {
    let mut m = Writes::new();
    m.insert(
        format!("every/{h:08}").into_bytes(),
        Some(vec![h as u8; (h % 100) as usize]),
    );
    m.insert(
        format!("ring/{:02}", h % 16).into_bytes(),
        Some(h.to_be_bytes().to_vec()),
    );
    if matches!(h % 3, 0) {
        m.insert(format!("ring/{:02}", (h * 7) % 16).into_bytes(), None);
    }
    if matches!(h % 5, 0) {
        m.insert(
            format!("every/{:08}", h.saturating_sub(3)).into_bytes(),
            None,
        );
    }
    if h == 4 {
        m.insert(b"init/a".to_vec(), None);
    }
    m
}

fn txs_at(h: u64) -> Vec<SignedTx> {
    (0..h % 4).map(|i| tx(h * 16 + i)).collect()
}

/// Extends the model chain to `height` with the child's blocks.
fn extend(chain: &mut Chain, height: u64) {
    while chain.height < height {
        let h = chain.height + 1;
        let b = chain.build(writes_at(h), txs_at(h));
        chain.apply(&b);
    }
}

fn new_chain() -> Chain {
    Chain::new(genesis_hash(), &initial_state())
}

/// The child: returns at once unless `CHILD_ENV` is set, so it passes as an
/// ordinary test; when set, it commits blocks until it is killed.
#[test]
fn crash_child_commits_forever() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = RocksStore::open(&dir).unwrap();
    store_genesis(&store);
    let start = store.head().unwrap().map_or(0, |h| h.height);
    let mut chain = new_chain();
    extend(&mut chain, start);
    println!("ready {start}");
    for _ in 0..CHILD_MAX_COMMITS {
        let h = chain.height + 1;
        // Safety state first, as consensus does before voting.
        store.put_safety_state(&h.to_be_bytes()).unwrap();
        let b = chain.build(writes_at(h), txs_at(h));
        // Two blocks in three are stored as catch-up stores them, without
        // waiting for the disk, and synced every fifth height: a killed
        // process loses none of them (they are in the system's buffers),
        // and the reopened store must be as consistent as with synced
        // commits alone.
        if h.is_multiple_of(3) {
            store.commit_block(b.clone()).unwrap();
        } else {
            store.commit_block_deferred(b.clone()).unwrap();
        }
        if h.is_multiple_of(5) {
            store.sync_writes().unwrap();
        }
        chain.apply(&b);
        chain.batches.clear();
        println!("committed {h}");
    }
}

/// Checks the reopened store holds exactly the model's first `height`
/// blocks and the state they produce.
fn check_store(store: &RocksStore, model: &mut Chain, acknowledged: u64) -> u64 {
    let Some(genesis) = store.genesis().unwrap() else {
        // Killed before genesis was written: nothing at all may exist.
        assert_eq!(store.head().unwrap(), None);
        assert!(full_state(store).is_empty());
        assert_eq!(store.accumulator().unwrap(), StateAccumulator::new());
        assert_eq!(store.block(1).unwrap(), None);
        assert_eq!(acknowledged, 0);
        return 0;
    };
    assert_eq!(genesis, (genesis_hash(), genesis_doc()));
    let head = store.head().unwrap();
    let height = head.map_or(0, |h| h.height);
    assert!(
        height >= acknowledged,
        "head {height} is below the acknowledged height {acknowledged}"
    );
    assert!(height >= model.height, "the head went backwards");
    extend(model, height);

    let mut parent = genesis_hash();
    for b in &model.batches[..height as usize] {
        let h = b.block.header.height;
        let stored = store.block(h).unwrap().expect("block below head missing");
        assert_eq!(
            stored.header.parent_hash, parent,
            "parents do not chain at {h}"
        );
        assert_eq!(&stored, b.block.block());
        let cert = store.certificate(h).unwrap().expect("certificate missing");
        assert_eq!(cert.block_hash, stored.hash());
        for (i, t) in stored.txs.iter().enumerate() {
            let (loc, r) = store
                .tx_location(&t.id())
                .unwrap()
                .expect("tx index missing");
            assert_eq!((loc.height, loc.index as usize), (h, i));
            assert_eq!(r, receipt(h, i));
        }
        parent = stored.hash();
    }
    assert_eq!(store.block(height + 1).unwrap(), None);
    assert_eq!(store.certificate(height + 1).unwrap(), None);
    if let Some(t) = txs_at(height + 1).first() {
        assert_eq!(store.tx_location(&t.id()).unwrap(), None);
    }

    let mut expected = new_chain();
    extend(&mut expected, height);
    let state = full_state(store);
    assert_eq!(state, expected.state);
    let acc = store.accumulator().unwrap();
    assert_eq!(acc, from_scratch(&state));
    if let Some(h) = head {
        assert_eq!(acc.root(), h.state_root);
        assert_eq!(h.block_hash, parent);
        let safety = store.safety_state().unwrap().expect("safety state missing");
        let s = u64::from_be_bytes(safety.try_into().unwrap());
        assert!(
            s == height || s == height + 1,
            "safety {s} vs head {height}"
        );
    }
    height
}

#[test]
fn killed_writer_restarts_at_a_consistent_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let exe = std::env::current_exe().unwrap();
    let mut model = new_chain();
    let mut heights = Vec::new();
    for i in 0..ITERATIONS {
        let mut child = Command::new(&exe)
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take().unwrap();
        let reader = {
            let (ready, acked) = (ready.clone(), acked.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // libtest prints the test name without a newline
                    // first, so markers are searched, not prefixed.
                    if line.contains("ready ") {
                        ready.store(true, Ordering::SeqCst);
                    }
                    // A line cut short by the kill parses to a smaller
                    // number or not at all; either keeps a lower bound.
                    if let Some((_, h)) = line.split_once("committed ") {
                        if let Ok(h) = h.trim().parse::<u64>() {
                            acked.fetch_max(h, Ordering::SeqCst);
                        }
                    }
                }
            })
        };

        // Every fifth run is killed early, possibly while opening the
        // store or writing genesis; the others mid-way through commits.
        if i % 5 == 0 {
            std::thread::sleep(Duration::from_millis(i * 3 % 20));
        } else {
            let mut waited_ms = 0;
            while !ready.load(Ordering::SeqCst) {
                assert!(waited_ms < 20_000, "child never became ready");
                std::thread::sleep(Duration::from_millis(1));
                waited_ms += 1;
            }
            std::thread::sleep(Duration::from_millis(5 + i * 37 % 80));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();

        let store = RocksStore::open(&path).unwrap();
        let h = check_store(&store, &mut model, acked.load(Ordering::SeqCst));
        heights.push(h);
    }
    println!("heads after each kill: {heights:?}");
    assert!(
        heights.last().copied().unwrap_or(0) > ITERATIONS,
        "the child made too little progress to test anything: {heights:?}"
    );
}

/// Set only in the lock test's child: the store directory to hold open.
const HOLD_ENV: &str = "AIDLEDGER_STORAGE_HOLD_DIR";
const HOLD_TEST: &str = "lock_child_holds_the_store";

#[test]
fn lock_child_holds_the_store() {
    let Some(dir) = std::env::var_os(HOLD_ENV) else {
        return;
    };
    let store = RocksStore::open(&dir).unwrap();
    println!("holding");
    // Until the parent closes our stdin: its end of the pipe closes with
    // it too, so a parent that dies does not leave us holding.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest);
    drop(store);
}

/// A store held by another process, or by another handle in this one, is
/// `Locked` with RocksDB's reason, not a bare I/O error; `open_waiting`
/// opens it once the holder has gone, and gives up with `Locked` after
/// its wait while the holder stays.
#[test]
fn a_held_store_is_locked_and_open_waiting_gets_it_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(RocksStore::open(&path).unwrap());

    // In this process: a second handle.
    let first = RocksStore::open(&path).unwrap();
    match RocksStore::open(&path) {
        Err(aidledger_storage::StorageError::Locked { path: p, detail }) => {
            assert_eq!(p, path.display().to_string());
            assert!(detail.contains("lock"), "{detail}");
        }
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    drop(first);

    // In another process.
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(&exe)
        .args([HOLD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(HOLD_ENV, &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("holding") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
    }
    let e = RocksStore::open(&path).map(|_| ()).unwrap_err();
    assert!(
        matches!(&e, aidledger_storage::StorageError::Locked { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("in use by another process"), "{e}");
    // A short wait while the holder stays: still Locked, after the wait.
    let mut told = 0;
    let e = RocksStore::open_waiting(&path, Duration::from_millis(300), |_| told += 1)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(e, aidledger_storage::StorageError::Locked { .. }),
        "{e}"
    );
    assert_eq!(told, 1, "the wait is announced once");

    // The holder goes away a moment after the wait has begun.
    let stdin = child.stdin.take().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(stdin);
    });
    let mut told = 0;
    let store = RocksStore::open_waiting(&path, Duration::from_secs(30), |_| told += 1).unwrap();
    assert_eq!(told, 1);
    assert!(store.head().is_ok());
    releaser.join().unwrap();
    child.wait().unwrap();
}

/// The store's memory by RocksDB's accounting: memtables that grow with
/// writes, and a block cache within its bound.
#[test]
fn memory_accounting_sees_the_memtables_and_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    store_genesis(&store);
    let before = store.memory();
    assert!(before.memtable_bytes > 0, "{before:?}");
    let mut chain = new_chain();
    for h in 1..=20 {
        let b = chain.build(writes_at(h), txs_at(h));
        store.commit_block(b.clone()).unwrap();
        chain.apply(&b);
    }
    let after = store.memory();
    assert!(
        after.memtable_bytes > before.memtable_bytes,
        "{before:?} {after:?}"
    );
    assert!(after.block_cache_bytes <= 64 * 1024 * 1024, "{after:?}");
    assert!(
        after.block_cache_pinned_bytes <= after.block_cache_bytes,
        "{after:?}"
    );
}
