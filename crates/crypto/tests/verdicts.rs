#![allow(clippy::unwrap_used)]
//! Single and batch verification must give the same verdict for every
//! signature, including the adversarial encodings on which ed25519
//! implementations are known to disagree: small-order keys and nonces,
//! non-canonical point and scalar encodings, and mixed-order keys.

use aidledger_crypto::{signing_bytes, verify_batch, Keypair, Purpose, SigItem};
use aidledger_types::{ChainId, PublicKey, Signature};
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use proptest::prelude::*;
use sha2::{Digest, Sha512};

fn chain() -> ChainId {
    ChainId::new("verdict-test").unwrap()
}

/// A signature case: key, signed bytes, signature, and the verdict the
/// single path must give.
#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    public: PublicKey,
    bytes: Vec<u8>,
    sig: Signature,
    valid: bool,
}

fn valid_case(seed: u8, msg: &[u8]) -> Case {
    let k = Keypair::from_seed([seed; 32]);
    let sig = k.sign(&chain(), Purpose::Tx, msg);
    Case {
        name: "valid",
        public: k.public(),
        bytes: signing_bytes(&chain(), Purpose::Tx, msg),
        sig,
        valid: true,
    }
}

fn challenge(r: &[u8; 32], a: &[u8; 32], m: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(m);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// Every adversarial construction we know of.
fn adversarial_cases() -> Vec<Case> {
    let mut out = Vec::new();
    let bytes = signing_bytes(&chain(), Purpose::Tx, b"adversarial");

    // 1. Small-order public key (the identity) with s = 0 and R = identity:
    //    satisfies both the cofactored and cofactorless equations, and is
    //    refused only by the small-order rule.
    let identity = [
        1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ];
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    out.push(Case {
        name: "small-order key and nonce",
        public: PublicKey(identity),
        bytes: bytes.clone(),
        sig: Signature(sig),
        valid: false,
    });

    // 2. Every 8-torsion point as the public key.
    for t in EIGHT_TORSION.iter() {
        let a = t.compress().to_bytes();
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        out.push(Case {
            name: "torsion key",
            public: PublicKey(a),
            bytes: bytes.clone(),
            sig: Signature(sig),
            valid: false,
        });
    }

    // 3. A valid signature with a small-order component added to R:
    //    R' = R + T. The challenge changes with R', so this is simply wrong
    //    under the cofactorless rule; under the cofactored rule it is wrong
    //    too unless k' happens to compensate. Either way both paths agree.
    let key = Keypair::from_seed([9; 32]);
    let good = key.sign(&chain(), Purpose::Tx, b"adversarial");
    let r = CompressedEdwardsY(good.0[..32].try_into().unwrap())
        .decompress()
        .unwrap();
    let r_mixed = (r + EIGHT_TORSION[1]).compress().to_bytes();
    let mut sig = good.0;
    sig[..32].copy_from_slice(&r_mixed);
    out.push(Case {
        name: "nonce with torsion component",
        public: key.public(),
        bytes: bytes.clone(),
        sig: Signature(sig),
        valid: false,
    });

    // 4. Mixed-order public key A' = aB + T with an honestly computed
    //    signature: [s]B - R - [k]A' = -[k]T. The cofactored rule accepts it
    //    (as ZIP-215 does); ed25519-dalek's verify_strict rejects it unless
    //    8 | k. What matters is that our batch path agrees with our single
    //    path on it, which a cofactorless random-linear-combination batch
    //    does not (it accepts with probability about 1/8).
    let a_scalar = Scalar::from_bytes_mod_order([7u8; 32]);
    let a_mixed = a_scalar * ED25519_BASEPOINT_POINT + EIGHT_TORSION[1];
    let a_bytes = a_mixed.compress().to_bytes();
    let r_scalar = Scalar::from_bytes_mod_order([3u8; 32]);
    let r_bytes = (r_scalar * ED25519_BASEPOINT_POINT).compress().to_bytes();
    let k = challenge(&r_bytes, &a_bytes, &bytes);
    let s = r_scalar + k * a_scalar;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    out.push(Case {
        name: "mixed-order key",
        public: PublicKey(a_bytes),
        bytes: bytes.clone(),
        sig: Signature(sig),
        valid: true,
    });

    // 5. Non-canonical s: s + l still fits in 32 bytes when s is small.
    let v = valid_case(11, b"adversarial");
    let s = Scalar::from_canonical_bytes(v.sig.0[32..].try_into().unwrap()).unwrap();
    let l_bytes: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let t = s.as_bytes()[i] as u16 + l_bytes[i] as u16 + carry;
        sum[i] = t as u8;
        carry = t >> 8;
    }
    if carry == 0 && sum[31] & 0xe0 == 0 {
        let mut sig = v.sig.0;
        sig[32..].copy_from_slice(&sum);
        out.push(Case {
            name: "non-canonical s",
            public: v.public,
            bytes: v.bytes.clone(),
            sig: Signature(sig),
            valid: false,
        });
    }

    // 6. Non-canonical encodings of points: y = p + 1 encodes the identity
    //    non-canonically; as R and as A.
    let mut noncanon = [0xffu8; 32];
    noncanon[0] = 0xee;
    noncanon[31] = 0x7f;
    let mut sig = good.0;
    sig[..32].copy_from_slice(&noncanon);
    out.push(Case {
        name: "non-canonical R",
        public: key.public(),
        bytes: bytes.clone(),
        sig: Signature(sig),
        valid: false,
    });
    out.push(Case {
        name: "non-canonical A",
        public: PublicKey(noncanon),
        bytes: bytes.clone(),
        sig: good,
        valid: false,
    });

    // 7. A point that does not decompress at all.
    let mut not_on_curve = [0u8; 32];
    not_on_curve[0] = 2;
    out.push(Case {
        name: "key not on curve",
        public: PublicKey(not_on_curve),
        bytes: bytes.clone(),
        sig: good,
        valid: false,
    });

    // 8. A plain wrong message.
    out.push(Case {
        name: "wrong message",
        public: key.public(),
        bytes: signing_bytes(&chain(), Purpose::Tx, b"something else"),
        sig: good,
        valid: false,
    });
    out
}

