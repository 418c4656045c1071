//! The whole-node simulator: N real node cores ([`aidledger_node_core`]),
//! each on its own in-memory store, under a seeded network with the
//! gossip semantics of the production network, clients that resend and
//! replay, governance-driven validator-set changes, crashes, wiped stores,
//! lost and rolled-back safety state, partitions and drifting clocks.
//!
//! Nothing here decides anything a node decides: admission, mempool,
//! gossip batching, block building, validation, commit, sync and
//! reconfiguration all run in `NodeCore`, the code the `aidledger` binary
//! runs. The simulator only delivers, delays, drops and checks.
//!
//! The transport models `aidledger-network`: a gossip message's id is the
//! SHA-256 of its bytes, each node drops ids it saw within the duplicate
//! window, a message is flooded to every reachable peer and forwarded once
//! by each receiver; consensus messages carry the network's per-send
//! counter frame, so a retransmission is a new message; sync is
//! request-response to one peer, failing after a timeout when unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aidledger_consensus::{Envelope, Payload as ConsensusPayload, SafetyState, MESSAGE_MAX_BYTES};
use aidledger_contracts::model::{GovAction, ModuleVersion, Subject};
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{keys, Condition, Genesis, Plan, Program, Release, TrancheStatus};
use aidledger_crypto::{verify_certificate, Keypair};
use aidledger_execution::testkit::{dev_genesis, TxFactory};
use aidledger_mempool::MempoolConfig;
use aidledger_node_core::{
    open_chain, Admission, Channel, ConsensusSettings, CoreParts, Count, Effect, Event, Mutants,
    NodeCore, Now, StoreState, SyncRequest, Telemetry, TxGossip,
};
use aidledger_storage::{MemStore, Store};
use aidledger_types::{
    codec, Hash, OrgId, PublicKey, Role, SignedTx, Slug, Timestamp, Validator, ValidatorSet,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

#[path = "adversary.rs"]
mod adversary;
use adversary::AdversaryMemory;
pub use adversary::Byz;

/// Nodes: four genesis validators and one organisation node (the audit
/// office's) that governance may make a validator.
pub const NODES: usize = 6;
/// Virtual time of one seed's faulty phase, then of the calm that follows.
const FAULT_PHASE_MS: u64 = 60_000;
/// After the last fault heals, every node that is up must commit a block
/// within this much virtual time.
pub const RECOVERY_BUDGET_MS: u64 = 45_000;
const CALM_PHASE_MS: u64 = RECOVERY_BUDGET_MS + 5_000;
/// Gossip's duplicate window (`aidledger-network`: 120 s).
const DUPLICATE_WINDOW_MS: u64 = 120_000;
/// An unanswerable sync request fails after this long.
const REQUEST_TIMEOUT_MS: u64 = 2_000;
/// Most events one seed may process.
const MAX_EVENTS: u64 = 3_000_000;
const ROUND_TIMEOUT_MS: u64 = 1_000;
/// Blocks beyond the activation delay a proposed validator set is scheduled
/// for, so that its approval, a governance round later, still executes.
const SET_ACTIVATION_MARGIN: u64 = 5;
const PROGRAM: &str = "relief";
/// A quiet stretch after the heal (ADR 017): clients submit nothing from
/// `QUIET_FROM_MS` to `QUIET_TO_MS` of virtual time, while a tranche dated
/// `DATED_AT_MS` (submitted before the stretch) must release on time.
const QUIET_FROM_MS: u64 = FAULT_PHASE_MS + 8_000;
const QUIET_TO_MS: u64 = FAULT_PHASE_MS + 30_000;
const DATED_SUBMIT_MS: u64 = FAULT_PHASE_MS + 3_000;
const DATED_AT_MS: u64 = FAULT_PHASE_MS + 20_000;
/// How late after its date the dated tranche may release: the empty-block
/// pace, a round timeout with a view change if the primary is down or
/// byzantine, and the nodes' clock skew.
const DATED_SLACK_MS: u64 = 5_000;
const DATED_PLAN: &str = "dated";

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Crashes, wipes, safety-state loss, partitions and message loss.
    pub faults: bool,
    /// Validator-set changes by governance.
    pub reconfig: bool,
    /// Deliberate defects in the node core.
    pub mutants: Mutants,
    /// Transport mutant: consensus messages without the per-send counter
    /// frame, so retransmissions fall into the duplicate filter.
    pub mutant_no_send_nonce: bool,
    /// In half of the seeds, one node (any of them) is byzantine, with a
    /// behaviour drawn from [`Byz::ALL`].
    pub byzantine: bool,
    /// This behaviour in every seed instead (with `byzantine`).
    pub byzantine_only: Option<Byz>,
    /// Every node pipelines (ADR 022): the leader proposes the next block
    /// before the one in flight commits.
    pub pipeline: bool,
    pub debug: bool,
}

/// What one seed did and found.
#[derive(Clone, Debug, Default)]
pub struct ClusterReport {
    pub seed: u64,
    pub max_height: u64,
    pub committed_txs: u64,
    pub submitted: u64,
    pub refused: u64,
    /// Refused because the node's mempool held its backlog (ADR 023).
    pub backlog_refused: u64,
    pub resent: u64,
    pub replayed_gossip: u64,
    /// Candidate blocks fetched by hash (a certificate came without its
    /// block).
    pub block_fetches: u64,
    pub reconfigurations: Vec<String>,
    /// The byzantine node and what it did, if there was one.
    pub byzantine: Option<(usize, Byz)>,
    /// Heights at which a new validator set took effect, with its name.
    pub set_changes: Vec<String>,
    pub faults: Vec<String>,
    pub violations: Vec<String>,
    pub virtual_ms: u64,
    pub messages: u64,
    pub trace_hash: u64,
    /// How the dated tranche of the quiet stretch fared.
    pub dated_release: Option<String>,
    /// Node 3 replaced its own key while running (ADR 017).
    pub key_replaced: bool,
    /// Decided blocks proposed before their parent committed (header v3,
    /// ADR 022).
    pub pipelined_blocks: u64,
    /// The contract upgrade to plans@4 governance scheduled, and whether
    /// the cluster reached its height (ADR 017, contract upgrades).
    pub upgrade: Option<(u64, bool)>,
}

impl ClusterReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {}; byzantine {}; height {}; {} txs committed; {} submitted, {} refused ({} for the backlog), {} resent, {} gossip replays; proposed [{}]; took effect [{}]; faults [{}]; dated tranche {}; node 3's key {}; upgrade {}; {} msgs; trace {:016x}",
            self.seed,
            if self.ok() { "ok" } else { "VIOLATION" },
            self.byzantine
                .map_or_else(|| "none".to_string(), |(i, b)| format!("node {i} {}", b.name())),
            self.max_height,
            self.committed_txs,
            self.submitted,
            self.refused,
            self.backlog_refused,
            self.resent,
            self.replayed_gossip,
            self.reconfigurations.join(", "),
            self.set_changes.join(", "),
            self.faults.join(", "),
            self.dated_release.as_deref().unwrap_or("-"),
            if self.key_replaced { "replaced" } else { "kept" },
            match self.upgrade {
                None => "none".to_string(),
                Some((at, true)) => format!("plans@4 from {at}"),
                Some((at, false)) => format!("plans@4 scheduled for {at}, not reached"),
            },
            self.messages,
            self.trace_hash
        )
    }
}

#[derive(Debug)]
enum Ev {
    Wake {
        node: usize,
        generation: u64,
    },
    Gossip {
        to: usize,
        from: usize,
        channel: Channel,
        frame: Arc<Vec<u8>>,
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
        boot: u64,
        data: Vec<u8>,
    },
    SyncFailed {
        to: usize,
        tag: u64,
        boot: u64,
    },
    Client,
    /// Submits (or resubmits, byte for byte) the dated plan and its
    /// approval.
    DatedPlan,
    Fault,
    Heal,
    Restart {
        node: usize,
    },
}

