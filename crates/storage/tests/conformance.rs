//! The conformance suite against both stores, and the RocksDB-only checks:
//! persistence across reopen, corruption detection and read-only access.

// Test helpers outside #[test] functions panic on failure, as the tests do.
#![allow(clippy::unwrap_used)]

mod common;

use aidledger_storage::{keys, Cf, MemStore, RocksStore, StorageError, Store, BLOCKS_RANGE_MAX};
use aidledger_types::codec;
use common::*;

fn rocks() -> (tempfile::TempDir, RocksStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    (dir, store)
}

/// A store at genesis with a few blocks, and the model that built it.
fn populated(store: &dyn Store, blocks: u64) -> Chain {
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    store_genesis(store);
    for h in 1..=blocks {
        let v = h.to_string();
        chain.commit(store, w(&[("k", Some(v.as_str())), ("init/b", None)]), 2);
    }
    chain
}

#[test]
fn mem_store_conforms() {
    run_conformance(&MemStore::new());
}

#[test]
fn rocks_store_conforms() {
    let (_dir, store) = rocks();
    run_conformance(&store);
}

#[test]
fn rocks_store_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut chain = {
        let store = RocksStore::open(&path).unwrap();
        let chain = populated(&store, 5);
        store.put_safety_state(b"safety").unwrap();
        store.meta_put("m", b"v").unwrap();
        chain
    };
    let store = RocksStore::open(&path).unwrap();
    assert_matches_model(&store, &chain);
    assert_eq!(store.safety_state().unwrap(), Some(b"safety".to_vec()));
    assert_eq!(store.meta_get("m").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        store.genesis().unwrap(),
        Some((genesis_hash(), genesis_doc()))
    );
    chain.commit(&store, w(&[("after-reopen", Some("x"))]), 1);
    assert_matches_model(&store, &chain);
}

/// A RocksDB state view reads at the moment it was taken: a commit made
/// while it lives changes none of its answers, point reads and scans in
/// both of its iterators' modes alike, and a view taken after the commit
/// sees it, whether its iterators were made before the commit or after.
/// (The node drops its view before it commits; this is what the view
/// would do if it did not.)
#[test]
fn rocks_state_view_reads_at_its_moment() {
    let (_dir, store) = rocks();
    let mut chain = populated(&store, 1);
    let long = "att/household-0001/income/";
    let key = |org: &str| format!("{long}{org}");
    let before = [(key("org-a"), Some("1")), (key("org-b"), Some("2"))];
    let pairs: Vec<(&str, Option<&str>)> = before.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    chain.commit(&store, w(&pairs), 1);
    let old_short = store.state_scan(b"k", None, 10).unwrap();
    assert!(!old_short.is_empty());
    let view = store.state_view();
    // The long prefix's iterator is made before the commit below, the
    // short one's only after it: both must read at the view's moment.
    let scan_long =
        |v: &dyn aidledger_storage::StateView| v.scan(long.as_bytes(), None, 10).unwrap();
    let old_long = scan_long(&*view);
    assert_eq!(old_long.len(), 2);
    // Changed, deleted and added, under both prefixes.
    let changed = key("org-a");
    let deleted = key("org-b");
    let added = key("org-c");
    chain.commit(
        &store,
        w(&[
            (changed.as_str(), Some("9")),
            (deleted.as_str(), None),
            (added.as_str(), Some("3")),
            ("k", Some("new")),
            ("k2", Some("x")),
        ]),
        1,
    );
    assert_eq!(scan_long(&*view), old_long);
    assert_eq!(view.scan(b"k", None, 10).unwrap(), old_short);
    assert_eq!(view.get(changed.as_bytes()).unwrap(), Some(b"1".to_vec()));
    assert_eq!(view.get(deleted.as_bytes()).unwrap(), Some(b"2".to_vec()));
    assert_eq!(view.get(added.as_bytes()).unwrap(), None);
    drop(view);
    let now = store.state_view();
    assert_eq!(
        scan_long(&*now),
        store.state_scan(long.as_bytes(), None, 10).unwrap()
    );
    assert_eq!(
        scan_long(&*now)
            .iter()
            .map(|(k, v)| (String::from_utf8(k.clone()).unwrap(), v.clone()))
            .collect::<Vec<_>>(),
        vec![
            (changed.clone(), b"9".to_vec()),
            (added.clone(), b"3".to_vec())
        ]
    );
    assert_eq!(
        now.scan(b"k", None, 10).unwrap(),
        store.state_scan(b"k", None, 10).unwrap()
    );
    assert_eq!(now.get(b"k").unwrap(), Some(b"new".to_vec()));
    assert_matches_model(&store, &chain);
}

