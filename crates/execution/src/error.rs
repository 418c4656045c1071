//! The execution crate's error type.

use aidledger_contracts::ContractError;

/// Why a block could not be executed at all. A transaction the contracts
/// refuse is not an error (it gets a rejection receipt and consumes its
/// nonce); these are failures of the state backend, broken invariants, a
/// transaction that may not be included at all, or bad inputs from the
/// caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("state backend failed: {reason}")]
    Storage { reason: String },
    #[error("height {height}: contract invariant broken: {source}")]
    Contract { height: u64, source: ContractError },
    #[error("genesis is invalid: {0}")]
    Genesis(ContractError),
    #[error("block context is for chain {got:?}, state is for chain {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("transaction refused: {0}")]
    Refused(ContractError),
    #[error("block context height {got}, expected {expected}")]
    WrongHeight { expected: u64, got: u64 },
    /// The transaction breaks the inclusion rule (ADR 010) at this
    /// position: a block holding it is invalid, and a proposer skips it.
    #[error("height {height}: tx {index} ({id}) cannot be included: {reason}")]
    NotIncludable {
        height: u64,
        index: u32,
        id: aidledger_types::Hash,
        reason: ContractError,
    },
}
