//! The replay: verify everything from genesis, in parallel where the
//! checks are independent, and execute every block in order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use aidledger_contracts::{keys, Genesis};
use aidledger_crypto::{verify_certificate, verify_txs, CryptoError, VerifiedTx};
use aidledger_execution::{
    check_body, check_body_verified, check_header, empty_block_allowed, execute_verified,
    genesis_state, BlockInvalid, MemState, ParentInfo,
};
use aidledger_types::{ChainId, Hash, StateAccumulator, ValidatorSet};
use serde::Serialize;

use aidledger_storage::Store;

use crate::source::{ChainSource, Entry, IndexEntries, ReplayEnd};
use crate::state::for_each;
use crate::Failure;

/// Most blocks verified together before executing them.
const WINDOW_BLOCKS: usize = 256;
/// Most transactions verified together before executing them.
const WINDOW_TXS: usize = 50_000;
/// Most encoded block bytes held in one window (a chain file's blocks may
/// each be large; this bounds what is decoded before it is checked). Two
/// windows are held at once, one executing and one being verified.
const WINDOW_BYTES: usize = 128 * 1024 * 1024;

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
    /// The block's index entries, read ahead from the source's store.
    index: Option<IndexEntries>,
}

fn pre_one(e: &Entry, chain: &ChainId, set: &ValidatorSet, index: Option<&dyn Store>) -> Pre {
    let block = &e.block;
    let cert = verify_certificate(&e.certificate, chain, set, e.height, &block.hash());
    // Signatures first, so the body check takes the ids their check hashed
    // (each id encodes and hashes a whole transaction). The verdicts are
    // reported as before: a body that is not the header's is the block's
    // failure even where a signature also fails.
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
    let body = match failed {
        None => check_body_verified(block, &out),
        Some(_) => check_body(block),
    };
    let txs = match (&body, failed) {
        (Err(_), _) => Ok(Vec::new()),
        (Ok(()), Some(f)) => Err(f),
        (Ok(()), None) => Ok(out),
    };
    let index = match (&txs, index) {
        (Ok(verified), Some(store)) if body.is_ok() => {
            let ids: Vec<Hash> = verified.iter().map(VerifiedTx::id).collect();
            Some(store.tx_locations(&ids))
        }
        _ => None,
    };
    Pre {
        body,
        cert,
        txs,
        index,
    }
}

/// The parallel checks of one window: Merkle roots, signatures and
/// certificates (against `set`) of `entries`. Any number of threads call
/// [`Precheck::work`]; each takes blocks one at a time from a shared
/// counter, so a few large blocks do not leave threads idle, and a thread
/// that arrives late (the one that executed the previous window) takes
/// what is left.
struct Precheck<'a> {
    entries: &'a [Entry],
    chain: &'a ChainId,
    set: &'a ValidatorSet,
    index: Option<&'a dyn Store>,
    next: AtomicUsize,
    results: Mutex<Vec<(usize, Pre)>>,
}

impl<'a> Precheck<'a> {
    fn new(
        entries: &'a [Entry],
        chain: &'a ChainId,
        set: &'a ValidatorSet,
        index: Option<&'a dyn Store>,
    ) -> Precheck<'a> {
        Precheck {
            entries,
            chain,
            set,
            index,
            next: AtomicUsize::new(0),
            results: Mutex::new(Vec::with_capacity(entries.len())),
        }
    }

    /// Checks blocks until none is left.
    fn work(&self) {
        let mut local = Vec::new();
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(e) = self.entries.get(i) else { break };
            local.push((i, pre_one(e, self.chain, self.set, self.index)));
        }
        self.results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(local);
    }

    /// Leaves the blocks no thread has taken unchecked.
    fn stop(&self) {
        self.next.store(self.entries.len(), Ordering::Relaxed);
    }

    /// The verdicts in block order, once every caller of `work` returned.
    fn finish(self) -> Vec<Pre> {
        let mut all = self.results.into_inner().unwrap_or_else(|p| p.into_inner());
        all.sort_by_key(|(i, _)| *i);
        assert_eq!(all.len(), self.entries.len(), "every block was prechecked");
        all.into_iter().map(|(_, p)| p).collect()
    }
}

/// [`Precheck`] of `entries` on `threads` threads, this one among them.
fn precheck(
    entries: &[Entry],
    chain: &ChainId,
    set: &ValidatorSet,
    threads: usize,
    index: Option<&dyn Store>,
) -> Vec<Pre> {
    let job = Precheck::new(entries, chain, set, index);
    let helpers = threads.clamp(1, entries.len().max(1)) - 1;
    std::thread::scope(|s| {
        for _ in 0..helpers {
            s.spawn(|| job.work());
        }
        job.work();
    });
    job.finish()
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

/// One window of entries read from the source, with what stopped the
/// reading: a failure to report after the entries, or the end.
struct Window {
    entries: Vec<Entry>,
    pending: Option<Failure>,
    ended: bool,
}

fn read_window(source: &mut dyn ChainSource) -> Window {
    let mut w = Window {
        entries: Vec::new(),
        pending: None,
        ended: false,
    };
    let (mut txs, mut bytes) = (0usize, 0usize);
    while w.entries.len() < WINDOW_BLOCKS && txs < WINDOW_TXS && bytes < WINDOW_BYTES {
        match source.next_entry() {
            None => {
                w.ended = true;
                break;
            }
            Some(Ok(e)) => {
                txs += e.block.txs.len();
                bytes += aidledger_types::codec::encoded_len(&e.block);
                w.entries.push(e);
            }
            Some(Err(f)) => {
                w.pending = Some(f);
                break;
            }
        }
    }
    w
}

/// The sequential half of the replay: what executing a window changes.
struct Run<'a> {
    chain: &'a ChainId,
    source: &'a mut dyn ChainSource,
    progress: &'a dyn Progress,
    state: &'a mut MemState,
    acc: &'a mut StateAccumulator,
    parent: &'a mut ParentInfo,
    summary: &'a mut ReplaySummary,
}

