//! aidledger's consensus core: PBFT (Castro and Liskov, OSDI '99 / TOCS '02)
//! over blocks, as a pure state machine.
//!
//! [`Replica::handle`] takes the driver's time and one [`Input`] and returns
//! the [`Output`]s to execute, in order. The core does no IO, reads no
//! clock and draws no randomness; the node binary and the simulator drive
//! the same code. The driver's obligations are listed in [`io`].
//!
//! * Sequence numbers are block heights, decided one at a time. Per-height
//!   state (slots per view, buffered messages) lives in maps keyed by
//!   height and view with bounded windows, so pipelining can be added.
//! * A block is pre-prepared by the primary of the view
//!   (`validators.leader(view)`), prepared once `quorum - 1` backups have
//!   prepared it, and committed once a quorum has sent commits. The commit
//!   messages' signatures form the block's [`aidledger_types::CommitCertificate`].
//! * View changes carry prepared certificates; the new primary re-proposes
//!   the highest prepared block.
//!
//! See `docs/consensus.md` for the protocol, message formats, invariants and
//! how to run the simulator.

pub mod config;
mod error;
pub mod io;
pub mod message;
mod normal;
mod replica;
pub mod safety;
mod view_change;

pub use config::{Config, MESSAGE_MAX_BYTES, SAFETY_STATE_MAX_BYTES};
pub use error::ConsensusError;
pub use io::{Input, Output, TimeoutKind};
pub use message::{Envelope, NewView, Payload, PreparedCert, SignedViewChange, ViewChange};
pub use replica::{CommittedTip, Replica};
pub use safety::{AheadVotes, SafetyState};