/// Deferred commits (catch-up, ADR 007 amendment of 2026-12-06) make the
/// same checks, store the same things and are readable at once; a sync
/// and a reopen keep them, and a synced write after them keeps its place.
#[test]
fn deferred_commits_check_and_store_what_synced_commits_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let chain = {
        let store = RocksStore::open(&path).unwrap();
        let mut chain = populated(&store, 2);
        for h in 3..=6u64 {
            let v = h.to_string();
            let txs = chain.fresh_txs(3);
            let b = chain.build(w(&[("k", Some(v.as_str()))]), txs);
            // A block for the wrong height is refused as commit_block
            // refuses it, and nothing of it is written.
            let mut wrong = b.clone();
            rewrite(&mut wrong, |blk| blk.header.height += 1);
            assert!(store.commit_block_deferred(wrong).is_err());
            assert_eq!(store.head().unwrap(), chain.head());
            store.commit_block_deferred(b.clone()).unwrap();
            chain.apply(&b);
            assert_matches_model(&store, &chain);
            // The same block twice: refused, as a synced commit would be.
            assert!(store.commit_block_deferred(b).is_err());
        }
        store.sync_writes().unwrap();
        store
            .put_safety_state(b"after the deferred blocks")
            .unwrap();
        chain.commit(&store, w(&[("k", Some("7"))]), 1);
        chain
    };
    let store = RocksStore::open(&path).unwrap();
    assert_matches_model(&store, &chain);
    assert_eq!(
        store.safety_state().unwrap(),
        Some(b"after the deferred blocks".to_vec())
    );
    // A read-only store cannot sync, as it cannot write.
    drop(store);
    let ro = RocksStore::open_read_only(&path).unwrap();
    assert!(ro.sync_writes().is_err());
}

#[test]
fn mem_snapshot_is_a_deep_copy() {
    let store = MemStore::new();
    let mut chain = populated(&store, 3);
    let snap = store.snapshot();
    let at_snapshot = chain.clone();
    chain.commit(&store, w(&[("later", Some("y"))]), 1);
    assert_matches_model(&store, &chain);
    assert_matches_model(&snap, &at_snapshot);
}

#[test]
fn mem_blocks_range_is_capped() {
    let store = MemStore::new();
    let chain = populated(&store, BLOCKS_RANGE_MAX as u64 + 5);
    let got = store.blocks_range(1, u64::MAX).unwrap();
    assert_eq!(got.len(), BLOCKS_RANGE_MAX);
    assert_eq!(&got[0], chain.batches[0].block.block());
    let rest = store
        .blocks_range(BLOCKS_RANGE_MAX as u64 + 1, u64::MAX)
        .unwrap();
    assert_eq!(rest.len(), 5);
}

