//! The node's shell around the node core (docs/adr/011-node-core.md): a
//! tokio task that turns network events, client requests and the passing
//! of time into the core's events, and performs the effects the core
//! returns (publish, sync requests and replies, verdicts, commit notices,
//! metrics). Every decision is the core's (`aidledger_node_core`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aidledger_crypto::Keypair;
use aidledger_execution::ParentInfo;
use aidledger_network::NetPeerId as PeerId;
use aidledger_network::{peer_id_of, NetEvent, NetworkConfig, NetworkHandle, ReplyToken, Topic};
use aidledger_node_core::{
    Channel, CoreParts, Count, Effect, Event, Mutants, NodeCore, Now, Peer, Telemetry, TxRefusal,
    Verdict,
};
use aidledger_storage::RocksStore;
use aidledger_types::{ChainId, Hash, OrgId, PublicKey, StateAccumulator};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::admission::AdmissionPool;
use crate::clock::now_ms;
use crate::config::NodeConfig;
use crate::metrics::Metrics;

/// Capacity of the driver's own channel.
pub const DRIVER_CHANNEL: usize = 8192;
/// Most gossip messages, and most of their bytes, drained into one turn of
/// the admission pool. The first message is always taken (each is bounded
/// by the network's message limit); normal traffic is about 50 KB a
/// message.
const GOSSIP_BATCH_MAX: usize = 512;
const GOSSIP_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Most inbound sync requests awaiting the core's reply, and outbound ones
/// awaiting the network's answer (the core keeps one in flight).
const PENDING_MAX: usize = 256;

/// Messages to the driver from the API and the operator.
pub enum DriverMsg {
    /// A client's transactions, through admission's screen and signature
    /// check (ADR 016); one verdict per transaction, in order.
    Submit {
        txs: Vec<Verdict>,
        reply: oneshot::Sender<Vec<Result<Hash, TxRefusal>>>,
    },
    /// Gossiped transactions, through the same checks (the admission
    /// pool's workers send these).
    Gossiped(Vec<Verdict>),
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
    /// The mempool's backlog limit for clients now (ADR 023).
    pub backlog_txs: usize,
    pub last_block_time_ms: u64,
    pub voting: bool,
    pub validator: bool,
    pub next_due: Option<aidledger_execution::contracts::NextDue>,
    /// The key this node signs with (it moves with a key replacement).
    pub node_key: Option<PublicKey>,
    /// The network's peer id now.
    pub peer_id: String,
    /// The contract module versions in force, and the scheduled upgrade.
    pub modules: Option<std::sync::Arc<[aidledger_execution::contracts::ModuleVersion]>>,
    pub upgrade: Option<std::sync::Arc<aidledger_node_core::UpgradeStatus>>,
}

/// A committed block's transactions, for waiters.
#[derive(Clone, Debug)]
pub struct CommitNotice {
    /// The committed block's height: it is in the store when this is sent.
    pub height: u64,
    pub txs: Vec<Hash>,
}

