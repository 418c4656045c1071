//! [`ExecApp`]: the real `aidledger-execution` as the simulator's
//! application.
//!
//! Genesis is a development consortium (`testkit::dev_genesis(n, seed)`):
//! the simulated validators sign with its validator keys. Proposers build
//! blocks with `build_block` from a workload signed by the consortium's
//! operators; validators check them with `validate_block` (drift checked
//! against their own skewed clock) and keep a per-replica `MemState` and
//! `StateAccumulator`; a commit applies the block's writes.
//!
//! The workload is a function of the proposer's committed state, the
//! height and the proposer's RNG: nonces come from state
//! (`TxFactory::resync`) and new identifiers from the height, so whichever
//! replica leads a height proposes valid transactions, and a block that
//! loses a view change leaves nothing behind.

use std::sync::Arc;

use aidledger_contracts::model::Subject;
use aidledger_contracts::payload::{self, Payload};
use aidledger_contracts::{keys, Condition, Genesis, Program};
use aidledger_execution::testkit::{dev_genesis, DevKeys, TxFactory, DEV_REGION};
use aidledger_execution::{
    build_block, genesis_state, read_params, validate_block, BlockContext, MemState, ParentInfo,
    StateRead,
};
use aidledger_types::{
    codec, Block, Hash, RegionCode, Role, SignedTx, StateAccumulator, Timestamp,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::app::{App, AppGenesis, Proposal};

/// The program every workload deposits into and pays from.
pub const PROGRAM: &str = "relief";
const ENTITLEMENT: &str = "relief-monthly";
/// Entitlement payments start this long after genesis and repeat every
/// period, so a run's end-of-block steps really pay households.
const ENTITLEMENT_START_MS: u64 = 20_000;
const ENTITLEMENT_PERIOD_MS: u64 = 15_000;
/// Plan tranches release this long after genesis.
const TRANCHE_AFTER_MS: u64 = 25_000;
/// Identifiers per height for households, so heights never collide.
const IDS_PER_HEIGHT: u64 = 64;

/// The simulator's application: `aidledger-execution` on in-memory state.
#[derive(Clone, Debug)]
pub struct ExecApp {
    /// Most workload transactions per block (the opening block that
    /// creates the program has three more).
    pub max_txs: usize,
}

impl Default for ExecApp {
    fn default() -> Self {
        ExecApp { max_txs: 4 }
    }
}

/// What every replica of one chain shares: genesis and the workload's keys.
#[derive(Debug)]
pub struct Kit {
    genesis: Genesis,
    keys: DevKeys,
    max_drift_ms: u64,
}

/// One replica's committed state.
#[derive(Clone, Debug)]
pub struct ExecState {
    kit: Arc<Kit>,
    mem: MemState,
    acc: StateAccumulator,
    /// What the next block is checked against.
    parent: ParentInfo,
    /// The last block's transactions: the workload resends some of them,
    /// rejected ones included, as a careless client or an attacker would.
    last_txs: Arc<Vec<SignedTx>>,
    /// Every transaction id on this chain, and whether some block
    /// included one twice (which `check_invariants` reports).
    included: Arc<std::collections::BTreeSet<Hash>>,
    included_twice: Option<(u64, Hash)>,
}

impl ExecState {
    pub fn mem(&self) -> &MemState {
        &self.mem
    }
    pub fn parent(&self) -> &ParentInfo {
        &self.parent
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn slug(s: &str) -> Result<aidledger_types::Slug, String> {
    aidledger_types::Slug::new(s).map_err(err)
}

impl ExecApp {
    /// The workload of one block: deterministic in (state, height, rng).
    fn workload(
        &self,
        state: &ExecState,
        height: u64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<SignedTx>, String> {
        let kit = &state.kit;
        let mut f = TxFactory::new(&kit.genesis, kit.keys.clone());
        f.resync(&state.mem).map_err(err)?;
        let genesis_ms = kit.genesis.genesis_time.ms();
        let mut txs = Vec::new();
        if state
            .mem
            .get(&keys::program(&slug(PROGRAM)?))
            .map_err(err)?
            .is_none()
        {
            txs.push(f.create_program(PROGRAM, 1_000_000_000_000));
            txs.push(f.deposit(PROGRAM, 50_000_000));
            txs.push(f.set_entitlement(
                ENTITLEMENT,
                PROGRAM,
                1_000,
                Timestamp(genesis_ms + ENTITLEMENT_START_MS),
                ENTITLEMENT_PERIOD_MS,
                12,
            ));
        }
        // Households registered earlier, to attest.
        let mut known: Vec<Hash> = state
            .mem
            .scan(keys::HOUSEHOLD_PREFIX, None, 16)
            .map_err(err)?
            .into_iter()
            .filter_map(|(k, _)| {
                let id = k.get(keys::HOUSEHOLD_PREFIX.len()..)?;
                <[u8; 32]>::try_from(id).ok().map(Hash)
            })
            .collect();
        // Resends of the last block's transactions, byte for byte: each is
        // on the chain already (applied or rejected), so the builder must
        // leave it out, and a block holding it would be invalid.
        if !state.last_txs.is_empty() && rng.gen_range(0..4u32) == 0 {
            let i = rng.gen_range(0..state.last_txs.len());
            txs.push(state.last_txs[i].clone());
        }
        let count = rng.gen_range(0..=self.max_txs);
        for j in 0..count as u64 {
            let tx = match rng.gen_range(0..100u32) {
                0..=34 => {
                    let id = TxFactory::household_id(height * IDS_PER_HEIGHT + j);
                    let p = Payload::RegisterHousehold(payload::RegisterHousehold {
                        id,
                        region: RegionCode::new(format!("{DEV_REGION}/dingxi/village-{}", j % 3))
                            .map_err(err)?,
                    });
                    known.push(id);
                    f.sign_as("poverty-office", Role::Registrar, &p)
                }
                35..=54 => {
                    if known.is_empty() {
                        f.deposit(PROGRAM, rng.gen_range(1..10_000))
                    } else {
                        let h = known[rng.gen_range(0..known.len())];
                        let by = ["poverty-office", "finance-bureau", "audit-office"]
                            [rng.gen_range(0..3)];
                        f.attest(by, Subject::Household(h), "income-verified", "below-line")
                    }
                }
                55..=79 => f.deposit(PROGRAM, rng.gen_range(1..10_000)),
                80..=91 => f.create_plan(
                    &format!("plan-{height}-{j}"),
                    PROGRAM,
                    None,
                    &[
                        (
                            "first",
                            rng.gen_range(1..5_000),
                            Condition::After(Timestamp(genesis_ms + TRANCHE_AFTER_MS)),
                        ),
                        (
                            "second",
                            rng.gen_range(1..5_000),
                            Condition::Released(slug("first")?),
                        ),
                    ],
                ),
                92..=95 => f.create_program(&format!("program-{height}-{j}"), 1_000_000),
                // Refused by the contracts (no such program): a rejection
                // receipt, and the signer's later transactions in the block
                // are skipped by the builder for their nonce.
                _ => f.deposit("no-such-program", 1),
            };
            txs.push(tx);
        }
        Ok(txs)
    }

    fn post_state(
        state: &ExecState,
        block: &Block,
        outcome: &aidledger_execution::BlockOutcome,
    ) -> ExecState {
        let mut mem = state.mem.clone();
        mem.apply(&outcome.writes);
        let mut included = (*state.included).clone();
        let mut included_twice = state.included_twice;
        for tx in &block.txs {
            let id = tx.id();
            if !included.insert(id) && included_twice.is_none() {
                included_twice = Some((block.header.height, id));
            }
        }
        ExecState {
            kit: state.kit.clone(),
            mem,
            acc: outcome.accumulator.clone(),
            parent: ParentInfo::child_of(block, outcome),
            last_txs: Arc::new(block.txs.clone()),
            included: Arc::new(included),
            included_twice,
        }
    }
}

impl App for ExecApp {
    type State = ExecState;

    fn genesis(&self, n: usize, seed: u64) -> Result<AppGenesis<ExecState>, String> {
        let (genesis, keys) = dev_genesis(n, seed);
        let (map, acc) = genesis_state(&genesis).map_err(err)?;
        let mem = MemState::new(map);
        let max_drift_ms = read_params(&mem).map_err(err)?.block_time_drift_ms;
        let parent = ParentInfo::genesis(&genesis).map_err(err)?;
        let mut ordered = Vec::with_capacity(keys.validators.len());
        for (i, (_, kp)) in keys.validators.iter().enumerate() {
            if genesis.validators.index_of(&kp.public()) != Some(i) {
                return Err(format!("validator key {i} is not in set order"));
            }
            ordered.push(kp.clone());
        }
        let kit = Arc::new(Kit {
            genesis,
            keys,
            max_drift_ms,
        });
        Ok(AppGenesis {
            chain_id: kit.genesis.chain_id.clone(),
            validators: kit.genesis.validators.clone(),
            keys: ordered,
            hash: parent.hash,
            time_ms: kit.genesis.genesis_time.ms(),
            state: ExecState {
                kit,
                mem,
                acc,
                parent,
                last_txs: Arc::new(Vec::new()),
                included: Arc::new(Default::default()),
                included_twice: None,
            },
        })
    }

    fn propose(
        &self,
        state: &ExecState,
        p: &Proposal,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Block, ExecState), String> {
        let txs = if p.empty {
            Vec::new()
        } else {
            self.workload(state, p.height, rng)?
        };
        let chain_id = &state.kit.genesis.chain_id;
        let verified = aidledger_crypto::verify_txs(txs, chain_id)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|(_, e)| err(e))?;
        let ctx = BlockContext {
            chain_id: chain_id.clone(),
            height: p.height,
            timestamp: Timestamp(p.now_ms.max(state.parent.timestamp.ms() + 1)),
            proposer: p.proposer,
        };
        let (block, outcome) = build_block(
            &state.parent,
            &ctx,
            p.view,
            &verified,
            &state.mem,
            &state.acc,
        )
        .map_err(err)?;
        let post = Self::post_state(state, &block, &outcome);
        Ok((block, post))
    }

    fn validate(
        &self,
        state: &ExecState,
        block: &Block,
        now_ms: Option<u64>,
    ) -> Result<ExecState, String> {
        let (_, outcome) = validate_block(
            block,
            &state.parent,
            now_ms,
            state.kit.max_drift_ms,
            &state.mem,
            &state.acc,
        )
        .map_err(err)?;
        Ok(Self::post_state(state, block, &outcome))
    }

    fn state_root(&self, state: &ExecState) -> Hash {
        state.acc.root()
    }

    fn check_invariants(&self, state: &ExecState, deep: bool) -> Result<(), String> {
        if let Some((height, id)) = state.included_twice {
            return Err(format!(
                "transaction {} included a second time at height {height}",
                id.short()
            ));
        }
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = state
                .mem
                .scan(keys::PROGRAM_PREFIX, after.as_deref(), 64)
                .map_err(err)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (k, v) in &page {
                let p: Program =
                    codec::decode(v).map_err(|e| format!("{}: {e}", String::from_utf8_lossy(k)))?;
                if !p.balances.conserved() {
                    return Err(format!(
                        "program {} breaks conservation: {:?}",
                        p.id, p.balances
                    ));
                }
            }
        }
        if deep && state.mem.accumulator().root() != state.acc.root() {
            return Err("incremental state root differs from the recomputed one".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aidledger_contracts::TxOutcome;
    use aidledger_execution::apply_block;
    use rand::SeedableRng;

    fn chain(app: &ExecApp, n: usize, blocks: u64) -> (AppGenesis<ExecState>, Vec<Block>) {
        let g = app.genesis(n, 5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut st = g.state.clone();
        let mut out = Vec::new();
        for h in 1..=blocks {
            let p = Proposal {
                height: h,
                view: 0,
                proposer: g.keys[(h as usize) % n].public(),
                now_ms: g.time_ms + h * 1_000,
                empty: false,
            };
            let (b, post) = app.propose(&st, &p, &mut rng).unwrap();
            // Every other replica accepts it, with its own clock.
            let v = app.validate(&st, &b, Some(p.now_ms - 500)).unwrap();
            assert_eq!(app.state_root(&v), b.header.state_root);
            assert_eq!(app.state_root(&post), b.header.state_root);
            app.check_invariants(&post, true).unwrap();
            st = post;
            out.push(b);
        }
        (g, out)
    }

    #[test]
    fn genesis_keys_are_the_validator_set_in_order() {
        let app = ExecApp::default();
        for n in [1, 4, 7] {
            let g = app.genesis(n, 3).unwrap();
            assert_eq!(g.keys.len(), n);
            for (i, k) in g.keys.iter().enumerate() {
                assert_eq!(g.validators.index_of(&k.public()), Some(i));
            }
            assert_eq!(g.hash, g.state.parent().hash);
        }
    }

    /// The workload mostly applies (a realistic mix, not a stream of
    /// rejections), pays entitlements and releases tranches once their
    /// time comes, and keeps every program's books balanced.
    #[test]
    fn workload_applies_and_conserves_funds() {
        let app = ExecApp::default();
        let (g, blocks) = chain(&app, 4, 60);
        let txs: usize = blocks.iter().map(|b| b.txs.len()).sum();
        assert!(txs >= 60, "only {txs} txs in 60 blocks");
        // Replay with apply_block to read the receipts.
        let mut st = g.state.clone();
        let (mut applied, mut rejected, mut events) = (0, 0, 0);
        for b in &blocks {
            let verified = aidledger_crypto::verify_txs(b.txs.clone(), &g.chain_id)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let ctx = BlockContext {
                chain_id: g.chain_id.clone(),
                height: b.height(),
                timestamp: b.header.timestamp,
                proposer: b.header.proposer,
            };
            let out = apply_block(&st.mem, &st.acc, &ctx, &verified).unwrap();
            for r in &out.receipts {
                match &r.outcome {
                    TxOutcome::Applied => applied += 1,
                    TxOutcome::Rejected { .. } => rejected += 1,
                }
            }
            events += out.events.len();
            st = app.validate(&st, b, None).unwrap();
        }
        assert!(
            applied >= 4 * rejected,
            "{applied} applied, {rejected} rejected"
        );
        assert!(events > 0, "no end-of-block payments or releases");
        let relief: Program = codec::decode(
            &st.mem
                .get(&keys::program(&slug(PROGRAM).unwrap()))
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert!(relief.balances.released.0 > 0, "{:?}", relief.balances);
    }

    #[test]
    fn validation_rejects_drift_tampering_and_wrong_parents() {
        let app = ExecApp::default();
        let (g, blocks) = chain(&app, 4, 3);
        let b1 = &blocks[0];
        // Too far ahead of the validator's clock.
        let early = b1.header.timestamp.ms() - g.state.kit.max_drift_ms - 1;
        assert!(app.validate(&g.state, b1, Some(early)).is_err());
        assert!(app.validate(&g.state, b1, None).is_ok());
        // Not a child of genesis.
        assert!(app.validate(&g.state, &blocks[1], None).is_err());
        // A wrong state root.
        let mut bad = b1.clone();
        bad.header.state_root = Hash::ZERO;
        assert!(app.validate(&g.state, &bad, None).is_err());
    }

    /// `Block::compute_tx_root` hashes whole signed transactions: two bodies
    /// with the same transaction ids but different signature bytes commit
    /// to different tx roots, hence different block hashes, and a swapped
    /// body does not fit the certified header.
    #[test]
    fn bodies_with_different_signatures_have_different_block_hashes() {
        let app = ExecApp::default();
        let (g, blocks) = chain(&app, 4, 1);
        let b = blocks[0].clone();
        assert!(!b.txs.is_empty());
        let mut swapped = b.clone();
        swapped.txs[0].signature.0[0] ^= 1;
        assert_eq!(swapped.txs[0].id(), b.txs[0].id());
        // The swapped body under the original header does not match it.
        assert!(b.body_matches_header());
        assert!(!swapped.body_matches_header());
        assert!(app.validate(&g.state, &swapped, None).is_err());
        // A header that commits to the swapped body has another hash.
        let tx_root = Block::compute_tx_root(&swapped.txs);
        assert_ne!(tx_root, b.header.tx_root);
        swapped.header.tx_root = tx_root;
        assert!(swapped.body_matches_header());
        assert_ne!(swapped.hash(), b.hash());
        // And it is still refused: the signature does not verify.
        assert!(app.validate(&g.state, &swapped, None).is_err());
    }

    /// The checker's invariant check finds books that do not balance and a
    /// state root that drifted from the state.
    #[test]
    fn invariant_check_catches_broken_books_and_root_drift() {
        let app = ExecApp::default();
        let g = app.genesis(4, 1).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let p = Proposal {
            height: 1,
            view: 0,
            proposer: g.keys[0].public(),
            now_ms: g.time_ms + 1_000,
            empty: false,
        };
        let (_, st) = app.propose(&g.state, &p, &mut rng).unwrap();
        app.check_invariants(&st, true).unwrap();
        let key = keys::program(&slug(PROGRAM).unwrap());
        let mut prog: Program = codec::decode(&st.mem.get(&key).unwrap().unwrap()).unwrap();
        prog.balances.available.0 += 1;
        let mut broken = st.clone();
        let writes = [(key, Some(codec::encode(&prog)))].into_iter().collect();
        broken.mem.apply(&writes);
        let e = app.check_invariants(&broken, false).unwrap_err();
        assert!(e.contains("conservation"), "{e}");
        // Undo the books but not the root: only the deep check sees it.
        prog.balances.deposited.0 += 1;
        let writes = [(
            keys::program(&slug(PROGRAM).unwrap()),
            Some(codec::encode(&prog)),
        )]
        .into_iter()
        .collect();
        broken.mem.apply(&writes);
        app.check_invariants(&broken, false).unwrap();
        assert!(app.check_invariants(&broken, true).is_err());
    }

    #[test]
    fn proposals_are_deterministic_and_any_replica_can_lead() {
        let app = ExecApp::default();
        let (_, a) = chain(&app, 4, 10);
        let (_, b) = chain(&app, 4, 10);
        let ha: Vec<Hash> = a.iter().map(Block::hash).collect();
        let hb: Vec<Hash> = b.iter().map(Block::hash).collect();
        assert_eq!(ha, hb);
    }
}