#[test]
fn rocks_corrupt_bytes_are_detected() {
    let (_dir, store) = rocks();
    let chain = populated(&store, 3);
    let with_extra = |cf: Cf, key: &[u8]| {
        let mut b = store.raw_get(cf, key).unwrap().unwrap();
        b.push(0);
        store.raw_put(cf, key, &b).unwrap();
    };
    let truncate = |cf: Cf, key: &[u8]| {
        let mut b = store.raw_get(cf, key).unwrap().unwrap();
        b.pop();
        store.raw_put(cf, key, &b).unwrap();
    };

    with_extra(Cf::Blocks, &keys::height(2));
    assert_corrupt(store.block(2), "blocks");
    assert_corrupt(store.blocks_range(1, 3), "blocks");
    assert!(store.block(1).unwrap().is_some());

    // A well-formed block stored under the wrong height.
    let b1 = store
        .raw_get(Cf::Blocks, &keys::height(1))
        .unwrap()
        .unwrap();
    store.raw_put(Cf::Blocks, &keys::height(3), &b1).unwrap();
    assert_corrupt(store.block(3), "blocks");

    truncate(Cf::Certificates, &keys::height(1));
    assert_corrupt(store.certificate(1), "certificates");
    assert_corrupt(store.block_hash(1), "certificates");

    let id = chain.batches[0].block.txs[0].id();
    with_extra(Cf::TxIndex, &keys::tx(&id));
    assert_corrupt(store.tx_location(&id), "tx_index");

    with_extra(Cf::Meta, keys::ACCUMULATOR);
    assert_corrupt(store.accumulator(), "meta");
    store
        .raw_put(
            Cf::Meta,
            keys::ACCUMULATOR,
            &codec::encode(&aidledger_types::state_root::AccumulatorBytes(vec![0; 3])),
        )
        .unwrap();
    assert_corrupt(store.accumulator(), "meta");

    truncate(Cf::Meta, keys::GENESIS_HASH);
    assert_corrupt(store.genesis(), "meta");

    with_extra(Cf::Meta, keys::HEAD);
    assert_corrupt(store.head(), "meta");
    // A corrupt head also stops commits rather than extending garbage.
    let mut next = chain.clone();
    let txs = next.fresh_txs(1);
    assert_corrupt(store.commit_block(next.build(w(&[]), txs)), "meta");
}

#[test]
fn rocks_open_refuses_an_inconsistent_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = RocksStore::open(&path).unwrap();
        populated(&store, 3);
        store.raw_delete(Cf::Blocks, &keys::height(3)).unwrap();
    }
    assert_corrupt(RocksStore::open(&path), "blocks");
    {
        let ro = RocksStore::open_read_only(&path).unwrap();
        assert_corrupt(ro.check_head(), "blocks");
        assert_eq!(ro.head().unwrap().map(|h| h.height), Some(3));
    }

    let dir2 = tempfile::tempdir().unwrap();
    let path2 = dir2.path().join("db");
    {
        let store = RocksStore::open(&path2).unwrap();
        populated(&store, 2);
        let b = store
            .raw_get(Cf::Blocks, &keys::height(2))
            .unwrap()
            .unwrap();
        store.raw_put(Cf::Blocks, &keys::height(3), &b).unwrap();
    }
    assert_corrupt(RocksStore::open(&path2), "blocks");
}

#[test]
fn rocks_read_only_opens_while_a_writer_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let writer = RocksStore::open(&path).unwrap();
    let mut chain = populated(&writer, 3);
    writer.put_safety_state(b"s").unwrap();

    let ro = RocksStore::open_read_only(&path).unwrap();
    assert!(ro.is_read_only());
    assert_matches_model(&ro, &chain);
    assert_eq!(ro.check_head().unwrap(), chain.head());
    assert_eq!(ro.safety_state().unwrap(), Some(b"s".to_vec()));

    // Every write path is refused and the writer is unaffected.
    let txs = chain.fresh_txs(1);
    let next = chain.build(w(&[("x", Some("1"))]), txs);
    assert_eq!(ro.commit_block(next.clone()), Err(StorageError::ReadOnly));
    assert_eq!(ro.put_safety_state(b"t"), Err(StorageError::ReadOnly));
    assert_eq!(ro.meta_put("m", b"v"), Err(StorageError::ReadOnly));
    assert_eq!(
        ro.raw_put(Cf::Meta, b"x", b"y"),
        Err(StorageError::ReadOnly)
    );
    assert_eq!(
        ro.raw_delete(Cf::Meta, keys::HEAD),
        Err(StorageError::ReadOnly)
    );
    assert_eq!(
        ro.put_genesis(
            genesis_hash(),
            genesis_doc(),
            initial_state(),
            from_scratch(&initial_state())
        ),
        Err(StorageError::ReadOnly)
    );

    writer.commit_block(next.clone()).unwrap();
    chain.apply(&next);
    assert_matches_model(&writer, &chain);
    // A read-only view is fixed at open; a new one sees the new block.
    assert_eq!(ro.head().unwrap().map(|h| h.height), Some(3));
    let ro2 = RocksStore::open_read_only(&path).unwrap();
    assert_matches_model(&ro2, &chain);
}