pub struct Shared {
    pub snapshot: RwLock<Snapshot>,
    pub commits: broadcast::Sender<Arc<CommitNotice>>,
    pub metrics: Metrics,
    /// True once the node is stopping: the API stops taking connections,
    /// and a request waiting for a commit is answered at once with what
    /// there is, since no commit will come.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

/// The core's measurements, exported as Prometheus metrics.
struct NodeTelemetry {
    shared: Arc<Shared>,
    origin: Instant,
}

impl Telemetry for NodeTelemetry {
    fn count(&self, c: Count, n: u64) {
        let m = &self.shared.metrics;
        let counter = match c {
            Count::AdmittedTxs => &m.admitted_txs,
            Count::RefusedTxs => &m.refused_txs,
            Count::ResentTxs => &m.resent_txs,
            Count::ExpiredTxs => &m.expired_txs,
            Count::RegossipedTxs => &m.regossiped_txs,
            Count::SyncedBlocks => &m.synced_blocks,
            Count::SyncPreverifiedTxs => &m.sync_preverified_txs,
            Count::ViewChanges => &m.view_changes,
            Count::CommittedBlocks => &m.committed_blocks,
            Count::CommittedTxs => &m.committed_txs,
            Count::RejectedTxs => &m.rejected_txs,
            Count::BacklogRefusedTxs => &m.backlog_refused_txs,
            Count::PipelinedProposals => &m.pipelined_proposals,
        };
        counter.inc_by(n);
    }
    fn clock_secs(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
    fn phase(&self, phase: &'static str, secs: f64) {
        self.shared.metrics.observe_phase(phase, secs);
    }
    fn block_txs(&self, txs: usize) {
        self.shared.metrics.block_txs.observe(txs as f64);
    }
}

pub struct Driver {
    core: NodeCore,
    net: NetworkHandle,
    /// The network's settings, to start it again under a new identity.
    net_cfg: NetworkConfig,
    /// The peer ids the network admits now.
    allowed: Vec<PeerId>,
    /// The node's keys: the one it signs with and the staged replacement
    /// (ADR 017), to find the key a new identity derives from.
    keypairs: Vec<Keypair>,
    signing: PublicKey,
    /// The network identity to move to once the current effects are done.
    switch_to: Option<PublicKey>,
    home: PathBuf,
    cfg: NodeConfig,
    /// The modification time of the staged key file when it was last read:
    /// the file is read again only once it changes.
    staged_stamp: Option<std::time::SystemTime>,
    shared: Arc<Shared>,
    /// Every other member's peer id, in the core's [`Peer`] order.
    members: Vec<PeerId>,
    peer_index: HashMap<PeerId, Peer>,
    started: Instant,
    next_ticket: u64,
    waiters: BTreeMap<u64, oneshot::Sender<Vec<Result<Hash, TxRefusal>>>>,
    /// Signature checks for gossip (ADR 016).
    pool: AdmissionPool,
    next_token: u64,
    replies: BTreeMap<u64, ReplyToken>,
    /// Network request id to the core's tag.
    requests: BTreeMap<u64, u64>,
    /// The `restored` marker still in the home (see [`DriverParts`]).
    restored_marker: Option<PathBuf>,
    /// The snapshots this node takes and serves (ADR 017 part 4).
    snapshots: crate::snapshots::Snapshots,
}

pub struct DriverParts {
    pub chain_id: ChainId,
    pub cfg: NodeConfig,
    pub home: PathBuf,
    pub key: Keypair,
    /// The staged replacement key, if `keys/node-next.json` exists.
    pub staged: Option<Keypair>,
    pub store: Arc<RocksStore>,
    pub net: NetworkHandle,
    pub net_cfg: NetworkConfig,
    /// Every other member node: its key and its peer id.
    pub members: Vec<(PublicKey, PeerId)>,
    pub parent: ParentInfo,
    pub acc: StateAccumulator,
    pub shared: Arc<Shared>,
    pub accept_missing_safety_state: bool,
    pub ran_before: bool,
    /// The home's `restored` marker, if `aidledger restore` left one: the
    /// core catches up before voting, and the driver deletes the file once
    /// the core has rejoined.
    pub restored_marker: Option<PathBuf>,
    pub pool: AdmissionPool,
}

impl Driver {
    pub fn new(p: DriverParts) -> anyhow::Result<Driver> {
        let started = Instant::now();
        let signing = p.key.public();
        let mut keypairs = vec![p.key.clone()];
        keypairs.extend(p.staged.clone());
        let staged_stamp = std::fs::metadata(crate::node_keys::staged_path(&p.home, &p.cfg))
            .and_then(|m| m.modified())
            .ok();
        let snapshots =
            crate::snapshots::Snapshots::new(&p.home, p.cfg.snapshot.clone(), p.store.clone());
        let core = NodeCore::new(
            CoreParts {
                chain_id: p.chain_id,
                consensus: p.cfg.consensus.settings(),
                mempool: p.cfg.mempool.config(),
                gossip_max_bytes: aidledger_network::GOSSIP_MAX_BYTES,
                sync_response_max_bytes: aidledger_network::SYNC_RESPONSE_MAX_BYTES,
                key: p.key,
                next_key: p.staged,
                store: p.store,
                members: p.members.iter().map(|(k, _)| *k).collect(),
                parent: p.parent,
                acc: p.acc,
                accept_missing_safety_state: p.accept_missing_safety_state,
                ran_before: p.ran_before,
                restored: p.restored_marker.is_some(),
                telemetry: Box::new(NodeTelemetry {
                    shared: p.shared.clone(),
                    origin: Instant::now(),
                }),
                mutants: Mutants::default(),
                module_ceiling: crate::test_knobs::module_ceiling()?,
            },
            Now {
                wall_ms: now_ms(),
                mono_ms: 0,
            },
        )?;
        let members: Vec<PeerId> = p.members.iter().map(|(_, id)| *id).collect();
        let peer_index = members.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let d = Driver {
            core,
            net: p.net,
            allowed: p.net_cfg.allowed.clone(),
            net_cfg: p.net_cfg,
            keypairs,
            signing,
            switch_to: None,
            home: p.home,
            cfg: p.cfg,
            staged_stamp,
            shared: p.shared,
            members,
            peer_index,
            started,
            next_ticket: 0,
            waiters: BTreeMap::new(),
            pool: p.pool,
            next_token: 0,
            replies: BTreeMap::new(),
            requests: BTreeMap::new(),
            restored_marker: p.restored_marker,
            snapshots,
        };
        d.publish_snapshot();
        Ok(d)
    }

