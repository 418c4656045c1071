//! Issue 18's P7 in the simulator: `n` validators of real node cores
//! ([`NodeCore`], the code the `aidledger` binary runs, each on its own
//! in-memory store, behind the production admission) on a network with a
//! fixed one-way delay, under a steady client load, with no faults.
//!
//! What it measures is what the protocol and the core's pacing give as
//! the consortium grows: commit latency, committed throughput, blocks, and
//! the consensus messages each validator receives per block. CPU is not
//! modelled (a step takes no virtual time), so a machine's limits are not
//! in these figures: the real-process runs (`bench suite --validators`)
//! measure those.
//!
//! The transport is a full mesh: every publish reaches every other node
//! once, after the delay, as gossipsub's mesh delivers it once a message's
//! forwarded copies are dropped as duplicates. Sync requests and replies
//! take the same delay. Every run is a function of its options and seed.

use std::collections::BTreeMap;
use std::sync::Arc;

use aidledger_contracts::Genesis;
use aidledger_execution::testkit::{dev_genesis, TxFactory};
use aidledger_mempool::MempoolConfig;
use aidledger_node_core::{
    open_chain, Admission, Channel, ConsensusSettings, CoreParts, Effect, Event, Mutants,
    NoTelemetry, NodeCore, Now,
};
use aidledger_storage::{MemStore, Store};
use aidledger_types::{Hash, PublicKey};

