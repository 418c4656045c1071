//! Executing a block's transactions and end-of-block step.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use aidledger_contracts::{
    self as contracts, ContractError, Genesis, Overlay, Receipt, StoreRead, TxOutcome,
};
use aidledger_crypto::VerifiedTx;
use aidledger_types::{codec, ChainId, Hash, PublicKey, StateAccumulator, Timestamp, ValidatorSet};

use crate::mem::{MemState, Undo};
use crate::ExecError;

/// A block's writes: `None` deletes the key.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A full state: every key and its value.
pub type StateMap = BTreeMap<Vec<u8>, Vec<u8>>;

/// Read access to committed state. Implemented by the storage crate's
/// stores and by [`crate::MemState`].
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError>;
    /// Up to `limit` pairs under `prefix` in key order, strictly after
    /// `start_after` when given.
    #[allow(clippy::type_complexity)]
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError>;
    /// Whether a block's executor should remember this state's answers
    /// for the rest of the block ([`Base`]): yes for a store on disk,
    /// where a read goes through memtables and files; no for a map in
    /// memory, where remembering costs more than reading again (the
    /// auditor's replay ran 7 % slower with it).
    fn remember_reads(&self) -> bool {
        true
    }
}

/// Adapts committed state to the contracts' read interface. A backend
/// failure becomes `ContractError::Storage`, which the contracts treat as
/// fatal, and which is turned back into `ExecError::Storage` here.
///
/// It remembers what it has read, so a key read again while one block
/// executes is answered from memory rather than from the store: the chain
/// id, the signer's account and organisation, a program's balance are
/// read by nearly every transaction of a block, and the cross-check
/// configuration is scanned by every attestation. Committed state does not
/// move while a block executes on it (the block's own writes are in the
/// overlays above), so a remembered answer is the store's answer. Errors
/// are not remembered, and the memory is bounded ([`MEMO_KEYS_MAX`],
/// [`MEMO_BYTES_MAX`]): past either bound reads go to the store again.
pub(crate) struct Base<'a> {
    state: &'a dyn StateRead,
    /// False when the state says reading again is cheaper.
    remember: bool,
    memo: RefCell<Memo>,
}

/// Keys and scans a [`Base`] remembers at most.
pub(crate) const MEMO_KEYS_MAX: usize = 1 << 16;
/// Bytes of keys and values a [`Base`] remembers at most.
pub(crate) const MEMO_BYTES_MAX: usize = 32 * 1024 * 1024;

/// A scan's arguments: prefix, start, limit.
type ScanArgs = (Vec<u8>, Option<Vec<u8>>, usize);

/// Looked up by key only, never iterated: no order of a hash map can
/// reach state, receipts or messages.
#[derive(Default)]
struct Memo {
    reads: HashMap<Vec<u8>, Option<Vec<u8>>>,
    scans: HashMap<ScanArgs, contracts::store::Entries>,
    bytes: usize,
    hits: u64,
}

impl<'a> Base<'a> {
    pub(crate) fn new(state: &'a dyn StateRead) -> Self {
        Base {
            state,
            remember: state.remember_reads(),
            memo: RefCell::new(Memo::default()),
        }
    }

    /// A committed value, from memory when it was read before.
    pub(crate) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
        if !self.remember {
            return self.state.get(key);
        }
        if let Some(v) = self.memo.borrow_mut().hit_read(key) {
            return Ok(v);
        }
        let v = self.state.get(key)?;
        let size = key.len() + v.as_ref().map_or(0, Vec::len);
        let mut memo = self.memo.borrow_mut();
        if memo.make_room(size) {
            memo.reads.insert(key.to_vec(), v.clone());
        }
        Ok(v)
    }

    /// A committed scan, from memory when the same scan ran before.
    pub(crate) fn scan_committed(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<contracts::store::Entries, ExecError> {
        if !self.remember {
            return self.state.scan(prefix, start_after, limit);
        }
        let args: ScanArgs = (prefix.to_vec(), start_after.map(<[u8]>::to_vec), limit);
        if let Some(found) = self.memo.borrow_mut().hit_scan(&args) {
            return Ok(found);
        }
        let found = self.state.scan(prefix, start_after, limit)?;
        let size = args.0.len()
            + args.1.as_ref().map_or(0, Vec::len)
            + found.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let mut memo = self.memo.borrow_mut();
        if memo.make_room(size) {
            memo.scans.insert(args, found.clone());
        }
        Ok(found)
    }

    /// Reads answered from memory so far.
    #[cfg(test)]
    pub(crate) fn hits(&self) -> u64 {
        self.memo.borrow().hits
    }
}

