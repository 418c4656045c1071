//! The one error type of the storage crate.

use aidledger_types::Hash;

/// Everything that can go wrong reading or writing a store.
///
/// Validation failures (`HeightMismatch`, `ParentMismatch`, ...) are returned
/// before anything is written, so a refused call leaves the store unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(String),
    #[error("the store is open read-only")]
    ReadOnly,
    /// Another process (or another handle in this one) holds the store's
    /// lock: a node already running on the same data directory, or a
    /// previous instance that has not finished exiting.
    #[error(
        "the store at {path} is in use by another process (is a node already running on this \
         home?): {detail}"
    )]
    Locked { path: String, detail: String },
    #[error("corrupt value in column family {cf} at key {key}: {reason}")]
    Corrupt {
        cf: &'static str,
        /// The key, hex-encoded.
        key: String,
        reason: String,
    },
    #[error("no genesis stored: call put_genesis before committing blocks")]
    NoGenesis,
    #[error("genesis mismatch: the store holds {stored}, the caller gave {given}")]
    GenesisMismatch { stored: Hash, given: Hash },
    #[error("genesis accumulator has root {given} but the initial state gives {computed}")]
    GenesisAccumulatorMismatch { given: Hash, computed: Hash },
    #[error("genesis cannot be stored: the store already holds state or blocks")]
    NotEmpty,
    #[error("expected a block at height {expected}, got height {got}")]
    HeightMismatch { expected: u64, got: u64 },
    #[error("block at height {height} has parent {got}, expected {expected}")]
    ParentMismatch {
        height: u64,
        expected: Hash,
        got: Hash,
    },
    #[error(
        "certificate (height {cert_height}, block {cert_block}) does not match block at height {height} with hash {block_hash}"
    )]
    CertificateMismatch {
        height: u64,
        block_hash: Hash,
        cert_height: u64,
        cert_block: Hash,
    },
    #[error("block at height {height}: {receipts} receipts for {txs} transactions")]
    ReceiptCountMismatch {
        height: u64,
        txs: usize,
        receipts: usize,
    },
    #[error(
        "block at height {height}: header state root {header} but accumulator root {accumulator}"
    )]
    StateRootMismatch {
        height: u64,
        header: Hash,
        accumulator: Hash,
    },
    #[error("transaction {id} in block {height} is already indexed at height {existing_height}")]
    DuplicateTx {
        id: Hash,
        height: u64,
        existing_height: u64,
    },
    #[error("{what} is {len}, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("block at height {height}: {reason}")]
    NextValidatorSet { height: u64, reason: String },
    #[error("snapshot install: {0}")]
    Snapshot(String),
    #[error(transparent)]
    SnapshotInvalid(#[from] aidledger_types::snapshot::SnapshotError),
}

impl From<rocksdb::Error> for StorageError {
    fn from(e: rocksdb::Error) -> Self {
        StorageError::Rocks(e.into_string())
    }
}

/// Builds a `Corrupt` error with a hex key, truncated so a huge key cannot
/// flood a log line.
pub(crate) fn corrupt(cf: &'static str, key: &[u8], reason: impl ToString) -> StorageError {
    let shown = &key[..key.len().min(64)];
    let mut hex = String::with_capacity(shown.len() * 2);
    for b in shown {
        hex.push_str(&format!("{b:02x}"));
    }
    if key.len() > shown.len() {
        hex.push_str("...");
    }
    StorageError::Corrupt {
        cf,
        key: hex,
        reason: reason.to_string(),
    }
}
