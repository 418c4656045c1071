//! State snapshots (ADR 017 part 4): the state at a committed height, cut
//! in key order into chunks that a joining node fetches from any peer and
//! checks one by one against a certified state root.
//!
//! The state root is a homomorphic set hash (ADR 003): the accumulator of a
//! set of pairs is the lane-wise sum of the accumulators of any partition
//! of it. A manifest therefore lists, for each chunk, its key range, its
//! pair count and its *partial* accumulator. The joiner checks once that
//! the partials sum to the root in block `S`'s header, which a commit
//! certificate covers, and then checks each chunk on arrival: its pairs
//! sorted strictly inside the chunk's range, and hashing to the chunk's
//! partial. Disjoint ranges plus verified partials summing to the
//! certified accumulator make the union of the chunks the certified state;
//! forging it needs an LtHash collision.
//!
//! The cut depends only on the state ([`ChunkCutter`]), so every node that
//! holds the state at `S` offers the same chunks and a joiner can fetch
//! them from several peers at once.
//!
//! Architecture Invariant: nothing here does IO. The store cuts and installs
//! snapshots; the node fetches them; this module only decides what is
//! well-formed and what matches.

use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockHeader, CommitCertificate, ValidatorSet};
use crate::hash::Hash;
use crate::state_root::{StateAccumulator, LANES};

/// The manifest format this build writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;
/// Longest state key (the store refuses longer ones).
pub const STATE_KEY_MAX_BYTES: usize = 1024;
/// Longest state value (the store refuses longer ones).
pub const STATE_VALUE_MAX_BYTES: usize = 1024 * 1024;
/// Most bytes of pairs in one chunk, counted by [`pair_cost`]. One pair
/// always fits: a key and a value at their limits cost about 1 MiB.
pub const CHUNK_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most chunks in one snapshot: 16 GiB of state at [`CHUNK_MAX_BYTES`].
pub const SNAPSHOT_CHUNKS_MAX: usize = 4096;
/// Longest encoded manifest: a block at its limit plus
/// [`SNAPSHOT_CHUNKS_MAX`] chunk entries with keys at their limit.
pub const MANIFEST_MAX_BYTES: usize = 40 * 1024 * 1024;
/// Longest encoded chunk.
pub const CHUNK_MAX_ENCODED_BYTES: usize = CHUNK_MAX_BYTES + 64 * 1024;

/// What one pair counts towards [`CHUNK_MAX_BYTES`]: its key and value and
/// their two 8-byte length prefixes in the encoding.
pub fn pair_cost(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + 16
}

/// One change of the validator set, as a joiner that holds only the
/// genesis follows them to the set in force at a snapshot's height: the
/// last block the outgoing set certified, its certificate, and the
/// incoming set, whose hash that block's header names as the next set.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetChange {
    pub header: BlockHeader,
    pub certificate: CommitCertificate,
    /// The set that certifies blocks from `header.height + 1` on.
    pub validators: ValidatorSet,
}

/// Most set changes in one answer.
pub const SET_CHANGES_MAX: usize = 256;

/// One chunk as the manifest describes it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ChunkInfo {
    /// The chunk's smallest key.
    pub first_key: Vec<u8>,
    /// The chunk's largest key.
    pub last_key: Vec<u8>,
    /// How many pairs the chunk holds.
    pub pairs: u32,
    /// The sum of [`pair_cost`] over its pairs.
    pub bytes: u32,
    /// The accumulator of its pairs alone (2 KiB of lanes).
    pub partial: Vec<u8>,
}

/// What a node offers for a snapshot at one height: the committed block,
/// its certificate and the chunks of the state after it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub format: u32,
    /// Block `S`. Its header's state root is the root the chunks sum to.
    pub block: Block,
    /// The certificate committing block `S`. The manifest's own checks
    /// only tie it to the block; the joiner checks its signatures against
    /// the validator set in force at `S`.
    pub certificate: CommitCertificate,
    pub chunks: Vec<ChunkInfo>,
}

