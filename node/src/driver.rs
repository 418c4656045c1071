//! The consensus task: it owns the replica, the mempool, the execution
//! cache and the write side of the store, and executes the core's outputs
//! in order (docs/adr/006-node-driver.md, the contract in
//! `aidledger_consensus::io`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aidledger_consensus::{
    CommittedTip, Config as CoreConfig, Input, Output, Replica, SafetyState, TimeoutKind,
};
use aidledger_crypto::{verify_certificate, verify_txs, Keypair, VerifiedTx};
use aidledger_execution::{
    build_block, validate_block_with, BlockContext, BlockInvalid, BlockOutcome, ExecError,
    ParentInfo,
};
use aidledger_mempool::{AdmitError, Mempool, MempoolConfig};
use aidledger_network::NetPeerId as PeerId;
use aidledger_network::{NetEvent, NetworkHandle, Topic};
use aidledger_storage::{CommitBatch, RocksStore, StorageError, Store};
use aidledger_types::{
    codec, Block, ChainId, CommitCertificate, Hash, OrgId, SignedTx, StateAccumulator, Timestamp,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::state::{StoreAccounts, StoreState};

/// Capacity of the driver's own channel.
pub const DRIVER_CHANNEL: usize = 8192;
/// Most gossip messages, and most of their bytes, drained into one
/// admission turn: a burst must not hold consensus behind one enormous
/// signature batch. The first message is always taken (each is bounded by
/// the network's message limit); normal traffic is about 50 KB a message.
const GOSSIP_BATCH_MAX: usize = 512;
const GOSSIP_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Most executed-but-uncommitted block outcomes kept.
const OUTCOMES_MAX: usize = 64;
/// Most pending consensus timeouts. The core needs only those of its
/// current height and view; the rest are stale and it ignores them.
const TIMERS_MAX: usize = 64;
/// Every this many flush ticks (about a second), transactions that have
/// waited too long behind a nonce gap leave the mempool.
const EXPIRE_TICKS: u64 = 50;
/// Transactions gossiped together in one message (and flushed at least
/// every `GOSSIP_FLUSH_MS`).
const GOSSIP_BATCH_TXS: usize = 256;
const GOSSIP_FLUSH_MS: u64 = 20;
/// Every this many flush ticks, re-gossip transactions that have stayed
/// pending since the previous time: a peer (perhaps the leader) may have
/// dropped them while it was busy, and would otherwise never see them.
const REGOSSIP_TICKS: u64 = 100;
const REGOSSIP_MAX: usize = 2048;

/// A transaction gossip message: a batch of signed transactions. `round`
/// makes every message unique, so a re-gossiped transaction is not dropped
/// by gossipsub's duplicate filter (message ids are content hashes).
#[derive(Serialize, Deserialize, Debug)]
pub struct TxGossip {
    pub round: u64,
    pub txs: Vec<SignedTx>,
}

/// Messages to the driver from the API and the operator.
pub enum DriverMsg {
    Submit {
        tx: SignedTx,
        reply: oneshot::Sender<Result<Hash, String>>,
    },
    /// Many transactions, verified as a batch; one verdict per transaction.
    SubmitBatch {
        txs: Vec<SignedTx>,
        reply: oneshot::Sender<Vec<Result<Hash, String>>>,
    },
    IsPending {
        id: Hash,
        reply: oneshot::Sender<bool>,
    },
    /// Fault drills: cut this node off from every peer (true) or heal.
    Isolate(bool),
    Shutdown,
}

/// What the API reads without asking the driver.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub height: u64,
    pub block_hash: Hash,
    pub state_root: Hash,
    pub view: u64,
    pub leader: Option<OrgId>,
    pub peers: usize,
    pub mempool_txs: usize,
    pub last_block_time_ms: u64,
}

/// A committed block's transactions, for waiters.
#[derive(Clone, Debug)]
pub struct CommitNotice {
    pub txs: Vec<Hash>,
}

pub struct Shared {
    pub snapshot: RwLock<Snapshot>,
    pub commits: broadcast::Sender<Arc<CommitNotice>>,
    pub metrics: Metrics,
}

/// Block sync over request-response.
#[derive(Serialize, Deserialize, Debug)]
pub enum SyncRequest {
    Blocks { from: u64, max: u32 },
}

#[derive(Serialize, Deserialize, Debug)]
pub struct SyncResponse {
    pub head: u64,
    pub blocks: Vec<(Block, CommitCertificate)>,
}

/// A block that executed here and passed the store's commit checks: what
/// committing it will write.
struct Checked {
    height: u64,
    outcome: BlockOutcome,
    /// The encoded receipts, one per transaction.
    receipts: Vec<Vec<u8>>,
}

/// Why this node will not vote for a block.
enum Refusal {
    /// The block breaks a rule, or the store would refuse it.
    Invalid(String),
    /// The store could not be read: nothing is known about the block.
    Store(String),
}

