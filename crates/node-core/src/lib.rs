//! The node core: everything a node decides, as one synchronous,
//! deterministic state machine (docs/adr/011-node-core.md).
//!
//! [`NodeCore::handle`] takes the time and one [`Event`] and returns the
//! [`Effect`]s the shell must perform: messages to publish, sync requests
//! and replies, verdicts for clients, commit notices. The core owns the
//! consensus replica, the mempool, the execution cache and the write side
//! of the store; it reads no clock, spawns nothing and touches no socket.
//! The store is injected (RocksDB in the node, memory in the simulator)
//! and written synchronously inside `handle`, so persisting the safety
//! state and the committed block happens before any effect of the same
//! call reaches the network.
//!
//! The node's tokio shell (`node/src/driver.rs`) and the simulator
//! (`crates/sim`) both run this code.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use aidledger_consensus::{
    CommittedTip, Config as ReplicaConfig, Input, Output, Replica, SafetyState,
};
use aidledger_crypto::{verify_certificate, verify_txs, Keypair, VerifiedTx};
use aidledger_execution::contracts::{self, ModuleVersion};
use aidledger_execution::{
    build_block, empty_block_allowed, validate_identified_with, BlockContext, BlockInvalid,
    BlockOutcome, ExecError, ParentInfo, Speculative, StateRead,
};
use aidledger_mempool::{
    AccountInfo, AccountView, AdmitError, Mempool, MempoolConfig, OncePerAccount,
};
use aidledger_storage::{CommitBatch, PendingParent, StorageError, Store};
use aidledger_types::{
    codec, Block, ChainId, CommitCertificate, Hash, IdentifiedBlock, OrgId, PublicKey, SignedTx,
    StateAccumulator, Timestamp, ValidatorSet,
};

mod admission;
mod chain;
mod io;
mod timers;

pub use admission::{Admission, Screened, TxRefusal, Verdict, VERDICT_CACHE};
pub use chain::{
    choose_keys, open_chain, KeyChoice, StateAccounts, StoreAccounts, StoreState, StoreView,
};
pub use io::{
    CandidateResponse, Channel, Count, Effect, Event, NoTelemetry, Now, Peer, SyncRequest,
    SyncResponse, Telemetry, TxGossip,
};
pub use timers::{TimerKey, Timers, TIMERS_MAX};

/// Most executed-but-uncommitted block outcomes kept.
const OUTCOMES_MAX: usize = 64;
/// Transactions gossiped together in one message, flushed at least every
/// `GOSSIP_FLUSH_MS`. Half the default block interval: a transaction still
/// reaches the next proposal, and each message carries two and a half
/// times what 20 ms gave, so every member handles fewer messages and
/// verifies larger signature batches (docs/benchmarks.md, twentieth stop:
/// 10 % less CPU per transaction, p50 latency up by about 35 ms).
pub const GOSSIP_BATCH_TXS: usize = 256;
pub const GOSSIP_FLUSH_MS: u64 = 50;
/// How often transactions that waited too long behind a nonce gap leave
/// the mempool.
const EXPIRE_EVERY_MS: u64 = 1_000;
/// How often transactions pending since the previous look are re-gossiped:
/// a peer (perhaps the leader) may have dropped them while it was busy, and
/// would otherwise never see them.
const REGOSSIP_EVERY_MS: u64 = 2_000;
const REGOSSIP_MAX: usize = 2048;
/// How often an observer, or a validator that has not committed for two
/// round timeouts, asks a peer for blocks.
const SYNC_EVERY_MS: u64 = 1_000;
/// A sync request unanswered this long no longer blocks the next one.
const SYNC_PATIENCE_MS: u64 = 10_000;
/// A sync response with at least this many transactions has their
/// signatures verified on a second thread, ahead of the blocks' checks;
/// below it a thread costs more than it saves.
const PREVERIFY_MIN_TXS: usize = 256;
/// How many synced blocks may wait, verified, for their check.
const PREVERIFY_AHEAD: usize = 2;

/// The consensus knobs the core uses (the node's `[consensus]` section).
#[derive(Clone, Debug)]
pub struct ConsensusSettings {
    pub max_block_txs: usize,
    pub max_block_bytes: usize,
    pub block_interval_ms: u64,
    pub empty_block_interval_ms: u64,
    pub round_timeout_ms: u64,
    pub max_clock_drift_ms: u64,
    pub sync_batch: u64,
    /// Pipelining (ADR 022): propose, check and prepare the next block
    /// while the one before it is still being agreed.
    pub pipeline: bool,
}

impl Default for ConsensusSettings {
    /// The node's defaults (its config's `[consensus]` section takes them
    /// from here).
    fn default() -> Self {
        ConsensusSettings {
            max_block_txs: 5000,
            max_block_bytes: 8 * 1024 * 1024,
            block_interval_ms: 100,
            empty_block_interval_ms: 1000,
            round_timeout_ms: 2000,
            max_clock_drift_ms: 5000,
            sync_batch: 200,
            pipeline: true,
        }
    }
}

/// Deliberate defects, for the simulator's mutation tests only: each must
/// be caught by its invariants. The node never sets them.
#[derive(Clone, Debug, Default)]
pub struct Mutants {
    /// After a commit that rebuilt the replica for a new validator set,
    /// keep executing the old replica's remaining outputs (issue 13's
    /// reconfiguration fork).
    pub keep_stale_outputs: bool,
    /// View changes without the prepared certificate.
    pub view_change_without_cert: bool,
    /// New-views built and checked without the highest prepared
    /// certificate.
    pub ignore_highest_prepared: bool,
    /// The safety state is written after the call's messages are handed
    /// out (at the start of the next call) instead of before them.
    pub persist_after_send: bool,
    /// Pipelining: on committing a height, the next starts in the
    /// certificate's view even below a view this replica already prepared
    /// it in (docs/consensus.md, P5, left out).
    pub fall_below_ahead_votes: bool,
    /// Admission without the on-chain nonce check: a resend of a
    /// transaction the chain already holds is accepted into the mempool
    /// (and answered as accepted) instead of refused.
    pub admission_without_onchain_check: bool,
    /// Quorums of 2f votes instead of 2f+1 (the classic planted bug).
    pub accept_2f_votes: bool,
    /// A quiet chain that forgets its due time: no work comes from it and
    /// the primary proposes an empty block only after a view change, so a
    /// date releases only when some transaction wakes the chain.
    pub ignore_next_due: bool,
    /// A restored store votes at once, trusting the backup's safety
    /// state (as before the `restored` marker existed).
    pub ignore_restored_marker: bool,
    /// A node-key replacement is never followed: the node keeps signing
    /// with the key governance retired (and keeps its old identity).
    pub ignore_key_replacement: bool,
}

/// The accounts as admission would see them without the chain's consumed
/// nonces (only for [`Mutants::admission_without_onchain_check`]).
struct NoncesForgotten<'a>(&'a dyn AccountView);

impl AccountView for NoncesForgotten<'_> {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo> {
        self.0.account(key).map(|mut a| {
            a.next_nonce = 0;
            a
        })
    }
}

/// Everything the core needs to start.
pub struct CoreParts {
    pub chain_id: ChainId,
    pub consensus: ConsensusSettings,
    pub mempool: MempoolConfig,
    /// Largest transaction gossip message and sync response accepted (the
    /// network's limits).
    pub gossip_max_bytes: usize,
    pub sync_response_max_bytes: usize,
    pub key: Keypair,
    /// The staged replacement key (`keys/node-next.json`), if any: it
    /// becomes the network identity once governance registers it as
    /// `key`'s replacement, and the signing key once `key` is retired
    /// ([`choose_keys`]).
    pub next_key: Option<Keypair>,
    pub store: Arc<dyn Store>,
    /// The other member nodes' keys: [`Peer`] `i` is `members[i]`.
    pub members: Vec<PublicKey>,
    pub parent: ParentInfo,
    pub acc: StateAccumulator,
    /// Vote at once even if the safety state is missing or behind this
    /// validator's own votes.
    pub accept_missing_safety_state: bool,
    /// This key has run as a node on this chain before (the shell's
    /// marker in the node's home, or `node run --rejoin`): an empty store
    /// then means lost data, not a new chain, and a validator does not
    /// vote until it has caught up (see [`NodeCore::rejoining`]).
    pub ran_before: bool,
    /// The store was put back from a backup (`aidledger restore` left its
    /// marker in the home): the backup's safety state is as old as its
    /// blocks and proves nothing about the votes this key cast since, so
    /// the node catches up without voting as on an empty store, whatever
    /// its height (see [`NodeCore::rejoined`]).
    pub restored: bool,
    pub telemetry: Box<dyn Telemetry>,
    pub mutants: Mutants,
    /// Module versions above these count as not carried by this build (a
    /// test knob that stands in for an older release, ADR 017); empty in
    /// production.
    pub module_ceiling: Vec<ModuleVersion>,
}

/// A contract upgrade governance scheduled, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeStatus {
    pub modules: Vec<ModuleVersion>,
    pub at_height: u64,
    /// The versions in `modules` this build does not carry: non-empty
    /// means the node stops before executing `at_height`.
    pub missing: Vec<ModuleVersion>,
}

/// What the API shows about the node, read after each event.
#[derive(Clone, Debug)]
pub struct CoreStatus {
    pub height: u64,
    pub block_hash: Hash,
    pub state_root: Hash,
    pub view: u64,
    pub leader: Option<OrgId>,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    /// How many pending transactions the mempool takes from clients now,
    /// and the commit rate it follows (ADR 023).
    pub backlog_txs: usize,
    pub commit_rate: u64,
    pub last_block_time_ms: u64,
    pub is_voting: bool,
    /// This node's key is in the validator set that signs the next height
    /// (it changes with the set, ADR 017).
    pub is_validator: bool,
    /// The key this node signs with, and the one its network identity
    /// derives from (they differ while a replacement is pending).
    pub node_key: PublicKey,
    pub network_key: PublicKey,
    /// When the next block is due with no transaction, and why (the
    /// committed state's `gov/next-due`).
    pub next_due: Option<aidledger_execution::contracts::NextDue>,
    /// The contract module versions in force, and the scheduled upgrade.
    pub modules: Arc<[ModuleVersion]>,
    pub upgrade: Option<Arc<UpgradeStatus>>,
}

/// A block that executed here and passed the store's commit checks: what
/// committing it will write.
struct Checked {
    height: u64,
    /// What the next block is checked against, once this one commits, or
    /// on top of it before (pipelining; its certificate is not known yet).
    as_parent: ParentInfo,
    /// It changes the validator set, the node registry or the modules: no
    /// block is built or checked on it before it commits (P9).
    reconfigures: bool,
    outcome: BlockOutcome,
    /// The encoded receipts, one per transaction.
    receipts: Vec<Vec<u8>>,
    /// The block's own events, encoded.
    block_events: Vec<u8>,
    /// The block itself, its body checked once, with its transaction ids
    /// (ADR 026): what the commit stores.
    block: IdentifiedBlock,
}

