//! Receipts by height and the location-only transaction index (ADR 025):
//! the layout written, stores of the older form read unmigrated (whole or
//! upgraded in place), and damage to either column family reported.

// Test helpers outside #[test] functions panic on failure, as the tests do.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use aidledger_storage::{
    keys, Cf, LegacyTxEntry, RocksStore, StorageError, Store, TxLocation, RECEIPT_MAX_BYTES,
};
use aidledger_types::codec;
use common::*;

/// A store at genesis with `blocks` blocks of `txs` transactions each.
fn populated(store: &dyn Store, blocks: u64, txs: usize) -> Chain {
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    store_genesis(store);
    for h in 1..=blocks {
        let v = h.to_string();
        chain.commit(store, w(&[("k", Some(v.as_str()))]), txs);
    }
    chain
}

/// Every committed transaction: id, location and receipt.
fn committed(chain: &Chain) -> Vec<(aidledger_types::Hash, TxLocation, Vec<u8>)> {
    chain
        .batches
        .iter()
        .flat_map(|b| {
            let h = b.block.header.height;
            b.block.txs.iter().enumerate().map(move |(i, t)| {
                let loc = TxLocation {
                    height: h,
                    index: i as u32,
                };
                (t.id(), loc, b.receipts[i].clone())
            })
        })
        .collect()
}

/// Rewrites the index entry of `id` into the form stores held before
/// ADR 025 (location and receipt together) and deletes its receipt from
/// `receipts`, as such a store has it.
fn to_legacy(store: &RocksStore, id: &aidledger_types::Hash, loc: TxLocation, receipt: &[u8]) {
    let entry = LegacyTxEntry {
        location: loc,
        receipt: receipt.to_vec(),
    };
    store
        .raw_put(Cf::TxIndex, &keys::tx(id), &codec::encode(&entry))
        .unwrap();
    store
        .raw_delete(Cf::Receipts, &keys::receipt(loc.height, loc.index))
        .unwrap();
}

#[test]
fn the_index_holds_the_location_and_the_receipt_is_stored_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    let chain = populated(&store, 3, 4);
    let all = committed(&chain);
    assert_eq!(all.len(), 12);
    for (id, loc, receipt) in &all {
        let value = store.raw_get(Cf::TxIndex, &keys::tx(id)).unwrap().unwrap();
        assert_eq!(value, codec::encode(loc), "the index value is the location");
        assert_eq!(value.len(), 12);
        let stored = store
            .raw_get(Cf::Receipts, &keys::receipt(loc.height, loc.index))
            .unwrap();
        assert_eq!(stored.as_deref(), Some(receipt.as_slice()));
    }
    // Receipt keys sort in chain order: height, then index.
    assert!(keys::receipt(1, u32::MAX) < keys::receipt(2, 0));
    assert!(keys::receipt(2, 1) < keys::receipt(2, 256));
    assert_matches_model(&store, &chain);
}

#[test]
fn entries_of_the_older_form_read_as_before_side_by_side_with_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    let mut chain = populated(&store, 4, 3);
    let all = committed(&chain);
    // Every other entry in the older form: a list read mixes both.
    for (id, loc, receipt) in all.iter().step_by(2) {
        to_legacy(&store, id, *loc, receipt);
    }
    assert_matches_model(&store, &chain);
    let ids: Vec<_> = all.iter().map(|(id, _, _)| *id).collect();
    for ((_, loc, receipt), got) in all.iter().zip(store.tx_locations(&ids)) {
        assert_eq!(got.unwrap(), Some((*loc, receipt.clone())));
    }
    // An id indexed in the older form is still refused a second time.
    let (old_id, _, _) = all[0];
    let old_tx = chain.batches[0].block.txs[0].clone();
    assert_eq!(old_tx.id(), old_id);
    let again = chain.build(w(&[]), vec![old_tx]);
    assert!(
        matches!(
            store.commit_block(again),
            Err(StorageError::DuplicateTx {
                existing_height: 1,
                ..
            })
        ),
        "a transaction of the older form is known to the duplicate check"
    );
    // New blocks keep committing in the current form.
    chain.commit(&store, w(&[("later", Some("x"))]), 2);
    assert_matches_model(&store, &chain);
}