struct PendingProposal {
    height: u64,
    view: u64,
    parent_hash: Hash,
}

pub struct Driver {
    chain_id: ChainId,
    cfg: NodeConfig,
    key: Keypair,
    store: Arc<RocksStore>,
    replica: Option<Replica>,
    core_cfg: Option<CoreConfig>,
    mempool: Mempool,
    net: NetworkHandle,
    /// Peer ids by validator index, and every member's peer id.
    validator_peers: Vec<PeerId>,
    members: Vec<PeerId>,
    parent: ParentInfo,
    acc: StateAccumulator,
    outcomes: BTreeMap<Hash, Checked>,
    proposal: Option<PendingProposal>,
    last_commit: Instant,
    height_started: Instant,
    sync_in_flight: Option<(u64, Instant)>,
    sync_rr: usize,
    shared: Arc<Shared>,
    last_view: u64,
    /// The last committed block was full: propose again without waiting.
    last_block_full: bool,
    gossip_out: Vec<SignedTx>,
    gossip_round: u64,
    flush_ticks: u64,
    regossip_prev: std::collections::BTreeSet<Hash>,
    /// The core's pending timeouts, one per (height, view, kind), each with
    /// its deadline; bounded by `TIMERS_MAX` (the lowest heights and views,
    /// stale for the core, go first). One table polled by the run loop
    /// instead of a task per timeout.
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
    /// When this driver started: the mempool's clock counts from here, so
    /// a wall-clock jump neither stops nor hastens gap expiry.
    started: Instant,
}

pub struct DriverParts {
    pub chain_id: ChainId,
    pub cfg: NodeConfig,
    pub key: Keypair,
    pub store: Arc<RocksStore>,
    pub net: NetworkHandle,
    pub validator_peers: Vec<PeerId>,
    pub members: Vec<PeerId>,
    pub parent: ParentInfo,
    pub acc: StateAccumulator,
    pub shared: Arc<Shared>,
    pub accept_missing_safety_state: bool,
}

impl Driver {
    pub fn new(p: DriverParts) -> anyhow::Result<Driver> {
        let m = &p.cfg.mempool;
        let mut mempool = Mempool::new(MempoolConfig {
            max_txs: m.max_txs,
            max_bytes: m.max_bytes,
            max_per_sender: m.max_per_sender,
            nonce_window: m.nonce_window,
            gap_ttl_ms: m.gap_ttl_ms,
        });
        let started = Instant::now();
        mempool.set_time(0);
        let mut d = Driver {
            chain_id: p.chain_id,
            cfg: p.cfg,
            key: p.key,
            store: p.store,
            replica: None,
            core_cfg: None,
            mempool,
            net: p.net,
            validator_peers: p.validator_peers,
            members: p.members,
            parent: p.parent,
            acc: p.acc,
            outcomes: BTreeMap::new(),
            proposal: None,
            last_commit: Instant::now(),
            height_started: Instant::now(),
            sync_in_flight: None,
            sync_rr: 0,
            shared: p.shared,
            last_view: 0,
            last_block_full: false,
            gossip_out: Vec::new(),
            gossip_round: 0,
            flush_ticks: 0,
            regossip_prev: std::collections::BTreeSet::new(),
            replica_generation: 0,
            timers: Timers::default(),
            abstain_through: None,
            accept_missing_safety_state: p.accept_missing_safety_state,
            started,
        };
        d.rebuild_replica(true)?;
        d.publish_snapshot();
        Ok(d)
    }

