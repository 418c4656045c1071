//! Byzantine nodes for the whole-node simulator. A byzantine node runs the
//! real `NodeCore` like every other node (so it stores, executes and
//! follows the chain) and then lies on the wire: what its core publishes
//! may be replaced, split per peer or stripped, and it sends messages of
//! its own, signed with its real key. It is at most one node (f = 1),
//! and the honest-behaviour checks (`check_sent`) still hold its core's
//! own output to the rules, never what the adversary adds.

use aidledger_consensus::{
    Envelope, NewView, Payload as ConsensusPayload, PreparedCert, SignedViewChange, ViewChange,
    MESSAGE_MAX_BYTES,
};
use aidledger_crypto::{verify_txs, VerifiedTx};
use aidledger_execution::{build_block, BlockContext, ParentInfo, Speculative};
use aidledger_node_core::{Channel, StoreState};
use aidledger_storage::Store;
use aidledger_types::{Block, Hash, Signature, Timestamp};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::{Cluster, NODES};

/// What a byzantine node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byz {
    /// As primary, a conflicting valid block to a random half of the
    /// peers, and commits for it.
    Equivocator,
    /// Prepares and commits every pre-prepared block it sees, and now and
    /// then a block that does not exist.
    DoubleVoter,
    /// Replays valid messages it saw earlier, of old heights and old
    /// views (stale but valid certificates among them).
    Replayer,
    /// Strips the blocks from its view changes and pre-prepares (a
    /// certificate without its block) and, as new primary, sends a
    /// different new-view (another quorum of view changes) to half of
    /// the peers.
    Splitter,
    /// Random bytes, corrupted copies, and well-signed messages that
    /// break the protocol's rules.
    Garbage,
    /// As primary, replaces each of its proposals by the same
    /// transactions stamped as early as monotonicity allows (one
    /// millisecond after the parent), to hold block time back (ADR 014);
    /// its commit votes claim the genesis time or a year ahead.
    Laggard,
}

impl Byz {
    pub const ALL: [Byz; 6] = [
        Byz::Equivocator,
        Byz::DoubleVoter,
        Byz::Replayer,
        Byz::Splitter,
        Byz::Garbage,
        Byz::Laggard,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Byz::Equivocator => "equivocator",
            Byz::DoubleVoter => "double-voter",
            Byz::Replayer => "replayer",
            Byz::Splitter => "splitter",
            Byz::Garbage => "garbage",
            Byz::Laggard => "laggard",
        }
    }
}

/// What the adversary remembers.
#[derive(Default)]
pub struct AdversaryMemory {
    /// Valid consensus messages seen from others (encoded envelopes).
    pub seen: Vec<Vec<u8>>,
    /// View changes seen, by (height, view).
    pub view_changes: Vec<SignedViewChange>,
    /// (view, height, hash) it already double-voted for.
    pub voted: std::collections::BTreeSet<(u64, u64, Hash)>,
}

const SEEN_MAX: usize = 256;

impl Cluster {
    /// The byzantine node's index in its current validator set, if any.
    /// The time a byzantine commit vote claims: its clock, the genesis
    /// time, or a year ahead. Certificates it helps form must still give
    /// a floor between honest clocks (ADR 014).
    fn byz_time(&mut self, i: usize) -> Timestamp {
        let now = self.node_now(i).wall_ms;
        match self.rng.gen_range(0..3) {
            0 => Timestamp(now),
            1 => self.genesis.genesis_time,
            _ => Timestamp(now.saturating_add(365 * 86_400_000)),
        }
    }

    fn byz_index(&self, i: usize) -> Option<u16> {
        let core = self.nodes[i].core.as_ref()?;
        let idx = core
            .parent()
            .validator_set
            .index_of(&self.nodes[i].key.public())?;
        u16::try_from(idx).ok()
    }

    fn byz_sign(
        &self,
        i: usize,
        payload: ConsensusPayload,
        block: Option<aidledger_types::Block>,
    ) -> Option<Envelope> {
        let from = self.byz_index(i)?;
        Some(Envelope::sign(
            &self.nodes[i].key,
            &self.genesis.chain_id,
            from,
            payload,
            block,
        ))
    }

    /// Frames `data` with the node's per-send counter and sends it to one
    /// peer (`Some`) or floods it (`None`).
    fn byz_send(&mut self, i: usize, to: Option<usize>, data: Vec<u8>) {
        let frame = self.consensus_frame(i, &data);
        let id: [u8; 32] = Sha256::digest(frame.as_slice()).into();
        self.nodes[i].seen.insert(id, self.now);
        match to {
            None => self.flood(i, None, Channel::Consensus, frame),
            Some(j) => {
                if j != i && self.reachable(i, j) && !self.lost() {
                    self.report.messages += 1;
                    let at = self.now + self.delay();
                    self.push(
                        at,
                        super::Ev::Gossip {
                            to: j,
                            from: i,
                            channel: Channel::Consensus,
                            frame,
                        },
                    );
                }
            }
        }
    }

