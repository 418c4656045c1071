#![allow(clippy::unwrap_used)]
//! Commit certificates: quorum, signer order, and forged signatures.

use aidledger_crypto::{verify_certificate, CryptoError, Keypair, Purpose};
use aidledger_types::{
    codec, ChainId, CommitCertificate, CommitVote, Hash, OrgId, Validator, ValidatorSet,
    ValidatorSignature,
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

fn cert(keys: &[Keypair], signers: &[usize], height: u64, block: Hash) -> CommitCertificate {
    let vote = CommitVote {
        chain_id: chain(),
        height,
        view: 0,
        block_hash: block,
    };
    let bytes = codec::encode(&vote);
    CommitCertificate {
        height,
        view: 0,
        block_hash: block,
        signatures: signers
            .iter()
            .map(|&i| ValidatorSignature {
                validator: i as u16,
                signature: keys[i].sign(&chain(), Purpose::Commit, &bytes),
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