    /// (Re)creates the replica for the validator set in force at the next
    /// height. On start it restores the persisted safety state.
    fn rebuild_replica(&mut self, restore: bool) -> anyhow::Result<()> {
        self.replica_generation = self.replica_generation.wrapping_add(1);
        let vset = self.parent.validator_set.clone();
        if vset.index_of(&self.key.public()).is_none() {
            if self.replica.is_some() {
                tracing::warn!("this node left the validator set; following as an observer");
            }
            self.replica = None;
            self.core_cfg = None;
            return Ok(());
        }
        let mut core = CoreConfig::new(self.chain_id.clone(), vset.clone(), self.key.clone());
        core.timeout_base_ms = self.cfg.consensus.round_timeout_ms;
        core.timeout_max_ms = self.cfg.consensus.round_timeout_ms.saturating_mul(16);
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
            // Signature indices are into the set that certified the tip;
            // they are read against the next height's set only when the
            // tip did not change it.
            let tip_block = self.store.block(self.parent.height)?;
            let same_set = tip_block.is_some_and(|b| b.header.validator_set_hash == vset.hash());
            let my_vote_at_tip = match self.store.certificate(self.parent.height)? {
                Some(c) if same_set => {
                    let me = vset.index_of(&self.key.public());
                    c.signatures
                        .iter()
                        .any(|s| Some(usize::from(s.validator)) == me)
                }
                _ => false,
            };
            self.abstain_through = amnesia_guard(
                self.parent.height,
                saved.as_ref().map(|s| s.height),
                my_vote_at_tip,
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
                self.core_cfg = None;
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
                Replica::restore(core.clone(), s, tip)?
            }
            _ => Replica::new(core.clone(), tip)?,
        };
        self.replica = Some(replica);
        self.core_cfg = Some(core);
        Ok(())
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<DriverMsg>,
        mut net_rx: mpsc::Receiver<NetEvent>,
    ) -> anyhow::Result<()> {
        self.feed(Input::Start).await?;
        let mut sync_tick = tokio::time::interval(Duration::from_millis(1000));
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flush_tick = tokio::time::interval(Duration::from_millis(GOSSIP_FLUSH_MS));
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let propose_at = self.proposal_deadline();
            let timer_at = self.timers.next_deadline();
            tokio::select! {
                msg = rx.recv() => match msg {
                    None | Some(DriverMsg::Shutdown) => break,
                    Some(m) => self.on_msg(m).await?,
                },
                ev = net_rx.recv() => match ev {
                    None => break,
                    Some(ev) => self.on_net(ev, &mut net_rx).await?,
                },
                _ = tokio::time::sleep_until(propose_at.unwrap_or_else(Instant::now)), if propose_at.is_some() => {
                    self.propose().await?;
                }
                _ = sync_tick.tick() => self.sync_tick().await?,
                _ = flush_tick.tick() => self.gossip_tick().await,
                _ = tokio::time::sleep_until(timer_at.unwrap_or_else(Instant::now)), if timer_at.is_some() => {
                    self.fire_timers().await?;
                }
            }
            self.publish_snapshot();
        }
        tracing::info!("consensus driver stopped");
        Ok(())
    }

    fn proposal_deadline(&self) -> Option<Instant> {
        self.proposal.as_ref()?;
        let c = &self.cfg.consensus;
        // A full mempool proposes at once, but only while blocks come out
        // full: pending transactions that cannot execute yet (a nonce gap)
        // must not make the leader propose a stream of empty blocks.
        if self.mempool.len() >= c.max_block_txs && self.last_block_full {
            return Some(Instant::now());
        }
        // Only transactions that can run count as work: two transactions
        // behind a nonce gap must not raise the block rate.
        let wait = if !self.mempool.has_ready() {
            c.empty_block_interval_ms
        } else {
            c.block_interval_ms
        };
        Some(self.last_commit + Duration::from_millis(wait))
    }

    async fn on_msg(&mut self, m: DriverMsg) -> anyhow::Result<()> {
        match m {
            DriverMsg::Submit { tx, reply } => {
                let mut verdicts = self.admit_batch(vec![tx], true).await;
                let _ = reply.send(
                    verdicts
                        .pop()
                        .unwrap_or_else(|| Err("no verdict".to_string())),
                );
            }
            DriverMsg::SubmitBatch { txs, reply } => {
                let verdicts = self.admit_batch(txs, true).await;
                let _ = reply.send(verdicts);
            }
            DriverMsg::IsPending { id, reply } => {
                let _ = reply.send(self.mempool.contains(&id));
            }
            DriverMsg::Isolate(on) => {
                for p in self.members.clone() {
                    self.net.set_blocked(p, on).await.ok();
                }
                tracing::warn!(isolated = on, "isolation changed by operator");
            }
            DriverMsg::Shutdown => {}
        }
        Ok(())
    }

    /// Checks limits and signatures (one batch, the same verdicts as one
    /// by one), then admits to the mempool: one verdict per transaction,
    /// in order. With `share`, admitted transactions queue for gossip
    /// (gossip does not echo to the publisher).
    async fn admit_batch(&mut self, txs: Vec<SignedTx>, share: bool) -> Vec<Result<Hash, String>> {
        let mut out: Vec<Result<Hash, String>> = Vec::with_capacity(txs.len());
        let mut checked = Vec::with_capacity(txs.len());
        let mut slots = Vec::with_capacity(txs.len());
        for tx in txs {
            match tx.check_limits() {
                Ok(()) => {
                    slots.push(out.len());
                    // Replaced below by the verdict.
                    out.push(Err(String::new()));
                    checked.push(tx);
                }
                Err(e) => {
                    self.shared.metrics.refused_txs.inc();
                    out.push(Err(e.to_string()));
                }
            }
        }
        for (slot, r) in slots.into_iter().zip(verify_txs(checked, &self.chain_id)) {
            out[slot] = match r {
                Ok(v) => {
                    let tx = share.then(|| v.tx().clone());
                    let len = codec::encoded_len(v.tx());
                    let res = self.admit(v, len);
                    if let (Ok(_), Some(tx)) = (&res, tx) {
                        self.gossip_out.push(tx);
                    }
                    res
                }
                Err((_, e)) => {
                    self.shared.metrics.refused_txs.inc();
                    Err(e.to_string())
                }
            };
        }
        if self.gossip_out.len() >= GOSSIP_BATCH_TXS {
            self.flush_gossip().await;
        }
        out
    }

    fn admit(&mut self, v: VerifiedTx, len: usize) -> Result<Hash, String> {
        let accounts = StoreAccounts(self.store.clone());
        match self.mempool.admit(v, len, &accounts) {
            Ok(id) => {
                self.shared.metrics.admitted_txs.inc();
                Ok(id)
            }
            Err(e) => {
                self.shared.metrics.refused_txs.inc();
                if matches!(e, AdmitError::NonceTooLow { .. }) {
                    self.shared.metrics.resent_txs.inc();
                }
                Err(e.to_string())
            }
        }
    }

    async fn on_net(
        &mut self,
        ev: NetEvent,
        net_rx: &mut mpsc::Receiver<NetEvent>,
    ) -> anyhow::Result<()> {
        match ev {
            NetEvent::Gossip {
                topic: Topic::Consensus,
                data,
                ..
            } => {
                if self.replica.is_some() {
                    self.feed(Input::Message(data)).await?;
                } else {
                    // An observer: consensus traffic means the chain is
                    // moving; fetch what has committed (one request at a
                    // time) instead of waiting for the next sync tick.
                    self.request_sync(self.parent.height + 1, None).await;
                }
            }
            NetEvent::Gossip {
                topic: Topic::Txs,
                data,
                ..
            } => {
                // Batch what is already queued so signatures are checked
                // together; other events wait until the batch is admitted.
                let mut bytes = data.len();
                let mut batch = vec![data];
                let mut others = Vec::new();
                while batch.len() < GOSSIP_BATCH_MAX && bytes < GOSSIP_BATCH_BYTES {
                    match net_rx.try_recv() {
                        Ok(NetEvent::Gossip {
                            topic: Topic::Txs,
                            data,
                            ..
                        }) => {
                            bytes += data.len();
                            batch.push(data);
                        }
                        Ok(other) => {
                            others.push(other);
                            if others.len() >= 64 {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                self.admit_gossip(batch).await;
                for ev in others {
                    Box::pin(self.on_net(ev, net_rx)).await?;
                }
            }
            NetEvent::SyncRequest { data, reply, .. } => {
                let resp = self.serve_sync(&data);
                self.net.reply(reply, resp).await.ok();
            }
            NetEvent::SyncResponse { data, request, .. } => {
                if self.sync_in_flight.is_some_and(|(id, _)| id == request) {
                    self.sync_in_flight = None;
                }
                self.on_sync_response(&data).await?;
            }
            NetEvent::SyncFailed {
                reason, request, ..
            } => {
                if self.sync_in_flight.is_some_and(|(id, _)| id == request) {
                    self.sync_in_flight = None;
                }
                tracing::debug!(%reason, "sync request failed");
            }
            NetEvent::PeerConnected(_) | NetEvent::PeerDisconnected(_) => {
                self.shared
                    .metrics
                    .peers
                    .set(self.net.connected_peers().len() as i64);
            }
            NetEvent::Listening(_) => {}
        }
        Ok(())
    }

    async fn admit_gossip(&mut self, batch: Vec<Vec<u8>>) {
        let mut txs = Vec::new();
        // A transaction gossiped by two peers is verified once.
        let mut seen = std::collections::BTreeSet::new();
        for data in batch {
            let msg: TxGossip =
                match codec::decode_with_limit(&data, aidledger_network::GOSSIP_MAX_BYTES) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(error = %e, "undecodable transaction gossip");
                        continue;
                    }
                };
            txs.extend(msg.txs.into_iter().filter(|tx| {
                let id = tx.id();
                !self.mempool.contains(&id) && seen.insert(id)
            }));
        }
        for r in self.admit_batch(txs, false).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "gossiped tx refused");
            }
        }
    }

    /// Publishes the outbox as one gossip message.
    async fn flush_gossip(&mut self) {
        if self.gossip_out.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.gossip_out);
        self.publish_txs(txs).await;
    }

    async fn publish_txs(&mut self, txs: Vec<SignedTx>) {
        // Keep each message well under the gossip size limit.
        let budget = aidledger_network::GOSSIP_MAX_BYTES / 2;
        let mut chunk = Vec::new();
        let mut bytes = 0usize;
        for tx in txs {
            let len = codec::encoded_len(&tx);
            if !chunk.is_empty() && bytes + len > budget {
                self.publish_chunk(std::mem::take(&mut chunk)).await;
                bytes = 0;
            }
            bytes += len;
            chunk.push(tx);
        }
        if !chunk.is_empty() {
            self.publish_chunk(chunk).await;
        }
    }

    async fn publish_chunk(&mut self, txs: Vec<SignedTx>) {
        self.gossip_round = self.gossip_round.wrapping_add(1);
        let msg = TxGossip {
            round: self.gossip_round,
            txs,
        };
        self.net.publish(Topic::Txs, codec::encode(&msg)).await.ok();
    }

    async fn gossip_tick(&mut self) {
        self.flush_gossip().await;
        self.flush_ticks = self.flush_ticks.wrapping_add(1);
        let mono_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.mempool.set_time(mono_ms);
        if self.flush_ticks.is_multiple_of(EXPIRE_TICKS) {
            let expired = self.mempool.expire_gaps(mono_ms);
            if !expired.is_empty() {
                tracing::info!(
                    txs = expired.len(),
                    ttl_ms = self.cfg.mempool.gap_ttl_ms,
                    "dropped pending transactions stuck behind a nonce gap"
                );
                self.shared.metrics.expired_txs.inc_by(expired.len() as u64);
            }
        }
        if !self.flush_ticks.is_multiple_of(REGOSSIP_TICKS) {
            return;
        }
        // Transactions pending since the last look are re-gossiped once.
        let oldest = self.mempool.oldest(REGOSSIP_MAX);
        let now: std::collections::BTreeSet<Hash> = oldest.iter().map(|v| v.id()).collect();
        let again: Vec<SignedTx> = oldest
            .into_iter()
            .filter(|v| self.regossip_prev.contains(&v.id()))
            .map(|v| v.tx().clone())
            .collect();
        self.regossip_prev = now;
        if !again.is_empty() {
            tracing::debug!(txs = again.len(), "re-gossiping long-pending transactions");
            self.shared
                .metrics
                .regossiped_txs
                .inc_by(again.len() as u64);
            self.publish_txs(again).await;
        }
    }

    /// Feeds an input to the replica and executes its outputs in order;
    /// inputs produced by executing outputs are fed afterwards.
    async fn feed(&mut self, input: Input) -> anyhow::Result<()> {
        let mut queue = VecDeque::from([input]);
        while let Some(inp) = queue.pop_front() {
            let Some(r) = self.replica.as_mut() else {
                return Ok(());
            };
            let outs = r.handle(now_ms(), inp);
            if let Some(e) = r.take_rejection() {
                tracing::debug!(error = %e, "consensus input rejected");
            }
            let generation = self.replica_generation;
            let mut outs = outs.into_iter();
            for o in outs.by_ref() {
                if let Some(next) = self.execute(o).await? {
                    queue.push_back(next);
                }
                if self.replica_generation != generation {
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

    fn schedule_timer(&mut self, kind: TimeoutKind, height: u64, view: u64, after_ms: u64) {
        let at = Instant::now() + Duration::from_millis(after_ms);
        self.timers.schedule((height, view, kind), at);
    }

    /// Feeds every timeout whose deadline has passed, earliest first.
    async fn fire_timers(&mut self) -> anyhow::Result<()> {
        for (height, view, kind) in self.timers.take_due(Instant::now()) {
            self.feed(Input::Timeout { kind, view, height }).await?;
        }
        Ok(())
    }

    fn track_view(&mut self) {
        if let Some(r) = &self.replica {
            let v = r.view();
            if v > self.last_view {
                self.shared.metrics.view_changes.inc_by(v - self.last_view);
                tracing::info!(view = v, height = r.height(), "view changed");
            }
            self.last_view = v;
            self.shared.metrics.view.set(v as i64);
        }
    }

    async fn execute(&mut self, o: Output) -> anyhow::Result<Option<Input>> {
        match o {
            Output::PersistSafetyState(s) => {
                // Synced write: must be durable before anything later in
                // this output vector goes on the wire.
                self.store.put_safety_state(&s.encode())?;
            }
            Output::Broadcast(env) | Output::Send { message: env, .. } => {
                self.net.publish(Topic::Consensus, env.encode()).await.ok();
            }
            Output::ScheduleTimeout {
                kind,
                view,
                height,
                after_ms,
            } => self.schedule_timer(kind, height, view, after_ms),
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
                let valid = self.validate(&block, Some(now_ms));
                return Ok(Some(Input::BlockValidated {
                    height,
                    block_hash,
                    valid,
                }));
            }
            Output::Commit { block, certificate } => self.commit(block, certificate).await?,
            Output::RequestSync { from_height, peer } => {
                let p = self.validator_peers.get(peer as usize).copied();
                self.request_sync(from_height, p).await;
            }
        }
        Ok(None)
    }

    /// Validates a block on top of the committed tip and checks that the
    /// store would take it; caches the outcome. Both must hold before this
    /// validator votes, so a block it helps certify always commits here
    /// (ADR 010).
    fn validate(&mut self, block: &Block, now: Option<u64>) -> bool {
        match self.check_block(block, now) {
            Ok(()) => true,
            Err(Refusal::Store(e)) => {
                tracing::error!(height = block.header.height, block = %block.hash().short(), error = %e, "cannot check the block against the store; not voting");
                false
            }
            Err(Refusal::Invalid(e)) => {
                tracing::warn!(height = block.header.height, block = %block.hash().short(), error = %e, "block refused");
                false
            }
        }
    }

    fn check_block(&mut self, block: &Block, now: Option<u64>) -> Result<(), Refusal> {
        let hash = block.hash();
        if self.outcomes.contains_key(&hash) {
            return Ok(());
        }
        let started = Instant::now();
        let state = StoreState(self.store.as_ref());
        // Transactions already verified on admission are not verified again.
        let mempool = &self.mempool;
        let known = |tx: &SignedTx| mempool.get(&tx.id()).cloned();
        let r = validate_block_with(
            block,
            &self.parent,
            now,
            self.cfg.consensus.max_clock_drift_ms,
            &state,
            &self.acc,
            &known,
        );
        let checked = match r {
            Err(BlockInvalid::Execution {
                source: ExecError::Storage { reason },
                ..
            }) => Err(Refusal::Store(reason)),
            Err(e) => Err(Refusal::Invalid(e.to_string())),
            Ok((_, outcome)) => self.storable(block, outcome).map_err(|e| match e {
                StorageError::Rocks(_) | StorageError::Corrupt { .. } | StorageError::ReadOnly => {
                    Refusal::Store(e.to_string())
                }
                e => Refusal::Invalid(format!("the store would refuse it: {e}")),
            }),
        };
        self.shared
            .metrics
            .observe_phase("validate", started.elapsed().as_secs_f64());
        let checked = checked?;
        self.remember(hash, checked);
        Ok(())
    }

    /// Encodes the receipts and runs every check `commit_block` makes
    /// except the certificate's.
    fn storable(&self, block: &Block, outcome: BlockOutcome) -> Result<Checked, StorageError> {
        let receipts: Vec<Vec<u8>> = outcome.receipts.iter().map(codec::encode).collect();
        self.store
            .check_commit_block(block, &outcome.writes, &receipts, &outcome.accumulator)?;
        Ok(Checked {
            height: block.header.height,
            outcome,
            receipts,
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

    async fn propose(&mut self) -> anyhow::Result<()> {
        let Some(p) = self.proposal.take() else {
            return Ok(());
        };
        if p.height != self.parent.height + 1 || p.parent_hash != self.parent.hash {
            return Ok(());
        }
        let started = Instant::now();
        let c = &self.cfg.consensus;
        let accounts = StoreAccounts(self.store.clone());
        let txs = self
            .mempool
            .select(c.max_block_txs, c.max_block_bytes, &accounts);
        let timestamp = Timestamp(now_ms().max(self.parent.timestamp.0 + 1));
        let ctx = BlockContext {
            chain_id: self.chain_id.clone(),
            height: p.height,
            timestamp,
            proposer: self.key.public(),
        };
        let state = StoreState(self.store.as_ref());
        let (mut block, mut outcome) =
            build_block(&self.parent, &ctx, p.view, &txs, &state, &self.acc)?;
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
            match self.storable(&block, outcome) {
                Ok(c) => break c,
                Err(e) => {
                    attempts += 1;
                    tracing::error!(
                        height = p.height,
                        txs = block.txs.len(),
                        error = %e,
                        "the block built here would not commit"
                    );
                    match e {
                        StorageError::DuplicateTx { id, .. } if attempts < 4 => {
                            self.mempool.drop_txs(&[id]);
                            candidates.retain(|v| v.id() != id);
                        }
                        _ if !block.txs.is_empty() => candidates.clear(),
                        e => {
                            anyhow::bail!(
                                "height {}: even an empty block would not commit here: {e}",
                                p.height
                            )
                        }
                    }
                    (block, outcome) =
                        build_block(&self.parent, &ctx, p.view, &candidates, &state, &self.acc)?;
                }
            }
        };
        self.shared
            .metrics
            .observe_phase("propose", started.elapsed().as_secs_f64());
        tracing::debug!(
            height = p.height,
            view = p.view,
            txs = block.txs.len(),
            "proposing"
        );
        self.remember(block.hash(), checked);
        self.feed(Input::ProposalReady { block }).await
    }

    async fn commit(&mut self, block: Block, certificate: CommitCertificate) -> anyhow::Result<()> {
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
        let checked = match self.outcomes.remove(&hash) {
            Some(c) => c,
            None => {
                match self.check_block(&block, None) {
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
                match self.outcomes.remove(&hash) {
                    Some(c) => c,
                    None => anyhow::bail!("height {height}: validated outcome vanished"),
                }
            }
        };
        let Checked {
            outcome, receipts, ..
        } = checked;
        let started = Instant::now();
        let rejected = outcome.receipts.iter().filter(|r| !r.is_applied()).count();
        let ids: Vec<Hash> = block.txs.iter().map(SignedTx::id).collect();
        let batch = CommitBatch {
            block: block.clone(),
            certificate,
            state_writes: outcome.writes.clone(),
            receipts,
            accumulator: outcome.accumulator.clone(),
        };
        self.store.commit_block(batch).map_err(|e| {
            anyhow::anyhow!(
                "height {height}: writing certified block {hash} failed: {e}. The node stops; \
                 nothing of this block was written. Fix the cause (disk space, permissions, I/O \
                 errors in the system log) and start the node again: it commits the block then"
            )
        })?;
        let m = &self.shared.metrics;
        m.observe_phase("persist", started.elapsed().as_secs_f64());
        m.observe_phase("round", self.height_started.elapsed().as_secs_f64());
        m.committed_blocks.inc();
        m.committed_txs.inc_by(ids.len() as u64);
        m.rejected_txs.inc_by(rejected as u64);
        m.block_txs.observe(ids.len() as f64);
        m.height.set(height as i64);
        let vset_changed = outcome.validator_set != self.parent.validator_set;
        self.parent = ParentInfo::child_of(&block, &outcome);
        self.acc = outcome.accumulator;
        self.outcomes.retain(|_, c| c.height > height);
        self.proposal = None;
        self.last_block_full = ids.len() >= self.cfg.consensus.max_block_txs;
        self.last_commit = Instant::now();
        self.height_started = Instant::now();
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
        let _ = self
            .shared
            .commits
            .send(Arc::new(CommitNotice { txs: ids }));
        let abstained_enough = self.abstain_through.is_some_and(|h| height > h);
        if vset_changed || abstained_enough {
            if vset_changed {
                tracing::warn!(height, "validator set changed; reconfiguring consensus");
            }
            self.rebuild_replica(false)?;
            Box::pin(self.feed(Input::Start)).await?;
        }
        Ok(())
    }

    fn serve_sync(&self, data: &[u8]) -> Vec<u8> {
        let head = self.parent.height;
        let mut resp = SyncResponse {
            head,
            blocks: Vec::new(),
        };
        let Ok(SyncRequest::Blocks { from, max }) = codec::decode_with_limit(data, 1024) else {
            return codec::encode(&resp);
        };
        let max = u64::from(max).clamp(1, self.cfg.consensus.sync_batch);
        let mut bytes = 0usize;
        let mut h = from.max(1);
        while h <= head && h < from.max(1) + max {
            let (Ok(Some(b)), Ok(Some(c))) = (self.store.block(h), self.store.certificate(h))
            else {
                break;
            };
            bytes += codec::encoded_len(&b) + codec::encoded_len(&c);
            if bytes > aidledger_network::SYNC_RESPONSE_MAX_BYTES / 2 && !resp.blocks.is_empty() {
                break;
            }
            resp.blocks.push((b, c));
            h += 1;
        }
        codec::encode(&resp)
    }

    async fn request_sync(&mut self, from: u64, peer: Option<PeerId>) {
        if let Some((_, at)) = self.sync_in_flight {
            if at.elapsed() < Duration::from_secs(10) {
                return;
            }
        }
        let connected = self.net.connected_peers();
        let peer = match peer.filter(|p| connected.contains(p)) {
            Some(p) => p,
            None => {
                if connected.is_empty() {
                    return;
                }
                self.sync_rr = self.sync_rr.wrapping_add(1);
                connected[self.sync_rr % connected.len()]
            }
        };
        let req = codec::encode(&SyncRequest::Blocks {
            from,
            max: self.cfg.consensus.sync_batch as u32,
        });
        if let Ok(id) = self.net.request(peer, req).await {
            self.sync_in_flight = Some((id, Instant::now()));
        }
    }

    async fn sync_tick(&mut self) -> anyhow::Result<()> {
        self.shared
            .metrics
            .peers
            .set(self.net.connected_peers().len() as i64);
        self.shared.metrics.observe_network(&self.net.stats);
        // Observers follow the chain by sync alone; a validator that has
        // not committed for a while asks too, in case it missed the
        // messages that would have told its core it is behind.
        let stalled = self.last_commit.elapsed()
            > Duration::from_millis(self.cfg.consensus.round_timeout_ms.saturating_mul(2));
        if self.replica.is_none() || stalled {
            self.request_sync(self.parent.height + 1, None).await;
        }
        Ok(())
    }

    async fn on_sync_response(&mut self, data: &[u8]) -> anyhow::Result<()> {
        let resp: SyncResponse =
            match codec::decode_with_limit(data, aidledger_network::SYNC_RESPONSE_MAX_BYTES) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable sync response");
                    return Ok(());
                }
            };
        let more = resp.head > self.parent.height + resp.blocks.len() as u64;
        for (block, cert) in resp.blocks {
            let h = block.header.height;
            if h <= self.parent.height {
                continue;
            }
            if h != self.parent.height + 1 {
                break;
            }
            if let Err(e) = verify_certificate(
                &cert,
                &self.chain_id,
                &self.parent.validator_set,
                h,
                &block.hash(),
            ) {
                tracing::warn!(height = h, error = %e, "synced block has a bad certificate");
                break;
            }
            if self.replica.is_some() {
                // The core validates and commits it through the usual path.
                self.feed(Input::Synced {
                    block,
                    certificate: cert,
                })
                .await?;
                if self.parent.height < h {
                    break; // The core buffered it; wait for more.
                }
            } else {
                if !self.validate(&block, None) {
                    break;
                }
                self.commit(block, cert).await?;
            }
            self.shared.metrics.synced_blocks.inc();
        }
        if more {
            self.request_sync(self.parent.height + 1, None).await;
        }
        Ok(())
    }

    fn publish_snapshot(&self) {
        let (view, leader) = match &self.replica {
            Some(r) => {
                let v = r.view();
                (v, Some(self.parent.validator_set.leader(v).org.clone()))
            }
            None => (0, None),
        };
        self.shared.metrics.height.set(self.parent.height as i64);
        self.shared
            .metrics
            .mempool_txs
            .set(self.mempool.len() as i64);
        self.shared
            .metrics
            .mempool_bytes
            .set(self.mempool.bytes() as i64);
        if let Ok(mut s) = self.shared.snapshot.write() {
            *s = Snapshot {
                height: self.parent.height,
                block_hash: self.parent.hash,
                state_root: self.parent.state_root,
                view,
                leader,
                peers: self.net.connected_peers().len(),
                mempool_txs: self.mempool.len(),
                last_block_time_ms: self.parent.timestamp.0,
            };
        }
    }
}

/// A timeout the core asked for: (height, view, kind).
type TimerKey = (u64, u64, TimeoutKind);

/// The core's pending timeouts: one per (height, view, kind), a later
/// schedule of the same key replacing the earlier, at most `TIMERS_MAX`
/// (the lowest heights and views go first: the core ignores timeouts
/// that are not for its current height and view).
#[derive(Default)]
struct Timers {
    pending: BTreeMap<TimerKey, Instant>,
}

impl Timers {
    fn schedule(&mut self, key: TimerKey, at: Instant) {
        self.pending.insert(key, at);
        while self.pending.len() > TIMERS_MAX {
            self.pending.pop_first();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    /// Removes and returns the timeouts due at `now`, earliest first.
    fn take_due(&mut self, now: Instant) -> Vec<TimerKey> {
        let mut due: Vec<(Instant, TimerKey)> = self
            .pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, at)| (*at, *k))
            .collect();
        due.sort();
        for (_, k) in &due {
            self.pending.remove(k);
        }
        due.into_iter().map(|(_, k)| k).collect()
    }
}

/// The highest height a restarted validator must not vote at, if any. A
/// validator with committed blocks but no safety state, or whose safety
/// state is for a height below the tip although the tip's certificate
/// holds its own commit vote, has lost the record of what it signed (a
/// deleted or restored-older safety state, lost writes). It may already
/// have voted at heights up to the tip's next one, and voting there again
/// could sign two blocks at one height. So it abstains until the chain has
/// committed that height, unless the operator accepts the risk.
pub(crate) fn amnesia_guard(
    tip: u64,
    safety_height: Option<u64>,
    my_vote_at_tip: bool,
    accept: bool,
) -> Option<u64> {
    if accept || tip == 0 {
        return None;
    }
    match safety_height {
        None => Some(tip + 1),
        Some(h) if h < tip && my_vote_at_tip => Some(tip + 1),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{amnesia_guard, Timers, TIMERS_MAX};
    use aidledger_consensus::TimeoutKind;
    use tokio::time::{Duration, Instant};

    #[test]
    fn timers_are_one_per_key_bounded_and_fire_in_deadline_order() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        assert_eq!(t.next_deadline(), None);
        t.schedule((5, 0, TimeoutKind::Round), ms(300));
        t.schedule((5, 1, TimeoutKind::ViewChange), ms(100));
        // The same key again replaces the deadline; it does not add one.
        t.schedule((5, 0, TimeoutKind::Round), ms(200));
        assert_eq!(t.pending.len(), 2);
        assert_eq!(t.next_deadline(), Some(ms(100)));
        assert!(t.take_due(ms(50)).is_empty());
        assert_eq!(
            t.take_due(ms(250)),
            vec![(5, 1, TimeoutKind::ViewChange), (5, 0, TimeoutKind::Round)]
        );
        assert_eq!(t.next_deadline(), None);
        // A flood of schedules keeps only the newest heights and views.
        for v in 0..1000u64 {
            t.schedule((9, v, TimeoutKind::ViewChange), ms(10));
        }
        assert_eq!(t.pending.len(), TIMERS_MAX);
        assert!(t
            .pending
            .keys()
            .all(|(_, v, _)| *v >= 1000 - TIMERS_MAX as u64));
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
        // Caught up by sync without voting: an old state is expected.
        assert_eq!(amnesia_guard(7, Some(3), false, false), None);
        // Its own vote certified the tip, yet the state is older: lost.
        assert_eq!(amnesia_guard(7, Some(3), true, false), Some(8));
        // The operator's explicit override.
        assert_eq!(amnesia_guard(7, None, false, true), None);
        assert_eq!(amnesia_guard(7, Some(3), true, true), None);
    }
}
