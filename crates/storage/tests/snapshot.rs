//! Snapshot install (ADR 017 part 4) against both stores: a state cut at a
//! head installs into an empty store, which then commits the next block
//! like the source; every way an install can go wrong is refused and
//! changes nothing a commit could rely on.

#![allow(clippy::unwrap_used)]

mod common;

use aidledger_storage::snapshot::{chunk_pairs, manifest_at_head};
use aidledger_storage::{MemStore, RocksStore, StorageError, Store};
use aidledger_types::snapshot::{SnapshotChunk, SnapshotManifest};
use common::*;

const BLOCKS: u64 = 30;

/// Block `h` writes 100 households of 4 KB and deletes one from the block
/// before: about 12 MB of state, three chunks.
fn writes_at(h: u64) -> Writes {
    let mut m = Writes::new();
    for i in 0..100 {
        m.insert(
            format!("households/{h:04}/{i:03}").into_bytes(),
            Some(vec![(h + i) as u8; 4000]),
        );
    }
    if h > 1 {
        m.insert(format!("households/{:04}/007", h - 1).into_bytes(), None);
    }
    m
}

fn source(store: &dyn Store) -> Chain {
    store_genesis(store);
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    for h in 1..=BLOCKS {
        chain.commit(store, writes_at(h), (h % 3) as usize);
    }
    chain
}

fn chunks(store: &dyn Store, m: &SnapshotManifest) -> Vec<SnapshotChunk> {
    m.chunks
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let c = SnapshotChunk {
                height: m.height(),
                index: i as u32,
                pairs: chunk_pairs(store, info).unwrap(),
            };
            m.check_chunk(&c).unwrap();
            c
        })
        .collect()
}

fn install(joiner: &dyn Store, m: &SnapshotManifest, chunks: &[SnapshotChunk]) {
    joiner
        .snapshot_begin(genesis_hash(), genesis_doc(), m.height())
        .unwrap();
    for c in chunks {
        joiner.snapshot_put_chunk(m.height(), &c.pairs).unwrap();
    }
    let head = joiner.snapshot_finish(m, &[]).unwrap();
    assert_eq!(head.height, m.height());
}

fn joins_and_follows(src: &dyn Store, joiner: &dyn Store) {
    let mut chain = source(src);
    let m = manifest_at_head(src).unwrap().unwrap();
    assert!(m.chunks.len() >= 3, "{} chunks", m.chunks.len());
    m.check().unwrap();
    let cs = chunks(src, &m);

    // The joiner ran `init` first: its genesis state is replaced.
    store_genesis(joiner);
    install(joiner, &m, &cs);
    assert_eq!(joiner.head().unwrap(), chain.head());
    assert_eq!(joiner.base().unwrap(), BLOCKS);
    assert_eq!(src.base().unwrap(), 1);
    assert_eq!(joiner.snapshot_installing().unwrap(), None);
    assert_eq!(full_state(joiner), chain.state);
    assert_eq!(joiner.accumulator().unwrap(), chain.acc);
    assert_eq!(joiner.block(BLOCKS).unwrap(), src.block(BLOCKS).unwrap());
    assert_eq!(
        joiner.certificate(BLOCKS).unwrap(),
        src.certificate(BLOCKS).unwrap()
    );
    assert_eq!(joiner.block(BLOCKS - 1).unwrap(), None);
    assert!(joiner.blocks_range(1, BLOCKS).unwrap().is_empty());
    assert_eq!(joiner.blocks_range(BLOCKS, BLOCKS + 5).unwrap().len(), 1);
    // The genesis stays, so a restart's idempotent put_genesis is fine.
    assert_eq!(joiner.genesis().unwrap().unwrap().0, genesis_hash());
    store_genesis(joiner);

    // Both commit the next blocks alike.
    for h in BLOCKS + 1..=BLOCKS + 3 {
        let txs = chain.fresh_txs(2);
        let b = chain.build(writes_at(h), txs);
        src.commit_block(b.clone()).unwrap();
        joiner.commit_block(b.clone()).unwrap();
        chain.apply(&b);
    }
    assert_eq!(joiner.head().unwrap(), src.head().unwrap());
    assert_eq!(full_state(joiner), full_state(src));
    // The same state cuts into the same chunks on both.
    assert_eq!(
        manifest_at_head(joiner).unwrap(),
        manifest_at_head(src).unwrap()
    );
}

