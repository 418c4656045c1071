//! The replay: verify everything from genesis, in parallel where the
//! checks are independent, and execute every block in order.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use aidledger_contracts::{keys, Genesis};
use aidledger_crypto::{verify_certificate, verify_txs, CryptoError, VerifiedTx};
use aidledger_execution::{
    check_body, check_body_verified, check_header, empty_block_allowed, execute_verified_into,
    genesis_state, BlockInvalid, MemState, ParentInfo,
};
use aidledger_types::{ChainId, Hash, StateAccumulator, ValidatorSet};
use serde::Serialize;

use aidledger_storage::Store;

use crate::source::{block_records, ChainSource, Entry, IndexEntries, ReplayEnd};
use crate::Failure;

/// Most blocks read from the source at a time (a window).
const WINDOW_BLOCKS: usize = 256;
/// Most transactions read from the source at a time.
const WINDOW_TXS: usize = 50_000;
/// Most encoded block bytes held in one window (a chain file's blocks may
/// each be large; this bounds what is decoded before it is checked). Two
/// windows are held at once: the one executing, whose blocks may still be
/// checked, and the next, being checked.
const WINDOW_BYTES: usize = 128 * 1024 * 1024;

/// Most threads a replay runs: more cannot help a check of a few hundred
/// blocks at a time, and each is an OS thread. Larger requests are
/// clamped (the summary reports the count used); the CLI refuses them.
pub const REPLAY_THREADS_MAX: usize = 256;

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

/// Where a block's records are read ahead from: the index by id, or the
/// receipts by height ([`ChainSource::receipts_by_height`]).
#[derive(Clone, Copy)]
struct Reader<'a> {
    store: &'a dyn Store,
    by_height: bool,
}