impl Memo {
    /// Counts `size` more bytes, as one more entry, if both bounds allow.
    fn make_room(&mut self, size: usize) -> bool {
        let fits = self.reads.len() + self.scans.len() < MEMO_KEYS_MAX
            && self.bytes.saturating_add(size) <= MEMO_BYTES_MAX;
        if fits {
            self.bytes += size;
        }
        fits
    }

    fn hit_read(&mut self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let v = self.reads.get(key)?.clone();
        self.hits += 1;
        Some(v)
    }

    fn hit_scan(&mut self, args: &ScanArgs) -> Option<contracts::store::Entries> {
        let v = self.scans.get(args)?.clone();
        self.hits += 1;
        Some(v)
    }
}

impl StoreRead for Base<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ContractError> {
        self.read(key).map_err(|e| ContractError::Storage {
            reason: e.to_string(),
        })
    }
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<contracts::store::Entries, ContractError> {
        self.scan_committed(prefix, start_after, limit)
            .map_err(|e| ContractError::Storage {
                reason: e.to_string(),
            })
    }
}

/// What a block is executed at. Contracts read time only from here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContext {
    pub chain_id: ChainId,
    pub height: u64,
    pub timestamp: Timestamp,
    pub proposer: PublicKey,
}

/// Everything executing a block produced.
#[derive(Clone, Debug)]
pub struct BlockOutcome {
    /// Every key written; `None` deletes. Apply these to get the new state.
    pub writes: Writes,
    /// One per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// Events outside transactions: an upgrade taking effect at the start
    /// of the block, then the end-of-block step's (releases, payments,
    /// anomalies).
    pub events: Vec<aidledger_contracts::Event>,
    pub accumulator: StateAccumulator,
    pub state_root: Hash,
    /// The validator set in force for the next height.
    pub validator_set: ValidatorSet,
}

impl BlockOutcome {
    /// The header's `event_root` and `event_count` for this outcome
    /// (ADR 020).
    pub fn event_root(&self) -> (Hash, u32) {
        aidledger_contracts::events::event_root(&self.receipts, &self.events)
    }
}

fn fatal(height: u64, e: ContractError) -> ExecError {
    match e {
        ContractError::Storage { reason } => ExecError::Storage { reason },
        other => ExecError::Contract {
            height,
            source: other,
        },
    }
}

/// A block being executed, one transaction at a time.
pub(crate) struct BlockExec<'a> {
    /// Committed state, remembered reads included.
    base: &'a Base<'a>,
    overlay: Overlay<'a>,
    ctx: BlockContext,
    receipts: Vec<Receipt>,
    seen: BTreeSet<Hash>,
    /// The module versions this block runs (ADR 017, contract upgrades).
    modules: contracts::Modules,
    /// Events of the block's first step (an upgrade taking effect).
    begin_events: Vec<aidledger_contracts::Event>,
}

impl<'a> BlockExec<'a> {
    pub(crate) fn new(base: &'a Base<'a>, ctx: &BlockContext) -> Result<Self, ExecError> {
        let chain = contracts::chain_id(base).map_err(|e| fatal(ctx.height, e))?;
        if chain != ctx.chain_id {
            return Err(ExecError::WrongChain {
                expected: chain.to_string(),
                got: ctx.chain_id.to_string(),
            });
        }
        let mut overlay = Overlay::new(base);
        let (modules, begin_events) =
            contracts::begin_block(&mut overlay, ctx.height, ctx.timestamp)
                .map_err(|e| fatal(ctx.height, e))?;
        Ok(BlockExec {
            base,
            overlay,
            ctx: ctx.clone(),
            receipts: Vec::new(),
            seen: BTreeSet::new(),
            modules,
            begin_events,
        })
    }

