#![allow(clippy::unwrap_used)]
//! Micro-benchmarks for block execution (issue 8, item 3): a block of 1000
//! realistic workload transactions from `TxFactory::workload_block`
//! (household registrations, attestations and deposits, 2:1:1) executed
//! against an in-memory state, built by a proposer, validated by a
//! validator, and decoded from the wire.
//!
//! Run: `cargo bench -p aidledger-execution --bench execution`

use std::hint::black_box;
use std::time::Duration;

use aidledger_crypto::VerifiedTx;
use aidledger_execution::testkit::{dev_genesis, TxFactory};
use aidledger_execution::{
    apply_block, build_block, genesis_state, validate_block, BlockContext, MemState, ParentInfo,
};
use aidledger_types::{Block, SignedTx, StateAccumulator, Timestamp};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Transactions in the measured block.
const BLOCK_TXS: usize = 1000;

struct Fixture {
    state: MemState,
    acc: StateAccumulator,
    parent: ParentInfo,
    ctx: BlockContext,
    verified: Vec<VerifiedTx>,
    block: Block,
}

struct Chain {
    state: MemState,
    acc: StateAccumulator,
    parent: ParentInfo,
    f: TxFactory,
}

impl Chain {
    fn ctx(&self) -> BlockContext {
        BlockContext {
            chain_id: self.parent.chain_id.clone(),
            height: self.parent.height + 1,
            timestamp: Timestamp(self.parent.timestamp.0 + 60_000),
            proposer: self.f.keys.validators[0].1.public(),
        }
    }

    /// Builds, checks and commits a block of `txs`, all of which must apply.
    fn commit(&mut self, txs: Vec<SignedTx>) {
        let verified: Vec<_> = txs.into_iter().map(|t| self.f.verified(t)).collect();
        let ctx = self.ctx();
        let (block, out) =
            build_block(&self.parent, &ctx, 0, &verified, &self.state, &self.acc).unwrap();
        assert_eq!(block.txs.len(), verified.len());
        assert!(out.receipts.iter().all(|r| r.is_applied()));
        self.state.apply(&out.writes);
        self.acc = out.accumulator.clone();
        let cert = self.f.keys.certify(
            &self.parent.chain_id,
            &self.parent.validator_set,
            &block,
            ctx.timestamp,
        );
        self.parent = self.parent.child(&block, &out, Some(cert));
    }
}

/// A dev consortium with program `relief` funded, `households` households
/// already registered, and the next block's 1000 workload transactions.
fn fixture(households: u64) -> Fixture {
    let (g, keys) = dev_genesis(4, 1);
    let (map, acc) = genesis_state(&g).unwrap();
    let mut c = Chain {
        state: MemState::new(map),
        acc,
        parent: ParentInfo::genesis(&g).unwrap(),
        f: TxFactory::new(&g, keys),
    };
    let setup = c.f.workload_block(0);
    c.commit(setup);
    let mut left = households;
    while left > 0 {
        let n = left.min(5_000);
        let txs = (0..n).map(|_| c.f.register_household().1).collect();
        c.commit(txs);
        left -= n;
    }
    let mut txs = Vec::with_capacity(BLOCK_TXS);
    let mut i = 1;
    while txs.len() < BLOCK_TXS {
        txs.extend(c.f.workload_block(i));
        i += 1;
    }
    txs.truncate(BLOCK_TXS);
    let verified: Vec<_> = txs.into_iter().map(|t| c.f.verified(t)).collect();
    let ctx = c.ctx();
    let (block, out) = build_block(&c.parent, &ctx, 0, &verified, &c.state, &c.acc).unwrap();
    assert_eq!(block.txs.len(), BLOCK_TXS);
    assert!(out.receipts.iter().all(|r| r.is_applied()));
    Fixture {
        state: c.state,
        acc: c.acc,
        parent: c.parent,
        ctx,
        verified,
        block,
    }
}

fn block_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Elements(BLOCK_TXS as u64));
    g.sample_size(10);

    for households in [0u64, 10_000] {
        let fx = fixture(households);
        let suffix = if households == 0 {
            String::new()
        } else {
            format!("_{}k_households", households / 1000)
        };
        // Execution alone: contracts, overlays, state-root update.
        g.bench_function(format!("apply_{BLOCK_TXS}{suffix}"), |b| {
            b.iter_with_large_drop(|| {
                apply_block(&fx.state, &fx.acc, &fx.ctx, black_box(&fx.verified)).unwrap()
            })
        });
        if households != 0 {
            continue;
        }
        // The proposer: nonce filtering, execution, tx root, header.
        g.bench_function(format!("build_{BLOCK_TXS}"), |b| {
            b.iter_with_large_drop(|| {
                build_block(
                    &fx.parent,
                    &fx.ctx,
                    0,
                    black_box(&fx.verified),
                    &fx.state,
                    &fx.acc,
                )
                .unwrap()
            })
        });
        // A validator: header, tx root, batch signature check, execution,
        // state-root comparison.
        g.bench_function(format!("validate_{BLOCK_TXS}"), |b| {
            b.iter_with_large_drop(|| {
                validate_block(
                    black_box(&fx.block),
                    &fx.parent,
                    None,
                    1_000,
                    &fx.state,
                    &fx.acc,
                )
                .unwrap()
            })
        });
        // The wire: strict decoding of the whole block.
        let bytes = aidledger_types::codec::encode(&fx.block);
        g.bench_function(
            format!("decode_{BLOCK_TXS}_{}KiB", bytes.len() / 1024),
            |b| b.iter_with_large_drop(|| Block::decode(black_box(&bytes)).unwrap()),
        );
        // The Merkle root over the block's witness hashes.
        g.bench_function(format!("tx_root_{BLOCK_TXS}"), |b| {
            b.iter(|| Block::compute_tx_root(black_box(&fx.block.txs)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = block_bench
}
criterion_main!(benches);