fn refusals(src: &dyn Store, fresh: &dyn Fn() -> Box<dyn Store>) {
    let chain = source(src);
    let m = manifest_at_head(src).unwrap().unwrap();
    let cs = chunks(src, &m);
    let h = m.height();

    // A missing chunk: the recomputed state is not the certified one.
    let j = fresh();
    j.snapshot_begin(genesis_hash(), genesis_doc(), h).unwrap();
    for c in &cs[1..] {
        j.snapshot_put_chunk(h, &c.pairs).unwrap();
    }
    let e = j.snapshot_finish(&m, &[]).unwrap_err();
    assert!(e.to_string().contains("not the state block"), "{e}");
    // A forged pair where one belongs is refused the same way.
    let mut forged = cs[0].pairs.clone();
    forged[0].1 = b"forged".to_vec();
    j.snapshot_put_chunk(h, &forged).unwrap();
    assert!(j.snapshot_finish(&m, &[]).is_err());
    assert_eq!(j.head().unwrap(), None);
    assert_eq!(j.snapshot_installing().unwrap(), Some(h));
    // Nothing commits while an install is unfinished.
    let block1 = chain.batches[0].clone();
    assert!(matches!(
        j.commit_block(block1.clone()),
        Err(StorageError::Snapshot(_))
    ));
    // Storing the missing chunk completes it, even twice over (the same
    // pairs).
    j.snapshot_put_chunk(h, &cs[0].pairs).unwrap();
    j.snapshot_put_chunk(h, &cs[0].pairs).unwrap();
    j.snapshot_finish(&m, &[]).unwrap();
    assert_eq!(j.base().unwrap(), h);

    // Beginning again discards a partial install.
    let j = fresh();
    j.snapshot_begin(genesis_hash(), genesis_doc(), h).unwrap();
    j.snapshot_put_chunk(h, &cs[0].pairs).unwrap();
    let mut extra = cs[1].pairs.clone();
    extra.truncate(3);
    extra[0].1 = b"forged".to_vec();
    j.snapshot_put_chunk(h, &extra).unwrap();
    j.snapshot_begin(genesis_hash(), genesis_doc(), h).unwrap();
    for c in &cs {
        j.snapshot_put_chunk(h, &c.pairs).unwrap();
    }
    j.snapshot_finish(&m, &[]).unwrap();
    assert_eq!(full_state(&*j), chain.state);

    // Chunks for another height, unsorted pairs, and a chunk before begin.
    let j = fresh();
    assert!(j.snapshot_put_chunk(h, &cs[0].pairs).is_err());
    j.snapshot_begin(genesis_hash(), genesis_doc(), h).unwrap();
    assert!(j.snapshot_put_chunk(h - 1, &cs[0].pairs).is_err());
    let mut unsorted = cs[0].pairs.clone();
    unsorted.swap(0, 1);
    assert!(j.snapshot_put_chunk(h, &unsorted).is_err());
    // A manifest for another height than the install's.
    let mut other = m.clone();
    other.block.header.height = h + 1;
    assert!(j.snapshot_finish(&other, &[]).is_err());
    // A tampered manifest.
    let mut forged = m.clone();
    forged.chunks[0].partial[0] ^= 1;
    for c in &cs {
        j.snapshot_put_chunk(h, &c.pairs).unwrap();
    }
    assert!(matches!(
        j.snapshot_finish(&forged, &[]),
        Err(StorageError::SnapshotInvalid(_))
    ));
    assert_eq!(j.head().unwrap(), None);
    j.snapshot_finish(&m, &[]).unwrap();

    // Another genesis, height 0, and a store that holds blocks.
    let j = fresh();
    assert!(matches!(
        j.snapshot_begin(aidledger_types::Hash([7; 32]), genesis_doc(), h),
        Ok(())
    ));
    let j = fresh();
    store_genesis(&*j);
    assert!(matches!(
        j.snapshot_begin(aidledger_types::Hash([7; 32]), genesis_doc(), h),
        Err(StorageError::GenesisMismatch { .. })
    ));
    assert!(j.snapshot_begin(genesis_hash(), genesis_doc(), 0).is_err());
    j.commit_block(block1).unwrap();
    assert!(j.snapshot_begin(genesis_hash(), genesis_doc(), h).is_err());
    assert!(src
        .snapshot_begin(genesis_hash(), genesis_doc(), h)
        .is_err());
    assert_eq!(src.head().unwrap(), chain.head());
}

