//! The core's inputs and outputs, and the driver's contract.
//!
//! # The driver's contract
//!
//! 1. Feed [`Input::Start`] once after [`crate::Replica::new`] or
//!    [`crate::Replica::restore`].
//! 2. Execute the outputs of one `handle` call **in order**.
//! 3. [`Output::PersistSafetyState`] must be durable (written and fsynced)
//!    before any later output of the same vector is executed. The core
//!    places it before every message that depends on it, so a replica that
//!    crashes and restarts from its last persisted safety state never sends
//!    a prepare or commit that contradicts one it already sent.
//! 4. [`Output::Commit`] must be durable (block and certificate stored, the
//!    block applied) before later outputs are executed, and before
//!    the next persisted safety state, which already refers to the next
//!    height.
//! 5. Answer [`Output::RequestProposal`] with [`Input::ProposalReady`] (a
//!    block whose header is complete, state root included: the driver
//!    executes its own proposal first), and [`Output::ValidateBlock`] with
//!    [`Input::BlockValidated`]. Late answers are harmless: the core drops
//!    answers for a view or height it has left.
//! 6. Fire [`Output::ScheduleTimeout`] as [`Input::Timeout`] after `after_ms`
//!    of the driver's clock. Timers need not be cancelled; stale ones are
//!    ignored.
//! 7. Answer [`Output::RequestSync`] by fetching committed blocks and their
//!    certificates from `from_height` on (preferably from `peer`) and
//!    feeding them, in height order, as [`Input::Synced`].

use aidledger_types::{Block, CommitCertificate, Hash};
use serde::{Deserialize, Serialize};

use crate::message::Envelope;
use crate::safety::SafetyState;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum TimeoutKind {
    /// No commit in the current view in time: start a view change.
    Round,
    /// No valid new-view for the view being changed to: try the next one.
    ViewChange,
}

/// Everything that can happen to a replica. Closed: the core handles each
/// variant and nothing else.
#[derive(Clone, Debug)]
pub enum Input {
    /// The driver has (re)started the replica.
    Start,
    /// Bytes from a peer: decoded with a size limit, checked, and verified
    /// inside the core.
    Message(Vec<u8>),
    /// A timer scheduled by [`Output::ScheduleTimeout`] fired.
    Timeout {
        kind: TimeoutKind,
        view: u64,
        height: u64,
    },
    /// The block asked for by [`Output::RequestProposal`], executed: its
    /// header carries the post-execution state root.
    ProposalReady { block: Block },
    /// The verdict on a block asked for by [`Output::ValidateBlock`]: the
    /// driver checked the header (parent, timestamp monotonic and within
    /// drift, tx root) and executed it, and the state root matched.
    BlockValidated {
        height: u64,
        block_hash: Hash,
        valid: bool,
    },
    /// A committed block fetched by catch-up, with its certificate.
    Synced {
        block: Block,
        certificate: CommitCertificate,
    },
    /// The network (re)connected the validator with this index. Messages
    /// sent while the link was down never reached it, and each side may
    /// be waiting on the other's retransmission timer (32 s at most after
    /// a long split): the replica sends what a peer that missed them needs
    /// now, rate-limited per peer.
    PeerConnected { validator: u16 },
    /// There is work for the height in flight (transactions ready, or the
    /// chain's next due time has come): with [`crate::Config::wait_for_work`],
    /// an idle first round starts its timer now. Harmless otherwise.
    Work,
    /// A block asked for by [`Output::FetchBlock`]. Untrusted: the core
    /// keeps it only if a prepared certificate at the current height
    /// names its hash.
    BlockFetched { block: Block },
}

/// Everything a replica can ask its driver to do. Closed.
#[derive(Clone, Debug)]
pub enum Output {
    /// Write this state durably before executing any later output.
    PersistSafetyState(SafetyState),
    /// Send to every other validator.
    Broadcast(Envelope),
    /// Send to one validator, by index.
    Send { to: u16, message: Envelope },
    /// Fire [`Input::Timeout`] with these fields after `after_ms`.
    ScheduleTimeout {
        kind: TimeoutKind,
        view: u64,
        height: u64,
        after_ms: u64,
    },
    /// This replica is the primary: build a block on `parent_hash` for
    /// (`height`, `view`), execute it, and return it as
    /// [`Input::ProposalReady`]. `now_ms` is the time the core was told.
    RequestProposal {
        height: u64,
        view: u64,
        parent_hash: Hash,
        now_ms: u64,
    },
    /// Validate and execute a pre-prepared block and answer with
    /// [`Input::BlockValidated`]. `now_ms` is for the drift check.
    ValidateBlock {
        view: u64,
        block: Block,
        now_ms: u64,
    },
    /// The block is committed: store it with its certificate and apply it.
    /// The driver has validated this very body before (it answered a
    /// `ValidateBlock` for it with `valid: true`, or proposed it).
    Commit {
        block: Block,
        certificate: CommitCertificate,
    },
    /// This replica is behind: fetch committed blocks from `from_height`.
    RequestSync { from_height: u64, peer: u16 },
    /// A prepared certificate for this block arrived without the block
    /// (a view change may leave it off), and this replica needs it to
    /// re-propose: fetch the candidate block by hash from one of `from`
    /// (validators that prepared it) and answer with
    /// [`Input::BlockFetched`].
    FetchBlock {
        height: u64,
        hash: Hash,
        from: Vec<u16>,
    },
}

impl Output {
    /// True for outputs that put a message on the wire.
    pub fn is_send(&self) -> bool {
        matches!(self, Output::Broadcast(_) | Output::Send { .. })
    }
}