    fn now(&self) -> Now {
        Now {
            wall_ms: now_ms(),
            mono_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<DriverMsg>,
        mut net_rx: mpsc::Receiver<NetEvent>,
    ) -> anyhow::Result<()> {
        self.handle(Event::Start).await?;
        let mut stats_tick = tokio::time::interval(Duration::from_millis(1000));
        stats_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.started + Duration::from_millis(self.core.next_wakeup());
            // Biased (ADR 016): network events, consensus among them,
            // before timers, and both before client work.
            tokio::select! {
                biased;
                ev = net_rx.recv() => match ev {
                    None => break,
                    Some(ev) => self.on_net(ev, &mut net_rx).await?,
                },
                _ = tokio::time::sleep_until(wake) => self.handle(Event::Tick).await?,
                msg = rx.recv() => match msg {
                    None | Some(DriverMsg::Shutdown) => break,
                    Some(m) => self.on_msg(m).await?,
                },
                _ = stats_tick.tick() => {
                    self.shared.metrics.observe_network(&self.net.stats);
                    self.peers_changed().await?;
                    self.look_for_staged_key().await?;
                }
            }
            if let Some(key) = self.switch_to.take() {
                // The old network's events go with its receiver, so its
                // task cannot block on a full queue while it stops.
                drop(std::mem::replace(&mut net_rx, mpsc::channel(1).1));
                net_rx = self.restart_network(key).await?;
            }
            self.publish_snapshot();
        }
        drop(net_rx);
        self.net.shutdown().await;
        tracing::info!("consensus driver stopped");
        Ok(())
    }

    /// Hands a key staged while the node runs (`aidledger keys stage`) to
    /// the core. The file is read when it appears or changes, not every
    /// second; one that cannot be read is reported once per change.
    async fn look_for_staged_key(&mut self) -> anyhow::Result<()> {
        let path = crate::node_keys::staged_path(&self.home, &self.cfg);
        let Ok(stamp) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
            return Ok(());
        };
        if self.staged_stamp == Some(stamp) {
            return Ok(());
        }
        self.staged_stamp = Some(stamp);
        let key = match crate::node_keys::read_staged(&self.home, &self.cfg) {
            Ok(Some(k)) if k.public() != self.signing => k,
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the staged node key cannot be used");
                return Ok(());
            }
        };
        self.keypairs.retain(|k| k.public() == self.signing);
        self.keypairs.push(key.clone());
        self.handle(Event::StageKey(key)).await
    }

