#![allow(clippy::unwrap_used)]
//! Micro-benchmarks for the pure hashing hot paths (issue 8, item 3):
//! SHA-256 over 1 KiB messages, the transaction Merkle root, and the
//! LtHash16 state accumulator that produces every block's state root.
//!
//! Run: `cargo bench -p aidledger-types --bench types`

use std::hint::black_box;
use std::time::Duration;

use aidledger_types::hash::{hash_parts, sha256};
use aidledger_types::{merkle, Hash, StateAccumulator};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Deterministic pseudo-random bytes (no RNG dependency needed).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            hash_parts(b"bench", &[&seed.to_le_bytes(), &i.to_le_bytes()]).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| sha256(&i.to_le_bytes())).collect()
}

/// Realistically shaped state writes: a ~40-byte key (prefix plus a 32-byte
/// id, like `hh/<household id>`) and a ~120-byte encoded record.
fn writes(n: usize, seed: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n as u64)
        .map(|i| {
            let mut k = b"bench/hh/".to_vec();
            k.extend_from_slice(sha256(&i.to_le_bytes()).as_bytes());
            (k, bytes(seed ^ i, 120))
        })
        .collect()
}

fn sha256_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256");
    let msg = bytes(1, 1024);
    g.throughput(Throughput::Elements(1));
    g.bench_function("1KiB_msg", |b| b.iter(|| sha256(black_box(&msg))));
    // Throughput in bytes for the same work, for a MiB/s reading.
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("1KiB_msg_bytes", |b| b.iter(|| sha256(black_box(&msg))));
    g.finish();
}

fn merkle_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("merkle");
    const N: usize = 1000;
    let l = leaves(N);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(format!("root_{N}_leaves"), |b| {
        b.iter(|| merkle::root(black_box(&l)))
    });
    g.finish();
}

fn state_root_bench(c: &mut Criterion) {
    const N: usize = 1000;
    let mut g = c.benchmark_group("state_root");
    let w_old = writes(N, 1);
    let w_new = writes(N, 2);

    // Insert N new keys (a block that creates N records).
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(format!("insert_{N}"), |b| {
        b.iter_batched_ref(
            StateAccumulator::new,
            |acc| {
                for (k, v) in &w_old {
                    acc.insert(k, v);
                }
            },
            BatchSize::SmallInput,
        )
    });

    // Update N existing keys: one remove of the old pair and one insert of
    // the new one each, exactly what block execution does per write.
    let mut base = StateAccumulator::new();
    for (k, v) in &w_old {
        base.insert(k, v);
    }
    g.bench_function(format!("update_{N}"), |b| {
        b.iter_batched_ref(
            || base.clone(),
            |acc| {
                for ((k, old), (_, new)) in w_old.iter().zip(&w_new) {
                    acc.apply(k, Some(old), Some(new));
                }
            },
            BatchSize::SmallInput,
        )
    });

    // Delete N keys.
    g.bench_function(format!("remove_{N}"), |b| {
        b.iter_batched_ref(
            || base.clone(),
            |acc| {
                for (k, v) in &w_old {
                    acc.remove(k, v);
                }
            },
            BatchSize::SmallInput,
        )
    });

    // Finalising the root (once per block).
    g.throughput(Throughput::Elements(1));
    g.bench_function("root", |b| b.iter(|| black_box(&base).root()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = sha256_bench, merkle_bench, state_root_bench
}
criterion_main!(benches);
