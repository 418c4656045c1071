#![allow(clippy::unwrap_used)]
//! The quiet chain's due time (ADR 017, part 6): `gov/next-due` says when
//! the next block has work to do with no transaction. Each module names
//! its dates; a block whose end-of-block step changed state is followed at
//! once; otherwise the heartbeat. (The differential test checks, over long
//! random workloads, that an empty block before the due time changes
//! nothing.)

mod common;

use aidledger_contracts::model::{GovAction, ParamValue};
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{Condition, DueReason, NextDue};
use aidledger_execution::read_next_due;
use aidledger_types::{Role, Timestamp};
use common::{Chain, DAY};

const HOUR: u64 = DAY / 24;

fn due(c: &Chain) -> NextDue {
    read_next_due(&c.state).unwrap()
}

fn at(t: u64, reason: DueReason) -> NextDue {
    NextDue {
        at: Timestamp(t),
        reason,
    }
}

#[test]
fn the_genesis_is_due_at_once_and_an_idle_chain_waits_for_its_heartbeat() {
    let mut c = Chain::new();
    let g = c.time().0;
    assert_eq!(due(&c), at(g, DueReason::Now));
    assert_eq!(c.genesis.params.idle_block_interval_ms, HOUR);
    // The genesis accounts and orgs change nothing at the end of block 1.
    c.block_at(Timestamp(g + 1_000), vec![]);
    assert_eq!(due(&c), at(g + 1_000 + HOUR, DueReason::Heartbeat));
    // A transaction that leaves end-of-block work alone keeps it quiet.
    let tx = c.f.create_program("relief", 1_000_000);
    c.block_at(Timestamp(g + 2_000), vec![tx]);
    assert_eq!(due(&c), at(g + 2_000 + HOUR, DueReason::Heartbeat));
}

#[test]
fn a_tranche_date_is_due_and_its_release_is_followed_at_once() {
    let mut c = Chain::with(|g| g.params.idle_block_interval_ms = 7 * DAY);
    let t0 = c.time().0;
    let date = t0 + 2 * DAY;
    let txs = vec![
        c.f.create_program("relief", 1_000_000),
        c.f.deposit("relief", 500_000),
        c.f.create_plan(
            "road",
            "relief",
            None,
            &[
                ("first", 100, Condition::After(Timestamp(date))),
                // A later date, behind a `not`: still a date the condition
                // can change at.
                (
                    "second",
                    100,
                    Condition::Not(Box::new(Condition::Before(Timestamp(date + DAY)))),
                ),
            ],
        ),
    ];
    c.ok(txs);
    // Not approved yet: its dates are not due.
    assert_eq!(due(&c).reason, DueReason::Heartbeat);
    let tx = c.f.approve_plan("dev-bank", "road");
    c.ok(vec![tx]);
    assert_eq!(due(&c), at(date, DueReason::Tranche));
    // A block before the date (one with a transaction: an empty one would
    // get no vote) releases nothing; the date stays due.
    let tx = c.f.deposit("relief", 1);
    c.block_at(Timestamp(date - 1), vec![tx]);
    assert_eq!(due(&c), at(date, DueReason::Tranche));
    // At the date the first tranche releases: a change, so the next block
    // is due at once; after it the second date is next.
    let out = c.block_at(Timestamp(date), vec![]);
    assert!(!out.events.is_empty());
    assert_eq!(due(&c), at(date, DueReason::Now));
    c.block_at(Timestamp(date + 1), vec![]);
    assert_eq!(due(&c), at(date + DAY, DueReason::Tranche));
    c.block_at(Timestamp(date + DAY), vec![]);
    assert_eq!(due(&c).reason, DueReason::Now);
    c.block_at(Timestamp(date + DAY + 1), vec![]);
    // Both released; the settlement deadline of the first release is next.
    let deadline = c.genesis.params.settlement_deadline_ms;
    assert_eq!(
        due(&c),
        at(date + deadline + 1, DueReason::SettlementDeadline)
    );
}

#[test]
fn an_entitlement_is_due_at_its_start_and_at_each_period_boundary() {
    let mut c = Chain::new();
    let t0 = c.time().0;
    let start = t0 + 3 * HOUR;
    let period = 2 * HOUR;
    let txs = vec![
        c.f.create_program("relief", 1_000_000_000),
        c.f.deposit("relief", 1_000_000),
        c.f.register_household().1,
        c.f.set_entitlement("monthly", "relief", 10, Timestamp(start), period, 3),
    ];
    c.ok(txs);
    // Before the start: the heartbeat (an hour) comes first.
    let now = c.time().0;
    assert_eq!(due(&c), at(now + HOUR, DueReason::Heartbeat));
    c.block_at(Timestamp(start - HOUR), vec![]);
    assert_eq!(due(&c), at(start, DueReason::EntitlementPeriod));
    // The start pays period 0: a change.
    c.block_at(Timestamp(start), vec![]);
    assert_eq!(due(&c).reason, DueReason::Now);
    c.block_at(Timestamp(start + 1), vec![]);
    // The next boundary is two hours on; the heartbeat an hour.
    assert_eq!(due(&c), at(start + 1 + HOUR, DueReason::Heartbeat));
    c.block_at(Timestamp(start + period - HOUR / 2), vec![]);
    assert_eq!(due(&c), at(start + period, DueReason::EntitlementPeriod));
}