    /// Starts the network again under the identity of `key` (a node-key
    /// replacement, ADR 017) on the same listen address, admitting the
    /// same members. Requests in flight on the old network fail.
    async fn restart_network(
        &mut self,
        key: PublicKey,
    ) -> anyhow::Result<mpsc::Receiver<NetEvent>> {
        let Some(pair) = self.keypairs.iter().find(|k| k.public() == key) else {
            anyhow::bail!(
                "the core asked for network identity {key}, a key this node does not hold"
            );
        };
        let identity = aidledger_network::identity_from_seed(pair.secret_seed())?;
        let old = self.net.local_peer_id();
        self.net.shutdown().await;
        let mut cfg = self.net_cfg.clone();
        cfg.allowed = self.allowed.clone();
        cfg.publish_seq_start = rand::random();
        // The old swarm's listener is gone once shutdown returns; a port
        // the kernel has not released yet gets a few more tries.
        let mut tries = 0;
        let (net, rx) = loop {
            match aidledger_network::spawn_with_stats(
                cfg.clone(),
                identity.clone(),
                self.net.stats.clone(),
            ) {
                Ok(x) => break x,
                Err(e) if tries < 10 => {
                    tries += 1;
                    tracing::warn!(error = %e, "starting the network under the new identity; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        tracing::warn!(
            old_peer_id = %old,
            new_peer_id = %net.local_peer_id(),
            "the network restarted under this node's new identity"
        );
        self.net = net;
        self.replies.clear();
        let pending: Vec<u64> = std::mem::take(&mut self.requests).into_values().collect();
        for tag in pending {
            self.handle(Event::SyncFailed { tag }).await?;
        }
        Ok(rx)
    }

    /// The core moved this node's keys (ADR 017): a new signing key
    /// retires the old key file; a new network key restarts the network
    /// once the effects in hand are done.
    fn keys_moved(&mut self, signing: PublicKey, network: PublicKey) {
        if signing != self.signing {
            let old = self.keypairs.iter().find(|k| k.public() == self.signing);
            if let Some(old) = old {
                if let Err(e) = crate::node_keys::promote_staged(&self.home, &self.cfg, old) {
                    // The next start promotes again from the registry.
                    tracing::error!(error = %format!("{e:#}"), "could not move the key files; the node signs with the new key, and its next start moves them");
                }
            }
            self.signing = signing;
        }
        if peer_id_of(&network).ok() != Some(self.net.local_peer_id()) {
            self.switch_to = Some(network);
        }
    }

    /// Hands one event to the core and performs its effects in order.
    async fn handle(&mut self, ev: Event) -> anyhow::Result<()> {
        let now = self.now();
        for effect in self.core.handle(now, ev)? {
            self.perform(effect).await;
        }
        if self.restored_marker.is_some() && self.core.rejoined() {
            self.clear_restored_marker();
        }
        Ok(())
    }

    /// The node has caught up since its restore and the heights it may
    /// have voted at before are committed: the marker has done its job.
    /// Deleting it fails only if the home is not writable; then the next
    /// start catches up once more, which is safe.
    fn clear_restored_marker(&mut self) {
        let Some(path) = self.restored_marker.take() else {
            return;
        };
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(
                height = self.core.status().height,
                "caught up since the restore; removed {}",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                error = %e,
                "caught up since the restore, but could not remove {}; the next start will \
                 catch up again before voting",
                path.display()
            ),
        }
    }

    async fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Publish { channel, data } => {
                let topic = match channel {
                    Channel::Consensus => Topic::Consensus,
                    Channel::Txs => Topic::Txs,
                };
                self.net.publish(topic, data).await.ok();
            }
            Effect::Request { tag, peer, data } => {
                let Some(p) = self.members.get(peer).copied() else {
                    return;
                };
                if let Ok(id) = self.net.request(p, data).await {
                    if self.requests.len() >= PENDING_MAX {
                        self.requests.pop_first();
                    }
                    self.requests.insert(id, tag);
                }
            }
            Effect::Reply { token, data } => {
                if let Some(reply) = self.replies.remove(&token) {
                    self.net.reply(reply, data).await.ok();
                }
            }
            Effect::Verdicts { ticket, verdicts } => {
                if let Some(tx) = self.waiters.remove(&ticket) {
                    let _ = tx.send(verdicts);
                }
            }
            Effect::Committed { height, txs } => {
                self.shared.metrics.height.set(height as i64);
                self.snapshots.committed(height);
                let _ = self
                    .shared
                    .commits
                    .send(Arc::new(CommitNotice { height, txs }));
            }
            Effect::Members { table, live } => self.set_members(&table, &live).await,
            Effect::Keys { signing, network } => self.keys_moved(signing, network),
        }
    }

