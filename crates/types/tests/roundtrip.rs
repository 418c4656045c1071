#![allow(clippy::unwrap_used)]
//! Canonical encoding: decode(encode(x)) == x, and encode(decode(b)) == b
//! for every byte string that decodes at all. And the one body check a
//! validator makes of a block ([`IdentifiedBlock::new`], ADR 026).

use aidledger_types::codec::{self, CodecError};
use aidledger_types::*;
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}
fn key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}
fn sig() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}
fn slug() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"
}
fn chain() -> impl Strategy<Value = ChainId> {
    slug().prop_map(|s| ChainId::new(s).unwrap())
}
fn kind() -> impl Strategy<Value = TxKind> {
    (0usize..TxKind::ALL.len()).prop_map(|i| TxKind::ALL[i])
}
fn tx() -> impl Strategy<Value = SignedTx> {
    (
        chain(),
        any::<u64>(),
        key(),
        kind(),
        proptest::collection::vec(any::<u8>(), 0..200),
        sig(),
    )
        .prop_map(
            |(chain_id, nonce, signer, kind, payload, signature)| SignedTx {
                body: TxBody {
                    chain_id,
                    nonce,
                    signer,
                    kind,
                    payload,
                },
                signature,
            },
        )
}
fn header() -> impl Strategy<Value = BlockHeader> {
    (
        chain(),
        any::<u64>(),
        any::<u64>(),
        hash(),
        any::<u64>(),
        key(),
        (hash(), any::<u32>(), hash(), hash(), hash(), any::<u32>()),
        proptest::option::of(cert()),
    )
        .prop_map(
            |(
                chain_id,
                height,
                view,
                parent_hash,
                ts,
                proposer,
                (tx_root, tx_count, state_root, vsh, next_vsh, version),
                parent_certificate,
            )| {
                BlockHeader {
                    version,
                    chain_id,
                    height,
                    view,
                    parent_hash,
                    timestamp: Timestamp(ts),
                    proposer,
                    tx_root,
                    tx_count,
                    state_root,
                    event_root: state_root,
                    event_count: tx_count,
                    validator_set_hash: vsh,
                    next_validator_set_hash: next_vsh,
                    parent_certificate,
                }
            },
        )
}
fn block() -> impl Strategy<Value = Block> {
    (header(), proptest::collection::vec(tx(), 0..5))
        .prop_map(|(header, txs)| Block { header, txs })
}
fn cert() -> impl Strategy<Value = CommitCertificate> {
    (
        any::<u64>(),
        any::<u64>(),
        hash(),
        proptest::collection::vec((any::<u16>(), any::<u64>(), sig()), 0..7),
    )
        .prop_map(|(height, view, block_hash, sigs)| CommitCertificate {
            height,
            view,
            block_hash,
            signatures: sigs
                .into_iter()
                .map(|(validator, time, signature)| CommitSignature {
                    validator,
                    time: Timestamp(time),
                    signature,
                })
                .collect(),
        })
}

fn round_trip<T>(v: &T) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = codec::encode(v);
    let back: T = codec::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, v);
    prop_assert_eq!(codec::encode(&back), bytes);
    Ok(())
}

