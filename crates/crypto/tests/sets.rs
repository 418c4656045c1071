//! Following validator-set changes from genesis to a snapshot's height
//! (ADR 017 part 4): a genuine chain of changes leads to the set that
//! certified the snapshot; a forged, reordered, skipped or foreign change,
//! and a snapshot certified by the wrong set, are refused.

#![allow(clippy::unwrap_used)]

use aidledger_crypto::{Keypair, Purpose, SetHistory};
use aidledger_types::snapshot::{SetChange, SnapshotManifest, SNAPSHOT_FORMAT};
use aidledger_types::{
    codec, Block, BlockHeader, ChainId, CommitCertificate, CommitSignature, Hash, OrgId, Timestamp,
    Validator, ValidatorSet, HEADER_VERSION,
};

fn chain() -> ChainId {
    ChainId::new("sets-test").unwrap()
}

struct Set {
    keys: Vec<Keypair>,
    set: ValidatorSet,
}

fn set(seed: u8, n: usize) -> Set {
    let keys: Vec<Keypair> = (0..n)
        .map(|i| Keypair::from_seed([seed.wrapping_add(i as u8); 32]))
        .collect();
    let set = ValidatorSet::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| Validator {
                org: OrgId::new(format!("org-{seed}-{i}")).unwrap(),
                key: k.public(),
            })
            .collect(),
    )
    .unwrap();
    Set { keys, set }
}

fn header(height: u64, certifier: &Set, next: &Set, chain_id: &ChainId) -> BlockHeader {
    BlockHeader {
        version: HEADER_VERSION,
        chain_id: chain_id.clone(),
        height,
        view: 0,
        parent_hash: Hash([height as u8; 32]),
        timestamp: Timestamp(height * 1000),
        proposer: certifier.set.validators()[0].key,
        tx_root: Block::compute_tx_root(&[]),
        tx_count: 0,
        state_root: Hash([5; 32]),
        event_root: Hash([6; 32]),
        event_count: 0,
        validator_set_hash: certifier.set.hash(),
        next_validator_set_hash: next.set.hash(),
        parent_certificate: None,
    }
}

fn certify(h: &BlockHeader, by: &Set, signers: usize, chain_id: &ChainId) -> CommitCertificate {
    let mut cert = CommitCertificate {
        height: h.height,
        view: 0,
        block_hash: h.hash(),
        signatures: Vec::new(),
    };
    for (i, kp) in by.keys.iter().enumerate().take(signers) {
        let vote = codec::encode(&cert.vote(chain_id, h.timestamp));
        cert.signatures.push(CommitSignature {
            validator: i as u16,
            time: h.timestamp,
            signature: kp.sign(chain_id, Purpose::Commit, &vote),
        });
    }
    cert
}

fn change(height: u64, from: &Set, to: &Set) -> SetChange {
    let h = header(height, from, to, &chain());
    SetChange {
        certificate: certify(&h, from, from.set.quorum(), &chain()),
        header: h,
        validators: to.set.clone(),
    }
}

fn manifest(height: u64, by: &Set, signers: usize) -> SnapshotManifest {
    let h = header(height, by, by, &chain());
    let certificate = certify(&h, by, signers, &chain());
    SnapshotManifest {
        format: SNAPSHOT_FORMAT,
        block: Block {
            header: h,
            txs: Vec::new(),
        },
        certificate,
        chunks: Vec::new(),
    }
}

/// Genesis set `a` (4), `b` (5) from height 11, `c` (4) from height 21.
fn sets() -> (Set, Set, Set, Vec<SetChange>) {
    let (a, b, c) = (set(10, 4), set(40, 5), set(70, 4));
    let changes = vec![change(10, &a, &b), change(20, &b, &c)];
    (a, b, c, changes)
}

