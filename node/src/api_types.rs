//! The JSON shapes of the HTTP API (`/v1/...`), shared by the server and
//! the CLI's client. Hashes and keys are lowercase hex; amounts are integer
//! minor units; times are milliseconds since the epoch.
//!
//! Entity queries return the contract records themselves
//! (`aidledger_contracts::{Program, Application, Plan, Household, ...}`).

use aidledger_contracts::{Anomaly, MoneyEvent, Program, Receipt, Release};
use aidledger_types::{BlockHeader, CommitCertificate, Hash, OrgId, PublicKey, TxKind};
use serde::{Deserialize, Serialize};

pub use aidledger_types::wire::{BatchSubmitRequest, SubmitRequest, BATCH_SUBMIT_MAX};

/// One entry per submitted transaction, in order: its id when it could be
/// decoded, and the admission error if it was refused. A transaction that
/// is already on the chain is refused (a signed transaction is included at
/// most once, ADR 010) with `included_at`, the height it is at; its
/// receipt is at `GET /v1/txs/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchItem {
    pub id: Option<Hash>,
    pub error: Option<String>,
    /// The refusal's code when refused: one of `GET /v1/problems` (ADR
    /// 019), `already-included` for a transaction on the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_at: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchSubmitResponse {
    pub admitted: usize,
    pub results: Vec<BatchItem>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TxState {
    /// Admitted to this node's mempool, not yet in a block.
    Pending,
    /// In a committed block; see the receipt for applied or rejected.
    Committed,
    /// This node has not seen it (or has evicted it).
    Unknown,
}

/// Answer to `POST /v1/txs` and `GET /v1/txs/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TxStatus {
    pub id: Hash,
    pub status: TxState,
    pub height: Option<u64>,
    pub index: Option<u32>,
    pub receipt: Option<Receipt>,
    /// For a rejected transaction: what to do next. Its nonce is used, so
    /// the same bytes can never apply; the fix is a new transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
}

/// What a user should do about a rejected transaction.
pub const REJECTED_NEXT_STEP: &str = "the transaction was included and rejected, and its nonce is \
     used: the same signed bytes can never apply. Fix the cause named in the receipt, then sign \
     and submit a new transaction (the CLI picks the next nonce)";

fn one() -> u64 {
    1
}

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    pub chain_id: String,
    pub org: OrgId,
    /// The key this node signs with (a node-key replacement moves it).
    pub node_key: PublicKey,
    /// The node's libp2p peer id now: it derives from the staged key once
    /// governance registers that key as this node's replacement.
    #[serde(default)]
    pub peer_id: String,
    /// This node's key is in the validator set that signs the next height.
    pub validator: bool,
    pub genesis_hash: Hash,
    /// The lowest height whose block this node holds: 1 when it keeps all
    /// history, the snapshot's height when it joined from one (ADR 017).
    #[serde(default = "one")]
    pub base: u64,
    /// Last committed height (0 before the first block).
    pub height: u64,
    pub block_hash: Hash,
    pub state_root: Hash,
    /// The consensus view in progress (0 on observers).
    pub view: u64,
    /// The organisation leading `view`.
    pub leader: Option<OrgId>,
    /// Connected peers.
    pub peers: usize,
    pub mempool_txs: usize,
    /// Timestamp of the last committed block.
    pub last_block_time_ms: u64,
    /// True while this validator votes. False on observers, and on a
    /// validator that abstains after losing its safety state or its store
    /// until the consortium has moved past the heights it may have voted
    /// at (operator guide, "Restore").
    #[serde(default)]
    pub voting: bool,
    /// When the next block is due with no transaction (ms since the
    /// epoch), and why: `now`, `tranche`, `entitlement-period`,
    /// `settlement-deadline` or `heartbeat` (a quiet chain, ADR 017).
    #[serde(default)]
    pub next_due_ms: Option<u64>,
    #[serde(default)]
    pub next_due_reason: Option<String>,
    /// The contract module versions in force, as `name@version`.
    #[serde(default)]
    pub modules: Vec<String>,
    /// The contract upgrade governance scheduled, if any.
    #[serde(default)]
    pub upgrade: Option<UpgradeInfo>,
}

/// A scheduled contract upgrade in `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpgradeInfo {
    /// The versions it switches to, as `name@version`.
    pub modules: Vec<String>,
    /// The first block executed with them.
    pub at_height: u64,
    /// The versions this node's build does not carry: non-empty means the
    /// node stops before `at_height` unless its binary is upgraded.
    pub missing: Vec<String>,
}

/// One transaction in `GET /v1/blocks/{height}`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockTx {
    pub id: Hash,
    pub kind: TxKind,
    pub signer: PublicKey,
    pub nonce: u64,
    pub applied: bool,
}

/// `GET /v1/blocks/{height}` and `GET /v1/blocks/latest`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlockView {
    pub hash: Hash,
    pub header: BlockHeader,
    pub txs: Vec<BlockTx>,
    pub certificate: Option<CommitCertificate>,
}

/// `GET /v1/programs/{id}/trace`: the program and a page of each of its
/// lists: money movements, releases, and anomalies about its releases and
/// applications. Follow `next` (as `?after=`) until it is null, joining
/// the lists, for the whole trace (ADR 019).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgramTrace {
    pub program: Program,
    pub ledger: Vec<MoneyEvent>,
    pub releases: Vec<Release>,
    pub anomalies: Vec<Anomaly>,
    #[serde(default)]
    pub next: Option<String>,
}

/// Every error body: RFC 9457 problem details (ADR 019).
pub use crate::problem::ProblemBody;

#[cfg(test)]
mod batch_limit {
    #![allow(clippy::unwrap_used)]
    use super::{BatchSubmitRequest, BATCH_SUBMIT_MAX};

    fn body(n: usize) -> String {
        let items = vec!["\"\""; n].join(",");
        format!("{{\"txs\":[{items}]}}")
    }

    /// A batch over the limit is refused while it is parsed, with the
    /// limit in the message; at the limit it parses.
    #[test]
    fn the_batch_limit_is_checked_during_the_parse() {
        let ok: BatchSubmitRequest = serde_json::from_str(&body(BATCH_SUBMIT_MAX)).unwrap();
        assert_eq!(ok.txs.len(), BATCH_SUBMIT_MAX);
        for n in [BATCH_SUBMIT_MAX + 1, 1_000_000] {
            let e = serde_json::from_str::<BatchSubmitRequest>(&body(n))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&BATCH_SUBMIT_MAX.to_string()), "{e}");
        }
        // Not a list, or a list of something else: a clear error.
        for bad in [r#"{"txs":"ab"}"#, r#"{"txs":[1]}"#, r#"{"txs":[[]]}"#] {
            assert!(
                serde_json::from_str::<BatchSubmitRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
