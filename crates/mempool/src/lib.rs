//! The mempool: admission, dedup, bounds, fair selection and eviction.
//!
//! Admission is a cheap filter, not the authority: every check made here is
//! made again during block execution, where it decides. Its job is to keep
//! junk out of blocks and to keep memory bounded.
//!
//! * Size: the encoded transaction must fit `TX_MAX_BYTES`.
//! * Signature and chain id: only a [`VerifiedTx`] can be admitted.
//! * Account: the signer must be a known, active account, holding a role
//!   allowed for the transaction's kind.
//! * Nonce window: `next_nonce <= nonce < next_nonce + nonce_window`.
//! * Dedup: by transaction id, and one transaction per (signer, nonce).
//! * Bounds: total count, total bytes, and count per signer.
//! * Backlog: a client's transaction is taken only while fewer are pending
//!   than the chain has recently committed in `backlog_ms`
//!   ([`Mempool::backlog_refusal`], ADR 023); gossip is bounded by the
//!   total count and bytes alone.
//! * Gaps expire: a transaction that cannot run yet because an earlier
//!   nonce of its signer is missing leaves after `gap_ttl_ms` (time is an
//!   input: [`Mempool::expire_gaps`]), so a gap never holds memory, nor
//!   makes a leader propose early, for long.
//!
//! A transaction whose nonce is below its account's next nonce is refused:
//! it, or another transaction with its nonce, is already on the chain, and
//! since an included transaction consumes its nonce whether it applied or
//! not (ADR 010), it can never be included again.
//!
//! Selection for a block is fair: senders take turns, one transaction each
//! per round, in the order their oldest pending transaction arrived; each
//! sender's transactions go in nonce order and only while contiguous from
//! the account's next nonce, so every selected transaction can execute.

use std::collections::{BTreeMap, HashMap};

mod backlog;
use backlog::DrainMeter;
pub use backlog::{BACKLOG_SENDER_GRACE, RATE_WINDOW_MS};

use aidledger_crypto::VerifiedTx;
use aidledger_types::tx::TX_MAX_BYTES;
use aidledger_types::{Hash, PublicKey, Role, TxBody, TxKind};

/// What admission needs to know about an account, read from committed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    pub roles: Vec<Role>,
    pub next_nonce: u64,
    pub active: bool,
}

/// Read access to committed accounts.
pub trait AccountView {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo>;
}

/// An [`AccountView`] that asks the view under it once per account, for
/// the checks of one batch, where the same few signers recur: each answer
/// is a store read and a decode. It remembers at most
/// [`OncePerAccount::KEYS_MAX`] accounts and asks again past that.
pub struct OncePerAccount<'a> {
    inner: &'a dyn AccountView,
    /// Looked up by key only, never iterated.
    seen: std::cell::RefCell<std::collections::HashMap<PublicKey, Option<AccountInfo>>>,
}

impl<'a> OncePerAccount<'a> {
    pub const KEYS_MAX: usize = 4096;

    pub fn new(inner: &'a dyn AccountView) -> Self {
        OncePerAccount {
            inner,
            seen: Default::default(),
        }
    }
}

impl AccountView for OncePerAccount<'_> {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo> {
        if let Some(a) = self.seen.borrow().get(key) {
            return a.clone();
        }
        let a = self.inner.account(key);
        let mut seen = self.seen.borrow_mut();
        if seen.len() < Self::KEYS_MAX {
            seen.insert(*key, a.clone());
        }
        a
    }
}

#[derive(Clone, Debug)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    pub max_per_sender: usize,
    /// How far ahead of the account's next nonce a transaction may be.
    pub nonce_window: u64,
    /// How long a transaction that cannot run yet (a nonce gap before it)
    /// may wait for the gap to fill.
    pub gap_ttl_ms: u64,
    /// Client transactions are taken while fewer are pending than the
    /// chain committed in this many ms at its recent rate (ADR 023).
    pub backlog_ms: u64,
    /// ... and always while fewer than this are pending, so a quiet chain
    /// takes a burst that fills its blocks.
    pub backlog_min_txs: usize,
}

