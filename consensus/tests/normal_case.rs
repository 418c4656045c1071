//! PBFT §4.2-§4.3: pre-prepare, prepare, commit. n = 4, f = 1, quorum 3;
//! the primary of view 0 is replica 0.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use aidledger_consensus::{ConsensusError, Input, Output, Payload};
use aidledger_crypto::verify_certificate;
use aidledger_types::Block;
use common::*;

#[test]
fn primary_requests_a_proposal_and_pre_prepares_it() {
    let net = Net::new(4);
    let (mut r, outs) = net.replica(0);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::RequestProposal { height: 1, view: 0, parent_hash, .. } if *parent_hash == net.genesis
    )));
    let b = net.block(0, 1);
    let outs = r.handle(5, Input::ProposalReady { block: b.clone() });
    let pp = sent_kind(&outs, "pre-prepare");
    assert_eq!(pp.len(), 1);
    assert_eq!(pp[0].block.as_ref().map(|x| x.hash()), Some(b.hash()));
    // The primary never prepares; its pre-prepare stands for its vote.
    assert!(sent_kind(&outs, "prepare").is_empty());
}

#[test]
fn pre_prepare_accepted_only_from_primary_of_view() {
    let net = Net::new(4);
    // (signer, accepted?)
    for (signer, ok) in [(0usize, true), (1, false), (2, false), (3, false)] {
        let receiver = if signer == 1 { 2 } else { 1 };
        let (mut r, _) = net.replica(receiver);
        let b = net.block(0, 1);
        let input = net.msg(
            signer,
            Payload::PrePrepare {
                view: 0,
                height: 1,
                block_hash: b.hash(),
            },
            Some(b.clone()),
        );
        let outs = r.handle(1, input);
        assert_eq!(!validations(&outs).is_empty(), ok, "signer {signer}");
        if !ok {
            assert_eq!(
                r.last_rejection(),
                Some(&ConsensusError::WrongLeader {
                    view: 0,
                    expected: 0,
                    got: signer as u16
                })
            );
        }
    }
}

#[test]
fn backup_prepares_only_after_block_validated() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(1);
    let b = net.block(0, 1);
    let outs = r.handle(1, net.pre_prepare(0, &b));
    assert_eq!(validations(&outs).len(), 1);
    assert!(sent(&outs).is_empty(), "nothing sent before validation");
    // An invalid verdict: no prepare, ever.
    let outs = r.handle(2, validated(&b, false));
    assert!(sent(&outs).is_empty());

    let (mut r, _) = net.replica(1);
    r.handle(1, net.pre_prepare(0, &b));
    let outs = r.handle(2, validated(&b, true));
    let p = sent_kind(&outs, "prepare");
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].payload,
        Payload::Prepare {
            view: 0,
            height: 1,
            block_hash: b.hash()
        }
    );
}

#[test]
fn backup_rejects_conflicting_pre_prepare_same_view_and_sequence() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(1);
    let a = net.block(0, 1);
    let b = net.block(0, 2);
    accept(&net, &mut r, &a);
    let outs = r.handle(3, net.pre_prepare(0, &b));
    assert!(validations(&outs).is_empty());
    assert!(matches!(
        r.last_rejection(),
        Some(ConsensusError::ConflictingPrePrepare {
            view: 0,
            height: 1,
            ..
        })
    ));
}

#[test]
fn prepared_requires_pre_prepare_and_2f_matching_prepares() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let other = net.block(0, 2).hash();
    // Prepares fed to backup 1 after it prepared `a` itself, and whether it
    // is then prepared (and so sends a commit).
    type Case<'a> = (&'a str, Vec<(usize, aidledger_types::Hash)>, bool);
    let cases: Vec<Case<'_>> = vec![
        ("own prepare only (1 of 2f)", vec![], false),
        ("a mismatching prepare", vec![(2, other)], false),
        (
            "the primary's prepare does not count",
            vec![(0, a.hash())],
            false,
        ),
        ("2f matching prepares", vec![(2, a.hash())], true),
        (
            "2f+1 matching prepares",
            vec![(2, a.hash()), (3, a.hash())],
            true,
        ),
    ];
    for (name, prepares, expect) in cases {
        let (mut r, _) = net.replica(1);
        let mut outs = accept(&net, &mut r, &a);
        for (from, h) in prepares {
            outs.extend(r.handle(20, net.prepare(from, 0, 1, h)));
        }
        assert_eq!(!sent_kind(&outs, "commit").is_empty(), expect, "{name}");
    }
    // Matching prepares without the pre-prepare: not prepared.
    let (mut r, _) = net.replica(1);
    let mut outs = r.handle(1, net.prepare(2, 0, 1, a.hash()));
    outs.extend(r.handle(1, net.prepare(3, 0, 1, a.hash())));
    assert!(sent_kind(&outs, "commit").is_empty());
    // ...until it arrives and is validated.
    let outs = accept(&net, &mut r, &a);
    assert_eq!(sent_kind(&outs, "commit").len(), 1);
}

