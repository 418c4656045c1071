//! aidledger's deterministic simulator: N real node cores
//! ([`aidledger_node_core::NodeCore`], the code the `aidledger` binary
//! runs), each on its own in-memory store, in one process with a seeded
//! RNG (ChaCha8), a virtual clock per node (skewed and drifting), and a
//! transport with the production gossip semantics that drops, delays,
//! partitions (k-way and one-way) and reorders. Clients submit, resend
//! and replay real signed transactions; governance changes the validator
//! set; nodes crash, lose or roll back their safety state and are wiped;
//! one node may be byzantine (equivocating, double-voting, replaying old
//! valid messages, stripping blocks from certificates and splitting
//! new-views, or sending garbage). See [`cluster`] for the invariants.
//!
//! Every run is a function of its seed: the same seed gives the same trace
//! hash. A failing seed reproduces with
//! `cargo run --release -p aidledger-sim -- --seeds 1 --start-seed <S>`.

pub mod cluster;
pub mod scale;

pub use cluster::{run_cluster_seed, ClusterOptions, ClusterReport};
pub use scale::{run_scale, ScaleOptions, ScaleReport};
