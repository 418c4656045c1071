//! Persist before send, and restarts that never equivocate.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use aidledger_consensus::{
    CommittedTip, ConsensusError, Input, Output, Payload, Replica, SafetyState, TimeoutKind,
    SAFETY_STATE_MAX_BYTES,
};
use common::*;

/// Index of the first PersistSafetyState and of the first message of `kind`.
fn order(outs: &[Output], kind: &str) -> (Option<usize>, Option<usize>) {
    let persist = outs
        .iter()
        .position(|o| matches!(o, Output::PersistSafetyState(_)));
    let send = outs.iter().position(|o| match o {
        Output::Broadcast(e) | Output::Send { message: e, .. } => e.payload.kind() == kind,
        _ => false,
    });
    (persist, send)
}

#[test]
fn safety_state_persisted_before_prepare_is_sent() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(1);
    r.handle(1, net.pre_prepare(0, &a));
    let outs = r.handle(2, validated(&a, true));
    let (p, s) = order(&outs, "prepare");
    assert!(p.unwrap() < s.unwrap());
    assert_eq!(persisted(&outs).unwrap().prepare_vote, Some((0, a.hash())));
}

#[test]
fn safety_state_persisted_before_every_dependent_message() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    // (name, kind of message, outputs of the step that sends it, check on the persisted state)
    type Check = fn(&SafetyState, &aidledger_types::Block) -> bool;
    let mut cases: Vec<(&str, &str, Vec<Output>, Check)> = Vec::new();

    let (mut primary, _) = net.replica(0);
    let outs = primary.handle(1, Input::ProposalReady { block: a.clone() });
    cases.push(("pre-prepare", "pre-prepare", outs, |s, a| {
        s.pre_prepared == Some((0, a.hash()))
    }));

    let (mut r, _) = net.replica(1);
    accept(&net, &mut r, &a);
    let outs = r.handle(3, net.prepare(2, 0, 1, a.hash()));
    cases.push(("commit", "commit", outs, |s, a| {
        s.commit_vote == Some((0, a.hash()))
            && s.prepared.as_ref().map(|p| p.block_hash) == Some(a.hash())
    }));

    let outs = r.handle(
        1_000,
        Input::Timeout {
            kind: TimeoutKind::Round,
            view: 0,
            height: 1,
        },
    );
    cases.push(("view change", "view-change", outs, |s, _| {
        s.view == 1 && !s.view_active && s.prepared.is_some()
    }));

    for (name, kind, outs, check) in cases {
        let (p, s) = order(&outs, kind);
        assert!(p.is_some() && s.is_some() && p < s, "{name}: {outs:?}");
        let st = outs
            .iter()
            .find_map(|o| match o {
                Output::PersistSafetyState(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        assert!(check(&st, &a), "{name}: {st:?}");
    }
}

fn restore(net: &Net, i: usize, state: SafetyState) -> (Replica, Vec<Output>) {
    let mut r = Replica::restore(net.cfg(i), state, CommittedTip::genesis(net.genesis)).unwrap();
    let outs = r.handle(100, Input::Start);
    (r, outs)
}

#[test]
fn restarted_replica_does_not_equivocate() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let b = net.block(0, 2);

    // Prepared a, crashed; the restarted replica sees a conflicting
    // pre-prepare b for the same (view, height) first. It must not prepare b.
    let (mut r, _) = net.replica(1);
    let outs = accept(&net, &mut r, &a);
    let state = persisted(&outs).unwrap();
    let (mut r2, _) = restore(&net, 1, state.clone());
    let mut outs = r2.handle(101, net.pre_prepare(0, &b));
    outs.extend(r2.handle(102, validated(&b, true)));
    assert!(sent_kind(&outs, "prepare").is_empty(), "{outs:?}");
    // It may repeat the same prepare for a.
    let (mut r3, _) = restore(&net, 1, state);
    let mut outs = r3.handle(101, net.pre_prepare(0, &a));
    outs.extend(r3.handle(102, validated(&a, true)));
    let p = sent_kind(&outs, "prepare");
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].payload.kind(), "prepare");
    assert_eq!(
        p[0].payload,
        Payload::Prepare {
            view: 0,
            height: 1,
            block_hash: a.hash()
        }
    );

    // Committed (sent a commit for) a, crashed: no commit for b in view 0.
    let (mut r, _) = net.replica(1);
    accept(&net, &mut r, &a);
    let outs = r.handle(3, net.prepare(2, 0, 1, a.hash()));
    let state = persisted(&outs).unwrap();
    assert_eq!(state.commit_vote, Some((0, a.hash())));
    let (mut r2, _) = restore(&net, 1, state);
    let mut outs = r2.handle(101, net.pre_prepare(0, &b));
    outs.extend(r2.handle(102, validated(&b, true)));
    for from in [2, 3] {
        outs.extend(r2.handle(103, net.prepare(from, 0, 1, b.hash())));
    }
    assert!(sent_kind(&outs, "prepare").is_empty());
    assert!(sent_kind(&outs, "commit").is_empty());

    // Sent a view change to view 1, crashed: it stays out of view 0.
    let (mut r, _) = net.replica(2);
    let outs = r.handle(
        1_000,
        Input::Timeout {
            kind: TimeoutKind::Round,
            view: 0,
            height: 1,
        },
    );
    let state = persisted(&outs).unwrap();
    let (mut r2, outs) = restore(&net, 2, state);
    assert_eq!(r2.view(), 1);
    assert!(!r2.is_view_active());
    assert_eq!(
        sent_kind(&outs, "view-change").len(),
        1,
        "resends its view change"
    );
    let mut outs = r2.handle(101, net.pre_prepare(0, &a));
    outs.extend(r2.handle(102, validated(&a, true)));
    assert!(sent_kind(&outs, "prepare").is_empty());

    // A primary that pre-prepared a and crashed does not propose again in
    // that view.
    let (mut p, _) = net.replica(0);
    let outs = p.handle(1, Input::ProposalReady { block: a.clone() });
    let state = persisted(&outs).unwrap();
    let (_, outs) = restore(&net, 0, state);
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::RequestProposal { .. })));
}

