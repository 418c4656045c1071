//! Byzantine behaviours layered on top of an honest core: the byzantine
//! process runs the production replica and then lies on the wire.

use aidledger_consensus::{Envelope, Payload, ViewChange};
use aidledger_types::{Hash, Signature};
use rand::Rng;

use crate::app::App;
use crate::scenario::Byz;
use crate::sim::{NetMsg, Sim};

impl<A: App> Sim<'_, A> {
    fn sign_as(&self, node: usize, payload: Payload) -> Envelope {
        let n = &self.nodes[node];
        Envelope::sign(&n.key, &self.chain_id, n.validator, payload, None)
    }

    fn broadcast_raw(&mut self, node: usize, bytes: Vec<u8>) {
        let me = self.nodes[node].validator;
        for j in 0..self.nodes.len() {
            if self.nodes[j].validator != me {
                self.net_send(node, j, NetMsg::Consensus(bytes.clone()));
            }
        }
    }

    /// Equivocating primary: a conflicting block (no transactions, a later
    /// timestamp, a correct state root) goes to a random half of the peers,
    /// the honest one to the rest; it also commits to the conflicting one.
    pub(crate) fn equivocate(&mut self, node: usize, env: Envelope) {
        let Payload::PrePrepare { view, height, .. } = env.payload else {
            return;
        };
        let Some(orig) = env.block.clone() else {
            return;
        };
        let now = orig.header.timestamp.ms();
        let alt = self.build_block(node, height, view, orig.header.parent_hash, now, true);
        let orig_bytes = env.encode();
        let Some(alt) = alt else {
            self.broadcast_raw(node, orig_bytes);
            return;
        };
        let alt_hash = alt.hash();
        let n = &self.nodes[node];
        let alt_env = Envelope::sign(
            &n.key,
            &self.chain_id,
            n.validator,
            Payload::PrePrepare {
                view,
                height,
                block_hash: alt_hash,
            },
            Some(alt),
        )
        .encode();
        let me = self.nodes[node].validator;
        for j in 0..self.nodes.len() {
            if self.nodes[j].validator == me {
                continue;
            }
            let bytes = if self.rng.gen_bool(0.5) {
                orig_bytes.clone()
            } else {
                alt_env.clone()
            };
            self.net_send(node, j, NetMsg::Consensus(bytes));
        }
        let commit = self.sign_as(
            node,
            Payload::Commit {
                view,
                height,
                block_hash: alt_hash,
            },
        );
        self.broadcast_raw(node, commit.encode());
    }

    /// Double voter: prepares and commits every pre-prepared block it sees,
    /// and now and then a block that does not exist.
    pub(crate) fn double_vote(&mut self, node: usize, bytes: &[u8]) {
        let Ok(env) = Envelope::decode(bytes, aidledger_consensus::MESSAGE_MAX_BYTES) else {
            return;
        };
        let Payload::PrePrepare {
            view,
            height,
            block_hash,
        } = env.payload
        else {
            return;
        };
        let mut targets = vec![block_hash];
        if self.rng.gen_bool(0.2) {
            targets.push(Hash(self.rng.gen()));
        }
        for x in targets {
            if !self.nodes[node].voted.insert((view, height, x)) {
                continue;
            }
            if self.nodes[node].voted.len() > 256 {
                let first = self.nodes[node].voted.iter().next().copied();
                if let Some(first) = first {
                    self.nodes[node].voted.remove(&first);
                }
            }
            for payload in [
                Payload::Prepare {
                    view,
                    height,
                    block_hash: x,
                },
                Payload::Commit {
                    view,
                    height,
                    block_hash: x,
                },
            ] {
                let e = self.sign_as(node, payload);
                self.broadcast_raw(node, e.encode());
            }
        }
    }

    /// Garbage: random bytes, corrupted copies of real messages, and
    /// well-signed messages that break the protocol's rules.
    pub(crate) fn send_garbage(&mut self, node: usize) {
        debug_assert_eq!(self.nodes[node].byz, Some(Byz::Garbage));
        let targets: Vec<usize> = (0..self.nodes.len())
            .filter(|j| self.nodes[*j].validator != self.nodes[node].validator)
            .collect();
        if targets.is_empty() {
            return;
        }
        let to = targets[self.rng.gen_range(0..targets.len())];
        let (height, view) = self.nodes[node]
            .replica
            .as_ref()
            .map(|r| (r.height(), r.view()))
            .unwrap_or((1, 0));
        let rh = Hash(self.rng.gen());
        let dv: u64 = self.rng.gen_range(0..3);
        let dh: u64 = self.rng.gen_range(0..2);
        let bytes = match self.rng.gen_range(0..9) {
            0 => {
                let len = self.rng.gen_range(0..300);
                (0..len).map(|_| self.rng.gen()).collect()
            }
            1 | 2 => {
                let recent = &self.nodes[node].recent;
                if recent.is_empty() {
                    vec![0xFF; 3]
                } else {
                    let mut b = recent[self.rng.gen_range(0..recent.len())].clone();
                    if self.rng.gen_bool(0.5) && !b.is_empty() {
                        let i = self.rng.gen_range(0..b.len());
                        b[i] ^= 1 << self.rng.gen_range(0..8);
                    } else {
                        let cut = self.rng.gen_range(0..=b.len());
                        b.truncate(cut);
                    }
                    b
                }
            }
            3 => self
                .sign_as(
                    node,
                    Payload::Prepare {
                        view: view + dv,
                        height: height + dh,
                        block_hash: rh,
                    },
                )
                .encode(),
            4 => {
                // A pre-prepare without its block, whoever the primary is.
                let mut e = self.sign_as(
                    node,
                    Payload::PrePrepare {
                        view,
                        height,
                        block_hash: rh,
                    },
                );
                e.block = None;
                e.encode()
            }
            5 => {
                // A view change claiming a prepared certificate it cannot have.
                let vc = ViewChange {
                    new_view: view + 1,
                    height,
                    prepared: Some(aidledger_consensus::PreparedCert {
                        view,
                        height,
                        block_hash: Hash(self.rng.gen()),
                        pre_prepare_sig: Signature([7; 64]),
                        prepares: Vec::new(),
                    }),
                };
                self.sign_as(node, Payload::ViewChange(vc)).encode()
            }
            7 => {
                // Far-future heights and views: lures sync requests to us.
                self.sign_as(
                    node,
                    Payload::Commit {
                        view: view + 100 * dv,
                        height: height + 2 + 50 * dh,
                        block_hash: rh,
                    },
                )
                .encode()
            }
            8 => {
                // A new-view with no view changes, for the next view.
                self.sign_as(
                    node,
                    Payload::NewView(aidledger_consensus::NewView {
                        view: view + 1,
                        height,
                        view_changes: Vec::new(),
                        reproposal: None,
                    }),
                )
                .encode()
            }
            _ => {
                // Someone else's index on our signature.
                let mut e = self.sign_as(
                    node,
                    Payload::Commit {
                        view,
                        height,
                        block_hash: rh,
                    },
                );
                e.from = (e.from + 1) % self.vset.len() as u16;
                e.encode()
            }
        };
        self.net_send(node, to, NetMsg::Consensus(bytes));
    }
}
