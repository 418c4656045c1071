//! Hot backup (ADR 017): checkpoints taken while another thread commits
//! blocks each open at a consistent head holding exactly a prefix of the
//! chain, with the state, index and accumulator of that prefix; the live
//! store goes on committing.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aidledger_storage::{RocksStore, Store};
use common::*;

const BLOCKS: u64 = 400;
const CHECKPOINTS: usize = 12;

fn writes_at(h: u64) -> Writes {
    let mut m = Writes::new();
    m.insert(
        format!("every/{h:08}").into_bytes(),
        Some(vec![h as u8; 40]),
    );
    m.insert(
        format!("ring/{:02}", h % 8).into_bytes(),
        Some(h.to_be_bytes().to_vec()),
    );
    if h.is_multiple_of(4) {
        m.insert(format!("every/{:08}", h - 2).into_bytes(), None);
    }
    m
}

/// The model chain the writer commits, built ahead so the checks can
/// compare any prefix.
fn model() -> Chain {
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    for h in 1..=BLOCKS {
        let txs = chain.fresh_txs((h % 3) as usize);
        let b = chain.build(writes_at(h), txs);
        chain.apply(&b);
    }
    chain
}

/// The model's state after `height` blocks.
fn state_at(height: u64) -> State {
    let mut state = initial_state();
    for h in 1..=height {
        for (k, v) in writes_at(h) {
            match v {
                Some(v) => state.insert(k, v),
                None => state.remove(&k),
            };
        }
    }
    state
}

fn check_copy(dir: &std::path::Path, chain: &Chain) -> u64 {
    let copy = RocksStore::open(dir).unwrap();
    let head = copy
        .head()
        .unwrap()
        .expect("a checkpoint after genesis has a head");
    let h = head.height;
    let batch = &chain.batches[h as usize - 1];
    assert_eq!(head.block_hash, batch.block.hash());
    for b in &chain.batches[..h as usize] {
        let height = b.block.header.height;
        assert_eq!(copy.block(height).unwrap().as_ref(), Some(b.block.block()));
        assert_eq!(
            copy.certificate(height).unwrap().as_ref(),
            Some(&b.certificate)
        );
        for (i, t) in b.block.block().txs.iter().enumerate() {
            let (loc, r) = copy.tx_location(&t.id()).unwrap().unwrap();
            assert_eq!((loc.height, loc.index as usize), (height, i));
            assert_eq!(r, receipt(height, i));
        }
    }
    assert_eq!(copy.block(h + 1).unwrap(), None);
    let state = full_state(&copy);
    assert_eq!(state, state_at(h));
    assert_eq!(copy.accumulator().unwrap().root(), head.state_root);
    // The safety state is copied too: written before each commit, so it
    // is for the head or the height after it.
    let s = u64::from_be_bytes(copy.safety_state().unwrap().unwrap().try_into().unwrap());
    assert!(s == h || s == h + 1, "safety {s} vs head {h}");
    h
}

