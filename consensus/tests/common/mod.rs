//! A tiny harness for step tests: keys, blocks and signed messages for a
//! validator set of n, and helpers to read outputs.
#![allow(dead_code, clippy::unwrap_used)] // test helpers

use aidledger_consensus::{
    CommittedTip, Config, Envelope, Input, Output, Payload, PreparedCert, Replica,
};
use aidledger_crypto::Keypair;
use aidledger_types::{
    Block, BlockHeader, ChainId, CommitCertificate, CommitSignature, Hash, OrgId, Timestamp,
    Validator, ValidatorSet, ValidatorSignature,
};

pub struct Net {
    pub chain: ChainId,
    pub keys: Vec<Keypair>,
    pub vset: ValidatorSet,
    pub genesis: Hash,
}

pub const BASE_MS: u64 = 1_000;
pub const MAX_MS: u64 = 8_000;

impl Net {
    pub fn new(n: usize) -> Net {
        let keys: Vec<Keypair> = (0..n)
            .map(|i| Keypair::from_seed([i as u8 + 1; 32]))
            .collect();
        let vset = ValidatorSet::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    org: OrgId::new(format!("org-{i}")).unwrap(),
                    key: k.public(),
                })
                .collect(),
        )
        .unwrap();
        Net {
            chain: ChainId::new("test-chain").unwrap(),
            keys,
            vset,
            genesis: Hash([0xAB; 32]),
        }
    }

    pub fn cfg(&self, i: usize) -> Config {
        let mut c = Config::new(self.chain.clone(), self.vset.clone(), self.keys[i].clone());
        c.timeout_base_ms = BASE_MS;
        c.timeout_max_ms = MAX_MS;
        c
    }

    /// Replica `i` at genesis, started.
    pub fn replica(&self, i: usize) -> (Replica, Vec<Output>) {
        let mut r = Replica::new(self.cfg(i), CommittedTip::genesis(self.genesis)).unwrap();
        let out = r.handle(0, Input::Start);
        (r, out)
    }

    /// A block for `height` on `parent`, proposed in `view` by its primary;
    /// `salt` makes different blocks.
    pub fn block_on(&self, height: u64, view: u64, parent: Hash, salt: u64) -> Block {
        let leader = self.vset.leader_index(view);
        Block {
            header: BlockHeader {
                version: aidledger_types::HEADER_VERSION,
                chain_id: self.chain.clone(),
                height,
                view,
                parent_hash: parent,
                timestamp: Timestamp(1_000 + salt),
                proposer: self.keys[leader].public(),
                tx_root: Block::compute_tx_root(&[]),
                tx_count: 0,
                state_root: Hash([salt as u8; 32]),
                event_root: Hash::ZERO,
                event_count: 0,
                validator_set_hash: self.vset.hash(),
                next_validator_set_hash: self.vset.hash(),
                parent_certificate: None,
            },
            txs: Vec::new(),
        }
    }

    pub fn block(&self, view: u64, salt: u64) -> Block {
        self.block_on(1, view, self.genesis, salt)
    }

    pub fn env(&self, from: usize, payload: Payload, block: Option<Block>) -> Envelope {
        Envelope::sign(&self.keys[from], &self.chain, from as u16, payload, block)
    }

    pub fn msg(&self, from: usize, payload: Payload, block: Option<Block>) -> Input {
        Input::Message(self.env(from, payload, block).encode())
    }

    pub fn pre_prepare(&self, view: u64, block: &Block) -> Input {
        let leader = self.vset.leader_index(view);
        self.msg(
            leader,
            Payload::PrePrepare {
                view,
                height: block.height(),
                block_hash: block.hash(),
            },
            Some(block.clone()),
        )
    }

    pub fn prepare(&self, from: usize, view: u64, height: u64, hash: Hash) -> Input {
        self.msg(
            from,
            Payload::Prepare {
                view,
                height,
                block_hash: hash,
            },
            None,
        )
    }

    pub fn commit(&self, from: usize, view: u64, height: u64, hash: Hash) -> Input {
        self.msg(
            from,
            Payload::Commit {
                view,
                height,
                block_hash: hash,
                time: COMMIT_TIME,
            },
            None,
        )
    }

    /// A prepared certificate for `block` in `view`, with prepares from `backups`.
    pub fn prepared_cert(&self, view: u64, block: &Block, backups: &[usize]) -> PreparedCert {
        let leader = self.vset.leader_index(view);
        let (h, x) = (block.height(), block.hash());
        let pp = self.env(
            leader,
            Payload::PrePrepare {
                view,
                height: h,
                block_hash: x,
            },
            None,
        );
        PreparedCert {
            view,
            height: h,
            block_hash: x,
            pre_prepare_sig: pp.signature,
            prepares: backups
                .iter()
                .map(|b| ValidatorSignature {
                    validator: *b as u16,
                    signature: self
                        .env(
                            *b,
                            Payload::Prepare {
                                view,
                                height: h,
                                block_hash: x,
                            },
                            None,
                        )
                        .signature,
                })
                .collect(),
        }
    }

    /// A commit certificate for `block` signed by `signers` in `view`.
    pub fn certificate(&self, view: u64, block: &Block, signers: &[usize]) -> CommitCertificate {
        CommitCertificate {
            height: block.height(),
            view,
            block_hash: block.hash(),
            signatures: signers
                .iter()
                .map(|s| CommitSignature {
                    validator: *s as u16,
                    time: COMMIT_TIME,
                    signature: self
                        .env(
                            *s,
                            Payload::Commit {
                                view,
                                height: block.height(),
                                block_hash: block.hash(),
                                time: COMMIT_TIME,
                            },
                            None,
                        )
                        .signature,
                })
                .collect(),
        }
    }
}

/// The time the test harness's commit votes carry.
pub const COMMIT_TIME: Timestamp = Timestamp(5_000);

pub fn validated(block: &Block, valid: bool) -> Input {
    Input::BlockValidated {
        height: block.height(),
        block_hash: block.hash(),
        valid,
    }
}

/// Every message the outputs put on the wire.
pub fn sent(outs: &[Output]) -> Vec<&Envelope> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Broadcast(e) | Output::Send { message: e, .. } => Some(e),
            _ => None,
        })
        .collect()
}

pub fn sent_kind<'a>(outs: &'a [Output], kind: &str) -> Vec<&'a Envelope> {
    sent(outs)
        .into_iter()
        .filter(|e| e.payload.kind() == kind)
        .collect()
}

pub fn committed(outs: &[Output]) -> Option<(Block, CommitCertificate)> {
    outs.iter().find_map(|o| match o {
        Output::Commit { block, certificate } => Some((block.clone(), certificate.clone())),
        _ => None,
    })
}

pub fn validations(outs: &[Output]) -> Vec<Block> {
    outs.iter()
        .filter_map(|o| match o {
            Output::ValidateBlock { block, .. } => Some(block.clone()),
            _ => None,
        })
        .collect()
}

pub fn persisted(outs: &[Output]) -> Option<aidledger_consensus::SafetyState> {
    outs.iter().rev().find_map(|o| match o {
        Output::PersistSafetyState(s) => Some(s.clone()),
        _ => None,
    })
}

/// Drives backup `r` through pre-prepare and validation of `block` in view 0.
pub fn accept(net: &Net, r: &mut Replica, block: &Block) -> Vec<Output> {
    let mut outs = r.handle(10, net.pre_prepare(block.header.view, block));
    outs.extend(r.handle(11, validated(block, true)));
    outs
}
