//! Checks against byzantine input: windows (§4.2's water marks), forged,
//! malformed and oversized messages, and bounded buffers.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use aidledger_consensus::{ConsensusError, Envelope, Input, Payload, ViewChange};
use aidledger_crypto::{Keypair, Purpose};
use aidledger_types::{codec, Hash, Signature};
use common::*;

#[test]
fn messages_outside_window_are_dropped() {
    let net = Net::new(4);
    let h = net.block(0, 1).hash();
    // (name, message, expected rejection)
    type Check = fn(&ConsensusError) -> bool;
    let cases: Vec<(&str, Input, Check)> = vec![
        ("view beyond the window", net.prepare(2, 17, 1, h), |e| {
            matches!(
                e,
                ConsensusError::ViewOutOfWindow {
                    got: 17,
                    current: 0
                }
            )
        }),
        ("height beyond the window", net.commit(2, 0, 6, h), |e| {
            matches!(e, ConsensusError::FutureHeight { got: 6, current: 1 })
        }),
        ("stale height", net.commit(2, 0, 0, h), |e| {
            matches!(e, ConsensusError::StaleHeight { got: 0, current: 1 })
        }),
    ];
    for (name, input, check) in cases {
        let (mut r, _) = net.replica(1);
        let outs = r.handle(1, input);
        assert!(sent(&outs).is_empty(), "{name}");
        let err = r.last_rejection();
        assert!(err.is_some_and(check), "{name}: {err:?}");
    }
    // Views far below the current one are dropped too.
    let (mut r, _) = net.replica(3);
    for from in [0, 1] {
        let vc = ViewChange {
            new_view: 6,
            height: 1,
            prepared: None,
        };
        r.handle(0, net.msg(from, Payload::ViewChange(vc), None));
    }
    assert_eq!(r.view(), 6);
    r.handle(1, net.prepare(2, 1, 1, h));
    assert!(matches!(
        r.last_rejection(),
        Some(ConsensusError::ViewOutOfWindow { got: 1, current: 6 })
    ));
}

#[test]
fn malformed_forged_and_oversized_messages_are_rejected() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let good = net.env(
        0,
        Payload::PrePrepare {
            view: 0,
            height: 1,
            block_hash: a.hash(),
        },
        Some(a.clone()),
    );
    let outsider = Keypair::from_seed([99; 32]);
    let mut bad_sig = good.clone();
    bad_sig.signature.0[5] ^= 1;
    let mut other_index = net.env(
        2,
        Payload::Prepare {
            view: 0,
            height: 1,
            block_hash: a.hash(),
        },
        None,
    );
    other_index.from = 3;
    let mut not_validator = other_index.clone();
    not_validator.from = 9;
    let forged_by_outsider = Envelope::sign(
        &outsider,
        &net.chain,
        2,
        Payload::Prepare {
            view: 0,
            height: 1,
            block_hash: a.hash(),
        },
        None,
    );
    // A commit signed for the wrong purpose.
    let commit_payload = Payload::Commit {
        view: 0,
        height: 1,
        block_hash: a.hash(),
        time: common::COMMIT_TIME,
    };
    let wrong_purpose = Envelope {
        from: 2,
        signature: net.keys[2].sign(
            &net.chain,
            Purpose::Consensus,
            &codec::encode(&commit_payload),
        ),
        payload: commit_payload,
        block: None,
    };
    let mut vote_with_block = net.env(
        2,
        Payload::Prepare {
            view: 0,
            height: 1,
            block_hash: a.hash(),
        },
        None,
    );
    vote_with_block.block = Some(a.clone());
    let mut pp_without_block = good.clone();
    pp_without_block.block = None;
    let mut pp_wrong_body = good.clone();
    pp_wrong_body.block = Some(net.block(0, 2));
    let wrong_parent = net.block_on(1, 0, Hash([1; 32]), 1);
    let pp_wrong_parent = net.env(
        0,
        Payload::PrePrepare {
            view: 0,
            height: 1,
            block_hash: wrong_parent.hash(),
        },
        Some(wrong_parent),
    );
    let mut wrong_view_block = net.block(0, 1);
    wrong_view_block.header.view = 4;
    let pp_wrong_header_view = net.env(
        0,
        Payload::PrePrepare {
            view: 0,
            height: 1,
            block_hash: wrong_view_block.hash(),
        },
        Some(wrong_view_block),
    );
    let truncated = {
        let mut b = good.encode();
        b.truncate(b.len() / 2);
        b
    };
    type Check = fn(&ConsensusError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("random bytes", vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3], |e| {
            matches!(e, ConsensusError::Malformed(_))
        }),
        ("empty", vec![], |e| {
            matches!(e, ConsensusError::Malformed(_))
        }),
        ("truncated", truncated, |e| {
            matches!(e, ConsensusError::Malformed(_))
        }),
        (
            "trailing byte",
            {
                let mut b = good.encode();
                b.push(0);
                b
            },
            |e| matches!(e, ConsensusError::Malformed(_)),
        ),
        ("bad signature", bad_sig.encode(), |e| {
            matches!(e, ConsensusError::BadSignature { from: 0 })
        }),
        (
            "signature of another validator",
            other_index.encode(),
            |e| matches!(e, ConsensusError::BadSignature { from: 3 }),
        ),
        ("non-validator index", not_validator.encode(), |e| {
            matches!(e, ConsensusError::UnknownSender { from: 9, n: 4 })
        }),
        (
            "signed by a non-validator key",
            forged_by_outsider.encode(),
            |e| matches!(e, ConsensusError::BadSignature { from: 2 }),
        ),
        (
            "commit signed for the wrong purpose",
            wrong_purpose.encode(),
            |e| matches!(e, ConsensusError::BadSignature { from: 2 }),
        ),
        ("vote carrying a block", vote_with_block.encode(), |e| {
            matches!(e, ConsensusError::Invalid { .. })
        }),
        (
            "pre-prepare without its block",
            pp_without_block.encode(),
            |e| matches!(e, ConsensusError::Invalid { .. }),
        ),
        (
            "pre-prepare with another block",
            pp_wrong_body.encode(),
            |e| matches!(e, ConsensusError::Invalid { .. }),
        ),
        (
            "pre-prepare off the committed tip",
            pp_wrong_parent.encode(),
            |e| matches!(e, ConsensusError::BadBlock { .. }),
        ),
        (
            "block header from another view",
            pp_wrong_header_view.encode(),
            |e| matches!(e, ConsensusError::BadBlock { .. }),
        ),
        (
            "from this replica itself",
            net.env(
                1,
                Payload::Prepare {
                    view: 0,
                    height: 1,
                    block_hash: a.hash(),
                },
                None,
            )
            .encode(),
            |e| matches!(e, ConsensusError::FromSelf { from: 1 }),
        ),
    ];
    for (name, bytes, check) in cases {
        let (mut r, _) = net.replica(1);
        let outs = r.handle(1, Input::Message(bytes));
        assert!(
            sent(&outs).is_empty() && validations(&outs).is_empty(),
            "{name}"
        );
        let err = r.last_rejection();
        assert!(err.is_some_and(check), "{name}: {err:?}");
    }
    // Oversized: refused before decoding.
    let mut cfg = net.cfg(1);
    cfg.message_max_bytes = 200;
    let mut r = aidledger_consensus::Replica::new(
        cfg,
        aidledger_consensus::CommittedTip::genesis(net.genesis),
    )
    .unwrap();
    r.handle(1, Input::Message(good.encode()));
    assert!(matches!(
        r.last_rejection(),
        Some(ConsensusError::Malformed(
            aidledger_types::CodecError::TooLarge { .. }
        ))
    ));
}

