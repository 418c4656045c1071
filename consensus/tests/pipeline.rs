//! Pipelining (ADR 022; docs/consensus.md, "Pipelined heights"): a window
//! of two heights. n = 4, f = 1, quorum 3; the primary of view v is
//! replica v mod 4.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use aidledger_consensus::{
    AheadVotes, CommittedTip, Input, Output, Payload, Replica, SafetyState, ViewChange,
};
use aidledger_types::{codec, Block, Hash};
use common::*;

/// Replica `i` at genesis with pipelining, started.
fn piped(net: &Net, i: usize, mutant: bool) -> Replica {
    let mut c = net.cfg(i);
    c.pipeline = true;
    c.bug_fall_below_ahead_votes = mutant;
    let mut r = Replica::new(c, CommittedTip::genesis(net.genesis)).unwrap();
    r.handle(0, Input::Start);
    r
}

fn sent_at<'a>(
    outs: &'a [Output],
    kind: &str,
    height: u64,
) -> Vec<&'a aidledger_consensus::Envelope> {
    sent_kind(outs, kind)
        .into_iter()
        .filter(|e| e.payload.height() == height)
        .collect()
}

fn asks_for(outs: &[Output], height: u64) -> Option<Hash> {
    outs.iter().find_map(|o| match o {
        Output::RequestProposal {
            height: h,
            parent_hash,
            ..
        } if *h == height => Some(*parent_hash),
        _ => None,
    })
}

#[test]
fn a_backup_checks_and_prepares_the_next_height_on_the_pre_prepared_block_and_commits_in_order() {
    let net = Net::new(4);
    let b1 = net.block_on(1, 0, net.genesis, 1);
    let b2 = net.block_on(2, 0, b1.hash(), 2);
    let mut r = piped(&net, 1, false);
    let outs = r.handle(1, net.pre_prepare(0, &b1));
    assert_eq!(validations(&outs).len(), 1);
    // The next height's pre-prepare waits for its parent's verdict.
    let outs = r.handle(2, net.pre_prepare(0, &b2));
    assert!(validations(&outs).is_empty());
    let outs = r.handle(3, validated(&b1, true));
    assert_eq!(sent_at(&outs, "prepare", 1).len(), 1);
    assert_eq!(
        validations(&outs)
            .iter()
            .map(Block::hash)
            .collect::<Vec<_>>(),
        vec![b2.hash()],
        "the next block is checked on its parent as soon as the parent passed"
    );
    let outs = r.handle(4, validated(&b2, true));
    let ahead = sent_at(&outs, "prepare", 2);
    assert_eq!(ahead.len(), 1);
    // Persisted before it left.
    let persisted = outs
        .iter()
        .position(|o| {
            matches!(o, Output::PersistSafetyState(s)
                if s.ahead.and_then(|a| a.prepare_vote) == Some((0, b2.hash())))
        })
        .expect("the prepare ahead is in the safety state");
    let sent = outs.iter().position(Output::is_send).unwrap();
    assert!(persisted < sent);
    // Prepared at height 2, but no commit vote before height 1 commits.
    let mut outs = r.handle(5, net.prepare(2, 0, 2, b2.hash()));
    outs.extend(r.handle(6, net.prepare(3, 0, 2, b2.hash())));
    assert!(sent_at(&outs, "commit", 2).is_empty());
    assert_eq!(r.height(), 1);
    // Height 1 completes; height 2's pre-prepare, verdict, own prepare and
    // the buffered prepares carry over, and its commit vote goes out.
    let mut outs = r.handle(7, net.prepare(2, 0, 1, b1.hash()));
    assert_eq!(sent_at(&outs, "commit", 1).len(), 1);
    outs.extend(r.handle(8, net.commit(0, 0, 1, b1.hash())));
    outs.extend(r.handle(9, net.commit(2, 0, 1, b1.hash())));
    assert_eq!(committed(&outs).map(|(b, _)| b.hash()), Some(b1.hash()));
    assert_eq!(r.height(), 2);
    assert!(validations(&outs).is_empty(), "not checked again");
    assert_eq!(sent_at(&outs, "commit", 2).len(), 1);
    assert!(
        sent_at(&outs, "prepare", 2).is_empty(),
        "not prepared twice"
    );
    let mut outs = r.handle(10, net.commit(0, 0, 2, b2.hash()));
    outs.extend(r.handle(11, net.commit(2, 0, 2, b2.hash())));
    assert_eq!(committed(&outs).map(|(b, _)| b.hash()), Some(b2.hash()));
}

