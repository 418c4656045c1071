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
        for (prefix, after, limit) in queries {
            let want: Vec<(Vec<u8>, Vec<u8>)> = state
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(&mem.state_scan(&prefix, after.as_deref(), limit).unwrap(), &want);
            prop_assert_eq!(&rocks.state_scan(&prefix, after.as_deref(), limit).unwrap(), &want);
        }
    }
}
