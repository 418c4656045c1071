#![allow(clippy::unwrap_used)]
//! Micro-benchmarks for transaction and certificate verification (issue 8,
//! item 3): decoding a signed transaction, checking it alone, checking it
//! in a batch, and checking a commit certificate.
//!
//! Run: `cargo bench -p aidledger-crypto --bench verify`

use std::hint::black_box;
use std::time::Duration;

use aidledger_crypto::{verify_certificate, verify_tx, verify_txs, Keypair, Purpose};
use aidledger_types::hash::sha256;
use aidledger_types::{
    codec, ChainId, CommitCertificate, CommitSignature, CommitVote, Hash, OrgId, SignedTx,
    Timestamp, TxBody, TxKind, Validator, ValidatorSet,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn chain() -> ChainId {
    ChainId::new("aidledger-dev").unwrap()
}

fn key(label: &str, i: u64) -> Keypair {
    Keypair::from_seed(sha256(format!("bench {label} {i}").as_bytes()).0)
}

/// `n` signed transactions from `n` distinct signers. The payload is 62
/// bytes, the size of a real `RegisterHousehold` payload (a 32-byte id and a
/// length-prefixed 22-byte region path), so the encoded transaction is the size of a real one.
fn txs(n: usize) -> Vec<SignedTx> {
    txs_from(n, n)
}

/// `n` signed transactions from `keys` signers taking turns, as a
/// consortium's few operators sign most of its transactions.
fn txs_from(n: usize, keys: usize) -> Vec<SignedTx> {
    let chain_id = chain();
    let signers: Vec<Keypair> = (0..keys.max(1) as u64).map(|i| key("signer", i)).collect();
    (0..n as u64)
        .map(|i| {
            let kp = &signers[i as usize % signers.len()];
            let mut payload = sha256(&i.to_le_bytes()).as_bytes().to_vec();
            payload.extend_from_slice(&[b'x'; 30]);
            let body = TxBody {
                chain_id: chain_id.clone(),
                nonce: i,
                signer: kp.public(),
                kind: TxKind::RegisterHousehold,
                payload,
            };
            let signature = kp.sign(&chain_id, Purpose::Tx, body.id().as_bytes());
            SignedTx { body, signature }
        })
        .collect()
}

fn tx_bench(c: &mut Criterion) {
    let chain_id = chain();
    let tx = txs(1).remove(0);
    let bytes = tx.encode();
    let mut g = c.benchmark_group("tx");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("decode_{}B", bytes.len()), |b| {
        b.iter(|| SignedTx::decode(black_box(&bytes)).unwrap())
    });
    g.bench_function("encode", |b| b.iter(|| black_box(&tx).encode()));
    g.bench_function("id", |b| b.iter(|| black_box(&tx).id()));
    g.bench_function("verify_single", |b| {
        b.iter_batched(
            || tx.clone(),
            |t| verify_tx(t, &chain_id).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decode_and_verify_single", |b| {
        b.iter(|| verify_tx(SignedTx::decode(black_box(&bytes)).unwrap(), &chain_id).unwrap())
    });
    g.finish();
}

fn batch_bench(c: &mut Criterion) {
    let chain_id = chain();
    let mut g = c.benchmark_group("verify_txs");
    // Distinct signers, then 16 signers taking turns (an operator mix).
    for (n, keys) in [
        (64usize, 64usize),
        (512, 512),
        (64, 16),
        (256, 16),
        (512, 16),
    ] {
        let all = txs_from(n, keys);
        let name = if keys == n {
            format!("batch_{n}")
        } else {
            format!("batch_{n}_keys{keys}")
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || all.clone(),
                |v| {
                    let out = verify_txs(v, &chain_id);
                    assert!(out.iter().all(Result::is_ok));
                    out
                },
                BatchSize::LargeInput,
            )
        });
    }
    // The same 64 checked one by one, for the batch speedup ratio.
    let all = txs(64);
    g.throughput(Throughput::Elements(64));
    g.bench_function("single_loop_64", |b| {
        b.iter_batched(
            || all.clone(),
            |v| {
                v.into_iter()
                    .map(|t| verify_tx(t, &chain_id).unwrap())
                    .collect::<Vec<_>>()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A validator set of `n` and a certificate for block 1 signed by the first
/// `signers` validators.
fn certificate(n: usize, signers: usize) -> (ValidatorSet, CommitCertificate, Hash) {
    let chain_id = chain();
    let keys: Vec<Keypair> = (0..n as u64).map(|i| key("validator", i)).collect();
    let set = ValidatorSet::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| Validator {
                org: OrgId::new(format!("org-{i}")).unwrap(),
                key: k.public(),
            })
            .collect(),
    )
    .unwrap();
    let block_hash = sha256(b"bench block");
    // Each signer votes at its own time, as live validators do.
    let signatures = keys
        .iter()
        .take(signers)
        .enumerate()
        .map(|(i, k)| {
            let time = Timestamp(1_767_225_600_000 + i as u64);
            let vote = CommitVote {
                chain_id: chain_id.clone(),
                height: 1,
                view: 0,
                block_hash,
                time,
            };
            CommitSignature {
                validator: i as u16,
                time,
                signature: k.sign(&chain_id, Purpose::Commit, &codec::encode(&vote)),
            }
        })
        .collect();
    let cert = CommitCertificate {
        height: 1,
        view: 0,
        block_hash,
        signatures,
    };
    verify_certificate(&cert, &chain_id, &set, 1, &block_hash).unwrap();
    (set, cert, block_hash)
}

fn certificate_bench(c: &mut Criterion) {
    let chain_id = chain();
    let mut g = c.benchmark_group("certificate");
    g.throughput(Throughput::Elements(1));
    for n in [4usize, 7] {
        // A quorum (what a leader has when it decides) and every validator.
        let quorum = (n + (n - 1) / 3) / 2 + 1;
        for signers in [quorum, n] {
            let (set, cert, hash) = certificate(n, signers);
            g.bench_function(format!("verify_n{n}_sigs{signers}"), |b| {
                b.iter(|| verify_certificate(black_box(&cert), &chain_id, &set, 1, &hash).unwrap())
            });
        }
    }
    g.finish();
}

/// The pieces of one strict check, to see where a verification's time goes:
/// `verify` decompresses A and R, re-compresses both to refuse
/// non-canonical encodings, checks both for small order, hashes the signed
/// bytes with SHA-512, and runs one double-base scalar multiplication.
/// `ed25519-dalek`'s own `verify_strict` on the same signature is the
/// reference.
fn parts_bench(c: &mut Criterion) {
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};

    let chain_id = chain();
    let tx = txs(1).remove(0);
    let msg = aidledger_crypto::signing_bytes(&chain_id, Purpose::Tx, tx.id().as_bytes());
    let a_bytes = CompressedEdwardsY(tx.body.signer.0);
    let a = a_bytes.decompress().unwrap();
    let s = Scalar::from_bytes_mod_order(sha256(b"s").0);
    let k = Scalar::from_bytes_mod_order(sha256(b"k").0);

    let mut g = c.benchmark_group("ed25519_parts");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decompress", |b| {
        b.iter(|| black_box(&a_bytes).decompress().unwrap())
    });
    g.bench_function("compress", |b| b.iter(|| black_box(&a).compress()));
    g.bench_function("is_small_order", |b| {
        b.iter(|| black_box(&a).is_small_order())
    });
    g.bench_function("sha512_k", |b| {
        b.iter(|| {
            let mut h = Sha512::new();
            h.update(&tx.signature.0[..32]);
            h.update(tx.body.signer.0);
            h.update(black_box(&msg));
            Scalar::from_bytes_mod_order_wide(&h.finalize().into())
        })
    });
    g.bench_function("double_scalar_mul", |b| {
        b.iter(|| {
            EdwardsPoint::vartime_double_scalar_mul_basepoint(black_box(&k), &(-a), &s)
                .mul_by_cofactor()
        })
    });
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&tx.body.signer.0).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&tx.signature.0);
    g.bench_function("dalek_verify_strict", |b| {
        b.iter(|| vk.verify_strict(black_box(&msg), &sig).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = tx_bench, batch_bench, certificate_bench, parts_bench
}
criterion_main!(benches);
