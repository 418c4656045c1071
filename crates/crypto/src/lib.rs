//! Keys, domain-separated signing, and signature verification whose verdict
//! is the same whether a signature is checked alone or in a batch.
//!
//! # One verification equation
//!
//! ed25519-dalek's `verify_strict` uses the cofactorless equation
//! `[s]B = R + [k]A`, while its batch verifier uses a random linear
//! combination of the same equation. For points with a small-order
//! component the two can disagree: a batch may accept, with probability
//! about 1/8, a signature that the single check rejects. On a ledger that
//! splits the network. This crate therefore implements one rule set (see
//! [`verify`]) and uses it on both paths:
//!
//! * `s` must be canonical (`s < l`);
//! * the encodings of `A` and `R` must be canonical (re-compress to the
//!   same bytes) and must not be small-order points;
//! * the check is the cofactored equation `[8][s]B = [8]R + [8][k]A`.
//!
//! The batch path checks `[8](Σ z_i s_i B - Σ z_i R_i - Σ z_i k_i A_i) = 0`
//! with coefficients derived by hashing the whole batch, so it accepts
//! exactly the batches in which every signature passes the single check,
//! except with probability about 2^-128 per forged batch. On a failed batch
//! every item is re-checked singly, so the per-item verdicts callers see
//! always come from the single rule.

mod keys;
mod sets;
mod verify;

pub use keys::{read_key_file, write_key_file, KeyFile, Keypair, KEY_TYPE_ED25519};
pub use sets::SetHistory;
pub use verify::{
    is_usable_public_key, verify, verify_batch, verify_certificate, verify_tx, verify_txs,
    HashedTx, SigItem, TxVerdictCache, VerifiedTx,
};

use aidledger_types::{ChainId, Hash};

/// What a signature is for. It is part of the signed bytes, so a signature
/// made for one purpose is never valid for another.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Purpose {
    /// A transaction id.
    Tx,
    /// A commit vote, as collected in commit certificates.
    Commit,
    /// Any other consensus message (pre-prepare, prepare, view change, ...).
    Consensus,
    /// A node proving control of its consensus key to a peer.
    NodeIdentity,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Tx => b"tx",
            Purpose::Commit => b"commit",
            Purpose::Consensus => b"consensus",
            Purpose::NodeIdentity => b"node-identity",
        }
    }
}

const SIG_DOMAIN: &[u8] = b"aidledger/v1/signature";

/// The exact bytes an ed25519 signature covers: a fixed domain tag, the
/// chain id, the purpose, and the message, each length-prefixed.
pub fn signing_bytes(chain_id: &ChainId, purpose: Purpose, message: &[u8]) -> Vec<u8> {
    let parts: [&[u8]; 4] = [
        SIG_DOMAIN,
        chain_id.as_str().as_bytes(),
        purpose.tag(),
        message,
    ];
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Why a signature, key file or certificate was refused.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("signature is invalid")]
    BadSignature,
    #[error("public key is not a valid ed25519 point")]
    BadPublicKey,
    #[error("transaction {id} is for chain {got:?}, expected {expected:?}")]
    WrongChain {
        id: Hash,
        expected: String,
        got: String,
    },
    #[error("certificate is for height {got}, expected {expected}")]
    CertHeight { expected: u64, got: u64 },
    #[error("certificate is for block {got}, expected {expected}")]
    CertBlock { expected: Hash, got: Hash },
    #[error("certificate has {got} of {required} required signatures")]
    CertTooFewSignatures { got: usize, required: usize },
    #[error("certificate signer index {index} is not in the validator set of {len}")]
    CertUnknownSigner { index: u16, len: usize },
    #[error("certificate signers are not strictly ascending (index {index})")]
    CertUnsorted { index: u16 },
    #[error("certificate signature of validator {index} ({org}) is invalid")]
    CertBadSignature { index: u16, org: String },
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("the validator-set change at height {height} is refused: {reason}")]
    SetChange { height: u64, reason: String },
    #[error("the snapshot at height {height} is refused: {reason}")]
    Snapshot { height: u64, reason: String },
}