    /// Follows the core's member table after a registry change: new keys
    /// get peer ids at the end of the table, and the network admits
    /// exactly the live ones (closing removed peers' connections).
    async fn set_members(&mut self, table: &[PublicKey], live: &[Peer]) {
        for k in table.iter().skip(self.members.len()) {
            match peer_id_of(k) {
                Ok(p) => {
                    self.peer_index.insert(p, self.members.len());
                    self.members.push(p);
                }
                Err(e) => {
                    // Governance can register 32 bytes that are no ed25519
                    // point (contracts check no curve; the CLI does). No
                    // process holds such a key, so it gets a peer id no
                    // connection has, keeping the table aligned with the
                    // core's.
                    tracing::warn!(key = %k, error = %e, "a registered node key is not a valid ed25519 key; no node can use it");
                    self.members.push(PeerId::random());
                }
            }
        }
        self.allowed = live
            .iter()
            .filter_map(|p| self.members.get(*p).copied())
            .collect();
        self.net.set_members(self.allowed.clone()).await.ok();
    }

    async fn submit(
        &mut self,
        txs: Vec<Verdict>,
        waiter: oneshot::Sender<Vec<Result<Hash, TxRefusal>>>,
    ) -> anyhow::Result<()> {
        self.next_ticket = self.next_ticket.wrapping_add(1);
        let ticket = self.next_ticket;
        self.waiters.insert(ticket, waiter);
        self.handle(Event::Submit { ticket, txs }).await?;
        // The core answers every submission in the same call.
        self.waiters.remove(&ticket);
        Ok(())
    }

    async fn on_msg(&mut self, m: DriverMsg) -> anyhow::Result<()> {
        match m {
            DriverMsg::Submit { txs, reply } => self.submit(txs, reply).await?,
            DriverMsg::Gossiped(txs) => self.handle(Event::Gossiped(txs)).await?,
            DriverMsg::IsPending { id, reply } => {
                let _ = reply.send(self.core.is_pending(&id));
            }
            DriverMsg::Isolate(on) => {
                // Removed members too: the network unblocks only peers
                // its allow-list still admits.
                for p in self.members.clone() {
                    self.net.set_blocked(p, on).await.ok();
                }
                tracing::warn!(isolated = on, "isolation changed by operator");
            }
            DriverMsg::Shutdown => {}
        }
        Ok(())
    }