/// Why this node will not vote for a block.
enum Refusal {
    /// The block breaks a rule, or the store would refuse it.
    Invalid(String),
    /// The store could not be read: nothing is known about the block.
    Store(String),
}

/// A validator that has voted on this chain before, started on an empty
/// store (a wiped `data/`, a new machine): it may have voted at the height
/// in flight and cannot remember how. It does not vote until the
/// connected peers agree it is caught up, and then abstains for one more
/// height (the one it may have voted at). Each peer's report is the head
/// it claims, counted only as far as it served blocks (`None`: the request
/// failed).
#[derive(Debug, Default)]
struct CatchingUp {
    reports: BTreeMap<Peer, Option<u64>>,
}

struct PendingProposal {
    height: u64,
    view: u64,
    parent_hash: Hash,
}

pub struct NodeCore {
    chain_id: ChainId,
    cfg: ConsensusSettings,
    gap_ttl_ms: u64,
    gossip_max_bytes: usize,
    sync_response_max_bytes: usize,
    /// The store's base height (ADR 018): read once, since a snapshot
    /// install happens before any core opens the store.
    base: u64,
    key: Keypair,
    /// The staged replacement key, until it signs (see [`CoreParts`]).
    next_key: Option<Keypair>,
    /// The key the network identity derives from.
    network_key: PublicKey,
    store: Arc<dyn Store>,
    replica: Option<Replica>,
    mempool: Mempool,
    /// The member table, append-only: [`Peer`] `i` is `members[i]`.
    members: Vec<PublicKey>,
    /// The members the registry admits now (all of them at the start).
    live: BTreeSet<Peer>,
    connected: Vec<Peer>,
    parent: ParentInfo,
    acc: StateAccumulator,
    outcomes: BTreeMap<Hash, Checked>,
    proposal: Option<PendingProposal>,
    /// Monotonic times of the last commit and of entering this height.
    last_commit_ms: u64,
    /// The height and monotonic time of this node's last proposal: the
    /// block interval counts from it (see `proposal_deadline`).
    last_proposed: Option<(u64, u64)>,
    height_started_ms: u64,
    sync_in_flight: Option<(u64, u64)>,
    /// While the blocks of one sync response are applied: how many were
    /// stored without waiting for the disk; they are synced once at the
    /// end of the response. `None` otherwise: blocks are synced one by one.
    unsynced_blocks: Option<u64>,
    /// Signatures of the synced block being checked, verified ahead on
    /// another thread (see [`NodeCore::on_sync_response`]): at most one
    /// block's transactions, taken by the check that uses them.
    preverified: BTreeMap<Hash, VerifiedTx>,
    /// The peer each outstanding sync request went to and the height it
    /// asked from, by tag (bounded).
    sync_peers: BTreeMap<u64, (Peer, u64)>,
    catching_up: Option<CatchingUp>,
    ran_before: bool,
    restored: bool,
    /// The candidate-block fetch in flight: its tag and the hash wanted.
    fetch_in_flight: Option<(u64, Hash)>,
    next_tag: u64,
    sync_rr: usize,
    last_view: u64,
    /// The last committed block was full: propose again without waiting.
    last_block_full: bool,
    gossip_out: Vec<SignedTx>,
    gossip_round: u64,
    next_flush_ms: u64,
    next_expire_ms: u64,
    next_regossip_ms: u64,
    next_sync_ms: u64,
    regossip_prev: BTreeSet<Hash>,
    timers: Timers,
    /// Counts replica rebuilds (validator-set changes): outputs of an older
    /// replica are never executed once a newer one exists.
    replica_generation: u64,
    /// While set, this validator does not vote: its safety state was
    /// missing or behind its own votes, so it may already have voted at
    /// heights up to this one. It follows the chain by sync and starts a
    /// replica once the chain has committed past it.
    abstain_through: Option<u64>,
    accept_missing_safety_state: bool,
    telemetry: Box<dyn Telemetry>,
    mutants: Mutants,
    now: Now,
    out: Vec<Effect>,
    /// Only with `Mutants::persist_after_send`: the write still owed.
    late_safety: Option<Vec<u8>>,
    /// The committed state's `gov/next-due` (ADR 017, a quiet chain).
    next_due: Option<aidledger_execution::contracts::NextDue>,
    /// The last proposal attempt built an empty block before the due time
    /// (its transactions could not be included): retry no earlier.
    hold_proposal_until: Option<u64>,
    module_ceiling: Vec<ModuleVersion>,
    modules: Arc<[ModuleVersion]>,
    upgrade: Option<Arc<UpgradeStatus>>,
}

impl NodeCore {
    /// Builds the core on an opened chain and restores the persisted
    /// safety state. `now` is the time of the start.
    pub fn new(p: CoreParts, now: Now) -> anyhow::Result<NodeCore> {
        let gap_ttl_ms = p.mempool.gap_ttl_ms;
        let mut mempool = Mempool::new(p.mempool);
        mempool.set_time(now.mono_ms);
        let mut core = NodeCore {
            chain_id: p.chain_id,
            cfg: p.consensus,
            gap_ttl_ms,
            gossip_max_bytes: p.gossip_max_bytes,
            sync_response_max_bytes: p.sync_response_max_bytes,
            base: p.store.base()?,
            network_key: p.key.public(),
            key: p.key,
            next_key: p.next_key,
            store: p.store,
            replica: None,
            mempool,
            live: (0..p.members.len()).collect(),
            members: p.members,
            connected: Vec::new(),
            parent: p.parent,
            acc: p.acc,
            outcomes: BTreeMap::new(),
            proposal: None,
            last_commit_ms: now.mono_ms,
            last_proposed: None,
            height_started_ms: now.mono_ms,
            sync_in_flight: None,
            unsynced_blocks: None,
            preverified: BTreeMap::new(),
            sync_peers: BTreeMap::new(),
            catching_up: None,
            ran_before: p.ran_before,
            restored: p.restored,
            fetch_in_flight: None,
            next_tag: 0,
            sync_rr: 0,
            last_view: 0,
            last_block_full: false,
            gossip_out: Vec::new(),
            gossip_round: 0,
            next_flush_ms: now.mono_ms + GOSSIP_FLUSH_MS,
            next_expire_ms: now.mono_ms + EXPIRE_EVERY_MS,
            next_regossip_ms: now.mono_ms + REGOSSIP_EVERY_MS,
            next_sync_ms: now.mono_ms + SYNC_EVERY_MS,
            regossip_prev: BTreeSet::new(),
            timers: Timers::default(),
            replica_generation: 0,
            abstain_through: None,
            accept_missing_safety_state: p.accept_missing_safety_state,
            telemetry: p.telemetry,
            mutants: p.mutants,
            module_ceiling: p.module_ceiling,
            modules: Arc::from(Vec::new()),
            upgrade: None,
            now,
            out: Vec::new(),
            late_safety: None,
            next_due: None,
            hold_proposal_until: None,
        };
        core.next_due = aidledger_execution::read_next_due(&StoreState(core.store.as_ref())).ok();
        core.settle_keys(core.parent.height)?;
        core.check_modules(core.parent.height)?;
        core.stop_before_missing_modules(core.parent.height)?;
        core.out.clear();
        core.rebuild_replica(true)?;
        Ok(core)
    }

    /// Handles one event at `now` and returns what the shell must do, in
    /// order. An error is fatal: the node must stop (the message says why
    /// and what the operator should do); nothing of a failed commit was
    /// written.
    pub fn handle(&mut self, now: Now, ev: Event) -> anyhow::Result<Vec<Effect>> {
        // Time never goes back inside the core, whatever the shell says.
        self.now = Now {
            wall_ms: now.wall_ms,
            mono_ms: now.mono_ms.max(self.now.mono_ms),
        };
        self.mempool.set_time(self.now.mono_ms);
        if let Some(bytes) = self.late_safety.take() {
            self.store.put_safety_state(&bytes)?;
        }
        let mut r = self.dispatch(ev);
        if r.is_ok() {
            r = self.wake_if_work();
        }
        let out = std::mem::take(&mut self.out);
        r.map(|()| out)
    }

    /// Whether the height in flight has work (ADR 017, a quiet chain):
    /// transactions ready to run, or the committed state's next due time
    /// has come on this node's clock.
    fn work_due(&self) -> bool {
        if self.mutants.ignore_next_due {
            return self.mempool.has_ready();
        }
        self.mempool.has_ready() || self.next_due.is_none_or(|d| self.now.wall_ms >= d.at.0)
    }

    /// The next due time on the monotonic clock, if it is still ahead.
    fn due_mono(&self) -> Option<u64> {
        let d = self.next_due?;
        (d.at.0 > self.now.wall_ms).then(|| self.now.mono_ms + (d.at.0 - self.now.wall_ms))
    }

    /// Starts the round timer of an idle first round once there is work.
    fn wake_if_work(&mut self) -> anyhow::Result<()> {
        if self.replica.as_ref().is_some_and(Replica::is_idle) && self.work_due() {
            self.feed(Input::Work)?;
        }
        Ok(())
    }

    /// Whether the proposal in flight follows a view change at its height:
    /// then it goes out at the usual pace, due or not.
    fn after_view_change(&self, view: u64) -> bool {
        view > self.parent.certificate.as_ref().map_or(0, |c| c.view)
    }

