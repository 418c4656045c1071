//! TEST AND BENCHMARK FIXTURES ONLY. Builds real, certified chains
//! without any node process, straight into a [`RocksStore`]: the
//! development consortium of `aidledger_execution::testkit` (public seeds:
//! anyone can sign with its keys), blocks assembled with the execution
//! crate's `build_block`, commit certificates signed by the development
//! validator keys.
//!
//! Used by the audit tests, by `aidledger bench suite` to produce a
//! 1M-transaction chain for the replay benchmark, and to fill state with
//! many households ([`SynthChain::populate_households`]) through ordinary
//! [`CommitBatch`]es.
//!
//! Signing and verifying the generated transactions is spread over
//! threads; execution is sequential, as on a node.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aidledger_contracts::model::{AttestValue, HouseholdStatus, Subject};
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{keys, Genesis, Household};
use aidledger_crypto::{verify_txs, Keypair, Purpose, VerifiedTx};
use aidledger_execution::testkit::{dev_genesis, TxFactory, DEV_REGION};
use aidledger_execution::{
    build_block, genesis_state, BlockContext, BlockOutcome, MemState, ParentInfo, StateRead,
};
use aidledger_storage::{CommitBatch, RocksStore, Store};
use aidledger_types::hash::hash_parts;
use aidledger_types::{
    codec, Amount, Block, ChainId, CommitCertificate, CommitSignature, Hash, IdentifiedBlock,
    OrgId, RegionCode, Role, SignedTx, Slug, StateAccumulator, Timestamp, ValidatorSet,
};

use crate::{AuditError, StoreState, StoreView};