struct SimNode {
    /// The key it signs with (it moves to `next` with a replacement).
    key: Keypair,
    /// The key it started the run with (the genesis registers it).
    genesis_key: PublicKey,
    /// The staged replacement key (node 3 only), until it signs.
    next: Option<Keypair>,
    /// The core's member table: [`Peer`] `p` is node `table[p]` under the
    /// key `table_keys[p]`, and the peers it admits (ADR 017).
    table: Vec<usize>,
    table_keys: Vec<PublicKey>,
    live: Vec<usize>,
    org: OrgId,
    store: Arc<MemStore>,
    core: Option<NodeCore>,
    /// Admission's screen and signature check (ADR 016), the production
    /// code the node runs before its core; rebuilt with the core.
    admission: Option<Admission>,
    /// When this incarnation started (global ms), and a count of them.
    boot_at: u64,
    boot: u64,
    /// Clock offset from true time and rate error, in parts per million.
    skew_ms: i64,
    drift_ppm: i64,
    wake_generation: u64,
    /// Gossip ids seen, with when.
    seen: BTreeMap<[u8; 32], u64>,
    publish_seq: u64,
    /// The last persisted (height, view) seen in the store.
    safety: Option<(u64, u64)>,
    /// Per height, the highest view this node asked to move to (sent a
    /// view change for): it must never vote below it there again.
    left: BTreeMap<u64, u64>,
    /// Per height, the highest view this node signed a pre-prepare,
    /// prepare or commit in: views of its votes at a height never fall
    /// (docs/consensus.md, Lemma 1), votes cast ahead (pipelining)
    /// included.
    voted: BTreeMap<u64, u64>,
    /// Crash right after the next step that sends a consensus message
    /// (a power cut between send and whatever comes next).
    crash_after_send: bool,
    /// What this node signed per (height, view, kind): one block hash.
    signed: BTreeMap<(u64, u64, u8), Hash>,
    /// The node lost memory in this run (a wiped store, a lost or
    /// rolled-back safety state). Only such a node may sign a second block
    /// at a height that is already decided, where it harms no one.
    amnesic: bool,
    /// Earlier persisted safety states, one per height, for rollbacks.
    history: Vec<Vec<u8>>,
    /// The node has started before: its home's marker, which a wiped
    /// store does not take with it.
    ran: bool,
    /// A hot backup of the whole store (blocks, state and safety state
    /// together), taken by an earlier fault.
    backup: Option<MemStore>,
    /// The store was put back from `backup` (`aidledger restore`'s marker
    /// in the home), until the core says it has rejoined.
    restored: bool,
    /// After a restore: the highest height this key may have signed at
    /// before it (the store's tip when restored, plus the height then in
    /// flight). The restored node must sign no block at or below it.
    signed_before_restore: Option<u64>,
    /// Inbound sync replies owed: token to (requester, tag).
    owed: BTreeMap<u64, (usize, u64)>,
    next_token: u64,
    /// The adversary's notes, if this node is byzantine.
    adversary: AdversaryMemory,
}

struct Cluster {
    rng: ChaCha8Rng,
    opts: ClusterOptions,
    genesis: Genesis,
    factory: TxFactory,
    nodes: Vec<SimNode>,
    now: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    /// Groups of a partition: nodes talk only within their group.
    groups: Option<Vec<usize>>,
    /// The byzantine node, if any, and its behaviour.
    byz: Option<(usize, Byz)>,
    /// One-way blocks: (from, to) pairs whose messages are lost.
    one_way: BTreeSet<(usize, usize)>,
    loss_pct: u32,
    report: ClusterReport,
    /// The dated plan and its approval, once signed.
    dated_txs: Vec<SignedTx>,
    /// Committed block hash per height, the first seen.
    decided: BTreeMap<u64, Hash>,
    /// Every committed transaction id and its height.
    included: BTreeMap<Hash, u64>,
    /// Transactions clients sent, for resends.
    sent: Vec<SignedTx>,
    /// The submission being handled: its ticket, and for each transaction
    /// its id and whether the node's chain already held it.
    submitting: Option<(u64, Vec<(Hash, bool)>)>,
    next_ticket: u64,
    /// Old gossip messages, for replays.
    old_gossip: Vec<Arc<Vec<u8>>>,
    trace: u64,
    events: u64,
    /// Validator-set changes proposed so far.
    reconfig_step: u32,
    /// The validator set of the highest decided block.
    current_set: Option<Hash>,
    /// Node 3's staged replacement key.
    replacement_key: PublicKey,
    /// Governance was asked to replace node 3's key.
    replacement_asked: bool,
    /// Node 3 sent a consensus message signed with its replacement key.
    replaced_signed: bool,
    /// Governance was asked to upgrade plans@3 to plans@4 at this height.
    upgrade_at: Option<u64>,
    /// Clients' transactions the nodes refused for the backlog (ADR 023),
    /// as their cores count them.
    backlog_refused: Arc<AtomicU64>,
}

/// The core's telemetry, keeping only the backlog refusals: a count, fed
/// to no decision.
struct BacklogCount(Arc<AtomicU64>);

impl Telemetry for BacklogCount {
    fn count(&self, c: Count, n: u64) {
        if matches!(c, Count::BacklogRefusedTxs) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The height a change proposed at height `h` takes effect at: the
/// activation delay after the approval executes (the next governance
/// round, a few blocks on), plus a margin; a late approval is refused.
fn activation_height(state: &StoreState<'_>, h: u64) -> u64 {
    let delay = aidledger_execution::read_params(state)
        .map(|p| p.activation_delay_blocks)
        .unwrap_or(20);
    h + delay + SET_ACTIVATION_MARGIN
}

fn org(s: &str) -> OrgId {
    OrgId::new(s).unwrap_or_else(|e| panic!("sim org {s:?}: {e}"))
}

/// The registry at the store's tip as node core `CoreParts::members`
/// wants it: every registered key that `other` maps to another node, in
/// registry order (the order the shell hands them to the core), with that
/// node's index beside it.
pub(crate) fn member_table(
    store: &dyn Store,
    other: impl Fn(&PublicKey) -> Option<usize>,
) -> (Vec<PublicKey>, Vec<usize>) {
    aidledger_execution::read_nodes(&StoreState(store))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| other(&n.key).map(|j| (n.key, j)))
        .unzip()
}

/// Runs one seed.
pub fn run_cluster_seed(seed: u64, opts: &ClusterOptions) -> ClusterReport {
    let mut c = Cluster::new(seed, opts.clone());
    c.run();
    c.report.seed = seed;
    c.report.virtual_ms = c.now;
    c.report.trace_hash = c.trace;
    c.report.backlog_refused = c.backlog_refused.load(Ordering::Relaxed);
    c.report
}

impl Cluster {
    fn new(seed: u64, opts: ClusterOptions) -> Cluster {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e6f_6465_636f_7265);
        let (mut genesis, keys) = dev_genesis(4, seed);
        // The chain starts on plans@3; governance upgrades it to plans@4
        // at a height during the run (ADR 017, contract upgrades).
        genesis.modules = aidledger_contracts::newest_within(&[ModuleVersion {
            name: "plans".into(),
            version: 3,
        }]);
        // Node 4 belongs to the audit office; its key is an organisation
        // node key, allowed on the network, not a validator. Node 5 holds a
        // second node key of the organisation that runs validator 3: a
        // governance change that swaps the two is a node-key rotation.
        let spare = Keypair::from_seed(rng.gen());
        let second = Keypair::from_seed(rng.gen());
        let rotating = keys.validators[3].0.clone();
        for (owner, key) in [(org("audit-office"), &spare), (rotating.clone(), &second)] {
            if let Some(o) = genesis.orgs.iter_mut().find(|o| o.id == owner) {
                o.node_keys.push(key.public());
            }
        }
        let mut nodes = Vec::new();
        let mut node_keys: Vec<(OrgId, Keypair)> = keys.validators.clone();
        node_keys.push((org("audit-office"), spare));
        node_keys.push((rotating, second));
        // Node 3 replaces its own key while running when governance says
        // so (ReplaceNodeKey): it holds the replacement staged from the
        // start, as `aidledger keys stage` leaves it.
        let replacement = Keypair::from_seed(rng.gen());
        let replacement_key = replacement.public();
        let mut staged = vec![None; node_keys.len()];
        staged[3] = Some(replacement);
        for ((o, key), next) in node_keys.into_iter().zip(staged) {
            nodes.push(SimNode {
                genesis_key: key.public(),
                key,
                next,
                table: Vec::new(),
                table_keys: Vec::new(),
                live: Vec::new(),
                org: o,
                store: Arc::new(MemStore::new()),
                core: None,
                admission: None,
                boot_at: 0,
                boot: 0,
                skew_ms: rng.gen_range(-400..=400),
                drift_ppm: if opts.faults {
                    rng.gen_range(-20_000..=20_000)
                } else {
                    0
                },
                wake_generation: 0,
                seen: BTreeMap::new(),
                publish_seq: rng.gen(),
                safety: None,
                amnesic: false,
                history: Vec::new(),
                ran: false,
                backup: None,
                restored: false,
                signed_before_restore: None,
                left: BTreeMap::new(),
                voted: BTreeMap::new(),
                signed: BTreeMap::new(),
                crash_after_send: false,
                owed: BTreeMap::new(),
                next_token: 0,
                adversary: AdversaryMemory::default(),
            });
        }
        let factory = TxFactory::new(&genesis, keys.clone());
        let mut c = Cluster {
            rng,
            opts,
            genesis,
            factory,
            nodes,
            now: 0,
            queue: BTreeMap::new(),
            seq: 0,
            groups: None,
            one_way: BTreeSet::new(),
            loss_pct: 0,
            report: ClusterReport::default(),
            dated_txs: Vec::new(),
            decided: BTreeMap::new(),
            included: BTreeMap::new(),
            sent: Vec::new(),
            submitting: None,
            next_ticket: 1,
            old_gossip: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            events: 0,
            reconfig_step: 0,
            current_set: None,
            byz: None,
            replacement_key,
            replacement_asked: false,
            replaced_signed: false,
            upgrade_at: None,
            backlog_refused: Arc::new(AtomicU64::new(0)),
        };
        if c.opts.byzantine && (c.opts.byzantine_only.is_some() || c.rng.gen_bool(0.5)) {
            let node = c.rng.gen_range(0..NODES);
            let b = c
                .opts
                .byzantine_only
                .unwrap_or(Byz::ALL[c.rng.gen_range(0..Byz::ALL.len())]);
            c.byz = Some((node, b));
            c.report.byzantine = Some((node, b));
        }
        for i in 0..NODES {
            c.start(i);
        }
        c
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn violation(&mut self, v: String) {
        if self.opts.debug {
            eprintln!("[{}] VIOLATION {v}", self.now);
        }
        if self.report.violations.len() < 8 && !self.report.violations.contains(&v) {
            self.report.violations.push(v);
        }
    }

