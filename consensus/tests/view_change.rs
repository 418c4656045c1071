//! PBFT §4.4 (view changes) and §4.5.2 (liveness rules). n = 4, f = 1.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

mod common;

use aidledger_consensus::{
    ConsensusError, Input, NewView, Output, Payload, TimeoutKind, ViewChange,
};
use common::*;

fn round_timeout(view: u64, height: u64) -> Input {
    Input::Timeout {
        kind: TimeoutKind::Round,
        view,
        height,
    }
}

fn vc_timeout(view: u64, height: u64) -> Input {
    Input::Timeout {
        kind: TimeoutKind::ViewChange,
        view,
        height,
    }
}

fn view_change_input(
    net: &Net,
    from: usize,
    new_view: u64,
    prepared: Option<(u64, &aidledger_types::Block, &[usize])>,
) -> Input {
    let (cert, block) = match prepared {
        Some((v, b, backups)) => (Some(net.prepared_cert(v, b, backups)), Some(b.clone())),
        None => (None, None),
    };
    net.msg(
        from,
        Payload::ViewChange(ViewChange {
            new_view,
            height: 1,
            prepared: cert,
        }),
        block,
    )
}

#[test]
fn view_change_carries_prepared_certificate() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let (mut r, _) = net.replica(1);
    accept(&net, &mut r, &a);
    r.handle(5, net.prepare(2, 0, 1, a.hash()));
    let outs = r.handle(1_000, round_timeout(0, 1));
    let vcs = sent_kind(&outs, "view-change");
    assert_eq!(vcs.len(), 1);
    let Payload::ViewChange(vc) = &vcs[0].payload else {
        unreachable!()
    };
    assert_eq!((vc.new_view, vc.height), (1, 1));
    let p = vc.prepared.as_ref().expect("prepared certificate");
    assert_eq!((p.view, p.block_hash), (0, a.hash()));
    let signers: Vec<u16> = p.prepares.iter().map(|s| s.validator).collect();
    assert_eq!(signers, vec![1, 2], "2f prepares from backups");
    assert_eq!(vcs[0].block.as_ref().map(|b| b.hash()), Some(a.hash()));
    assert!(!r.is_view_active());
    // Not prepared: the view change carries no certificate.
    let (mut r, _) = net.replica(2);
    let outs = r.handle(1_000, round_timeout(0, 1));
    let Payload::ViewChange(vc) = &sent_kind(&outs, "view-change")[0].payload else {
        unreachable!()
    };
    assert!(vc.prepared.is_none());
}

#[test]
fn new_view_reproposes_highest_prepared_block() {
    let net = Net::new(4);
    // Replica 2 is the primary of view 2. Block a prepared in view 0, block
    // b (proposed by the primary of view 1) prepared in view 1.
    let a = net.block(0, 1);
    let b = net.block(1, 2);
    let (mut r, _) = net.replica(2);
    let mut outs = r.handle(1, view_change_input(&net, 0, 2, Some((0, &a, &[1, 2]))));
    assert!(sent_kind(&outs, "new-view").is_empty());
    outs.extend(r.handle(2, view_change_input(&net, 1, 2, Some((1, &b, &[0, 3])))));
    // f+1 view changes for view 2: replica 2 joins, and with its own it has
    // a quorum, so as primary it sends the new-view.
    let nvs = sent_kind(&outs, "new-view");
    assert_eq!(nvs.len(), 1);
    let Payload::NewView(nv) = &nvs[0].payload else {
        unreachable!()
    };
    assert_eq!(nv.view, 2);
    assert_eq!(nv.view_changes.len(), 3);
    assert_eq!(
        nv.reproposal.map(|r| r.0),
        Some(b.hash()),
        "highest view wins"
    );
    assert_eq!(nvs[0].block.as_ref().map(|x| x.hash()), Some(b.hash()));
    let pos_persist = outs
        .iter()
        .rposition(
            |o| matches!(o, Output::PersistSafetyState(s) if s.pre_prepared == Some((2, b.hash()))),
        )
        .expect("re-proposal persisted");
    let pos_nv = outs
        .iter()
        .position(|o| matches!(o, Output::Broadcast(e) if e.payload.kind() == "new-view"))
        .unwrap();
    assert!(pos_persist < pos_nv);

    // A backup accepts the new-view and prepares the re-proposed block.
    let (mut backup, _) = net.replica(3);
    let outs = backup.handle(3, Input::Message(nvs[0].encode()));
    assert_eq!(backup.view(), 2);
    assert!(backup.is_view_active());
    assert_eq!(validations(&outs).len(), 1);
    let outs = backup.handle(4, validated(&b, true));
    let p = sent_kind(&outs, "prepare");
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].payload,
        Payload::Prepare {
            view: 2,
            height: 1,
            block_hash: b.hash()
        }
    );
}

