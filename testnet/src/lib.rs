//! Tools for running aidledger as a local consortium on one machine: the
//! testnet layout and its node processes (`testnet init|up|down|status`),
//! the demo of a whole fund lifecycle, the fault drills (kills, pauses,
//! application-layer and network-namespace partitions), load generation
//! and, with the `suite` feature, the benchmark suite. The `aidledger`
//! binary exposes them as `aidledger testnet ...` and `aidledger bench
//! ...`; none of it runs inside a node.

pub mod bench;
pub mod demo;
pub mod drill;
pub mod netns;
pub mod procs;
pub mod testnet;