    /// The byzantine node's core published `data`: send it, or what the
    /// adversary makes of it.
    pub(super) fn byz_publish(&mut self, i: usize, byz: Byz, data: Vec<u8>) {
        let Ok(env) = Envelope::decode(&data, MESSAGE_MAX_BYTES) else {
            return self.byz_send(i, None, data);
        };
        match (byz, &env.payload) {
            (Byz::Equivocator, ConsensusPayload::PrePrepare { view, height, .. }) => {
                let (view, height) = (*view, *height);
                self.equivocate(i, env, view, height, data);
            }
            (Byz::Laggard, ConsensusPayload::PrePrepare { view, height, .. })
                if env.block.is_some() =>
            {
                let (view, height) = (*view, *height);
                self.lag(i, env, view, height, data);
            }
            (Byz::Laggard, ConsensusPayload::Commit { .. }) => {
                let ConsensusPayload::Commit {
                    view,
                    height,
                    block_hash,
                    ..
                } = env.payload
                else {
                    return;
                };
                let time = if self.rng.gen_bool(0.5) {
                    self.genesis.genesis_time
                } else {
                    Timestamp(self.node_now(i).wall_ms.saturating_add(365 * 86_400_000))
                };
                let payload = ConsensusPayload::Commit {
                    view,
                    height,
                    block_hash,
                    time,
                };
                match self.byz_sign(i, payload, None) {
                    Some(e) => self.byz_send(i, None, e.encode()),
                    None => self.byz_send(i, None, data),
                }
            }
            (
                Byz::Splitter,
                ConsensusPayload::ViewChange(_) | ConsensusPayload::PrePrepare { .. },
            ) if env.block.is_some() && self.rng.gen_bool(0.7) => {
                // The certificate (or proposal) without its block.
                let mut bare = env;
                bare.block = None;
                self.byz_send(i, None, bare.encode());
            }
            (Byz::Splitter, ConsensusPayload::NewView(nv)) => {
                let nv = nv.clone();
                self.split_new_view(i, env, nv, data);
            }
            _ => self.byz_send(i, None, data),
        }
    }

    /// A block node `i` builds itself on its own tip, as primary of
    /// `view`, at `timestamp(parent)`, from `txs`; `None` when it cannot.
    /// Another block at `height` on `on`: the committed tip, or with
    /// pipelining the node's own block at the height in flight, not
    /// committed yet (so an equivocator forks inside the window too).
    fn byz_block(
        &self,
        i: usize,
        view: u64,
        height: u64,
        on: Hash,
        timestamp: impl FnOnce(&ParentInfo) -> Timestamp,
        txs: &[VerifiedTx],
    ) -> Option<Block> {
        let core = self.nodes[i].core.as_ref()?;
        let store = self.nodes[i].store.clone();
        let committed = StoreState(store.as_ref());
        let ctx = |parent: &ParentInfo| BlockContext {
            chain_id: self.genesis.chain_id.clone(),
            height,
            timestamp: timestamp(parent),
            proposer: self.nodes[i].key.public(),
        };
        let built = if on == core.parent().hash {
            let acc = store.accumulator().ok()?;
            let parent = core.parent();
            build_block(parent, &ctx(parent), view, txs, &committed, &acc)
        } else {
            let (parent, writes, acc) = core.pending_parent(&on)?;
            let state = Speculative::new(&committed, writes);
            build_block(&parent, &ctx(&parent), view, txs, &state, acc)
        };
        built.ok().map(|(b, _)| b)
    }

    fn equivocate(&mut self, i: usize, env: Envelope, view: u64, height: u64, data: Vec<u8>) {
        let Some(orig) = env.block.as_ref() else {
            return self.byz_send(i, None, data);
        };
        if self.nodes[i].core.is_none() {
            return;
        }
        // Half the time the other block is also as old as monotonicity
        // allows, below the floor the parent's certificate sets unless the
        // quorum's clocks lag (ADR 014): honest validators refuse it.
        let newer = self.rng.gen_bool(0.5);
        let next = Timestamp(orig.header.timestamp.0 + 1);
        let at = |p: &ParentInfo| {
            if newer {
                next
            } else {
                p.timestamp.saturating_add_ms(1)
            }
        };
        let on = orig.header.parent_hash;
        let Some(alt) = self.byz_block(i, view, height, on, at, &[]) else {
            return self.byz_send(i, None, data);
        };
        let alt_hash = alt.hash();
        let Some(alt_env) = self.byz_sign(
            i,
            ConsensusPayload::PrePrepare {
                view,
                height,
                block_hash: alt_hash,
            },
            Some(alt),
        ) else {
            return;
        };
        let alt_bytes = alt_env.encode();
        for j in 0..NODES {
            if j == i {
                continue;
            }
            let bytes = if self.rng.gen_bool(0.5) {
                data.clone()
            } else {
                alt_bytes.clone()
            };
            self.byz_send(i, Some(j), bytes);
        }
        let time = self.byz_time(i);
        if let Some(commit) = self.byz_sign(
            i,
            ConsensusPayload::Commit {
                view,
                height,
                block_hash: alt_hash,
                time,
            },
            None,
        ) {
            self.byz_send(i, None, commit.encode());
        }
    }