impl Run<'_> {
    /// Checks headers, takes the parallel verdicts and executes `entries`
    /// in order; `speculative` is the validator set their certificates
    /// were checked against.
    fn window(
        &mut self,
        entries: Vec<Entry>,
        pre: Vec<Pre>,
        speculative: &ValidatorSet,
    ) -> Result<(), Failure> {
        for (e, p) in entries.into_iter().zip(pre) {
            let h = e.height;
            check_header(&e.block, self.parent, None, 0).map_err(|b| Failure::block(&b))?;
            let cert = if &self.parent.validator_set == speculative {
                p.cert
            } else {
                verify_certificate(
                    &e.certificate,
                    self.chain,
                    &self.parent.validator_set,
                    h,
                    &e.block.hash(),
                )
            };
            cert.map_err(|c| Failure::certificate(h, &c))?;
            p.body.map_err(|b| Failure::block(&b))?;
            let verified = p.txs.map_err(|b| Failure::block(&b))?;
            // The quiet chain's rule (ADR 017): honest validators vote for
            // no early empty block, so a certified one means more than f
            // of them did.
            empty_block_allowed(&e.block.header, self.state).map_err(|b| Failure::block(&b))?;
            let outcome = execute_verified(&e.block, &verified, self.state, self.acc)
                .map_err(|b| Failure::block(&b))?;
            let ids: Vec<Hash> = verified.iter().map(VerifiedTx::id).collect();
            self.source.check_block(&e.block, &ids, &outcome, p.index)?;
            self.state.apply(&outcome.writes);
            *self.acc = outcome.accumulator.clone();
            let s = &mut *self.summary;
            if outcome.validator_set != self.parent.validator_set {
                s.validator_set_changes += 1;
            }
            let applied = outcome.receipts.iter().filter(|r| r.is_applied()).count() as u64;
            s.blocks += 1;
            s.txs += e.block.txs.len() as u64;
            s.txs_applied += applied;
            s.txs_rejected += e.block.txs.len() as u64 - applied;
            s.first_block_time_ms
                .get_or_insert(e.block.header.timestamp.ms());
            s.last_block_time_ms = Some(e.block.header.timestamp.ms());
            *self.parent = self.parent.child(&e.block, &outcome, None);
            s.head_hash = Some(self.parent.hash);
            s.state_root = Some(outcome.state_root);
            self.progress.block_done(h, e.block.txs.len());
        }
        Ok(())
    }
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

    let chain = genesis.chain_id.clone();
    let threads = summary.threads;
    // The window being executed, checked against the validator set in
    // force at its start. The next window is read first (the source is
    // also needed by `check_block`), then verified by `threads - 1` other
    // threads while this one executes, so signature checks overlap
    // execution instead of alternating with it; this thread joins them
    // when its window is done.
    let mut cur = read_window(source);
    let mut cur_spec = parent.validator_set.clone();
    // The store to read each block's index entries from, ahead, on the
    // verifier threads.
    let reader = source.index_reader();
    let index = reader.as_deref();
    let mut cur_pre = precheck(&cur.entries, &chain, &cur_spec, threads, index);
    let failure = loop {
        let next = (cur.pending.is_none() && !cur.ended).then(|| read_window(source));
        // The set at the start of this window is the best guess for the
        // next one; if governance changes it here, the next window's
        // later certificates are checked again, sequentially, below.
        let next_spec = parent.validator_set.clone();
        let entries = std::mem::take(&mut cur.entries);
        let pre = std::mem::take(&mut cur_pre);
        let job = next
            .as_ref()
            .map(|n| Precheck::new(&n.entries, &chain, &next_spec, index));
        let done = std::thread::scope(|s| {
            // While this window executes, `threads - 1` threads verify the
            // next one: with `threads` cores, one more would only take
            // turns with the executing thread, which alone cannot be
            // parallel. Once it is done, the executing thread checks what
            // the others have not reached.
            if let Some(job) = &job {
                for _ in 1..threads {
                    s.spawn(|| job.work());
                }
            }
            let mut run = Run {
                chain: &chain,
                source: &mut *source,
                progress,
                state: &mut state,
                acc: &mut acc,
                parent: &mut parent,
                summary: &mut summary,
            };
            let done = run.window(entries, pre, &cur_spec);
            if let Some(job) = &job {
                match &done {
                    Ok(()) => job.work(),
                    // The replay stops here: the others finish the block
                    // they hold and take no other.
                    Err(_) => job.stop(),
                }
            }
            done
        });
        let next_pre = match (&done, job) {
            (Ok(()), Some(job)) => job.finish(),
            _ => Vec::new(),
        };
        if let Err(f) = done {
            break Some(f);
        }
        if let Some(f) = cur.pending.take() {
            break Some(f);
        }
        if cur.ended {
            let end = ReplayEnd {
                height: parent.height,
                block_hash: parent.hash,
                state: &state,
                accumulator: &acc,
            };
            break source.check_end(&end).err();
        }
        match next {
            Some(n) => {
                cur = n;
                cur_spec = next_spec;
                cur_pre = next_pre;
            }
            // Unreachable: without a pending failure or the end, a next
            // window was read.
            None => break None,
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