#[test]
fn a_next_block_on_another_parent_is_neither_checked_nor_prepared_ahead() {
    let net = Net::new(4);
    let b1 = net.block_on(1, 0, net.genesis, 1);
    let stray = net.block_on(2, 0, Hash([9; 32]), 2);
    let mut r = piped(&net, 1, false);
    r.handle(1, net.pre_prepare(0, &b1));
    r.handle(2, net.pre_prepare(0, &stray));
    let outs = r.handle(3, validated(&b1, true));
    assert!(validations(&outs).iter().all(|b| b.height() == 1));
    assert!(sent_at(&outs, "prepare", 2).is_empty());
    // Nor while the parent is unchecked, nor when the parent fails.
    let b2 = net.block_on(2, 0, b1.hash(), 2);
    let mut r = piped(&net, 1, false);
    r.handle(1, net.pre_prepare(0, &b1));
    r.handle(2, net.pre_prepare(0, &b2));
    let outs = r.handle(3, validated(&b1, false));
    assert!(validations(&outs).is_empty());
    assert!(sent(&outs).is_empty());
    // A next-height block the driver refused is not executed again ahead
    // when its primary sends it again (each check executes it).
    let mut r = piped(&net, 1, false);
    r.handle(1, net.pre_prepare(0, &b1));
    r.handle(2, net.pre_prepare(0, &b2));
    r.handle(3, validated(&b1, true));
    r.handle(4, validated(&b2, false));
    let outs = r.handle(5, net.pre_prepare(0, &b2));
    assert!(validations(&outs).is_empty());
}

#[test]
fn without_pipelining_the_next_height_is_only_buffered() {
    let net = Net::new(4);
    let b1 = net.block_on(1, 0, net.genesis, 1);
    let b2 = net.block_on(2, 0, b1.hash(), 2);
    let (mut r, _) = net.replica(1);
    r.handle(1, net.pre_prepare(0, &b1));
    r.handle(2, net.pre_prepare(0, &b2));
    let outs = r.handle(3, validated(&b1, true));
    assert!(validations(&outs).iter().all(|b| b.height() == 1));
    assert!(sent_at(&outs, "prepare", 2).is_empty());
}

#[test]
fn a_primary_proposes_the_next_height_on_its_own_block_once() {
    let net = Net::new(4);
    let b1 = net.block_on(1, 0, net.genesis, 1);
    let b2 = net.block_on(2, 0, b1.hash(), 2);
    let other = net.block_on(2, 0, b1.hash(), 3);
    let mut r = piped(&net, 0, false);
    let outs = r.handle(1, Input::ProposalReady { block: b1.clone() });
    assert_eq!(sent_at(&outs, "pre-prepare", 1).len(), 1);
    assert_eq!(asks_for(&outs, 2), Some(b1.hash()));
    let outs = r.handle(2, Input::ProposalReady { block: b2.clone() });
    let pp = sent_at(&outs, "pre-prepare", 2);
    assert_eq!(pp.len(), 1);
    assert_eq!(pp[0].block.as_ref().map(Block::hash), Some(b2.hash()));
    assert_eq!(
        persisted(&outs)
            .and_then(|s| s.ahead)
            .and_then(|a| a.pre_prepared),
        Some((0, b2.hash()))
    );
    // A second block for the same height and view is never proposed.
    let outs = r.handle(3, Input::ProposalReady { block: other });
    assert!(sent(&outs).is_empty());
    // A block built on anything but its own block at the height in flight
    // is refused too.
    let mut r = piped(&net, 0, false);
    r.handle(1, Input::ProposalReady { block: b1.clone() });
    let stray = net.block_on(2, 0, Hash([9; 32]), 4);
    let outs = r.handle(2, Input::ProposalReady { block: stray });
    assert!(sent(&outs).is_empty());
    // Once height 1 commits, height 2 is its pre-prepared block: no new
    // request, and the backups' votes complete it.
    let mut r = piped(&net, 0, false);
    r.handle(1, Input::ProposalReady { block: b1.clone() });
    r.handle(2, Input::ProposalReady { block: b2.clone() });
    let mut outs = Vec::new();
    for (t, from) in [(3, 1), (4, 2)] {
        outs.extend(r.handle(t, net.prepare(from, 0, 1, b1.hash())));
    }
    for (t, from) in [(5, 1), (6, 2)] {
        outs.extend(r.handle(t, net.commit(from, 0, 1, b1.hash())));
    }
    assert_eq!(r.height(), 2);
    assert_eq!(asks_for(&outs, 2), None);
    for (t, from) in [(7, 1), (8, 2)] {
        outs.extend(r.handle(t, net.prepare(from, 0, 2, b2.hash())));
    }
    assert_eq!(sent_at(&outs, "commit", 2).len(), 1);
}