proptest! {
    #[test]
    fn tx_round_trips(t in tx()) {
        round_trip(&t)?;
        prop_assert_eq!(SignedTx::decode(&t.encode()).unwrap().id(), t.id());
    }

    #[test]
    fn block_round_trips(b in block()) {
        round_trip(&b)?;
        prop_assert_eq!(Block::decode(&codec::encode(&b)).unwrap().hash(), b.hash());
    }

    #[test]
    fn certificate_round_trips(c in cert()) {
        round_trip(&c)?;
    }

    /// Any bytes that decode re-encode to themselves; anything else is a
    /// clean error, never a panic.
    #[test]
    fn mutated_bytes_decode_canonically_or_not_at_all(
        t in tx(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut bytes = t.encode();
        let i = pos.index(bytes.len());
        if cut { bytes.truncate(i); } else { bytes[i] = byte; }
        if let Ok(back) = codec::decode::<SignedTx>(&bytes) {
            prop_assert_eq!(codec::encode(&back), bytes);
        }
    }

    /// A body that matches its header is identified with its ids; any
    /// change to the body (a transaction dropped or added, one bit of a
    /// signature or of a nonce changed, two transactions swapped) or to
    /// the header's count is refused, and
    /// the block comes back as it was given.
    #[test]
    fn a_block_is_identified_exactly_when_its_body_matches_its_header(
        b in block(),
        extra in tx(),
        change in 0u8..5,
        pos in any::<prop::sample::Index>(),
    ) {
        let mut b = b;
        b.header.tx_count = b.txs.len() as u32;
        b.header.tx_root = Block::compute_tx_root(&b.txs);
        let ids: Vec<Hash> = b.txs.iter().map(SignedTx::id).collect();
        let ib = IdentifiedBlock::new(b.clone()).unwrap();
        prop_assert_eq!(ib.ids(), &ids[..]);
        prop_assert_eq!(ib.block(), &b);
        prop_assert_eq!(ib.hash(), b.hash());
        let mut bad = b.clone();
        let n = bad.txs.len();
        match change {
            0 => bad.txs.push(extra),
            1 if n > 0 => { bad.txs.remove(pos.index(n)); }
            2 if n > 0 => bad.txs[pos.index(n)].signature.0[7] ^= 1,
            3 if n > 0 => bad.txs[pos.index(n)].body.nonce ^= 1,
            4 if n > 1 && ids[0] != ids[n - 1] => bad.txs.swap(0, n - 1),
            _ => bad.header.tx_count += 1,
        }
        let back = IdentifiedBlock::new(bad.clone()).unwrap_err();
        prop_assert_eq!(*back, bad);
    }

    #[test]
    fn trailing_bytes_never_decode(t in tx(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = t.encode();
        bytes.extend_from_slice(&extra);
        let is_trailing = matches!(codec::decode::<SignedTx>(&bytes), Err(CodecError::TrailingBytes { .. }));
        prop_assert!(is_trailing);
    }
}

#[test]
fn tx_id_covers_every_body_field() {
    let base = SignedTx {
        body: TxBody {
            chain_id: ChainId::new("c").unwrap(),
            nonce: 1,
            signer: PublicKey([1; 32]),
            kind: TxKind::Deposit,
            payload: vec![1, 2, 3],
        },
        signature: Signature([0; 64]),
    };
    let id = base.id();
    let mut t = base.clone();
    t.body.chain_id = ChainId::new("d").unwrap();
    assert_ne!(t.id(), id);
    let mut t = base.clone();
    t.body.nonce = 2;
    assert_ne!(t.id(), id);
    let mut t = base.clone();
    t.body.signer = PublicKey([2; 32]);
    assert_ne!(t.id(), id);
    let mut t = base.clone();
    t.body.kind = TxKind::Settle;
    assert_ne!(t.id(), id);
    let mut t = base.clone();
    t.body.payload.push(4);
    assert_ne!(t.id(), id);
    // The signature is not part of the id.
    let mut t = base.clone();
    t.signature = Signature([9; 64]);
    assert_eq!(t.id(), id);
}

#[test]
fn oversized_tx_is_refused() {
    let t = SignedTx {
        body: TxBody {
            chain_id: ChainId::new("c").unwrap(),
            nonce: 1,
            signer: PublicKey([1; 32]),
            kind: TxKind::Deposit,
            payload: vec![0; aidledger_types::tx::TX_MAX_BYTES],
        },
        signature: Signature([0; 64]),
    };
    assert!(SignedTx::decode(&t.encode()).is_err());
}

#[test]
fn invalid_validator_sets_do_not_decode() {
    let v = Validator {
        org: OrgId::new("org-a").unwrap(),
        key: PublicKey([1; 32]),
    };
    let empty: Vec<Validator> = vec![];
    assert!(codec::decode::<ValidatorSet>(&codec::encode(&empty)).is_err());
    let dup = vec![v.clone(), v.clone()];
    assert!(codec::decode::<ValidatorSet>(&codec::encode(&dup)).is_err());
    let ok = ValidatorSet::new(vec![v]).unwrap();
    assert_eq!(
        codec::decode::<ValidatorSet>(&codec::encode(&ok)).unwrap(),
        ok
    );
    let json = serde_json::to_string(&ok).unwrap();
    assert_eq!(serde_json::from_str::<ValidatorSet>(&json).unwrap(), ok);
    assert!(serde_json::from_str::<ValidatorSet>(r#"{"validators":[]}"#).is_err());
}
