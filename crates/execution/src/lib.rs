//! Block execution: the one entry point used by validators, the simulator
//! and the auditor's replay.
//!
//! [`apply_block`] runs a block's verified transactions through the
//! contract modules, each on its own overlay so a rejected transaction
//! leaves no trace but its receipt, then runs the modules' end-of-block
//! step, and returns the writes, receipts, events and new state root.
//! [`validate_block`] checks everything about a proposed block and then
//! executes it; [`build_block`] assembles one for a proposer. Both share
//! [`apply_block`], so the proposer, the validators and the auditor can
//! never disagree about what a block does.
//!
//! Architecture Invariant: no IO, no clock, no tokio, rocksdb or libp2p.
//! State comes in through [`StateRead`]; writes go out in [`BlockOutcome`].

mod block;
mod error;
mod exec;
mod mem;
mod queries;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use aidledger_contracts as contracts;
pub use aidledger_contracts::{Event, Genesis, Receipt, TxOutcome};
pub use block::{
    build_block, check_body, check_body_verified, check_header, empty_block_allowed,
    execute_verified, execute_verified_into, validate_block, validate_block_with,
    validate_identified_with, BlockInvalid, ParentInfo,
};
pub use error::ExecError;
pub use exec::{
    apply_block, apply_block_into, genesis_state, BlockContext, BlockOutcome, StateMap, StateRead,
    Writes,
};
pub use mem::{MemState, Speculative, Undo};
pub use queries::{
    admission, read_modules, read_next_due, read_node_replacement, read_nodes, read_params,
    read_retired_node, read_scheduled_upgrade, read_tranche_checks, read_validator_set,
    TrancheCheck,
};