    /// The node's clock readings at the current global time.
    fn node_now(&self, i: usize) -> Now {
        let n = &self.nodes[i];
        let since = self.now.saturating_sub(n.boot_at) as i64;
        let mono = since + since * n.drift_ppm / 1_000_000;
        let wall = self.genesis.genesis_time.ms() as i64 + self.now as i64 + n.skew_ms;
        Now {
            wall_ms: wall.max(0) as u64,
            mono_ms: mono.max(0) as u64,
        }
    }

    /// Global time at which node `i`'s monotonic clock reads `mono`.
    fn global_at(&self, i: usize, mono: u64) -> u64 {
        let n = &self.nodes[i];
        let g = (mono as i128 * 1_000_000 / (1_000_000 + n.drift_ppm as i128)) as u64;
        (n.boot_at + g + 1).max(self.now + 1)
    }

    fn up(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    fn reachable(&self, from: usize, to: usize) -> bool {
        if let Some(g) = &self.groups {
            if g[from] != g[to] {
                return false;
            }
        }
        !self.one_way.contains(&(from, to))
    }

    fn start(&mut self, i: usize) {
        let store: Arc<dyn Store> = self.nodes[i].store.clone();
        let (parent, acc) = match open_chain(store.as_ref(), &self.genesis) {
            Ok(x) => x,
            Err(e) => {
                self.violation(format!("node {i} cannot open its chain: {e:#}"));
                return;
            }
        };
        let (members, table) =
            member_table(store.as_ref(), |k| self.owner_of(k).filter(|j| *j != i));
        let n = &mut self.nodes[i];
        n.live = (0..table.len()).collect();
        n.table = table;
        n.table_keys = members.clone();
        n.boot_at = self.now;
        n.boot += 1;
        n.seen.clear();
        n.owed.clear();
        let parts = CoreParts {
            chain_id: self.genesis.chain_id.clone(),
            consensus: ConsensusSettings {
                max_block_txs: 64,
                max_block_bytes: 1 << 20,
                // Pipelined runs pace blocks faster than a round takes
                // here (three hops of 1 to 25 ms, sometimes 300), so
                // that the leader proposes before the parent commits.
                block_interval_ms: if self.opts.pipeline { 20 } else { 150 },
                empty_block_interval_ms: 600,
                round_timeout_ms: ROUND_TIMEOUT_MS,
                max_clock_drift_ms: 10_000,
                sync_batch: 16,
                pipeline: self.opts.pipeline,
            },
            mempool: MempoolConfig {
                max_txs: 2_000,
                max_bytes: 8 << 20,
                max_per_sender: 64,
                nonce_window: 64,
                gap_ttl_ms: 5_000,
                backlog_ms: 5_000,
                backlog_min_txs: 64,
            },
            gossip_max_bytes: 1 << 20,
            sync_response_max_bytes: 8 << 20,
            key: n.key.clone(),
            next_key: n.next.clone(),
            store,
            members,
            parent,
            acc,
            accept_missing_safety_state: false,
            ran_before: self.nodes[i].ran,
            restored: self.nodes[i].restored,
            telemetry: Box::new(BacklogCount(self.backlog_refused.clone())),
            mutants: self.opts.mutants.clone(),
            module_ceiling: Vec::new(),
        };
        let now = self.node_now(i);
        let admission = Admission::new(
            self.genesis.chain_id.clone(),
            self.nodes[i].store.clone(),
            parts.mempool.nonce_window,
            parts.gossip_max_bytes,
            &self.opts.mutants,
        );
        match NodeCore::new(parts, now) {
            Ok(core) => {
                self.nodes[i].core = Some(core);
                self.nodes[i].admission = Some(admission);
            }
            Err(e) => {
                self.violation(format!("node {i} cannot start: {e:#}"));
                return;
            }
        }
        self.nodes[i].ran = true;
        self.nodes[i].safety = self.read_safety(i);
        self.step(i, Event::Start);
        self.refresh_peers(i);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].core = None;
        self.nodes[i].admission = None;
        self.nodes[i].wake_generation += 1;
    }

    fn refresh_peers(&mut self, i: usize) {
        if !self.up(i) {
            return;
        }
        // A peer is connected under its network identity only.
        let peers: Vec<usize> = self.nodes[i]
            .live
            .iter()
            .copied()
            .filter(|p| {
                let j = self.nodes[i].table[*p];
                self.up(j)
                    && self.reachable(i, j)
                    && self.reachable(j, i)
                    && self.network_key(j) == Some(self.nodes[i].table_keys[*p])
            })
            .collect();
        self.step(i, Event::Peers(peers));
    }

    /// The node holding `key`, by its genesis or replacement key.
    fn owner_of(&self, key: &PublicKey) -> Option<usize> {
        if *key == self.replacement_key {
            return Some(3);
        }
        self.nodes.iter().position(|n| n.genesis_key == *key)
    }

    /// The key node `j`'s network identity derives from now.
    fn network_key(&self, j: usize) -> Option<PublicKey> {
        self.nodes[j].core.as_ref().map(|c| c.status().network_key)
    }

    fn read_safety(&self, i: usize) -> Option<(u64, u64)> {
        let bytes = self.nodes[i].store.safety_state().ok()??;
        let s = SafetyState::decode(&bytes).ok()?;
        Some((s.height, s.view))
    }

    /// Hands one event to node `i`'s core and performs its effects.
    fn step(&mut self, i: usize, ev: Event) {
        let now = self.node_now(i);
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let effects = match core.handle(now, ev) {
            Ok(e) => e,
            Err(e) => {
                self.violation(format!("node {i} stopped on a fatal error: {e:#}"));
                self.crash(i);
                return;
            }
        };
        let wake = core.next_wakeup();
        let rejoined = core.rejoined();
        if self.nodes[i].restored && rejoined {
            // The shell deletes the marker: from here on the safety state
            // records every vote this key casts.
            self.nodes[i].restored = false;
        }
        // Persisted safety state never goes back.
        let safety = self.read_safety(i);
        if let (Some(old), Some(new)) = (self.nodes[i].safety, safety) {
            if new < old {
                self.violation(format!(
                    "node {i}: persisted safety state went back from {old:?} to {new:?}"
                ));
            }
        }
        if safety.is_some_and(|s| Some(s.0) != self.nodes[i].safety.map(|o| o.0)) {
            if let Ok(Some(bytes)) = self.nodes[i].store.safety_state() {
                let h = &mut self.nodes[i].history;
                h.push(bytes);
                if h.len() > 8 {
                    h.remove(0);
                }
            }
        }
        if safety.is_some() {
            self.nodes[i].safety = safety;
        }
        let sends = effects.iter().any(|e| {
            matches!(
                e,
                Effect::Publish {
                    channel: Channel::Consensus,
                    ..
                }
            )
        });
        for e in effects {
            self.perform(i, e);
        }
        if sends && self.nodes[i].crash_after_send {
            self.nodes[i].crash_after_send = false;
            self.crash(i);
            let back = self.now + self.rng.gen_range(200..2_000);
            self.push(back, Ev::Restart { node: i });
            return;
        }
        let at = self.global_at(i, wake);
        self.nodes[i].wake_generation += 1;
        let generation = self.nodes[i].wake_generation;
        self.push(
            at,
            Ev::Wake {
                node: i,
                generation,
            },
        );
    }