impl Default for MempoolConfig {
    /// The node's defaults (its config's `[mempool]` section takes them
    /// from here).
    fn default() -> Self {
        MempoolConfig {
            max_txs: 200_000,
            max_bytes: 128 * 1024 * 1024,
            max_per_sender: 20_000,
            nonce_window: 20_000,
            gap_ttl_ms: 60_000,
            backlog_ms: 5_000,
            backlog_min_txs: 10_000,
        }
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmitError {
    #[error("transaction is {len} bytes, over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("transaction {0} is already pending")]
    Duplicate(Hash),
    #[error("unknown account {0}")]
    UnknownAccount(PublicKey),
    #[error("account {0} is not active")]
    InactiveAccount(PublicKey),
    #[error("role not allowed: {kind} needs one of [{needed}]")]
    RoleNotAllowed { kind: TxKind, needed: String },
    #[error(
        "nonce {got} is already used (next is {next}): this transaction, or another with its \
         nonce, is on the chain, so it can never be included; sign a new transaction to try again"
    )]
    NonceTooLow { got: u64, next: u64 },
    #[error("nonce {got} is too far ahead (next is {next}, window {window})")]
    NonceTooHigh { got: u64, next: u64, window: u64 },
    #[error("another transaction with nonce {nonce} from this account is pending")]
    NonceTaken { nonce: u64 },
    #[error("mempool is full ({what})")]
    Full { what: &'static str },
    #[error("account has {limit} pending transactions already")]
    SenderFull { limit: usize },
    #[error(
        "{pending} transactions are pending, at or over this node's backlog limit of {limit} \
         at the chain's recent rate of {per_sec} tx/s, and {held} of them are this account's; \
         retry later"
    )]
    Backlog {
        pending: usize,
        limit: usize,
        per_sec: u64,
        held: usize,
    },
}

impl AdmitError {
    /// A stable machine-readable code for the refusal (ADR 019).
    pub fn code(&self) -> &'static str {
        match self {
            AdmitError::TooLarge { .. } => "over-limit",
            AdmitError::Duplicate(_) => "already-pending",
            AdmitError::UnknownAccount(_) => "unknown-account",
            AdmitError::InactiveAccount(_) => "account-inactive",
            AdmitError::RoleNotAllowed { .. } => "role-not-allowed",
            AdmitError::NonceTooLow { .. } => "nonce-too-low",
            AdmitError::NonceTooHigh { .. } => "nonce-too-high",
            AdmitError::NonceTaken { .. } => "nonce-taken",
            AdmitError::Full { .. } | AdmitError::Backlog { .. } => "mempool-full",
            AdmitError::SenderFull { .. } => "sender-full",
        }
    }
}

