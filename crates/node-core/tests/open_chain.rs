#![allow(clippy::unwrap_used)]
//! Opening a stored chain gives the parent the next block is checked
//! against, including the set that certified the head and the head's
//! certificate (ADR 014). A node restarting on a block that changed the
//! validator set finds the set that certified it in the state.

use aidledger_audit::synth::{StateMode, SynthChain};
use aidledger_contracts::model::GovAction;
use aidledger_contracts::payload::{self, Payload};
use aidledger_execution::{validate_block, BlockContext};
use aidledger_node_core::{open_chain, StoreState};
use aidledger_storage::Store;
use aidledger_types::{Role, ValidatorSet};

#[test]
fn a_restart_on_the_block_that_changed_the_set_checks_the_next_block_against_the_old_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = SynthChain::new(&dir.path().join("data"), StateMode::Store).unwrap();
    let old = c.parent.validator_set.clone();
    // Drop the first validator, keep the other three.
    let newset = ValidatorSet::new(old.validators()[1..].to_vec()).unwrap();
    let propose = c.f.sign_as(
        "state-bank",
        Role::Admin,
        &Payload::GovPropose(payload::GovPropose {
            // Proposed at +1, approved at +2, in force from +4: the end
            // of block +3 changes the set.
            action: GovAction::SetValidators {
                validators: newset.clone(),
                at_height: c.parent.height + 4,
            },
        }),
    );
    let approve = c.f.sign_as(
        "dev-bank",
        Role::Admin,
        &Payload::GovApprove(payload::GovApprove { proposal: 0 }),
    );
    for tx in [propose, approve] {
        let t = c.time().saturating_add_ms(1_000);
        let v = c.f.verified(tx);
        c.block_at(t, &[v]).unwrap();
    }
    assert_eq!(c.set_changed_at, None, "not before its height");
    let t = c.time().saturating_add_ms(1_000);
    c.block_at(t, &[]).unwrap();
    let changed_at = c.parent.height;
    assert_eq!(c.set_changed_at, Some(changed_at));

    // Reopen the store as a restarting node would.
    let (parent, acc) = open_chain(c.store.as_ref(), &c.genesis).unwrap();
    assert_eq!(parent.height, changed_at);
    assert_eq!(parent.validator_set, newset);
    assert_eq!(
        parent.certifiers, old,
        "the head was certified by the old set"
    );
    assert_eq!(
        parent.certificate,
        c.store.certificate(changed_at).unwrap(),
        "the head's stored certificate, for the next proposal"
    );
    assert_eq!(parent, c.parent);

    // The next block, proposed by a member of the new set on the reopened
    // parent, carries the old set's certificate and validates.
    let ctx = BlockContext {
        chain_id: c.genesis.chain_id.clone(),
        height: changed_at + 1,
        timestamp: parent.next_time_floor().saturating_add_ms(500),
        proposer: newset.leader(0).key,
    };
    let state = StoreState(c.store.as_ref());
    let (block, _) = aidledger_execution::build_block(&parent, &ctx, 0, &[], &state, &acc).unwrap();
    assert!(block.header.parent_certificate.is_some());
    validate_block(&block, &parent, None, 1_000, &state, &acc).unwrap();

    // One block later the current set certified the head again.
    let t = c.time().saturating_add_ms(1_000);
    c.block_at(t, &[]).unwrap();
    let (parent, _) = open_chain(c.store.as_ref(), &c.genesis).unwrap();
    assert_eq!(parent.certifiers, newset);
    assert_eq!(parent, c.parent);
}
