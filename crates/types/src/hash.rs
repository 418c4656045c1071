//! SHA-256 digests with domain separation.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A 32-byte SHA-256 digest.
///
/// In binary encodings it is 32 raw bytes; in human-readable ones (JSON) it is
/// 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0u8; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, crate::TypeError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| crate::TypeError::Invalid {
            what: "hash",
            reason: format!("expected 64 hex characters, got {:?}", truncate(s)),
        })?;
        Ok(Hash(out))
    }

    /// First eight hex characters, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            crate::codec::words::serialize(&self.0, s)
        }
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Hash::from_hex(&s).map_err(de::Error::custom)
        } else {
            Ok(Hash(crate::codec::words::deserialize(d)?))
        }
    }
}

/// Domain-separation tags. Every hash in the protocol starts with one, so a
/// digest of one kind can never be confused with a digest of another.
pub mod domain {
    pub const TX_ID: &[u8] = b"aidledger/v1/tx-id";
    pub const TX_WITNESS: &[u8] = b"aidledger/v1/tx-witness";
    pub const BLOCK_HASH: &[u8] = b"aidledger/v1/block-header";
    pub const MERKLE_LEAF: &[u8] = b"aidledger/v1/merkle-leaf";
    pub const MERKLE_NODE: &[u8] = b"aidledger/v1/merkle-node";
    pub const MERKLE_EMPTY: &[u8] = b"aidledger/v1/merkle-empty";
    pub const STATE_ROOT: &[u8] = b"aidledger/v1/state-root";
    pub const STATE_ELEMENT: &str = "aidledger/v1/state-element lthash16";
    pub const VALIDATOR_SET: &[u8] = b"aidledger/v1/validator-set";
    pub const GENESIS: &[u8] = b"aidledger/v1/genesis";
    /// An event's leaf in a block's event tree (ADR 020).
    pub const EVENT: &[u8] = b"aidledger/v1/event";
}

/// SHA-256 over a domain tag followed by length-prefixed parts.
///
/// Length prefixes (u64 little-endian) make the concatenation unambiguous:
/// `("ab", "c")` and `("a", "bc")` hash differently.
pub fn hash_parts(domain: &[u8], parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    h.update((domain.len() as u64).to_le_bytes());
    h.update(domain);
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    Hash(h.finalize().into())
}

/// Plain SHA-256 of some bytes, for content hashes supplied by users
/// (documents, bank references) where no domain applies.
pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_unambiguous() {
        assert_ne!(
            hash_parts(b"d", &[b"ab", b"c"]),
            hash_parts(b"d", &[b"a", b"bc"])
        );
        assert_ne!(hash_parts(b"d1", &[b"x"]), hash_parts(b"d2", &[b"x"]));
    }

    #[test]
    fn hex_round_trip_and_json_form() {
        let h = sha256(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Hash::from_hex(&h.to_hex()).unwrap(), h);
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(j, format!("\"{}\"", h.to_hex()));
        assert_eq!(serde_json::from_str::<Hash>(&j).unwrap(), h);
        assert!(Hash::from_hex("zz").is_err());
    }
}
