#![allow(clippy::unwrap_used)]
//! The block-time floor (ADR 014): a block's time is at least the median
//! commit time of the parent's certificate, which the header carries and
//! every validator and replayer checks the same way.

mod common;

use aidledger_contracts::model::GovAction;
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{keys, PreviousValidators};
use aidledger_crypto::Purpose;
use aidledger_execution::{build_block, validate_block, BlockContext, BlockInvalid, StateRead};
use aidledger_types::{
    codec, Block, CommitCertificate, CommitSignature, Role, Timestamp, ValidatorSet,
};
use common::Chain;

/// A certificate of the tip signed by validators `signers` of the set that
/// certified it, signer `signers[k]` voting at `times[k]`.
fn cert_of_tip(c: &Chain, signers: &[usize], times: &[Timestamp]) -> CommitCertificate {
    let tip = c.blocks.last().expect("a block");
    let set = &c.parent.certifiers;
    let mut cert = CommitCertificate {
        height: tip.header.height,
        view: tip.header.view,
        block_hash: tip.hash(),
        signatures: Vec::new(),
    };
    for (&i, &time) in signers.iter().zip(times) {
        let key = set.validators()[i].key;
        let (_, kp) =
            c.f.keys
                .validators
                .iter()
                .find(|(_, k)| k.public() == key)
                .expect("a fixture key");
        let vote = codec::encode(&cert.vote(&c.genesis.chain_id, time));
        cert.signatures.push(CommitSignature {
            validator: i as u16,
            time,
            signature: kp.sign(&c.genesis.chain_id, Purpose::Commit, &vote),
        });
    }
    cert
}

/// Builds the next (empty) block at `time` on the chain's tip, carrying
/// whatever certificate `c.parent.certificate` holds.
fn next_block(c: &Chain, time: Timestamp) -> Block {
    let ctx = BlockContext {
        timestamp: time,
        ..c.next_ctx()
    };
    build_block(&c.parent, &ctx, 0, &[], &c.state, &c.acc)
        .expect("build")
        .0
}

fn check(c: &Chain, b: &Block) -> Result<(), BlockInvalid> {
    validate_block(b, &c.parent, None, 1_000, &c.state, &c.acc).map(|_| ())
}

/// A chain of two blocks, one second apart.
fn two_blocks() -> (Chain, Timestamp) {
    let mut c = Chain::new();
    c.block(vec![]);
    c.block(vec![]);
    let t = c.time();
    (c, t)
}

#[test]
fn a_leader_cannot_go_below_the_quorums_median_commit_time() {
    let (mut c, t) = two_blocks();
    // The validators voted for the tip 5, 6 and 9 seconds after its time.
    let times = [5_000, 6_000, 9_000].map(|d| t.saturating_add_ms(d));
    c.parent.certificate = Some(cert_of_tip(&c, &[0, 1, 2], &times));
    let floor = times[1];
    assert_eq!(c.parent.next_time_floor(), floor);
    // One millisecond after the parent is monotonic, but far below what
    // the quorum's clocks said.
    for late in [t.saturating_add_ms(1), Timestamp(floor.0 - 1)] {
        let b = next_block(&c, late);
        assert_eq!(
            check(&c, &b),
            Err(BlockInvalid::TimestampBelowFloor {
                height: 3,
                floor,
                got: late,
            })
        );
    }
    // At the floor, or later, it is valid.
    for ok in [floor, times[2], t.saturating_add_ms(60_000)] {
        check(&c, &next_block(&c, ok)).unwrap();
    }
}

#[test]
fn one_byzantine_time_does_not_move_the_floor_out_of_the_honest_range() {
    let (mut c, t) = two_blocks();
    let honest = [t.saturating_add_ms(2_000), t.saturating_add_ms(3_000)];
    for extreme in [Timestamp(0), Timestamp(u64::MAX)] {
        // Signer 1 is byzantine; 0 and 2 are honest.
        let cert = cert_of_tip(&c, &[0, 1, 2], &[honest[0], extreme, honest[1]]);
        let floor = cert.median_time().unwrap();
        assert!(
            honest[0] <= floor && floor <= honest[1],
            "{extreme:?}: {floor:?}"
        );
        c.parent.certificate = Some(cert);
        check(&c, &next_block(&c, floor)).unwrap();
    }
    // With all four signers, one of them extreme, still between honest times.
    let cert = cert_of_tip(
        &c,
        &[0, 1, 2, 3],
        &[honest[0], Timestamp(u64::MAX), honest[1], honest[1]],
    );
    let floor = cert.median_time().unwrap();
    assert!(honest[0] <= floor && floor <= honest[1]);
    c.parent.certificate = Some(cert);
    check(&c, &next_block(&c, floor)).unwrap();
}