    fn dispatch(&mut self, ev: Event) -> anyhow::Result<()> {
        match ev {
            Event::Start => self.feed(Input::Start)?,
            Event::Submit { ticket, txs } => {
                let verdicts = self.admit_batch(txs, true);
                self.out.push(Effect::Verdicts { ticket, verdicts });
            }
            Event::Gossiped(txs) => self.admit_gossip(txs),
            Event::Consensus(data) => {
                if self.replica.is_some() {
                    self.feed(Input::Message(data))?;
                } else {
                    // An observer: consensus traffic means the chain is
                    // moving; fetch what has committed (one request at a
                    // time) instead of waiting for the next sync tick.
                    self.request_sync(self.parent.height + 1, None);
                }
            }
            Event::SyncRequest { token, data } => {
                let data = self.serve_sync(&data);
                self.out.push(Effect::Reply { token, data });
            }
            Event::SyncResponse { tag, data } => {
                if let Some((t, hash)) = self.fetch_in_flight {
                    if t == tag {
                        self.fetch_in_flight = None;
                        return self.on_candidate(hash, &data);
                    }
                }
                if self.sync_in_flight.is_some_and(|(t, _)| t == tag) {
                    self.sync_in_flight = None;
                }
                let asked = self.sync_peers.remove(&tag);
                self.on_sync_response(&data, asked)?;
            }
            Event::SyncFailed { tag } => {
                if self.sync_in_flight.is_some_and(|(t, _)| t == tag) {
                    self.sync_in_flight = None;
                }
                if let Some((peer, _)) = self.sync_peers.remove(&tag) {
                    if let Some(c) = &mut self.catching_up {
                        c.reports.insert(peer, None);
                    }
                }
                if self.fetch_in_flight.is_some_and(|(t, _)| t == tag) {
                    self.fetch_in_flight = None;
                }
            }
            Event::Peers(mut peers) => {
                peers.retain(|p| self.live.contains(p));
                peers.sort_unstable();
                peers.dedup();
                let fresh: Vec<Peer> = peers
                    .iter()
                    .filter(|p| !self.connected.contains(p))
                    .copied()
                    .collect();
                self.connected = peers;
                // A node that follows by sync (catching up after an empty
                // start, or an observer) asks as soon as it has a peer,
                // not at its next sync tick.
                if self.replica.is_none() && !fresh.is_empty() {
                    self.request_sync(self.parent.height + 1, None);
                }
                // A validator whose link just came back missed what was
                // sent meanwhile: the replica retransmits now instead of at
                // its next (doubled) timeout (issue 13: a healed 2|2 split).
                for p in fresh {
                    let idx = self.parent.validator_set.index_of(&self.members[p]);
                    if let Some(validator) = idx.and_then(|i| u16::try_from(i).ok()) {
                        self.feed(Input::PeerConnected { validator })?;
                    }
                }
            }
            Event::StageKey(k) => {
                if k.public() == self.key.public() {
                    tracing::warn!("the staged key is the key this node signs with; ignored");
                } else {
                    tracing::info!(key = %k.public(), "replacement key staged");
                    self.next_key = Some(k);
                    self.refresh_members(self.parent.height)?;
                }
            }
            Event::Tick => self.tick()?,
        }
        Ok(())
    }

    /// The monotonic time by which the shell must send [`Event::Tick`].
    pub fn next_wakeup(&self) -> u64 {
        let mut at = self.next_flush_ms.min(self.next_sync_ms);
        if let Some(t) = self.timers.next_deadline() {
            at = at.min(t);
        }
        if let Some(p) = self.proposal_deadline() {
            at = at.min(p);
        }
        if self.replica.as_ref().is_some_and(Replica::is_idle) {
            if let Some(d) = self.due_mono() {
                at = at.min(d);
            }
        }
        at
    }

    /// Whether a transaction waits in the mempool.
    pub fn is_pending(&self, id: &Hash) -> bool {
        self.mempool.contains(id)
    }

    pub fn status(&self) -> CoreStatus {
        let (view, leader) = match &self.replica {
            Some(r) => {
                let v = r.view();
                (v, Some(self.parent.validator_set.leader(v).org.clone()))
            }
            None => (0, None),
        };
        CoreStatus {
            height: self.parent.height,
            block_hash: self.parent.hash,
            state_root: self.parent.state_root,
            view,
            leader,
            mempool_txs: self.mempool.len(),
            mempool_bytes: self.mempool.bytes(),
            backlog_txs: self.mempool.backlog_limit(),
            commit_rate: self.mempool.commit_rate(),
            last_block_time_ms: self.parent.timestamp.0,
            is_voting: self.replica.is_some(),
            is_validator: self
                .parent
                .validator_set
                .index_of(&self.key.public())
                .is_some(),
            node_key: self.key.public(),
            network_key: self.network_key,
            next_due: self.next_due,
            modules: self.modules.clone(),
            upgrade: self.upgrade.clone(),
        }
    }