#[test]
fn new_view_without_reproposal_lets_the_primary_propose_fresh() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(1);
    let mut outs = r.handle(1, view_change_input(&net, 2, 1, None));
    outs.extend(r.handle(2, view_change_input(&net, 3, 1, None)));
    let nv = sent_kind(&outs, "new-view");
    assert_eq!(nv.len(), 1);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::RequestProposal {
            height: 1,
            view: 1,
            ..
        }
    )));
}

#[test]
fn new_view_that_drops_a_prepared_block_or_comes_from_a_non_primary_is_rejected() {
    let net = Net::new(4);
    let a = net.block(0, 1);
    let vcs: Vec<_> = [(0usize, true), (2, false), (3, false)]
        .iter()
        .map(|(from, prepared)| {
            let vc = ViewChange {
                new_view: 1,
                height: 1,
                prepared: prepared.then(|| net.prepared_cert(0, &a, &[1, 2])),
            };
            let e = net.env(*from, Payload::ViewChange(vc.clone()), None);
            aidledger_consensus::SignedViewChange {
                from: *from as u16,
                view_change: vc,
                signature: e.signature,
            }
        })
        .collect();
    let nv = NewView {
        view: 1,
        height: 1,
        view_changes: vcs,
        reproposal: None,
    };
    let cases = [
        (1usize, "drops the prepared block"),
        (2usize, "not the primary of view 1"),
    ];
    for (signer, name) in cases {
        let (mut r, _) = net.replica(3);
        r.handle(1, net.msg(signer, Payload::NewView(nv.clone()), None));
        let err = r.last_rejection();
        match signer {
            1 => assert!(
                matches!(err, Some(ConsensusError::BadNewView { view: 1, .. })),
                "{name}: {err:?}"
            ),
            _ => assert!(
                matches!(
                    err,
                    Some(ConsensusError::WrongLeader {
                        view: 1,
                        expected: 1,
                        got: 2
                    })
                ),
                "{name}: {err:?}"
            ),
        }
        assert_eq!(r.view(), 0, "{name}");
    }
}

#[test]
fn timeout_doubles_on_successive_view_changes() {
    let net = Net::new(4);
    let (mut r, start) = net.replica(0);
    assert!(start.iter().any(|o| matches!(
        o,
        Output::ScheduleTimeout {
            kind: TimeoutKind::Round,
            view: 0,
            after_ms: BASE_MS,
            ..
        }
    )));
    // Each view change completes a quorum (replicas 1 and 2 join) but no
    // new-view comes. (timer input, expected new view, expected timeout):
    // base 1 s, doubling per view at this height, capped at 8 s.
    let steps = [
        (round_timeout(0, 1), 1, 2_000),
        (vc_timeout(1, 1), 2, 4_000),
        (vc_timeout(2, 1), 3, 8_000),
        (vc_timeout(3, 1), 4, 8_000),
    ];
    for (input, view, after) in steps {
        let outs = r.handle(0, input);
        assert_eq!(r.view(), view);
        assert!(
            outs.iter().any(|o| matches!(
                o,
                Output::ScheduleTimeout { kind: TimeoutKind::ViewChange, view: v, after_ms, .. }
                    if *v == view && *after_ms == after
            )),
            "view {view}: {outs:?}"
        );
        for from in [1, 2] {
            r.handle(0, view_change_input(&net, from, view, None));
        }
    }
    // A stale timer is ignored.
    let outs = r.handle(0, vc_timeout(1, 1));
    assert!(sent(&outs).is_empty());
    assert_eq!(r.view(), 4);
}

