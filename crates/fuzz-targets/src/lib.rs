//! The bodies of aidledger's fuzz targets (issue 15).
//!
//! Each function takes arbitrary bytes the way a node, the API or the
//! auditor takes them from outside, runs the production decoder with the
//! production limit, and checks the property the decoder promises. A panic
//! is a finding. The `fuzz/` directory (cargo-fuzz, nightly, outside the
//! workspace) wraps each function in a libFuzzer target. The test suite
//! replays the committed corpus through the same functions on stable
//! (`tests/corpus.rs`), so a finding, once minimised into the corpus,
//! stays fixed.
//!
//! The canonical codec refuses any encoding that does not re-encode to the
//! same bytes, so every binary target checks the round trip: what decodes
//! re-encodes to the input, byte for byte.

use aidledger_consensus::{Envelope, MESSAGE_MAX_BYTES};
// The limits are the node's own: the network frames and the core decodes
// peer messages with these.
use aidledger_types::wire::{
    BatchSubmitRequest, CandidateResponse, SubmitRequest, SyncRequest, SyncResponse, TxGossip,
    BATCH_SUBMIT_MAX, GOSSIP_MAX_BYTES, SYNC_REQUEST_MAX_BYTES, SYNC_RESPONSE_MAX_BYTES,
};
use aidledger_types::{codec, Block, CommitCertificate, SignedTx};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// One target: arbitrary bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// The targets by name, for the corpus replay and the cargo-fuzz wrappers.
pub const TARGETS: &[(&str, Target)] = &[
    ("signed_tx", signed_tx),
    ("block", block),
    ("certificate", certificate),
    ("consensus_message", consensus_message),
    ("tx_gossip", tx_gossip),
    ("sync_request", sync_request),
    ("sync_response", sync_response),
    #[cfg(feature = "full")]
    ("chain_file", chain_file),
    ("condition_text", condition_text),
    ("http_bodies", http_bodies),
];

/// Decodes `data` as `T` within `limit`; on success, the re-encoding must
/// be the input.
fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8], limit: usize) -> Option<T> {
    let v: T = codec::decode_with_limit(data, limit).ok()?;
    assert_eq!(
        codec::encode(&v),
        data,
        "a decoded value re-encodes to other bytes"
    );
    Some(v)
}

/// A transaction as the API and gossip take it: size, payload bound and the
/// canonical encoding; its id and witness hash are computable.
pub fn signed_tx(data: &[u8]) {
    if let Ok(tx) = SignedTx::decode(data) {
        assert_eq!(tx.encode(), data);
        let _ = (tx.id(), tx.witness_hash());
        // What decodes passes the limits the decoder claims to check.
        assert!(tx.check_limits().is_ok());
    }
}

/// A block as sync and the chain file carry it.
pub fn block(data: &[u8]) {
    if let Ok(b) = Block::decode(data) {
        assert_eq!(codec::encode(&b), data);
        let _ = b.hash();
    }
}

/// A commit certificate; its median time never panics.
pub fn certificate(data: &[u8]) {
    if let Some(c) = round_trip::<CommitCertificate>(data, 64 * 1024) {
        let _ = c.median_time();
    }
}

/// A consensus message as the replica decodes it.
pub fn consensus_message(data: &[u8]) {
    if let Ok(env) = Envelope::decode(data, MESSAGE_MAX_BYTES) {
        assert_eq!(codec::encode(&env), data);
    }
}

/// A transaction gossip batch, and each transaction's limits after it.
pub fn tx_gossip(data: &[u8]) {
    if let Some(g) = round_trip::<TxGossip>(data, GOSSIP_MAX_BYTES) {
        for tx in &g.txs {
            let _ = tx.check_limits();
        }
    }
}

/// A sync request, as a node serving sync decodes it.
pub fn sync_request(data: &[u8]) {
    let _ = round_trip::<SyncRequest>(data, SYNC_REQUEST_MAX_BYTES);
}

/// A sync answer: blocks with certificates, or a candidate block; and the
/// re-encodings between wire versions 1 and 2 the network's codec makes
/// on `sync/1` streams (ADR 017, part 3), which must refuse, never panic,
/// and agree with each other when both succeed.
pub fn sync_response(data: &[u8]) {
    let _ = round_trip::<SyncResponse>(data, SYNC_RESPONSE_MAX_BYTES);
    let _ = round_trip::<CandidateResponse>(data, SYNC_RESPONSE_MAX_BYTES);
    if let Ok(v1) = aidledger_types::wire::sync_response_to_v1(data) {
        let back = aidledger_types::wire::sync_response_from_v1(&v1);
        assert!(
            back.is_ok(),
            "a response re-encoded as version 1 does not read back"
        );
    }
    let _ = aidledger_types::wire::sync_response_from_v1(data);
    // Snapshot join (ADR 017 part 4): what a joiner decodes from peers.
    let _ = round_trip::<aidledger_types::wire::SetChangesResponse>(data, SYNC_RESPONSE_MAX_BYTES);
    let _ =
        round_trip::<aidledger_types::wire::SnapshotOffersResponse>(data, SYNC_RESPONSE_MAX_BYTES);
    if let Some(r) =
        round_trip::<aidledger_types::wire::SnapshotManifestResponse>(data, SYNC_RESPONSE_MAX_BYTES)
    {
        if let Some(m) = r.manifest {
            let _ = m.check();
        }
    }
    if let Some(r) =
        round_trip::<aidledger_types::wire::SnapshotChunkResponse>(data, SYNC_RESPONSE_MAX_BYTES)
    {
        let _ = r.chunk.map(|c| c.pairs.len());
    }
}

/// A chain file, read the way `audit replay --file` reads one.
#[cfg(feature = "full")]
pub fn chain_file(data: &[u8]) {
    let _ = aidledger_audit::chainfile::decode_chain_file(data);
}

/// The condition language: what parses prints to text that parses to the
/// same condition.
pub fn condition_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = aidledger_contracts::condition_text::parse(text) {
        let printed = aidledger_contracts::condition_text::print(&c);
        let again = aidledger_contracts::condition_text::parse(&printed)
            .unwrap_or_else(|e| panic!("printed condition {printed:?} does not parse: {e}"));
        assert_eq!(again, c, "printing and parsing changed the condition");
    }
}

/// The API's JSON request bodies: a submission and a batch, whose parse
/// must never hold more than the batch limit.
pub fn http_bodies(data: &[u8]) {
    let _ = serde_json::from_slice::<SubmitRequest>(data);
    if let Ok(b) = serde_json::from_slice::<BatchSubmitRequest>(data) {
        assert!(b.txs.len() <= BATCH_SUBMIT_MAX);
    }
}