/// The read-only open tries again when a table file is missing (a running
/// node's compaction may delete one the MANIFEST it read still lists), but
/// a file that stays missing is reported, named, not taken as an empty
/// store.
#[test]
fn rocks_read_only_reports_a_table_file_that_stays_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let writer = RocksStore::open(&path).unwrap();
        populated(&writer, 3);
    }
    // Reopening replays the log into table files.
    drop(RocksStore::open(&path).unwrap());
    let table = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "sst"))
        .expect("the reopened store has a table file");
    std::fs::remove_file(&table).unwrap();

    let detail = match RocksStore::open_read_only(&path) {
        Err(StorageError::Rocks(detail)) => detail,
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("a store missing a table file opened"),
    };
    assert!(aidledger_storage::is_vanished_file(&detail), "{detail}");
    let name = table.file_name().unwrap().to_str().unwrap();
    assert!(detail.contains(name), "{detail}");
}

#[test]
fn rocks_read_only_of_a_missing_store_fails() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        RocksStore::open_read_only(dir.path().join("nothing")),
        Err(StorageError::Rocks(_))
    ));
}

#[test]
fn stores_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RocksStore>();
    assert_send_sync::<MemStore>();
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemStore::new());
    populated(store.as_ref(), 1);
    let s2 = store.clone();
    let h = std::thread::spawn(move || s2.head().unwrap().map(|h| h.height));
    assert_eq!(h.join().unwrap(), Some(1));
}

#[test]
fn batched_index_reads_give_what_single_reads_give() {
    let (_dir, rs) = rocks();
    let mem = MemStore::new();
    for store in [&rs as &dyn Store, &mem] {
        let chain = populated(store, 4);
        let mut ids: Vec<aidledger_types::Hash> = chain
            .batches
            .iter()
            .flat_map(|b| b.block.txs.iter().map(|t| t.id()))
            .collect();
        assert!(ids.len() >= 8, "the chain has transactions to look up");
        // Unknown ids, one of them repeated, in the middle of known ones.
        let missing = aidledger_types::hash::sha256(b"not a transaction");
        ids.insert(3, missing);
        ids.push(missing);
        ids.push(ids[0]);
        let batched = store.tx_locations(&ids);
        assert_eq!(batched.len(), ids.len());
        for (id, got) in ids.iter().zip(batched) {
            let single = store.tx_location(id).unwrap();
            assert_eq!(got.unwrap(), single, "{id:?}");
        }
        assert!(store.tx_locations(&ids)[3].as_ref().unwrap().is_none());
        assert!(store.tx_locations(&[]).is_empty());
    }
    // A corrupt entry fails its own slot only.
    let (_dir2, store) = rocks();
    let chain = populated(&store, 2);
    let a = chain.batches[0].block.txs[0].id();
    let b = chain.batches[1].block.txs[0].id();
    let mut bytes = store.raw_get(Cf::TxIndex, &keys::tx(&a)).unwrap().unwrap();
    bytes.push(0);
    store.raw_put(Cf::TxIndex, &keys::tx(&a), &bytes).unwrap();
    let mut got = store.tx_locations(&[a, b]);
    let second = got.pop().unwrap();
    let first = got.pop().unwrap();
    assert_corrupt(first, "tx_index");
    assert!(second.unwrap().is_some());
}