fn invalid(what: &str, reason: impl std::fmt::Display) -> AuditError {
    AuditError::Invalid {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

/// Signs a certificate for `block` with the first `signers` validators of
/// `set`, looking their keys up in `keys`. Each votes at the block's own
/// time, so the next block's floor is this block's time.
pub fn certificate(
    chain: &ChainId,
    set: &ValidatorSet,
    keys: &BTreeMap<OrgId, Keypair>,
    block: &Block,
    signers: usize,
) -> Result<CommitCertificate, AuditError> {
    let mut cert = CommitCertificate {
        height: block.height(),
        view: block.header.view,
        block_hash: block.hash(),
        signatures: Vec::new(),
    };
    for (i, v) in set.validators().iter().enumerate().take(signers) {
        let kp = keys
            .get(&v.org)
            .ok_or_else(|| invalid("certificate", format!("no key for validator {}", v.org)))?;
        let sig = vote_signature(chain, &cert, kp, i as u16, block.header.timestamp);
        cert.signatures.push(sig);
    }
    Ok(cert)
}

/// Signs the commit vote of `cert` with `kp`, as validator index `index`
/// voting at `time`.
pub fn vote_signature(
    chain: &ChainId,
    cert: &CommitCertificate,
    kp: &Keypair,
    index: u16,
    time: Timestamp,
) -> CommitSignature {
    let vote = codec::encode(&cert.vote(chain, time));
    CommitSignature {
        validator: index,
        time,
        signature: kp.sign(chain, Purpose::Commit, &vote),
    }
}

/// Where execution reads state: a copy in memory (fast, for building long
/// chains) or the store itself (what a node does).
pub enum StateMode {
    Memory,
    Store,
}

/// A chain being built into a store.
pub struct SynthChain {
    pub genesis: Genesis,
    pub f: TxFactory,
    /// `Some` in [`StateMode::Memory`].
    pub state: Option<MemState>,
    pub acc: StateAccumulator,
    pub parent: ParentInfo,
    pub store: Arc<RocksStore>,
    /// Every validator key of the development consortium, by organisation.
    pub validator_keys: BTreeMap<OrgId, Keypair>,
    /// The height whose execution changed the validator set.
    pub set_changed_at: Option<u64>,
    pub txs: u64,
}

impl SynthChain {
    /// A new store in `data` (which must not hold a chain) with the
    /// 4-validator development genesis written into it.
    pub fn new(data: &Path, mode: StateMode) -> Result<SynthChain, AuditError> {
        let (genesis, keys) = dev_genesis(4, 11);
        let validator_keys = keys.validators.iter().cloned().collect();
        let (map, acc) = genesis_state(&genesis)?;
        let store = RocksStore::open(data).map_err(|source| AuditError::Store {
            path: data.display().to_string(),
            source,
        })?;
        store.put_genesis(
            genesis.hash(),
            codec::encode(&genesis),
            map.clone(),
            acc.clone(),
        )?;
        let parent = ParentInfo::genesis(&genesis)?;
        let f = TxFactory::new(&genesis, keys);
        Ok(SynthChain {
            genesis,
            f,
            state: match mode {
                StateMode::Memory => Some(MemState::new(map)),
                StateMode::Store => None,
            },
            acc,
            parent,
            store: Arc::new(store),
            validator_keys,
            set_changed_at: None,
            txs: 0,
        })
    }

    pub fn time(&self) -> Timestamp {
        self.parent.timestamp
    }

    fn context(&self, time: Timestamp) -> (BlockContext, u64) {
        let height = self.parent.height + 1;
        let view = height % 3;
        let proposer = self.parent.validator_set.leader(view).key;
        (
            BlockContext {
                chain_id: self.genesis.chain_id.clone(),
                height,
                timestamp: time,
                proposer,
            },
            view,
        )
    }

    /// Builds the next block from `txs` at `time` (execution only; nothing
    /// is stored).
    pub fn build(
        &self,
        time: Timestamp,
        txs: &[VerifiedTx],
    ) -> Result<(Block, BlockOutcome), AuditError> {
        let (ctx, view) = self.context(time);
        let store_state = StoreView::new(self.store.as_ref());
        let state: &dyn StateRead = match &self.state {
            Some(m) => m,
            None => &store_state,
        };
        Ok(build_block(
            &self.parent,
            &ctx,
            view,
            txs,
            state,
            &self.acc,
        )?)
    }

    /// Certifies and commits a built block, and moves on to it.
    pub fn commit(&mut self, block: Block, outcome: BlockOutcome) -> Result<(), AuditError> {
        let batch = self.commit_batch(block, &outcome)?;
        self.commit_prepared(batch, outcome)
    }

    /// The certified batch that commits `block` (signing only; nothing is
    /// stored).
    pub fn commit_batch(
        &self,
        block: Block,
        outcome: &BlockOutcome,
    ) -> Result<CommitBatch, AuditError> {
        let set = &self.parent.validator_set;
        let cert = certificate(
            &self.genesis.chain_id,
            set,
            &self.validator_keys,
            &block,
            set.quorum(),
        )?;
        let next_validator_set = (outcome.validator_set.hash() != block.header.validator_set_hash)
            .then(|| outcome.validator_set.clone());
        let block = IdentifiedBlock::new(block).map_err(|b| AuditError::Invalid {
            what: format!("synthetic block {}", b.header.height),
            reason: "its body does not match its header".into(),
        })?;
        Ok(CommitBatch {
            block,
            certificate: cert,
            state_writes: outcome.writes.clone(),
            receipts: outcome.receipts.iter().map(codec::encode).collect(),
            block_events: codec::encode(&outcome.events),
            accumulator: outcome.accumulator.clone(),
            next_validator_set,
        })
    }

    /// Stores a batch from [`Self::commit_batch`] and moves on to it.
    pub fn commit_prepared(
        &mut self,
        batch: CommitBatch,
        outcome: BlockOutcome,
    ) -> Result<(), AuditError> {
        let parent = self.parent.child(
            batch.block.block(),
            &outcome,
            Some(batch.certificate.clone()),
        );
        let txs = batch.block.ids().len() as u64;
        self.store.commit_block(batch)?;
        if let Some(m) = self.state.as_mut() {
            m.apply(&outcome.writes);
        }
        self.acc = outcome.accumulator;
        if outcome.validator_set != self.parent.validator_set {
            self.set_changed_at = Some(parent.height);
        }
        self.parent = parent;
        self.txs += txs;
        Ok(())
    }

    /// Builds, certifies and commits a block at `time` from `txs`.
    pub fn block_at(
        &mut self,
        time: Timestamp,
        txs: &[VerifiedTx],
    ) -> Result<(Block, BlockOutcome), AuditError> {
        let (block, outcome) = self.build(time, txs)?;
        self.commit(block.clone(), outcome.clone())?;
        Ok((block, outcome))
    }

    /// The factory's nonces re-read from the chain's state.
    pub fn resync(&mut self) -> Result<(), AuditError> {
        let store_state = StoreState(self.store.as_ref());
        let state: &dyn StateRead = match &self.state {
            Some(m) => m,
            None => &store_state,
        };
        self.f.resync(state)?;
        Ok(())
    }

    /// Commits an empty block at `time` whose writes also carry `extra`
    /// (keys that must not be written by the block itself), as if some
    /// earlier history had written them. The state root and accumulator
    /// cover them, so the chain stays consistent for later blocks (a
    /// replay from genesis would of course not reproduce this block).
    pub fn commit_with_writes(
        &mut self,
        time: Timestamp,
        extra: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), AuditError> {
        let (mut block, mut outcome) = self.build(time, &[])?;
        for (k, v) in extra {
            if outcome.writes.contains_key(&k) {
                return Err(invalid("synthetic writes", "key also written by the block"));
            }
            outcome.accumulator.insert(&k, &v);
            outcome.writes.insert(k, Some(v));
        }
        outcome.state_root = outcome.accumulator.root();
        block.header.state_root = outcome.state_root;
        self.commit(block, outcome)
    }

    /// Registers `n` households directly in state (no transactions), in
    /// the development region's villages, in commits of at most
    /// `per_block` households.
    pub fn populate_households(
        &mut self,
        n: u64,
        per_block: u64,
        time_step_ms: u64,
    ) -> Result<(), AuditError> {
        let by: OrgId = "poverty-office"
            .parse()
            .map_err(|e| invalid("org", format!("{e:?}")))?;
        let unit = codec::encode(&());
        let regions: Vec<RegionCode> = (0..3)
            .map(|i| RegionCode::new(format!("{DEV_REGION}/dingxi/village-{i}")))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid("region", e))?;
        let mut done = 0u64;
        while done < n {
            let k = per_block.max(1).min(n - done);
            let height = self.parent.height + 1;
            let mut writes = Vec::with_capacity(2 * k as usize);
            for i in done..done + k {
                let id = populated_household(i);
                let region = regions[(i % 3) as usize].clone();
                let hkey = keys::household_region(&region, &id);
                let h = Household {
                    id,
                    region,
                    status: HouseholdStatus::Active,
                    registered_by: by.clone(),
                    registered_height: height,
                    updated_height: height,
                };
                writes.push((keys::household(&id), codec::encode(&h)));
                writes.push((hkey, unit.clone()));
            }
            let t = self.time().saturating_add_ms(time_step_ms.max(1));
            self.commit_with_writes(t, writes)?;
            done += k;
        }
        Ok(())
    }
}

/// The id of household `i` written by [`SynthChain::populate_households`].
pub fn populated_household(i: u64) -> Hash {
    hash_parts(b"aidledger/synth-populated-household", &[&i.to_le_bytes()])
}

/// The realistic workload, pre-signed in parallel: household
/// registrations by the registrars, attestations about the households
/// just registered by every attester, and deposits into `relief` by its
/// funding banks, round-robin so every operator account carries load.
pub struct Workload {
    signers: Vec<(Keypair, u8)>,
    nonces: Vec<u64>,
    next: u64,
    program: Slug,
    tag: u64,
}

impl Workload {
    /// Starts from the factory's nonces (call [`SynthChain::resync`]
    /// first). `tag` keeps household ids of different workloads apart.
    pub fn new(f: &TxFactory, tag: u64) -> Result<Workload, AuditError> {
        let mut signers = Vec::new();
        let pick = |org: &str, role: Role| -> Result<Keypair, AuditError> {
            let o: OrgId = org.parse().map_err(|e| invalid("org", format!("{e:?}")))?;
            f.keys
                .operators
                .get(&(o, role))
                .cloned()
                .ok_or_else(|| invalid("workload", format!("no {role} at {org}")))
        };
        for org in ["poverty-office", "county-unit"] {
            signers.push((pick(org, Role::Registrar)?, 0u8));
        }
        for org in [
            "poverty-office",
            "finance-bureau",
            "audit-office",
            "county-unit",
        ] {
            signers.push((pick(org, Role::Attester)?, 1u8));
        }
        for org in ["state-bank", "dev-bank"] {
            signers.push((pick(org, Role::Disburser)?, 2u8));
        }
        let nonces = signers
            .iter()
            .map(|(k, _)| f.next_nonce(&k.public()))
            .collect();
        Ok(Workload {
            signers,
            nonces,
            next: 0,
            program: Slug::new("relief").map_err(|e| invalid("slug", e))?,
            tag,
        })
    }

    fn household(&self, i: u64) -> Hash {
        hash_parts(
            b"aidledger/synth-household",
            &[&self.tag.to_le_bytes(), &i.to_le_bytes()],
        )
    }

    /// The next `n` transactions, signed on `threads` threads.
    pub fn next_txs(
        &mut self,
        f: &TxFactory,
        n: usize,
        threads: usize,
    ) -> Result<Vec<SignedTx>, AuditError> {
        // Registrations, attestations and deposits in equal parts: slot
        // k % 3, each kind round-robin over its signers.
        let regs: Vec<usize> = (0..self.signers.len())
            .filter(|&i| self.signers[i].1 == 0)
            .collect();
        let atts: Vec<usize> = (0..self.signers.len())
            .filter(|&i| self.signers[i].1 == 1)
            .collect();
        let deps: Vec<usize> = (0..self.signers.len())
            .filter(|&i| self.signers[i].1 == 2)
            .collect();
        let claim = Slug::new("income-verified").map_err(|e| invalid("slug", e))?;
        let code = Slug::new("below-line").map_err(|e| invalid("slug", e))?;
        let regions: Vec<RegionCode> = (0..3)
            .map(|i| RegionCode::new(format!("{DEV_REGION}/dingxi/village-{i}")))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid("region", e))?;
        let mut plan: Vec<(usize, u64, Payload)> = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.next;
            self.next += 1;
            let round = k / 3;
            let (si, p) = match k % 3 {
                0 => (
                    regs[(round as usize) % regs.len()],
                    Payload::RegisterHousehold(payload::RegisterHousehold {
                        id: self.household(round),
                        region: regions[(round % 3) as usize].clone(),
                    }),
                ),
                1 => (
                    atts[(round as usize) % atts.len()],
                    Payload::Attest(payload::Attest {
                        subject: Subject::Household(self.household(round)),
                        claim: claim.clone(),
                        value: AttestValue::Code(code.clone()),
                    }),
                ),
                _ => (
                    deps[(round as usize) % deps.len()],
                    Payload::Deposit(payload::Deposit {
                        program: self.program.clone(),
                        amount: Amount(1_000 + round % 1_000),
                    }),
                ),
            };
            let nonce = self.nonces[si];
            self.nonces[si] += 1;
            plan.push((si, nonce, p));
        }
        let threads = threads.max(1);
        let chunk = plan.len().div_ceil(threads).max(1);
        let signers = &self.signers;
        let out: Vec<Vec<SignedTx>> = std::thread::scope(|s| {
            let handles: Vec<_> = plan
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|(si, nonce, p)| f.sign_with_nonce(&signers[*si].0, p, *nonce))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let out: Vec<SignedTx> = out.into_iter().flatten().collect();
        if out.len() != n {
            return Err(invalid("workload", "a signing thread failed"));
        }
        Ok(out)
    }
}

