//! The mempool's bookkeeping per transaction, as a validator under load
//! does it: admit a block's worth of verified transactions into a pool
//! that already holds many, then drop them when their block commits.
//!
//! `cargo bench --workspace --locked --bench pool`

#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;

use aidledger_crypto::{verify_txs, Keypair, Purpose, VerifiedTx};
use aidledger_mempool::{AccountInfo, AccountView, Mempool, MempoolConfig};
use aidledger_types::{ChainId, PublicKey, Role, SignedTx, TxBody, TxKind};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

const SIGNERS: u8 = 16;
/// Transactions pending before each measured block.
const PENDING: u64 = 10_000;
const BLOCK: u64 = 1_000;

fn chain() -> ChainId {
    ChainId::new("mempool-bench").unwrap()
}

fn keys() -> Vec<Keypair> {
    (1..=SIGNERS).map(|i| Keypair::from_seed([i; 32])).collect()
}

/// `per_signer` transactions of each signer from `first` on, verified.
fn txs(keys: &[Keypair], first: u64, per_signer: u64) -> Vec<VerifiedTx> {
    let signed: Vec<SignedTx> = (first..first + per_signer)
        .flat_map(|nonce| {
            keys.iter().map(move |k| {
                let body = TxBody {
                    chain_id: chain(),
                    nonce,
                    signer: k.public(),
                    kind: TxKind::Deposit,
                    payload: vec![7; 60],
                };
                let signature = k.sign(&chain(), Purpose::Tx, body.id().as_bytes());
                SignedTx { body, signature }
            })
        })
        .collect();
    verify_txs(signed, &chain())
        .into_iter()
        .map(|r| r.map_err(|(_, e)| e).unwrap())
        .collect()
}

struct Accounts(RefCell<BTreeMap<PublicKey, AccountInfo>>);

impl AccountView for Accounts {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo> {
        self.0.borrow().get(key).cloned()
    }
}

fn pool_bench(c: &mut Criterion) {
    let keys = keys();
    let accounts = Accounts(RefCell::new(
        keys.iter()
            .map(|k| {
                let info = AccountInfo {
                    roles: vec![Role::Disburser],
                    next_nonce: 0,
                    active: true,
                };
                (k.public(), info)
            })
            .collect(),
    ));
    let mut pool = Mempool::new(MempoolConfig {
        nonce_window: 1_000_000,
        ..MempoolConfig::default()
    });
    let per_signer = |n: u64| n / u64::from(SIGNERS);
    // Each round admits the next block's transactions behind those
    // pending, and commits the oldest block's: the pool stays at PENDING.
    let mut blocks: std::collections::VecDeque<Vec<aidledger_types::Hash>> = Default::default();
    let mut next = 0u64;
    for _ in 0..PENDING / BLOCK {
        let mut ids = Vec::new();
        for tx in txs(&keys, next, per_signer(BLOCK)) {
            let len = tx.tx().encode().len();
            ids.push(pool.admit(tx, len, &accounts).unwrap());
        }
        blocks.push_back(ids);
        next += per_signer(BLOCK);
    }
    let mut committed = 0u64;
    let mut g = c.benchmark_group("mempool");
    g.bench_function(format!("admit_and_commit_{BLOCK}_over_{PENDING}"), |b| {
        b.iter_batched(
            || {
                let new = txs(&keys, next, per_signer(BLOCK));
                next += per_signer(BLOCK);
                let lens: Vec<usize> = new.iter().map(|t| t.tx().encode().len()).collect();
                blocks.push_back(new.iter().map(VerifiedTx::id).collect());
                let done = blocks.pop_front().unwrap();
                committed += per_signer(BLOCK);
                for info in accounts.0.borrow_mut().values_mut() {
                    info.next_nonce = committed;
                }
                (new, lens, done)
            },
            |(new, lens, done)| {
                for (tx, len) in new.into_iter().zip(lens) {
                    pool.admit(tx, len, &accounts).unwrap();
                }
                assert_eq!(pool.on_commit(&done, &accounts), done.len());
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = pool_bench
}
criterion_main!(benches);
