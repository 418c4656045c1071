//! Property tests: random write sequences and scans against a model, on
//! both stores.

// Test helpers outside #[test] functions panic on failure, as the tests do.
#![allow(clippy::unwrap_used)]

mod common;

use aidledger_storage::{MemStore, RocksStore, Store};
use common::*;
use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;

/// A scan of the model: keys with the prefix, strictly after
/// `start_after`, in order, at most `limit`.
fn model_scan(
    state: &State,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    state
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A RocksDB store at `path` holding the test genesis with `initial` as
/// its state, reopened once: reopening flushes what the write-ahead log
/// held into a table file, so later writes land beside it in the memtable.
fn rocks_with_genesis_in_a_table_file(path: &std::path::Path, initial: &State) -> RocksStore {
    let rocks = RocksStore::open(path).unwrap();
    genesis_with(&rocks, initial);
    drop(rocks);
    RocksStore::open(path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// After any sequence of blocks of writes and deletes, both stores hold
    /// the model's state, and the stored accumulator equals the one
    /// computed from scratch.
    #[test]
    fn random_write_sequences_match_the_model(
        blocks in vec((vec((0u8..12, option::of(0u8..4)), 0..12), 0usize..3), 1..8)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksStore::open(dir.path().join("db")).unwrap();
        let mem = MemStore::new();
        let init = initial_state();
        genesis_with(&rocks, &init);
        genesis_with(&mem, &init);
        let mut chain = Chain::new(genesis_hash(), &init);
        for (ops, n_txs) in blocks {
            let writes: Writes = ops
                .into_iter()
                .map(|(k, v)| (vec![b'k', k], v.map(|v| vec![v])))
                .collect();
            let txs = chain.fresh_txs(n_txs);
            let b = chain.build(writes, txs);
            mem.commit_block(b.clone()).unwrap();
            rocks.commit_block(b.clone()).unwrap();
            chain.apply(&b);
        }
        assert_matches_model(&mem, &chain);
        assert_matches_model(&rocks, &chain);
    }

    /// Scans agree with filtering the model: keys with the prefix, strictly
    /// after `start_after`, in order, at most `limit`.
    #[test]
    fn scans_match_the_model(
        keys in btree_set(vec(0u8..3, 0..4), 0..30),
        queries in vec((vec(0u8..3, 0..3), option::of(vec(0u8..3, 0..4)), 0usize..12), 1..16),
    ) {
        let state: State = keys.iter().map(|k| (k.clone(), k.clone())).collect();
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksStore::open(dir.path().join("db")).unwrap();
        let mem = MemStore::new();
        genesis_with(&rocks, &state);
        genesis_with(&mem, &state);
        // One view of each store serves every query, as a block's
        // execution uses it: its iterators are sought again each time.
        let (mem_view, rocks_view) = (mem.state_view(), rocks.state_view());
        for (prefix, after, limit) in queries {
            let want = model_scan(&state, &prefix, after.as_deref(), limit);
            prop_assert_eq!(&mem.state_scan(&prefix, after.as_deref(), limit).unwrap(), &want);
            prop_assert_eq!(&rocks.state_scan(&prefix, after.as_deref(), limit).unwrap(), &want);
            prop_assert_eq!(&mem_view.scan(&prefix, after.as_deref(), limit).unwrap(), &want);
            prop_assert_eq!(&rocks_view.scan(&prefix, after.as_deref(), limit).unwrap(), &want);
            if let Some(key) = after.as_deref() {
                prop_assert_eq!(rocks_view.get(key).unwrap(), state.get(key).cloned());
            }
        }
    }

    /// A walk over `[from, to)` gives the model's pairs in that range, in
    /// order, and stops where its callback says: on RocksDB (one iterator,
    /// keys in a table file and in the memtable, deletions included) and
    /// on the default built on pages of scans (the memory store).
    #[test]
    fn walks_match_the_model(
        first in btree_set(vec(0u8..3, 0..4), 0..30),
        second in vec((vec(0u8..3, 0..4), option::of(0u8..3)), 0..20),
        queries in vec((vec(0u8..3, 0..4), option::of(vec(0u8..3, 0..4)), 1usize..40), 1..16),
    ) {
        let initial: State = first.iter().map(|k| (k.clone(), k.clone())).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let rocks = rocks_with_genesis_in_a_table_file(&path, &initial);
        let mem = MemStore::new();
        genesis_with(&mem, &initial);
        let mut chain = Chain::new(genesis_hash(), &initial);
        let writes: Writes = second.into_iter().map(|(k, v)| (k, v.map(|v| vec![v]))).collect();
        let txs = chain.fresh_txs(1);
        let b = chain.build(writes, txs);
        mem.commit_block(b.clone()).unwrap();
        rocks.commit_block(b.clone()).unwrap();
        chain.apply(&b);
        for (from, to, stop) in queries {
            let want: Vec<(Vec<u8>, Vec<u8>)> = chain
                .state
                .iter()
                .filter(|(k, _)| k.as_slice() >= from.as_slice())
                .filter(|(k, _)| to.as_ref().is_none_or(|t| k < &t))
                .take(stop)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for store in [&mem as &dyn Store, &rocks] {
                let mut got = Vec::new();
                store
                    .state_walk(&from, to.as_deref(), &mut |k, v| {
                        got.push((k.to_vec(), v.to_vec()));
                        got.len() < stop
                    })
                    .unwrap();
                prop_assert_eq!(&got, &want);
            }
        }
    }

    /// The same with keys around the length of the state's filtered prefix
    /// for most keys (16 bytes): scans under prefixes shorter than it, as long and
    /// longer, some keys in table files (written, then the store reopened,
    /// which flushes) and some in the memtable, deleted ones included.
    #[test]
    fn scans_around_the_filtered_prefix_length_match_the_model(
        first in btree_set(vec(0u8..3, 0..5), 0..30),
        second in vec((vec(0u8..3, 0..5), option::of(0u8..3)), 0..20),
        queries in vec((0usize..20, vec(0u8..3, 0..3), option::of(vec(0u8..3, 0..5)), 1usize..12), 1..16),
    ) {
        // 13 shared bytes, then a short random tail: keys of 13 to 17 bytes.
        let long = |tail: &[u8]| -> Vec<u8> {
            let mut k = b"anomaly-open/".to_vec();
            k.extend(tail.iter().map(|b| b'a' + b));
            k
        };
        let initial: State = first.iter().map(|t| (long(t), t.clone())).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let rocks = rocks_with_genesis_in_a_table_file(&path, &initial);
        let tables = std::fs::read_dir(&path)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "sst"))
            .count();
        prop_assert!(tables > 0);
        let mut chain = Chain::new(genesis_hash(), &initial);
        let writes: Writes = second
            .into_iter()
            .map(|(t, v)| (long(&t), v.map(|v| vec![v])))
            .collect();
        chain.commit(&rocks, writes, 1);
        // Taken after the commit; reused by every query, in both modes.
        let state_view = rocks.state_view();
        for (cut, tail, after, limit) in queries {
            // A prefix of 0 to 19 bytes of a long key.
            let full = long(&tail);
            let prefix = full[..cut.min(full.len())].to_vec();
            let after = after.map(|a| long(&a));
            let want = model_scan(&chain.state, &prefix, after.as_deref(), limit);
            prop_assert_eq!(&rocks.state_scan(&prefix, after.as_deref(), limit).unwrap(), &want);
            let view = rocks.point_in_time();
            prop_assert_eq!(&view.state_scan(&prefix, after.as_deref(), limit).unwrap(), &want);
            prop_assert_eq!(&state_view.scan(&prefix, after.as_deref(), limit).unwrap(), &want);
            prop_assert_eq!(state_view.get(&full).unwrap(), chain.state.get(&full).cloned());
        }
    }

    /// The same with household attestations, whose filtered prefix runs
    /// to the slash after the claim: hashes of bytes that include '/',
    /// claims that share a beginning, keys in table files and in the
    /// memtable, scans under every cut of a key (the household alone, a
    /// claim cut short, a whole claim, a whole key) through the store and
    /// through one state view.
    #[test]
    fn attestation_scans_match_the_model(
        first in btree_set((0usize..3, 0usize..3, 0usize..2), 0..12),
        second in vec(((0usize..3, 0usize..3, 0usize..2), option::of(0u8..3)), 0..12),
        queries in vec(((0usize..3, 0usize..3, 0usize..2), 0usize..50, option::of((0usize..3, 0usize..3, 0usize..2)), 1usize..6), 1..16),
    ) {
        const HASHES: [[u8; 32]; 3] = [[b'/'; 32], [7; 32], {
            let mut h = [b'/'; 32];
            h[31] = 9;
            h
        }];
        const CLAIMS: [&str; 3] = ["in", "income", "disability"];
        const ORGS: [&str; 2] = ["civil-affairs", "tax"];
        let key = |(h, c, o): (usize, usize, usize)| -> Vec<u8> {
            let mut k = b"att/h".to_vec();
            k.extend_from_slice(&HASHES[h]);
            k.extend_from_slice(CLAIMS[c].as_bytes());
            k.push(b'/');
            k.extend_from_slice(ORGS[o].as_bytes());
            k
        };
        let initial: State = first.iter().map(|t| (key(*t), vec![1])).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let rocks = RocksStore::open(&path).unwrap();
        genesis_with(&rocks, &initial);
        drop(rocks);
        // Reopening flushes the initial state into a table file.
        let rocks = RocksStore::open(&path).unwrap();
        let mut chain = Chain::new(genesis_hash(), &initial);
        let writes: Writes = second
            .into_iter()
            .map(|(t, v)| (key(t), v.map(|v| vec![v])))
            .collect();
        chain.commit(&rocks, writes, 1);
        let state_view = rocks.state_view();
        for (of, cut, after, limit) in queries {
            let full = key(of);
            let prefix = &full[..cut.min(full.len())];
            let after = after.map(key);
            let want = model_scan(&chain.state, prefix, after.as_deref(), limit);
            prop_assert_eq!(&rocks.state_scan(prefix, after.as_deref(), limit).unwrap(), &want);
            prop_assert_eq!(&state_view.scan(prefix, after.as_deref(), limit).unwrap(), &want);
        }
    }
}
