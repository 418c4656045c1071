//! The one place that knows the wire and disk encoding.
//!
//! Everything that is hashed, signed, gossiped or stored goes through
//! [`encode`] and [`decode`]. The encoding is bincode 1.3.3 (pinned in the
//! workspace) with fixed-width little-endian integers. Decoding is strict:
//!
//! * input longer than the limit is refused before any allocation;
//! * trailing bytes after the value are refused;
//! * the value must re-encode to exactly the input bytes, so every value has
//!   one encoding (maps with unsorted or repeated keys, for example, are
//!   refused rather than silently normalised).
//!
//! Architecture Invariant: no other module in the workspace imports bincode.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// Default upper bound for any single decoded value: 8 MiB.
pub const MAX_DECODE_BYTES: usize = 8 * 1024 * 1024;

/// Why bytes were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("encoded value is {len} bytes, over the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("{trailing} trailing bytes after the encoded value")]
    TrailingBytes { trailing: usize },
    #[error("non-canonical encoding: the value re-encodes to different bytes")]
    NonCanonical,
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
}

/// Encodes a value canonically.
///
/// Encoding our own types cannot fail: they contain no maps with
/// non-serialisable keys and no sequences of unknown length.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    match options().serialize(value) {
        Ok(bytes) => bytes,
        // Only reachable with a Serialize impl that errors on purpose, which
        // would be a programming error in this workspace.
        Err(e) => panic!("canonical encoding failed: {e}"),
    }
}

/// Size of the canonical encoding without allocating it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    match options().serialized_size(value) {
        Ok(n) => n as usize,
        Err(e) => panic!("canonical sizing failed: {e}"),
    }
}

/// Decodes with the default limit, [`MAX_DECODE_BYTES`].
pub fn decode<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_with_limit(bytes, MAX_DECODE_BYTES)
}

/// Decodes a value, refusing input over `limit` bytes, trailing bytes and
/// non-canonical encodings.
pub fn decode_with_limit<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let mut reader = bytes;
    let value: T = options()
        .with_limit(limit as u64)
        .deserialize_from(&mut reader)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(CodecError::TrailingBytes {
            trailing: reader.len(),
        });
    }
    // Canonicality: the cheapest complete check is to re-encode and
    // compare, here as the encoding is written, with nothing allocated.
    let mut same = SameAs { rest: bytes };
    if options().serialize_into(&mut same, &value).is_err() || !same.rest.is_empty() {
        return Err(CodecError::NonCanonical);
    }
    Ok(value)
}

/// Fixed byte arrays (hashes, keys, signatures) in the binary form.
///
/// Serde writes `[u8; N]` as a tuple of `N` bytes, which this codec lays
/// out as the `N` raw bytes, one call per byte on both sides (35 % and
/// 20 % of a transaction's decode went to those calls, perf). These write
/// and read the same bytes as `N / 8` little-endian u64s: under the
/// codec's fixed-width little-endian integers, the same layout, pinned by
/// `tests/pinned.rs`. Only the codec's binary (not human-readable) form
/// goes through here; JSON keeps its hex strings.
pub(crate) mod words {
    use serde::de::{Error as _, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        const { assert!(N.is_multiple_of(8)) };
        let mut t = s.serialize_tuple(N / 8)?;
        for w in bytes.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            t.serialize_element(&u64::from_le_bytes(word))?;
        }
        t.end()
    }

    struct Words<const N: usize>;

    impl<'de, const N: usize> Visitor<'de> for Words<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
            let mut out = [0u8; N];
            for (i, w) in out.chunks_exact_mut(8).enumerate() {
                let word: u64 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(i * 8, &self))?;
                w.copy_from_slice(&word.to_le_bytes());
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        const { assert!(N.is_multiple_of(8)) };
        d.deserialize_tuple(N / 8, Words::<N>)
    }
}

/// A writer that takes only the bytes it expects, in order: writing
/// anything else fails. What is left unwritten stays in `rest`.
struct SameAs<'a> {
    rest: &'a [u8],
}

