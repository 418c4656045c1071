#![allow(clippy::unwrap_used)]
//! A block built before its parent committed (ADR 022): it executes on
//! the parent's writes over committed state, carries the grandparent's
//! certificate in a header of version 3, and checks the same before and
//! after the parent commits.

mod common;

use aidledger_execution::{
    build_block, validate_block, BlockContext, BlockInvalid, BlockOutcome, ParentInfo, Speculative,
};
use aidledger_types::{Block, Timestamp, HEADER_VERSION, HEADER_VERSION_PIPELINED};
use common::Chain;

/// A chain of two committed blocks, a third built on its tip and not
/// committed, with the third's outcome and what a block above it is
/// checked against before the third commits.
fn pending() -> (Chain, Block, BlockOutcome, ParentInfo) {
    let mut c = Chain::new();
    c.block(vec![]);
    c.block(vec![]);
    let program = c.f.create_program("piped", 1_000_000);
    let ctx = BlockContext {
        timestamp: c.time().saturating_add_ms(1_000),
        ..c.next_ctx()
    };
    let txs = vec![c.f.verified(program)];
    let (b3, o3) = build_block(&c.parent, &ctx, 0, &txs, &c.state, &c.acc).unwrap();
    assert_eq!(b3.header.version, HEADER_VERSION);
    let above = ParentInfo {
        certificate: c.parent.certificate.clone(),
        ..c.parent.child(&b3, &o3, None)
    };
    (c, b3, o3, above)
}

/// Block 4 on the pending block 3: a deposit into the program block 3
/// creates, which only its post-state holds.
fn block_four(c: &mut Chain, b3: &Block, o3: &BlockOutcome, above: &ParentInfo) -> Block {
    let deposit = c.f.deposit("piped", 500);
    let deposit = c.f.verified(deposit);
    let ctx = BlockContext {
        height: 4,
        timestamp: b3.header.timestamp.saturating_add_ms(1_000),
        ..c.next_ctx()
    };
    let state = Speculative::new(&c.state, &o3.writes);
    let (b4, o4) = build_block(above, &ctx, 0, &[deposit], &state, &o3.accumulator).unwrap();
    assert!(o4.receipts[0].is_applied(), "{:?}", o4.receipts[0]);
    b4
}

#[test]
fn a_block_on_a_pending_parent_checks_the_same_before_and_after_the_parent_commits() {
    let (mut c, b3, o3, above) = pending();
    assert_eq!(above.header_version(), HEADER_VERSION_PIPELINED);
    let b4 = block_four(&mut c, &b3, &o3, &above);
    assert_eq!(b4.header.version, HEADER_VERSION_PIPELINED);
    assert_eq!(
        b4.header.parent_certificate.as_ref().map(|x| x.height),
        Some(2)
    );
    // Checked before block 3 commits, on its writes.
    let state = Speculative::new(&c.state, &o3.writes);
    let (_, before) = validate_block(&b4, &above, None, 1_000, &state, &o3.accumulator).unwrap();
    assert_eq!(before.state_root, b4.header.state_root);
    // Block 3 commits; block 4 is checked as any block on the tip, as an
    // auditor's replay checks it.
    c.commit(&b3, &o3);
    let (_, after) = validate_block(&b4, &c.parent, None, 1_000, &c.state, &c.acc).unwrap();
    assert_eq!(after.state_root, before.state_root);
    assert_eq!(after.receipts, before.receipts);
    assert_eq!(after.writes, before.writes);
}

#[test]
fn a_pipelined_header_must_carry_the_grandparents_certificate_and_only_from_height_3() {
    let (mut c, b3, o3, above) = pending();
    let b4 = block_four(&mut c, &b3, &o3, &above);
    let state = Speculative::new(&c.state, &o3.writes);
    let check =
        |b: &Block, p: &ParentInfo| validate_block(b, p, None, 1_000, &state, &o3.accumulator);
    // Version 2 promises the parent's certificate: the grandparent's is
    // refused.
    let mut b = b4.clone();
    b.header.version = HEADER_VERSION;
    assert!(matches!(
        check(&b, &above),
        Err(BlockInvalid::ParentCertificate { height: 4, .. })
    ));
    // Version 3 with a certificate of another height, or none.
    let mut b = b4.clone();
    let mut wrong = b.header.parent_certificate.clone().unwrap();
    wrong.height = 3;
    b.header.parent_certificate = Some(wrong);
    assert!(matches!(
        check(&b, &above),
        Err(BlockInvalid::ParentCertificate { height: 4, .. })
    ));
    let mut b = b4.clone();
    b.header.parent_certificate = None;
    assert!(matches!(
        check(&b, &above),
        Err(BlockInvalid::ParentCertificate { height: 4, .. })
    ));
    // Below height 3 there is no grandparent with a certificate.
    let mut c = Chain::new();
    c.block(vec![]);
    let ctx = BlockContext {
        timestamp: Timestamp(c.time().0 + 1_000),
        ..c.next_ctx()
    };
    let (mut b2, _) = build_block(&c.parent, &ctx, 0, &[], &c.state, &c.acc).unwrap();
    b2.header.version = HEADER_VERSION_PIPELINED;
    assert!(matches!(
        validate_block(&b2, &c.parent, None, 1_000, &c.state, &c.acc),
        Err(BlockInvalid::HeaderVersion {
            height: 2,
            got: 3,
            ..
        })
    ));
}