/// Most events one run may process.
const MAX_EVENTS: u64 = 20_000_000;
/// Clients submit every this many ms.
const CLIENT_TICK_MS: u64 = 50;
/// After the load stops, how long the run waits for the last commits.
const DRAIN_MS: u64 = 10_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct ScaleOptions {
    pub validators: usize,
    /// One-way delay of every message.
    pub delay_ms: u64,
    /// Transactions offered per second, spread over the nodes in turn.
    pub rate: u64,
    /// How long the load runs, in virtual seconds.
    pub secs: u64,
    pub seed: u64,
    /// Every validator pipelines (ADR 022).
    pub pipeline: bool,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct ScaleReport {
    pub validators: usize,
    pub delay_ms: u64,
    /// Transactions submitted per virtual second of load (the client
    /// signs whole workload steps, so a little over the target rate).
    pub offered_rate: u64,
    pub submitted: u64,
    pub refused: u64,
    pub committed: u64,
    /// Committed transactions per virtual second, from the first
    /// submission to the last commit.
    pub committed_tps: f64,
    /// Submit-to-commit latency at the node a transaction was submitted
    /// to, in virtual ms.
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    pub blocks: u64,
    /// Consensus messages a validator's core received, per committed
    /// block (mean over validators).
    pub consensus_msgs_per_block: f64,
    pub view_changes: u64,
    pub virtual_ms: u64,
    pub violations: Vec<String>,
}

enum Ev {
    Wake {
        node: usize,
        generation: u64,
    },
    Deliver {
        to: usize,
        channel: Channel,
        data: Arc<Vec<u8>>,
    },
    SyncRequest {
        to: usize,
        from: usize,
        tag: u64,
        data: Vec<u8>,
    },
    SyncResponse {
        to: usize,
        tag: u64,
        data: Vec<u8>,
    },
    Client,
}

struct Node {
    key: PublicKey,
    store: Arc<MemStore>,
    core: NodeCore,
    admission: Admission,
    /// The core's member table: peer `p` is node `table[p]`.
    table: Vec<usize>,
    generation: u64,
    owed: BTreeMap<u64, (usize, u64)>,
    next_token: u64,
    consensus_in: u64,
}

struct Scale {
    opts: ScaleOptions,
    genesis: Genesis,
    factory: TxFactory,
    nodes: Vec<Node>,
    now: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    events: u64,
    /// Pending submissions: id to (node, submitted at).
    pending: BTreeMap<Hash, (usize, u64)>,
    latencies: Vec<u64>,
    next_block: u64,
    next_client: usize,
    next_ticket: u64,
    /// The ids of the submission being handled, in order.
    submitting: Vec<Hash>,
    first_submit: Option<u64>,
    last_commit: u64,
    decided: BTreeMap<u64, Hash>,
    report: ScaleReport,
}

/// Runs one scale measurement.
pub fn run_scale(opts: &ScaleOptions) -> ScaleReport {
    let mut s = Scale::new(opts.clone());
    s.run();
    s.finish()
}

impl Scale {
    fn new(opts: ScaleOptions) -> Scale {
        let (genesis, keys) = dev_genesis(opts.validators, opts.seed);
        let factory = TxFactory::new(&genesis, keys.clone());
        let mut s = Scale {
            report: ScaleReport {
                validators: opts.validators,
                delay_ms: opts.delay_ms,
                offered_rate: opts.rate,
                ..ScaleReport::default()
            },
            opts,
            genesis,
            factory,
            nodes: Vec::new(),
            now: 0,
            queue: BTreeMap::new(),
            seq: 0,
            events: 0,
            pending: BTreeMap::new(),
            latencies: Vec::new(),
            next_block: 0,
            next_client: 0,
            next_ticket: 1,
            submitting: Vec::new(),
            first_submit: None,
            last_commit: 0,
            decided: BTreeMap::new(),
        };
        let all: Vec<PublicKey> = keys.validators.iter().map(|(_, k)| k.public()).collect();
        for (i, (_, key)) in keys.validators.iter().enumerate() {
            match s.open(key, &all) {
                Ok(n) => s.nodes.push(n),
                Err(e) => {
                    s.violation(format!("node {i} cannot start: {e}"));
                    return s;
                }
            }
        }
        for i in 0..s.nodes.len() {
            s.step(i, Event::Start);
            let peers = (0..s.nodes[i].table.len()).collect();
            s.step(i, Event::Peers(peers));
        }
        s
    }

    fn open(&self, key: &aidledger_crypto::Keypair, all: &[PublicKey]) -> Result<Node, String> {
        let store = Arc::new(MemStore::new());
        let dyn_store: Arc<dyn Store> = store.clone();
        let (parent, acc) =
            open_chain(dyn_store.as_ref(), &self.genesis).map_err(|e| format!("{e:#}"))?;
        let (members, table) = crate::cluster::member_table(dyn_store.as_ref(), |k| {
            all.iter()
                .position(|a| a == k)
                .filter(|_| *k != key.public())
        });
        // The node's defaults.
        let mempool = MempoolConfig::default();
        let admission = Admission::new(
            self.genesis.chain_id.clone(),
            dyn_store.clone(),
            mempool.nonce_window,
            1 << 20,
            &Mutants::default(),
        );
        let parts = CoreParts {
            chain_id: self.genesis.chain_id.clone(),
            consensus: ConsensusSettings {
                pipeline: self.opts.pipeline,
                ..ConsensusSettings::default()
            },
            mempool,
            gossip_max_bytes: 1 << 20,
            sync_response_max_bytes: 8 << 20,
            key: key.clone(),
            next_key: None,
            store: dyn_store,
            members,
            parent,
            acc,
            accept_missing_safety_state: false,
            ran_before: false,
            restored: false,
            telemetry: Box::new(NoTelemetry),
            mutants: Mutants::default(),
            module_ceiling: Vec::new(),
        };
        let core = NodeCore::new(parts, self.clock()).map_err(|e| format!("{e:#}"))?;
        Ok(Node {
            key: key.public(),
            store,
            core,
            admission,
            table,
            generation: 0,
            owed: BTreeMap::new(),
            next_token: 0,
            consensus_in: 0,
        })
    }

    /// Every node's clock reads the same: no skew, no drift (a calm
    /// network; the fault simulator covers clocks).
    fn clock(&self) -> Now {
        Now {
            wall_ms: self.genesis.genesis_time.ms() + self.now,
            mono_ms: self.now,
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn violation(&mut self, v: String) {
        if self.report.violations.len() < 8 {
            self.report.violations.push(v);
        }
    }

    fn run(&mut self) {
        if !self.report.violations.is_empty() {
            return;
        }
        self.push(CLIENT_TICK_MS, Ev::Client);
        let load_end = self.opts.secs * 1000;
        let end = load_end + DRAIN_MS;
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            if at > end || (at > load_end && self.pending.is_empty()) {
                break;
            }
            self.now = at;
            self.events += 1;
            if self.events > MAX_EVENTS {
                self.violation(format!("more than {MAX_EVENTS} events"));
                break;
            }
            match ev {
                Ev::Wake { node, generation } => {
                    if self.nodes[node].generation == generation {
                        self.step(node, Event::Tick);
                    }
                }
                Ev::Deliver { to, channel, data } => {
                    let ev = match channel {
                        Channel::Consensus => {
                            self.nodes[to].consensus_in += 1;
                            Event::Consensus(data.to_vec())
                        }
                        Channel::Txs => {
                            Event::Gossiped(self.nodes[to].admission.gossip(vec![data.to_vec()]))
                        }
                    };
                    self.step(to, ev);
                }
                Ev::SyncRequest {
                    to,
                    from,
                    tag,
                    data,
                } => {
                    let n = &mut self.nodes[to];
                    n.next_token += 1;
                    let token = n.next_token;
                    n.owed.insert(token, (from, tag));
                    self.step(to, Event::SyncRequest { token, data });
                }
                Ev::SyncResponse { to, tag, data } => {
                    self.step(to, Event::SyncResponse { tag, data });
                }
                Ev::Client => {
                    if self.now <= load_end {
                        self.client();
                        self.push(self.now + CLIENT_TICK_MS, Ev::Client);
                    }
                }
            }
        }
    }

    /// One client tick: `rate × tick` transactions of the development
    /// workload, to the next node in turn.
    fn client(&mut self) {
        let want = self.opts.rate * CLIENT_TICK_MS / 1000;
        let mut txs = Vec::new();
        while (txs.len() as u64) < want.max(1) {
            txs.extend(self.factory.workload_block(self.next_block));
            self.next_block += 1;
        }
        let i = self.next_client % self.nodes.len();
        self.next_client += 1;
        let now = self.now;
        self.first_submit.get_or_insert(now);
        self.submitting = txs.iter().map(|tx| tx.id()).collect();
        for id in &self.submitting {
            self.pending.insert(*id, (i, now));
        }
        self.report.submitted += txs.len() as u64;
        let verdicts = self.nodes[i].admission.check(txs);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.step(
            i,
            Event::Submit {
                ticket,
                txs: verdicts,
            },
        );
    }

    fn step(&mut self, i: usize, ev: Event) {
        let now = self.clock();
        let effects = match self.nodes[i].core.handle(now, ev) {
            Ok(e) => e,
            Err(e) => {
                self.violation(format!("node {i} stopped on a fatal error: {e:#}"));
                return;
            }
        };
        for e in effects {
            self.perform(i, e);
        }
        let wake = self.nodes[i].core.next_wakeup().max(self.now + 1);
        self.nodes[i].generation += 1;
        let generation = self.nodes[i].generation;
        self.push(
            wake,
            Ev::Wake {
                node: i,
                generation,
            },
        );
    }

    fn perform(&mut self, i: usize, e: Effect) {
        let at = self.now + self.opts.delay_ms;
        match e {
            Effect::Publish { channel, data } => {
                let data = Arc::new(data);
                for to in 0..self.nodes.len() {
                    if to != i {
                        self.push(
                            at,
                            Ev::Deliver {
                                to,
                                channel,
                                data: data.clone(),
                            },
                        );
                    }
                }
            }
            Effect::Request { tag, peer, data } => {
                if let Some(to) = self.nodes[i].table.get(peer).copied() {
                    self.push(
                        at,
                        Ev::SyncRequest {
                            to,
                            from: i,
                            tag,
                            data,
                        },
                    );
                }
            }
            Effect::Reply { token, data } => {
                if let Some((to, tag)) = self.nodes[i].owed.remove(&token) {
                    self.push(at, Ev::SyncResponse { to, tag, data });
                }
            }
            Effect::Verdicts { verdicts, .. } => {
                // What was refused will not commit: it is not waited for.
                let ids = std::mem::take(&mut self.submitting);
                for (id, v) in ids.iter().zip(verdicts) {
                    if v.is_err() {
                        self.report.refused += 1;
                        self.pending.remove(id);
                    }
                }
            }
            Effect::Committed { height, txs } => self.on_commit(i, height, txs),
            Effect::Members { table, .. } => {
                let keys: Vec<PublicKey> = self.nodes.iter().map(|n| n.key).collect();
                self.nodes[i].table = table
                    .iter()
                    .map(|k| keys.iter().position(|x| x == k).unwrap_or(usize::MAX))
                    .collect();
            }
            Effect::Keys { .. } => {}
        }
    }

    fn on_commit(&mut self, i: usize, height: u64, txs: Vec<Hash>) {
        let hash = self.nodes[i].store.block_hash(height).ok().flatten();
        match (hash, self.decided.get(&height)) {
            (Some(h), Some(d)) if h != *d => {
                self.violation(format!("agreement: two blocks at height {height}"));
            }
            (Some(h), None) => {
                self.decided.insert(height, h);
            }
            _ => {}
        }
        for id in txs {
            if let Some(&(node, at)) = self.pending.get(&id) {
                if node == i {
                    self.latencies.push(self.now - at);
                    self.pending.remove(&id);
                    self.report.committed += 1;
                    self.last_commit = self.now;
                }
            }
        }
    }

    fn finish(mut self) -> ScaleReport {
        let mut r = std::mem::take(&mut self.report);
        r.virtual_ms = self.now;
        r.offered_rate = r.submitted / self.opts.secs.max(1);
        r.blocks = self.decided.len() as u64;
        self.latencies.sort_unstable();
        let pct = |p: usize| -> u64 {
            if self.latencies.is_empty() {
                return 0;
            }
            let k = (self.latencies.len() * p).div_ceil(100).saturating_sub(1);
            self.latencies[k.min(self.latencies.len() - 1)]
        };
        r.p50_ms = pct(50);
        r.p99_ms = pct(99);
        r.max_ms = self.latencies.last().copied().unwrap_or(0);
        if let Some(first) = self.first_submit {
            let span = self.last_commit.saturating_sub(first).max(1);
            r.committed_tps = r.committed as f64 * 1000.0 / span as f64;
        }
        if r.blocks > 0 && !self.nodes.is_empty() {
            let total: u64 = self.nodes.iter().map(|n| n.consensus_in).sum();
            r.consensus_msgs_per_block = total as f64 / (r.blocks as f64 * self.nodes.len() as f64);
        }
        r.view_changes = self
            .nodes
            .iter()
            .map(|n| n.core.status().view)
            .max()
            .unwrap_or(0);
        if !self.pending.is_empty() {
            let left = self.pending.len();
            r.violations
                .push(format!("{left} submitted transactions never committed"));
        }
        r
    }
}