    pub(crate) fn seen(&self, id: &Hash) -> bool {
        self.seen.contains(id)
    }

    /// Includes one transaction: checks the inclusion rule (ADR 010) and
    /// consumes the signer's nonce, then executes it on its own overlay and
    /// keeps its writes only if the contracts accept it. A rejected
    /// transaction keeps nothing but its receipt and the consumed nonce.
    /// A transaction that may not be included at all is
    /// [`ExecError::NotIncludable`], and nothing is written.
    pub(crate) fn apply(&mut self, tx: &VerifiedTx) -> Result<(), ExecError> {
        let body = &tx.tx().body;
        let id = tx.id();
        let height = self.ctx.height;
        let index = self.receipts.len() as u32;
        let excluded = |reason| ExecError::NotIncludable {
            height,
            index,
            id,
            reason,
        };
        if self.seen.contains(&id) {
            return Err(excluded(ContractError::DuplicateTx { id }));
        }
        // The block's chain id is the state's (checked in `new`).
        let account = match contracts::consume_nonce(&mut self.overlay, &self.ctx.chain_id, body) {
            Ok(a) => a,
            Err(e) if e.is_fatal() => return Err(fatal(height, e)),
            Err(e) => return Err(excluded(e)),
        };
        self.seen.insert(id);
        let mut tx_overlay = Overlay::new(&self.overlay);
        let result = contracts::execute_tx(
            &self.modules,
            &mut tx_overlay,
            height,
            self.ctx.timestamp,
            body,
            id,
            account,
        )
        .map(|events| (events, tx_overlay.into_writes()));
        let (outcome, events) = match result {
            Ok((events, writes)) => {
                self.overlay.absorb(writes);
                (TxOutcome::Applied, events)
            }
            Err(e) if e.is_fatal() => return Err(fatal(height, e)),
            Err(e) => (
                TxOutcome::Rejected {
                    code: e.code().to_string(),
                    reason: e.to_string(),
                },
                Vec::new(),
            ),
        };
        self.receipts.push(Receipt {
            index,
            tx_id: id,
            kind: body.kind,
            signer: body.signer,
            height,
            outcome,
            events,
        });
        Ok(())
    }

    /// Runs the end-of-block step and computes the new state root.
    pub(crate) fn finish(self, acc: &StateAccumulator) -> Result<BlockOutcome, ExecError> {
        let base = self.base;
        let done = self.finish_writes()?;
        let mut accumulator = acc.clone();
        for (k, new) in &done.writes {
            // Most written keys were read first, so this is from memory.
            let old = base.read(k)?;
            accumulator.apply(k, old.as_deref(), new.as_deref());
        }
        Ok(done.into_outcome(accumulator))
    }

    /// Runs the end-of-block step: everything of the outcome but the
    /// accumulator, which needs each written key's old value.
    fn finish_writes(mut self) -> Result<Finished, ExecError> {
        let height = self.ctx.height;
        let mut events = std::mem::take(&mut self.begin_events);
        events.extend(
            contracts::end_block(&self.modules, &mut self.overlay, height, self.ctx.timestamp)
                .map_err(|e| fatal(height, e))?,
        );
        let vs_bytes = self
            .overlay
            .get(contracts::keys::VALIDATORS)
            .map_err(|e| fatal(height, e))?
            .ok_or_else(|| {
                fatal(
                    height,
                    ContractError::Invariant {
                        what: "validator set missing".into(),
                    },
                )
            })?;
        let validator_set: ValidatorSet = codec::decode(&vs_bytes).map_err(|e| {
            fatal(
                height,
                ContractError::Corrupt {
                    key: "gov/validators".into(),
                    reason: e.to_string(),
                },
            )
        })?;
        Ok(Finished {
            writes: self.overlay.into_writes(),
            receipts: self.receipts,
            events,
            validator_set,
        })
    }
}