#[test]
fn safety_state_has_a_canonical_bounded_encoding() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(1);
    accept(&net, &mut r, &a);
    let outs = r.handle(3, net.prepare(2, 0, 1, a.hash()));
    let s = persisted(&outs).unwrap();
    let bytes = s.encode();
    assert_eq!(SafetyState::decode(&bytes).unwrap(), s);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(SafetyState::decode(&trailing).is_err());
    assert!(SafetyState::decode(&vec![0u8; SAFETY_STATE_MAX_BYTES + 1]).is_err());
}

#[test]
fn restore_checks_the_state_against_the_committed_tip() {
    let net = Net::new(4);
    // A state for a height that has since committed: start the next fresh.
    let old = SafetyState::fresh(1, 3);
    let tip = CommittedTip {
        height: 1,
        hash: net.block(0, 1).hash(),
        view: 0,
    };
    let r = Replica::restore(net.cfg(1), old, tip).unwrap();
    assert_eq!((r.height(), r.view()), (2, 0));
    // A state ahead of the tip means committed blocks were lost.
    let ahead = SafetyState::fresh(5, 0);
    assert!(matches!(
        Replica::restore(net.cfg(1), ahead, tip),
        Err(ConsensusError::Restore { .. })
    ));
}

#[test]
fn a_restarted_primary_fetches_its_own_block_and_resends_the_same_pre_prepare() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let b = net.block(0, 2);
    let (mut primary, _) = net.replica(0);
    let outs = primary.handle(1, Input::ProposalReady { block: a.clone() });
    let first = sent_kind(&outs, "pre-prepare")[0].clone();
    let state = persisted(&outs).unwrap();

    // Back from a crash: it must not ask for a new proposal (that would be
    // a second block in view 0), and it asks its peers for its own block.
    let (mut r, outs) = restore(&net, 0, state);
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, Output::RequestProposal { .. })),
        "{outs:?}"
    );
    let fetch = outs.iter().find_map(|o| match o {
        Output::FetchBlock { hash, from, .. } => Some((*hash, from.clone())),
        _ => None,
    });
    assert_eq!(fetch, Some((a.hash(), vec![1, 2, 3])), "{outs:?}");
    // No peer is connected yet at a restart: it asks again when one is.
    let outs = r.handle(100, Input::PeerConnected { validator: 2 });
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::FetchBlock { hash, .. } if *hash == a.hash())),
        "{outs:?}"
    );

    // Another block by that hash's name is refused; its own block is sent
    // again as the same signed pre-prepare.
    let outs = r.handle(101, Input::BlockFetched { block: b });
    assert!(sent_kind(&outs, "pre-prepare").is_empty(), "{outs:?}");
    let outs = r.handle(102, Input::BlockFetched { block: a.clone() });
    let again = sent_kind(&outs, "pre-prepare");
    assert_eq!(again.len(), 1, "{outs:?}");
    assert_eq!(again[0].encode(), first.encode());

    // And it goes on to commit it with the backups' votes.
    let mut outs = Vec::new();
    for i in 1..=3 {
        outs.extend(r.handle(110, net.prepare(i, 0, 1, a.hash())));
    }
    for i in 1..=3 {
        outs.extend(r.handle(120, net.commit(i, 0, 1, a.hash())));
    }
    assert_eq!(committed(&outs).map(|(b, _)| b.hash()), Some(a.hash()));
}

#[test]
fn a_restarted_primary_that_prepared_its_block_resends_it_at_once() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut primary, _) = net.replica(0);
    primary.handle(1, Input::ProposalReady { block: a.clone() });
    let mut state = None;
    for i in 1..=2 {
        let outs = primary.handle(2, net.prepare(i, 0, 1, a.hash()));
        state = persisted(&outs).or(state);
    }
    let state = state.unwrap();
    assert!(state.prepared_block.is_some());
    let (_, outs) = restore(&net, 0, state);
    assert_eq!(sent_kind(&outs, "pre-prepare").len(), 1, "{outs:?}");
    assert!(!outs.iter().any(|o| matches!(o, Output::FetchBlock { .. })));
}