#[test]
fn view_change_timer_without_a_quorum_retransmits_and_waits() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(3);
    r.handle(0, round_timeout(0, 1));
    assert_eq!(r.view(), 1);
    // Only one other replica wants view 1: no quorum, so the timer does not
    // move this replica ahead; it resends the same view change.
    r.handle(1, view_change_input(&net, 2, 1, None));
    let outs = r.handle(2_000, vc_timeout(1, 1));
    assert_eq!(r.view(), 1);
    let vcs = sent_kind(&outs, "view-change");
    assert_eq!(vcs.len(), 1);
    assert_eq!(vcs[0].payload.view(), 1);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::ScheduleTimeout {
            kind: TimeoutKind::ViewChange,
            view: 1,
            ..
        }
    )));
}

#[test]
fn a_straggler_gets_our_view_change_for_the_view_it_is_stuck_in() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(3);
    let outs = r.handle(0, round_timeout(0, 1));
    let mine = sent_kind(&outs, "view-change")[0].clone();
    for from in [0, 2] {
        r.handle(1, view_change_input(&net, from, 1, None));
    }
    r.handle(2_000, vc_timeout(1, 1));
    assert_eq!(r.view(), 2);
    // Replica 0 is still gathering view changes for view 1.
    let outs = r.handle(3_000, view_change_input(&net, 0, 1, None));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Send { to: 0, message } if *message == mine
    )));
}

#[test]
fn f_plus_1_view_changes_for_higher_views_make_a_replica_join_the_smallest() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(3);
    let outs = r.handle(1, view_change_input(&net, 1, 2, None));
    assert!(sent(&outs).is_empty(), "one (f) is not enough");
    let outs = r.handle(2, view_change_input(&net, 2, 3, None));
    let vcs = sent_kind(&outs, "view-change");
    assert_eq!(vcs.len(), 1);
    assert_eq!(vcs[0].payload.view(), 2);
    assert_eq!(r.view(), 2);
}

#[test]
fn primary_resends_its_new_view_to_stragglers() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(1);
    r.handle(1, view_change_input(&net, 2, 1, None));
    r.handle(2, view_change_input(&net, 3, 1, None));
    assert!(r.is_view_active());
    let outs = r.handle(3, view_change_input(&net, 0, 1, None));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Send { to: 0, message } if message.payload.kind() == "new-view"
    )));
}

#[test]
fn new_view_resends_are_rate_limited_per_peer() {
    // A byzantine member repeating its view change must not buy a new-view
    // broadcast (2f+1 view changes, perhaps a block) with each copy.
    let net = Net::new(4);
    let (mut r, _) = net.replica(1);
    r.handle(1, view_change_input(&net, 2, 1, None));
    r.handle(2, view_change_input(&net, 3, 1, None));
    assert!(r.is_view_active());
    let resends = |outs: &[Output], to: u16| {
        outs.iter()
            .filter(|o| {
                matches!(o, Output::Send { to: t, message }
                    if *t == to && message.payload.kind() == "new-view")
            })
            .count()
    };
    let mut total = 0;
    for t in 0..50u64 {
        let outs = r.handle(10 + t * 10, view_change_input(&net, 0, 1, None));
        total += resends(&outs, 0);
    }
    assert_eq!(total, 1, "50 copies within 0.5 s buy one resend");
    // A base timeout later, the first straggler may have one more.
    let base = net.cfg(1).timeout_base_ms;
    let outs = r.handle(10 + base, view_change_input(&net, 0, 1, None));
    assert_eq!(resends(&outs, 0), 1);
}