    fn perform(&mut self, i: usize, e: Effect) {
        match e {
            Effect::Publish { channel, data } => {
                if channel == Channel::Consensus {
                    self.check_sent(i, &data);
                    if let Some((b, byz)) = self.byz {
                        if b == i {
                            self.byz_publish(i, byz, data);
                            return;
                        }
                    }
                }
                let frame = match channel {
                    Channel::Consensus => self.consensus_frame(i, &data),
                    Channel::Txs => Arc::new(data),
                };
                if channel == Channel::Txs && self.old_gossip.len() < 64 {
                    self.old_gossip.push(frame.clone());
                }
                let id: [u8; 32] = Sha256::digest(frame.as_slice()).into();
                // Publishing what this node saw within the window fails,
                // as gossipsub's duplicate publish does.
                if self.nodes[i].seen.contains_key(&id) {
                    return;
                }
                self.nodes[i].seen.insert(id, self.now);
                self.flood(i, None, channel, frame);
            }
            Effect::Request { tag, peer, data } => {
                if matches!(
                    codec::decode::<SyncRequest>(&data),
                    Ok(SyncRequest::Candidate { .. })
                ) {
                    self.report.block_fetches += 1;
                }
                let Some(to) = self.nodes[i].table.get(peer).copied() else {
                    self.violation(format!(
                        "node {i} asked peer {peer}, outside its member table"
                    ));
                    return;
                };
                let boot = self.nodes[i].boot;
                if self.reachable(i, to) && self.up(to) && !self.lost() {
                    let at = self.now + self.delay();
                    self.push(
                        at,
                        Ev::SyncRequest {
                            to,
                            from: i,
                            tag,
                            data,
                        },
                    );
                } else {
                    self.push(
                        self.now + REQUEST_TIMEOUT_MS,
                        Ev::SyncFailed { to: i, tag, boot },
                    );
                }
            }
            Effect::Reply { token, data } => {
                if let Some((to, tag)) = self.nodes[i].owed.remove(&token) {
                    let boot = self.nodes[to].boot;
                    if self.reachable(i, to) && !self.lost() {
                        let at = self.now + self.delay();
                        self.push(
                            at,
                            Ev::SyncResponse {
                                to,
                                tag,
                                boot,
                                data,
                            },
                        );
                    } else {
                        self.push(
                            self.now + REQUEST_TIMEOUT_MS,
                            Ev::SyncFailed { to, tag, boot },
                        );
                    }
                }
            }
            Effect::Verdicts { ticket, verdicts } => {
                let sent = match self.submitting.take() {
                    Some((t, sent)) if t == ticket => sent,
                    _ => Vec::new(),
                };
                for (k, v) in verdicts.iter().enumerate() {
                    if v.is_err() {
                        self.report.refused += 1;
                    }
                    // Once only starts at the door: a copy of a transaction
                    // the node's own chain holds is refused at admission,
                    // never queued or answered as accepted.
                    if let (Some((id, true)), Ok(_)) = (sent.get(k), v) {
                        self.violation(format!(
                            "node {i} admitted {}, which its chain already holds",
                            id.short()
                        ));
                    }
                }
            }
            Effect::Committed { height, txs } => self.on_commit(i, height, txs),
            // Every simulated node is in the genesis registry and the
            // cluster's governance never changes it: a change here means
            // the core misread its registry.
            Effect::Members { table, live } => {
                // Append-only: what the node knew keeps its index.
                if !table.starts_with(&self.nodes[i].table_keys) {
                    self.violation(format!("node {i} reordered its member table"));
                    return;
                }
                for k in table.iter().skip(self.nodes[i].table_keys.len()) {
                    match self.owner_of(k) {
                        Some(j) => {
                            self.nodes[i].table.push(j);
                            self.nodes[i].table_keys.push(*k);
                        }
                        None => {
                            self.violation(format!("node {i} admitted an unknown key {k}"));
                            return;
                        }
                    }
                }
                self.nodes[i].live = live;
                self.refresh_peers(i);
            }
            Effect::Keys { signing, network } => {
                if i != 3 || network != self.replacement_key {
                    self.violation(format!(
                        "node {i} moved its keys to signing {signing}, network {network}, which \
                         no replacement names"
                    ));
                    return;
                }
                if signing == self.replacement_key {
                    // The shell's promotion: the staged key is the node key.
                    if let Some(k) = self.nodes[i].next.take() {
                        self.nodes[i].key = k;
                    }
                }
                // Its connections move to the new identity.
                for j in 0..NODES {
                    if j != i {
                        self.refresh_peers(j);
                    }
                }
            }
        }
    }

    /// What an honest node sends: votes only in views it has not left,
    /// and, for the height in flight, in no view above its live replica's
    /// and as its own index in that height's validator set (a stale
    /// replica would have joined a view the live one has not, or sign with
    /// an old index).
    fn check_sent(&mut self, i: usize, data: &[u8]) {
        let Ok(env) = Envelope::decode(data, MESSAGE_MAX_BYTES) else {
            self.violation(format!("node {i} sent an undecodable consensus message"));
            return;
        };
        let (h, v) = (env.payload.height(), env.payload.view());
        let kind = env.payload.kind();
        // PBFT §4.4, checked on what the honest core sends: a view change
        // for the view it is changing to carries the prepared certificate
        // its persisted safety state holds, and a new-view re-proposes the
        // block of the highest prepared certificate among its view changes.
        match &env.payload {
            ConsensusPayload::ViewChange(vc) => {
                let state = self.nodes[i]
                    .store
                    .safety_state()
                    .ok()
                    .flatten()
                    .and_then(|b| SafetyState::decode(&b).ok());
                if let Some(s) = state {
                    // The state is read after the whole step: a prepare
                    // reached later in the same step (buffered messages
                    // replayed after a new-view) is in a view not below
                    // the one changed to, and is not what this message
                    // had to carry.
                    let held = s.prepared.as_ref().filter(|p| {
                        s.height == vc.height && s.view == vc.new_view && p.view < vc.new_view
                    });
                    if let Some(p) = held {
                        if vc.prepared.as_ref().is_none_or(|c| c.view < p.view) {
                            self.violation(format!(
                                "node {i} sent a view change for view {} at height {h} without its prepared certificate (view {}, {})",
                                vc.new_view,
                                p.view,
                                p.block_hash.short()
                            ));
                        }
                    }
                }
            }
            ConsensusPayload::NewView(nv) => {
                let top = nv
                    .view_changes
                    .iter()
                    .filter_map(|s| s.view_change.prepared.as_ref())
                    .map(|p| p.view)
                    .max();
                if let Some(top) = top {
                    let top_cert = |hash: Hash| {
                        nv.view_changes.iter().any(|s| {
                            s.view_change
                                .prepared
                                .as_ref()
                                .is_some_and(|p| p.view == top && p.block_hash == hash)
                        })
                    };
                    // Or, with pipelining, no re-proposal when that block
                    // extends a parent that lost: it goes along so backups
                    // can see its parent (P7; they check it).
                    let ok = match nv.reproposal {
                        Some((hash, _)) => top_cert(hash),
                        None => env.block.as_ref().is_some_and(|b| top_cert(b.hash())),
                    };
                    if !ok {
                        self.violation(format!(
                            "node {i} sent a new-view for view {v} at height {h} that does not re-propose the highest prepared block (prepared in view {top})"
                        ));
                    }
                }
            }
            _ => {}
        }
        let n = &mut self.nodes[i];
        match &env.payload {
            ConsensusPayload::ViewChange(_) => {
                let e = n.left.entry(h).or_insert(0);
                *e = (*e).max(v);
                while n.left.len() > 64 {
                    n.left.pop_first();
                }
            }
            ConsensusPayload::PrePrepare { block_hash, .. }
            | ConsensusPayload::Prepare { block_hash, .. }
            | ConsensusPayload::Commit { block_hash, .. } => {
                let k = match &env.payload {
                    ConsensusPayload::PrePrepare { .. } => 0u8,
                    ConsensusPayload::Prepare { .. } => 1,
                    _ => 2,
                };
                // A restored key may have signed at every height up to the
                // one in flight when it was restored, and the backup's
                // safety state does not know how: it signs nothing there.
                if let Some(top) = n.signed_before_restore.filter(|top| h <= *top) {
                    self.violation(format!(
                        "node {i} sent a {kind} at height {h} after its restore, where it may \
                         have signed before (heights up to {top})"
                    ));
                    return;
                }
                match n.signed.get(&(h, v, k)) {
                    // A height already decided cannot be split by a
                    // second signature: a certificate for it exists. That
                    // happens only to a node whose store is empty again
                    // (wiped, then its safety state lost before it synced
                    // past height 1: an empty store looks like a fresh
                    // chain, and the amnesia guard has nothing to go on).
                    // It signs at that long-decided height again; every
                    // peer refuses it as stale. Seed 316 found this. A
                    // node that never lost memory has no such excuse: a
                    // primary that crashed right after its pre-prepare
                    // must not propose another block when it comes back,
                    // even where the others decided without it.
                    Some(b)
                        if b != block_hash && (!self.decided.contains_key(&h) || !n.amnesic) =>
                    {
                        let first = b.short();
                        self.violation(format!(
                            "node {i} equivocated: two {kind}s in view {v} at height {h} ({first} and {})",
                            block_hash.short()
                        ));
                        return;
                    }
                    Some(_) => {}
                    None => {
                        n.signed.insert((h, v, k), *block_hash);
                        while n.signed.len() > 256 {
                            n.signed.pop_first();
                        }
                    }
                }
                // (Decided heights excepted, as above.)
                let undecided = !self.decided.contains_key(&h);
                let n = &mut self.nodes[i];
                if let Some(left) = n.left.get(&h).copied().filter(|l| *l > v && undecided) {
                    self.violation(format!(
                        "node {i} sent a {kind} in view {v} at height {h} after moving to view {left}"
                    ));
                }
                let n = &mut self.nodes[i];
                let top = n.voted.entry(h).or_insert(v);
                if v < *top && undecided && !n.amnesic {
                    let top = *top;
                    self.violation(format!(
                        "node {i} sent a {kind} in view {v} at height {h} after voting there in view {top}"
                    ));
                } else {
                    *top = (*top).max(v);
                    while n.voted.len() > 64 {
                        n.voted.pop_first();
                    }
                }
            }
            ConsensusPayload::NewView(_) => {}
        }
        let Some(core) = self.nodes[i].core.as_ref() else {
            return;
        };
        if h != core.parent().height + 1 {
            return;
        }
        let status = core.status();
        let signer = core
            .parent()
            .validator_set
            .validators()
            .get(usize::from(env.from))
            .map(|v| v.key);
        let me = status.node_key;
        if i == 3 && me == self.replacement_key {
            self.replaced_signed = true;
        }
        // A replica signs nothing for a view above its own: its view only
        // rises within a height, and this is read after the whole step. A
        // message above it came from a replica the node no longer runs (an
        // old validator set's, issue 13).
        if status.is_voting && v > status.view {
            self.violation(format!(
                "node {i} sent a {kind} for view {v} at height {h}, above its replica's view {}",
                status.view
            ));
        }
        if signer != Some(me) {
            self.violation(format!(
                "node {i} sent a {kind} for height {h} as validator {}, which is not its index in that height's set",
                env.from
            ));
        }
    }