/// Verifies `txs` with the batch equation on `threads` threads, as a
/// node's admission does. Fails on the first invalid transaction.
pub fn verify_parallel(
    txs: Vec<SignedTx>,
    chain: &ChainId,
    threads: usize,
) -> Result<Vec<VerifiedTx>, AuditError> {
    let threads = threads.max(1);
    let expected = txs.len();
    let chunk = txs.len().div_ceil(threads).max(1);
    let mut parts: Vec<Vec<SignedTx>> = Vec::new();
    let mut it = txs.into_iter().peekable();
    while it.peek().is_some() {
        parts.push(it.by_ref().take(chunk).collect());
    }
    let results: Vec<Vec<Result<VerifiedTx, (SignedTx, aidledger_crypto::CryptoError)>>> =
        std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .into_iter()
                .map(|p| s.spawn(move || verify_txs(p, chain)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
    let mut out = Vec::new();
    for r in results.into_iter().flatten() {
        out.push(r.map_err(|(tx, e)| invalid("synthetic tx", format!("{}: {e}", tx.id())))?);
    }
    if out.len() != expected {
        return Err(invalid("synthetic tx", "a verifying thread failed"));
    }
    Ok(out)
}

/// What [`build_chain`] produced.
#[derive(Clone, Debug)]
pub struct BuiltChain {
    pub blocks: u64,
    pub txs: u64,
    pub head_state_root: Hash,
}

/// Builds a chain of at least `total_txs` workload transactions (plus the
/// setup block) into a new store in `data`, `block_txs` per block, one
/// second apart, signing and verifying on `threads` threads. Every
/// transaction must apply. The store is closed on return.
pub fn build_chain(
    data: &Path,
    total_txs: u64,
    block_txs: usize,
    threads: usize,
) -> Result<BuiltChain, AuditError> {
    let mut c = SynthChain::new(data, StateMode::Memory)?;
    let chain = c.genesis.chain_id.clone();
    // Block 1: the program, its funding and a monthly entitlement.
    let setup = c.f.workload_block(0);
    let setup = verify_parallel(setup, &chain, threads)?;
    let t = c.time().saturating_add_ms(1_000);
    c.block_at(t, &setup)?;
    let setup_txs = c.txs;
    c.resync()?;
    let w = Workload::new(&c.f, 1)?;
    let block_txs = block_txs.clamp(1, aidledger_types::block::BLOCK_MAX_TXS);
    // Signing and verifying run ahead of execution on their own thread(s):
    // a separate factory signs (the workload tracks the nonces).
    let (genesis, keys) = dev_genesis(4, 11);
    let signer = TxFactory::new(&genesis, keys);
    let sign_threads = threads.saturating_sub(1).max(1);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<VerifiedTx>, AuditError>>(2);
    std::thread::scope(|s| -> Result<(), AuditError> {
        let chain = &chain;
        let signer = &signer;
        s.spawn(move || {
            let mut w = w;
            let mut left = total_txs;
            while left > 0 {
                let n = usize::try_from(left.min(block_txs as u64)).unwrap_or(block_txs);
                let r = w
                    .next_txs(signer, n, sign_threads)
                    .and_then(|txs| verify_parallel(txs, chain, sign_threads));
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    return;
                }
                left -= n as u64;
            }
        });
        for txs in rx {
            let txs = txs?;
            let n = txs.len();
            let t = c.time().saturating_add_ms(1_000);
            let (block, outcome) = c.build(t, &txs)?;
            if block.txs.len() != n {
                return Err(invalid(
                    "synthetic block",
                    format!("{} of {n} transactions included", block.txs.len()),
                ));
            }
            if let Some(r) = outcome.receipts.iter().find(|r| !r.is_applied()) {
                return Err(invalid(
                    "synthetic block",
                    format!("tx {} rejected: {:?}", r.index, r.outcome),
                ));
            }
            c.commit(block, outcome)?;
        }
        Ok(())
    })?;
    if c.txs < total_txs + setup_txs {
        return Err(invalid(
            "synthetic chain",
            "the signing thread stopped early",
        ));
    }
    Ok(BuiltChain {
        blocks: c.parent.height,
        txs: c.txs,
        head_state_root: c.acc.root(),
    })
}
