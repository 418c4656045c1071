//! The execution crate's error type.

use aidledger_contracts::ContractError;

/// Why a block could not be executed at all. A transaction the contracts
/// refuse is not an error (it gets a rejection receipt); these are failures
/// of the state backend, broken invariants, or bad inputs from the caller.
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
}
