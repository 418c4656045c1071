//! What arrives from outside as bytes, beside transactions, blocks and
//! certificates: the messages nodes exchange for transaction gossip and
//! block sync, and the API's write-request bodies. They live here, in the
//! crate with no IO, so the fuzz targets (`crates/fuzz-targets`) build
//! without the node's storage and network stacks.

use serde::{Deserialize, Serialize};

use crate::{Block, CommitCertificate, Hash, SignedTx};

/// The wire protocol this build speaks best: the version in its gossip
/// topic names (`/aidledger/{chain}/txs/{v}`, `.../consensus/{v}`) and
/// block-sync protocol ids (`.../sync/{v}`). ADR 017, part 3.
pub const WIRE_VERSION: u32 = 2;
/// The oldest wire version this build still speaks. A node subscribes to
/// the topics of every version from here to [`WIRE_VERSION`], answers
/// sync in each, and publishes so that every member gets each message in
/// a version it speaks: nodes upgrade one at a time, with no maintenance
/// window, across one wire change.
pub const WIRE_MIN: u32 = 1;

/// Largest gossip message a node takes: a consensus message may carry a
/// full block; a transaction gossip batch is decoded within it too.
pub const GOSSIP_MAX_BYTES: usize = 17 * 1024 * 1024;
/// Largest sync request: a request names a height range or a block hash,
/// so it is tiny.
pub const SYNC_REQUEST_MAX_BYTES: usize = 4 * 1024;
/// Largest sync response: a bounded batch of blocks with certificates.
pub const SYNC_RESPONSE_MAX_BYTES: usize = 48 * 1024 * 1024;

/// A transaction gossip message: a batch of signed transactions. `round`
/// makes every message unique, so a re-gossiped transaction is not dropped
/// by gossip's duplicate filter (message ids are content hashes).
#[derive(Serialize, Deserialize, Debug)]
pub struct TxGossip {
    pub round: u64,
    pub txs: Vec<SignedTx>,
}

/// Block sync over request-response.
#[derive(Serialize, Deserialize, Debug)]
pub enum SyncRequest {
    Blocks {
        from: u64,
        max: u32,
    },
    /// A candidate block (not committed yet) by hash: a new primary that
    /// holds a prepared certificate without its block.
    Candidate {
        hash: Hash,
    },
    /// Validator-set changes above a height ([`SetChangesResponse`]), for a
    /// joiner following the set from genesis (ADR 017 part 4).
    SetChanges {
        after: u64,
    },
    /// Which snapshots the peer serves ([`SnapshotOffersResponse`]).
    SnapshotOffers,
    /// A snapshot's manifest ([`SnapshotManifestResponse`]).
    SnapshotManifest {
        height: u64,
    },
    /// One chunk of a snapshot ([`SnapshotChunkResponse`]).
    SnapshotChunk {
        height: u64,
        index: u32,
    },
}

/// The answer to [`SyncRequest::SetChanges`]: at most
/// [`crate::snapshot::SET_CHANGES_MAX`] changes in height order; fewer
/// means there are no more.
#[derive(Serialize, Deserialize, Debug)]
pub struct SetChangesResponse {
    pub changes: Vec<crate::snapshot::SetChange>,
}

/// The answer to [`SyncRequest::SnapshotOffers`].
#[derive(Serialize, Deserialize, Debug)]
pub struct SnapshotOffersResponse {
    /// The responder's committed height and base.
    pub head: u64,
    pub base: u64,
    /// The heights of the snapshots it serves, lowest first.
    pub heights: Vec<u64>,
}

/// Most snapshot heights one offer lists.
pub const SNAPSHOT_OFFERS_MAX: usize = 16;

/// The answer to [`SyncRequest::SnapshotManifest`]: `None` when the peer
/// does not serve that height (any more).
#[derive(Serialize, Deserialize, Debug)]
pub struct SnapshotManifestResponse {
    pub manifest: Option<crate::snapshot::SnapshotManifest>,
}

/// The answer to [`SyncRequest::SnapshotChunk`].
#[derive(Serialize, Deserialize, Debug)]
pub struct SnapshotChunkResponse {
    pub chunk: Option<crate::snapshot::SnapshotChunk>,
}

/// The answer to [`SyncRequest::Candidate`].
#[derive(Serialize, Deserialize, Debug)]
pub struct CandidateResponse {
    pub block: Option<Block>,
}

/// The answer to [`SyncRequest::Blocks`] (wire version 2, `sync/2`).
#[derive(Serialize, Deserialize, Debug)]
pub struct SyncResponse {
    /// The responder's committed height.
    pub head: u64,
    /// The lowest height the responder can serve blocks from: 1 on a node
    /// that keeps all history. A requester asking below it gets no blocks
    /// and asks another peer (a pruned node, ADR 017 part 4).
    pub base: u64,
    pub blocks: Vec<(Block, CommitCertificate)>,
}

/// The answer to [`SyncRequest::Blocks`] in wire version 1 (`sync/1`),
/// the previous release's: no `base`, every node kept all history. Kept
/// to talk to nodes still on that release.
#[derive(Serialize, Deserialize, Debug)]
pub struct SyncResponseV1 {
    pub head: u64,
    pub blocks: Vec<(Block, CommitCertificate)>,
}