/// The pairs of one chunk, in key order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub height: u64,
    pub index: u32,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a manifest or a chunk is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("snapshot format {got} is not the format {SNAPSHOT_FORMAT} this build reads")]
    Format { got: u32 },
    #[error("the snapshot has {0} chunks; the limit is {SNAPSHOT_CHUNKS_MAX}")]
    TooManyChunks(usize),
    #[error("the certificate is for block {cert_block} at height {cert_height}, not the manifest's block {block} at height {height}")]
    CertificateMismatch {
        height: u64,
        block: Hash,
        cert_height: u64,
        cert_block: Hash,
    },
    #[error("block {height}'s transactions do not match its header")]
    BodyMismatch { height: u64 },
    #[error("chunk {index}: {reason}")]
    BadChunkInfo { index: usize, reason: String },
    #[error("the chunks' partial accumulators sum to state root {sum}, not block {height}'s state root {root}")]
    RootMismatch { height: u64, root: Hash, sum: Hash },
    #[error("chunk {index} does not exist; the snapshot has {chunks}")]
    NoSuchChunk { index: u32, chunks: usize },
    #[error("chunk {index} of height {got_height} arrived for height {height}")]
    WrongChunk {
        height: u64,
        index: u32,
        got_height: u64,
    },
    #[error("chunk {index}: {reason}")]
    BadChunk { index: u32, reason: String },
}

impl ChunkInfo {
    fn check(&self, index: usize) -> Result<(), SnapshotError> {
        let bad = |reason: String| Err(SnapshotError::BadChunkInfo { index, reason });
        if self.pairs == 0 {
            return bad("it holds no pairs".into());
        }
        if self.partial.len() != LANES * 2 {
            return bad(format!(
                "its partial accumulator has {} bytes, not {}",
                self.partial.len(),
                LANES * 2
            ));
        }
        if self.first_key.len() > STATE_KEY_MAX_BYTES || self.last_key.len() > STATE_KEY_MAX_BYTES {
            return bad(format!("a key is longer than {STATE_KEY_MAX_BYTES} bytes"));
        }
        if self.first_key > self.last_key || (self.pairs == 1) != (self.first_key == self.last_key)
        {
            return bad("its key range does not fit its pair count".into());
        }
        // Every pair costs at least its two length prefixes, so the count
        // is bounded by the bytes: a manifest cannot claim a count nobody
        // could reserve memory for.
        if u64::from(self.pairs) * 16 > u64::from(self.bytes) {
            return bad(format!(
                "{} pairs cannot fit in {} bytes",
                self.pairs, self.bytes
            ));
        }
        if self.bytes as usize > CHUNK_MAX_BYTES {
            return bad(format!(
                "it claims {} bytes; the limit is {CHUNK_MAX_BYTES}",
                self.bytes
            ));
        }
        Ok(())
    }

    fn partial(&self) -> Option<StateAccumulator> {
        StateAccumulator::from_bytes(&self.partial)
    }
}

impl SnapshotManifest {
    pub fn height(&self) -> u64 {
        self.block.header.height
    }

    /// The state root the chunks must sum to.
    pub fn state_root(&self) -> Hash {
        self.block.header.state_root
    }