#[test]
fn view_change_with_a_forged_prepared_certificate_is_rejected() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let cases = [
        ("too few prepares", net.prepared_cert(0, &a, &[1])),
        (
            "prepare from the primary",
            net.prepared_cert(0, &a, &[0, 1]),
        ),
        ("prepares out of order", {
            let mut c = net.prepared_cert(0, &a, &[1, 2]);
            c.prepares.reverse();
            c
        }),
        ("forged pre-prepare signature", {
            let mut c = net.prepared_cert(0, &a, &[1, 2]);
            c.pre_prepare_sig = Signature([7; 64]);
            c
        }),
    ];
    for (name, cert) in cases {
        let (mut r, _) = net.replica(3);
        let input = net.msg(
            2,
            Payload::ViewChange(ViewChange {
                new_view: 1,
                height: 1,
                prepared: Some(cert),
            }),
            None,
        );
        r.handle(1, input);
        assert!(
            matches!(
                r.last_rejection(),
                Some(ConsensusError::BadPreparedCert { .. })
            ),
            "{name}: {:?}",
            r.last_rejection()
        );
    }
}

#[test]
fn future_height_buffer_is_bounded() {
    let net = Net::new(4);
    let mut cfg = net.cfg(1);
    cfg.future_per_height_max = 5;
    let mut r = aidledger_consensus::Replica::new(
        cfg,
        aidledger_consensus::CommittedTip::genesis(net.genesis),
    )
    .unwrap();
    for i in 0..5u8 {
        r.handle(1, net.prepare(2, i as u64, 2, Hash([i; 32])));
        assert!(r.last_rejection().is_none(), "{i}");
    }
    r.handle(1, net.prepare(3, 0, 2, Hash([9; 32])));
    assert!(matches!(
        r.last_rejection(),
        Some(ConsensusError::BufferFull { limit: 5, .. })
    ));
    // With the default bound, one sender gets a share of the buffer only.
    let (mut r, _) = net.replica(1);
    for i in 0..8u8 {
        r.handle(1, net.prepare(2, i as u64, 2, Hash([i; 32])));
        assert!(r.last_rejection().is_none(), "{i}");
    }
    r.handle(1, net.prepare(2, 9, 2, Hash([9; 32])));
    assert!(matches!(
        r.last_rejection(),
        Some(ConsensusError::BufferFull { limit: 8, .. })
    ));
    r.take_rejection();
    r.handle(1, net.prepare(3, 0, 2, Hash([9; 32])));
    assert!(r.last_rejection().is_none());
}

#[test]
fn a_second_vote_from_the_same_validator_is_not_counted() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(1);
    accept(&net, &mut r, &a);
    // Validator 2 votes for another block first, then for a: only the first
    // counts, so replica 1 is not prepared.
    r.handle(2, net.prepare(2, 0, 1, net.block(0, 7).hash()));
    let outs = r.handle(3, net.prepare(2, 0, 1, a.hash()));
    assert!(sent_kind(&outs, "commit").is_empty());
    let outs = r.handle(4, net.prepare(3, 0, 1, a.hash()));
    assert_eq!(sent_kind(&outs, "commit").len(), 1);
}
