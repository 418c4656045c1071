//! What arrives from outside as bytes, beside transactions, blocks and
//! certificates: the messages nodes exchange for transaction gossip and
//! block sync, and the API's write-request bodies. They live here, in the
//! crate with no IO, so the fuzz targets (`crates/fuzz-targets`) build
//! without the node's storage and network stacks.

use serde::{Deserialize, Serialize};

use crate::{Block, CommitCertificate, Hash, SignedTx};

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
}

/// The answer to [`SyncRequest::Candidate`].
#[derive(Serialize, Deserialize, Debug)]
pub struct CandidateResponse {
    pub block: Option<Block>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct SyncResponse {
    pub head: u64,
    pub blocks: Vec<(Block, CommitCertificate)>,
}

/// Most transactions in one batch submission.
pub const BATCH_SUBMIT_MAX: usize = 2000;

/// `POST /v1/txs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