fn item(c: &Case) -> SigItem<'_> {
    SigItem {
        public: &c.public,
        signed_bytes: &c.bytes,
        signature: &c.sig,
    }
}

fn single(c: &Case) -> bool {
    verify_batch(&[item(c)])[0].is_ok()
}

#[test]
fn adversarial_cases_get_the_expected_single_verdict() {
    for c in adversarial_cases() {
        assert_eq!(single(&c), c.valid, "case {:?}", c.name);
    }
}

#[test]
fn batch_verdicts_equal_single_verdicts_for_adversarial_cases() {
    // Put each adversarial case in batches of valid signatures, at every
    // position, in batches large enough to take the combined-equation path.
    let valid: Vec<Case> = (0..7).map(|i| valid_case(100 + i, &[i; 5])).collect();
    for c in adversarial_cases() {
        for pos in 0..=valid.len() {
            let mut batch = valid.clone();
            batch.insert(pos, c.clone());
            let items: Vec<SigItem<'_>> = batch.iter().map(item).collect();
            let verdicts = verify_batch(&items);
            for (b, v) in batch.iter().zip(&verdicts) {
                assert_eq!(v.is_ok(), single(b), "case {:?} at {pos}", c.name);
            }
        }
        // A batch made only of copies of the case.
        let batch = vec![c.clone(); 6];
        let items: Vec<SigItem<'_>> = batch.iter().map(item).collect();
        assert!(
            verify_batch(&items).iter().all(|v| v.is_ok() == c.valid),
            "{:?}",
            c.name
        );
    }
}

#[test]
fn valid_signatures_agree_with_ed25519_dalek_strict() {
    use ed25519_dalek::{Signature as DSig, Verifier, VerifyingKey};
    for i in 0..50u8 {
        let c = valid_case(i, &[i; 9]);
        let vk = VerifyingKey::from_bytes(&c.public.0).unwrap();
        let ds = DSig::from_bytes(&c.sig.0);
        assert!(vk.verify_strict(&c.bytes, &ds).is_ok());
        assert!(vk.verify(&c.bytes, &ds).is_ok());
        assert!(single(&c));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random batches of valid signatures, adversarial cases and random
    /// corruptions: every per-item batch verdict equals the single verdict.
    #[test]
    fn batch_equals_single_on_random_mixes(
        picks in proptest::collection::vec((0usize..40, any::<u8>(), any::<u16>()), 1..40)
    ) {
        let adv = adversarial_cases();
        let batch: Vec<Case> = picks.iter().map(|&(kind, seed, flip)| {
            if kind < adv.len() {
                adv[kind].clone()
            } else {
                let mut c = valid_case(seed, &seed.to_le_bytes());
                if kind % 3 == 0 {
                    // Flip one bit somewhere in the signature.
                    let bit = flip as usize % 512;
                    c.sig.0[bit / 8] ^= 1 << (bit % 8);
                }
                c
            }
        }).collect();
        let items: Vec<SigItem<'_>> = batch.iter().map(item).collect();
        let verdicts = verify_batch(&items);
        for (c, v) in batch.iter().zip(&verdicts) {
            prop_assert_eq!(v.is_ok(), single(c), "case {}", c.name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A few keys signing many messages, as a consortium's operators do, so
    /// the batch equation merges each key's terms into one: every per-item
    /// verdict still equals the single verdict, whether the bad items share
    /// a key with good ones or not, and wherever they sit in the batch.
    #[test]
    fn batch_equals_single_when_few_keys_sign_many(
        picks in proptest::collection::vec((0u8..4, any::<u16>(), 0u8..8, any::<u16>()), 2..80)
    ) {
        let adv = adversarial_cases();
        let batch: Vec<Case> = picks.iter().map(|&(key, msg, kind, flip)| {
            match kind {
                // A bit of the signature flipped.
                0 => {
                    let mut c = valid_case(key, &msg.to_le_bytes());
                    let bit = flip as usize % 512;
                    c.sig.0[bit / 8] ^= 1 << (bit % 8);
                    c
                }
                // The key's signature of another message.
                1 => {
                    let mut c = valid_case(key, &msg.to_le_bytes());
                    c.sig = valid_case(key, &msg.wrapping_add(1).to_le_bytes()).sig;
                    c
                }
                // Another key's signature of this message.
                2 => {
                    let mut c = valid_case(key, &msg.to_le_bytes());
                    c.sig = valid_case((key + 1) % 4, &msg.to_le_bytes()).sig;
                    c
                }
                3 => adv[flip as usize % adv.len()].clone(),
                _ => valid_case(key, &msg.to_le_bytes()),
            }
        }).collect();
        let items: Vec<SigItem<'_>> = batch.iter().map(item).collect();
        let verdicts = verify_batch(&items);
        for (c, v) in batch.iter().zip(&verdicts) {
            prop_assert_eq!(v.is_ok(), single(c), "case {}", c.name);
        }
    }
}
