#![allow(clippy::unwrap_used)]
//! Governance through the contracts alone (no signatures: the contracts
//! trust their caller to have verified them). A table of proposals and
//! approvals with the expected result of each step.

use std::collections::BTreeMap;

use aidledger_contracts::model::{GovAction, OrgKind, ParamValue, Params, Status};
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{
    apply_tx, begin_block, end_block, keys, module_versions, Account, ContractError, Genesis,
    GenesisAccount, GenesisOrg, Overlay, StoreRead,
};
use aidledger_types::{
    codec, ChainId, Hash, OrgId, PublicKey, Role, Timestamp, TxBody, Validator, ValidatorSet,
};

struct Harness {
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    height: u64,
    nonces: BTreeMap<PublicKey, u64>,
    chain: ChainId,
}

fn org(s: &str) -> OrgId {
    s.parse().expect("org")
}
fn key(i: u8) -> PublicKey {
    PublicKey([i; 32])
}

impl Harness {
    fn new() -> Harness {
        let orgs = ["a-bank", "b-bank", "c-office"];
        let genesis = Genesis {
            chain_id: "gov-test".parse().expect("chain"),
            genesis_time: Timestamp(0),
            orgs: orgs
                .iter()
                .map(|o| GenesisOrg {
                    id: org(o),
                    name: "x".parse().expect("t"),
                    kind: OrgKind::Bank,
                    // b-bank runs an observer that may become a validator.
                    node_keys: if *o == "b-bank" {
                        vec![key(101)]
                    } else {
                        vec![]
                    },
                })
                .collect(),
            accounts: orgs
                .iter()
                .enumerate()
                .map(|(i, o)| GenesisAccount {
                    key: key(i as u8 + 1),
                    org: org(o),
                    roles: vec![Role::Admin],
                })
                .collect(),
            validators: ValidatorSet::new(vec![Validator {
                org: org("a-bank"),
                key: key(100),
            }])
            .expect("vs"),
            modules: module_versions(),
            params: Params::default(),
        };
        let empty = BTreeMap::new();
        let mut o = Overlay::new(&empty);
        genesis.init(&mut o).expect("genesis");
        let state = o
            .into_writes()
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        Harness {
            state,
            height: 0,
            nonces: BTreeMap::new(),
            chain: genesis.chain_id,
        }
    }

    /// Applies one transaction as its own block; commits only on success.
    fn tx(&mut self, signer: PublicKey, p: Payload) -> Result<(), ContractError> {
        self.height += 1;
        let nonce = self.nonces.get(&signer).copied().unwrap_or(0);
        let body = TxBody {
            chain_id: self.chain.clone(),
            nonce,
            signer,
            kind: p.kind(),
            payload: p.encode(),
        };
        let writes = {
            let mut o = Overlay::new(&self.state);
            let time = Timestamp(self.height * 1000);
            let (modules, _) = begin_block(&mut o, self.height, time)?;
            apply_tx(
                &mut o,
                self.height,
                time,
                &body,
                Hash([self.height as u8; 32]),
            )?;
            end_block(&modules, &mut o, self.height, time)?;
            o.into_writes()
        };
        for (k, v) in writes {
            match v {
                Some(v) => self.state.insert(k, v),
                None => self.state.remove(&k),
            };
        }
        self.nonces.insert(signer, nonce + 1);
        Ok(())
    }

    /// A block with no transaction: the end-of-block step alone.
    fn empty_block(&mut self) {
        self.height += 1;
        let writes = {
            let mut o = Overlay::new(&self.state);
            let time = Timestamp(self.height * 1000);
            let (modules, _) = begin_block(&mut o, self.height, time).expect("begin block");
            end_block(&modules, &mut o, self.height, time).expect("end block");
            o.into_writes()
        };
        for (k, v) in writes {
            match v {
                Some(v) => self.state.insert(k, v),
                None => self.state.remove(&k),
            };
        }
    }

    fn get<T: serde::Serialize + serde::de::DeserializeOwned>(&self, k: &[u8]) -> Option<T> {
        StoreRead::get(&self.state, k)
            .expect("get")
            .map(|b| codec::decode(&b).expect("decode"))
    }
}