    /// Everything about the manifest that needs no validator set: the
    /// format, the limits, the certificate naming this block, the body
    /// matching the header, chunk ranges in strictly increasing,
    /// disjoint order, and the partial accumulators summing to the
    /// header's state root. Returns that sum (the state's accumulator).
    pub fn check(&self) -> Result<StateAccumulator, SnapshotError> {
        if self.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format { got: self.format });
        }
        if self.chunks.len() > SNAPSHOT_CHUNKS_MAX {
            return Err(SnapshotError::TooManyChunks(self.chunks.len()));
        }
        let height = self.height();
        let block = self.block.hash();
        let cert = &self.certificate;
        if cert.height != height || cert.block_hash != block {
            return Err(SnapshotError::CertificateMismatch {
                height,
                block,
                cert_height: cert.height,
                cert_block: cert.block_hash,
            });
        }
        if !self.block.body_matches_header() {
            return Err(SnapshotError::BodyMismatch { height });
        }
        let mut sum = StateAccumulator::new();
        let mut previous_last: Option<&[u8]> = None;
        for (index, c) in self.chunks.iter().enumerate() {
            c.check(index)?;
            if previous_last.is_some_and(|p| p >= c.first_key.as_slice()) {
                return Err(SnapshotError::BadChunkInfo {
                    index,
                    reason: "its range does not start after the previous chunk's".into(),
                });
            }
            previous_last = Some(&c.last_key);
            match c.partial() {
                Some(p) => sum.add(&p),
                None => unreachable!("the length was checked"),
            }
        }
        let root = self.state_root();
        if sum.root() != root {
            return Err(SnapshotError::RootMismatch {
                height,
                root,
                sum: sum.root(),
            });
        }
        Ok(sum)
    }

    /// Checks one chunk against a manifest that passed [`Self::check`]:
    /// the right height and index, its pairs within the limits and sorted
    /// strictly from the chunk's first key to its last, the pair count and
    /// byte count as listed, and their accumulator equal to the partial.
    pub fn check_chunk(&self, chunk: &SnapshotChunk) -> Result<(), SnapshotError> {
        let height = self.height();
        let index = chunk.index;
        if chunk.height != height {
            return Err(SnapshotError::WrongChunk {
                height,
                index,
                got_height: chunk.height,
            });
        }
        let info = self
            .chunks
            .get(index as usize)
            .ok_or(SnapshotError::NoSuchChunk {
                index,
                chunks: self.chunks.len(),
            })?;
        let bad = |reason: String| Err(SnapshotError::BadChunk { index, reason });
        if chunk.pairs.len() != info.pairs as usize {
            return bad(format!(
                "it holds {} pairs; the manifest lists {}",
                chunk.pairs.len(),
                info.pairs
            ));
        }
        let mut acc = StateAccumulator::new();
        let mut bytes = 0usize;
        let mut previous: Option<&[u8]> = None;
        for (k, v) in &chunk.pairs {
            if k.len() > STATE_KEY_MAX_BYTES || v.len() > STATE_VALUE_MAX_BYTES {
                return bad("a key or a value is over the store's limit".into());
            }
            if previous.is_some_and(|p| p >= k.as_slice()) {
                return bad("its keys are not in strictly increasing order".into());
            }
            previous = Some(k);
            bytes = bytes.saturating_add(pair_cost(k, v));
            acc.insert(k, v);
        }
        let (Some((first, _)), Some((last, _))) = (chunk.pairs.first(), chunk.pairs.last()) else {
            return bad("it holds no pairs".into());
        };
        if *first != info.first_key || *last != info.last_key {
            return bad("its keys are outside the range the manifest lists".into());
        }
        if bytes != info.bytes as usize {
            return bad(format!(
                "its pairs hold {bytes} bytes; the manifest lists {}",
                info.bytes
            ));
        }
        if Some(acc) != info.partial() {
            return bad("its pairs do not hash to the manifest's partial accumulator".into());
        }
        Ok(())
    }
}

/// Cuts a state, read in key order, into chunks. Each chunk takes pairs
/// until the next would push it over [`CHUNK_MAX_BYTES`]. The cut is a
/// function of the state alone.
#[derive(Default)]
pub struct ChunkCutter {
    chunks: Vec<ChunkInfo>,
    open: Option<OpenChunk>,
    last_key: Option<Vec<u8>>,
}

struct OpenChunk {
    first_key: Vec<u8>,
    last_key: Vec<u8>,
    pairs: u32,
    bytes: usize,
    acc: StateAccumulator,
}

impl ChunkCutter {
    pub fn new() -> ChunkCutter {
        ChunkCutter::default()
    }