/// The checks a transaction's account must pass, against `accounts` alone
/// (nothing pending): the account exists and is active, one of its roles
/// may sign the kind, and the nonce is within `nonce_window` of the
/// account's next nonce. Admission's screen (ADR 016) runs it against the
/// committed state before any signature work; the mempool runs it again
/// when it admits, because the state can move in between.
pub fn check_account(
    body: &TxBody,
    accounts: &dyn AccountView,
    nonce_window: u64,
) -> Result<AccountInfo, AdmitError> {
    let acct = accounts
        .account(&body.signer)
        .ok_or(AdmitError::UnknownAccount(body.signer))?;
    if !acct.active {
        return Err(AdmitError::InactiveAccount(body.signer));
    }
    let allowed = body.kind.allowed_roles();
    if !allowed.iter().any(|r| acct.roles.contains(r)) {
        return Err(AdmitError::RoleNotAllowed {
            kind: body.kind,
            needed: allowed
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if body.nonce < acct.next_nonce {
        return Err(AdmitError::NonceTooLow {
            got: body.nonce,
            next: acct.next_nonce,
        });
    }
    if body.nonce - acct.next_nonce >= nonce_window {
        return Err(AdmitError::NonceTooHigh {
            got: body.nonce,
            next: acct.next_nonce,
            window: nonce_window,
        });
    }
    Ok(acct)
}

struct Entry {
    tx: VerifiedTx,
    bytes: usize,
    seq: u64,
    /// The pool's clock when the transaction arrived.
    since_ms: u64,
}

#[derive(Default)]
struct Sender {
    /// Pending transactions by nonce.
    by_nonce: BTreeMap<u64, Hash>,
    /// The account's next nonce, as of the last admission or commit.
    next_nonce: u64,
    /// `by_nonce` holds `next_nonce`: this sender has a transaction that
    /// can run in the next block.
    ready: bool,
}

impl Sender {
    fn is_ready(&self) -> bool {
        self.by_nonce.contains_key(&self.next_nonce)
    }
}

/// The pool. Not thread-safe by itself; the node owns it in one task.
pub struct Mempool {
    config: MempoolConfig,
    /// By id. Never iterated, so a hash map: a B-tree's nodes shifted
    /// their entries (a transaction each, some 200 bytes) on every insert
    /// and removal. Keyed per process by std's random SipHash keys, so
    /// nobody can choose ids that collide in it.
    entries: HashMap<Hash, Entry>,
    senders: BTreeMap<PublicKey, Sender>,
    /// Admission order, for re-gossiping the longest-pending.
    by_seq: BTreeMap<u64, Hash>,
    bytes: usize,
    next_seq: u64,
    /// Senders whose next nonce is pending.
    ready_senders: usize,
    /// The last time given to [`Mempool::expire_gaps`].
    clock_ms: u64,
    /// The transactions committed recently, for the backlog bound.
    drained: DrainMeter,
}

impl Mempool {
    pub fn new(config: MempoolConfig) -> Mempool {
        Mempool {
            config,
            entries: HashMap::new(),
            senders: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            bytes: 0,
            next_seq: 0,
            ready_senders: 0,
            clock_ms: 0,
            drained: DrainMeter::default(),
        }
    }

    /// True when some pending transaction can run in the next block (its
    /// nonce is its account's next one). Pending transactions behind a
    /// nonce gap do not count: they must not make a leader propose early.
    pub fn has_ready(&self) -> bool {
        self.ready_senders > 0
    }

    /// Re-derives one sender's readiness after its nonces or next nonce
    /// changed, and drops the sender once it has nothing pending.
    fn refresh(&mut self, key: &PublicKey) {
        let Some(s) = self.senders.get_mut(key) else {
            return;
        };
        let now = s.is_ready();
        match (s.ready, now) {
            (false, true) => self.ready_senders += 1,
            (true, false) => self.ready_senders -= 1,
            _ => {}
        }
        s.ready = now;
        if s.by_nonce.is_empty() {
            self.senders.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn contains(&self, id: &Hash) -> bool {
        self.entries.contains_key(id)
    }
    pub fn get(&self, id: &Hash) -> Option<&VerifiedTx> {
        self.entries.get(id).map(|e| &e.tx)
    }

    /// The `n` transactions pending longest that can run once the
    /// transactions before them do (their nonce is in their sender's
    /// contiguous run from the next nonce), oldest first. Transactions
    /// behind a nonce gap are left out: re-gossiping them would bring them
    /// back to peers that let them expire, so they would never leave.
    pub fn oldest(&self, n: usize) -> Vec<&VerifiedTx> {
        // Each sender's first missing nonce, computed once per sender.
        let mut run_end: BTreeMap<PublicKey, u64> = BTreeMap::new();
        let mut out = Vec::new();
        for id in self.by_seq.values() {
            if out.len() >= n {
                break;
            }
            let Some(e) = self.entries.get(id) else {
                continue;
            };
            let body = &e.tx.tx().body;
            let end = *run_end.entry(body.signer).or_insert_with(|| {
                self.senders.get(&body.signer).map_or(0, |s| {
                    let mut want = s.next_nonce;
                    for &k in s.by_nonce.range(s.next_nonce..).map(|(k, _)| k) {
                        if k != want {
                            break;
                        }
                        want = want.saturating_add(1);
                    }
                    want
                })
            });
            if body.nonce < end {
                out.push(&e.tx);
            }
        }
        out
    }

    /// Admits a verified transaction whose canonical encoding is
    /// `encoded_len` bytes.
    pub fn admit(
        &mut self,
        tx: VerifiedTx,
        encoded_len: usize,
        accounts: &dyn AccountView,
    ) -> Result<Hash, AdmitError> {
        let id = tx.id();
        if encoded_len > TX_MAX_BYTES {
            return Err(AdmitError::TooLarge {
                len: encoded_len,
                limit: TX_MAX_BYTES,
            });
        }
        if self.entries.contains_key(&id) {
            return Err(AdmitError::Duplicate(id));
        }
        let body = &tx.tx().body;
        let acct = check_account(body, accounts, self.config.nonce_window)?;
        let sender = self.senders.get(&body.signer);
        if let Some(s) = sender {
            if s.by_nonce.contains_key(&body.nonce) {
                return Err(AdmitError::NonceTaken { nonce: body.nonce });
            }
            if s.by_nonce.len() >= self.config.max_per_sender {
                return Err(AdmitError::SenderFull {
                    limit: self.config.max_per_sender,
                });
            }
        }
        if self.entries.len() >= self.config.max_txs {
            return Err(AdmitError::Full { what: "count" });
        }
        if self.bytes + encoded_len > self.config.max_bytes {
            return Err(AdmitError::Full { what: "bytes" });
        }
        let signer = body.signer;
        let nonce = body.nonce;
        let s = self.senders.entry(signer).or_default();
        s.by_nonce.insert(nonce, id);
        s.next_nonce = acct.next_nonce;
        self.bytes += encoded_len;
        self.by_seq.insert(self.next_seq, id);
        self.entries.insert(
            id,
            Entry {
                tx,
                bytes: encoded_len,
                seq: self.next_seq,
                since_ms: self.clock_ms,
            },
        );
        self.next_seq += 1;
        self.refresh(&signer);
        Ok(id)
    }

    /// Picks up to `max_txs` transactions and `max_bytes` bytes for a block,
    /// fairly across senders (see the module docs). Does not remove them:
    /// they leave when the block commits.
    pub fn select(
        &self,
        max_txs: usize,
        max_bytes: usize,
        accounts: &dyn AccountView,
    ) -> Vec<VerifiedTx> {
        // Each sender's executable run: contiguous nonces from next_nonce.
        let mut runs: Vec<(u64, Vec<&Entry>)> = Vec::new();
        for (key, s) in &self.senders {
            let Some(acct) = accounts.account(key) else {
                continue;
            };
            let mut run = Vec::new();
            for ((&n, id), want) in s.by_nonce.range(acct.next_nonce..).zip(acct.next_nonce..) {
                if n != want {
                    break;
                }
                if let Some(e) = self.entries.get(id) {
                    run.push(e);
                }
            }
            if let Some(first) = run.first() {
                runs.push((first.seq, run));
            }
        }
        runs.sort_by_key(|(seq, _)| *seq);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut round = 0usize;
        let mut exhausted: Vec<bool> = vec![false; runs.len()];
        'rounds: loop {
            let mut progressed = false;
            for (i, (_, run)) in runs.iter().enumerate() {
                if exhausted[i] {
                    continue;
                }
                let Some(e) = run.get(round) else {
                    exhausted[i] = true;
                    continue;
                };
                if out.len() >= max_txs {
                    break 'rounds;
                }
                if bytes + e.bytes > max_bytes {
                    // This sender's next tx doesn't fit; a later one can't
                    // be taken without it, so the sender is done.
                    exhausted[i] = true;
                    continue;
                }
                bytes += e.bytes;
                out.push(e.tx.clone());
                progressed = true;
            }
            if !progressed {
                break;
            }
            round += 1;
        }
        out
    }

    fn remove(&mut self, id: &Hash) -> Option<VerifiedTx> {
        let e = self.entries.remove(id)?;
        self.bytes -= e.bytes;
        self.by_seq.remove(&e.seq);
        let body = &e.tx.tx().body;
        if let Some(s) = self.senders.get_mut(&body.signer) {
            s.by_nonce.remove(&body.nonce);
        }
        let signer = body.signer;
        self.refresh(&signer);
        Some(e.tx)
    }

    /// After a block commits: drops the included transactions, then every
    /// transaction whose nonce is now below its account's next nonce or
    /// whose account is gone. Returns how many were removed.
    pub fn on_commit(&mut self, included: &[Hash], accounts: &dyn AccountView) -> usize {
        self.drained.record(self.clock_ms, included.len() as u64);
        let mut removed = 0;
        for id in included {
            removed += usize::from(self.remove(id).is_some());
        }
        let mut stale = Vec::new();
        let mut moved = Vec::new();
        for (key, s) in self.senders.iter_mut() {
            match accounts.account(key) {
                Some(a) if a.active => {
                    stale.extend(s.by_nonce.range(..a.next_nonce).map(|(_, id)| *id));
                    if s.next_nonce != a.next_nonce {
                        s.next_nonce = a.next_nonce;
                        moved.push(*key);
                    }
                }
                _ => stale.extend(s.by_nonce.values().copied()),
            }
        }
        for id in stale {
            removed += usize::from(self.remove(&id).is_some());
        }
        for key in moved {
            self.refresh(&key);
        }
        removed
    }

    /// Drops the given transactions (a proposer that found it could not
    /// use them). Returns how many were pending.
    pub fn drop_txs(&mut self, ids: &[Hash]) -> usize {
        ids.iter()
            .map(|id| usize::from(self.remove(id).is_some()))
            .sum()
    }

    /// How many pending transactions the pool takes from clients now
    /// (ADR 023): `backlog_ms` of the rate committed over the last
    /// [`RATE_WINDOW_MS`], at least `backlog_min_txs`, at most `max_txs`.
    pub fn backlog_limit(&self) -> usize {
        let c = &self.config;
        backlog::limit(
            self.drained.committed(),
            c.backlog_ms,
            c.backlog_min_txs,
            c.max_txs,
        )
    }

    /// Transactions committed per second over the last [`RATE_WINDOW_MS`].
    pub fn commit_rate(&self) -> u64 {
        self.drained.committed() * 1000 / RATE_WINDOW_MS
    }

    /// Why a client's transaction signed by `signer` must not be admitted
    /// now, if the pool already holds its backlog
    /// ([`Mempool::backlog_limit`]) and `signer` has at least
    /// [`BACKLOG_SENDER_GRACE`] transactions pending: the account that
    /// fills the backlog is held back, while one with only a few pending
    /// (an office submitting as it goes, beside another's bulk import)
    /// still gets in. Accounts are permissioned, so the grace adds a
    /// bounded number at most; `max_txs` still caps the pool. Gossip is not
    /// asked: a peer's transaction was taken by that peer's own bound, and
    /// dropping it would only make it come back.
    pub fn backlog_refusal(&self, signer: &PublicKey) -> Option<AdmitError> {
        let (pending, limit) = (self.entries.len(), self.backlog_limit());
        let held = self.senders.get(signer).map_or(0, |s| s.by_nonce.len());
        (pending >= limit && held >= BACKLOG_SENDER_GRACE).then(|| AdmitError::Backlog {
            pending,
            limit,
            per_sec: self.commit_rate(),
            held,
        })
    }

    /// Moves the pool's clock to `now_ms` (never back). Transactions
    /// admitted from now on are stamped with it.
    pub fn set_time(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.drained.advance(self.clock_ms);
    }

    /// Moves the pool's clock to `now_ms` and drops every transaction that
    /// has waited `gap_ttl_ms` or longer behind a nonce gap (its nonce is
    /// above the end of its sender's contiguous run from the next nonce).
    /// Returns the dropped transactions' ids. Time only moves forward.
    pub fn expire_gaps(&mut self, now_ms: u64) -> Vec<Hash> {
        self.set_time(now_ms);
        let (now, ttl) = (self.clock_ms, self.config.gap_ttl_ms);
        let mut expired = Vec::new();
        for s in self.senders.values() {
            let mut want = s.next_nonce;
            for (&n, id) in s.by_nonce.range(s.next_nonce..) {
                if n == want {
                    want = want.saturating_add(1);
                    continue;
                }
                if self
                    .entries
                    .get(id)
                    .is_some_and(|e| e.since_ms.saturating_add(ttl) <= now)
                {
                    expired.push(*id);
                }
            }
        }
        for id in &expired {
            self.remove(id);
        }
        // A hash map keeps its largest capacity: after a burst drains,
        // give the memory back (this runs about once a second).
        let len = self.entries.len();
        if self.entries.capacity() > 4 * len.max(SHRINK_FLOOR) {
            self.entries.shrink_to(2 * len.max(SHRINK_FLOOR));
        }
        expired
    }
}

/// Entries below which the pool's table is never shrunk.
const SHRINK_FLOOR: usize = 1_024;

#[cfg(test)]
mod tests;