/// A block executed up to its writes: a [`BlockOutcome`] without the
/// accumulator.
struct Finished {
    writes: Writes,
    receipts: Vec<Receipt>,
    events: Vec<aidledger_contracts::Event>,
    validator_set: ValidatorSet,
}

impl Finished {
    fn into_outcome(self, accumulator: StateAccumulator) -> BlockOutcome {
        BlockOutcome {
            state_root: accumulator.root(),
            writes: self.writes,
            receipts: self.receipts,
            events: self.events,
            accumulator,
            validator_set: self.validator_set,
        }
    }
}

/// Executes `txs` on `state` at `ctx`. `acc` is the accumulator of `state`.
/// A transaction the contracts refuse gets a rejection receipt and changes
/// nothing but its signer's nonce; a transaction that may not be included
/// at all (ADR 010: unknown signer, a nonce that is not the next one, a
/// repeat) fails the whole block with [`ExecError::NotIncludable`].
pub fn apply_block(
    state: &dyn StateRead,
    acc: &StateAccumulator,
    ctx: &BlockContext,
    txs: &[VerifiedTx],
) -> Result<BlockOutcome, ExecError> {
    let base = Base::new(state);
    let mut exec = BlockExec::new(&base, ctx)?;
    for tx in txs {
        exec.apply(tx)?;
    }
    exec.finish(acc)
}

/// [`apply_block`] on a state in memory, which takes the block's writes
/// at once: each written key's old value, which the accumulator needs,
/// comes out of the tree as the new value goes in, one search instead of
/// a read and then a write. On an error the state is as it was; on
/// success it is the state after the block, and the returned [`Undo`]
/// puts it back ([`MemState::undo`]) should the caller refuse the block
/// for a reason of its own.
pub fn apply_block_into(
    state: &mut MemState,
    acc: &StateAccumulator,
    ctx: &BlockContext,
    txs: &[VerifiedTx],
) -> Result<(BlockOutcome, Undo), ExecError> {
    let done = {
        let base = Base::new(&*state);
        let mut exec = BlockExec::new(&base, ctx)?;
        for tx in txs {
            exec.apply(tx)?;
        }
        exec.finish_writes()?
    };
    let undo = state.apply_undoable(&done.writes);
    let mut accumulator = acc.clone();
    for ((k, new), old) in done.writes.iter().zip(undo.olds()) {
        accumulator.apply(k, old.as_deref(), new.as_deref());
    }
    Ok((done.into_outcome(accumulator), undo))
}

