//! A damaged write-ahead log is reported, never silently truncated: a byte
//! flipped in the middle of RocksDB's log used to make the store reopen
//! dozens of committed blocks earlier without a word (point-in-time
//! recovery). The store now opens with tolerance for a torn last record
//! only (what a crash can leave, never an acknowledged write), so damage
//! anywhere else fails the open with a corruption error.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use aidledger_storage::{RocksStore, Store};
use common::*;

/// The store's live write-ahead logs (`*.log`), largest first.
fn wal_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut logs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| (std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0), p))
        .collect();
    logs.sort_by_key(|l| std::cmp::Reverse(l.0));
    logs.into_iter().map(|(_, p)| p).collect()
}

/// Commits `blocks` blocks and closes the store; they live in the log only.
fn committed_store(blocks: u64) -> (tempfile::TempDir, Chain) {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path()).unwrap();
    let g = genesis_hash();
    let init = initial_state();
    let mut chain = Chain::new(g, &init);
    store_genesis(&store);
    for h in 1..=blocks {
        let key = format!("wal/{h:04}");
        chain.commit(&store, w(&[(key.as_str(), Some("value"))]), 2);
    }
    drop(store);
    (dir, chain)
}

#[test]
fn an_intact_log_reopens_at_the_head() {
    let (dir, chain) = committed_store(60);
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(store.head().unwrap(), chain.head());
    assert_matches_model(&store, &chain);
}

#[test]
fn a_byte_flipped_in_the_middle_of_the_log_fails_the_open_loudly() {
    let (dir, chain) = committed_store(60);
    let logs = wal_files(dir.path());
    let log = logs.first().expect("a write-ahead log");
    let mut bytes = std::fs::read(log).unwrap();
    assert!(bytes.len() > 4096, "log of {} bytes", bytes.len());
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(log, &bytes).unwrap();
    match RocksStore::open(dir.path()) {
        Err(e) => {
            let msg = e.to_string().to_lowercase();
            assert!(
                msg.contains("corrupt") || msg.contains("checksum"),
                "the error must say the log is damaged: {e}"
            );
        }
        Ok(store) => panic!(
            "a damaged log opened silently at {:?} (the chain's head is {:?})",
            store.head().unwrap().map(|h| h.height),
            chain.head().map(|h| h.height)
        ),
    }
}

#[test]
fn a_torn_last_record_is_what_a_crash_leaves_and_opens() {
    // A crash can cut the last, never-acknowledged record short. Cutting
    // bytes off the end of the log must still open, at a consistent head
    // no higher than the last commit.
    let (dir, chain) = committed_store(20);
    let logs = wal_files(dir.path());
    let log = logs.first().expect("a write-ahead log");
    let len = std::fs::metadata(log).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(log).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let store = RocksStore::open(dir.path()).unwrap();
    let head = store.head().unwrap().map(|h| h.height).unwrap_or(0);
    let top = chain.head().map(|h| h.height).unwrap_or(0);
    assert!(head <= top && head + 1 >= top, "head {head}, chain {top}");
}