/// What a validator does: check a block before its vote (on the head, or
/// on the pending block before it), then commit it. A checked block
/// commits without its ids being read again (RocksDB); a check never lets
/// an id through a later commit that the commit's own check would refuse.
fn checked_blocks_commit_and_repeats_stay_refused(store: &dyn Store) {
    let mut chain = populated(store, 2);
    let check = |b: &aidledger_storage::CommitBatch,
                 pending: Option<&aidledger_storage::PendingParent<'_>>| {
        store.check_commit_block(
            &b.block,
            &b.state_writes,
            &b.receipts,
            &b.block_events,
            &b.accumulator,
            pending,
        )
    };
    // A pending block and its child, both checked before either commits.
    let txs = chain.fresh_txs(3);
    let p = chain.build(w(&[("k", Some("3"))]), txs);
    check(&p, None).unwrap();
    let child_txs = chain.fresh_txs(2);
    let mut model = chain.clone();
    model.apply(&p);
    let pending = aidledger_storage::PendingParent {
        height: 3,
        hash: p.block.hash(),
        ids: p.block.ids(),
    };
    let child = model.build(w(&[("k", Some("4"))]), child_txs.clone());
    check(&child, Some(&pending)).unwrap();
    // A child repeating one of the pending block's transactions fails.
    let repeat = model.build(
        w(&[("k", Some("4"))]),
        vec![p.block.txs[0].clone(), child_txs[0].clone()],
    );
    assert!(matches!(
        check(&repeat, Some(&pending)),
        Err(StorageError::DuplicateTx { .. })
    ));
    store.commit_block(p.clone()).unwrap();
    chain.apply(&p);
    store.commit_block(child.clone()).unwrap();
    chain.apply(&child);
    assert_matches_model(store, &chain);
    // The repeat, checked and refused above, is refused at commit too.
    assert!(store.commit_block(repeat).is_err());

    // A block checked on the head, then another at its height committed
    // instead (a view change), which repeats one of its transactions.
    let shared = chain.fresh_txs(1);
    let mut txs = shared.clone();
    txs.extend(chain.fresh_txs(1));
    let abandoned = chain.build(w(&[("k", Some("5"))]), txs);
    check(&abandoned, None).unwrap();
    let mut txs = shared.clone();
    txs.extend(chain.fresh_txs(1));
    let winner = chain.build(w(&[("k", Some("5b"))]), txs);
    store.commit_block(winner.clone()).unwrap();
    chain.apply(&winner);
    // The abandoned block no longer extends the head.
    assert!(store.commit_block(abandoned).is_err());
    // A block repeating the shared transaction: refused by the check and
    // by the commit, whatever was checked before.
    let mut txs = shared;
    txs.extend(chain.fresh_txs(1));
    let late = chain.build(w(&[("k", Some("6"))]), txs);
    assert!(matches!(
        check(&late, None),
        Err(StorageError::DuplicateTx { .. })
    ));
    assert!(matches!(
        store.commit_block(late),
        Err(StorageError::DuplicateTx { .. })
    ));
    assert_matches_model(store, &chain);
    // The same block checked twice, then committed, then sent again.
    let txs = chain.fresh_txs(2);
    let again = chain.build(w(&[("k", Some("6"))]), txs);
    check(&again, None).unwrap();
    check(&again, None).unwrap();
    store.commit_block(again.clone()).unwrap();
    chain.apply(&again);
    assert!(store.commit_block(again).is_err());
    assert_matches_model(store, &chain);
}

#[test]
fn checked_blocks_commit_and_repeats_stay_refused_mem() {
    checked_blocks_commit_and_repeats_stay_refused(&MemStore::new());
}

#[test]
fn checked_blocks_commit_and_repeats_stay_refused_rocks() {
    let (_dir, store) = rocks();
    checked_blocks_commit_and_repeats_stay_refused(&store);
}