#[test]
fn next_height_starts_in_the_view_of_the_commit_certificate_with_base_timeout() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(3);
    for from in [0, 1] {
        r.handle(0, view_change_input(&net, from, 2, None));
    }
    assert_eq!(r.view(), 2);
    let a = net.block(0, 1);
    r.handle(1, net.pre_prepare(0, &a));
    let mut outs = Vec::new();
    for from in [0, 1, 2] {
        outs.extend(r.handle(2, net.commit(from, 0, 1, a.hash())));
    }
    // Validation first, then the commit.
    outs.extend(r.handle(3, validated(&a, true)));
    assert!(committed(&outs).is_some());
    assert_eq!((r.height(), r.view()), (2, 0));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::ScheduleTimeout {
            kind: TimeoutKind::Round,
            view: 0,
            height: 2,
            after_ms: BASE_MS
        }
    )));
}

#[test]
fn a_reconnected_peer_gets_our_view_change_at_once_and_at_most_once_per_base_timeout() {
    // A healed 2|2 split: each half changes view and waits on its doubled
    // timer. The link coming back must trigger the resend, not the timer.
    let net = Net::new(4);
    let (mut r, _) = net.replica(3);
    let outs = r.handle(0, round_timeout(0, 1));
    let mine = sent_kind(&outs, "view-change")[0].clone();
    assert!(!r.is_view_active());
    let resent = |outs: &[Output]| {
        outs.iter()
            .filter(|o| matches!(o, Output::Send { to: 1, message } if *message == mine))
            .count()
    };
    let outs = r.handle(100, Input::PeerConnected { validator: 1 });
    assert_eq!(resent(&outs), 1);
    // A flapping link does not buy a resend per reconnect.
    let mut total = 0;
    for t in 0..20u64 {
        total += resent(&r.handle(200 + t * 10, Input::PeerConnected { validator: 1 }));
    }
    assert_eq!(total, 0);
    let base = net.cfg(3).timeout_base_ms;
    assert_eq!(
        resent(&r.handle(100 + base, Input::PeerConnected { validator: 1 })),
        1
    );
    // Ourselves and unknown indices are ignored.
    assert!(sent(&r.handle(10_000, Input::PeerConnected { validator: 3 })).is_empty());
    assert!(sent(&r.handle(10_001, Input::PeerConnected { validator: 9 })).is_empty());
}

#[test]
fn a_reconnected_peer_gets_the_primarys_new_view() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(1);
    r.handle(1, view_change_input(&net, 2, 1, None));
    r.handle(2, view_change_input(&net, 3, 1, None));
    assert!(r.is_view_active());
    let outs = r.handle(3, Input::PeerConnected { validator: 0 });
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Send { to: 0, message } if message.payload.kind() == "new-view"
    )));
    // A backup in an active view with no new-view of its own sends nothing.
    let (mut b, _) = net.replica(2);
    assert!(sent(&b.handle(5, Input::PeerConnected { validator: 0 })).is_empty());
}

#[test]
fn f_plus_1_view_changes_beyond_the_window_make_a_replica_join() {
    // Away while the others changed view many times at this height: the
    // window drops their messages, but f+1 signed view changes far ahead
    // still bring it along.
    let net = Net::new(4);
    let (mut r, _) = net.replica(3);
    let far = 40;
    let outs = r.handle(1, view_change_input(&net, 1, far, None));
    assert!(sent(&outs).is_empty(), "one (f) is not enough");
    assert_eq!(r.view(), 0);
    // A forged one (someone else's index on our bytes) does not count.
    let forged = match view_change_input(&net, 2, far + 5, None) {
        Input::Message(b) => {
            let mut env = aidledger_consensus::Envelope::decode(&b, 1 << 20).unwrap();
            env.from = 0;
            Input::Message(env.encode())
        }
        other => other,
    };
    let outs = r.handle(2, forged);
    assert!(sent(&outs).is_empty());
    assert_eq!(r.view(), 0);
    // Sender 0 is rate-limited now (its forged copy was checked); sender
    // 2's real view change is checked and makes f+1.
    let outs = r.handle(3, view_change_input(&net, 2, far + 5, None));
    let vcs = sent_kind(&outs, "view-change");
    assert_eq!(vcs.len(), 1);
    assert_eq!(r.view(), far, "joins the lower of the f+1 highest views");
}