impl std::io::Write for SameAs<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        let same = match self.rest.get(..n) {
            // The encoder writes one primitive at a time: each byte of a
            // hash, key or signature (fixed arrays are tuples of bytes),
            // each integer. Compared inline; a call to `memcmp` per write
            // cost more than the comparison (4.5 % of a validator's CPU,
            // perf, docs/benchmarks.md). The fold is branch-free and is
            // not turned back into a `memcmp` call.
            Some(head) if n <= 16 => head.iter().zip(buf).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0,
            Some(head) => head == buf,
            None => false,
        };
        if !same {
            return Err(std::io::Error::other("differs from the input"));
        }
        self.rest = &self.rest[n..];
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn trailing_bytes_are_refused() {
        let mut b = encode(&7u32);
        b.push(0);
        assert_eq!(
            decode::<u32>(&b),
            Err(CodecError::TrailingBytes { trailing: 1 })
        );
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let b = encode(&vec![0u8; 100]);
        assert!(matches!(
            decode_with_limit::<Vec<u8>>(&b, 50),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // A Vec<u8> claiming u64::MAX elements, with no body.
        let b = encode(&u64::MAX);
        assert!(matches!(
            decode::<Vec<u8>>(&b),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn a_repeated_map_key_is_non_canonical_though_it_re_encodes_shorter() {
        let mut m = BTreeMap::new();
        m.insert(1u8, 0u8);
        m.insert(2u8, 0u8);
        let mut b = encode(&m);
        // Two entries, both with key 1: decoding keeps one, which encodes
        // to fewer bytes than the input.
        b[10] = 1;
        assert_eq!(
            decode::<BTreeMap<u8, u8>>(&b),
            Err(CodecError::NonCanonical)
        );
        // The same bytes with the second key set back decode as before.
        b[10] = 2;
        assert_eq!(decode::<BTreeMap<u8, u8>>(&b), Ok(m));
    }

    #[test]
    fn unsorted_map_is_non_canonical() {
        let mut m = BTreeMap::new();
        m.insert(1u8, 0u8);
        m.insert(2u8, 0u8);
        let mut b = encode(&m);
        // Swap the two keys: length 8 bytes, then (k, v) pairs.
        b.swap(8, 10);
        assert_eq!(
            decode::<BTreeMap<u8, u8>>(&b),
            Err(CodecError::NonCanonical)
        );
    }

    #[test]
    fn bad_bool_and_option_tags_are_malformed() {
        assert!(matches!(
            decode::<bool>(&[2]),
            Err(CodecError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Option<u8>>(&[2, 0]),
            Err(CodecError::Malformed(_))
        ));
    }

    /// Writes `bytes` into a [`SameAs`] of `expected` in chunks of the
    /// given sizes (the rest in one last chunk); `Ok` with what is left.
    fn same_as(expected: &[u8], bytes: &[u8], chunks: &[usize]) -> Result<usize, ()> {
        use std::io::Write;
        let mut w = SameAs { rest: expected };
        let mut at: usize = 0;
        for &c in chunks.iter().chain(std::iter::once(&usize::MAX)) {
            let end = at.saturating_add(c).min(bytes.len());
            w.write_all(&bytes[at..end]).map_err(|_| ())?;
            at = end;
            if at == bytes.len() {
                break;
            }
        }
        Ok(w.rest.len())
    }

    proptest::proptest! {
        /// The comparing writer accepts exactly the expected bytes, in
        /// writes of any size (the inline path up to 16 bytes and the
        /// slice comparison above), and refuses one byte changed anywhere
        /// or a write past the end.
        #[test]
        fn the_comparing_writer_takes_only_the_expected_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..200),
            chunks in proptest::collection::vec(1usize..40, 0..20),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            proptest::prop_assert_eq!(same_as(&bytes, &bytes, &chunks), Ok(0));
            let mut changed = bytes.clone();
            let i = at.index(bytes.len());
            changed[i] ^= flip;
            proptest::prop_assert_eq!(same_as(&bytes, &changed, &chunks), Err(()));
            let mut longer = bytes.clone();
            longer.push(0);
            proptest::prop_assert_eq!(same_as(&bytes, &longer, &chunks), Err(()));
            // A prefix is accepted and leaves the rest unwritten.
            let n = bytes.len() - 1;
            proptest::prop_assert_eq!(same_as(&bytes, &bytes[..n], &chunks), Ok(1));
        }
    }
}