/// Replica 3, pipelining, active in view 1 at height 1 (a new-view from
/// replica 1 with no re-proposal), having prepared block 1 and, ahead,
/// block 2, both proposed in view 1.
fn in_view_1_with_a_vote_ahead(net: &Net, mutant: bool) -> (Replica, Block, Block) {
    let mut primary = piped(net, 1, false);
    let vc = |from: usize| {
        net.msg(
            from,
            Payload::ViewChange(ViewChange {
                new_view: 1,
                height: 1,
                prepared: None,
            }),
            None,
        )
    };
    let mut outs = primary.handle(1, vc(2));
    outs.extend(primary.handle(2, vc(3)));
    let nv = sent_kind(&outs, "new-view")[0].encode();
    let mut r = piped(net, 3, mutant);
    r.handle(3, Input::Message(nv));
    assert_eq!((r.view(), r.is_view_active()), (1, true));
    let b1 = net.block_on(1, 1, net.genesis, 1);
    let b2 = net.block_on(2, 1, b1.hash(), 2);
    r.handle(4, net.pre_prepare(1, &b1));
    r.handle(5, net.pre_prepare(1, &b2));
    r.handle(6, validated(&b1, true));
    let outs = r.handle(7, validated(&b2, true));
    assert_eq!(sent_at(&outs, "prepare", 2).len(), 1);
    (r, b1, b2)
}

#[test]
fn the_next_height_starts_no_lower_than_a_view_this_replica_voted_there_ahead() {
    let net = Net::new(4);
    // Height 1 commits with a certificate of view 0 (a quorum that formed
    // before the view change, arriving late). Today's rule would start
    // height 2 in view 0; the prepare ahead in view 1 forbids it (P5).
    let (mut r, b1, b2) = in_view_1_with_a_vote_ahead(&net, false);
    let cert = net.certificate(0, &b1, &[0, 1, 2]);
    let outs = r.handle(
        8,
        Input::Synced {
            block: b1.clone(),
            certificate: cert.clone(),
        },
    );
    assert_eq!(committed(&outs).map(|(b, _)| b.hash()), Some(b1.hash()));
    assert_eq!((r.height(), r.view()), (2, 1));
    assert_eq!(r.safety_state().prepare_vote, Some((1, b2.hash())));
    // The planted bug falls to the certificate's view: a vote at height 2
    // in view 0 could then follow one in view 1.
    let (mut m, b1, _) = in_view_1_with_a_vote_ahead(&net, true);
    m.handle(
        8,
        Input::Synced {
            block: b1,
            certificate: cert,
        },
    );
    assert_eq!((m.height(), m.view()), (2, 0));
}

#[test]
fn votes_ahead_survive_a_restart_after_their_parent_committed() {
    let net = Net::new(4);
    let b1 = net.block_on(1, 0, net.genesis, 1);
    let b2 = net.block_on(2, 0, b1.hash(), 2);
    let other = net.block_on(2, 0, b1.hash(), 3);
    // Persisted at height 1 with a prepare ahead for b2; the crash came
    // after b1 committed and before the next safety state was written.
    let mut s = SafetyState::fresh(1, 0);
    s.ahead = Some(AheadVotes {
        pre_prepared: None,
        prepare_vote: Some((0, b2.hash())),
    });
    let s = SafetyState::decode(&s.encode()).unwrap();
    let tip = CommittedTip {
        height: 1,
        hash: b1.hash(),
        view: 0,
    };
    let mut c = net.cfg(1);
    c.pipeline = true;
    let mut r = Replica::restore(c, s, tip).unwrap();
    r.handle(0, Input::Start);
    assert_eq!(r.height(), 2);
    assert_eq!(r.safety_state().prepare_vote, Some((0, b2.hash())));
    // Another block at (2, 0) is never prepared.
    r.handle(1, net.pre_prepare(0, &other));
    let outs = r.handle(2, validated(&other, true));
    assert!(sent_kind(&outs, "prepare").is_empty());
}