#[test]
fn far_view_changes_cost_one_signature_check_per_sender_per_base_timeout() {
    let net = Net::new(4);
    let (mut r, _) = net.replica(3);
    // A byzantine sender floods far-ahead view changes with bad
    // signatures: the first is checked and refused, the rest are not even
    // checked, and a real one from it within the same base timeout is
    // ignored too.
    let bad = match view_change_input(&net, 1, 50, None) {
        Input::Message(b) => {
            let mut env = aidledger_consensus::Envelope::decode(&b, 1 << 20).unwrap();
            env.signature = aidledger_types::Signature([9; 64]);
            Input::Message(env.encode())
        }
        other => other,
    };
    for t in 0..20 {
        r.handle(10 + t, bad.clone());
    }
    r.handle(100, view_change_input(&net, 2, 50, None));
    r.handle(101, view_change_input(&net, 1, 50, None));
    assert_eq!(r.view(), 0, "sender 1 is still rate-limited");
    let base = net.cfg(3).timeout_base_ms;
    r.handle(10 + base, view_change_input(&net, 1, 50, None));
    assert_eq!(r.view(), 50);
}

/// The input `view_change_input` builds, with the attached block removed:
/// a prepared certificate that arrives without its block.
fn without_block(input: Input) -> Input {
    match input {
        Input::Message(b) => {
            let mut env = aidledger_consensus::Envelope::decode(&b, 1 << 22).unwrap();
            env.block = None;
            Input::Message(env.encode())
        }
        other => other,
    }
}

#[test]
fn a_new_primary_fetches_a_prepared_block_that_came_without_its_certificate_s_block() {
    let net = Net::new(4);
    let b = net.block(1, 2);
    let (mut r, _) = net.replica(2);
    let mut outs = r.handle(1, view_change_input(&net, 0, 2, None));
    outs.extend(r.handle(
        2,
        without_block(view_change_input(&net, 1, 2, Some((1, &b, &[0, 3])))),
    ));
    // Joined view 2 with a quorum, but cannot re-propose b yet: it asks
    // for b by hash, from the validator that prepared it.
    assert!(sent_kind(&outs, "new-view").is_empty());
    let fetch = outs.iter().find_map(|o| match o {
        Output::FetchBlock { hash, from, height } => Some((*hash, from.clone(), *height)),
        _ => None,
    });
    assert_eq!(fetch, Some((b.hash(), vec![1], 1)));
    // A block no certificate names is refused; the right one lets the
    // new-view go out, re-proposing b.
    let stranger = net.block(1, 99);
    assert!(sent(&r.handle(3, Input::BlockFetched { block: stranger })).is_empty());
    let outs = r.handle(4, Input::BlockFetched { block: b.clone() });
    let nvs = sent_kind(&outs, "new-view");
    assert_eq!(nvs.len(), 1);
    let Payload::NewView(nv) = &nvs[0].payload else {
        unreachable!()
    };
    assert_eq!(nv.reproposal.map(|(h, _)| h), Some(b.hash()));
    assert_eq!(nvs[0].block.as_ref().map(|x| x.hash()), Some(b.hash()));
}

#[test]
fn a_missing_prepared_block_is_asked_for_once_per_base_timeout() {
    let net = Net::new(4);
    let b = net.block(1, 2);
    let (mut r, _) = net.replica(2);
    r.handle(1, view_change_input(&net, 0, 2, None));
    let outs = r.handle(
        2,
        without_block(view_change_input(&net, 1, 2, Some((1, &b, &[0, 3])))),
    );
    let fetches = |outs: &[Output]| {
        outs.iter()
            .filter(|o| matches!(o, Output::FetchBlock { .. }))
            .count()
    };
    assert_eq!(fetches(&outs), 1);
    // More view changes for the view re-try the new-view: no new fetch
    // within the base timeout.
    let outs = r.handle(
        3,
        without_block(view_change_input(&net, 3, 2, Some((1, &b, &[0, 3])))),
    );
    assert_eq!(fetches(&outs), 0);
}