/// Rewrites the store at `path` as one written before ADR 025: every
/// index entry in the older form and no `receipts` column family.
fn make_pre_adr_025(path: &Path, chain: &Chain) {
    let store = RocksStore::open(path).unwrap();
    for (id, loc, receipt) in committed(chain) {
        to_legacy(&store, &id, loc, &receipt);
    }
    drop(store);
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let mut db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, &names).unwrap();
    db.drop_cf(Cf::Receipts.name()).unwrap();
    drop(db);
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    assert!(!names.iter().any(|n| n == "receipts"), "{names:?}");
}

#[test]
fn a_store_from_before_the_receipts_column_family_opens_read_only_and_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut chain = {
        let store = RocksStore::open(&path).unwrap();
        populated(&store, 3, 3)
    };
    make_pre_adr_025(&path, &chain);

    // An auditor opens it read-only, without writing to it: everything
    // reads, receipts included.
    {
        let ro = RocksStore::open_read_only(&path).unwrap();
        assert_matches_model(&ro, &chain);
    }
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap();
    assert!(!names.iter().any(|n| n == "receipts"), "read-only wrote");

    // A node opens it read-write: the column family is created, old
    // entries stay as they are, new blocks are written in the new form.
    {
        let store = RocksStore::open(&path).unwrap();
        assert_matches_model(&store, &chain);
        chain.commit(&store, w(&[("upgraded", Some("yes"))]), 3);
        assert_matches_model(&store, &chain);
        let first = chain.batches[0].block.txs[0].id();
        let newest = chain.batches.last().unwrap().block.txs[0].id();
        let old_len = store.raw_get(Cf::TxIndex, &keys::tx(&first)).unwrap();
        let new_len = store.raw_get(Cf::TxIndex, &keys::tx(&newest)).unwrap();
        assert!(old_len.unwrap().len() > 12);
        assert_eq!(new_len.unwrap().len(), 12);
    }
    let ro = RocksStore::open_read_only(&path).unwrap();
    assert_matches_model(&ro, &chain);
}

#[test]
fn a_missing_or_oversized_receipt_is_reported_as_corruption_in_its_own_slot() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    let chain = populated(&store, 2, 2);
    let all = committed(&chain);
    let (a, la, _) = all[0];
    let (b, lb, rb) = all[3].clone();

    store
        .raw_delete(Cf::Receipts, &keys::receipt(la.height, la.index))
        .unwrap();
    assert_corrupt(store.tx_location(&a), "receipts");
    let mut got = store.tx_locations(&[a, b]);
    assert_eq!(got.pop().unwrap().unwrap(), Some((lb, rb)));
    assert_corrupt(got.pop().unwrap(), "receipts");

    // Larger than any commit accepts.
    store
        .raw_put(
            Cf::Receipts,
            &keys::receipt(la.height, la.index),
            &vec![7; RECEIPT_MAX_BYTES + 1],
        )
        .unwrap();
    assert_corrupt(store.tx_location(&a), "receipts");
    assert_corrupt(store.tx_locations(&[a]).pop().unwrap(), "receipts");

    // An index value of neither form (13 bytes is not a location, and is
    // too short for an entry of the older form).
    store
        .raw_put(Cf::TxIndex, &keys::tx(&b), &[0u8; 13])
        .unwrap();
    assert_corrupt(store.tx_location(&b), "tx_index");
    // The duplicate check reads the index too and reports the damage
    // rather than taking the id for new.
    let tx = chain.batches[1].block.txs[1].clone();
    assert_eq!(tx.id(), b);
    let again = chain.build(w(&[]), vec![tx]);
    assert_corrupt(store.commit_block(again), "tx_index");
}