    fn delay(&mut self) -> u64 {
        if self.rng.gen_range(0..100u32) < 5 {
            self.rng.gen_range(30..300)
        } else {
            self.rng.gen_range(1..25)
        }
    }

    fn lost(&mut self) -> bool {
        self.loss_pct > 0 && self.rng.gen_range(0..100u32) < self.loss_pct
    }

    /// Sends a gossip frame from `from` to every reachable peer but `skip`.
    /// `data` behind node `i`'s next per-send counter, as the network
    /// frames a consensus publish (a fixed 0 with the no-send-nonce
    /// mutant).
    fn consensus_frame(&mut self, i: usize, data: &[u8]) -> Arc<Vec<u8>> {
        let seq = if self.opts.mutant_no_send_nonce {
            0
        } else {
            self.nodes[i].publish_seq = self.nodes[i].publish_seq.wrapping_add(1);
            self.nodes[i].publish_seq
        };
        let mut f = seq.to_be_bytes().to_vec();
        f.extend_from_slice(data);
        Arc::new(f)
    }

    fn flood(&mut self, from: usize, skip: Option<usize>, channel: Channel, frame: Arc<Vec<u8>>) {
        for to in 0..NODES {
            if to == from || Some(to) == skip || !self.reachable(from, to) || self.lost() {
                continue;
            }
            self.report.messages += 1;
            let at = self.now + self.delay();
            self.push(
                at,
                Ev::Gossip {
                    to,
                    from,
                    channel,
                    frame: frame.clone(),
                },
            );
        }
    }

    fn on_commit(&mut self, i: usize, height: u64, txs: Vec<Hash>) {
        let Ok(Some(hash)) = self.nodes[i].store.block_hash(height) else {
            self.violation(format!(
                "node {i} reported height {height} but stored no block"
            ));
            return;
        };
        match self.decided.get(&height) {
            Some(h) if *h != hash => self.violation(format!(
                "agreement: height {height} is {} at node {i} but {} elsewhere",
                hash.short(),
                h.short()
            )),
            Some(_) => {}
            None => {
                self.decided.insert(height, hash);
                if let Ok(Some(b)) = self.nodes[i].store.block(height) {
                    if b.header.version == aidledger_types::HEADER_VERSION_PIPELINED {
                        self.report.pipelined_blocks += 1;
                    }
                    let set = b.header.validator_set_hash;
                    if self.current_set != Some(set) {
                        if self.current_set.is_some() {
                            let name = self
                                .set_by_hash(set)
                                .map_or_else(|| "an unknown set".to_string(), |(n, _)| n);
                            self.report.set_changes.push(format!("{name} at {height}"));
                        }
                        self.current_set = Some(set);
                    }
                }
                self.check_time_floor(i, height);
                self.report.committed_txs += txs.len() as u64;
                self.report.max_height = self.report.max_height.max(height);
                self.trace = fnv(self.trace, &hash.0);
            }
        }
        for id in txs {
            match self.included.get(&id) {
                Some(h) if *h != height => self.violation(format!(
                    "transaction {} included at heights {h} and {height}",
                    id.short()
                )),
                Some(_) => {}
                None => {
                    self.included.insert(id, height);
                }
            }
        }
        if let Ok(Some(cert)) = self.nodes[i].store.certificate(height) {
            let vset = self.validators_before(i, height);
            if let Some(vset) = vset {
                if let Err(e) =
                    verify_certificate(&cert, &self.genesis.chain_id, &vset, height, &hash)
                {
                    self.violation(format!("node {i}: certificate of height {height}: {e}"));
                }
            }
        }
    }

    /// ADR 014's guarantee, checked from outside: the time of block
    /// `height` is not below every honest clock that voted for the
    /// ancestor whose certificate its header carries: the decided parent,
    /// or in a pipelined header (ADR 022) the decided grandparent. The
    /// certificate is valid, and the time is at least the earliest commit
    /// time an honest signer of it wrote (the byzantine node's times do
    /// not count).
    fn check_time_floor(&mut self, i: usize, height: u64) {
        if height < 2 {
            return;
        }
        let Ok(Some(block)) = self.nodes[i].store.block(height) else {
            return;
        };
        let Some(cert) = block.header.parent_certificate.clone() else {
            return self.violation(format!(
                "block {height} carries no certificate of its parent"
            ));
        };
        let (certified, certified_hash) =
            if block.header.version == aidledger_types::HEADER_VERSION_PIPELINED {
                let Ok(Some(parent)) = self.nodes[i].store.block(height - 1) else {
                    return;
                };
                (height - 2, parent.header.parent_hash)
            } else {
                (height - 1, block.header.parent_hash)
            };
        if let Some(set) = self.validators_before(i, certified) {
            if let Err(e) = verify_certificate(
                &cert,
                &self.genesis.chain_id,
                &set,
                certified,
                &certified_hash,
            ) {
                return self.violation(format!(
                    "block {height} carries a bad certificate of its parent: {e}"
                ));
            }
            let byz_key = self.byz.map(|(b, _)| self.nodes[b].key.public());
            let honest_min = cert
                .signatures
                .iter()
                .filter(|s| set.get(s.validator as usize).map(|v| v.key) != byz_key)
                .map(|s| s.time)
                .min();
            if let Some(t) = honest_min {
                if block.header.timestamp < t {
                    self.violation(format!(
                        "block {height}'s time {} is below every honest commit time of its \
                         parent (the earliest is {})",
                        block.header.timestamp.ms(),
                        t.ms()
                    ));
                }
            }
        }
    }

    /// The validator set that certifies `height` on node `i`'s chain: the
    /// one its header names.
    fn validators_before(&self, i: usize, height: u64) -> Option<ValidatorSet> {
        let block = self.nodes[i].store.block(height).ok()??;
        self.set_by_hash(block.header.validator_set_hash)
            .map(|(_, s)| s)
    }

    /// A set this run may use (genesis's or one governance may adopt),
    /// named, by its hash.
    fn set_by_hash(&self, hash: Hash) -> Option<(String, ValidatorSet)> {
        if self.genesis.validators.hash() == hash {
            return Some(("genesis set".to_string(), self.genesis.validators.clone()));
        }
        self.known_sets()
            .into_iter()
            .find(|(_, s)| s.hash() == hash)
    }

    /// Every validator set this run may use: each named set, and where
    /// it holds node 3, the same set with node 3's replacement key (the
    /// set a `ReplaceNodeKey` schedules, or one proposed after it).
    fn known_sets(&self) -> Vec<(String, ValidatorSet)> {
        let mut out = self.named_sets(false);
        let with_replacement = self
            .named_sets(true)
            .into_iter()
            .filter(|(_, s)| s.index_of(&self.replacement_key).is_some());
        out.extend(with_replacement);
        out
    }