    /// As primary: the proposal's transactions in a block stamped one
    /// millisecond after the parent, to every peer instead of the original.
    fn lag(&mut self, i: usize, env: Envelope, view: u64, height: u64, data: Vec<u8>) {
        let Some(orig) = env.block.as_ref() else {
            return self.byz_send(i, None, data);
        };
        if self.nodes[i].core.is_none() {
            return;
        }
        let txs: Vec<VerifiedTx> = verify_txs(orig.txs.clone(), &self.genesis.chain_id)
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let at = |p: &ParentInfo| p.timestamp.saturating_add_ms(1);
        let on = orig.header.parent_hash;
        let Some(old) = self.byz_block(i, view, height, on, at, &txs) else {
            return self.byz_send(i, None, data);
        };
        let hash = old.hash();
        match self.byz_sign(
            i,
            ConsensusPayload::PrePrepare {
                view,
                height,
                block_hash: hash,
            },
            Some(old),
        ) {
            Some(e) => self.byz_send(i, None, e.encode()),
            None => self.byz_send(i, None, data),
        }
    }

    /// As new primary: the honest new-view to half of the peers, and to
    /// the others one built from another quorum of the view changes it
    /// holds, keeping the honest re-proposal (so it may not match).
    fn split_new_view(&mut self, i: usize, env: Envelope, nv: NewView, data: Vec<u8>) {
        let quorum = nv.view_changes.len();
        let mut pool: Vec<SignedViewChange> = self.nodes[i]
            .adversary
            .view_changes
            .iter()
            .filter(|s| s.view_change.height == nv.height && s.view_change.new_view == nv.view)
            .cloned()
            .collect();
        if let Some(me) = self.byz_index(i) {
            if let Some(own) = nv.view_changes.iter().find(|s| s.from == me) {
                pool.push(own.clone());
            }
        }
        pool.sort_by_key(|s| s.from);
        pool.dedup_by_key(|s| s.from);
        if pool.len() <= quorum {
            return self.byz_send(i, None, data);
        }
        // Another quorum: drop one at random.
        let k = self.rng.gen_range(0..pool.len());
        pool.remove(k);
        pool.truncate(quorum);
        let other = NewView {
            view: nv.view,
            height: nv.height,
            view_changes: pool,
            reproposal: nv.reproposal,
        };
        let Some(alt) = self.byz_sign(i, ConsensusPayload::NewView(other), env.block.clone())
        else {
            return self.byz_send(i, None, data);
        };
        let alt = alt.encode();
        for j in 0..NODES {
            if j != i {
                let bytes = if self.rng.gen_bool(0.5) {
                    data.clone()
                } else {
                    alt.clone()
                };
                self.byz_send(i, Some(j), bytes);
            }
        }
    }

    /// A consensus message reached the byzantine node.
    pub(super) fn byz_observe(&mut self, i: usize, byz: Byz, data: &[u8]) {
        let Ok(env) = Envelope::decode(data, MESSAGE_MAX_BYTES) else {
            return;
        };
        let mem = &mut self.nodes[i].adversary;
        if mem.seen.len() >= SEEN_MAX {
            let k = self.rng.gen_range(0..SEEN_MAX);
            mem.seen[k] = data.to_vec();
        } else {
            mem.seen.push(data.to_vec());
        }
        if let ConsensusPayload::ViewChange(vc) = &env.payload {
            let mem = &mut self.nodes[i].adversary;
            mem.view_changes.push(SignedViewChange {
                from: env.from,
                view_change: vc.clone(),
                signature: env.signature,
            });
            if mem.view_changes.len() > SEEN_MAX {
                mem.view_changes.remove(0);
            }
        }
        if byz == Byz::DoubleVoter {
            if let ConsensusPayload::PrePrepare {
                view,
                height,
                block_hash,
            } = env.payload
            {
                let mut targets = vec![block_hash];
                if self.rng.gen_bool(0.2) {
                    targets.push(Hash(self.rng.gen()));
                }
                for x in targets {
                    let mem = &mut self.nodes[i].adversary;
                    if !mem.voted.insert((view, height, x)) {
                        continue;
                    }
                    if mem.voted.len() > SEEN_MAX {
                        mem.voted.pop_first();
                    }
                    let time = self.byz_time(i);
                    for payload in [
                        ConsensusPayload::Prepare {
                            view,
                            height,
                            block_hash: x,
                        },
                        ConsensusPayload::Commit {
                            view,
                            height,
                            block_hash: x,
                            time,
                        },
                    ] {
                        if let Some(e) = self.byz_sign(i, payload, None) {
                            self.byz_send(i, None, e.encode());
                        }
                    }
                }
            }
        }
    }

