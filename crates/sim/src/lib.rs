//! aidledger's deterministic simulator.
//!
//! Runs n replicas of the production consensus core ([`aidledger_consensus`])
//! in one process with a seeded RNG (ChaCha8), a virtual clock and a
//! simulated network that drops, duplicates, delays, reorders and
//! partitions; processes crash (losing everything not persisted) and
//! restart from their persisted safety state and committed blocks; up to f
//! replicas are byzantine (equivocating primary, double voter, twins,
//! garbage). Blocks carry real signed transactions of a development
//! consortium, built, validated and executed by the production
//! `aidledger-execution` ([`ExecApp`]) against in-memory state.
//!
//! Every run is a function of its seed: the same seed gives the same trace
//! hash. A failing seed reproduces with
//! `cargo run --release -p aidledger-sim -- --seeds 1 --start-seed <S>`.

pub mod app;
mod byzantine;
pub mod cluster;
pub mod exec_app;
pub mod scenario;
mod sim;

use std::fmt;

use aidledger_types::Hash;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use app::{App, AppGenesis, Proposal};
pub use cluster::{run_cluster_seed, ClusterOptions, ClusterReport};
pub use exec_app::ExecApp;
pub use scenario::{Byz, Fault, Scenario};
pub use sim::{Options, BLOCK_INTERVAL_MS, LIVENESS_BUDGET_MS, MAX_EVENTS};

/// A broken property.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Violation {
    /// Two honest replicas committed different blocks at one height.
    Agreement {
        height: u64,
        first: Hash,
        second: Hash,
        node: usize,
    },
    /// A committed block's certificate does not verify.
    BadCertificate {
        node: usize,
        height: u64,
        reason: String,
    },
    /// A committed block does not fit its header or the chain.
    BadBlock {
        node: usize,
        height: u64,
        reason: String,
    },
    /// Re-executing a committed block does not give its state root.
    StateRoot { node: usize, height: u64 },
    /// An application invariant (e.g. conservation of a program's funds)
    /// is broken after a commit.
    Invariant {
        node: usize,
        height: u64,
        reason: String,
    },
    /// A committed block does not re-validate on a fresh replay from
    /// genesis (or an honest chain is not a prefix of the replayed one).
    Replay { height: u64, reason: String },
    /// An honest validator sent two different votes for one (view, height).
    Equivocation {
        validator: u16,
        view: u64,
        height: u64,
    },
    /// After the faults healed, honest replicas did not all reach the target.
    Liveness { target: u64, heights: Vec<u64> },
    /// Honest replicas at the target height have different state roots.
    Divergence { height: u64 },
    /// The run needed more than `MAX_EVENTS` events: a message storm.
    Storm { events: u64 },
}

impl Violation {
    pub fn is_safety(&self) -> bool {
        !matches!(self, Violation::Liveness { .. } | Violation::Storm { .. })
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The outcome of one seed.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub scenario: Scenario,
    /// Highest height committed by an honest replica.
    pub max_height: u64,
    /// Transactions in the longest honest chain.
    pub txs: u64,
    /// Hash of the event trace: equal for equal seeds.
    pub trace_hash: u64,
    pub violations: Vec<Violation>,
    pub virtual_ms: u64,
    pub messages: u64,
}

impl SeedReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
    /// The command that reproduces this seed.
    pub fn repro(&self) -> String {
        format!(
            "cargo run --release -p aidledger-sim -- --seeds 1 --start-seed {}",
            self.seed
        )
    }
}

/// Runs one seed with [`ExecApp`], the production execution.
pub fn run_seed(seed: u64, opts: &Options) -> SeedReport {
    run_seed_with(&ExecApp::default(), seed, opts)
}

/// Runs one seed with any [`App`].
pub fn run_seed_with<A: App>(app: &A, seed: u64, opts: &Options) -> SeedReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sc = Scenario::pick(&mut rng, opts.byzantine, opts.faults);
    sim::Sim::new(app, seed, sc, opts.clone()).run(seed)
}
