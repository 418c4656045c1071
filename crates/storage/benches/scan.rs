//! State reads on a RocksDB store the size of a busy hour's chain: most
//! scans on the commit path look under a prefix that holds nothing (an
//! attestation's subject and claim seen for the first time), so their
//! cost is the seek, not the values.
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

fn subject(i: u64) -> String {
    let h = sha256(&i.to_be_bytes());
    h.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// An attestation-like key: subject, claim, attesting organisation.
fn key(i: u64, org: u64) -> Vec<u8> {
    format!("att/{}/income/org-{org}", subject(i)).into_bytes()
}

fn prefix(i: u64) -> Vec<u8> {
    format!("att/{}/income/", subject(i)).into_bytes()
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
            w.insert(key(n / 3, n % 3), Some(vec![b as u8; 100]));
        }
        chain.commit(&store, w, 4);
        chain.batches.clear();
    }
    let written = BLOCKS * KEYS_PER_BLOCK / 3;

    // Keys and prefixes made before timing: what is measured is the read.
    const ASKED: u64 = 4_096;
    let absent: Vec<Vec<u8>> = (0..ASKED).map(|j| prefix(written + 1 + j)).collect();
    let present: Vec<Vec<u8>> = (0..ASKED).map(|j| prefix((j * 7919) % written)).collect();
    let absent_keys: Vec<Vec<u8>> = (0..ASKED).map(|j| key(written + 1 + j, 0)).collect();
    let mut g = c.benchmark_group("state");
    // Subjects past every written one find nothing under the prefix;
    // written ones find their three attestations.
    for (name, prefixes, found) in [
        ("scan_empty_prefix", &absent, 0),
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
    let mut round = absent_keys.iter().cycle();
    g.bench_function("get_absent", |b| {
        b.iter(|| {
            let k = round.next().unwrap();
            assert!(store.state_get(black_box(k)).unwrap().is_none());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = scan_bench
}
criterion_main!(benches);
