//! Why the core refused an input. Byzantine input is an `Err`, never a panic.

use aidledger_types::{CodecError, Hash, PublicKey};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    #[error("key {key:?} is not in the validator set")]
    NotAValidator { key: PublicKey },
    #[error("malformed message: {0}")]
    Malformed(#[from] CodecError),
    #[error("malformed message: {reason}")]
    Invalid { reason: String },
    #[error("sender index {from} is not a validator (set of {n})")]
    UnknownSender { from: u16, n: usize },
    #[error("message claims to be from this replica ({from})")]
    FromSelf { from: u16 },
    #[error("bad signature from validator {from}")]
    BadSignature { from: u16 },
    #[error("view {view}: expected leader {expected}, got {got}")]
    WrongLeader { view: u64, expected: u16, got: u16 },
    #[error("message for height {got} is stale (in flight: {current})")]
    StaleHeight { got: u64, current: u64 },
    #[error("message for height {got} is too far ahead (in flight: {current})")]
    FutureHeight { got: u64, current: u64 },
    #[error("message for view {got} is outside the window around view {current}")]
    ViewOutOfWindow { got: u64, current: u64 },
    #[error("conflicting pre-prepare at view {view}, height {height}: have {have:?}, got {got:?}")]
    ConflictingPrePrepare {
        view: u64,
        height: u64,
        have: Hash,
        got: Hash,
    },
    #[error("block does not fit its pre-prepare: {reason}")]
    BadBlock { reason: String },
    #[error("invalid prepared certificate: {reason}")]
    BadPreparedCert { reason: String },
    #[error("invalid new-view for view {view}: {reason}")]
    BadNewView { view: u64, reason: String },
    #[error("invalid commit certificate: {0}")]
    BadCertificate(#[from] aidledger_crypto::CryptoError),
    #[error("buffer {what} is full ({limit})")]
    BufferFull { what: &'static str, limit: usize },
    #[error("input ignored: {reason}")]
    Ignored { reason: &'static str },
    #[error("restore: {reason}")]
    Restore { reason: String },
}

impl ConsensusError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        ConsensusError::Invalid {
            reason: reason.into(),
        }
    }
    pub(crate) fn bad_block(reason: impl Into<String>) -> Self {
        ConsensusError::BadBlock {
            reason: reason.into(),
        }
    }
}
