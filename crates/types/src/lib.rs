//! Core types of aidledger: domain values, transactions, blocks,
//! certificates, the canonical encoding, hashing and Merkle commitments.
//!
//! Architecture Invariant: this crate does no IO, reads no clock and draws no
//! randomness. Everything here is a pure function of its inputs.

pub mod authz;
pub mod block;
pub mod codec;
pub mod hash;
pub mod merkle;
pub mod snapshot;
pub mod state_root;
pub mod time;
pub mod tx;
pub mod values;
pub mod wire;

pub use block::{
    Block, BlockHeader, CommitCertificate, CommitSignature, CommitVote, IdentifiedBlock, Validator,
    ValidatorSet, ValidatorSignature, HEADER_VERSION, HEADER_VERSION_PIPELINED,
};
pub use codec::CodecError;
pub use hash::Hash;
pub use state_root::StateAccumulator;
pub use time::Timestamp;
pub use tx::{Role, SignedTx, TxBody, TxKind};
pub use values::{Amount, ChainId, Currency, OrgId, PublicKey, RegionCode, Signature, Slug, Text};

/// Errors from building or decoding core values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TypeError {
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

#[cfg(feature = "openapi")]
mod schemas;