fn propose(a: GovAction) -> Payload {
    Payload::GovPropose(payload::GovPropose { action: a })
}
fn approve(p: u64) -> Payload {
    Payload::GovApprove(payload::GovApprove { proposal: p })
}

#[test]
fn actions_apply_only_when_the_threshold_of_distinct_orgs_is_met() {
    let mut h = Harness::new();
    let newcomer = key(50);
    let steps: Vec<(PublicKey, Payload, Result<(), &str>)> = vec![
        (
            key(1),
            propose(GovAction::AddAccount {
                key: newcomer,
                org: org("c-office"),
                roles: vec![Role::Registrar, Role::Registrar],
            }),
            Ok(()),
        ),
        (key(1), approve(0), Err("already-voted")),
        (key(2), approve(0), Ok(())),
        (key(3), approve(0), Err("wrong-status")),
        (
            key(1),
            propose(GovAction::AddAccount {
                key: newcomer,
                org: org("c-office"),
                roles: vec![Role::Admin],
            }),
            Err("already-exists"),
        ),
        (
            key(1),
            propose(GovAction::AddAccount {
                key: key(51),
                org: org("nobody"),
                roles: vec![Role::Admin],
            }),
            Err("not-found"),
        ),
        (
            key(1),
            propose(GovAction::SetRoles {
                key: newcomer,
                roles: vec![],
            }),
            Err("invalid"),
        ),
        (
            key(1),
            propose(GovAction::SetParam {
                param: ParamValue::GovernanceThreshold(3),
            }),
            Ok(()),
        ),
        (key(3), approve(1), Ok(())),
        // Now three organisations are needed.
        (
            key(1),
            propose(GovAction::RotateKey {
                old: key(3),
                new: key(33),
            }),
            Ok(()),
        ),
        (key(2), approve(2), Ok(())),
        (key(3), approve(2), Ok(())),
        // The old key is gone; the new one carries the account's nonce.
        (key(3), approve(0), Err("unknown-account")),
        (
            key(1),
            propose(GovAction::SetValidators {
                validators: ValidatorSet::new(vec![
                    Validator {
                        org: org("b-bank"),
                        key: key(101),
                    },
                    Validator {
                        org: org("a-bank"),
                        key: key(100),
                    },
                ])
                .expect("vs"),
                // Default delay: 20 blocks after the approval executes.
                at_height: 100,
            }),
            Ok(()),
        ),
        (key(2), approve(3), Ok(())),
    ];
    // An empty validator set cannot even be decoded: ValidatorSet runs its
    // checks on deserialisation (crates/types tests cover that), so a
    // proposal carrying one fails as a bad payload before governance sees it.
    for (i, (signer, p, expected)) in steps.into_iter().enumerate() {
        let got = h.tx(signer, p).map_err(|e| e.code());
        assert_eq!(got, expected, "step {i}");
    }
    let acct: Account = h.get(&keys::account(&newcomer)).expect("added");
    assert_eq!(acct.roles, vec![Role::Registrar], "roles are de-duplicated");
    let params: Params = h.get(keys::PARAMS).expect("params");
    assert_eq!(params.governance_threshold, 3);
    assert!(h.get::<Account>(&keys::account(&key(3))).is_none());
    let rotated: Account = h.get(&keys::account(&key(33))).expect("rotated");
    assert_eq!(rotated.nonce, 2, "history continues under the new key");
    assert_eq!(rotated.status, Status::Active);
    // The validator set needs the third approval (from the rotated key).
    let vs: ValidatorSet = h.get(keys::VALIDATORS).expect("vs");
    assert_eq!(vs.len(), 1);
    h.nonces.insert(key(33), 2);
    h.tx(key(33), approve(3)).expect("third approval");
    // Scheduled for height 100: the end of block 99 puts it in force.
    while h.height < 98 {
        h.empty_block();
        assert_eq!(
            h.get::<ValidatorSet>(keys::VALIDATORS).expect("vs").len(),
            1
        );
    }
    h.empty_block();
    let vs: ValidatorSet = h.get(keys::VALIDATORS).expect("vs");
    assert_eq!(vs.len(), 2);

    // A retired key never holds an account again: its nonces would start
    // over at 0, and what it signed before could be included a second
    // time (ADR 010). Neither adding it nor rotating back to it works.
    let retired: aidledger_contracts::RetiredKey =
        h.get(&keys::retired_key(&key(3))).expect("retired record");
    assert_eq!(retired.successor, key(33));
    assert_eq!(retired.nonce, 2);
    for action in [
        GovAction::AddAccount {
            key: key(3),
            org: org("c-office"),
            roles: vec![Role::Admin],
        },
        GovAction::RotateKey {
            old: key(33),
            new: key(3),
        },
    ] {
        let got = h.tx(key(1), propose(action)).map_err(|e| e.to_string());
        assert!(
            got.as_ref()
                .is_err_and(|e| e.contains("retired by a key rotation")),
            "{got:?}"
        );
    }
    assert!(h.get::<Account>(&keys::account(&key(3))).is_none());
}

