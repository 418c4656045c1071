//! Independent audit of an aidledger chain.
//!
//! An auditor trusts nothing a node says about itself. [`replay`] starts
//! from the genesis document and checks, height by height:
//!
//! * the hash chain (every header names its parent's hash);
//! * every commit certificate, against the validator set in force at that
//!   height as computed by the replay itself (so governance changes of the
//!   set are followed, not read from the node);
//! * the transaction Merkle root in every header;
//! * every transaction signature;
//! * the state root in every header, by executing every block with the
//!   same `aidledger-execution` crate the validators run.
//!
//! Merkle roots, signatures and certificates are checked in parallel
//! across blocks; execution is sequential. The first failure stops the
//! replay and is reported as a [`Failure`]: the height, the object and the
//! reason ("height 77: certificate has 2 of 3 required signatures").
//!
//! The chain comes from a [`ChainSource`]: a node's data directory opened
//! read-only ([`StoreSource`], which afterwards also compares the node's
//! stored state, accumulator, head and transaction index with the replay)
//! or a chain file written by [`chainfile::write_chain_file`]
//! ([`FileSource`], whose trailing digest catches any altered byte).
//!
//! [`report`] builds the auditor's report from a state; [`export`] writes
//! it as JSON, CSV (one row per money movement) or IATI 2.03 activity XML;
//! [`trace`] follows one application or household.
//!
//! Architecture Invariant: no clock and no randomness. Timing the replay
//! is the caller's business.

pub mod chainfile;
pub mod export;
mod failure;
pub mod iati;
mod index;
pub mod proof;
mod replay;
pub mod report;
mod source;
mod state;
#[cfg(feature = "synth")]
pub mod synth;
pub mod trace;

pub use failure::Failure;
pub use replay::{
    replay, Progress, ReplayOptions, ReplayOutcome, ReplaySummary, NO_PROGRESS, REPLAY_THREADS_MAX,
};
pub use source::{ChainSource, Entry, FileSource, ReplayEnd, StoreSource};
pub use state::{scan_all, StoreState, StoreView, ViewState};

/// Errors that stop an audit before it can give a verdict: the input
/// cannot be opened or read at all. A chain that can be read but does not
/// verify is a [`Failure`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("opening the store at {path}: {source}")]
    Store {
        path: String,
        source: aidledger_storage::StorageError,
    },
    #[error("{0}")]
    Storage(#[from] aidledger_storage::StorageError),
    #[error("state: {0}")]
    Exec(#[from] aidledger_execution::ExecError),
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}
