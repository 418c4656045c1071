//! The replay: verify everything from genesis, in parallel where the
//! checks are independent, and execute every block in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use aidledger_contracts::{keys, Genesis};
use aidledger_crypto::{verify_certificate, verify_txs, CryptoError, VerifiedTx};
use aidledger_execution::{
    check_body, check_header, execute_verified, genesis_state, BlockInvalid, MemState, ParentInfo,
};
use aidledger_types::{ChainId, Hash, StateAccumulator, ValidatorSet};
use serde::Serialize;

use crate::source::{ChainSource, Entry, ReplayEnd};
use crate::state::for_each;
use crate::Failure;

/// Most blocks verified together before executing them.
const WINDOW_BLOCKS: usize = 256;
/// Most transactions verified together before executing them.
const WINDOW_TXS: usize = 50_000;
/// Most encoded block bytes held in one window (a chain file's blocks may
/// each be large; this bounds what is decoded before it is checked).
const WINDOW_BYTES: usize = 256 * 1024 * 1024;

/// Told about progress; implemented by the CLI's progress bar.
pub trait Progress: Sync {
    /// `blocks` is what the source says it holds, if it knows.
    fn start(&self, _blocks: Option<u64>) {}
    fn block_done(&self, _height: u64, _txs: usize) {}
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}
pub static NO_PROGRESS: NoProgress = NoProgress;

#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Threads for signature, certificate and Merkle checks (at least 1).
    pub threads: usize,
    /// When given, the genesis must have this hash (the one the auditor's
    /// institution signed off), not only the one the source records.
    pub expected_genesis: Option<Hash>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            expected_genesis: None,
        }
    }
}

/// What a replay covered. Counts of entities are taken from the replayed
/// state after the last verified block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    pub source: String,
    pub chain_id: String,
    pub genesis_hash: Option<Hash>,
    /// Blocks that verified completely.
    pub blocks: u64,
    pub txs: u64,
    pub txs_applied: u64,
    pub txs_rejected: u64,
    pub validator_set_changes: u64,
    pub organisations: u64,
    pub accounts: u64,
    pub programs: u64,
    pub applications: u64,
    pub households: u64,
    pub releases: u64,
    pub anomalies: u64,
    /// The last verified block's hash and the state root after it.
    pub head_hash: Option<Hash>,
    pub state_root: Option<Hash>,
    pub first_block_time_ms: Option<u64>,
    pub last_block_time_ms: Option<u64>,
    pub threads: usize,
}

/// The verdict and what was replayed up to it.
pub struct ReplayOutcome {
    pub summary: ReplaySummary,
    /// The first failure; `None` when everything verified.
    pub failure: Option<Failure>,
    /// The replayed state after the last verified block, when the genesis
    /// could be read.
    pub state: Option<MemState>,
    pub genesis: Option<Genesis>,
}

impl ReplayOutcome {
    pub fn verified(&self) -> bool {
        self.failure.is_none()
    }
}

/// What the parallel phase found about one block.
struct Pre {
    body: Result<(), BlockInvalid>,
    cert: Result<(), CryptoError>,
    txs: Result<Vec<VerifiedTx>, BlockInvalid>,
}

fn pre_one(e: &Entry, chain: &ChainId, set: &ValidatorSet) -> Pre {
    let block = &e.block;
    let body = check_body(block);
    let cert = verify_certificate(&e.certificate, chain, set, e.height, &block.hash());
    let txs = if body.is_ok() {
        let mut out = Vec::with_capacity(block.txs.len());
        let mut failed = None;
        for (index, r) in verify_txs(block.txs.clone(), chain).into_iter().enumerate() {
            match r {
                Ok(v) => out.push(v),
                Err((tx, err)) => {
                    failed = Some(BlockInvalid::TxSignature {
                        height: e.height,
                        index,
                        id: tx.id(),
                        reason: err.to_string(),
                    });
                    break;
                }
            }
        }
        match failed {
            Some(f) => Err(f),
            None => Ok(out),
        }
    } else {
        Ok(Vec::new())
    };
    Pre { body, cert, txs }
}

/// Verifies Merkle roots, signatures and certificates (against `set`) of
/// `entries` on `threads` threads. Threads take blocks one at a time from
/// a shared counter, so a few large blocks do not leave threads idle.
fn precheck(entries: &[Entry], chain: &ChainId, set: &ValidatorSet, threads: usize) -> Vec<Pre> {
    let threads = threads.clamp(1, entries.len().max(1));
    if threads == 1 {
        return entries.iter().map(|e| pre_one(e, chain, set)).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Pre)>> = Mutex::new(Vec::with_capacity(entries.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(e) = entries.get(i) else { break };
                    local.push((i, pre_one(e, chain, set)));
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(local);
            });
        }
    });
    let mut all = results.into_inner().unwrap_or_else(|p| p.into_inner());
    all.sort_by_key(|(i, _)| *i);
    assert_eq!(all.len(), entries.len(), "every block was prechecked");
    all.into_iter().map(|(_, p)| p).collect()
}

fn count(state: &MemState, prefix: &[u8]) -> u64 {
    let mut n = 0u64;
    // MemState reads cannot fail.
    let _ = for_each(state, prefix, |_, _| {
        n += 1;
        true
    });
    n
}