#[test]
fn mem_store_joins_from_a_snapshot_and_follows() {
    joins_and_follows(&MemStore::new(), &MemStore::new());
}

#[test]
fn rocks_store_joins_from_a_snapshot_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let src = RocksStore::open(dir.path().join("src")).unwrap();
    let joiner = RocksStore::open(dir.path().join("joiner")).unwrap();
    joins_and_follows(&src, &joiner);
}

#[test]
fn mem_store_refuses_a_bad_install() {
    refusals(&MemStore::new(), &|| Box::new(MemStore::new()));
}

#[test]
fn rocks_store_refuses_a_bad_install() {
    let dir = tempfile::tempdir().unwrap();
    let src = RocksStore::open(dir.path().join("src")).unwrap();
    let n = std::cell::Cell::new(0);
    let root = dir.path().to_path_buf();
    refusals(&src, &|| {
        n.set(n.get() + 1);
        Box::new(RocksStore::open(root.join(format!("j{}", n.get()))).unwrap())
    });
}

/// A checkpoint of a store that keeps committing serves the snapshot (the
/// node's way: ADR 017), and an install cut short by a crash is found on
/// reopen and begun again; a finished one survives a reopen.
#[test]
fn a_rocks_install_survives_a_crash_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let src = RocksStore::open(dir.path().join("src")).unwrap();
    let mut chain = source(&src);
    let cp = dir.path().join("cp");
    src.checkpoint(&cp).unwrap();
    chain.commit(&src, writes_at(BLOCKS + 1), 1);
    let copy = RocksStore::open_read_only(&cp).unwrap();
    let m = manifest_at_head(&copy).unwrap().unwrap();
    assert_eq!(m.height(), BLOCKS);
    let cs = chunks(&copy, &m);

    let jpath = dir.path().join("joiner");
    {
        let j = RocksStore::open(&jpath).unwrap();
        j.snapshot_begin(genesis_hash(), genesis_doc(), BLOCKS)
            .unwrap();
        j.snapshot_put_chunk(BLOCKS, &cs[0].pairs).unwrap();
    }
    let j = RocksStore::open(&jpath).unwrap();
    assert_eq!(j.snapshot_installing().unwrap(), Some(BLOCKS));
    assert_eq!(j.head().unwrap(), None);
    install(&j, &m, &cs);
    drop(j);
    let j = RocksStore::open(&jpath).unwrap();
    assert_eq!(j.base().unwrap(), BLOCKS);
    assert_eq!(j.head().unwrap().unwrap().height, BLOCKS);
    // It follows the source from there.
    j.commit_block(chain.batches.last().unwrap().clone())
        .unwrap();
    assert_eq!(j.head().unwrap(), src.head().unwrap());
}

fn a_set(n: u8) -> aidledger_types::ValidatorSet {
    aidledger_types::ValidatorSet::new(
        (0..n)
            .map(|i| aidledger_types::Validator {
                org: aidledger_types::OrgId::new(format!("org-{i}")).unwrap(),
                key: aidledger_types::PublicKey([i + 1; 32]),
            })
            .collect(),
    )
    .unwrap()
}