    /// Adds the next pair. Keys must come in strictly increasing order and
    /// within the store's limits; a state breaking either is refused.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        let index = self.chunks.len();
        if key.len() > STATE_KEY_MAX_BYTES || value.len() > STATE_VALUE_MAX_BYTES {
            return Err(SnapshotError::BadChunkInfo {
                index,
                reason: "a stored key or value is over the store's limit".into(),
            });
        }
        if self.last_key.as_deref().is_some_and(|l| l >= key) {
            return Err(SnapshotError::BadChunkInfo {
                index,
                reason: "the state was not read in strictly increasing key order".into(),
            });
        }
        self.last_key = Some(key.to_vec());
        let cost = pair_cost(key, value);
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.bytes + cost > CHUNK_MAX_BYTES)
        {
            self.close();
        }
        let open = self.open.get_or_insert_with(|| OpenChunk {
            first_key: key.to_vec(),
            last_key: Vec::new(),
            pairs: 0,
            bytes: 0,
            acc: StateAccumulator::new(),
        });
        open.last_key = key.to_vec();
        open.pairs += 1;
        open.bytes += cost;
        open.acc.insert(key, value);
        if self.chunks.len() >= SNAPSHOT_CHUNKS_MAX {
            return Err(SnapshotError::TooManyChunks(self.chunks.len() + 1));
        }
        Ok(())
    }

    fn close(&mut self) {
        if let Some(o) = self.open.take() {
            self.chunks.push(ChunkInfo {
                first_key: o.first_key,
                last_key: o.last_key,
                pairs: o.pairs,
                bytes: o.bytes as u32,
                partial: o.acc.to_bytes(),
            });
        }
    }

    /// The chunk list.
    pub fn finish(mut self) -> Vec<ChunkInfo> {
        self.close();
        self.chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockHeader;
    use crate::values::{ChainId, PublicKey};
    use crate::Timestamp;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn state(n: usize, value_len: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
        (0..n)
            .map(|i| {
                (
                    format!("households/{i:08}").into_bytes(),
                    vec![(i % 251) as u8; value_len],
                )
            })
            .collect()
    }

    fn cut(s: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<ChunkInfo> {
        let mut c = ChunkCutter::new();
        for (k, v) in s {
            c.push(k, v).unwrap();
        }
        c.finish()
    }

    fn chunks_of(
        s: &BTreeMap<Vec<u8>, Vec<u8>>,
        infos: &[ChunkInfo],
        height: u64,
    ) -> Vec<SnapshotChunk> {
        infos
            .iter()
            .enumerate()
            .map(|(i, c)| SnapshotChunk {
                height,
                index: i as u32,
                pairs: s
                    .range(c.first_key.clone()..=c.last_key.clone())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
            .collect()
    }

    fn manifest(s: &BTreeMap<Vec<u8>, Vec<u8>>) -> SnapshotManifest {
        let mut acc = StateAccumulator::new();
        for (k, v) in s {
            acc.insert(k, v);
        }
        let header = BlockHeader {
            version: crate::HEADER_VERSION,
            chain_id: ChainId::new("snapshot-test").unwrap(),
            height: 50,
            view: 0,
            parent_hash: Hash([1; 32]),
            timestamp: Timestamp(1_700_000_000_000),
            proposer: PublicKey([2; 32]),
            tx_root: Block::compute_tx_root(&[]),
            tx_count: 0,
            state_root: acc.root(),
            event_root: Hash::ZERO,
            event_count: 0,
            validator_set_hash: Hash([3; 32]),
            next_validator_set_hash: Hash([3; 32]),
            parent_certificate: None,
        };
        let block = Block {
            header,
            txs: Vec::new(),
        };
        SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            certificate: CommitCertificate {
                height: 50,
                view: 0,
                block_hash: block.hash(),
                signatures: Vec::new(),
            },
            block,
            chunks: cut(s),
        }
    }

    #[test]
    fn a_large_state_cuts_into_chunks_that_sum_to_its_root() {
        // About 12 MiB of pairs: at least three chunks.
        let s = state(3000, 4000);
        let m = manifest(&s);
        assert!(m.chunks.len() >= 3, "{} chunks", m.chunks.len());
        for c in &m.chunks {
            assert!(c.bytes as usize <= CHUNK_MAX_BYTES);
        }
        let total: u32 = m.chunks.iter().map(|c| c.pairs).sum();
        assert_eq!(total as usize, s.len());
        assert_eq!(m.check().unwrap().root(), m.state_root());
        for chunk in chunks_of(&s, &m.chunks, 50) {
            m.check_chunk(&chunk).unwrap();
        }
    }

    #[test]
    fn the_empty_state_has_no_chunks_and_checks() {
        let s = BTreeMap::new();
        let m = manifest(&s);
        assert!(m.chunks.is_empty());
        m.check().unwrap();
    }

    #[test]
    fn a_tampered_chunk_is_refused() {
        let s = state(3000, 4000);
        let m = manifest(&s);
        let good = chunks_of(&s, &m.chunks, 50);
        let refused = |c: &SnapshotChunk| m.check_chunk(c).unwrap_err().to_string();

        let mut c = good[1].clone();
        c.pairs[7].1[0] ^= 1;
        assert!(refused(&c).contains("do not hash"), "{}", refused(&c));

        let mut c = good[1].clone();
        c.pairs.swap(3, 4);
        assert!(refused(&c).contains("strictly increasing"));

        let mut c = good[1].clone();
        let dup = c.pairs[3].clone();
        c.pairs[4] = dup;
        assert!(refused(&c).contains("strictly increasing"));

        let mut c = good[1].clone();
        c.pairs.pop();
        assert!(refused(&c).contains("pairs"));

        // A pair moved in from the next chunk, one moved out: same count,
        // outside the range.
        let mut c = good[1].clone();
        c.pairs.remove(0);
        c.pairs.push(good[2].pairs[0].clone());
        assert!(refused(&c).contains("outside the range"));

        let mut c = good[1].clone();
        c.height = 49;
        assert!(matches!(
            m.check_chunk(&c),
            Err(SnapshotError::WrongChunk { .. })
        ));
        let mut c = good[1].clone();
        c.index = m.chunks.len() as u32;
        assert!(matches!(
            m.check_chunk(&c),
            Err(SnapshotError::NoSuchChunk { .. })
        ));
        // The right pairs under another chunk's index.
        let mut c = good[1].clone();
        c.index = 0;
        assert!(m.check_chunk(&c).is_err());
    }

    #[test]
    fn a_tampered_manifest_is_refused() {
        let s = state(3000, 4000);
        let m = manifest(&s);
        let refused = |m: &SnapshotManifest| m.check().unwrap_err();

        let mut t = m.clone();
        t.chunks[0].partial[5] ^= 1;
        assert!(matches!(refused(&t), SnapshotError::RootMismatch { .. }));

        // Two chunks' partials traded: still the right sum, but each
        // chunk then fails its own check.
        let mut t = m.clone();
        let p0 = t.chunks[0].partial.clone();
        t.chunks[0].partial = t.chunks[1].partial.clone();
        t.chunks[1].partial = p0;
        t.check().unwrap();
        let good = chunks_of(&s, &m.chunks, 50);
        assert!(t.check_chunk(&good[0]).is_err());
        assert!(t.check_chunk(&good[1]).is_err());

        let mut t = m.clone();
        t.chunks.swap(0, 1);
        assert!(matches!(refused(&t), SnapshotError::BadChunkInfo { .. }));

        let mut t = m.clone();
        t.chunks.pop();
        assert!(matches!(refused(&t), SnapshotError::RootMismatch { .. }));

        let mut t = m.clone();
        t.chunks[1].first_key = t.chunks[0].last_key.clone();
        assert!(matches!(refused(&t), SnapshotError::BadChunkInfo { .. }));

        let mut t = m.clone();
        t.certificate.block_hash = Hash([9; 32]);
        assert!(matches!(
            refused(&t),
            SnapshotError::CertificateMismatch { .. }
        ));

        let mut t = m.clone();
        t.block.header.tx_count = 1;
        t.certificate.block_hash = t.block.hash();
        assert!(matches!(refused(&t), SnapshotError::BodyMismatch { .. }));

        let mut t = m.clone();
        t.format = 2;
        assert!(matches!(refused(&t), SnapshotError::Format { got: 2 }));

        let mut t = m.clone();
        t.chunks[0].pairs = u32::MAX;
        assert!(matches!(refused(&t), SnapshotError::BadChunkInfo { .. }));

        let mut t = m.clone();
        t.chunks[0].partial.pop();
        assert!(matches!(refused(&t), SnapshotError::BadChunkInfo { .. }));
    }

    #[test]
    fn a_state_read_out_of_order_is_refused_by_the_cutter() {
        let mut c = ChunkCutter::new();
        c.push(b"b", b"1").unwrap();
        assert!(c.push(b"a", b"1").is_err());
        assert!(c.push(b"b", b"2").is_err());
        assert!(c.push(&[0u8; STATE_KEY_MAX_BYTES + 1], b"1").is_err());
    }

    #[test]
    fn the_codec_round_trips_within_its_limits() {
        let s = state(3000, 4000);
        let m = manifest(&s);
        let bytes = crate::codec::encode(&m);
        let back: SnapshotManifest =
            crate::codec::decode_with_limit(&bytes, MANIFEST_MAX_BYTES).unwrap();
        assert_eq!(back, m);
        for chunk in chunks_of(&s, &m.chunks, 50) {
            let bytes = crate::codec::encode(&chunk);
            assert!(bytes.len() <= CHUNK_MAX_ENCODED_BYTES);
            let back: SnapshotChunk =
                crate::codec::decode_with_limit(&bytes, CHUNK_MAX_ENCODED_BYTES).unwrap();
            assert_eq!(back, chunk);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any state, cut: the chunks cover it exactly, in order, within
        /// the size limit, and check against its root.
        #[test]
        fn every_state_cuts_into_chunks_that_check(
            s in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::collection::vec(any::<u8>(), 0..300_000),
                0..40,
            )
        ) {
            let m = manifest(&s);
            prop_assert_eq!(m.check().unwrap().root(), m.state_root());
            let chunks = chunks_of(&s, &m.chunks, 50);
            let mut all = Vec::new();
            for c in &chunks {
                m.check_chunk(c).unwrap();
                all.extend(c.pairs.iter().cloned());
            }
            let flat: Vec<_> = s.into_iter().collect();
            prop_assert_eq!(all, flat);
        }
    }
}