/// Runs one governance action through a proposal and the second
/// approval the genesis threshold (2) asks for; a refusal comes from the
/// proposal's checks or from the same checks again at execution.
fn govern(h: &mut Harness, action: GovAction) -> Result<(), String> {
    h.tx(key(1), propose(action)).map_err(|e| e.to_string())?;
    let id = h.get::<u64>(keys::PROPOSAL_SEQ).expect("a proposal") - 1;
    h.tx(key(2), approve(id)).map_err(|e| e.to_string())
}

/// The node registry (ADR 017): genesis registers every node key, and
/// governance adds and removes keys under the checks that keep the chain
/// able to run: no key twice, never a removed key again, bounded per
/// organisation, no removal of a validator, and no validator set naming a
/// key no registered node of that organisation holds.
#[test]
fn the_node_registry_admits_and_removes_node_keys_under_governance() {
    use aidledger_contracts::{NodeRecord, RetiredNode};
    let mut h = Harness::new();
    let at_genesis: Vec<NodeRecord> = [(100u8, "a-bank"), (101, "b-bank")]
        .iter()
        .map(|(k, o)| NodeRecord {
            key: key(*k),
            org: org(o),
            added_height: 0,
        })
        .collect();
    for n in &at_genesis {
        assert_eq!(h.get::<NodeRecord>(&keys::node(&n.key)).as_ref(), Some(n));
    }
    // A validator set naming an unregistered key, or another
    // organisation's node, would halt the chain: refused.
    let set = |pairs: &[(&str, u8)], at_height: u64| GovAction::SetValidators {
        at_height,
        validators: ValidatorSet::new(
            pairs
                .iter()
                .map(|(o, k)| Validator {
                    org: org(o),
                    key: key(*k),
                })
                .collect(),
        )
        .expect("vs"),
    };
    let far = 1_000;
    let e = govern(&mut h, set(&[("a-bank", 100), ("c-office", 102)], far)).unwrap_err();
    assert!(e.contains("not a registered node key of c-office"), "{e}");
    let e = govern(&mut h, set(&[("a-bank", 100), ("c-office", 101)], far)).unwrap_err();
    assert!(e.contains("belongs to b-bank, not c-office"), "{e}");

    // Register c-office's node; then it can be named a validator.
    let add = |o: &str, k: u8| GovAction::AddNode {
        org: org(o),
        key: key(k),
    };
    govern(&mut h, add("c-office", 102)).expect("add");
    let height = h.height;
    assert_eq!(
        h.get::<NodeRecord>(&keys::node(&key(102))),
        Some(NodeRecord {
            key: key(102),
            org: org("c-office"),
            added_height: height,
        })
    );
    for (action, needle) in [
        (add("c-office", 102), "already exists"),
        (add("b-bank", 102), "registered for c-office"),
        (add("nobody", 103), "does not exist"),
    ] {
        let e = govern(&mut h, action).unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    // Too soon: the default delay is 20 blocks from the executing block.
    let soon = h.height + 2 + 19;
    let e = govern(&mut h, set(&[("a-bank", 100), ("c-office", 102)], soon)).unwrap_err();
    assert!(e.contains("too soon"), "{e}");
    govern(&mut h, set(&[("a-bank", 100), ("c-office", 102)], far)).expect("set with c-office");
    let e = govern(&mut h, set(&[("a-bank", 100)], far + 1)).unwrap_err();
    assert!(e.contains("already scheduled for height 1000"), "{e}");

    // A validator's key cannot be removed; an observer's can, for good.
    let remove = |k: u8| GovAction::RemoveNode { key: key(k) };
    // Scheduled is as good as in force.
    let e = govern(&mut h, remove(102)).unwrap_err();
    assert!(
        e.contains("is in the validator set scheduled for height 1000"),
        "{e}"
    );
    let e = govern(&mut h, remove(100)).unwrap_err();
    assert!(e.contains("is in the validator set"), "{e}");
    govern(&mut h, remove(101)).expect("remove b-bank's observer");
    assert!(h.get::<NodeRecord>(&keys::node(&key(101))).is_none());
    let removed_at = h.height;
    assert_eq!(
        h.get::<RetiredNode>(&keys::retired_node(&key(101))),
        Some(RetiredNode {
            org: org("b-bank"),
            height: removed_at,
            successor: None,
        })
    );
    let e = govern(&mut h, remove(101)).unwrap_err();
    assert!(e.contains("does not exist"), "{e}");
    // Its key never comes back, under any organisation.
    for o in ["b-bank", "c-office"] {
        let e = govern(&mut h, add(o, 101)).unwrap_err();
        assert!(e.contains("cannot be registered again"), "{e}");
    }
    // And a set naming it is refused like any unregistered key.
    let e = govern(&mut h, set(&[("b-bank", 101)], far + 10)).unwrap_err();
    assert!(e.contains("not a registered node key"), "{e}");

    // Sixteen keys per organisation at most, the genesis bound too.
    for k in 110..126u8 {
        govern(&mut h, add("b-bank", k)).expect("within the bound");
    }
    let e = govern(&mut h, add("b-bank", 126)).unwrap_err();
    assert!(e.contains("node keys of one organisation"), "{e}");
    govern(&mut h, add("c-office", 126)).expect("another organisation's bound");
}

/// Replacing a node key (ADR 017): the new key is registered at once for
/// the old key's organisation; a validator's seat moves to it at the
/// stated height (same index), and the old key is retired for good at the
/// end of the block before. Every way to misuse it is refused.
#[test]
fn a_node_key_replacement_moves_the_seat_at_its_height_and_retires_the_old_key() {
    use aidledger_contracts::{NodeRecord, NodeReplacement, RetiredNode, ScheduledValidators};
    let mut h = Harness::new();
    let replace = |old: u8, new: u8, at_height: u64| GovAction::ReplaceNodeKey {
        old: key(old),
        new: key(new),
        at_height,
    };
    for (action, needle) in [
        (replace(100, 100, 500), "are the same"),
        (replace(99, 130, 500), "does not exist"),
        (replace(100, 101, 500), "registered for b-bank"),
        (replace(100, 130, h.height + 3), "too soon"),
    ] {
        let e = govern(&mut h, action).unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    }

    // a-bank's validator key 100 moves to 130.
    let at = h.height + 2 + 25;
    govern(&mut h, replace(100, 130, at)).expect("replace");
    let executed = h.height;
    assert_eq!(
        h.get::<NodeRecord>(&keys::node(&key(130))),
        Some(NodeRecord {
            key: key(130),
            org: org("a-bank"),
            added_height: executed,
        })
    );
    assert!(h.get::<NodeRecord>(&keys::node(&key(100))).is_some());
    let seat = ValidatorSet::new(vec![Validator {
        org: org("a-bank"),
        key: key(130),
    }])
    .expect("vs");
    assert_eq!(
        h.get::<ScheduledValidators>(keys::VALIDATORS_SCHEDULED),
        Some(ScheduledValidators {
            at_height: at,
            validators: seat.clone(),
        })
    );
    // While it is pending: no second replacement of either key, no other
    // set change, no removal, no set naming the old key or the new one.
    for (action, needle) in [
        (replace(100, 131, at + 10), "node-key replacement"),
        (replace(130, 131, at + 10), "node-key replacement"),
        (replace(101, 100, at + 10), "already exists"),
        (
            GovAction::RemoveNode { key: key(130) },
            "scheduled for height",
        ),
        (
            GovAction::SetValidators {
                validators: seat.clone(),
                at_height: at + 10,
            },
            "node-key replacement",
        ),
    ] {
        let e = govern(&mut h, action).unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    // An observer's key can be replaced meanwhile: b-bank's 101 by 131.
    let observer_at = at + 5;
    govern(&mut h, replace(101, 131, observer_at)).expect("observer replace");
    let e = govern(&mut h, GovAction::RemoveNode { key: key(101) }).unwrap_err();
    assert!(e.contains("node-key replacement"), "{e}");

    // Nothing changes before the end of block at - 1.
    while h.height + 2 < at {
        h.empty_block();
    }
    let before: ValidatorSet = h.get(keys::VALIDATORS).expect("set");
    assert_eq!(before.index_of(&key(100)), Some(0));
    h.empty_block();
    assert_eq!(h.height, at - 1);
    let after: ValidatorSet = h.get(keys::VALIDATORS).expect("set");
    assert_eq!(after, seat);
    assert!(h.get::<NodeRecord>(&keys::node(&key(100))).is_none());
    assert!(h
        .get::<NodeReplacement>(&keys::node_replacing(&key(100)))
        .is_none());
    assert_eq!(
        h.get::<RetiredNode>(&keys::retired_node(&key(100))),
        Some(RetiredNode {
            org: org("a-bank"),
            height: at - 1,
            successor: Some(key(130)),
        })
    );
    // The observer's replacement is still pending; then it completes.
    assert!(h.get::<NodeRecord>(&keys::node(&key(101))).is_some());
    while h.height + 1 < observer_at {
        h.empty_block();
    }
    assert!(h.get::<NodeRecord>(&keys::node(&key(101))).is_none());
    assert!(h.get::<NodeRecord>(&keys::node(&key(131))).is_some());
    // The old keys never come back.
    for (o, k) in [("a-bank", 100), ("c-office", 101)] {
        let e = govern(
            &mut h,
            GovAction::AddNode {
                org: org(o),
                key: key(k),
            },
        )
        .unwrap_err();
        assert!(e.contains("cannot be registered again"), "{e}");
    }
}

/// A scheduled validator-set change can be cancelled before its height,
/// naming that height; a cancel for another height, with nothing
/// scheduled, or of the set a node-key replacement scheduled is refused.
#[test]
fn a_scheduled_validator_set_change_can_be_cancelled_before_its_height() {
    use aidledger_contracts::ScheduledValidators;
    let mut h = Harness::new();
    let cancel = |at_height: u64| GovAction::CancelValidatorSet { at_height };
    let e = govern(&mut h, cancel(500)).unwrap_err();
    assert!(e.contains("no validator-set change is scheduled"), "{e}");
    let set = ValidatorSet::new(vec![
        Validator {
            org: org("a-bank"),
            key: key(100),
        },
        Validator {
            org: org("b-bank"),
            key: key(101),
        },
    ])
    .expect("vs");
    let at = h.height + 2 + 25;
    govern(
        &mut h,
        GovAction::SetValidators {
            validators: set.clone(),
            at_height: at,
        },
    )
    .expect("schedule");
    let e = govern(&mut h, cancel(at + 1)).unwrap_err();
    assert!(e.contains(&format!("scheduled is for height {at}")), "{e}");
    govern(&mut h, cancel(at)).expect("cancel");
    assert!(h
        .get::<ScheduledValidators>(keys::VALIDATORS_SCHEDULED)
        .is_none());
    // Its height passes with the set unchanged, and a new change may be
    // scheduled.
    let genesis_set: ValidatorSet = h.get(keys::VALIDATORS).expect("set");
    while h.height < at + 1 {
        h.empty_block();
    }
    assert_eq!(h.get::<ValidatorSet>(keys::VALIDATORS), Some(genesis_set));

    // The set a replacement scheduled stays: its new key is registered.
    let later = h.height + 2 + 25;
    govern(
        &mut h,
        GovAction::ReplaceNodeKey {
            old: key(100),
            new: key(140),
            at_height: later,
        },
    )
    .expect("replace");
    let e = govern(&mut h, cancel(later)).unwrap_err();
    assert!(e.contains("node-key replacement"), "{e}");
}