    /// The adversary's own initiative, once per client turn.
    pub(super) fn byz_act(&mut self, i: usize, byz: Byz) {
        if !self.up(i) {
            return;
        }
        match byz {
            Byz::Replayer => {
                // Old, validly signed messages: earlier heights and views,
                // certificates that were true once.
                for _ in 0..self.rng.gen_range(1..4) {
                    let seen = &self.nodes[i].adversary.seen;
                    if seen.is_empty() {
                        return;
                    }
                    let m = seen[self.rng.gen_range(0..seen.len())].clone();
                    let to = self.rng.gen_range(0..NODES);
                    self.byz_send(i, Some(to), m);
                }
            }
            Byz::Garbage => self.send_garbage(i),
            _ => {}
        }
    }

    fn send_garbage(&mut self, i: usize) {
        let to = self.rng.gen_range(0..NODES);
        let (height, view) = self.nodes[i]
            .core
            .as_ref()
            .map(|c| {
                let s = c.status();
                (s.height + 1, s.view)
            })
            .unwrap_or((1, 0));
        let rh = Hash(self.rng.gen());
        let rt = Timestamp(self.rng.gen());
        let dv: u64 = self.rng.gen_range(0..3);
        let dh: u64 = self.rng.gen_range(0..2);
        let bytes = match self.rng.gen_range(0..8) {
            0 => {
                let len = self.rng.gen_range(0..300);
                (0..len).map(|_| self.rng.gen()).collect()
            }
            1 => {
                let seen = &self.nodes[i].adversary.seen;
                if seen.is_empty() {
                    vec![0xFF; 3]
                } else {
                    let mut b = seen[self.rng.gen_range(0..seen.len())].clone();
                    if self.rng.gen_bool(0.5) && !b.is_empty() {
                        let k = self.rng.gen_range(0..b.len());
                        b[k] ^= 1 << self.rng.gen_range(0..8);
                    } else {
                        let cut = self.rng.gen_range(0..=b.len());
                        b.truncate(cut);
                    }
                    b
                }
            }
            2 => self
                .byz_sign(
                    i,
                    ConsensusPayload::Prepare {
                        view: view + dv,
                        height: height + dh,
                        block_hash: rh,
                    },
                    None,
                )
                .map(|e| e.encode())
                .unwrap_or_default(),
            3 => self
                .byz_sign(
                    i,
                    ConsensusPayload::PrePrepare {
                        view,
                        height,
                        block_hash: rh,
                    },
                    None,
                )
                .map(|e| e.encode())
                .unwrap_or_default(),
            4 => {
                // A view change claiming a certificate it cannot have.
                let vc = ViewChange {
                    new_view: view + 1,
                    height,
                    prepared: Some(PreparedCert {
                        view,
                        height,
                        block_hash: rh,
                        pre_prepare_sig: Signature([7; 64]),
                        prepares: Vec::new(),
                    }),
                };
                self.byz_sign(i, ConsensusPayload::ViewChange(vc), None)
                    .map(|e| e.encode())
                    .unwrap_or_default()
            }
            5 => self
                .byz_sign(
                    i,
                    ConsensusPayload::Commit {
                        view: view + 100 * dv,
                        height: height + 2 + 50 * dh,
                        block_hash: rh,
                        time: rt,
                    },
                    None,
                )
                .map(|e| e.encode())
                .unwrap_or_default(),
            6 => self
                .byz_sign(
                    i,
                    ConsensusPayload::NewView(NewView {
                        view: view + 1,
                        height,
                        view_changes: Vec::new(),
                        reproposal: None,
                    }),
                    None,
                )
                .map(|e| e.encode())
                .unwrap_or_default(),
            _ => {
                // Someone else's index on our signature.
                match self.byz_sign(
                    i,
                    ConsensusPayload::Commit {
                        view,
                        height,
                        block_hash: rh,
                        time: rt,
                    },
                    None,
                ) {
                    Some(mut e) => {
                        e.from = e.from.wrapping_add(1) % 4;
                        e.encode()
                    }
                    None => Vec::new(),
                }
            }
        };
        if !bytes.is_empty() {
            self.byz_send(i, Some(to), bytes);
        }
    }
}