    async fn peers_changed(&mut self) -> anyhow::Result<()> {
        let connected = self.net.connected_peers();
        self.shared.metrics.peers.set(connected.len() as i64);
        let peers = connected
            .iter()
            .filter_map(|p| self.peer_index.get(p).copied())
            .collect();
        self.handle(Event::Peers(peers)).await
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
                self.shared.metrics.consensus_messages_in.inc();
                self.handle(Event::Consensus(data)).await?
            }
            NetEvent::Gossip {
                topic: Topic::Txs,
                author,
                data,
            } => {
                // What is already queued goes to the admission pool
                // together, one batch per author (its lane), so signatures
                // are checked together, off this task.
                let mut bytes = data.len();
                let mut batches: BTreeMap<PeerId, Vec<Vec<u8>>> = BTreeMap::new();
                batches.entry(author).or_default().push(data);
                let mut taken = 1;
                let mut others = Vec::new();
                while taken < GOSSIP_BATCH_MAX && bytes < GOSSIP_BATCH_BYTES {
                    match net_rx.try_recv() {
                        Ok(NetEvent::Gossip {
                            topic: Topic::Txs,
                            author,
                            data,
                        }) => {
                            bytes += data.len();
                            taken += 1;
                            batches.entry(author).or_default().push(data);
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
                for (author, batch) in batches {
                    if !self.pool.gossip(author, batch) {
                        tracing::debug!(peer = %author, "admission pool full: transaction gossip dropped");
                    }
                }
                for ev in others {
                    Box::pin(self.on_net(ev, net_rx)).await?;
                }
            }
            NetEvent::SyncRequest { data, reply, .. } => {
                // Snapshot requests read the snapshot directory: answered
                // on blocking threads, never on this task (ADR 017).
                if let Ok(req) = aidledger_types::codec::decode_with_limit::<
                    aidledger_types::wire::SyncRequest,
                >(
                    &data, aidledger_types::wire::SYNC_REQUEST_MAX_BYTES
                ) {
                    if crate::snapshots::Snapshots::handles(&req) {
                        let net = self.net.clone();
                        let rt = tokio::runtime::Handle::current();
                        self.snapshots.serve(req, move |answer| {
                            rt.spawn(async move {
                                net.reply(reply, answer).await.ok();
                            });
                        });
                        return Ok(());
                    }
                }
                if self.replies.len() >= PENDING_MAX {
                    // Dropping the token fails the oldest request.
                    self.replies.pop_first();
                }
                self.next_token = self.next_token.wrapping_add(1);
                let token = self.next_token;
                self.replies.insert(token, reply);
                self.handle(Event::SyncRequest { token, data }).await?;
            }
            NetEvent::SyncResponse { data, request, .. } => {
                if let Some(tag) = self.requests.remove(&request) {
                    self.handle(Event::SyncResponse { tag, data }).await?;
                }
            }
            NetEvent::SyncFailed {
                reason, request, ..
            } => {
                tracing::debug!(%reason, "sync request failed");
                if let Some(tag) = self.requests.remove(&request) {
                    self.handle(Event::SyncFailed { tag }).await?;
                }
            }
            NetEvent::PeerConnected(_) | NetEvent::PeerDisconnected(_) => {
                self.peers_changed().await?;
            }
            NetEvent::Listening(_) => {}
        }
        Ok(())
    }

    fn publish_snapshot(&self) {
        let s = self.core.status();
        let m = &self.shared.metrics;
        m.height.set(s.height as i64);
        m.view.set(s.view as i64);
        m.mempool_txs.set(s.mempool_txs as i64);
        m.mempool_bytes.set(s.mempool_bytes as i64);
        m.mempool_backlog_txs.set(s.backlog_txs as i64);
        m.commit_rate.set(s.commit_rate as i64);
        if let Some(d) = s.next_due {
            m.next_due_seconds.set((d.at.0 / 1000) as i64);
        }
        m.upgrade_missing_modules
            .set(s.upgrade.as_ref().map_or(0, |u| u.missing.len() as i64));
        if let Ok(mut snap) = self.shared.snapshot.write() {
            *snap = Snapshot {
                height: s.height,
                block_hash: s.block_hash,
                state_root: s.state_root,
                view: s.view,
                leader: s.leader,
                peers: self.net.connected_peer_count(),
                mempool_txs: s.mempool_txs,
                backlog_txs: s.backlog_txs,
                last_block_time_ms: s.last_block_time_ms,
                voting: s.is_voting,
                validator: s.is_validator,
                next_due: s.next_due,
                node_key: Some(s.node_key),
                peer_id: self.net.local_peer_text().to_owned(),
                modules: Some(s.modules),
                upgrade: s.upgrade,
            };
        }
    }
}
