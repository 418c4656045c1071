//! The simulator: n replicas of the production consensus core, a seeded
//! network, a virtual clock, and the checks.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use aidledger_consensus::{
    CommittedTip, Config, Envelope, Input, Output, Payload, Replica, SafetyState,
    SAFETY_STATE_MAX_BYTES,
};
use aidledger_crypto::{verify_certificate, Keypair};
use aidledger_types::{Block, ChainId, CommitCertificate, Hash, ValidatorSet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::app::{App, Proposal};
use crate::scenario::{Byz, Scenario};
use crate::{SeedReport, Violation};

/// Time between a primary being asked for a block and the block being ready.
pub const BLOCK_INTERVAL_MS: u64 = 1_000;
/// After the faults heal, every honest replica must reach the target
/// height within this much virtual time.
pub const LIVENESS_BUDGET_MS: u64 = 150_000;
/// Most events one seed may process; a run that needs more is a storm.
pub const MAX_EVENTS: u64 = 2_000_000;
/// Blocks per sync response.
const SYNC_BATCH: usize = 16;

/// Simulator knobs.
#[derive(Clone, Debug)]
pub struct Options {
    pub byzantine: bool,
    pub faults: bool,
    /// Sets `Config::bug_accept_2f_votes` on every replica.
    pub planted_bug: bool,
    /// Sets `Config::bug_view_change_without_cert` on every replica.
    pub mutant_view_change_without_cert: bool,
    /// Sets `Config::bug_ignore_highest_prepared` on every replica.
    pub mutant_ignore_highest_prepared: bool,
    /// Check every committed certificate with `verify_certificate`. The
    /// planted-bug test turns this off to show that the agreement check
    /// alone catches the bug.
    pub verify_certificates: bool,
    /// Print every event to stderr.
    pub debug: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            byzantine: true,
            faults: true,
            planted_bug: false,
            mutant_view_change_without_cert: false,
            mutant_ignore_highest_prepared: false,
            verify_certificates: true,
            debug: false,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum NetMsg {
    Consensus(Vec<u8>),
    SyncRequest(u64),
    SyncResponse(Vec<(Block, CommitCertificate)>),
}

#[derive(Debug)]
pub(crate) enum Event {
    Deliver { to: usize, from: usize, msg: NetMsg },
    Input { node: usize, inc: u64, input: Input },
    Crash { node: usize },
    Restart { node: usize },
    PartitionStart,
    PartitionEnd,
    Heal,
    Garbage { node: usize },
}

pub(crate) struct Node<S> {
    pub(crate) validator: u16,
    pub(crate) byz: Option<Byz>,
    pub(crate) key: Keypair,
    pub(crate) up: bool,
    pub(crate) incarnation: u64,
    pub(crate) crash_pending: bool,
    pub(crate) replica: Option<Replica>,
    /// Persisted: the last safety state, the committed chain and its state.
    pub(crate) safety: Option<Vec<u8>>,
    pub(crate) chain: Vec<(Block, CommitCertificate)>,
    pub(crate) state: S,
    /// Volatile: post-states of validated blocks.
    pub(crate) speculative: BTreeMap<Hash, S>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) skew_ms: i64,
    pub(crate) voted: std::collections::BTreeSet<(u64, u64, Hash)>,
    pub(crate) recent: Vec<Vec<u8>>,
}

pub(crate) struct Sim<'a, A: App> {
    pub(crate) app: &'a A,
    pub(crate) opts: Options,
    pub(crate) chain_id: ChainId,
    pub(crate) vset: ValidatorSet,
    pub(crate) genesis_hash: Hash,
    genesis_state: A::State,
    /// The genesis time: virtual time 0 on an unskewed clock.
    epoch_ms: u64,
    pub(crate) nodes: Vec<Node<A::State>>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    pub(crate) now: u64,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) sc: Scenario,
    partition: Option<Vec<u8>>,
    faults_on: bool,
    decided: BTreeMap<u64, Hash>,
    votes: BTreeMap<(u16, u8, u64, u64), Hash>,
    /// Digests of certificates already verified (replicas often assemble
    /// identical ones).
    certs_ok: std::collections::BTreeSet<Hash>,
    pub(crate) violations: Vec<Violation>,
    trace: u64,
    target: Option<u64>,
    messages: u64,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl<'a, A: App> Sim<'a, A> {
    pub(crate) fn new(app: &'a A, seed: u64, sc: Scenario, opts: Options) -> Sim<'a, A> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0005_EED0_FA1D);
        let g = app
            .genesis(sc.n, seed)
            .unwrap_or_else(|e| panic!("application genesis: {e}"));
        assert_eq!(
            g.keys.len(),
            sc.n,
            "genesis has the wrong number of validators"
        );
        let (chain_id, vset, keys) = (g.chain_id, g.validators, g.keys);
        let (genesis_state, genesis_hash) = (g.state, g.hash);
        let mut nodes = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let byz = sc
                .byzantine
                .iter()
                .find(|(v, _)| *v as usize == i)
                .map(|(_, b)| *b);
            let copies = if byz == Some(Byz::Twins) { 2 } else { 1 };
            for _ in 0..copies {
                nodes.push(Node {
                    validator: i as u16,
                    byz,
                    key: key.clone(),
                    up: true,
                    incarnation: 0,
                    crash_pending: false,
                    replica: None,
                    safety: None,
                    chain: Vec::new(),
                    state: genesis_state.clone(),
                    speculative: BTreeMap::new(),
                    rng: ChaCha8Rng::seed_from_u64(rng.gen()),
                    skew_ms: sc.skew_ms[i],
                    voted: Default::default(),
                    recent: Vec::new(),
                });
            }
        }
        let mut sim = Sim {
            app,
            opts,
            chain_id,
            vset,
            genesis_hash,
            genesis_state,
            epoch_ms: g.time_ms,
            nodes,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            now: 0,
            rng,
            sc,
            partition: None,
            faults_on: true,
            decided: BTreeMap::new(),
            votes: BTreeMap::new(),
            certs_ok: Default::default(),
            violations: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            target: None,
            messages: 0,
        };
        for i in 0..sim.nodes.len() {
            sim.start_node(i);
        }
        sim
    }

    pub(crate) fn push(&mut self, at: u64, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn mix(&mut self, bytes: &[u8]) {
        self.trace = fnv(self.trace, bytes);
    }

    pub(crate) fn config(&self, node: usize) -> Config {
        let mut c = Config::new(
            self.chain_id.clone(),
            self.vset.clone(),
            self.nodes[node].key.clone(),
        );
        c.timeout_base_ms = 2_500;
        c.timeout_max_ms = 15_000;
        c.bug_accept_2f_votes = self.opts.planted_bug;
        c.bug_view_change_without_cert = self.opts.mutant_view_change_without_cert;
        c.bug_ignore_highest_prepared = self.opts.mutant_ignore_highest_prepared;
        c
    }

    fn tip(&self, node: usize) -> CommittedTip {
        match self.nodes[node].chain.last() {
            Some((b, c)) => CommittedTip {
                height: b.height(),
                hash: b.hash(),
                view: c.view,
            },
            None => CommittedTip::genesis(self.genesis_hash),
        }
    }

    /// Builds the replica from persisted state only, and starts it.
    fn start_node(&mut self, node: usize) {
        let cfg = self.config(node);
        let tip = self.tip(node);
        let replica = match &self.nodes[node].safety {
            Some(bytes) => SafetyState::decode(bytes)
                .and_then(|s| Replica::restore(cfg, s, tip))
                .unwrap_or_else(|e| panic!("restore failed: {e}")),
            None => Replica::new(cfg, tip).unwrap_or_else(|e| panic!("new replica: {e}")),
        };
        let n = &mut self.nodes[node];
        n.replica = Some(replica);
        n.up = true;
        n.crash_pending = false;
        n.incarnation += 1;
        let inc = n.incarnation;
        self.push(
            self.now,
            Event::Input {
                node,
                inc,
                input: Input::Start,
            },
        );
    }

    fn crash(&mut self, node: usize) {
        if self.opts.debug {
            eprintln!("t={} node={} CRASH", self.now, node);
        }
        let n = &mut self.nodes[node];
        n.up = false;
        n.replica = None;
        n.crash_pending = false;
        n.incarnation += 1;
        n.speculative.clear();
        self.mix(&[0xC0, node as u8]);
    }

    pub(crate) fn honest(&self, node: usize) -> bool {
        self.nodes[node].byz.is_none()
    }

    pub(crate) fn local_time(&self, node: usize) -> u64 {
        (self.epoch_ms + self.now).saturating_add_signed(self.nodes[node].skew_ms)
    }

    /// Runs the simulation to its end and returns the report.
    pub(crate) fn run(mut self, seed: u64) -> SeedReport {
        for c in self.sc.crashes.clone() {
            if let Some(node) = self.nodes.iter().position(|n| n.validator == c.validator) {
                self.push(c.at_ms, Event::Crash { node });
                let back = (c.at_ms + c.down_ms).min(self.sc.fault_ms);
                self.push(back, Event::Restart { node });
            }
        }
        for (start, end) in self.sc.partitions.clone() {
            self.push(start, Event::PartitionStart);
            self.push(end, Event::PartitionEnd);
        }
        for node in 0..self.nodes.len() {
            if self.nodes[node].byz == Some(Byz::Garbage) {
                let at = self.rng.gen_range(50..500);
                self.push(at, Event::Garbage { node });
            }
        }
        let heal_at = self.sc.fault_ms;
        self.push(heal_at, Event::Heal);
        let deadline = heal_at + LIVENESS_BUDGET_MS;
        let mut converged = false;
        let mut processed: u64 = 0;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > deadline {
                break;
            }
            processed += 1;
            if processed > MAX_EVENTS {
                // A message storm is a bug too (and must not hang CI).
                self.violations.push(Violation::Storm { events: processed });
                break;
            }
            self.now = at;
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            self.mix(&at.to_le_bytes());
            self.process(ev);
            if !self.violations.is_empty() {
                break;
            }
            if let Some(t) = self.target {
                let done = (0..self.nodes.len())
                    .filter(|i| self.honest(*i))
                    .all(|i| self.nodes[i].chain.len() as u64 >= t);
                if done {
                    converged = true;
                    break;
                }
            }
        }
        if self.violations.is_empty() {
            self.final_checks(converged);
        }
        let max_height = (0..self.nodes.len())
            .filter(|i| self.honest(*i))
            .map(|i| self.nodes[i].chain.len() as u64)
            .max()
            .unwrap_or(0);
        let txs = (0..self.nodes.len())
            .filter(|i| self.honest(*i))
            .map(|i| {
                self.nodes[i]
                    .chain
                    .iter()
                    .map(|(b, _)| b.txs.len() as u64)
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0);
        SeedReport {
            seed,
            scenario: self.sc.clone(),
            max_height,
            txs,
            trace_hash: self.trace,
            violations: self.violations,
            virtual_ms: self.now,
            messages: self.messages,
        }
    }

    fn final_checks(&mut self, converged: bool) {
        self.replay_check();
        if !self.violations.is_empty() {
            return;
        }
        let honest: Vec<usize> = (0..self.nodes.len()).filter(|i| self.honest(*i)).collect();
        if !converged {
            self.violations.push(Violation::Liveness {
                target: self.target.unwrap_or(0),
                heights: honest
                    .iter()
                    .map(|i| self.nodes[*i].chain.len() as u64)
                    .collect(),
            });
            return;
        }
        let roots: Vec<Hash> = honest
            .iter()
            .map(|i| self.app.state_root(&self.nodes[*i].state))
            .collect();
        if roots.windows(2).any(|w| w[0] != w[1]) {
            self.violations.push(Violation::Divergence {
                height: self.target.unwrap_or(0),
            });
        }
    }

    fn process(&mut self, ev: Event) {
        match ev {
            Event::Deliver { to, from, msg } => self.deliver(to, from, msg),
            Event::Input { node, inc, input } => {
                if self.nodes[node].incarnation == inc {
                    self.step(node, input);
                }
            }
            Event::Crash { node } => {
                if self.nodes[node].up && self.faults_on {
                    // Half the crashes land in the middle of an output vector.
                    if self.rng.gen_bool(0.5) {
                        self.nodes[node].crash_pending = true;
                    } else {
                        self.crash(node);
                    }
                }
            }
            Event::Restart { node } => {
                if self.nodes[node].up && self.nodes[node].crash_pending {
                    self.crash(node);
                }
                if !self.nodes[node].up {
                    self.start_node(node);
                }
            }
            Event::PartitionStart => {
                if self.faults_on {
                    let groups = (0..self.nodes.len())
                        .map(|_| self.rng.gen_range(0..2u8))
                        .collect();
                    self.partition = Some(groups);
                }
            }
            Event::PartitionEnd => self.partition = None,
            Event::Heal => {
                self.faults_on = false;
                self.partition = None;
                for i in 0..self.nodes.len() {
                    if self.nodes[i].crash_pending {
                        self.nodes[i].crash_pending = false;
                    }
                    if !self.nodes[i].up {
                        self.start_node(i);
                    }
                }
                let max = (0..self.nodes.len())
                    .filter(|i| self.honest(*i))
                    .map(|i| self.nodes[i].chain.len() as u64)
                    .max()
                    .unwrap_or(0);
                self.target = Some(max + 2);
            }
            Event::Garbage { node } => {
                if self.nodes[node].up {
                    self.send_garbage(node);
                }
                let next = self.now + self.rng.gen_range(100..600);
                self.push(next, Event::Garbage { node });
            }
        }
    }

    fn deliver(&mut self, to: usize, from: usize, msg: NetMsg) {
        if !self.nodes[to].up {
            return;
        }
        match msg {
            NetMsg::Consensus(bytes) => {
                self.mix(&[1, to as u8, from as u8]);
                if matches!(
                    self.nodes[to].byz,
                    Some(Byz::DoubleVoter) | Some(Byz::Equivocator)
                ) {
                    self.double_vote(to, &bytes);
                }
                self.step(to, Input::Message(bytes));
            }
            NetMsg::SyncRequest(from_height) => {
                if self.nodes[to].byz == Some(Byz::Garbage) {
                    // Byzantine peers withhold blocks.
                    return;
                }
                let chain = &self.nodes[to].chain;
                let start = from_height.saturating_sub(1) as usize;
                if start < chain.len() {
                    let end = (start + SYNC_BATCH).min(chain.len());
                    let batch = chain[start..end].to_vec();
                    self.net_send(to, from, NetMsg::SyncResponse(batch));
                }
            }
            NetMsg::SyncResponse(batch) => {
                for (block, certificate) in batch {
                    if !self.nodes[to].up {
                        break;
                    }
                    self.step(to, Input::Synced { block, certificate });
                }
            }
        }
    }

    pub(crate) fn step(&mut self, node: usize, input: Input) {
        if !self.nodes[node].up {
            return;
        }
        let now = self.local_time(node);
        let Some(replica) = self.nodes[node].replica.as_mut() else {
            return;
        };
        let dbg_input = if self.opts.debug {
            format!("{input:?}")
        } else {
            String::new()
        };
        let outs = replica.handle(now, input);
        if self.opts.debug {
            let r = self.nodes[node].replica.as_ref();
            eprintln!(
                "t={} node={} h={:?} v={:?} in={} rej={:?}",
                self.now,
                node,
                r.map(|r| r.height()),
                r.map(|r| (r.view(), r.is_view_active())),
                dbg_input.chars().take(160).collect::<String>(),
                r.and_then(|r| r.last_rejection().map(|e| e.to_string()))
            );
            for o in &outs {
                eprintln!(
                    "    out {}",
                    format!("{o:?}").chars().take(200).collect::<String>()
                );
            }
        }
        self.execute(node, outs);
    }

    /// Executes outputs in order, as the driver contract says; a pending
    /// crash cuts the vector at a random point.
    fn execute(&mut self, node: usize, outs: Vec<Output>) {
        let crash_at = if self.nodes[node].crash_pending {
            Some(self.rng.gen_range(0..=outs.len()))
        } else {
            None
        };
        for (k, out) in outs.into_iter().enumerate() {
            if crash_at == Some(k) {
                self.crash(node);
                return;
            }
            self.output(node, out);
            if !self.violations.is_empty() {
                return;
            }
        }
        if crash_at.is_some() {
            self.crash(node);
        }
    }

    fn output(&mut self, node: usize, out: Output) {
        let inc = self.nodes[node].incarnation;
        match out {
            Output::PersistSafetyState(s) => {
                let bytes = s.encode();
                if bytes.len() > SAFETY_STATE_MAX_BYTES {
                    self.violations.push(Violation::BadBlock {
                        node,
                        height: s.height,
                        reason: "safety state over its size limit".into(),
                    });
                }
                self.mix(&bytes);
                self.nodes[node].safety = Some(bytes);
            }
            Output::Broadcast(env) => {
                self.record_vote(node, &env);
                if self.nodes[node].byz == Some(Byz::Equivocator)
                    && matches!(env.payload, Payload::PrePrepare { .. })
                {
                    self.equivocate(node, env);
                    return;
                }
                let bytes = env.encode();
                self.mix(&bytes);
                self.remember(node, &bytes);
                let me = self.nodes[node].validator;
                for j in 0..self.nodes.len() {
                    if self.nodes[j].validator != me {
                        self.net_send(node, j, NetMsg::Consensus(bytes.clone()));
                    }
                }
            }
            Output::Send { to, message } => {
                self.record_vote(node, &message);
                let bytes = message.encode();
                self.mix(&bytes);
                self.send_to_validator(node, to, NetMsg::Consensus(bytes));
            }
            Output::ScheduleTimeout {
                kind,
                view,
                height,
                after_ms,
            } => {
                self.push(
                    self.now + after_ms,
                    Event::Input {
                        node,
                        inc,
                        input: Input::Timeout { kind, view, height },
                    },
                );
            }
            Output::RequestProposal {
                height,
                view,
                parent_hash,
                now_ms,
            } => {
                if self.target.is_some_and(|t| height > t) {
                    return;
                }
                if let Some(block) =
                    self.build_block(node, height, view, parent_hash, now_ms, false)
                {
                    self.mix(block.hash().as_bytes());
                    self.push(
                        self.now + BLOCK_INTERVAL_MS,
                        Event::Input {
                            node,
                            inc,
                            input: Input::ProposalReady { block },
                        },
                    );
                }
            }
            Output::ValidateBlock { block, now_ms, .. } => {
                let valid = self.validate(node, &block, now_ms);
                self.mix(&[2, valid as u8]);
                self.push(
                    self.now,
                    Event::Input {
                        node,
                        inc,
                        input: Input::BlockValidated {
                            height: block.height(),
                            block_hash: block.hash(),
                            valid,
                        },
                    },
                );
            }
            Output::Commit { block, certificate } => self.commit(node, block, certificate),
            Output::RequestSync { from_height, peer } => {
                self.mix(&from_height.to_le_bytes());
                self.send_to_validator(node, peer, NetMsg::SyncRequest(from_height));
            }
        }
    }

    pub(crate) fn send_to_validator(&mut self, from: usize, to: u16, msg: NetMsg) {
        for j in 0..self.nodes.len() {
            if self.nodes[j].validator == to && j != from {
                self.net_send(from, j, msg.clone());
            }
        }
    }

    pub(crate) fn remember(&mut self, node: usize, bytes: &[u8]) {
        if self.nodes[node].byz == Some(Byz::Garbage) {
            let r = &mut self.nodes[node].recent;
            if r.len() >= 8 {
                r.remove(0);
            }
            r.push(bytes.to_vec());
        }
    }

    /// The simulated network: partitions, loss, delay/reordering and
    /// duplication while faults are on; small random latency always.
    pub(crate) fn net_send(&mut self, from: usize, to: usize, msg: NetMsg) {
        if self.faults_on {
            if let Some(p) = &self.partition {
                if p[from] != p[to] {
                    return;
                }
            }
            if self.sc.loss_pct > 0 && self.rng.gen_range(0..100) < self.sc.loss_pct {
                return;
            }
        }
        let copies = if self.faults_on
            && self.sc.dup_pct > 0
            && self.rng.gen_range(0..100) < self.sc.dup_pct
        {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.rng.gen_range(2..=20);
            if self.faults_on && self.sc.reorder_max_ms > 0 {
                delay += self.rng.gen_range(0..=self.sc.reorder_max_ms);
            }
            self.messages += 1;
            self.push(
                self.now + delay,
                Event::Deliver {
                    to,
                    from,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// A block on the node's committed tip, built by the application on the
    /// node's committed state. `alternative` builds a conflicting one (no
    /// transactions, a later timestamp) for the equivocator.
    pub(crate) fn build_block(
        &mut self,
        node: usize,
        height: u64,
        view: u64,
        parent_hash: Hash,
        now_ms: u64,
        alternative: bool,
    ) -> Option<Block> {
        let tip = self.tip(node);
        if tip.hash != parent_hash || tip.height + 1 != height {
            return None;
        }
        let n = &mut self.nodes[node];
        let p = Proposal {
            height,
            view,
            proposer: n.key.public(),
            now_ms: now_ms + alternative as u64,
            empty: alternative,
        };
        match self.app.propose(&n.state, &p, &mut n.rng) {
            Ok((block, post)) => {
                n.speculative.insert(block.hash(), post);
                Some(block)
            }
            Err(e) => {
                if self.honest(node) {
                    self.violations.push(Violation::BadBlock {
                        node,
                        height,
                        reason: format!("proposer could not build a block: {e}"),
                    });
                }
                None
            }
        }
    }

    /// The driver's validation: the application checks the block against
    /// the node's committed tip (parent, height, timestamp monotonic and
    /// within drift of the node's skewed clock, proposer, validator set,
    /// body, signatures) and executes it to the header's state root.
    fn validate(&mut self, node: usize, block: &Block, now_ms: u64) -> bool {
        let tip = self.tip(node);
        if block.header.parent_hash != tip.hash || !block.body_matches_header() {
            return false;
        }
        match self
            .app
            .validate(&self.nodes[node].state, block, Some(now_ms))
        {
            Ok(post) => {
                self.nodes[node].speculative.insert(block.hash(), post);
                true
            }
            Err(e) => {
                if self.opts.debug {
                    eprintln!("t={} node={node} invalid block: {e}", self.now);
                }
                false
            }
        }
    }

    /// Applies a committed block and checks it: certificate, body, parent,
    /// state root by re-execution, the application's invariants, and
    /// agreement with every other commit.
    fn commit(&mut self, node: usize, block: Block, cert: CommitCertificate) {
        let hash = block.hash();
        let height = block.height();
        self.mix(hash.as_bytes());
        let honest = self.honest(node);
        let tip = self.tip(node);
        let cert_digest = aidledger_types::hash::sha256(&aidledger_types::codec::encode(&cert));
        if honest && self.opts.verify_certificates && !self.certs_ok.contains(&cert_digest) {
            if let Err(e) = verify_certificate(&cert, &self.chain_id, &self.vset, height, &hash)
                .map(|()| {
                    self.certs_ok.insert(cert_digest);
                })
            {
                self.violations.push(Violation::BadCertificate {
                    node,
                    height,
                    reason: e.to_string(),
                });
            }
        }
        if honest {
            if !block.body_matches_header()
                || block.header.parent_hash != tip.hash
                || height != tip.height + 1
            {
                self.violations.push(Violation::BadBlock {
                    node,
                    height,
                    reason: "body, parent or height does not fit the chain".into(),
                });
            }
            match self.decided.get(&height) {
                Some(other) if *other != hash => self.violations.push(Violation::Agreement {
                    height,
                    first: *other,
                    second: hash,
                    node,
                }),
                Some(_) => {}
                None => {
                    self.decided.insert(height, hash);
                }
            }
        }
        // The post-state of the validation (or proposal) of this very body,
        // else re-execute from the committed state (a synced block).
        let n = &mut self.nodes[node];
        let st = match n.speculative.remove(&hash) {
            Some(st) => Ok(st),
            None => self.app.validate(&n.state, &block, None),
        };
        match st {
            Ok(st) if self.app.state_root(&st) == block.header.state_root => {
                n.state = st;
                n.speculative.clear();
                n.chain.push((block, cert));
                if honest {
                    if let Err(reason) = self.app.check_invariants(&self.nodes[node].state, false) {
                        self.violations.push(Violation::Invariant {
                            node,
                            height,
                            reason,
                        });
                    }
                }
            }
            _ => {
                if honest {
                    self.violations.push(Violation::StateRoot { node, height });
                } else {
                    // A byzantine process that cannot apply its own commit
                    // stops; it has no bearing on the checks.
                    n.up = false;
                    n.replica = None;
                    n.incarnation += 1;
                }
            }
        }
    }

    /// Every committed block is valid on a fresh replay: the longest honest
    /// chain, from a fresh genesis state and without a clock, re-validates
    /// block by block (certificate, header, signatures, execution to the
    /// header's state root) and keeps the invariants, including a state
    /// root recomputed from scratch at the end; every honest chain is a
    /// prefix of it.
    fn replay_check(&mut self) {
        let honest: Vec<usize> = (0..self.nodes.len()).filter(|i| self.honest(*i)).collect();
        let Some(&longest) = honest.iter().max_by_key(|i| self.nodes[**i].chain.len()) else {
            return;
        };
        let mut state = self.genesis_state.clone();
        let mut parent = self.genesis_hash;
        for (height, (block, cert)) in (1u64..).zip(&self.nodes[longest].chain) {
            let hash = block.hash();
            let fail = |reason: String| Violation::Replay { height, reason };
            if block.header.parent_hash != parent || block.height() != height {
                self.violations
                    .push(fail("does not extend the replayed chain".into()));
                return;
            }
            if self.opts.verify_certificates {
                if let Err(e) = verify_certificate(cert, &self.chain_id, &self.vset, height, &hash)
                {
                    self.violations.push(fail(format!("certificate: {e}")));
                    return;
                }
            }
            match self.app.validate(&state, block, None) {
                Ok(post) if self.app.state_root(&post) == block.header.state_root => state = post,
                Ok(_) => {
                    self.violations.push(fail("state root differs".into()));
                    return;
                }
                Err(e) => {
                    self.violations.push(fail(e));
                    return;
                }
            }
            parent = hash;
        }
        let height = self.nodes[longest].chain.len() as u64;
        if let Err(reason) = self.app.check_invariants(&state, true) {
            self.violations.push(Violation::Replay { height, reason });
            return;
        }
        for &i in &honest {
            let prefix = self.nodes[i]
                .chain
                .iter()
                .zip(&self.nodes[longest].chain)
                .all(|((a, _), (b, _))| a.hash() == b.hash());
            if !prefix {
                self.violations.push(Violation::Replay {
                    height,
                    reason: format!("node {i}'s chain is not a prefix of node {longest}'s"),
                });
                return;
            }
        }
    }

    /// Honest replicas never send two different votes of one kind for the
    /// same (view, height), restarts included.
    fn record_vote(&mut self, node: usize, env: &Envelope) {
        if !self.honest(node) {
            return;
        }
        let (kind, view, height, hash) = match &env.payload {
            Payload::PrePrepare {
                view,
                height,
                block_hash,
            } => (0u8, *view, *height, *block_hash),
            Payload::Prepare {
                view,
                height,
                block_hash,
            } => (1, *view, *height, *block_hash),
            Payload::Commit {
                view,
                height,
                block_hash,
            } => (2, *view, *height, *block_hash),
            _ => return,
        };
        let validator = self.nodes[node].validator;
        match self.votes.get(&(validator, kind, view, height)) {
            Some(h) if *h != hash => self.violations.push(Violation::Equivocation {
                validator,
                view,
                height,
            }),
            Some(_) => {}
            None => {
                self.votes.insert((validator, kind, view, height), hash);
            }
        }
    }
}