fn pre_one(e: &Entry, chain: &ChainId, set: &ValidatorSet, index: Option<Reader<'_>>) -> Pre {
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
        (Ok(verified), Some(r)) if body.is_ok() => {
            let ids: Vec<Hash> = verified.iter().map(VerifiedTx::id).collect();
            Some(block_records(r.store, r.by_height, e.height, &ids))
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

/// One window of blocks in the verification queue: read, and checked
/// (against `spec`, the validator set when it was read) block by block by
/// whichever thread claims each block first.
struct Job {
    entries: Arc<Vec<Entry>>,
    spec: Arc<ValidatorSet>,
    /// Blocks claimed by some thread, from the first.
    claimed: usize,
    /// Each block's verdicts once its thread is done, until taken.
    pres: Vec<Option<Pre>>,
    /// What stopped the reading after these entries (the window's own);
    /// only the executing thread looks.
    pending: Option<Failure>,
    ended: bool,
}

struct Queue {
    /// In height order; the first is the window executing.
    jobs: VecDeque<Job>,
    /// The replay stopped: nothing more is claimed.
    closed: bool,
}

/// A claimed block: its window's entries and set, and where it is.
struct Claim {
    entries: Arc<Vec<Entry>>,
    spec: Arc<ValidatorSet>,
    index: usize,
}

/// The replay's parallel checks: Merkle roots, signatures and
/// certificates of each block, and its index entries read ahead. Worker
/// threads claim blocks in height order across the queued windows; the
/// executing thread takes each block's verdicts in order and, when the
/// next one is not ready, claims and checks a block itself instead of
/// waiting. So no thread waits while a block is left unchecked, and
/// nothing waits at a window's end for the slowest block of the next.
struct Checks<'a> {
    chain: &'a ChainId,
    index: Option<Reader<'a>>,
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl<'a> Checks<'a> {
    fn new(chain: &'a ChainId, index: Option<Reader<'a>>) -> Checks<'a> {
        Checks {
            chain,
            index,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a window read from the source.
    fn push(&self, w: Window, spec: ValidatorSet) {
        let job = Job {
            pres: (0..w.entries.len()).map(|_| None).collect(),
            entries: Arc::new(w.entries),
            spec: Arc::new(spec),
            claimed: 0,
            pending: w.pending,
            ended: w.ended,
        };
        self.lock().jobs.push_back(job);
        self.ready.notify_all();
    }

    /// Whether another window should be read: fewer than two are queued
    /// and the last one's reading stopped at neither a failure nor the end.
    fn wants_next(&self) -> bool {
        let q = self.lock();
        q.jobs.len() < 2
            && q.jobs
                .back()
                .is_some_and(|j| j.pending.is_none() && !j.ended)
    }

    /// The oldest block no thread has claimed.
    fn claim(q: &mut Queue) -> Option<Claim> {
        if q.closed {
            return None;
        }
        let job = q.jobs.iter_mut().find(|j| j.claimed < j.entries.len())?;
        let index = job.claimed;
        job.claimed += 1;
        Some(Claim {
            entries: job.entries.clone(),
            spec: job.spec.clone(),
            index,
        })
    }

    /// Checks a claimed block, outside the lock, and files its verdicts.
    /// Its window is still queued unless the replay stopped: a window
    /// leaves the queue only once every one of its blocks was taken.
    fn check(&self, c: Claim) {
        let pre = pre_one(&c.entries[c.index], self.chain, &c.spec, self.index);
        let mut q = self.lock();
        if let Some(job) = q
            .jobs
            .iter_mut()
            .find(|j| Arc::ptr_eq(&j.entries, &c.entries))
        {
            job.pres[c.index] = Some(pre);
        }
        drop(q);
        self.ready.notify_all();
    }

    /// A worker: checks blocks until the replay stops.
    fn work(&self) {
        // A worker that panics closes the queue as it unwinds, so the
        // executing thread stops waiting for the block it held (and the
        // panic reaches the caller when the scope joins it).
        let _closes = CloseOnDrop(self);
        loop {
            let claim = {
                let mut q = self.lock();
                loop {
                    if q.closed {
                        return;
                    }
                    if let Some(c) = Self::claim(&mut q) {
                        break c;
                    }
                    q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            self.check(claim);
        }
    }

    /// The executing window's entries and the set they were checked
    /// against.
    fn front(&self) -> Option<(Arc<Vec<Entry>>, Arc<ValidatorSet>)> {
        let q = self.lock();
        q.jobs.front().map(|j| (j.entries.clone(), j.spec.clone()))
    }

    /// The verdicts of block `index` of the executing window; while they
    /// are not ready, this thread checks blocks no one has claimed.
    fn take(&self, index: usize) -> Pre {
        let mut q = self.lock();
        loop {
            let ready = q
                .jobs
                .front_mut()
                .and_then(|j| j.pres.get_mut(index))
                .and_then(Option::take);
            if let Some(pre) = ready {
                return pre;
            }
            // Only a worker's panic closes the queue while this thread
            // still takes verdicts.
            assert!(!q.closed, "a thread checking the replay's blocks panicked");
            match Self::claim(&mut q) {
                Some(c) => {
                    drop(q);
                    self.check(c);
                    q = self.lock();
                }
                None => q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    /// The executing window is done: it leaves the queue, with what
    /// stopped its reading (a failure to report after it, the end).
    fn pop(&self) -> (Option<Failure>, bool) {
        self.lock()
            .jobs
            .pop_front()
            .map_or((None, true), |j| (j.pending, j.ended))
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Closes the queue when dropped, also while unwinding: a scope joins its
/// threads before it returns or rethrows a panic, and workers waiting for
/// blocks would otherwise wait forever.
struct CloseOnDrop<'c, 'a>(&'c Checks<'a>);

impl Drop for CloseOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The keys under `prefix`, counted in place (a scan would copy every
/// pair: a million households are a million copies).
fn count(state: &MemState, prefix: &[u8]) -> u64 {
    state
        .map()
        .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .count() as u64
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
    /// Checks a block's header, takes its parallel verdicts and executes
    /// it; `speculative` is the validator set its certificate was checked
    /// against.
    fn block(&mut self, e: &Entry, p: Pre, speculative: &ValidatorSet) -> Result<(), Failure> {
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
        // The state takes the block's writes as it executes; they are
        // taken back if the source's own records of the block differ, so
        // a failure always reports the state after the last good block.
        let (outcome, undo) = execute_verified_into(&e.block, &verified, self.state, self.acc)
            .map_err(|b| Failure::block(&b))?;
        let ids: Vec<Hash> = verified.iter().map(VerifiedTx::id).collect();
        if let Err(f) = self.source.check_block(&e.block, &ids, &outcome, p.index) {
            self.state.undo(&outcome.writes, undo);
            return Err(f);
        }
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
        Ok(())
    }
}

/// Replays `source` from genesis. Never panics on bad input: whatever is
/// wrong with the chain comes back as the outcome's `failure`.
///
/// A source that checks some of its records for the whole chain at once
/// (a store's transaction index, ADR 008) cannot say where such a check
/// failed; after any failure the replay runs again on the source's
/// block-by-block form ([`ChainSource::again_block_by_block`]), so the
/// outcome is always what a block-by-block check finds.
pub fn replay(
    source: &mut dyn ChainSource,
    opts: &ReplayOptions,
    progress: &dyn Progress,
) -> ReplayOutcome {
    let mut out = replay_once(source, opts, progress);
    if out.failure.is_some() {
        if let Some(mut again) = source.again_block_by_block() {
            // The progress starts over: this run goes as far as the first.
            out = replay_once(again.as_mut(), opts, progress);
        }
    }
    progress.finish();
    out
}

fn replay_once(
    source: &mut dyn ChainSource,
    opts: &ReplayOptions,
    progress: &dyn Progress,
) -> ReplayOutcome {
    let mut summary = ReplaySummary {
        source: source.describe(),
        threads: opts.threads.clamp(1, REPLAY_THREADS_MAX),
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
    source.begin(threads);
    // The store to read each block's index entries (or receipts) from,
    // ahead, on the checking threads.
    let reader = source.index_reader();
    let by_height = source.receipts_by_height();
    let checks = Checks::new(
        &chain,
        reader.as_deref().map(|store| Reader { store, by_height }),
    );
    // Windows are read in order on this thread (the source is also needed
    // by `check_block`) and queued for checking, at most two at a time:
    // the one executing and the next. Each is checked against the
    // validator set in force when it was read, the best guess for its
    // blocks; a certificate after a change of the set is checked again,
    // sequentially, in `Run::block`.
    let failure = std::thread::scope(|s| {
        // `threads - 1` workers beside this thread, which checks blocks
        // itself whenever the next one to execute is not ready: one
        // thread per core, none left idle while a block is unchecked.
        for _ in 1..threads {
            s.spawn(|| checks.work());
        }
        let _closes = CloseOnDrop(&checks);
        checks.push(read_window(source), parent.validator_set.clone());
        loop {
            if checks.wants_next() {
                checks.push(read_window(source), parent.validator_set.clone());
            }
            let Some((entries, spec)) = checks.front() else {
                break None;
            };
            let mut run = Run {
                chain: &chain,
                source: &mut *source,
                progress,
                state: &mut state,
                acc: &mut acc,
                parent: &mut parent,
                summary: &mut summary,
            };
            let done = entries
                .iter()
                .enumerate()
                .try_for_each(|(i, e)| run.block(e, checks.take(i), &spec));
            let (pending, ended) = checks.pop();
            if let Err(f) = done {
                break Some(f);
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
                    threads,
                };
                break source.check_end(&end).err();
            }
        }
    });
    fill_counts(&mut summary, &state);
    ReplayOutcome {
        summary,
        failure,
        state: Some(state),
        genesis: Some(genesis),
    }
}