/// A batch whose block is the last of its set: its header names `next`.
fn changing(
    chain: &mut Chain,
    next: &aidledger_types::ValidatorSet,
) -> aidledger_storage::CommitBatch {
    let txs = chain.fresh_txs(1);
    let mut b = chain.build(Writes::new(), txs);
    rewrite(&mut b, |blk| {
        blk.header.next_validator_set_hash = next.hash()
    });
    b.certificate.block_hash = b.block.hash();
    b.next_validator_set = Some(next.clone());
    b
}

fn keeps_set_changes(store: &dyn Store, joiner: &dyn Store) {
    store_genesis(store);
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    chain.commit(store, writes_at(1), 0);
    let next = a_set(4);

    let good = changing(&mut chain, &next);
    let mut none = good.clone();
    none.next_validator_set = None;
    let mut stray = chain.build(Writes::new(), Vec::new());
    stray.next_validator_set = Some(next.clone());
    let mut wrong = good.clone();
    wrong.next_validator_set = Some(a_set(3));
    for bad in [none, stray, wrong] {
        assert!(matches!(
            store.commit_block(bad),
            Err(StorageError::NextValidatorSet { .. })
        ));
    }
    store.commit_block(good.clone()).unwrap();
    chain.apply(&good);
    chain.commit(store, writes_at(3), 1);
    let mut later = changing(&mut chain, &a_set(5));
    // It leaves the set the first change brought in.
    rewrite(&mut later, |blk| {
        blk.header.validator_set_hash = next.hash()
    });
    later.certificate.block_hash = later.block.hash();
    store.commit_block(later.clone()).unwrap();
    chain.apply(&later);
    chain.commit(store, writes_at(5), 1);

    let all = store.set_changes(0, 100).unwrap();
    assert_eq!(
        all.iter().map(|c| c.header.height).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(all[0].validators, next);
    assert_eq!(all[0].header, good.block.header);
    assert_eq!(all[0].certificate, good.certificate);
    assert_eq!(store.set_changes(2, 100).unwrap().len(), 1);
    assert_eq!(store.set_changes(0, 1).unwrap().len(), 1);
    assert!(store.set_changes(4, 100).unwrap().is_empty());

    // A joiner keeps the changes it followed, and checks their shape.
    let m = manifest_at_head(store).unwrap().unwrap();
    let cs = chunks(store, &m);
    joiner
        .snapshot_begin(genesis_hash(), genesis_doc(), m.height())
        .unwrap();
    for c in &cs {
        joiner.snapshot_put_chunk(m.height(), &c.pairs).unwrap();
    }
    let reversed: Vec<_> = all.iter().rev().cloned().collect();
    assert!(joiner.snapshot_finish(&m, &reversed).is_err());
    let mut bad = all.clone();
    bad[1].validators = a_set(2);
    assert!(joiner.snapshot_finish(&m, &bad).is_err());
    // A change that does not follow from the one before it.
    let mut unlinked = all.clone();
    unlinked[1].header.validator_set_hash = aidledger_types::Hash([3; 32]);
    unlinked[1].certificate.block_hash = unlinked[1].header.hash();
    let e = joiner.snapshot_finish(&m, &unlinked).unwrap_err();
    assert!(e.to_string().contains("does not follow"), "{e}");
    joiner.snapshot_finish(&m, &all).unwrap();
    assert_eq!(joiner.set_changes(0, 100).unwrap(), all);
}

#[test]
fn mem_store_keeps_set_changes() {
    keeps_set_changes(&MemStore::new(), &MemStore::new());
}

#[test]
fn rocks_store_keeps_set_changes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let src = RocksStore::open(dir.path().join("src")).unwrap();
        let joiner = RocksStore::open(dir.path().join("joiner")).unwrap();
        keeps_set_changes(&src, &joiner);
    }
    let joiner = RocksStore::open(dir.path().join("joiner")).unwrap();
    assert_eq!(joiner.set_changes(0, 100).unwrap().len(), 2);
}
