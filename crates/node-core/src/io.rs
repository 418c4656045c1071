//! What goes into the node core and what comes out of it.

use aidledger_types::Hash;

use crate::admission::{TxRefusal, Verdict};

/// Another member node: an index into the core's member table, which
/// starts as the list the core was built with and only grows (see
/// [`Effect::Members`]). The shell maps it to a network peer id.
pub type Peer = usize;

/// The time an input happens at. `wall_ms` is the node's clock (block
/// timestamps, the consensus core's clock checks); `mono_ms` counts from the
/// shell's start and never goes back (timeouts, proposal pacing, mempool
/// gap expiry), so a wall-clock jump neither stops nor hastens them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    pub wall_ms: u64,
    pub mono_ms: u64,
}

/// A gossip channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Consensus,
    Txs,
}

/// One input to the core.
#[derive(Debug)]
pub enum Event {
    /// The node has started: the replica enters its height.
    Start,
    /// Transactions from a client, through admission's screen and
    /// signature check ([`crate::Admission`], ADR 016); answered by
    /// [`Effect::Verdicts`] with the same ticket, one verdict each, in
    /// order. Admitted ones are gossiped.
    Submit { ticket: u64, txs: Vec<Verdict> },
    /// Transactions gossiped by peers, through the same checks.
    Gossiped(Vec<Verdict>),
    /// A consensus message from the network.
    Consensus(Vec<u8>),
    /// A peer asks for blocks; answered by [`Effect::Reply`] with the token.
    SyncRequest { token: u64, data: Vec<u8> },
    /// The answer to the [`Effect::Request`] with this tag.
    SyncResponse { tag: u64, data: Vec<u8> },
    /// The [`Effect::Request`] with this tag failed.
    SyncFailed { tag: u64 },
    /// The peers connected now.
    Peers(Vec<Peer>),
    /// The operator staged a replacement key (`aidledger keys stage`): it
    /// is used as soon as governance registers it as this node key's
    /// replacement (ADR 017), which may already have happened.
    StageKey(aidledger_crypto::Keypair),
    /// Time has passed: due timeouts fire, a due proposal is built, gossip
    /// is flushed, stalled sync is retried. The shell sends it at
    /// [`crate::NodeCore::next_wakeup`] at the latest.
    Tick,
}

/// One thing the shell must do. Storage is not here: the core writes the
/// store itself, synchronously, before it returns, so everything it asks
/// to send was persisted first.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    Publish {
        channel: Channel,
        data: Vec<u8>,
    },
    /// A sync request to one peer; its answer comes back with `tag`.
    Request {
        tag: u64,
        peer: Peer,
        data: Vec<u8>,
    },
    /// The answer to [`Event::SyncRequest`] `token`.
    Reply {
        token: u64,
        data: Vec<u8>,
    },
    /// The verdicts for [`Event::Submit`] `ticket`.
    Verdicts {
        ticket: u64,
        verdicts: Vec<Result<Hash, TxRefusal>>,
    },
    /// A block was committed with these transactions.
    Committed {
        height: u64,
        txs: Vec<Hash>,
    },
    /// The node registry changed (ADR 017): `table` is the whole member
    /// table, [`Peer`] `i` being `table[i]` (append-only: an index is never
    /// reused), and `live` the peers the network must admit from now on.
    /// The shell allows the new ones and closes the others' connections.
    Members {
        table: Vec<aidledger_types::PublicKey>,
        live: Vec<Peer>,
    },
    /// A node-key replacement moved this node's keys (ADR 017): `signing`
    /// signs its votes and blocks from now on, and the network identity
    /// derives from `network`. The shell restarts its network under a new
    /// identity, and retires the old key file once `signing` is the
    /// staged key.
    Keys {
        signing: aidledger_types::PublicKey,
        network: aidledger_types::PublicKey,
    },
}

pub use aidledger_types::wire::{CandidateResponse, SyncRequest, SyncResponse, TxGossip};

/// Counters the core reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    AdmittedTxs,
    RefusedTxs,
    /// Refused because the nonce is already used: a resend.
    ResentTxs,
    ExpiredTxs,
    RegossipedTxs,
    SyncedBlocks,
    /// Transactions of synced blocks whose signatures were verified
    /// ahead, on a second thread.
    SyncPreverifiedTxs,
    ViewChanges,
    CommittedBlocks,
    CommittedTxs,
    RejectedTxs,
    /// A client's transaction refused because the mempool held its backlog
    /// (ADR 023); also counted in `RefusedTxs`.
    BacklogRefusedTxs,
    /// Blocks this node proposed before their parent committed
    /// (pipelining, ADR 022).
    PipelinedProposals,
}

/// Where the core reports what it measured. None of it feeds a decision:
/// the simulator passes [`NoTelemetry`], the node exports Prometheus
/// metrics. `clock_secs` times phases of work (seconds from any origin).
pub trait Telemetry: Send {
    fn count(&self, _c: Count, _n: u64) {}
    fn clock_secs(&self) -> f64 {
        0.0
    }
    /// propose, validate, persist or round, and how long it took.
    fn phase(&self, _phase: &'static str, _secs: f64) {}
    fn block_txs(&self, _txs: usize) {}
}

/// Telemetry that records nothing.
pub struct NoTelemetry;
impl Telemetry for NoTelemetry {}