/// The auditor's whole-index walk (ADR 008) and receipts read by height:
/// every entry once, in id order, within the bounds asked, with its form;
/// a caller that stops early stops the walk; the receipts of a block in
/// order, absent where an entry holds its own.
#[test]
fn the_index_walks_whole_in_id_order_and_receipts_read_by_height() {
    use aidledger_storage::{IndexEntry, MemStore};
    use aidledger_types::Hash;

    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    let chain = populated(&store, 4, 3);
    let mut all = committed(&chain);
    // One entry of the older form.
    let (old_id, old_loc, old_receipt) = all[4].clone();
    to_legacy(&store, &old_id, old_loc, &old_receipt);
    all.sort_by_key(|(id, _, _)| *id);
    let expect = |from: &Hash, to: Option<&Hash>| -> Vec<IndexEntry> {
        all.iter()
            .filter(|(id, _, _)| id >= from && to.is_none_or(|t| id < t))
            .map(|(id, loc, _)| IndexEntry {
                id: *id,
                location: *loc,
                receipt_inline: *id == old_id,
            })
            .collect()
    };
    let walk = |s: &dyn Store, from: &Hash, to: Option<&Hash>, stop: usize| {
        let mut seen = Vec::new();
        s.index_walk(from, to, &mut |e| {
            seen.push(*e);
            seen.len() < stop
        })
        .expect("a walk")
        .unwrap();
        seen
    };
    let zero = Hash([0; 32]);
    assert_eq!(walk(&store, &zero, None, usize::MAX), expect(&zero, None));
    let (a, b) = (all[3].0, all[9].0);
    assert_eq!(walk(&store, &a, Some(&b), usize::MAX), expect(&a, Some(&b)));
    assert_eq!(walk(&store, &b, Some(&a), usize::MAX), Vec::new());
    assert_eq!(
        walk(&store, &zero, None, 2),
        expect(&zero, None)[..2].to_vec()
    );

    // Receipts by height: block 2 in order; the older-form entry's is in
    // the index, not under its height.
    let of = |h: u64| -> Vec<Option<Vec<u8>>> {
        committed(&chain)
            .into_iter()
            .filter(|(_, l, _)| l.height == h)
            .map(|(id, _, r)| (id != old_id).then_some(r))
            .collect()
    };
    for h in 1..=4 {
        let got: Vec<_> = store
            .receipts_at(h, 3)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, of(h), "height {h}");
    }
    assert_eq!(
        store
            .receipts_at(9, 2)
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        vec![None, None]
    );

    // An entry that does not decode ends the walk with an error.
    store
        .raw_put(Cf::TxIndex, &keys::tx(&Hash([0xff; 32])), b"\x01")
        .unwrap();
    assert!(store
        .index_walk(&zero, None, &mut |_| true)
        .unwrap()
        .is_err());

    // The in-memory store's entries hold their receipts.
    let mem = MemStore::new();
    let chain = populated(&mem, 2, 2);
    let seen = walk(&mem, &zero, None, usize::MAX);
    assert_eq!(seen.len(), committed(&chain).len());
    assert!(seen.iter().all(|e| e.receipt_inline));
}

/// A damaged table file under the transaction index: the whole-index walk
/// reports the damage as an error, never a shorter index, whatever part
/// of the id space it was asked for.
#[test]
fn a_damaged_index_table_fails_the_walk() {
    use aidledger_types::Hash;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = RocksStore::open(&path).unwrap();
        populated(&store, 6, 40);
    }
    // Reopening flushes every column family into table files.
    drop(RocksStore::open(&path).unwrap());
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).unwrap();
    let files: Vec<String> = {
        let db =
            rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), &path, &names, false)
                .unwrap();
        db.live_files()
            .unwrap()
            .into_iter()
            .filter(|f| f.column_family_name == Cf::TxIndex.name())
            .map(|f| f.name)
            .collect()
    };
    assert!(!files.is_empty(), "the index is in no table file");
    for name in &files {
        let p = path.join(name.trim_start_matches('/'));
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[40] ^= 0x5a;
        std::fs::write(&p, bytes).unwrap();
    }
    let store = RocksStore::open_read_only(&path).unwrap();
    let zero = Hash([0; 32]);
    let r = store.index_walk(&zero, None, &mut |_| true).unwrap();
    assert!(r.is_err(), "a damaged index walked as {r:?}");
    // The state and the blocks are untouched.
    assert!(store.block(1).unwrap().is_some());
}