#[test]
fn checkpoints_taken_during_commits_hold_a_consistent_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path().join("db")).unwrap());
    store_genesis(store.as_ref());
    let chain = model();
    let committed = Arc::new(AtomicU64::new(0));
    // Checkpoint i is taken once the writer has passed mark(i + 1), and the
    // writer does not go past mark(i + 2) until checkpoint i is done. Every
    // checkpoint then overlaps the commits whatever the scheduling (another
    // test loading the cores made this flaky when it was left to timing).
    let done = Arc::new(AtomicU64::new(0));
    let mark = |k: u64| k * BLOCKS / (CHECKPOINTS as u64 + 2);
    let writer = {
        let (store, committed, batches) = (store.clone(), committed.clone(), chain.batches.clone());
        let done = done.clone();
        std::thread::spawn(move || {
            let mut waits = 0u32;
            for b in batches {
                let h = b.block.header.height;
                loop {
                    let d = done.load(Ordering::SeqCst);
                    if d >= CHECKPOINTS as u64 || h <= mark(d + 2) {
                        break;
                    }
                    waits += 1;
                    assert!(waits < 60_000, "the checkpoints stalled");
                    std::thread::sleep(Duration::from_millis(1));
                }
                store.put_safety_state(&h.to_be_bytes()).unwrap();
                store.commit_block(b).unwrap();
                committed.store(h, Ordering::SeqCst);
            }
        })
    };
    // At most about 60 s of waiting in all.
    let mut waits = 0u32;
    let mut taken = Vec::new();
    for i in 0..CHECKPOINTS {
        // Spread the checkpoints over the writer's run.
        while committed.load(Ordering::SeqCst) < mark(i as u64 + 1) {
            waits += 1;
            assert!(waits < 60_000, "the writer stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
        let out = dir.path().join(format!("cp{i}"));
        let head = store.checkpoint(&out).unwrap().unwrap();
        taken.push((out, head.height));
        done.fetch_add(1, Ordering::SeqCst);
    }
    writer.join().unwrap();
    assert_eq!(store.head().unwrap().unwrap().height, BLOCKS);

    let heights: Vec<u64> = taken
        .iter()
        .map(|(d, h)| {
            let opened = check_copy(d, &chain);
            assert_eq!(opened, *h, "the reported head is the copy's head");
            opened
        })
        .collect();
    println!("checkpoint heads: {heights:?}");
    assert!(heights.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        heights.first() < heights.last(),
        "the checkpoints did not overlap the commits: {heights:?}"
    );
    // Each was taken while the writer ran, between its two marks.
    for (i, h) in heights.iter().enumerate() {
        let i = i as u64;
        assert!(
            (mark(i + 1)..=mark(i + 2)).contains(h),
            "checkpoint {i} outside its marks: {heights:?}"
        );
    }
}

#[test]
fn a_checkpoint_goes_only_to_a_new_directory_and_not_from_a_read_only_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = RocksStore::open(&path).unwrap();
    store_genesis(&store);
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    chain.commit(&store, writes_at(1), 2);
    // An existing directory, even empty, is refused and left as it was.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep"), b"x").unwrap();
    let e = store.checkpoint(&existing).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert_eq!(std::fs::read(existing.join("keep")).unwrap(), b"x");
    assert_eq!(std::fs::read_dir(&existing).unwrap().count(), 1);
    // An auditor's read-only handle cannot take one.
    let ro = RocksStore::open_read_only(&path).unwrap();
    assert!(ro.checkpoint(dir.path().join("ro")).is_err());
    assert!(!dir.path().join("ro").exists());
    // The copy is independent: the live store moves on, the copy stays.
    let cp = dir.path().join("cp");
    assert_eq!(store.checkpoint(&cp).unwrap().unwrap().height, 1);
    chain.commit(&store, writes_at(2), 1);
    drop(store);
    let copy = RocksStore::open(&cp).unwrap();
    assert_eq!(copy.head().unwrap().unwrap().height, 1);
}

/// A point-in-time view taken between two commits reads that moment's
/// head, accumulator and state to the end, while the store goes on.
#[test]
fn a_point_in_time_view_keeps_its_moment_while_blocks_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    store_genesis(&store);
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    for h in 1..=5 {
        chain.commit(&store, writes_at(h), 1);
    }
    let view = store.point_in_time();
    let head = store.head().unwrap();
    let acc = store.accumulator().unwrap();
    for h in 6..=12 {
        chain.commit(&store, writes_at(h), 1);
    }
    assert_ne!(store.head().unwrap(), head, "the store moved on");
    assert_eq!(view.head().unwrap(), head);
    assert_eq!(view.accumulator().unwrap().root(), acc.root());
    assert!(view.block(5).unwrap().is_some() && view.block(6).unwrap().is_none());
    let want: Vec<(Vec<u8>, Vec<u8>)> = state_at(5)
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"every/"))
        .collect();
    assert_eq!(view.state_scan(b"every/", None, usize::MAX).unwrap(), want);
    assert_eq!(
        view.state_get(b"ring/06").unwrap(),
        None,
        "height 6 wrote it after the view"
    );
    assert_eq!(
        view.state_get(b"ring/05").unwrap(),
        Some(5u64.to_be_bytes().to_vec())
    );
}