    /// The committed tip.
    /// A block checked here at the height in flight and not committed
    /// yet, as the next block would be built on it (pipelining, ADR 022):
    /// what to check that block against (its header carries the tip's
    /// certificate), and the block's writes and accumulator, to execute
    /// on over committed state (`Speculative`).
    pub fn pending_parent(&self, hash: &Hash) -> Option<Pending<'_>> {
        pending_on(&self.parent, &self.outcomes, hash)
    }

    pub fn parent(&self) -> &ParentInfo {
        &self.parent
    }

    /// The highest height this validator abstains through after losing
    /// its safety state, if it does.
    pub fn abstaining_through(&self) -> Option<u64> {
        self.abstain_through
    }

    /// True while this validator, back on an empty store on a chain it
    /// has voted on before, catches up without voting; once caught up it
    /// abstains through one more height ([`Self::abstaining_through`]).
    pub fn rejoining(&self) -> bool {
        self.catching_up.is_some()
    }

    /// True once a node started on lost or restored data has caught up
    /// and the heights it may have voted at before are committed: the
    /// shell may then delete its home's `restored` marker, since the
    /// safety state now records everything this key signs.
    pub fn rejoined(&self) -> bool {
        self.catching_up.is_none() && self.abstain_through.is_none_or(|h| self.parent.height > h)
    }

    /// (Re)creates the replica for the validator set in force at the next
    /// height. On start it restores the persisted safety state.
    fn rebuild_replica(&mut self, restore: bool) -> anyhow::Result<()> {
        self.replica_generation = self.replica_generation.wrapping_add(1);
        // The old replica's timeouts belong to a core that no longer exists.
        self.timers.clear();
        self.proposal = None;
        // A node that ran on this chain before, on an empty store: whether
        // or not the genesis set holds its key (it may have become a
        // validator later and voted then), it catches up without voting.
        if restore
            && self.parent.height == 0
            && self.ran_before
            && !self.accept_missing_safety_state
            && self.store.safety_state()?.is_none()
        {
            self.start_catching_up(false);
            return Ok(());
        }
        // A store put back from a backup, at any height: its safety state
        // is the backup's, consistent with its blocks, so the amnesia
        // guard below would pass it, yet this key may have voted at every
        // height since the backup was taken, up to the one in flight.
        if restore
            && self.restored
            && !self.accept_missing_safety_state
            && !self.mutants.ignore_restored_marker
        {
            self.start_catching_up(true);
            return Ok(());
        }
        if self.catching_up.is_some() {
            self.replica = None;
            return Ok(());
        }
        let vset = self.parent.validator_set.clone();
        if vset.index_of(&self.key.public()).is_none() {
            if self.replica.is_some() {
                tracing::warn!("this node left the validator set; following as an observer");
            }
            self.replica = None;
            return Ok(());
        }
        let mut core = ReplicaConfig::new(self.chain_id.clone(), vset.clone(), self.key.clone());
        core.timeout_base_ms = self.cfg.round_timeout_ms;
        core.timeout_max_ms = self.cfg.round_timeout_ms.saturating_mul(16);
        core.bug_view_change_without_cert = self.mutants.view_change_without_cert;
        core.bug_ignore_highest_prepared = self.mutants.ignore_highest_prepared;
        core.bug_accept_2f_votes = self.mutants.accept_2f_votes;
        core.bug_fall_below_ahead_votes = self.mutants.fall_below_ahead_votes;
        core.wait_for_work = true;
        core.pipeline = self.cfg.pipeline;
        let tip = CommittedTip {
            height: self.parent.height,
            hash: self.parent.hash,
            view: match self.store.certificate(self.parent.height)? {
                Some(c) => c.view,
                None => 0,
            },
        };
        let saved = match self.store.safety_state()? {
            Some(bytes) => Some(SafetyState::decode(&bytes)?),
            None => None,
        };
        if restore {
            // Whether this key is a validator around the tip: then it may
            // have voted there, whether or not the tip's certificate (any
            // quorum of commit votes) holds its signature. The next
            // height's set is the tip's unless the tip changed it; then it
            // stands in (at worst the node waits one more block).
            let validator_at_tip = vset.index_of(&self.key.public()).is_some();
            self.abstain_through = amnesia_guard(
                self.parent.height,
                saved.as_ref().map(|s| s.height),
                validator_at_tip,
                self.accept_missing_safety_state,
            );
            if let Some(h) = self.abstain_through {
                tracing::error!(
                    committed = self.parent.height,
                    abstain_through = h,
                    "consensus safety state is missing or older than this validator's own votes: \
                     not voting until the consortium has committed height {h}, since this key \
                     may already have voted there (node run --accept-missing-safety-state \
                     overrides; see the operator guide)"
                );
            }
        }
        if let Some(h) = self.abstain_through {
            if self.parent.height <= h {
                self.replica = None;
                return Ok(());
            }
            tracing::warn!(
                height = self.parent.height,
                "the chain has moved past the heights this validator may have voted at; voting again"
            );
            self.abstain_through = None;
        }
        let replica = match (restore, saved) {
            (true, Some(s)) => {
                tracing::info!(
                    height = s.height,
                    view = s.view,
                    "restoring consensus safety state"
                );
                Replica::restore(core, s, tip)?
            }
            _ => Replica::new(core, tip)?,
        };
        self.replica = Some(replica);
        Ok(())
    }

    fn tick(&mut self) -> anyhow::Result<()> {
        let now = self.now.mono_ms;
        for (height, view, kind) in self.timers.take_due(now) {
            self.feed(Input::Timeout { kind, view, height })?;
        }
        if self.proposal_deadline().is_some_and(|at| at <= now) {
            self.propose()?;
        }
        if now >= self.next_flush_ms {
            self.next_flush_ms = now + GOSSIP_FLUSH_MS;
            self.flush_gossip();
        }
        if now >= self.next_expire_ms {
            self.next_expire_ms = now + EXPIRE_EVERY_MS;
            let expired = self.mempool.expire_gaps(now);
            if !expired.is_empty() {
                tracing::info!(
                    txs = expired.len(),
                    ttl_ms = self.gap_ttl_ms,
                    "dropped pending transactions stuck behind a nonce gap"
                );
                self.telemetry
                    .count(Count::ExpiredTxs, expired.len() as u64);
            }
        }
        if now >= self.next_regossip_ms {
            self.next_regossip_ms = now + REGOSSIP_EVERY_MS;
            self.regossip();
        }
        if now >= self.next_sync_ms {
            self.next_sync_ms = now + SYNC_EVERY_MS;
            // Observers follow the chain by sync alone; a validator that
            // has not committed for a while asks too, in case it missed
            // the messages that would have told its core it is behind.
            // An idle chain commits nothing for hours by design: only a
            // stall while work is due counts.
            let stalled = now.saturating_sub(self.last_commit_ms)
                > self.cfg.round_timeout_ms.saturating_mul(2)
                && self.work_due();
            if self.replica.is_none() || stalled {
                self.request_sync(self.parent.height + 1, None);
            }
        }
        Ok(())
    }

    fn proposal_deadline(&self) -> Option<u64> {
        let p = self.proposal.as_ref()?;
        let c = &self.cfg;
        if p.height == self.parent.height + 2 {
            // Pipelining: a block on this node's own block not committed
            // yet, paced from that block's proposal, and only while the
            // pool holds more than that block took (its transactions stay
            // in the pool until it commits).
            let taken = self
                .outcomes
                .get(&p.parent_hash)
                .map_or(usize::MAX, |c| c.block.ids().len());
            if self.mempool.len() <= taken {
                return None;
            }
            let from = match self.last_proposed {
                Some((h, t)) if h + 1 == p.height => t,
                _ => self.now.mono_ms,
            };
            let full = self.mempool.len() >= taken.saturating_add(c.max_block_txs);
            return Some(if full {
                self.now.mono_ms
            } else {
                from.saturating_add(c.block_interval_ms)
            });
        }
        // A full mempool proposes at once, but only while blocks come out
        // full: pending transactions that cannot execute yet (a nonce gap)
        // must not make the leader propose a stream of empty blocks.
        if self.mempool.len() >= c.max_block_txs && self.last_block_full {
            return Some(self.now.mono_ms);
        }
        // Only transactions that can run count as work: two transactions
        // behind a nonce gap must not raise the block rate.
        let ready = self.mempool.has_ready();
        let wait = if !ready {
            c.empty_block_interval_ms
        } else {
            c.block_interval_ms
        };
        // With work ready, the interval counts from this node's proposal
        // of the parent, not from the parent's commit: a block cycle is
        // the interval or the time consensus takes, whichever is longer,
        // instead of their sum. Never before the parent committed here
        // (the proposal needs its certificate), and, after anything else
        // (a view change, another leader's block), from the commit as
        // before. An empty block keeps the empty-block pace from the commit.
        let mut at = paced_from(
            self.last_proposed,
            self.parent.height,
            ready,
            self.last_commit_ms,
            wait,
        );
        // A quiet chain (ADR 017): with nothing to include, no block before
        // the state's next due time, unless a view change happened here.
        let view = self.proposal.as_ref().map_or(0, |p| p.view);
        if !ready && !self.after_view_change(view) {
            if self.mutants.ignore_next_due {
                return None;
            }
            if let Some(d) = self.due_mono() {
                at = at.max(d);
            }
        }
        if let Some(hold) = self.hold_proposal_until {
            at = at.max(hold);
        }
        Some(at)
    }

    /// Admits what passed admission's screen and signature check (ADR
    /// 016) to the mempool: one verdict per transaction, in order, the
    /// refusals counted. With `share` (a client's transactions), the
    /// backlog bound applies and admitted transactions queue for gossip
    /// (gossip does not echo to the publisher).
    fn admit_batch(&mut self, txs: Vec<Verdict>, share: bool) -> Vec<Result<Hash, TxRefusal>> {
        // Committed state cannot move during this call (commits run on
        // this task): each signer's account is read and decoded once per
        // batch, not once per transaction.
        let accounts = StoreAccounts(self.store.clone());
        let forgetful = NoncesForgotten(&accounts);
        let inner: &dyn AccountView = if self.mutants.admission_without_onchain_check {
            &forgetful
        } else {
            &accounts
        };
        let view = OncePerAccount::new(inner);
        let out = txs
            .into_iter()
            .map(|r| match r {
                Ok(v) => {
                    // A client's transaction waits only while the pool
                    // holds less than its backlog (ADR 023); a peer's was
                    // bounded by that peer.
                    if share {
                        if let Some(e) = self.mempool.backlog_refusal(&v.tx().body.signer) {
                            self.telemetry.count(Count::RefusedTxs, 1);
                            self.telemetry.count(Count::BacklogRefusedTxs, 1);
                            return Err(e.into());
                        }
                    }
                    let tx = share.then(|| v.tx().clone());
                    let len = codec::encoded_len(v.tx());
                    let res =
                        Self::admit(&mut self.mempool, self.telemetry.as_ref(), v, len, &view);
                    if let (Ok(_), Some(tx)) = (&res, tx) {
                        self.gossip_out.push(tx);
                    }
                    res
                }
                Err(e) => {
                    self.telemetry.count(Count::RefusedTxs, 1);
                    Err(e)
                }
            })
            .collect();
        if self.gossip_out.len() >= GOSSIP_BATCH_TXS {
            self.flush_gossip();
        }
        out
    }

    fn admit(
        mempool: &mut Mempool,
        telemetry: &dyn Telemetry,
        v: VerifiedTx,
        len: usize,
        view: &dyn AccountView,
    ) -> Result<Hash, TxRefusal> {
        match mempool.admit(v, len, view) {
            Ok(id) => {
                telemetry.count(Count::AdmittedTxs, 1);
                Ok(id)
            }
            Err(e) => {
                telemetry.count(Count::RefusedTxs, 1);
                if matches!(e, AdmitError::NonceTooLow { .. }) {
                    telemetry.count(Count::ResentTxs, 1);
                }
                Err(e.into())
            }
        }
    }

    fn admit_gossip(&mut self, txs: Vec<Verdict>) {
        // Each transaction reaches a node from several peers; a copy of
        // one already pending is not a refusal.
        let fresh: Vec<Verdict> = txs
            .into_iter()
            .filter(|r| !matches!(r, Ok(v) if self.mempool.contains(&v.id())))
            .collect();
        for r in self.admit_batch(fresh, false) {
            if let Err(e) = r {
                tracing::debug!(error = %e, "gossiped tx refused");
            }
        }
    }

    /// Publishes the outbox as gossip.
    fn flush_gossip(&mut self) {
        if self.gossip_out.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.gossip_out);
        self.publish_txs(txs);
    }

    fn publish_txs(&mut self, txs: Vec<SignedTx>) {
        // Keep each message well under the gossip size limit.
        let budget = self.gossip_max_bytes / 2;
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        for tx in txs {
            let len = codec::encoded_len(&tx);
            if !chunk.is_empty() && bytes + len > budget {
                self.publish_chunk(std::mem::take(&mut chunk));
                bytes = 0;
            }
            bytes += len;
            chunk.push(tx);
        }
        if !chunk.is_empty() {
            self.publish_chunk(chunk);
        }
    }

    fn publish_chunk(&mut self, txs: Vec<SignedTx>) {
        self.gossip_round = self.gossip_round.wrapping_add(1);
        let msg = TxGossip {
            round: self.gossip_round,
            txs,
        };
        self.out.push(Effect::Publish {
            channel: Channel::Txs,
            data: codec::encode(&msg),
        });
    }

    /// Transactions pending since the last look are re-gossiped once.
    fn regossip(&mut self) {
        let oldest = self.mempool.oldest(REGOSSIP_MAX);
        let now: BTreeSet<Hash> = oldest.iter().map(|v| v.id()).collect();
        let again: Vec<SignedTx> = oldest
            .into_iter()
            .filter(|v| self.regossip_prev.contains(&v.id()))
            .map(|v| v.tx().clone())
            .collect();
        self.regossip_prev = now;
        if !again.is_empty() {
            tracing::debug!(txs = again.len(), "re-gossiping long-pending transactions");
            self.telemetry
                .count(Count::RegossipedTxs, again.len() as u64);
            self.publish_txs(again);
        }
    }

    /// Feeds an input to the replica and executes its outputs in order;
    /// inputs produced by executing outputs are fed afterwards.
    fn feed(&mut self, input: Input) -> anyhow::Result<()> {
        let mut queue = VecDeque::from([input]);
        while let Some(inp) = queue.pop_front() {
            let Some(r) = self.replica.as_mut() else {
                return Ok(());
            };
            let outs = r.handle(self.now.wall_ms, inp);
            if let Some(e) = r.take_rejection() {
                tracing::debug!(error = %e, "consensus input rejected");
            }
            let generation = self.replica_generation;
            let mut outs = outs.into_iter();
            for o in outs.by_ref() {
                if let Some(next) = self.execute(o)? {
                    queue.push_back(next);
                }
                if self.replica_generation != generation && !self.mutants.keep_stale_outputs {
                    // That output committed a block that changed the
                    // validator set, and the replica was rebuilt for the new
                    // set. The rest of this vector, and every input derived
                    // from the old replica's outputs, belong to a core that
                    // no longer exists: it may already have entered the
                    // next height, replayed buffered messages checked
                    // against the old set and joined a later view. Running
                    // them would overwrite the new replica's safety state
                    // with the old one's and send messages the new replica
                    // never decided (issue 13). Drop them; the new replica's
                    // peers retransmit what it needs.
                    let dropped = outs.len() + queue.len();
                    if dropped > 0 {
                        tracing::warn!(
                            dropped,
                            "dropped the old replica's outputs after reconfiguration"
                        );
                    }
                    queue.clear();
                    break;
                }
            }
            self.track_view();
        }
        Ok(())
    }

    fn track_view(&mut self) {
        if let Some(r) = &self.replica {
            let v = r.view();
            if v > self.last_view {
                self.telemetry.count(Count::ViewChanges, v - self.last_view);
                tracing::info!(view = v, height = r.height(), "view changed");
            }
            self.last_view = v;
        }
    }

    fn execute(&mut self, o: Output) -> anyhow::Result<Option<Input>> {
        match o {
            Output::PersistSafetyState(s) => {
                if self.mutants.persist_after_send {
                    self.late_safety = Some(s.encode());
                    return Ok(None);
                }
                // Synced write: durable before anything later in this
                // output vector is handed to the shell.
                self.store.put_safety_state(&s.encode())?;
            }
            Output::Broadcast(env) | Output::Send { message: env, .. } => {
                self.out.push(Effect::Publish {
                    channel: Channel::Consensus,
                    data: env.encode(),
                });
            }
            Output::ScheduleTimeout {
                kind,
                view,
                height,
                after_ms,
            } => self.timers.schedule(
                (height, view, kind),
                self.now.mono_ms.saturating_add(after_ms),
            ),
            Output::RequestProposal {
                height,
                view,
                parent_hash,
                ..
            } => {
                self.proposal = Some(PendingProposal {
                    height,
                    view,
                    parent_hash,
                });
            }
            Output::ValidateBlock { block, now_ms, .. } => {
                let height = block.header.height;
                let block_hash = block.hash();
                let valid = self.validate(block, Some(now_ms));
                return Ok(Some(Input::BlockValidated {
                    height,
                    block_hash,
                    valid,
                }));
            }
            Output::Commit { block, certificate } => self.commit(block, certificate)?,
            Output::FetchBlock { hash, from, .. } => self.fetch_candidate(hash, &from),
            Output::RequestSync { from_height, peer } => {
                let p = self
                    .parent
                    .validator_set
                    .validators()
                    .get(peer as usize)
                    .and_then(|v| self.members.iter().position(|k| *k == v.key));
                self.request_sync(from_height, p);
            }
        }
        Ok(None)
    }

    /// Validates a block on top of the committed tip and checks that the
    /// store would take it; caches the outcome. Both must hold before this
    /// validator votes, so a block it helps certify always commits here
    /// (ADR 010).
    fn validate(&mut self, block: Block, now: Option<u64>) -> bool {
        let (height, hash) = (block.header.height, block.hash());
        match self.check_block(block, now) {
            Ok(()) => true,
            Err(Refusal::Store(e)) => {
                tracing::error!(height, block = %hash.short(), error = %e, "cannot check the block against the store; not voting");
                false
            }
            Err(Refusal::Invalid(e)) => {
                tracing::warn!(height, block = %hash.short(), error = %e, "block refused");
                false
            }
        }
    }

    fn check_block(&mut self, block: Block, now: Option<u64>) -> Result<(), Refusal> {
        let hash = block.hash();
        if self.outcomes.contains_key(&hash) {
            return Ok(());
        }
        // Pipelining (ADR 022): a block on a parent checked here but not
        // committed yet executes on the parent's writes over committed
        // state. Its outcome is exact once the parent commits: its hash
        // covers the parent's.
        let parent_checked = if block.header.parent_hash == self.parent.hash {
            None
        } else {
            let Some(p) = self
                .outcomes
                .get(&block.header.parent_hash)
                .filter(|p| p.height == self.parent.height + 1)
            else {
                return Err(Refusal::Invalid(
                    "its parent is neither the committed tip nor a block checked here".into(),
                ));
            };
            if p.reconfigures {
                return Err(Refusal::Invalid(
                    "its parent changes the validator set, the node registry or the modules; \
                     the block above it waits for it to commit"
                        .into(),
                ));
            }
            Some(p)
        };
        let started = self.telemetry.clock_secs();
        // The body is hashed here once; execution, the store's checks and
        // the commit take its ids from this value (ADR 026).
        let block = IdentifiedBlock::new(block).map_err(|b| {
            Refusal::Invalid(format!(
                "its body ({} transactions) does not match the header's transaction count \
                 ({}) and root",
                b.txs.len(),
                b.header.tx_count
            ))
        })?;
        // Nothing commits until the check is done: one view for the block.
        let view = StoreView::new(self.store.as_ref());
        let speculative = parent_checked.map(|p| Speculative::new(&view, &p.outcome.writes));
        let (state, parent, acc): (&dyn StateRead, &ParentInfo, &StateAccumulator) =
            match (&speculative, parent_checked) {
                (Some(s), Some(p)) => (s, &p.as_parent, &p.outcome.accumulator),
                _ => (&view, &self.parent, &self.acc),
            };
        // Transactions already verified on admission, or ahead for a
        // synced block, are not verified again.
        let mempool = &self.mempool;
        let pre = RefCell::new(std::mem::take(&mut self.preverified));
        let known = |_: &SignedTx, id: &Hash| {
            mempool
                .get(id)
                .cloned()
                .or_else(|| pre.borrow_mut().remove(id))
        };
        let r = validate_identified_with(
            &block,
            parent,
            now,
            self.cfg.max_clock_drift_ms,
            state,
            acc,
            &known,
        );
        let parent = parent.clone();
        drop(view);
        let checked = match r {
            Err(BlockInvalid::Execution {
                source: ExecError::Storage { reason },
                ..
            }) => Err(Refusal::Store(reason)),
            Err(e) => Err(Refusal::Invalid(e.to_string())),
            Ok((_, outcome)) => self.storable(block, &parent, outcome).map_err(|e| match e {
                StorageError::Rocks(_) | StorageError::Corrupt { .. } | StorageError::ReadOnly => {
                    Refusal::Store(e.to_string())
                }
                e => Refusal::Invalid(format!("the store would refuse it: {e}")),
            }),
        };
        self.telemetry
            .phase("validate", self.telemetry.clock_secs() - started);
        let checked = checked?;
        self.remember(hash, checked);
        Ok(())
    }

    /// Encodes the receipts and runs every check `commit_block` makes
    /// except the certificate's, on top of the committed head or, for a
    /// block whose parent is checked but not committed yet, on top of that
    /// parent. The result keeps the block for [`NodeCore::commit`], which
    /// stores it with the ids its body check computed (ADR 026).
    fn storable(
        &self,
        block: IdentifiedBlock,
        parent: &ParentInfo,
        outcome: BlockOutcome,
    ) -> Result<Checked, StorageError> {
        let receipts: Vec<Vec<u8>> = outcome.receipts.iter().map(codec::encode).collect();
        let block_events = codec::encode(&outcome.events);
        let pending = if parent.height == self.parent.height {
            None
        } else {
            let p = self
                .outcomes
                .get(&parent.hash)
                .ok_or(StorageError::HeightMismatch {
                    expected: self.parent.height + 1,
                    got: block.height(),
                })?;
            Some(PendingParent {
                height: parent.height,
                hash: parent.hash,
                ids: p.block.ids(),
            })
        };
        self.store.check_commit_block(
            &block,
            &outcome.writes,
            &receipts,
            &block_events,
            &outcome.accumulator,
            pending.as_ref(),
        )?;
        let as_parent = parent.child(block.block(), &outcome, None);
        let reconfigures = Changes::of(&outcome, &parent.validator_set).any();
        Ok(Checked {
            height: block.height(),
            as_parent,
            reconfigures,
            outcome,
            receipts,
            block_events,
            block,
        })
    }

    fn remember(&mut self, hash: Hash, checked: Checked) {
        if self.outcomes.len() >= OUTCOMES_MAX {
            // Keep the lowest heights: they are the ones about to commit.
            if let Some((&k, _)) = self.outcomes.iter().max_by_key(|(_, c)| c.height) {
                self.outcomes.remove(&k);
            }
        }
        self.outcomes.insert(hash, checked);
    }

    /// Whether the next block may be built on `hash`, this node's own
    /// block at the height in flight, checked but not committed
    /// (pipelining, ADR 022): it changes nothing the next block is checked
    /// against beyond state (P9), and one validator set certified the tip
    /// and certifies its child, so the tip's certificate, which the next
    /// header carries, checks against the child's certifiers.
    fn can_build_on_pending(&self, hash: &Hash) -> bool {
        self.cfg.pipeline
            && self.parent.height >= 1
            && self.parent.certificate.is_some()
            && self.parent.validator_set == self.parent.certifiers
            && self
                .outcomes
                .get(hash)
                .is_some_and(|c| c.height == self.parent.height + 1 && !c.reconfigures)
    }

    fn propose(&mut self) -> anyhow::Result<()> {
        let Some(p) = self.proposal.take() else {
            return Ok(());
        };
        let on_pending = if p.height == self.parent.height + 1 && p.parent_hash == self.parent.hash
        {
            false
        } else if p.height == self.parent.height + 2 && self.can_build_on_pending(&p.parent_hash) {
            true
        } else {
            return Ok(());
        };
        let started = self.telemetry.clock_secs();
        // The clock's time, unless the certificate the header carries says
        // the quorum was already later (ADR 014): then this clock lags, and
        // the floor is the earliest time the validators accept.
        anyhow::ensure!(
            self.parent.height == 0 || self.parent.certificate.is_some(),
            "height {}: the parent's certificate is not at hand; cannot propose",
            p.height
        );
        let store = self.store.clone();
        // Nothing commits while the block is built: one view for it.
        let view = StoreView::new(store.as_ref());
        // On a pending block: its writes over committed state, and the
        // header carries the tip's certificate, the grandparent's (v3).
        let pending = on_pending
            .then(|| pending_on(&self.parent, &self.outcomes, &p.parent_hash))
            .flatten();
        let speculative = pending
            .as_ref()
            .map(|(_, writes, _)| Speculative::new(&view, writes));
        let (state, acc, parent): (&dyn StateRead, &StateAccumulator, ParentInfo) =
            match (&speculative, pending) {
                (Some(s), Some((parent, _, acc))) => (s, acc, parent),
                _ => (&view, &self.acc, self.parent.clone()),
            };
        let c = &self.cfg;
        let txs = match speculative {
            Some(_) => {
                self.mempool
                    .select(c.max_block_txs, c.max_block_bytes, &StateAccounts(state))
            }
            None => self.mempool.select(
                c.max_block_txs,
                c.max_block_bytes,
                &StoreAccounts(self.store.clone()),
            ),
        };
        let timestamp = Timestamp(self.now.wall_ms).max(parent.next_time_floor());
        let ctx = BlockContext {
            chain_id: self.chain_id.clone(),
            height: p.height,
            timestamp,
            proposer: self.key.public(),
        };
        let built = build_block(&parent, &ctx, p.view, &txs, state, acc)?;
        let (mut block, mut outcome) = (identified(built.0)?, built.1);
        let mut candidates = txs;
        // Never propose what this store could not commit. Execution rules
        // out every known cause (ADR 010), so this is a damaged index, a
        // chain from before the inclusion rule, or a failing disk, and it
        // is loud. A transaction the index already holds leaves the pool
        // and the block is built again without it (a bounded number of
        // times); any other refusal proposes an empty block and drops
        // nothing, so no acknowledged transaction is lost to a bad read.
        let mut attempts = 0;
        let checked = loop {
            let txs = block.ids().len();
            match self.storable(block, &parent, outcome) {
                Ok(c) => break c,
                Err(e) => {
                    attempts += 1;
                    tracing::error!(
                        height = p.height,
                        txs,
                        error = %e,
                        "the block built here would not commit"
                    );
                    match e {
                        StorageError::DuplicateTx { id, .. } if attempts < 4 => {
                            self.mempool.drop_txs(&[id]);
                            candidates.retain(|v| v.id() != id);
                        }
                        _ if txs > 0 => candidates.clear(),
                        e => {
                            anyhow::bail!(
                                "height {}: even an empty block would not commit here: {e}",
                                p.height
                            )
                        }
                    }
                    let built = build_block(&parent, &ctx, p.view, &candidates, state, acc)?;
                    (block, outcome) = (identified(built.0)?, built.1);
                }
            }
        };
        let block = checked.block.block();
        if on_pending && block.txs.is_empty() {
            // Nothing beyond the pending block's transactions: the request
            // is asked again once that block commits.
            return Ok(());
        }
        // Nothing made it into the block and nothing is due: a block now
        // would be refused (ADR 017). Keep the request and look again after
        // the empty-block pace, or at the due time if that comes first.
        if let Err(e) = empty_block_allowed(&block.header, state) {
            tracing::debug!(height = p.height, view = p.view, error = %e, "not proposing an empty block yet");
            let retry = self.now.mono_ms + self.cfg.empty_block_interval_ms.max(1);
            self.hold_proposal_until = Some(self.due_mono().map_or(retry, |d| d.min(retry)));
            self.proposal = Some(p);
            return Ok(());
        }
        drop(view);
        self.hold_proposal_until = None;
        self.last_proposed = Some((p.height, self.now.mono_ms));
        if on_pending {
            self.telemetry.count(Count::PipelinedProposals, 1);
        }
        self.telemetry
            .phase("propose", self.telemetry.clock_secs() - started);
        tracing::debug!(
            height = p.height,
            view = p.view,
            txs = block.txs.len(),
            pipelined = on_pending,
            "proposing"
        );
        // The replica gets its own copy; the outcome keeps the identified
        // block for the commit.
        let block = block.clone();
        self.remember(block.hash(), checked);
        self.feed(Input::ProposalReady { block })
    }

    /// Whether this build carries `m` (the test ceiling counts too).
    fn carries(&self, m: &ModuleVersion) -> bool {
        contracts::carries(m)
            && self
                .module_ceiling
                .iter()
                .all(|c| c.name != m.name || m.version <= c.version)
    }

    /// Reads the module versions in force and the scheduled upgrade after
    /// `height` (ADR 017, contract upgrades). A node whose build lacks a
    /// version in force cannot execute anything and stops; one that lacks
    /// a scheduled version says so at once, loudly, so the operator can
    /// install a release before the upgrade height.
    fn check_modules(&mut self, height: u64) -> anyhow::Result<()> {
        let state = StoreState(self.store.as_ref());
        let modules = aidledger_execution::read_modules(&state)
            .map_err(|e| anyhow::anyhow!("height {height}: reading the module versions: {e}"))?;
        let scheduled = aidledger_execution::read_scheduled_upgrade(&state)
            .map_err(|e| anyhow::anyhow!("height {height}: reading the scheduled upgrade: {e}"))?;
        let missing: Vec<&ModuleVersion> = modules.iter().filter(|m| !self.carries(m)).collect();
        if !missing.is_empty() {
            let missing = missing
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            anyhow::bail!(
                "height {height}: the chain runs {missing}, which this build of aidledger does not \
                 carry (it carries {}). The node stops without executing anything; install a \
                 release that carries {missing} and start it again",
                self.carried_list(),
            );
        }
        self.upgrade = scheduled.map(|u| {
            Arc::new(UpgradeStatus {
                missing: u
                    .modules
                    .iter()
                    .filter(|m| !self.carries(m))
                    .cloned()
                    .collect(),
                modules: u.modules,
                at_height: u.at_height,
            })
        });
        if let Some(u) = &self.upgrade {
            if u.missing.is_empty() {
                tracing::info!(
                    height,
                    at_height = u.at_height,
                    modules = %contracts::show_modules(&u.modules),
                    "contract upgrade scheduled; this build carries it"
                );
            } else {
                tracing::error!(
                    height,
                    at_height = u.at_height,
                    missing = %contracts::show_modules(&u.missing),
                    carried = %self.carried_list(),
                    "contract upgrade scheduled that this build does not carry: install a release \
                     that carries it before the upgrade height, or this node stops there"
                );
            }
        }
        if !self.modules.is_empty() && *self.modules != *modules {
            tracing::warn!(
                height,
                modules = %contracts::show_modules(&modules),
                "contract modules upgraded"
            );
        }
        self.modules = Arc::from(modules);
        Ok(())
    }

    /// Stops the node after committing the block before an upgrade it
    /// cannot execute: it never votes on, or executes, a block whose
    /// rules it lacks.
    fn stop_before_missing_modules(&self, height: u64) -> anyhow::Result<()> {
        match &self.upgrade {
            Some(u) if !u.missing.is_empty() && u.at_height == height + 1 => anyhow::bail!(
                "height {}: the chain switches to {} there, which this build of aidledger does \
                 not carry (it carries {}). The node stops before executing that block; install \
                 a release that carries {} and start it again: it resumes from height {height}",
                u.at_height,
                contracts::show_modules(&u.modules),
                self.carried_list(),
                contracts::show_modules(&u.missing),
            ),
            _ => Ok(()),
        }
    }

    fn carried_list(&self) -> String {
        let carried: Vec<ModuleVersion> = contracts::carried_versions()
            .into_iter()
            .filter(|m| self.carries(m))
            .collect();
        contracts::show_modules(&carried)
    }

    /// Rebuilds the live members from the committed node registry after a
    /// block that changed it: new keys join the end of the member table,
    /// removed ones stop being live, and the shell is told to follow.
    fn refresh_members(&mut self, height: u64) -> anyhow::Result<()> {
        self.settle_keys(height)?;
        let nodes = aidledger_execution::read_nodes(&StoreState(self.store.as_ref()))
            .map_err(|e| anyhow::anyhow!("height {height}: reading the node registry: {e}"))?;
        let me = self.key.public();
        let mine =
            |k: &PublicKey| *k == me || self.next_key.as_ref().is_some_and(|n| n.public() == *k);
        if !nodes.iter().any(|n| n.key == me) {
            tracing::error!(
                height,
                key = %me,
                "this node's key is not in the node registry at this height: the members refuse \
                 its connections (removed by governance, or not registered yet)"
            );
        }
        let mut live = BTreeSet::new();
        for n in nodes.iter().filter(|n| !mine(&n.key)) {
            let i = match self.members.iter().position(|k| *k == n.key) {
                Some(i) => i,
                None => {
                    self.members.push(n.key);
                    self.members.len() - 1
                }
            };
            live.insert(i);
        }
        let added: Vec<String> = live
            .difference(&self.live)
            .map(|p| self.members[*p].to_string())
            .collect();
        let removed: Vec<String> = self
            .live
            .difference(&live)
            .map(|p| self.members[*p].to_string())
            .collect();
        if added.is_empty() && removed.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            height,
            added = ?added,
            removed = ?removed,
            members = live.len(),
            "the node registry changed; the network follows it"
        );
        self.connected.retain(|p| live.contains(p));
        self.live = live;
        self.out.push(Effect::Members {
            table: self.members.clone(),
            live: self.live.iter().copied().collect(),
        });
        Ok(())
    }

    /// Follows a node-key replacement (ADR 017, [`choose_keys`]): the
    /// staged key becomes the network identity once registered as this
    /// key's replacement, and the signing key once this key is retired.
    /// The shell is told when either moves. Runs before the replica is
    /// rebuilt for the height the registry was read at, so a validator's
    /// new replica signs with the key the new set names.
    fn settle_keys(&mut self, height: u64) -> anyhow::Result<()> {
        let Some(next) = self.next_key.as_ref().map(Keypair::public) else {
            return Ok(());
        };
        if self.mutants.ignore_key_replacement {
            return Ok(());
        }
        let choice = choose_keys(
            &StoreState(self.store.as_ref()),
            &self.key.public(),
            Some(&next),
        )
        .map_err(|e| anyhow::anyhow!("height {height}: {e:#}"))?;
        let old = self.key.public();
        let before = (old, self.network_key);
        if choice.promote {
            if let Some(k) = self.next_key.take() {
                self.key = k;
            }
            tracing::warn!(
                height,
                old = %old,
                new = %next,
                "this node's key was replaced: the staged key signs from the next height"
            );
        } else if choice.network != self.network_key {
            tracing::warn!(
                height,
                old = %old,
                new = %next,
                "governance registered the staged key as this node's replacement: the network \
                 identity moves to it now; the old key signs until the replacement's height"
            );
        }
        self.network_key = choice.network;
        if (self.key.public(), self.network_key) != before {
            self.out.push(Effect::Keys {
                signing: self.key.public(),
                network: self.network_key,
            });
        }
        Ok(())
    }

    fn commit(&mut self, block: Block, certificate: CommitCertificate) -> anyhow::Result<()> {
        let hash = block.hash();
        let height = block.header.height;
        if height <= self.parent.height {
            return Ok(()); // Already committed (a late duplicate).
        }
        anyhow::ensure!(
            height == self.parent.height + 1,
            "asked to commit height {height} on top of {}",
            self.parent.height
        );
        if !self.outcomes.contains_key(&hash) {
            match self.check_block(block, None) {
                Ok(()) => {}
                Err(Refusal::Store(e)) => anyhow::bail!(
                    "height {height}: cannot read the store to check certified block {hash}: \
                     {e}. The node stops; nothing of this block was written. Fix the disk \
                     and start the node again"
                ),
                Err(Refusal::Invalid(e)) => anyhow::bail!(
                    "height {height}: certified block {hash} cannot be committed here: {e}. \
                     A quorum certified it, so this node's state or store differs from the \
                     consortium's; the node stops rather than diverge. Check the disk, then \
                     resync this node from its peers (wipe its data directory) or restore a \
                     backup"
                ),
            }
        }
        self.commit_checked(hash, certificate)
    }

    /// Commits the block with this hash, checked here before: the block
    /// stored is the one checked. Its header is the certified block's (the
    /// same hash), and both bodies match that header's transaction root,
    /// so they are the same body (ADR 026).
    fn commit_checked(&mut self, hash: Hash, certificate: CommitCertificate) -> anyhow::Result<()> {
        let Some(checked) = self.outcomes.remove(&hash) else {
            anyhow::bail!("block {hash}: validated outcome vanished");
        };
        let height = checked.height;
        anyhow::ensure!(
            height == self.parent.height + 1,
            "asked to commit height {height} on top of {}",
            self.parent.height
        );
        let Checked {
            outcome,
            receipts,
            block_events,
            block,
            ..
        } = checked;
        let ids = block.ids().to_vec();
        let started = self.telemetry.clock_secs();
        let rejected = outcome.receipts.iter().filter(|r| !r.is_applied()).count();
        // Everything read from the block and its writes is taken before
        // they move into the batch: the store takes them without a copy.
        let next_due = match outcome
            .writes
            .get(aidledger_execution::contracts::keys::NEXT_DUE)
        {
            Some(Some(bytes)) => Some(codec::decode(bytes).ok()),
            _ => None,
        };
        let Changes {
            validators: vset_changed,
            registry: registry_changed,
            modules: modules_changed,
        } = Changes::of(&outcome, &self.parent.validator_set);
        let parent = self
            .parent
            .child(block.block(), &outcome, Some(certificate.clone()));
        let BlockOutcome {
            writes,
            accumulator,
            validator_set,
            ..
        } = outcome;
        let next_validator_set =
            (validator_set.hash() != block.header.validator_set_hash).then_some(validator_set);
        let batch = CommitBatch {
            block,
            certificate,
            state_writes: writes,
            receipts,
            block_events,
            accumulator: accumulator.clone(),
            next_validator_set,
        };
        // A synced block (catch-up) is written without waiting for the
        // disk; the end of its sync response syncs them all, once (ADR 007
        // amendment). Any synced write in between, such as the safety state
        // a replica persists on entering the next height, syncs it too.
        let stored = match &mut self.unsynced_blocks {
            Some(n) => self.store.commit_block_deferred(batch).map(|()| *n += 1),
            None => self.store.commit_block(batch),
        };
        stored.map_err(|e| {
            anyhow::anyhow!(
                "height {height}: writing certified block {hash} failed: {e}. The node stops; \
                 nothing of this block was written. Fix the cause (disk space, permissions, I/O \
                 errors in the system log) and start the node again: it commits the block then"
            )
        })?;
        let t = &self.telemetry;
        t.phase("persist", t.clock_secs() - started);
        t.phase(
            "round",
            self.now.mono_ms.saturating_sub(self.height_started_ms) as f64 / 1000.0,
        );
        t.count(Count::CommittedBlocks, 1);
        t.count(Count::CommittedTxs, ids.len() as u64);
        t.count(Count::RejectedTxs, rejected as u64);
        t.block_txs(ids.len());
        if let Some(due) = next_due {
            self.next_due = due;
        }
        self.hold_proposal_until = None;
        self.parent = parent;
        self.acc = accumulator;
        // What is left was checked on this block (pipelining); blocks
        // checked on a sibling of it lost with it: their outcome was on
        // another state.
        self.outcomes
            .retain(|_, c| c.height == height + 1 && c.as_parent.grand_hash == hash);
        self.proposal = None;
        self.last_block_full = ids.len() >= self.cfg.max_block_txs;
        self.last_commit_ms = self.now.mono_ms;
        self.height_started_ms = self.now.mono_ms;
        let accounts = StoreAccounts(self.store.clone());
        self.mempool.on_commit(&ids, &accounts);
        tracing::info!(
            height,
            view = self.replica.as_ref().map(|r| r.view()).unwrap_or(0),
            txs = ids.len(),
            block = %hash.short(),
            state_root = %self.parent.state_root.short(),
            "committed"
        );
        self.out.push(Effect::Committed { height, txs: ids });
        if modules_changed {
            self.check_modules(height)?;
        }
        self.stop_before_missing_modules(height)?;
        if registry_changed {
            self.refresh_members(height)?;
        }
        let abstained_enough = self.abstain_through.is_some_and(|h| height > h);
        if vset_changed || abstained_enough {
            if vset_changed {
                tracing::warn!(height, "validator set changed; reconfiguring consensus");
            }
            // Messages the old replica buffered for later heights were
            // checked against its set; the new replica checks them again
            // against the set that signs the next height.
            let carried = self
                .replica
                .as_mut()
                .map(|r| r.take_buffered())
                .unwrap_or_default();
            self.rebuild_replica(false)?;
            // The new replica starts from nothing of the old one's; feeding
            // it from inside the old replica's output loop is safe because
            // `feed` stops that loop as soon as it sees the new generation.
            self.feed(Input::Start)?;
            for bytes in carried {
                self.feed(Input::Message(bytes))?;
            }
        }
        Ok(())
    }

    fn serve_sync(&self, data: &[u8]) -> Vec<u8> {
        use aidledger_types::wire::{
            SetChangesResponse, SnapshotChunkResponse, SnapshotManifestResponse,
            SnapshotOffersResponse,
        };
        let head = self.parent.height;
        // The lowest height this store holds a block for: 1, or the
        // snapshot height a pruned node joined from (ADR 017 part 4).
        let base = self.base;
        let mut resp = SyncResponse {
            head,
            base,
            blocks: Vec::new(),
        };
        let (from, max) =
            match codec::decode_with_limit(data, aidledger_types::wire::SYNC_REQUEST_MAX_BYTES) {
                Ok(SyncRequest::Blocks { from, max }) => (from, max),
                Ok(SyncRequest::Candidate { hash }) => {
                    let block = self
                        .replica
                        .as_ref()
                        .and_then(|r| r.candidate_block(&hash))
                        .cloned();
                    return codec::encode(&CandidateResponse { block });
                }
                Ok(SyncRequest::SetChanges { after }) => {
                    let changes = self
                        .store
                        .set_changes(after, aidledger_types::snapshot::SET_CHANGES_MAX)
                        .unwrap_or_default();
                    return codec::encode(&SetChangesResponse { changes });
                }
                // Snapshots are served by the shell from its snapshot
                // directory, off this task; a core asked directly has none.
                Ok(SyncRequest::SnapshotOffers) => {
                    return codec::encode(&SnapshotOffersResponse {
                        head,
                        base,
                        heights: Vec::new(),
                    })
                }
                Ok(SyncRequest::SnapshotManifest { .. }) => {
                    return codec::encode(&SnapshotManifestResponse { manifest: None })
                }
                Ok(SyncRequest::SnapshotChunk { .. }) => {
                    return codec::encode(&SnapshotChunkResponse { chunk: None })
                }
                Err(_) => return codec::encode(&resp),
            };
        let max = u64::from(max).clamp(1, self.cfg.sync_batch.max(1));
        let mut bytes = 0usize;
        let mut h = from.max(1);
        while h <= head && h < from.max(1) + max {
            let (Ok(Some(b)), Ok(Some(c))) = (self.store.block(h), self.store.certificate(h))
            else {
                break;
            };
            bytes += codec::encoded_len(&b) + codec::encoded_len(&c);
            if bytes > self.sync_response_max_bytes / 2 && !resp.blocks.is_empty() {
                break;
            }
            resp.blocks.push((b, c));
            h += 1;
        }
        codec::encode(&resp)
    }

    fn request_sync(&mut self, from: u64, peer: Option<Peer>) {
        if let Some((_, at)) = self.sync_in_flight {
            if self.now.mono_ms.saturating_sub(at) < SYNC_PATIENCE_MS {
                return;
            }
        }
        let peer = match peer.filter(|p| self.connected.contains(p)) {
            Some(p) => p,
            None => {
                if self.connected.is_empty() {
                    return;
                }
                self.sync_rr = self.sync_rr.wrapping_add(1);
                self.connected[self.sync_rr % self.connected.len()]
            }
        };
        let data = codec::encode(&SyncRequest::Blocks {
            from,
            max: u32::try_from(self.cfg.sync_batch).unwrap_or(u32::MAX),
        });
        self.next_tag = self.next_tag.wrapping_add(1);
        let tag = self.next_tag;
        self.sync_in_flight = Some((tag, self.now.mono_ms));
        while self.sync_peers.len() >= 16 {
            self.sync_peers.pop_first();
        }
        self.sync_peers.insert(tag, (peer, from));
        self.out.push(Effect::Request { tag, peer, data });
    }

    /// Asks one peer for a candidate block by hash: a validator that
    /// prepared it if one is connected, else any connected peer.
    fn fetch_candidate(&mut self, hash: Hash, from: &[u16]) {
        if self.fetch_in_flight.is_some() || self.connected.is_empty() {
            return;
        }
        let vset = &self.parent.validator_set;
        let preferred = from
            .iter()
            .filter_map(|v| vset.validators().get(usize::from(*v)))
            .filter_map(|v| self.members.iter().position(|k| *k == v.key))
            .find(|p| self.connected.contains(p));
        let peer = match preferred {
            Some(p) => p,
            None => {
                self.sync_rr = self.sync_rr.wrapping_add(1);
                self.connected[self.sync_rr % self.connected.len()]
            }
        };
        self.next_tag = self.next_tag.wrapping_add(1);
        let tag = self.next_tag;
        self.fetch_in_flight = Some((tag, hash));
        let data = codec::encode(&SyncRequest::Candidate { hash });
        self.out.push(Effect::Request { tag, peer, data });
    }

    /// A candidate block answered: handed to the replica if it is the one
    /// asked for (the replica checks that a certificate names it).
    fn on_candidate(&mut self, hash: Hash, data: &[u8]) -> anyhow::Result<()> {
        let resp: CandidateResponse =
            match codec::decode_with_limit(data, self.sync_response_max_bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable candidate response");
                    return Ok(());
                }
            };
        match resp.block {
            Some(block) if block.hash() == hash => self.feed(Input::BlockFetched { block }),
            _ => Ok(()),
        }
    }

    /// A validator that voted on this chain before, on an empty store: it
    /// catches up by sync without voting.
    fn start_catching_up(&mut self, restored: bool) {
        if restored {
            tracing::warn!(
                height = self.parent.height,
                "this node's store was restored from a backup: this key may have voted at \
                 heights after the backup was taken. Not voting until it has caught up with its \
                 peers and one more height has committed (see the operator guide, \"Restore\")"
            );
        } else {
            tracing::error!(
                "this validator has run on this chain before but its store is empty: its data \
                 was lost, and this key may already have voted at the height in flight. Not \
                 voting until it has caught up with its peers and one more height has committed \
                 (see the operator guide, \"Restore\")"
            );
        }
        self.catching_up = Some(CatchingUp::default());
        self.replica_generation = self.replica_generation.wrapping_add(1);
        self.timers.clear();
        self.proposal = None;
        self.replica = None;
    }

    /// While catching up after an empty start: records what `peer` claims
    /// as its head, and decides whether this node is caught up. It is when
    /// every connected validator has answered (or failed to), at least
    /// f + 1 of them answered, and none claims more than this node holds.
    /// A claim above the height asked from counts only if the peer served
    /// that height, so a peer cannot keep this node abstaining by claiming
    /// a head it cannot show. (A late answer to an earlier request still
    /// counts in full: it served what it was asked.)
    fn note_catch_up_report(&mut self, asked: Option<(Peer, u64)>, head: u64, first: Option<u64>) {
        let tip = self.parent.height;
        let Some(CatchingUp { reports }) = &mut self.catching_up else {
            return;
        };
        if let Some((p, from)) = asked {
            let claim = if first == Some(from) {
                head
            } else {
                head.min(from.saturating_sub(1))
            };
            reports.insert(p, Some(claim));
        }
        let vset = &self.parent.validator_set;
        let validator_peers: Vec<Peer> = self
            .connected
            .iter()
            .copied()
            .filter(|p| {
                self.members
                    .get(*p)
                    .is_some_and(|k| vset.index_of(k).is_some() && *k != self.key.public())
            })
            .collect();
        let all_heard = validator_peers.iter().all(|p| reports.contains_key(p));
        let answered = reports.values().filter(|c| c.is_some()).count();
        let highest = reports.values().flatten().copied().max().unwrap_or(0);
        if all_heard && answered > vset.max_faulty() && highest <= tip {
            tracing::warn!(
                committed = tip,
                abstain_through = tip + 1,
                "caught up after an empty start; voting again once height {} has committed",
                tip + 1
            );
            self.catching_up = None;
            self.abstain_through = Some(tip + 1);
        }
    }

    /// One synced block at the tip: its certificate is checked, then the
    /// block is checked and committed through the replica, or directly
    /// when there is none. `pre` holds signatures verified ahead for it.
    /// False when the caller should stop: a bad block, or one the replica
    /// buffered.
    fn apply_synced(
        &mut self,
        block: Block,
        cert: CommitCertificate,
        pre: BTreeMap<Hash, VerifiedTx>,
    ) -> anyhow::Result<bool> {
        let (h, hash) = (block.header.height, block.hash());
        if let Err(e) =
            verify_certificate(&cert, &self.chain_id, &self.parent.validator_set, h, &hash)
        {
            tracing::warn!(height = h, error = %e, "synced block has a bad certificate");
            return Ok(false);
        }
        self.preverified = pre;
        let applied = if self.replica.is_some() {
            // The core validates and commits it through the usual path.
            self.feed(Input::Synced {
                block,
                certificate: cert,
            })
            .map(|()| self.parent.height >= h) // else buffered: wait for more
        } else if self.validate(block, None) {
            self.commit_checked(hash, cert).map(|()| true)
        } else {
            Ok(false)
        };
        self.preverified.clear();
        let applied = applied?;
        if applied {
            self.telemetry.count(Count::SyncedBlocks, 1);
        }
        Ok(applied)
    }

    fn on_sync_response(&mut self, data: &[u8], asked: Option<(Peer, u64)>) -> anyhow::Result<()> {
        let resp: SyncResponse = match codec::decode_with_limit(data, self.sync_response_max_bytes)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "undecodable sync response");
                return Ok(());
            }
        };
        if resp.blocks.is_empty() && resp.base > self.parent.height + 1 {
            tracing::debug!(
                base = resp.base,
                "the peer serves blocks only from its base height; another peer will be asked"
            );
        }
        let more = resp.head > self.parent.height + resp.blocks.len() as u64;
        let head = resp.head;
        let first = resp.blocks.first().map(|(b, _)| b.header.height);
        // The blocks that extend this node's tip, in order.
        let tip = self.parent.height;
        let mut next = tip + 1;
        let blocks: Vec<(Block, CommitCertificate)> = resp
            .blocks
            .into_iter()
            .skip_while(|(b, _)| b.header.height <= tip)
            .take_while(|(b, _)| {
                let fits = b.header.height == next;
                next += 1;
                fits
            })
            .collect();
        self.unsynced_blocks = Some(0);
        let applied = self.apply_response(blocks);
        let n = self.unsynced_blocks.take().unwrap_or(0);
        if n > 0 {
            self.store.sync_writes().map_err(|e| {
                anyhow::anyhow!(
                    "syncing the {n} blocks just stored to disk failed: {e}. The node stops; \
                     at worst it holds fewer blocks when it starts again and fetches them again. \
                     Fix the cause (disk space, I/O errors in the system log) and start it again"
                )
            })?;
        }
        applied?;
        self.note_catch_up_report(asked, head, first);
        if more {
            self.request_sync(self.parent.height + 1, None);
        }
        Ok(())
    }

    /// Checks, executes and commits the blocks of one sync response that
    /// extend the tip, in order, until one fails.
    fn apply_response(&mut self, blocks: Vec<(Block, CommitCertificate)>) -> anyhow::Result<()> {
        let txs: usize = blocks.iter().map(|(b, _)| b.txs.len()).sum();
        if txs < PREVERIFY_MIN_TXS {
            for (block, cert) in blocks {
                if !self.apply_synced(block, cert, BTreeMap::new())? {
                    break;
                }
            }
        } else {
            // A long catch-up: the signatures of the blocks ahead are
            // verified on a second thread while this one checks, executes
            // and commits (they were 44 % of a catch-up's time on one
            // thread). The verdicts are `verify_txs`'s, the function the
            // block check itself calls; a transaction that fails there is
            // simply not handed over and is checked again, with its error,
            // by the block check. At most `PREVERIFY_AHEAD` blocks wait.
            //
            // The thread verifies ahead only under a certificate that the
            // tip's validator set signed, so a peer cannot make it verify
            // transactions that no quorum certified. From a block that
            // names another set (a set change inside the response) it stops
            // verifying ahead and this thread does that work, as before.
            // The certificate checks here stay the ones that decide.
            let chain_id = self.chain_id.clone();
            let set = self.parent.validator_set.clone();
            std::thread::scope(|s| -> anyhow::Result<()> {
                let (ahead, verified) = std::sync::mpsc::sync_channel(PREVERIFY_AHEAD);
                s.spawn(move || {
                    let mut set = Some(set);
                    for (block, cert) in blocks {
                        let pre = verify_ahead(&mut set, &chain_id, &block, &cert);
                        if ahead.send((block, cert, pre)).is_err() {
                            return; // The checker stopped at a bad block.
                        }
                    }
                });
                for (block, cert, pre) in verified {
                    self.telemetry
                        .count(Count::SyncPreverifiedTxs, pre.len() as u64);
                    if !self.apply_synced(block, cert, pre)? {
                        break;
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// The signatures of a synced block, verified ahead of its check: those
/// that verify, by id. Only under a certificate from `set`, the set at the
/// tip, for a block whose header names that set; otherwise nothing, and
/// `set` becomes `None` so that no later block of the response is verified
/// ahead either (past a set change the thread cannot know the set).
fn verify_ahead(
    set: &mut Option<ValidatorSet>,
    chain_id: &ChainId,
    block: &Block,
    cert: &CommitCertificate,
) -> BTreeMap<Hash, VerifiedTx> {
    let h = &block.header;
    let certified = set.as_ref().is_some_and(|vs| {
        h.validator_set_hash == vs.hash()
            && verify_certificate(cert, chain_id, vs, h.height, &block.hash()).is_ok()
    });
    if !certified {
        *set = None;
        return BTreeMap::new();
    }
    verify_txs(block.txs.clone(), chain_id)
        .into_iter()
        .flatten()
        .map(|v| (v.id(), v))
        .collect()
}

/// The highest height a restarted validator must not vote at, if any. A
/// validator with committed blocks but no safety state, or whose safety
/// state is for a height below its tip although it was a validator there,
/// may have lost the record of what it signed (a deleted or
/// restored-older safety state, lost writes). It may already have voted at
/// heights up to the tip's next one, and voting there again could sign two
/// blocks at one height. So it abstains until the chain has committed that
/// height, unless the operator accepts the risk. The tip's certificate is
/// no evidence either way: it holds any quorum of commit votes, not
/// necessarily this validator's (the simulator found a rolled-back state
/// that an earlier rule, "own vote in the tip's certificate", let vote).
pub fn amnesia_guard(
    tip: u64,
    safety_height: Option<u64>,
    validator_at_tip: bool,
    accept: bool,
) -> Option<u64> {
    if accept || tip == 0 {
        return None;
    }
    match safety_height {
        None => Some(tip + 1),
        Some(h) if h < tip && validator_at_tip => Some(tip + 1),
        Some(_) => None,
    }
}

/// A block checked at the height in flight, as the next block is built
/// and checked on it before it commits: what that block is checked
/// against, and the pending block's writes and accumulator.
pub type Pending<'a> = (
    ParentInfo,
    &'a aidledger_execution::Writes,
    &'a StateAccumulator,
);

/// A block this node built: its body matches its header by construction,
/// so a mismatch is a fault here, not a peer's.
fn identified(block: Block) -> anyhow::Result<IdentifiedBlock> {
    IdentifiedBlock::new(block).map_err(|b| {
        anyhow::anyhow!(
            "height {}: the block built here does not match its own header",
            b.header.height
        )
    })
}

/// [`NodeCore::pending_parent`] on the fields it reads, so that the
/// proposer can hold it while it changes the mempool.
fn pending_on<'a>(
    tip: &ParentInfo,
    outcomes: &'a BTreeMap<Hash, Checked>,
    hash: &Hash,
) -> Option<Pending<'a>> {
    let c = outcomes.get(hash).filter(|c| c.height == tip.height + 1)?;
    let parent = ParentInfo {
        certificate: tip.certificate.clone(),
        ..c.as_parent.clone()
    };
    Some((parent, &c.outcome.writes, &c.outcome.accumulator))
}

/// What a block with this outcome changes beyond state, for the block
/// after it: the validator set, the node registry (members and keys), the
/// contract modules. The core reconfigures after committing such a block,
/// and (pipelining, P9) builds and checks nothing on it before.
struct Changes {
    validators: bool,
    registry: bool,
    modules: bool,
}

impl Changes {
    fn of(outcome: &BlockOutcome, validators: &ValidatorSet) -> Changes {
        // The writes are sorted: one probe at the prefix, not a pass over
        // every key the block wrote.
        let node_prefix = contracts::keys::NODE_PREFIX;
        Changes {
            validators: outcome.validator_set != *validators,
            registry: outcome
                .writes
                .range(node_prefix.to_vec()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(node_prefix)),
            modules: outcome.writes.contains_key(contracts::keys::MODULES)
                || outcome
                    .writes
                    .contains_key(contracts::keys::UPGRADE_SCHEDULED),
        }
    }

    fn any(&self) -> bool {
        self.validators || self.registry || self.modules
    }
}

/// When the next proposal is due, before the quiet chain's due time and
/// holds: `wait` after this node's proposal of the parent when it proposed
/// the parent and there is work ready, but never before the parent's
/// commit; otherwise `wait` after the commit.
fn paced_from(
    last_proposed: Option<(u64, u64)>,
    parent_height: u64,
    ready: bool,
    last_commit_ms: u64,
    wait: u64,
) -> u64 {
    match last_proposed {
        Some((h, t)) if ready && h == parent_height => t.saturating_add(wait).max(last_commit_ms),
        _ => last_commit_ms.saturating_add(wait),
    }
}

#[cfg(test)]
mod tests {
    use super::{amnesia_guard, paced_from};

    #[test]
    fn the_block_interval_counts_from_this_nodes_proposal_of_the_parent() {
        // Proposed height 9 at 1,000; it committed at 1,350; interval 200.
        // The next block is due at the commit, not 200 ms after it.
        assert_eq!(paced_from(Some((9, 1_000)), 9, true, 1_350, 200), 1_350);
        // A fast commit: the interval still separates the proposals.
        assert_eq!(paced_from(Some((9, 1_000)), 9, true, 1_050, 200), 1_200);
        // Another node proposed the parent, or this node's last proposal
        // is older: from the commit, as before.
        assert_eq!(paced_from(Some((7, 1_000)), 9, true, 1_350, 200), 1_550);
        assert_eq!(paced_from(None, 9, true, 1_350, 200), 1_550);
        // Nothing ready: the empty-block pace counts from the commit.
        assert_eq!(paced_from(Some((9, 1_000)), 9, false, 1_350, 1_000), 2_350);
        // No overflow at the ends.
        assert_eq!(paced_from(Some((9, u64::MAX)), 9, true, 0, 200), u64::MAX);
    }

    #[test]
    fn a_validator_that_lost_its_safety_state_abstains_past_the_next_height() {
        // A fresh chain: nothing was ever signed.
        assert_eq!(amnesia_guard(0, None, false, false), None);
        // Blocks but no safety state: it may have voted at tip + 1.
        assert_eq!(amnesia_guard(7, None, false, false), Some(8));
        // The usual restarts: in flight at tip + 1, or just committed.
        assert_eq!(amnesia_guard(7, Some(8), true, false), None);
        assert_eq!(amnesia_guard(7, Some(7), true, false), None);
        // Not a validator at the tip (an observer then, or added by it):
        // an old state from an earlier membership is expected.
        assert_eq!(amnesia_guard(7, Some(3), false, false), None);
        // A validator at the tip with an older state: it may have voted at
        // heights it no longer remembers, whatever the certificate holds.
        assert_eq!(amnesia_guard(7, Some(3), true, false), Some(8));
        // The operator's explicit override.
        assert_eq!(amnesia_guard(7, None, false, true), None);
        assert_eq!(amnesia_guard(7, Some(3), true, true), None);
    }
}
