#![allow(clippy::unwrap_used)]
//! The backlog bound (ADR 023) in the node core, over a real RocksDB
//! store holding the development genesis: one validator of four, alone,
//! so nothing commits (a stalled chain). Past the floor, a client's
//! transaction is refused with `mempool-full` once its account holds its
//! grace of pending transactions; another account's few still get in, and
//! a peer's gossip is not held to it.

mod common;

use aidledger_audit::synth::{StateMode, SynthChain};
use aidledger_contracts::payload::{self, Payload};
use aidledger_mempool::{MempoolConfig, BACKLOG_SENDER_GRACE as GRACE};
use aidledger_node_core::{ConsensusSettings, CoreParts, Effect, Event, NodeCore, Verdict};
use aidledger_types::values::Amount;
use aidledger_types::{Hash, Role, Slug};
use common::now;

const FLOOR: usize = 8;

fn core(c: &SynthChain) -> NodeCore {
    let base = common::parts(c);
    let parts = CoreParts {
        consensus: ConsensusSettings {
            max_block_txs: FLOOR,
            max_block_bytes: 1 << 20,
            ..base.consensus
        },
        mempool: MempoolConfig {
            max_txs: 100,
            max_bytes: 1 << 20,
            max_per_sender: 100,
            nonce_window: 100,
            gap_ttl_ms: 60_000,
            backlog_ms: 5_000,
            backlog_min_txs: FLOOR,
        },
        ..base
    };
    NodeCore::new(parts, now(1_000)).unwrap()
}

/// Deposits by `org`'s disburser with nonces `from..to`, checked.
fn deposits_by(c: &SynthChain, org: &str, from: u64, to: u64) -> Vec<Verdict> {
    let key = c.f.keys.op(org, Role::Disburser).clone();
    let p = Payload::Deposit(payload::Deposit {
        program: Slug::new("p").unwrap(),
        amount: Amount(100),
    });
    (from..to)
        .map(|n| Ok(c.f.verified(c.f.sign_with_nonce(&key, &p, n))))
        .collect()
}

/// The state bank's disburser's deposits: the heavy account.
fn deposits(c: &SynthChain, from: u64, to: u64) -> Vec<Verdict> {
    deposits_by(c, "state-bank", from, to)
}

/// A client's submission at `ms`: its verdicts.
fn submit(
    core: &mut NodeCore,
    ms: u64,
    ticket: u64,
    txs: Vec<Verdict>,
) -> Vec<Result<Hash, aidledger_node_core::TxRefusal>> {
    verdicts(core.handle(now(ms), Event::Submit { ticket, txs }).unwrap())
}

fn verdicts(effects: Vec<Effect>) -> Vec<Result<Hash, aidledger_node_core::TxRefusal>> {
    effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Verdicts { verdicts, .. } => Some(verdicts),
            _ => None,
        })
        .expect("a verdict for the submission")
}

#[test]
fn a_stalled_chain_holds_back_the_account_that_fills_the_backlog_but_not_others() {
    let dir = tempfile::tempdir().unwrap();
    let c = SynthChain::new(&dir.path().join("data"), StateMode::Store).unwrap();
    let mut core = core(&c);
    let s = core.status();
    assert_eq!((s.backlog_txs, s.commit_rate), (FLOOR, 0));
    // The test needs the grace above the floor.
    const { assert!(GRACE > FLOOR) };
    let over = GRACE as u64 + 4;

    // One account sends more than its grace: taken up to it (past the
    // floor), in order, the rest refused with the code clients retry on.
    let v = submit(&mut core, 2_000, 1, deposits(&c, 0, over));
    assert_eq!(v.len() as u64, over);
    assert!(v[..GRACE].iter().all(Result::is_ok), "{v:?}");
    for r in &v[GRACE..] {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.code, "mempool-full");
        assert!(
            e.reason.contains("backlog limit of 8")
                && e.reason.contains("0 tx/s")
                && e.reason
                    .contains(&format!("{GRACE} of them are this account's")),
            "{}",
            e.reason
        );
    }
    assert_eq!(core.status().mempool_txs, GRACE);

    // A resend of what was refused is refused again, and changes nothing.
    let v = submit(&mut core, 3_000, 2, deposits(&c, GRACE as u64, over));
    assert!(v
        .iter()
        .all(|r| r.as_ref().is_err_and(|e| e.code == "mempool-full")));
    assert_eq!(core.status().mempool_txs, GRACE);

    // Another office's deposit still gets in: one account's bulk work
    // does not shut out another's few.
    let v = submit(&mut core, 3_500, 3, deposits_by(&c, "dev-bank", 0, 1));
    assert!(v[0].is_ok(), "{v:?}");

    // A peer's gossip was bounded by that peer: it is taken past the
    // floor (up to the pool's own count and bytes).
    core.handle(
        now(4_000),
        Event::Gossiped(deposits(&c, GRACE as u64, over)),
    )
    .unwrap();
    let s = core.status();
    assert_eq!(s.mempool_txs, GRACE + 1 + 4);
    assert_eq!(s.backlog_txs, FLOOR, "nothing committed, so the floor");
}