#[test]
fn the_idle_interval_is_a_parameter_with_bounds() {
    let mut c = Chain::new();
    let set = |c: &mut Chain, ms: u64| {
        let propose = c.f.sign_as(
            "state-bank",
            Role::Admin,
            &Payload::GovPropose(payload::GovPropose {
                action: GovAction::SetParam {
                    param: ParamValue::IdleBlockIntervalMs(ms),
                },
            }),
        );
        c.block(vec![propose])
    };
    for bad in [0, 999, 7 * DAY + 1] {
        let out = set(&mut c, bad);
        assert!(
            !out.receipts[0].is_applied(),
            "{bad} ms accepted: {:?}",
            out.receipts[0]
        );
    }
    // The genesis refuses the same values.
    for bad in [999, 7 * DAY + 1] {
        let mut g = c.genesis.clone();
        g.params.idle_block_interval_ms = bad;
        let e = g.validate().unwrap_err();
        assert!(e.to_string().contains("idle_block_interval_ms"), "{e}");
    }
    let mut g = c.genesis.clone();
    g.params.idle_block_interval_ms = 1_000;
    g.validate().unwrap();
}

/// The vote rule (ADR 017): a live validator refuses an empty block before
/// the due time, unless a view change happened at the height; a block
/// with a transaction, or one at the due time, passes. The replay reaches
/// the same verdict through `empty_block_allowed`.
#[test]
fn an_empty_block_before_the_due_time_gets_no_vote() {
    use aidledger_execution::{apply_block, empty_block_allowed, BlockInvalid};
    use aidledger_types::{Block, BlockHeader};
    let mut c = Chain::new();
    c.block(vec![]);
    let due = read_next_due(&c.state).unwrap();
    assert_eq!(due.reason, DueReason::Heartbeat);
    let header_at = |c: &Chain, t: u64, view: u64, txs: &[aidledger_types::SignedTx]| {
        let mut ctx = c.next_ctx();
        ctx.timestamp = Timestamp(t);
        let verified: Vec<_> = txs.iter().cloned().map(|x| c.f.verified(x)).collect();
        let out = apply_block(&c.state, &c.acc, &ctx, &verified).unwrap();
        Block {
            header: BlockHeader {
                version: aidledger_types::HEADER_VERSION,
                chain_id: ctx.chain_id.clone(),
                height: ctx.height,
                view,
                parent_hash: c.parent.hash,
                timestamp: ctx.timestamp,
                proposer: ctx.proposer,
                tx_root: Block::compute_tx_root(txs),
                tx_count: txs.len() as u32,
                state_root: out.state_root,
                event_root: out.event_root().0,
                event_count: out.event_root().1,
                validator_set_hash: c.parent.validator_set.hash(),
                next_validator_set_hash: out.validator_set.hash(),
                parent_certificate: c.parent.certificate.clone(),
            },
            txs: txs.to_vec(),
        }
    };
    let live = |c: &Chain, b: &Block| {
        aidledger_execution::validate_block(
            b,
            &c.parent,
            Some(b.header.timestamp.0),
            10_000,
            &c.state,
            &c.acc,
        )
        .map(|_| ())
    };
    // Empty, a millisecond early, no view change: refused when voting and
    // by the replay's check, with the due time and its reason.
    let early = header_at(&c, due.at.0 - 1, 0, &[]);
    let e = live(&c, &early).unwrap_err();
    assert!(
        matches!(e, BlockInvalid::EmptyBeforeDue { due: d, reason: "heartbeat", .. } if d == due.at),
        "{e}"
    );
    assert!(empty_block_allowed(&early.header, &c.state).is_err());
    // Checked without a clock (a plain re-execution) it is a valid block:
    // the rule is about voting, like the drift bound.
    aidledger_execution::validate_block(&early, &c.parent, None, 10_000, &c.state, &c.acc).unwrap();
    // At the due time; after a view change at the height; or carrying a
    // transaction: each gets a vote.
    live(&c, &header_at(&c, due.at.0, 0, &[])).unwrap();
    live(&c, &header_at(&c, due.at.0 - 1, 1, &[])).unwrap();
    let tx = c.f.create_program("quiet", 1_000);
    live(&c, &header_at(&c, due.at.0 - 1, 0, &[tx])).unwrap();
}