/// Re-encodes a `sync/2` blocks response for a `sync/1` peer. Blocks below
/// a `base` above 1 cannot be served in version 1, which has no way to say
/// so; such a response goes out with no blocks.
pub fn sync_response_to_v1(bytes: &[u8]) -> Result<Vec<u8>, crate::codec::CodecError> {
    let r: SyncResponse = crate::codec::decode_with_limit(bytes, SYNC_RESPONSE_MAX_BYTES)?;
    Ok(crate::codec::encode(&SyncResponseV1 {
        head: r.head,
        blocks: r.blocks,
    }))
}

/// Re-encodes a `sync/1` peer's blocks response as `sync/2`: such a peer
/// keeps all history, so its base is 1.
pub fn sync_response_from_v1(bytes: &[u8]) -> Result<Vec<u8>, crate::codec::CodecError> {
    let r: SyncResponseV1 = crate::codec::decode_with_limit(bytes, SYNC_RESPONSE_MAX_BYTES)?;
    Ok(crate::codec::encode(&SyncResponse {
        head: r.head,
        base: 1,
        blocks: r.blocks,
    }))
}

/// Whether a sync request asks for blocks (the one request whose answer
/// differs between wire versions 1 and 2). Requests are the same in both.
pub fn is_blocks_request(bytes: &[u8]) -> bool {
    matches!(
        crate::codec::decode_with_limit(bytes, SYNC_REQUEST_MAX_BYTES),
        Ok(SyncRequest::Blocks { .. })
    )
}

/// `aidledger/<release> wire=<min>-<max>`: the identify agent string a
/// node announces, so peers learn which wire versions it speaks.
pub fn agent_string(release: &str, min: u32, max: u32) -> String {
    format!("aidledger/{release} wire={min}-{max}")
}

/// The wire range in a peer's agent string, if it announces one.
pub fn parse_agent_wire(agent: &str) -> Option<(u32, u32)> {
    let range = agent
        .split_whitespace()
        .find_map(|w| w.strip_prefix("wire="))?;
    let (min, max) = range.split_once('-')?;
    let (min, max) = (min.parse().ok()?, max.parse().ok()?);
    (min <= max).then_some((min, max))
}

/// Whether two wire ranges share a version.
pub fn ranges_overlap(a: (u32, u32), b: (u32, u32)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// Most transactions in one batch submission.
pub const BATCH_SUBMIT_MAX: usize = 2000;

/// `POST /v1/txs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The canonical encoding of a `SignedTx`, in hex.
    pub tx: String,
    /// If non-zero, wait up to this long for the transaction to commit.
    #[serde(default)]
    pub wait_ms: u64,
}

/// `POST /v1/txs/batch`: many transactions in one request, admitted
/// together (their signatures are batch-verified, with the same verdicts
/// as one by one). Nothing waits for commits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchSubmitRequest {
    /// Canonical encodings of `SignedTx`, in hex; at most
    /// `BATCH_SUBMIT_MAX` of them. The limit is checked while the body is
    /// parsed: the parse stops at the first element over it, before any
    /// decoding or signature work, and holds no more than the limit.
    #[serde(deserialize_with = "at_most_batch_max")]
    pub txs: Vec<String>,
}

fn at_most_batch_max<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "a list of at most {BATCH_SUBMIT_MAX} hex-encoded transactions"
            )
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0).min(BATCH_SUBMIT_MAX);
            let mut out = Vec::with_capacity(hint);
            while let Some(tx) = seq.next_element::<String>()? {
                if out.len() == BATCH_SUBMIT_MAX {
                    return Err(serde::de::Error::custom(format!(
                        "more than {BATCH_SUBMIT_MAX} transactions in one batch, over the limit"
                    )));
                }
                out.push(tx);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec;

    #[test]
    fn agent_strings_carry_the_wire_range() {
        let a = agent_string("0.1.0", WIRE_MIN, WIRE_VERSION);
        assert_eq!(parse_agent_wire(&a), Some((WIRE_MIN, WIRE_VERSION)));
        for none in ["rust-libp2p/0.46", "aidledger/0.1 wire=2-1", "wire=x-2", ""] {
            assert_eq!(parse_agent_wire(none), None, "{none}");
        }
        assert!(ranges_overlap((1, 2), (2, 3)));
        assert!(ranges_overlap((1, 1), (1, 2)));
        assert!(!ranges_overlap((1, 1), (2, 2)));
    }

    #[test]
    fn a_blocks_response_survives_the_trip_through_version_1() {
        let v2 = codec::encode(&SyncResponse {
            head: 9,
            base: 1,
            blocks: Vec::new(),
        });
        let v1 = sync_response_to_v1(&v2).unwrap();
        assert_ne!(v1, v2);
        assert_eq!(sync_response_from_v1(&v1).unwrap(), v2);
        // Each refuses the other's bytes rather than misreading them.
        assert!(sync_response_from_v1(&v2).is_err());
        assert!(sync_response_to_v1(&v1).is_err());
        assert!(is_blocks_request(&codec::encode(&SyncRequest::Blocks {
            from: 1,
            max: 2
        })));
        assert!(!is_blocks_request(&codec::encode(
            &SyncRequest::Candidate {
                hash: Hash([0; 32])
            }
        )));
        assert!(!is_blocks_request(b"garbage"));
    }
}