    /// The named sets, with node 3 under its replacement key if `replaced`.
    fn named_sets(&self, replaced: bool) -> Vec<(String, ValidatorSet)> {
        let v = |i: usize| Validator {
            org: self.nodes[i].org.clone(),
            key: if replaced && i == 3 {
                self.replacement_key
            } else {
                self.nodes[i].genesis_key
            },
        };
        let mk = |ids: &[usize]| ValidatorSet::new(ids.iter().map(|i| v(*i)).collect()).ok();
        let mut out = Vec::new();
        for (name, ids) in [
            ("grow to five", vec![0, 1, 2, 3, 4]),
            ("shrink to four", vec![0, 1, 2, 3]),
            ("replace finance-bureau by audit-office", vec![0, 1, 2, 4]),
            ("remove poverty-office", vec![0, 1, 3, 4]),
            ("rotate validator 3's node key", vec![0, 1, 2, 5]),
            ("grow to five on the rotated key", vec![0, 1, 2, 4, 5]),
        ] {
            if let Some(s) = mk(&ids) {
                let name = if replaced && ids.contains(&3) {
                    format!("{name} (node 3's replaced key)")
                } else {
                    name.to_string()
                };
                out.push((name, s));
            }
        }
        out
    }

    fn run(&mut self) {
        self.push(500, Ev::Client);
        if self.opts.faults {
            let at = self.rng.gen_range(2_000..8_000);
            self.push(at, Ev::Fault);
        }
        let end = FAULT_PHASE_MS + CALM_PHASE_MS;
        self.push(FAULT_PHASE_MS, Ev::Heal);
        self.push(DATED_SUBMIT_MS, Ev::DatedPlan);
        self.push(DATED_SUBMIT_MS + 2_000, Ev::DatedPlan);
        let mut heights_at_heal: Vec<u64> = Vec::new();
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            if at > end {
                break;
            }
            self.now = at;
            self.events += 1;
            if self.events > MAX_EVENTS {
                self.violation(format!("storm: more than {MAX_EVENTS} events"));
                break;
            }
            if let Ev::Heal = ev {
                heights_at_heal = (0..NODES).map(|i| self.height(i)).collect();
            }
            self.process(ev);
        }
        self.final_checks(&heights_at_heal);
    }

    fn height(&self, i: usize) -> u64 {
        self.nodes[i]
            .store
            .head()
            .ok()
            .flatten()
            .map_or(0, |h| h.height)
    }

    fn process(&mut self, ev: Ev) {
        match ev {
            Ev::Wake { node, generation } => {
                if self.nodes[node].wake_generation == generation {
                    self.step(node, Event::Tick);
                }
            }
            Ev::Gossip {
                to,
                from,
                channel,
                frame,
            } => {
                if !self.up(to) || !self.reachable(from, to) {
                    return;
                }
                let id: [u8; 32] = Sha256::digest(frame.as_slice()).into();
                let now = self.now;
                let seen = &mut self.nodes[to].seen;
                if seen.get(&id).is_some_and(|t| now < t + DUPLICATE_WINDOW_MS) {
                    return;
                }
                seen.insert(id, now);
                if seen.len() > 50_000 {
                    seen.retain(|_, t| now < *t + DUPLICATE_WINDOW_MS);
                }
                self.trace = fnv(self.trace, &id[..8]);
                // Forwarded once, as a gossip mesh does.
                self.flood(to, Some(from), channel, frame.clone());
                let ev = match channel {
                    Channel::Consensus => {
                        if frame.len() < 8 {
                            return;
                        }
                        if let Some((b, byz)) = self.byz {
                            if b == to {
                                self.byz_observe(to, byz, &frame[8..]);
                            }
                        }
                        Event::Consensus(frame[8..].to_vec())
                    }
                    Channel::Txs => match &self.nodes[to].admission {
                        Some(a) => Event::Gossiped(a.gossip(vec![frame.to_vec()])),
                        None => return,
                    },
                };
                self.step(to, ev);
            }
            Ev::SyncRequest {
                to,
                from,
                tag,
                data,
            } => {
                if !self.up(to) {
                    let boot = self.nodes[from].boot;
                    self.push(
                        self.now + REQUEST_TIMEOUT_MS,
                        Ev::SyncFailed {
                            to: from,
                            tag,
                            boot,
                        },
                    );
                    return;
                }
                let n = &mut self.nodes[to];
                n.next_token += 1;
                let token = n.next_token;
                n.owed.insert(token, (from, tag));
                self.step(to, Event::SyncRequest { token, data });
            }
            Ev::SyncResponse {
                to,
                tag,
                boot,
                data,
            } => {
                if self.nodes[to].boot == boot {
                    self.step(to, Event::SyncResponse { tag, data });
                }
            }
            Ev::SyncFailed { to, tag, boot } => {
                if self.nodes[to].boot == boot {
                    self.step(to, Event::SyncFailed { tag });
                }
            }
            Ev::DatedPlan => self.dated_plan(),
            Ev::Client => {
                self.client();
                // Pipelined runs submit more often, so that work arrives
                // while a block is in flight and the next one is built on
                // it before it commits.
                let gap = if self.opts.pipeline { 20..80 } else { 100..400 };
                let next = self.now + self.rng.gen_range(gap);
                self.push(next, Ev::Client);
            }
            Ev::Fault => {
                if self.now >= FAULT_PHASE_MS {
                    return; // The faults have healed for good.
                }
                self.fault();
                if self.now < FAULT_PHASE_MS - 10_000 {
                    let next = self.now + self.rng.gen_range(3_000..12_000);
                    self.push(next, Ev::Fault);
                }
            }
            Ev::Heal => self.heal_all(),
            Ev::Restart { node } => {
                if !self.up(node) {
                    self.start(node);
                }
            }
        }
    }

    /// Ends every fault: partitions, loss, crashed nodes.
    fn heal_all(&mut self) {
        self.groups = None;
        self.one_way.clear();
        self.loss_pct = 0;
        for i in 0..NODES {
            self.nodes[i].crash_after_send = false;
            if !self.up(i) {
                self.start(i);
            }
        }
        for i in 0..NODES {
            self.refresh_peers(i);
        }
    }

    fn fault(&mut self) {
        // At most one node is down or amnesic at a time; partitions and
        // loss come and go on their own.
        // A validator abstaining after losing its safety state is as good
        // as down: two of them leave three of four validators unable to
        // reach a quorum, and by design (the double-sign check) only an
        // operator can end that.
        let down = (0..NODES)
            .filter(|i| {
                self.nodes[*i]
                    .core
                    .as_ref()
                    .is_none_or(|c| c.abstaining_through().is_some() || c.rejoining())
                    || self.nodes[*i].crash_after_send
            })
            .count();
        let pick = self.rng.gen_range(0..9u32);
        let i = self.rng.gen_range(0..NODES);
        let name = match pick {
            0 if down == 0 => {
                // The restart happens at the next fault or at the heal.
                self.crash(i);
                format!("crash {i}")
            }
            1 if down == 0 => {
                // Down right after its next consensus send, back soon.
                self.nodes[i].crash_after_send = true;
                format!("crash after send {i}")
            }
            // With a byzantine node present, no other node loses its
            // memory: an amnesic validator is a second byzantine one for
            // the f = 1 budget (an empty store looks like a fresh chain,
            // which the amnesia guard cannot tell apart; seeds 3636 and
            // 4127 forked height 1 and 3 that way).
            2 if down == 0 && self.byz.is_none() => {
                // A wiped data directory: the node comes back empty and
                // syncs everything from its peers.
                let tip = self.height(i);
                self.crash(i);
                self.nodes[i].store = Arc::new(MemStore::new());
                self.nodes[i].safety = None;
                self.nodes[i].history.clear();
                self.nodes[i].amnesic = true;
                // The checker keeps what the node signed before: back on an
                // empty store (its home's marker says it ran here), it must
                // catch up without voting and abstain one more height.
                self.start(i);
                format!("wipe {i} at height {tip}")
            }
            3 if down == 0 && self.byz.is_none() => {
                // The safety state deleted, or an older one restored.
                self.crash(i);
                let s = &self.nodes[i].store;
                let kind = if self.rng.gen_bool(0.5) {
                    s.forget_safety_state();
                    "lost"
                } else {
                    let h = &self.nodes[i].history;
                    let older = (h.len() >= 3).then(|| h[h.len() - 3].clone());
                    match older {
                        Some(b) => {
                            let _ = s.put_safety_state(&b);
                            "rolled back"
                        }
                        None => {
                            s.forget_safety_state();
                            "lost"
                        }
                    }
                };
                self.nodes[i].safety = None;
                self.nodes[i].history.clear();
                self.nodes[i].amnesic = true;
                self.start(i);
                format!("safety state {kind} {i}")
            }
            4 => {
                let a = self.rng.gen_range(0..NODES);
                let mut g = vec![0usize; NODES];
                let two = self.rng.gen_bool(0.5);
                for (j, slot) in g.iter_mut().enumerate() {
                    *slot = usize::from(if two { j % 2 == a % 2 } else { j == a });
                }
                let side = g.iter().filter(|x| **x == 1).count();
                self.groups = Some(g);
                for j in 0..NODES {
                    self.refresh_peers(j);
                }
                format!("partition {side}|{}", NODES - side)
            }
            5 => {
                let a = self.rng.gen_range(0..NODES);
                let b = (a + self.rng.gen_range(1..NODES)) % NODES;
                self.one_way.insert((a, b));
                format!("one-way {a}->{b}")
            }
            6 => {
                self.loss_pct = self.rng.gen_range(5..30);
                format!("loss {}%", self.loss_pct)
            }
            // A hot backup, later restored (`aidledger backup`, then
            // `aidledger restore`): blocks, state and the safety state all
            // go back together, so the safety state agrees with the blocks
            // and only the restore marker tells the node it may have voted
            // at heights since.
            8 if down == 0 && self.byz.is_none() => {
                // Some node with a backup older than its store (starting
                // from `i`), restored in most draws; else `i` backs up.
                let older = (0..NODES).map(|k| (i + k) % NODES).find_map(|j| {
                    let tip = self.height(j);
                    self.nodes[j]
                        .backup
                        .as_ref()
                        .and_then(|b| b.head().ok().flatten())
                        .map(|h| h.height)
                        .filter(|h| *h < tip)
                        .map(|h| (j, h, tip))
                });
                match older.filter(|_| self.rng.gen_bool(0.7)) {
                    Some((i, from, tip)) => {
                        self.crash(i);
                        let copy = self.nodes[i].backup.as_ref().map(MemStore::snapshot);
                        self.nodes[i].store = Arc::new(copy.unwrap_or_default());
                        self.nodes[i].safety = None;
                        self.nodes[i].history.clear();
                        self.nodes[i].amnesic = true;
                        self.nodes[i].restored = true;
                        let before = self.nodes[i].signed_before_restore.unwrap_or(0);
                        self.nodes[i].signed_before_restore = Some(before.max(tip + 1));
                        self.start(i);
                        format!("restore {i} from a backup at height {from} (was at {tip})")
                    }
                    None => {
                        let tip = self.height(i);
                        self.nodes[i].backup = Some(self.nodes[i].store.snapshot());
                        format!("backup {i} at height {tip}")
                    }
                }
            }
            _ => {
                self.heal_all();
                "heal".to_string()
            }
        };
        if self.opts.debug {
            eprintln!("[{}] fault: {name}", self.now);
        }
        if self.report.faults.len() < 32 {
            self.report.faults.push(name);
        }
    }