#[test]
fn committed_local_requires_2f_plus_1_commits() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(1);
    accept(&net, &mut r, &a);
    let outs = r.handle(20, net.prepare(2, 0, 1, a.hash()));
    assert_eq!(
        sent_kind(&outs, "commit").len(),
        1,
        "prepared, own commit sent"
    );
    // Own commit + one more = 2f: not committed.
    let outs = r.handle(21, net.commit(2, 0, 1, a.hash()));
    assert!(committed(&outs).is_none());
    // A commit for another block does not count.
    let outs = r.handle(22, net.commit(3, 0, 1, net.block(0, 9).hash()));
    assert!(committed(&outs).is_none());
    // 2f+1 matching commits: committed, with a certificate that verifies.
    let outs = r.handle(23, net.commit(0, 0, 1, a.hash()));
    let (block, cert) = committed(&outs).expect("committed");
    assert_eq!(block.hash(), a.hash());
    assert_eq!(cert.signatures.len(), 3);
    verify_certificate(&cert, &net.chain, &net.vset, 1, &a.hash()).unwrap();
    assert_eq!(r.height(), 2);
}

#[test]
fn commit_certificate_from_an_older_view_still_commits() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(1);
    accept(&net, &mut r, &a);
    // Time out into view 1 before any commit arrives.
    r.handle(
        1_000,
        Input::Timeout {
            kind: aidledger_consensus::TimeoutKind::Round,
            view: 0,
            height: 1,
        },
    );
    let mut outs = Vec::new();
    for from in [0, 2, 3] {
        outs.extend(r.handle(1_001, net.commit(from, 0, 1, a.hash())));
    }
    let (_, cert) = committed(&outs).expect("a quorum certificate is proof on its own");
    assert_eq!(cert.view, 0);
}

#[test]
fn single_validator_commits_alone_and_small_sets_use_their_quorum() {
    // n = 1: quorum 1.
    let net = Net::new(1);
    let (mut r, _) = net.replica(0);
    let b = net.block(0, 1);
    let outs = r.handle(5, Input::ProposalReady { block: b.clone() });
    assert!(committed(&outs).is_some());
    assert_eq!(r.height(), 2);
    // n = 2 and n = 3: quorum 2 (f = 0).
    for n in [2usize, 3] {
        let net = Net::new(n);
        let (mut r, _) = net.replica(1);
        let b = net.block(0, 1);
        let mut outs = accept(&net, &mut r, &b);
        assert_eq!(
            sent_kind(&outs, "commit").len(),
            1,
            "n={n}: pre-prepare + own prepare"
        );
        outs.extend(r.handle(5, net.commit(0, 0, 1, b.hash())));
        assert!(committed(&outs).is_some(), "n={n}");
    }
}

#[test]
fn messages_for_the_next_height_are_buffered_and_replayed() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(1);
    accept(&net, &mut r, &a);
    let next = net.block_on(2, 0, a.hash(), 5);
    let outs = r.handle(5, net.pre_prepare(0, &next));
    assert!(validations(&outs).is_empty());
    r.handle(6, net.prepare(2, 0, 1, a.hash()));
    r.handle(7, net.commit(2, 0, 1, a.hash()));
    let outs = r.handle(8, net.commit(3, 0, 1, a.hash()));
    assert!(committed(&outs).is_some());
    assert_eq!(validations(&outs).len(), 1, "buffered pre-prepare replayed");
    assert_eq!(validations(&outs)[0].hash(), next.hash());
}