/// The state and accumulator genesis describes.
pub fn genesis_state(g: &Genesis) -> Result<(StateMap, StateAccumulator), ExecError> {
    let empty: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut overlay = Overlay::new(&empty);
    g.init(&mut overlay).map_err(ExecError::Genesis)?;
    let mut map = BTreeMap::new();
    let mut acc = StateAccumulator::new();
    for (k, v) in overlay.into_writes() {
        if let Some(v) = v {
            acc.insert(&k, &v);
            map.insert(k, v);
        }
    }
    Ok((map, acc))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::cell::Cell;

    /// A store whose values are `size` bytes, which counts its reads and
    /// fails the first `fail` of them.
    struct Store {
        size: usize,
        gets: Cell<u64>,
        fail: Cell<u64>,
        scans: Cell<u64>,
    }

    impl StateRead for Store {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ExecError> {
            self.gets.set(self.gets.get() + 1);
            if self.fail.get() > 0 {
                self.fail.set(self.fail.get() - 1);
                return Err(ExecError::Storage {
                    reason: "disk".into(),
                });
            }
            Ok((key.first() != Some(&b'-')).then(|| vec![key.len() as u8; self.size]))
        }
        fn scan(
            &self,
            prefix: &[u8],
            start_after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, ExecError> {
            self.scans.set(self.scans.get() + 1);
            let start = start_after.map_or(0, <[u8]>::len) as u8;
            Ok((0..limit as u8)
                .map(|i| ([prefix, &[start + i]].concat(), vec![i; self.size]))
                .collect())
        }
    }

    fn store(size: usize, fail: u64) -> Store {
        Store {
            size,
            gets: Cell::new(0),
            fail: Cell::new(fail),
            scans: Cell::new(0),
        }
    }

    #[test]
    fn the_same_scan_again_is_answered_from_memory_another_is_not() {
        let s = store(4, 0);
        let base = Base::new(&s);
        let first = base.scan_committed(b"p/", None, 3).unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(StoreRead::scan(&base, b"p/", None, 3).unwrap(), first);
        assert_eq!(s.scans.get(), 1);
        // Another prefix, start or limit is another scan.
        let other = base.scan_committed(b"q/", None, 3).unwrap();
        assert_ne!(other, first);
        assert_ne!(base.scan_committed(b"p/", Some(b"x"), 3).unwrap(), first);
        assert_eq!(base.scan_committed(b"p/", None, 2).unwrap().len(), 2);
        assert_eq!(s.scans.get(), 4);
        assert_eq!(base.hits(), 1);
    }

    #[test]
    fn a_key_read_again_is_answered_from_memory_absent_keys_too() {
        let s = store(8, 0);
        let base = Base::new(&s);
        assert_eq!(base.read(b"abc").unwrap(), Some(vec![3; 8]));
        assert_eq!(base.read(b"-gone").unwrap(), None);
        assert_eq!(base.read(b"abc").unwrap(), Some(vec![3; 8]));
        assert_eq!(base.read(b"-gone").unwrap(), None);
        assert_eq!(StoreRead::get(&base, b"abc").unwrap(), Some(vec![3; 8]));
        assert_eq!(s.gets.get(), 2);
        assert_eq!(base.hits(), 3);
    }

    #[test]
    fn a_failed_read_is_not_remembered() {
        let s = store(8, 1);
        let base = Base::new(&s);
        assert!(base.read(b"abc").is_err());
        assert!(matches!(
            StoreRead::get(&base, b"abc"),
            Ok(Some(v)) if v == vec![3; 8]
        ));
        assert_eq!(s.gets.get(), 2);
        assert_eq!(base.hits(), 0);
    }

    #[test]
    fn memory_is_bounded_in_bytes_and_in_keys() {
        // Values of 1 MiB: past 32 MiB reads go to the store again.
        let s = store(1 << 20, 0);
        let base = Base::new(&s);
        let keys: Vec<Vec<u8>> = (0..40u32).map(|i| i.to_le_bytes().to_vec()).collect();
        for k in &keys {
            base.read(k).unwrap();
        }
        let remembered = base.memo.borrow().reads.len();
        assert!(remembered < 32, "{remembered} values of 1 MiB remembered");
        assert!(base.memo.borrow().bytes <= MEMO_BYTES_MAX);
        for k in &keys {
            assert_eq!(base.read(k).unwrap(), Some(vec![4; 1 << 20]));
        }
        assert_eq!(s.gets.get(), 80 - remembered as u64);

        // Small values: past MEMO_KEYS_MAX keys nothing more is kept.
        let s = store(1, 0);
        let base = Base::new(&s);
        for i in 0..(MEMO_KEYS_MAX as u64 + 10) {
            base.read(&i.to_le_bytes()).unwrap();
        }
        assert_eq!(base.memo.borrow().reads.len(), MEMO_KEYS_MAX);
        let before = s.gets.get();
        base.read(&(MEMO_KEYS_MAX as u64 + 5).to_le_bytes())
            .unwrap();
        assert_eq!(s.gets.get(), before + 1);
        base.read(&0u64.to_le_bytes()).unwrap();
        assert_eq!(s.gets.get(), before + 1);
    }
}