fn fill_counts(s: &mut ReplaySummary, state: &MemState) {
    s.organisations = count(state, keys::ORG_PREFIX);
    s.accounts = count(state, keys::ACCOUNT_PREFIX);
    s.programs = count(state, keys::PROGRAM_PREFIX);
    s.applications = count(state, keys::APPLICATION_PREFIX);
    s.households = count(state, keys::HOUSEHOLD_PREFIX);
    s.releases = count(state, keys::RELEASE_PREFIX);
    s.anomalies = count(state, keys::ANOMALY_PREFIX);
}

/// Replays `source` from genesis. Never panics on bad input: whatever is
/// wrong with the chain comes back as the outcome's `failure`.
pub fn replay(
    source: &mut dyn ChainSource,
    opts: &ReplayOptions,
    progress: &dyn Progress,
) -> ReplayOutcome {
    let mut summary = ReplaySummary {
        source: source.describe(),
        threads: opts.threads.max(1),
        ..ReplaySummary::default()
    };
    let fail = |summary: ReplaySummary, f: Failure, state, genesis| ReplayOutcome {
        summary,
        failure: Some(f),
        state,
        genesis,
    };
    let genesis = match source.genesis() {
        Ok(g) => g,
        Err(f) => return fail(summary, f, None, None),
    };
    summary.chain_id = genesis.chain_id.to_string();
    summary.genesis_hash = Some(genesis.hash());
    if let Some(expected) = opts.expected_genesis {
        if genesis.hash() != expected {
            let f = Failure::at(
                0,
                "genesis",
                format!(
                    "hash {} is not the expected {}",
                    genesis.hash().short(),
                    expected.short()
                ),
            );
            return fail(summary, f, None, Some(genesis));
        }
    }
    let (map, acc) = match genesis_state(&genesis) {
        Ok(x) => x,
        Err(e) => {
            let f = Failure::at(0, "genesis", format!("state cannot be built: {e}"));
            return fail(summary, f, None, Some(genesis));
        }
    };
    let mut state = MemState::new(map);
    let mut acc: StateAccumulator = acc;
    let mut parent = match ParentInfo::genesis(&genesis) {
        Ok(p) => p,
        Err(e) => {
            let f = Failure::at(0, "genesis", format!("is not usable: {e}"));
            return fail(summary, f, Some(state), Some(genesis));
        }
    };
    summary.state_root = Some(acc.root());
    progress.start(source.expected_blocks());

    let failure = 'chain: loop {
        let mut window: Vec<Entry> = Vec::new();
        let mut window_txs = 0usize;
        let mut window_bytes = 0usize;
        let mut pending: Option<Failure> = None;
        let mut ended = false;
        while window.len() < WINDOW_BLOCKS && window_txs < WINDOW_TXS && window_bytes < WINDOW_BYTES
        {
            match source.next_entry() {
                None => {
                    ended = true;
                    break;
                }
                Some(Ok(e)) => {
                    window_txs += e.block.txs.len();
                    window_bytes += aidledger_types::codec::encoded_len(&e.block);
                    window.push(e);
                }
                Some(Err(f)) => {
                    pending = Some(f);
                    break;
                }
            }
        }
        // Certificates are checked against the set in force at the start
        // of the window; if governance changes it inside the window, the
        // later certificates are checked again, sequentially, below.
        let speculative = parent.validator_set.clone();
        let pre = precheck(&window, &genesis.chain_id, &speculative, summary.threads);
        for (e, p) in window.into_iter().zip(pre) {
            let h = e.height;
            if let Err(b) = check_header(&e.block, &parent, None, 0) {
                break 'chain Some(Failure::block(&b));
            }
            let cert = if parent.validator_set == speculative {
                p.cert
            } else {
                verify_certificate(
                    &e.certificate,
                    &genesis.chain_id,
                    &parent.validator_set,
                    h,
                    &e.block.hash(),
                )
            };
            if let Err(c) = cert {
                break 'chain Some(Failure::certificate(h, &c));
            }
            if let Err(b) = p.body {
                break 'chain Some(Failure::block(&b));
            }
            let verified = match p.txs {
                Ok(v) => v,
                Err(b) => break 'chain Some(Failure::block(&b)),
            };
            let outcome = match execute_verified(&e.block, &verified, &state, &acc) {
                Ok(o) => o,
                Err(b) => break 'chain Some(Failure::block(&b)),
            };
            if let Err(f) = source.check_block(&e.block, &outcome) {
                break 'chain Some(f);
            }
            state.apply(&outcome.writes);
            acc = outcome.accumulator.clone();
            if outcome.validator_set != parent.validator_set {
                summary.validator_set_changes += 1;
            }
            let applied = outcome.receipts.iter().filter(|r| r.is_applied()).count() as u64;
            summary.blocks += 1;
            summary.txs += e.block.txs.len() as u64;
            summary.txs_applied += applied;
            summary.txs_rejected += e.block.txs.len() as u64 - applied;
            summary
                .first_block_time_ms
                .get_or_insert(e.block.header.timestamp.ms());
            summary.last_block_time_ms = Some(e.block.header.timestamp.ms());
            summary.head_hash = Some(e.block.hash());
            summary.state_root = Some(outcome.state_root);
            parent = ParentInfo::child_of(&e.block, &outcome);
            progress.block_done(h, e.block.txs.len());
        }
        if let Some(f) = pending {
            break Some(f);
        }
        if ended {
            let end = ReplayEnd {
                height: parent.height,
                block_hash: parent.hash,
                state: &state,
                accumulator: &acc,
            };
            break source.check_end(&end).err();
        }
    };
    progress.finish();
    fill_counts(&mut summary, &state);
    ReplayOutcome {
        summary,
        failure,
        state: Some(state),
        genesis: Some(genesis),
    }
}