#[test]
fn a_safety_state_without_votes_ahead_encodes_as_before_pipelining() {
    let net = Net::new(4);
    let b = net.block_on(1, 0, net.genesis, 1);
    let mut s = SafetyState::fresh(7, 3);
    s.prepare_vote = Some((3, b.hash()));
    s.prepared_block = Some(b.clone());
    // The fields in the order earlier builds wrote them.
    let old = codec::encode(&(
        7u64,
        3u64,
        true,
        3u64,
        None::<(u64, Hash)>,
        Some((3u64, b.hash())),
        None::<(u64, Hash)>,
        None::<aidledger_consensus::PreparedCert>,
        Some(b),
    ));
    assert_eq!(s.encode(), old);
    assert_eq!(SafetyState::decode(&old).unwrap(), s);
    // With votes ahead: they follow, and come back.
    s.ahead = Some(AheadVotes {
        pre_prepared: Some((3, Hash([1; 32]))),
        prepare_vote: None,
    });
    let bytes = s.encode();
    assert_eq!(&bytes[..old.len()], &old[..]);
    assert_eq!(SafetyState::decode(&bytes).unwrap(), s);
    // Empty votes ahead have one encoding, none: the other is refused.
    let mut padded = old.clone();
    padded.extend(codec::encode(&AheadVotes::default()));
    assert!(SafetyState::decode(&padded).is_err());
}

#[test]
fn a_new_view_whose_highest_certificate_extends_a_lost_parent_proposes_afresh() {
    let net = Net::new(4);
    // Block c was prepared in view 1 ahead, on a parent at height 0 that
    // is not the genesis this replica committed (a parent that lost).
    let c = net.block_on(1, 1, Hash([7; 32]), 3);
    let vc = |from: usize, prepared: Option<(u64, &Block)>| {
        let (cert, block) = match prepared {
            Some((v, b)) => (Some(net.prepared_cert(v, b, &[0, 2])), Some(b.clone())),
            None => (None, None),
        };
        net.msg(
            from,
            Payload::ViewChange(ViewChange {
                new_view: 2,
                height: 1,
                prepared: cert,
            }),
            block,
        )
    };
    let mut primary = piped(&net, 2, false);
    let mut outs = primary.handle(1, vc(0, Some((1, &c))));
    outs.extend(primary.handle(2, vc(1, None)));
    let nvs = sent_kind(&outs, "new-view");
    assert_eq!(nvs.len(), 1);
    let Payload::NewView(nv) = &nvs[0].payload else {
        unreachable!()
    };
    assert_eq!(nv.reproposal, None);
    assert_eq!(nvs[0].block.as_ref().map(Block::hash), Some(c.hash()));
    assert_eq!(asks_for(&outs, 1), Some(net.genesis), "a fresh block");
    // A backup checks the parent through the attached block and follows.
    let mut backup = piped(&net, 3, false);
    backup.handle(3, Input::Message(nvs[0].encode()));
    assert_eq!(
        (backup.view(), backup.is_view_active()),
        (2, true),
        "{:?}",
        backup.last_rejection()
    );
    // Without the block the claim cannot be checked: refused.
    let mut stripped = nvs[0].clone();
    stripped.block = None;
    let mut backup = piped(&net, 3, false);
    backup.handle(3, Input::Message(stripped.encode()));
    assert!(!backup.is_view_active() || backup.view() != 2);
    // A primary that skips a certificate whose block does extend the
    // tip, attaching the block as if its parent had lost: refused.
    let a = net.block_on(1, 1, net.genesis, 4);
    let vcs: Vec<_> = [(0usize, Some(&a)), (1, None), (2, None)]
        .into_iter()
        .map(|(from, prepared)| {
            let vc = ViewChange {
                new_view: 2,
                height: 1,
                prepared: prepared.map(|b| net.prepared_cert(1, b, &[0, 2])),
            };
            let sig = net
                .env(from, Payload::ViewChange(vc.clone()), None)
                .signature;
            aidledger_consensus::SignedViewChange {
                from: from as u16,
                view_change: vc,
                signature: sig,
            }
        })
        .collect();
    let lie = net.msg(
        2,
        Payload::NewView(aidledger_consensus::NewView {
            view: 2,
            height: 1,
            view_changes: vcs,
            reproposal: None,
        }),
        Some(a),
    );
    let mut backup = piped(&net, 3, false);
    backup.handle(3, lie);
    assert!(!backup.is_view_active() || backup.view() != 2);
    assert!(backup.last_rejection().is_some());
}
