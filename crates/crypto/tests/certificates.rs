#![allow(clippy::unwrap_used)]
//! Commit certificates: quorum, signer order, and forged signatures.

use aidledger_crypto::{verify_certificate, CryptoError, Keypair, Purpose};
use aidledger_types::{
    codec, ChainId, CommitCertificate, CommitSignature, CommitVote, Hash, OrgId, Timestamp,
    Validator, ValidatorSet,
};

fn chain() -> ChainId {
    ChainId::new("cert-test").unwrap()
}

fn setup(n: usize) -> (Vec<Keypair>, ValidatorSet) {
    let keys: Vec<Keypair> = (0..n)
        .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
        .collect();
    let set = ValidatorSet::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| Validator {
                org: OrgId::new(format!("org-{i}")).unwrap(),
                key: k.public(),
            })
            .collect(),
    )
    .unwrap();
    (keys, set)
}

/// Signer `i` votes at time `1000 + i`: each signature covers its own time.
fn cert(keys: &[Keypair], signers: &[usize], height: u64, block: Hash) -> CommitCertificate {
    CommitCertificate {
        height,
        view: 0,
        block_hash: block,
        signatures: signers
            .iter()
            .map(|&i| {
                let time = Timestamp(1000 + i as u64);
                let vote = CommitVote {
                    chain_id: chain(),
                    height,
                    view: 0,
                    block_hash: block,
                    time,
                };
                CommitSignature {
                    validator: i as u16,
                    time,
                    signature: keys[i].sign(&chain(), Purpose::Commit, &codec::encode(&vote)),
                }
            })
            .collect(),
    }
}

#[test]
fn quorum_sizes() {
    for (n, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (7, 5), (10, 7)] {
        assert_eq!(setup(n).1.quorum(), q, "n = {n}");
    }
}

#[test]
fn a_quorum_certificate_verifies() {
    let (keys, set) = setup(4);
    let b = Hash([5; 32]);
    assert_eq!(
        verify_certificate(&cert(&keys, &[0, 1, 3], 7, b), &chain(), &set, 7, &b),
        Ok(())
    );
    assert_eq!(
        verify_certificate(&cert(&keys, &[0, 1, 2, 3], 7, b), &chain(), &set, 7, &b),
        Ok(())
    );
}

#[test]
fn too_few_signatures_names_the_count() {
    let (keys, set) = setup(4);
    let b = Hash([5; 32]);
    let e = verify_certificate(&cert(&keys, &[0, 2], 77, b), &chain(), &set, 77, &b).unwrap_err();
    assert_eq!(
        e,
        CryptoError::CertTooFewSignatures {
            got: 2,
            required: 3
        }
    );
    assert_eq!(e.to_string(), "certificate has 2 of 3 required signatures");
}

#[test]
fn duplicate_or_unsorted_signers_are_refused() {
    let (keys, set) = setup(4);
    let b = Hash([5; 32]);
    let e = verify_certificate(&cert(&keys, &[0, 0, 1], 1, b), &chain(), &set, 1, &b);
    assert_eq!(e, Err(CryptoError::CertUnsorted { index: 0 }));
    let e = verify_certificate(&cert(&keys, &[1, 0, 2], 1, b), &chain(), &set, 1, &b);
    assert_eq!(e, Err(CryptoError::CertUnsorted { index: 0 }));
}

#[test]
fn forged_with_a_non_validator_key_is_refused() {
    let (keys, set) = setup(4);
    let b = Hash([5; 32]);
    let mut forged_keys: Vec<Keypair> = keys.clone();
    forged_keys[3] = Keypair::from_seed([200; 32]);
    let c = cert(&forged_keys, &[0, 1, 3], 3, b);
    let e = verify_certificate(&c, &chain(), &set, 3, &b).unwrap_err();
    assert_eq!(
        e,
        CryptoError::CertBadSignature {
            index: 3,
            org: "org-3".into()
        }
    );
    // An index outside the set.
    let mut c = cert(&keys, &[0, 1, 2], 3, b);
    c.signatures[2].validator = 9;
    assert!(matches!(
        verify_certificate(&c, &chain(), &set, 3, &b),
        Err(CryptoError::CertUnknownSigner { index: 9, len: 4 })
    ));
}

#[test]
fn wrong_height_block_or_chain_is_refused() {
    let (keys, set) = setup(4);
    let b = Hash([5; 32]);
    let c = cert(&keys, &[0, 1, 2], 3, b);
    assert!(matches!(
        verify_certificate(&c, &chain(), &set, 4, &b),
        Err(CryptoError::CertHeight { .. })
    ));
    assert!(matches!(
        verify_certificate(&c, &chain(), &set, 3, &Hash([6; 32])),
        Err(CryptoError::CertBlock { .. })
    ));
    let other = ChainId::new("other-chain").unwrap();
    assert!(matches!(
        verify_certificate(&c, &other, &set, 3, &b),
        Err(CryptoError::CertBadSignature { .. })
    ));
}

/// Each signer signs its own commit time (ADR 014): a time changed after
/// signing, or one signer's time moved to another, breaks that signature.
#[test]
fn a_commit_time_changed_after_signing_is_refused() {
    let (keys, set) = setup(4);
    let b = Hash([5; 32]);
    let good = cert(&keys, &[0, 1, 2], 3, b);
    verify_certificate(&good, &chain(), &set, 3, &b).unwrap();
    assert_eq!(good.median_time(), Some(Timestamp(1001)));
    for (i, time) in [
        (0, Timestamp(0)),
        (1, Timestamp(u64::MAX)),
        (2, Timestamp(1000)),
    ] {
        let mut c = good.clone();
        c.signatures[i].time = time;
        assert_eq!(
            verify_certificate(&c, &chain(), &set, 3, &b),
            Err(CryptoError::CertBadSignature {
                index: i as u16,
                org: format!("org-{i}")
            }),
            "signer {i}'s time changed to {time:?}"
        );
    }
}

/// The median lies between honest times whatever f signers write: with
/// n = 4 (f = 1), one extreme time among three or four signers never
/// becomes the median.
#[test]
fn the_median_time_ignores_one_extreme_signer() {
    let sig = |validator: u16, t: u64| CommitSignature {
        validator,
        time: Timestamp(t),
        signature: aidledger_types::Signature([0; 64]),
    };
    let mk = |sigs: Vec<CommitSignature>| CommitCertificate {
        height: 1,
        view: 0,
        block_hash: Hash([0; 32]),
        signatures: sigs,
    };
    for extreme in [0, u64::MAX] {
        // Three signers: honest 500 and 700; the median is one of them.
        let m = mk(vec![sig(0, 500), sig(1, extreme), sig(2, 700)])
            .median_time()
            .unwrap();
        assert!((500..=700).contains(&m.0), "{extreme}: {m:?}");
        // Four signers: honest 500, 600, 700.
        let m = mk(vec![sig(0, 500), sig(1, 600), sig(2, extreme), sig(3, 700)])
            .median_time()
            .unwrap();
        assert!((500..=700).contains(&m.0), "{extreme}: {m:?}");
    }
    assert_eq!(mk(Vec::new()).median_time(), None);
}
