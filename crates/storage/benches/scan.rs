//! State reads on a RocksDB store the size of a busy hour's chain: most
//! scans on the commit path look under a prefix that holds nothing (an
//! attestation's subject and claim seen for the first time, often of a
//! household with attestations of other claims), so their cost is the
//! seek, not the values.
//!
//! `cargo bench --locked -p aidledger-storage --bench scan`

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use aidledger_storage::{RocksStore, Store};
use aidledger_types::hash::sha256;
use criterion::{criterion_group, criterion_main, Criterion};

use common::{genesis_hash, initial_state, store_genesis, Chain, Writes};

/// Blocks committed before measuring, and state keys written by each.
const BLOCKS: u64 = 100;
const KEYS_PER_BLOCK: u64 = 2_000;

/// A household attestation's key, as the contracts lay it out: "att/h",
/// the household's hash, the claim, "/", the attesting organisation.
fn key(i: u64, claim: &str, org: u64) -> Vec<u8> {
    let mut k = prefix(i, claim);
    k.extend_from_slice(format!("org-{org}").as_bytes());
    k
}

/// What an attestation scans under for earlier attesters of its claim.
fn prefix(i: u64, claim: &str) -> Vec<u8> {
    let mut k = b"att/h".to_vec();
    k.extend_from_slice(&sha256(&i.to_be_bytes()).0);
    k.extend_from_slice(claim.as_bytes());
    k.push(b'/');
    k
}

fn scan_bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    store_genesis(&store);
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    for b in 0..BLOCKS {
        let mut w = Writes::new();
        for k in 0..KEYS_PER_BLOCK {
            // Each subject attested by three organisations.
            let n = b * KEYS_PER_BLOCK + k;
            w.insert(key(n / 3, "income", n % 3), Some(vec![b as u8; 100]));
        }
        chain.commit(&store, w, 4);
        chain.batches.clear();
    }
    let written = BLOCKS * KEYS_PER_BLOCK / 3;

    // Keys and prefixes made before timing: what is measured is the read.
    const ASKED: u64 = 4_096;
    let absent: Vec<Vec<u8>> = (0..ASKED)
        .map(|j| prefix(written + 1 + j, "income"))
        .collect();
    let present: Vec<Vec<u8>> = (0..ASKED)
        .map(|j| prefix((j * 7919) % written, "income"))
        .collect();
    // A household with attestations of one claim, scanned for another:
    // the first attestation of a claim, the common case under load.
    let other_claim: Vec<Vec<u8>> = (0..ASKED)
        .map(|j| prefix((j * 7919) % written, "disability"))
        .collect();
    let absent_keys: Vec<Vec<u8>> = (0..ASKED)
        .map(|j| key(written + 1 + j, "income", 0))
        .collect();
    let mut g = c.benchmark_group("state");
    // Subjects past every written one find nothing under the prefix;
    // written ones find their three attestations.
    for (name, prefixes, found) in [
        ("scan_empty_prefix", &absent, 0),
        ("scan_other_claim", &other_claim, 0),
        ("scan_three", &present, 3),
    ] {
        let mut round = prefixes.iter().cycle();
        g.bench_function(name, |b| {
            b.iter(|| {
                let got = store
                    .state_scan(black_box(round.next().unwrap()), None, 64)
                    .unwrap();
                assert_eq!(got.len(), found);
            })
        });
    }
    // The same through one state view, as a block's execution reads: the
    // view's iterator is built once and sought again for each scan.
    let view = store.state_view();
    for (name, prefixes, found) in [
        ("view_scan_empty_prefix", &absent, 0),
        ("view_scan_other_claim", &other_claim, 0),
        ("view_scan_three", &present, 3),
    ] {
        let mut round = prefixes.iter().cycle();
        g.bench_function(name, |b| {
            b.iter(|| {
                let got = view
                    .scan(black_box(round.next().unwrap()), None, 64)
                    .unwrap();
                assert_eq!(got.len(), found);
            })
        });
    }
    let mut round = absent_keys.iter().cycle();
    g.bench_function("view_get_absent", |b| {
        b.iter(|| {
            let k = round.next().unwrap();
            assert!(view.get(black_box(k)).unwrap().is_none());
        })
    });
    drop(view);
    let mut round = absent_keys.iter().cycle();
    g.bench_function("get_absent", |b| {
        b.iter(|| {
            let k = round.next().unwrap();
            assert!(store.state_get(black_box(k)).unwrap().is_none());
        })
    });
    g.finish();
}

/// The duplicate check of a block's transaction ids against an index of
/// `INDEXED` committed ones: every id is absent, so the cost is the
/// filters of each table file.
fn tx_index_bench(c: &mut Criterion) {
    const INDEXED_BLOCKS: u64 = 300;
    const TXS_PER_BLOCK: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path().join("db")).unwrap();
    store_genesis(&store);
    let mut chain = Chain::new(genesis_hash(), &initial_state());
    for _ in 0..INDEXED_BLOCKS {
        chain.commit(&store, Writes::new(), TXS_PER_BLOCK);
        chain.batches.clear();
    }
    let next = chain.build(Writes::new(), chain.clone().fresh_txs(TXS_PER_BLOCK));
    // The next block of the chain, made (and the model advanced) outside
    // the timing.
    let next_block = |chain: &mut Chain| {
        let txs = chain.fresh_txs(TXS_PER_BLOCK);
        let batch = chain.build(Writes::new(), txs);
        chain.apply(&batch);
        chain.batches.clear();
        batch
    };
    let ids: Vec<aidledger_types::Hash> = next.block.ids().to_vec();
    let mut g = c.benchmark_group("tx_index");
    g.bench_function(format!("absent_{TXS_PER_BLOCK}"), |b| {
        b.iter(|| {
            let found = store.tx_locations(black_box(&ids));
            assert!(found.iter().all(|f| matches!(f, Ok(None))));
        })
    });
    g.bench_function(format!("check_commit_block_{TXS_PER_BLOCK}"), |b| {
        b.iter(|| {
            store
                .check_commit_block(
                    black_box(&next.block),
                    &next.state_writes,
                    &next.receipts,
                    &next.block_events,
                    &next.accumulator,
                    None,
                )
                .unwrap();
        })
    });
    // Storing a block: its index entries go into a memtable that already
    // holds those of earlier blocks. Deferred (no fsync), so the disk's
    // latency does not drown the CPU's work.
    g.bench_function(format!("commit_deferred_{TXS_PER_BLOCK}"), |b| {
        b.iter_batched(
            || next_block(&mut chain),
            |batch| store.commit_block_deferred(batch).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    // What a validator does with each block: the check before its vote,
    // then the commit.
    g.bench_function(format!("check_and_commit_deferred_{TXS_PER_BLOCK}"), |b| {
        b.iter_batched(
            || next_block(&mut chain),
            |batch| {
                store
                    .check_commit_block(
                        &batch.block,
                        &batch.state_writes,
                        &batch.receipts,
                        &batch.block_events,
                        &batch.accumulator,
                        None,
                    )
                    .unwrap();
                store.commit_block_deferred(batch).unwrap()
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = scan_bench, tx_index_bench
}
criterion_main!(benches);