#[test]
fn synced_block_is_committed_only_with_a_valid_certificate() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(3);
    // Too few signatures.
    let short = net.certificate(0, &a, &[0, 1]);
    let outs = r.handle(
        1,
        Input::Synced {
            block: a.clone(),
            certificate: short,
        },
    );
    assert!(committed(&outs).is_none());
    assert!(matches!(
        r.last_rejection(),
        Some(ConsensusError::BadCertificate(_))
    ));
    let good = net.certificate(0, &a, &[0, 1, 2]);
    let outs = r.handle(
        2,
        Input::Synced {
            block: a.clone(),
            certificate: good,
        },
    );
    // The driver validates (executes) it first.
    assert!(committed(&outs).is_none());
    assert_eq!(validations(&outs).len(), 1);
    let outs = r.handle(3, validated(&a, true));
    assert!(committed(&outs).is_some());
    assert_eq!(r.height(), 2);
}

/// `block` with one more transaction: the same header, so the same hash
/// and signatures over it, but a body the header does not commit to.
fn with_another_body(block: &Block) -> Block {
    let mut other = block.clone();
    other.txs.push(aidledger_types::SignedTx {
        body: aidledger_types::TxBody {
            chain_id: block.header.chain_id.clone(),
            nonce: 0,
            signer: block.header.proposer,
            kind: aidledger_types::TxKind::ALL[0],
            payload: vec![1, 2, 3],
        },
        signature: aidledger_types::Signature([7; 64]),
    });
    assert_eq!(other.hash(), block.hash(), "the same header");
    other
}

/// The leader's signed pre-prepare for a genuine header, relayed with
/// another body, is refused before the driver sees the body (ADR 026);
/// the genuine body is then validated.
#[test]
fn a_pre_prepare_with_another_body_under_its_header_is_refused() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(1);
    let outs = r.handle(1, net.pre_prepare(0, &with_another_body(&a)));
    assert!(validations(&outs).is_empty() && sent(&outs).is_empty());
    assert!(matches!(
        r.last_rejection(),
        Some(ConsensusError::BadBlock { .. })
    ));
    let outs = r.handle(2, net.pre_prepare(0, &a));
    assert_eq!(validations(&outs).len(), 1);
    assert_eq!(validations(&outs)[0].hash(), a.hash());
}

/// A synced block whose certified header is genuine but whose body is not
/// the one the header commits to is refused before the driver sees it
/// (ADR 026: the consensus core is where bytes from a peer become a
/// block); the genuine body is then taken.
#[test]
fn a_synced_block_with_another_body_under_its_certified_header_is_refused() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(3);
    let cert = net.certificate(0, &a, &[0, 1, 2]);
    let outs = r.handle(
        1,
        Input::Synced {
            block: with_another_body(&a),
            certificate: cert.clone(),
        },
    );
    assert!(validations(&outs).is_empty() && committed(&outs).is_none());
    assert!(matches!(
        r.last_rejection(),
        Some(ConsensusError::BadBlock { .. })
    ));
    let outs = r.handle(
        2,
        Input::Synced {
            block: a.clone(),
            certificate: cert,
        },
    );
    assert_eq!(validations(&outs).len(), 1);
    let outs = r.handle(3, validated(&a, true));
    assert!(committed(&outs).is_some());
}

#[test]
fn a_body_found_invalid_is_dropped_and_a_good_copy_is_still_accepted() {
    // A block hash covers tx ids, not tx signatures: the same pre-prepare
    // can arrive with a corrupted body. The invalid verdict drops the body,
    // not the primary's pre-prepare.
    let net = Net::new(4);
    let (mut r, _) = net.replica(1);
    let a = net.block(0, 1);
    r.handle(1, net.pre_prepare(0, &a));
    let outs = r.handle(2, validated(&a, false));
    assert!(sent(&outs).is_empty());
    let outs = r.handle(3, net.pre_prepare(0, &a));
    assert_eq!(validations(&outs).len(), 1, "re-validated");
    let outs = r.handle(4, validated(&a, true));
    assert_eq!(sent_kind(&outs, "prepare").len(), 1);
}

#[test]
fn far_ahead_messages_trigger_a_sync_request() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(1);
    let outs = r.handle(1, net.commit(2, 0, 3, net.block(0, 1).hash()));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::RequestSync {
            from_height: 1,
            peer: 2
        }
    )));
    // Rate-limited per peer: not again from 2 within the retry interval...
    let outs = r.handle(2, net.commit(2, 1, 3, net.block(0, 1).hash()));
    assert!(!outs.iter().any(|o| matches!(o, Output::RequestSync { .. })));
    // ...but a request to another peer is not held back by it.
    let outs = r.handle(3, net.commit(3, 0, 3, net.block(0, 1).hash()));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::RequestSync {
            from_height: 1,
            peer: 3
        }
    )));
}