#[test]
fn genuine_changes_lead_to_the_set_that_certified_the_snapshot() {
    let (a, b, c, changes) = sets();
    let mut hist = SetHistory::genesis(a.set.clone());
    hist.follow(&chain(), &changes).unwrap();
    assert_eq!(hist.last_change(), 20);
    assert_eq!(hist.at(1), &a.set);
    assert_eq!(hist.at(10), &a.set);
    assert_eq!(hist.at(11), &b.set);
    assert_eq!(hist.at(20), &b.set);
    assert_eq!(hist.at(21), &c.set);
    assert_eq!(hist.at(5000), &c.set);
    hist.verify_manifest(&chain(), &manifest(50, &c, 3))
        .unwrap();
    // A snapshot at a change's own height is certified by the outgoing set.
    let mut m = manifest(20, &b, 4);
    m.block.header = changes[1].header.clone();
    m.certificate = changes[1].certificate.clone();
    hist.verify_manifest(&chain(), &m).unwrap();
    // Following in two parts is the same as in one.
    let mut two = SetHistory::genesis(a.set.clone());
    two.follow(&chain(), &changes[..1]).unwrap();
    two.follow(&chain(), &changes[1..]).unwrap();
    assert_eq!(two, hist);
}

#[test]
fn a_snapshot_certified_by_a_retired_or_too_small_set_is_refused() {
    let (a, b, c, changes) = sets();
    let mut hist = SetHistory::genesis(a.set.clone());
    hist.follow(&chain(), &changes).unwrap();
    // The genesis set's keys, stolen later, sign a snapshot at 50.
    let e = hist
        .verify_manifest(&chain(), &manifest(50, &a, 3))
        .unwrap_err();
    assert!(e.to_string().contains("another certifying set"), "{e}");
    // The right set, one signature short of a quorum.
    assert!(hist
        .verify_manifest(&chain(), &manifest(50, &c, 2))
        .is_err());
    // A header naming set c but signed by b's keys.
    let mut m = manifest(50, &c, 3);
    m.certificate = certify(&m.block.header, &b, 4, &chain());
    assert!(hist.verify_manifest(&chain(), &m).is_err());
    // Without the changes, a snapshot certified by c is not trusted.
    let genesis_only = SetHistory::genesis(a.set.clone());
    assert!(genesis_only
        .verify_manifest(&chain(), &manifest(50, &c, 3))
        .is_err());
    // Another chain's snapshot.
    let other = ChainId::new("other-chain").unwrap();
    let h = header(50, &c, &c, &other);
    let mut m = manifest(50, &c, 3);
    m.certificate = certify(&h, &c, 3, &other);
    m.block.header = h;
    assert!(hist.verify_manifest(&chain(), &m).is_err());
}

#[test]
fn forged_skipped_and_reordered_changes_are_refused() {
    let (a, b, c, changes) = sets();
    let refused = |cs: &[SetChange]| {
        let mut hist = SetHistory::genesis(a.set.clone());
        hist.follow(&chain(), cs).unwrap_err().to_string()
    };
    // The second change alone: its block names b, but a is in force.
    assert!(refused(&changes[1..]).contains("missing"));
    // Reordered.
    assert!(refused(&[changes[1].clone(), changes[0].clone()]).contains("missing"));
    // Repeated.
    assert!(refused(&[changes[0].clone(), changes[0].clone()]).contains("does not come after"));
    // An incoming set swapped for the attacker's, keeping the header.
    let mut forged = changes[0].clone();
    forged.validators = c.set.clone();
    assert!(refused(&[forged]).contains("not the one its block names"));
    // A header rewritten to name the attacker's set, keeping the old
    // certificate.
    let mut forged = changes[0].clone();
    forged.header.next_validator_set_hash = c.set.hash();
    forged.validators = c.set.clone();
    assert!(refused(&[forged]).contains("certificate"));
    // The attacker's own set signs the change.
    let mut forged = change(10, &c, &b);
    forged.header.validator_set_hash = a.set.hash();
    forged.certificate = certify(&forged.header, &c, 3, &chain());
    assert!(refused(&[forged]).contains("certificate"));
    // A block that is not the last of its set.
    let h = header(10, &a, &a, &chain());
    let not_last = SetChange {
        certificate: certify(&h, &a, 3, &chain()),
        header: h,
        validators: a.set.clone(),
    };
    assert!(refused(&[not_last]).contains("not the last"));
    // A quorum short.
    let mut short = changes[0].clone();
    short.certificate.signatures.pop();
    assert!(refused(&[short]).contains("certificate"));
    // The history keeps what was followed before the bad change.
    let mut hist = SetHistory::genesis(a.set.clone());
    let mut bad = changes[1].clone();
    bad.certificate.signatures.clear();
    assert!(hist.follow(&chain(), &[changes[0].clone(), bad]).is_err());
    assert_eq!(hist.last_change(), 10);
    assert_eq!(hist.at(15), &b.set);
}
