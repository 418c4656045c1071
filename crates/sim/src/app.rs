//! The application the simulated replicas run, behind a small trait.
//!
//! [`crate::ExecApp`] implements it on top of `aidledger-execution`: the
//! production block builder, validator and contracts, against in-memory
//! state. The trait keeps the simulator independent of the execution
//! crate's types, so the checks in `sim.rs` read as properties of any
//! replicated state machine.

use aidledger_crypto::Keypair;
use aidledger_types::{Block, ChainId, Hash, PublicKey, ValidatorSet};
use rand_chacha::ChaCha8Rng;

/// What the simulator takes from the application's genesis: the chain,
/// the validators and their consensus keys, and the initial state.
pub struct AppGenesis<S> {
    pub chain_id: ChainId,
    pub validators: ValidatorSet,
    /// Consensus keys in validator-set order: `keys[i]` signs for
    /// validator `i`. Twins share one of these.
    pub keys: Vec<Keypair>,
    /// The state before height 1.
    pub state: S,
    /// The genesis hash: the parent of height 1.
    pub hash: Hash,
    /// The genesis timestamp; virtual time 0 is this instant.
    pub time_ms: u64,
}

/// A proposer's request for a block on top of its committed state.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub height: u64,
    pub view: u64,
    pub proposer: PublicKey,
    /// The proposer's clock; the block is stamped `max(now_ms, parent + 1)`.
    pub now_ms: u64,
    /// No transactions (the equivocator's conflicting block).
    pub empty: bool,
}

/// What the simulator needs from an application.
///
/// * `State` is one replica's committed state (in memory), including what
///   a block is checked against (the parent's hash, height, timestamp and
///   validator set). Validation returns a post-state and leaves the input
///   alone, so a replica can validate blocks it may never commit.
/// * Everything must be deterministic: the same inputs give the same
///   outputs on every replica, and `rng` is the only randomness.
pub trait App {
    type State: Clone;

    /// The genesis of a chain of `n` validators for `seed`.
    fn genesis(&self, n: usize, seed: u64) -> Result<AppGenesis<Self::State>, String>;

    /// Builds a block on `state` (the proposer's committed state) with
    /// transactions from the workload; returns it and its post-state.
    fn propose(
        &self,
        state: &Self::State,
        p: &Proposal,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Block, Self::State), String>;

    /// Checks `block` as the child of `state` and executes it; returns the
    /// post-state. `now_ms` is the validator's clock for the drift check
    /// (live voting); `None` on replay. An `Err` means the block is invalid.
    fn validate(
        &self,
        state: &Self::State,
        block: &Block,
        now_ms: Option<u64>,
    ) -> Result<Self::State, String>;

    /// The root of a state.
    fn state_root(&self, state: &Self::State) -> Hash;

    /// Application invariants that must hold after every block (for
    /// example conservation of every program's funds). `deep` adds
    /// whole-state checks too expensive to run at every commit.
    fn check_invariants(&self, state: &Self::State, deep: bool) -> Result<(), String>;
}