    /// Submits `txs` to node `i` as a client would, remembering which of
    /// them the node's chain already holds (see the `Verdicts` check).
    fn submit(&mut self, i: usize, txs: Vec<SignedTx>) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let store = &self.nodes[i].store;
        let sent = txs
            .iter()
            .map(|tx| {
                let id = tx.id();
                (id, matches!(store.tx_location(&id), Ok(Some(_))))
            })
            .collect();
        let Some(admission) = &self.nodes[i].admission else {
            return;
        };
        let txs = admission.check(txs);
        self.submitting = Some((ticket, sent));
        self.step(i, Event::Submit { ticket, txs });
        self.submitting = None;
    }

    /// One client turn: new transactions to a random node, resends of old
    /// ones, a replayed gossip message, and governance.
    /// The dated plan: one tranche that releases `after` the date, and its
    /// approval, signed once and submitted twice (a resend is harmless).
    fn dated_plan(&mut self) {
        if self.dated_txs.is_empty() {
            let up = (0..NODES).find(|i| self.up(*i));
            if let Some(i) = up {
                let store = self.nodes[i].store.clone();
                let _ = self.factory.resync(&StoreState(store.as_ref()));
            }
            let date = Timestamp(self.genesis.genesis_time.ms() + DATED_AT_MS);
            self.dated_txs = vec![
                self.factory.create_plan(
                    DATED_PLAN,
                    PROGRAM,
                    None,
                    &[("on-the-date", 100, Condition::After(date))],
                ),
                self.factory.approve_plan("dev-bank", DATED_PLAN),
            ];
        }
        let up: Vec<usize> = (0..NODES).filter(|i| self.up(*i)).collect();
        if let Some(&i) = up.get(self.rng.gen_range(0..up.len().max(1))) {
            let txs = self.dated_txs.clone();
            self.submit(i, txs);
        }
    }

    /// The dated tranche released, and on time (the quiet chain's promise:
    /// no transaction came during the quiet stretch to wake the chain).
    fn check_dated_release(&mut self) {
        let date = self.genesis.genesis_time.ms() + DATED_AT_MS;
        let Some(i) = (0..NODES).max_by_key(|i| self.height(*i)) else {
            return;
        };
        let store = self.nodes[i].store.clone();
        let get = |k: Vec<u8>| store.state_get(&k).ok().flatten();
        let Some(plan) = get(keys::plan(
            &Slug::new(DATED_PLAN).unwrap_or_else(|e| panic!("{e}")),
        ))
        .and_then(|b| codec::decode::<Plan>(&b).ok()) else {
            // The plan was refused (for example a client's nonce race lost
            // both copies): nothing to check.
            self.report.dated_release = Some("not created".into());
            return;
        };
        let status = plan.tranches.first().map(|t| t.status.clone());
        match status {
            Some(TrancheStatus::Released { release }) => {
                let r = get(keys::release(release)).and_then(|b| codec::decode::<Release>(&b).ok());
                let Some(r) = r else {
                    return self.violation(format!("dated release {release} missing"));
                };
                let late = r.time.ms().saturating_sub(date);
                self.report.dated_release = Some(format!("{late} ms after the date"));
                if r.time.ms() < date || late > DATED_SLACK_MS {
                    self.violation(format!(
                        "quiet chain: the tranche dated {date} released at {} ({late} ms late)",
                        r.time.ms()
                    ));
                }
            }
            Some(TrancheStatus::Pending { .. }) if plan.approvals.is_empty() => {
                self.report.dated_release = Some("not approved".into());
            }
            other => self.violation(format!(
                "quiet chain: the approved tranche dated {date} did not release by the end ({other:?})"
            )),
        }
    }

    fn client(&mut self) {
        if (QUIET_FROM_MS..QUIET_TO_MS).contains(&self.now) {
            return; // The quiet stretch.
        }
        let up: Vec<usize> = (0..NODES).filter(|i| self.up(*i)).collect();
        if up.is_empty() {
            return;
        }
        let i = up[self.rng.gen_range(0..up.len())];
        let state_store = self.nodes[i].store.clone();
        let state = StoreState(state_store.as_ref());
        // A careless client reads nonces from committed state now and then,
        // so some of its transactions race their own pending ones.
        if self.rng.gen_bool(0.3) {
            let _ = self.factory.resync(&state);
        }
        let mut txs = Vec::new();
        let has_program = state_store
            .state_get(&keys::program(
                &aidledger_types::Slug::new(PROGRAM).unwrap_or_else(|e| panic!("{e}")),
            ))
            .ok()
            .flatten()
            .is_some();
        if !has_program {
            let _ = self.factory.resync(&state);
            txs.push(self.factory.create_program(PROGRAM, 1_000_000_000_000));
            txs.push(self.factory.deposit(PROGRAM, 50_000_000));
        }
        for _ in 0..self.rng.gen_range(0..4u32) {
            let tx = match self.rng.gen_range(0..10u32) {
                0..=3 => self.factory.deposit(PROGRAM, self.rng.gen_range(1..10_000)),
                4..=5 => self.factory.register_household().1,
                6 => {
                    let h = TxFactory::household_id(self.rng.gen_range(0..20));
                    self.factory.attest(
                        "audit-office",
                        Subject::Household(h),
                        "income-verified",
                        "ok",
                    )
                }
                // Refused by the contracts: a rejection receipt.
                _ => self.factory.deposit("no-such-program", 1),
            };
            txs.push(tx);
        }
        // Resends, byte for byte, of earlier transactions: applied,
        // rejected or still pending.
        if !self.sent.is_empty() && self.rng.gen_bool(0.4) {
            for _ in 0..self.rng.gen_range(1..4) {
                let k = self.rng.gen_range(0..self.sent.len());
                txs.push(self.sent[k].clone());
                self.report.resent += 1;
            }
        }
        self.report.submitted += txs.len() as u64;
        for tx in &txs {
            if self.sent.len() < 512 {
                self.sent.push(tx.clone());
            } else {
                let k = self.rng.gen_range(0..self.sent.len());
                self.sent[k] = tx.clone();
            }
        }
        if self.rng.gen_bool(0.8) {
            self.submit(i, txs);
        } else {
            // One by one, as the single-transaction route does.
            for tx in txs {
                self.submit(i, vec![tx]);
            }
        }
        // A replayed gossip message: old transactions in a frame the
        // node's duplicate filter has not seen (a new round).
        if !self.old_gossip.is_empty() && self.rng.gen_bool(0.1) {
            let k = self.rng.gen_range(0..self.old_gossip.len());
            if let Ok(mut g) = codec::decode::<TxGossip>(&self.old_gossip[k]) {
                g.round = self.rng.gen();
                let j = up[self.rng.gen_range(0..up.len())];
                self.report.replayed_gossip += 1;
                if let Some(a) = &self.nodes[j].admission {
                    let txs = a.gossip(vec![codec::encode(&g)]);
                    self.step(j, Event::Gossiped(txs));
                }
            }
        }
        if self.opts.reconfig {
            self.governance(i);
        }
        if let Some((b, byz)) = self.byz {
            self.byz_act(b, byz);
        }
    }

    /// Proposes validator-set changes at random times and approves open
    /// proposals, through real transactions.
    fn governance(&mut self, i: usize) {
        let store = self.nodes[i].store.clone();
        let state = StoreState(store.as_ref());
        // Approve whatever is open.
        let open: Vec<u64> = aidledger_audit::scan_all(&state, keys::PROPOSAL_PREFIX)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, v)| codec::decode::<aidledger_contracts::model::Proposal>(&v).ok())
            .filter(|p| p.status == aidledger_contracts::model::ProposalStatus::Open)
            .map(|p| p.id)
            .collect();
        let _ = self.factory.resync(&state);
        let mut txs = Vec::new();
        for id in open {
            txs.push(self.factory.sign_as(
                "dev-bank",
                Role::Admin,
                &Payload::GovApprove(payload::GovApprove { proposal: id }),
            ));
        }
        // Node 3 replaces its own key once per run (ADR 017), at a height
        // the delay ahead: its staged key takes its identity at once and
        // its seat, if it has one, there.
        let replaced = aidledger_execution::read_retired_node(&state, &self.nodes[3].genesis_key)
            .ok()
            .flatten()
            .is_some();
        if !self.replacement_asked && !replaced && self.rng.gen_range(0..40u32) == 0 {
            self.replacement_asked = true;
            let h = self.height(i);
            self.report
                .reconfigurations
                .push(format!("replace node 3's key (proposed near height {h})"));
            let at_height = activation_height(&state, h);
            txs.push(self.factory.sign_as(
                "state-bank",
                Role::Admin,
                &Payload::GovPropose(payload::GovPropose {
                    action: GovAction::ReplaceNodeKey {
                        old: self.nodes[3].genesis_key,
                        new: self.replacement_key,
                        at_height,
                    },
                }),
            ));
        }
        // Once per run, a contract upgrade: every node must switch at
        // exactly its height, whatever faults it went through.
        if self.upgrade_at.is_none() && self.rng.gen_range(0..30u32) == 0 {
            let h = self.height(i);
            let at_height = activation_height(&state, h);
            self.upgrade_at = Some(at_height);
            self.report.reconfigurations.push(format!(
                "upgrade to plans@4 at {at_height} (proposed near height {h})"
            ));
            txs.push(self.factory.sign_as(
                "state-bank",
                Role::Admin,
                &Payload::GovPropose(payload::GovPropose {
                    action: GovAction::ScheduleUpgrade {
                        modules: vec![ModuleVersion {
                            name: "plans".into(),
                            version: 4,
                        }],
                        at_height,
                    },
                }),
            ));
        }
        if self.reconfig_step < 8 && self.rng.gen_range(0..15u32) == 0 {
            // Once node 3's old key is retired, only sets naming its
            // replacement can pass.
            let sets = self.named_sets(replaced);
            let (name, set) = sets[self.rng.gen_range(0..sets.len())].clone();
            let current = aidledger_execution::read_validator_set(&state).ok();
            if current.as_ref() != Some(&set) {
                self.reconfig_step += 1;
                let h = self.height(i);
                self.report
                    .reconfigurations
                    .push(format!("{name} (proposed near height {h})"));
                let at_height = activation_height(&state, h);
                txs.push(self.factory.sign_as(
                    "state-bank",
                    Role::Admin,
                    &Payload::GovPropose(payload::GovPropose {
                        action: GovAction::SetValidators {
                            validators: set,
                            at_height,
                        },
                    }),
                ));
            }
        }
        if !txs.is_empty() {
            self.submit(i, txs);
        }
    }

    /// After node 3's key was replaced (ADR 017), node 3 signs with the
    /// new key: if it is up, honest and holds a seat in the set in force,
    /// its core signs with the replacement and has sent consensus messages
    /// under it. A node that kept its retired key would sit the rest of
    /// the run out, a validator lost to the consortium.
    fn check_key_replacement(&mut self) {
        let Some(i) = (0..NODES).find(|j| self.up(*j) && *j != 3) else {
            return;
        };
        let store = self.nodes[i].store.clone();
        let state = StoreState(store.as_ref());
        let done = aidledger_execution::read_retired_node(&state, &self.nodes[3].genesis_key)
            .ok()
            .flatten()
            .is_some_and(|r| r.successor == Some(self.replacement_key));
        if !done {
            return;
        }
        self.report.key_replaced = true;
        let seated = aidledger_execution::read_validator_set(&state)
            .is_ok_and(|s| s.index_of(&self.replacement_key).is_some());
        let byzantine = self.byz.is_some_and(|(b, _)| b == 3);
        let Some(core) = self.nodes[3].core.as_ref() else {
            return;
        };
        if byzantine || core.rejoining() {
            return;
        }
        let key = core.status().node_key;
        if key != self.replacement_key {
            self.violation(format!(
                "node 3 still signs with its replaced key {key} after governance retired it"
            ));
        } else if seated && !self.replaced_signed {
            self.violation(
                "node 3 holds a seat under its replacement key but never signed with it".into(),
            );
        }
    }

    /// Every node runs plans@3 below the upgrade's height and plans@4 from
    /// it on (its committed state's `gov/modules`), and so does the
    /// proposal for the block the upgrade applies to.
    fn check_upgrade(&mut self) {
        let Some(at) = self.upgrade_at else {
            return;
        };
        let mut reached = false;
        for i in 0..NODES {
            let store = self.nodes[i].store.clone();
            let state = StoreState(store.as_ref());
            let h = self.height(i);
            let Ok(modules) = aidledger_execution::read_modules(&state) else {
                continue; // an empty store (a wiped node still syncing)
            };
            let plans = modules
                .iter()
                .find(|m| m.name == "plans")
                .map(|m| m.version);
            // The proposal may never have executed (approved too late for
            // its height, or not yet); then plans@3 stays.
            let executed = aidledger_audit::scan_all(&state, keys::PROPOSAL_PREFIX)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(_, v)| codec::decode::<aidledger_contracts::model::Proposal>(&v).ok())
                .any(|p| {
                    p.status == aidledger_contracts::model::ProposalStatus::Executed
                        && matches!(p.action, GovAction::ScheduleUpgrade { .. })
                });
            let want = if executed && h >= at { 4 } else { 3 };
            reached |= want == 4;
            if plans != Some(want) {
                self.violation(format!(
                    "node {i} at height {h} runs plans@{plans:?}, expected plans@{want} (upgrade at {at})"
                ));
            }
        }
        self.report.upgrade = Some((at, reached));
    }

    fn final_checks(&mut self, heights_at_heal: &[u64]) {
        self.check_dated_release();
        self.check_upgrade();
        self.check_key_replacement();
        // Every node that is up committed past where it was at the heal.
        let target = heights_at_heal.iter().copied().max().unwrap_or(0) + 1;
        let heights: Vec<u64> = (0..NODES).map(|i| self.height(i)).collect();
        if heights.iter().any(|h| *h < target) {
            self.violation(format!(
                "liveness: {RECOVERY_BUDGET_MS} ms after the faults healed, heights are {heights:?}; each should have reached {target}"
            ));
        }
        // Agreement on every stored height, across all nodes.
        let top = heights.iter().copied().max().unwrap_or(0);
        for h in 1..=top {
            let mut first: Option<Hash> = None;
            for i in 0..NODES {
                if let Ok(Some(b)) = self.nodes[i].store.block_hash(h) {
                    match first {
                        Some(f) if f != b => {
                            self.violation(format!("agreement at height {h}: node {i} differs"));
                        }
                        _ => first = Some(b),
                    }
                }
            }
        }
        // Conservation of every program's money, on every node.
        for i in 0..NODES {
            let store = self.nodes[i].store.clone();
            let state = StoreState(store.as_ref());
            for (k, v) in
                aidledger_audit::scan_all(&state, keys::PROGRAM_PREFIX).unwrap_or_default()
            {
                match codec::decode::<Program>(&v) {
                    Ok(p) if !p.balances.conserved() => {
                        self.violation(format!("node {i}: program {} breaks conservation", p.id))
                    }
                    Ok(_) => {}
                    Err(e) => self.violation(format!(
                        "node {i}: undecodable program {}: {e}",
                        String::from_utf8_lossy(&k)
                    )),
                }
            }
        }
    }
}