#[test]
fn the_carried_certificate_must_be_a_valid_certificate_of_the_parent() {
    let (mut c, t) = two_blocks();
    let time = t.saturating_add_ms(1_000);
    let good = cert_of_tip(&c, &[0, 1, 2], &[time; 3]);
    c.parent.certificate = Some(good.clone());
    let valid = next_block(&c, time);
    check(&c, &valid).unwrap();

    let refused = |c: &Chain, b: &Block| match check(c, b) {
        Err(BlockInvalid::ParentCertificate { height: 3, reason }) => reason,
        other => panic!("expected a parent-certificate refusal, got {other:?}"),
    };
    // Missing.
    let mut b = valid.clone();
    b.header.parent_certificate = None;
    assert_eq!(refused(&c, &b), "missing");
    // A time changed after signing (to lower the floor).
    let mut b = valid.clone();
    let mut forged = good.clone();
    for s in &mut forged.signatures {
        s.time = t;
    }
    b.header.parent_certificate = Some(forged);
    assert!(refused(&c, &b).contains("signature"), "{}", refused(&c, &b));
    // Too few signers: two of four is not a quorum.
    let mut b = valid.clone();
    b.header.parent_certificate = Some(cert_of_tip(&c, &[0, 1], &[time; 2]));
    assert!(refused(&c, &b).contains("signatures"));
    // A certificate of the grandparent.
    let mut b = valid.clone();
    let mut older = good.clone();
    older.height -= 1;
    b.header.parent_certificate = Some(older);
    assert!(refused(&c, &b).contains("height"));
    // A certificate of another block at the parent's height.
    let mut b = valid.clone();
    let mut other = good;
    other.block_hash = aidledger_types::Hash([7; 32]);
    b.header.parent_certificate = Some(other);
    assert!(refused(&c, &b).contains("block"));
}

#[test]
fn block_one_carries_no_certificate_and_its_floor_is_the_genesis_time() {
    let mut c = Chain::new();
    assert_eq!(c.parent.certificate, None);
    assert_eq!(
        c.parent.next_time_floor(),
        c.genesis.genesis_time.saturating_add_ms(1)
    );
    let b = next_block(&c, c.genesis.genesis_time.saturating_add_ms(1));
    assert_eq!(b.header.parent_certificate, None);
    check(&c, &b).unwrap();
    // A certificate of something else on block 1 is refused.
    c.block(vec![]);
    let stray = cert_of_tip(&c, &[0, 1, 2], &[c.time(); 3]);
    let c = Chain::new();
    let mut b = next_block(&c, c.genesis.genesis_time.saturating_add_ms(1));
    b.header.parent_certificate = Some(stray);
    assert!(matches!(
        check(&c, &b),
        Err(BlockInvalid::ParentCertificate { height: 1, .. })
    ));
}

/// After a block that changes the validator set, the next block's parent
/// certificate is checked against the set that certified that block (the
/// old one), and the state records that set for a node restarting there.
#[test]
fn after_a_set_change_the_parent_certificate_is_checked_against_the_old_set() {
    let mut c = Chain::new();
    let old = c.parent.validator_set.clone();
    let newset = ValidatorSet::new(old.validators()[1..].to_vec()).unwrap();
    let p = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose {
            action: GovAction::SetValidators {
                validators: newset.clone(),
                at_height: c.parent.height + 4,
            },
        }),
    );
    let a = c.f.sign_as(
        "dev-bank",
        Role::Admin,
        &Payload::GovApprove(payload::GovApprove { proposal: 0 }),
    );
    c.ok(vec![p]);
    c.ok(vec![a]);
    assert_eq!(c.parent.validator_set, old, "scheduled, not yet in force");
    let changed_at = c.parent.height + 1;
    c.ok(vec![]);
    assert_eq!(c.parent.validator_set, newset);
    assert_eq!(c.parent.certifiers, old);
    let prev: PreviousValidators =
        codec::decode(&c.state.get(keys::PREVIOUS_VALIDATORS).unwrap().unwrap()).unwrap();
    assert_eq!(
        prev,
        PreviousValidators {
            height: changed_at,
            validators: old.clone(),
        }
    );
    // The chain's own certificate (by the old set) is accepted...
    let ctx = BlockContext {
        proposer: newset.leader(0).key,
        ..c.next_ctx()
    };
    let (b, _) = build_block(&c.parent, &ctx, 0, &[], &c.state, &c.acc).unwrap();
    check(&c, &b).unwrap();
    // ...and one whose indices are read against the new set is not.
    let mut wrong = c.parent.clone();
    wrong.certifiers = newset;
    assert!(matches!(
        validate_block(&b, &wrong, None, 1_000, &c.state, &c.acc),
        Err(BlockInvalid::ParentCertificate { .. })
    ));
}
