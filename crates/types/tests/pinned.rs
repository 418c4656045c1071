#![allow(clippy::unwrap_used)]
//! The binary encoding, pinned byte for byte. Every transaction id, block
//! hash and stored block depends on these bytes, so a change to how a type
//! is written (a new serde impl, a faster path for fixed arrays, a codec
//! upgrade) must leave them as they are. The expected bytes were taken
//! from the encoder as it stood before any such change.

use aidledger_types::codec;
use aidledger_types::*;
use proptest::prelude::*;

fn bytes<const N: usize>(start: u8) -> [u8; N] {
    let mut b = [0u8; N];
    for (i, x) in b.iter_mut().enumerate() {
        *x = start.wrapping_add((i as u8).wrapping_mul(7));
    }
    b
}

fn pinned_tx() -> SignedTx {
    SignedTx {
        body: TxBody {
            chain_id: ChainId::new("pinned-chain").unwrap(),
            nonce: 0x0102_0304_0506_0708,
            signer: PublicKey(bytes(1)),
            kind: TxKind::ALL[3],
            payload: vec![0xaa, 0xbb, 0xcc],
        },
        signature: Signature(bytes(200)),
    }
}

fn pinned_block() -> Block {
    let cert = CommitCertificate {
        height: 6,
        view: 2,
        block_hash: Hash(bytes(50)),
        signatures: vec![CommitSignature {
            validator: 3,
            time: Timestamp(1_700_000_000_123),
            signature: Signature(bytes(90)),
        }],
    };
    Block {
        header: BlockHeader {
            version: 2,
            chain_id: ChainId::new("pinned-chain").unwrap(),
            height: 7,
            view: 1,
            parent_hash: Hash(bytes(10)),
            timestamp: Timestamp(1_700_000_000_456),
            proposer: PublicKey(bytes(20)),
            tx_root: Hash(bytes(30)),
            tx_count: 1,
            state_root: Hash(bytes(40)),
            event_root: Hash(bytes(60)),
            event_count: 2,
            validator_set_hash: Hash(bytes(70)),
            next_validator_set_hash: Hash(bytes(80)),
            parent_certificate: Some(cert),
        },
        txs: vec![pinned_tx()],
    }
}

const TX_HEX: &str = concat!(
    "0c0000000000000070696e6e65642d636861696e080706050403020101080f16",
    "1d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da03000000",
    "0300000000000000aabbccc8cfd6dde4ebf2f900070e151c232a31383f464d54",
    "5b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d34",
    "3b424950575e656c737a81",
);
const TX_ID_HEX: &str = "da7cc21be22e2b14f6b771614f014bea74ba4e37fae060bd9d033e4bdac62421";
const BLOCK_HEX: &str = concat!(
    "020000000c0000000000000070696e6e65642d636861696e0700000000000000",
    "01000000000000000a11181f262d343b424950575e656c737a81888f969da4ab",
    "b2b9c0c7ced5dce3c869e5cf8b010000141b222930373e454c535a61686f767d",
    "848b9299a0a7aeb5bcc3cad1d8dfe6ed1e252c333a41484f565d646b72798087",
    "8e959ca3aab1b8bfc6cdd4dbe2e9f0f701000000282f363d444b525960676e75",
    "7c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa013c434a51585f666d747b8289",
    "90979ea5acb3bac1c8cfd6dde4ebf2f900070e1502000000464d545b62697077",
    "7e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f50575e656c737a81",
    "888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b22290106000000000000",
    "000200000000000000323940474e555c636a71787f868d949ba2a9b0b7bec5cc",
    "d3dae1e8eff6fd040b010000000000000003007b68e5cf8b0100005a61686f76",
    "7d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f56",
    "5d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c130100000000",
    "0000000c0000000000000070696e6e65642d636861696e080706050403020101",
    "080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da03",
    "0000000300000000000000aabbccc8cfd6dde4ebf2f900070e151c232a31383f",
    "464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f",
    "262d343b424950575e656c737a81",
);
const BLOCK_HASH_HEX: &str = "2120cf547413098ceda795d55931deafa9cebd13786dde7e61edec0730bb11dc";

#[test]
fn a_transaction_encodes_to_the_pinned_bytes() {
    let tx = pinned_tx();
    let enc = hex::encode(tx.encode());
    assert_eq!(enc, TX_HEX);
    assert_eq!(tx.id().to_hex(), TX_ID_HEX);
    assert_eq!(SignedTx::decode(&hex::decode(TX_HEX).unwrap()).unwrap(), tx);
}

#[test]
fn a_block_encodes_to_the_pinned_bytes() {
    let b = pinned_block();
    let enc = hex::encode(codec::encode(&b));
    assert_eq!(enc, BLOCK_HEX);
    assert_eq!(b.hash().to_hex(), BLOCK_HASH_HEX);
    assert_eq!(Block::decode(&hex::decode(BLOCK_HEX).unwrap()).unwrap(), b);
}

proptest! {
    /// Hashes, keys and signatures are their raw bytes, nothing else: the
    /// form serde gives a byte array of that length.
    #[test]
    fn fixed_arrays_are_their_raw_bytes(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        prop_assert_eq!(codec::encode(&Hash(a)), a.to_vec());
        prop_assert_eq!(codec::encode(&PublicKey(a)), a.to_vec());
        prop_assert_eq!(codec::encode(&Signature(s)), s.to_vec());
        prop_assert_eq!(codec::encode(&Hash(a)), codec::encode(&a));
        prop_assert_eq!(codec::decode::<Hash>(&a).unwrap(), Hash(a));
        prop_assert_eq!(codec::decode::<PublicKey>(&a).unwrap(), PublicKey(a));
        prop_assert_eq!(codec::decode::<Signature>(&s).unwrap(), Signature(s));
        // One byte short is refused, as before.
        prop_assert!(codec::decode::<Hash>(&a[..31]).is_err());
        prop_assert!(codec::decode::<Signature>(&s[..63]).is_err());
    }
}
