//! Admission's first two stages (ADR 016): the screen, which costs a few
//! state lookups per transaction, and signature verification, which costs
//! the curve work. They run outside the core (the node runs them on the
//! HTTP task and a bounded worker pool, the simulator inline) and hand the
//! core [`Verdict`]s; the core only admits to the mempool.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use aidledger_crypto::{CryptoError, HashedTx, TxVerdictCache, VerifiedTx};
use aidledger_mempool::{check_account, AccountInfo, AccountView, AdmitError, OncePerAccount};
use aidledger_storage::Store;
use aidledger_types::{codec, ChainId, Hash, PublicKey, SignedTx};

use crate::chain::StoreAccounts;
use crate::io::TxGossip;
use crate::{Mutants, NoncesForgotten};

/// Signature verdicts remembered per generation (two generations).
pub const VERDICT_CACHE: usize = 65_536;
/// Accounts the screen remembers between batches, for one committed head.
pub const SCREEN_ACCOUNTS_MAX: usize = 4_096;

/// The accounts the screen read from the store, and the committed head
/// they were read at. A block's commit is the only thing that changes an
/// account, and it moves the head: a batch that finds another head than
/// the one these were read at forgets them all.
#[derive(Default)]
struct ScreenAccounts {
    head: Option<Hash>,
    accounts: HashMap<PublicKey, Option<AccountInfo>>,
}

/// The store's accounts through [`ScreenAccounts`], for a batch that read
/// the committed head `head` before any account.
struct CachedAccounts<'a> {
    cache: &'a Mutex<ScreenAccounts>,
    head: Option<Hash>,
    store: &'a dyn AccountView,
}

impl CachedAccounts<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, ScreenAccounts> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AccountView for CachedAccounts<'_> {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo> {
        {
            let mut c = self.lock();
            if c.head != self.head {
                c.accounts.clear();
                c.head = self.head;
            } else if let Some(a) = c.accounts.get(key) {
                return a.clone();
            }
        }
        // Read after this batch read its head, so at that head or a later
        // one. Kept only under the head the cache still holds: a batch on
        // a newer head has cleared it, and one on an older head never
        // stores what it reads in a newer head's cache.
        let a = self.store.account(key);
        let mut c = self.lock();
        if c.head == self.head && c.accounts.len() < SCREEN_ACCOUNTS_MAX {
            c.accounts.insert(*key, a.clone());
        }
        a
    }
}

/// One transaction's verdict after the screen and the signature check:
/// verified, or refused with the reason the client is told.
pub type Verdict = Result<VerifiedTx, TxRefusal>;

/// Why a transaction was refused at admission: a stable machine-readable
/// code (kebab-case, listed in ADR 019, served as the `code` of the API's
/// problem answers) and the text a person reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRefusal {
    pub code: &'static str,
    pub reason: String,
}

impl TxRefusal {
    pub fn new(code: &'static str, reason: impl Into<String>) -> TxRefusal {
        TxRefusal {
            code,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for TxRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<AdmitError> for TxRefusal {
    fn from(e: AdmitError) -> TxRefusal {
        TxRefusal::new(e.code(), e.to_string())
    }
}

impl From<CryptoError> for TxRefusal {
    fn from(e: CryptoError) -> TxRefusal {
        let code = match e {
            CryptoError::BadSignature => "bad-signature",
            CryptoError::BadPublicKey => "bad-public-key",
            CryptoError::WrongChain { .. } => "wrong-chain",
            _ => "invalid-tx",
        };
        TxRefusal::new(code, e.to_string())
    }
}

/// A transaction after the screen.
#[derive(Debug)]
pub enum Screened {
    /// Refused before any signature work; the reason.
    Refused(TxRefusal),
    /// Passed the cheap checks; its signature is still to be checked.
    Pending(HashedTx),
}

impl Screened {
    pub fn is_pending(&self) -> bool {
        matches!(self, Screened::Pending(_))
    }
}

/// The screen and the signature check of one node, over its committed
/// state. Shared by the node's threads (`Sync`).
pub struct Admission {
    chain_id: ChainId,
    store: Arc<dyn Store>,
    nonce_window: u64,
    gossip_max_bytes: usize,
    forget_onchain_nonces: bool,
    cache: TxVerdictCache,
    accounts: Mutex<ScreenAccounts>,
}

impl Admission {
    /// `nonce_window` is the mempool's; `gossip_max_bytes` the network's
    /// gossip message limit. The `admission_without_onchain_check` mutant
    /// disables the on-chain nonce check here too.
    pub fn new(
        chain_id: ChainId,
        store: Arc<dyn Store>,
        nonce_window: u64,
        gossip_max_bytes: usize,
        mutants: &Mutants,
    ) -> Admission {
        Admission {
            cache: TxVerdictCache::new(chain_id.clone(), VERDICT_CACHE),
            chain_id,
            store,
            nonce_window,
            gossip_max_bytes,
            forget_onchain_nonces: mutants.admission_without_onchain_check,
            accounts: Mutex::default(),
        }
    }

    /// Signature verdicts answered from the cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.cache.hits()
    }

    /// The cheap checks, in order: the payload limit, the chain id, the
    /// account (known, active, a role that may sign the kind, the nonce
    /// within the window of the committed nonce), a second copy in the
    /// same request, and a signature already judged bad. One result per
    /// transaction, in order.
    pub fn screen(&self, txs: Vec<SignedTx>) -> Vec<Screened> {
        self.screen_hashed(txs.into_iter().map(HashedTx::new).collect())
    }

    /// [`Admission::screen`] for transactions already hashed.
    pub fn screen_hashed(&self, txs: Vec<HashedTx>) -> Vec<Screened> {
        let store = StoreAccounts(self.store.clone());
        // Accounts read by earlier batches at the same committed head
        // are taken from memory (a store read and a decode each). Without
        // a head to key them by (the store failed to say), none are.
        let cached = self.store.head().ok().map(|head| CachedAccounts {
            cache: &self.accounts,
            head: head.map(|h| h.block_hash),
            store: &store,
        });
        let accounts: &dyn AccountView = match &cached {
            Some(c) => c,
            None => &store,
        };
        let forgetful = NoncesForgotten(accounts);
        let inner: &dyn AccountView = if self.forget_onchain_nonces {
            &forgetful
        } else {
            accounts
        };
        // A batch's transactions come from a few signers: each account is
        // read and decoded once per batch.
        let view = OncePerAccount::new(inner);
        let mut seen: BTreeSet<Hash> = BTreeSet::new();
        txs.into_iter()
            .map(|tx| match self.screen_one(&tx, &view, &mut seen) {
                Ok(()) => Screened::Pending(tx),
                Err(e) => Screened::Refused(e),
            })
            .collect()
    }

    fn screen_one(
        &self,
        hashed: &HashedTx,
        view: &dyn AccountView,
        seen: &mut BTreeSet<Hash>,
    ) -> Result<(), TxRefusal> {
        let tx = hashed.tx();
        tx.check_limits()
            .map_err(|e| TxRefusal::new("over-limit", e.to_string()))?;
        let id = hashed.id();
        if tx.body.chain_id != self.chain_id {
            return Err(CryptoError::WrongChain {
                id,
                expected: self.chain_id.to_string(),
                got: tx.body.chain_id.to_string(),
            }
            .into());
        }
        check_account(&tx.body, view, self.nonce_window)?;
        if !seen.insert(id) {
            return Err(AdmitError::Duplicate(id).into());
        }
        if let Some(e) = self.cache.known_bad(hashed) {
            return Err(e.into());
        }
        Ok(())
    }

    /// Checks the signatures of the screened transactions that passed, as
    /// one batch (the same verdicts as one by one, ADR 004), answering from
    /// the verdict cache where it can. One verdict per input, in order.
    pub fn verify(&self, screened: Vec<Screened>) -> Vec<Verdict> {
        let mut out: Vec<Option<Verdict>> = Vec::with_capacity(screened.len());
        let mut pending = Vec::new();
        let mut slots = Vec::new();
        for s in screened {
            match s {
                Screened::Refused(e) => out.push(Some(Err(e))),
                Screened::Pending(tx) => {
                    slots.push(out.len());
                    out.push(None);
                    pending.push(tx);
                }
            }
        }
        for (slot, r) in slots.into_iter().zip(self.cache.verify_hashed(pending)) {
            out[slot] = Some(r.map_err(|(_, e)| e.into()));
        }
        out.into_iter().flatten().collect()
    }

    /// [`Admission::screen`] then [`Admission::verify`], inline.
    pub fn check(&self, txs: Vec<SignedTx>) -> Vec<Verdict> {
        self.verify(self.screen(txs))
    }

    /// Decodes transaction gossip messages (each within the gossip limit;
    /// an undecodable one is skipped) into their transactions, a
    /// transaction gossiped twice in the batch taken once.
    pub fn decode_gossip(&self, batch: Vec<Vec<u8>>) -> Vec<HashedTx> {
        let mut txs = Vec::new();
        let mut seen = BTreeSet::new();
        for data in batch {
            let msg: TxGossip = match codec::decode_with_limit(&data, self.gossip_max_bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable transaction gossip");
                    continue;
                }
            };
            txs.extend(
                msg.txs
                    .into_iter()
                    .map(HashedTx::new)
                    .filter(|tx| seen.insert(tx.witness())),
            );
        }
        txs
    }

    /// Everything for a batch of gossip messages: decode, screen, verify.
    pub fn gossip(&self, batch: Vec<Vec<u8>>) -> Vec<Verdict> {
        self.verify(self.screen_hashed(self.decode_gossip(batch)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// An account view that counts its reads and answers `nonce`.
    struct Counting {
        reads: Cell<usize>,
        nonce: u64,
    }

    impl AccountView for Counting {
        fn account(&self, _: &PublicKey) -> Option<AccountInfo> {
            self.reads.set(self.reads.get() + 1);
            Some(AccountInfo {
                roles: Vec::new(),
                next_nonce: self.nonce,
                active: true,
            })
        }
    }

    fn view<'a>(
        cache: &'a Mutex<ScreenAccounts>,
        head: u8,
        store: &'a Counting,
    ) -> CachedAccounts<'a> {
        CachedAccounts {
            cache,
            head: Some(Hash([head; 32])),
            store,
        }
    }

    #[test]
    fn screen_accounts_live_for_one_head_and_never_move_to_another() {
        let cache = Mutex::default();
        let key = PublicKey([1; 32]);
        let old = Counting {
            reads: Cell::new(0),
            nonce: 1,
        };
        // Read once at head 1, then remembered.
        assert_eq!(view(&cache, 1, &old).account(&key).unwrap().next_nonce, 1);
        assert_eq!(view(&cache, 1, &old).account(&key).unwrap().next_nonce, 1);
        assert_eq!(old.reads.get(), 1);
        // Head 2: read again.
        let new = Counting {
            reads: Cell::new(0),
            nonce: 2,
        };
        assert_eq!(view(&cache, 2, &new).account(&key).unwrap().next_nonce, 2);
        assert_eq!(new.reads.get(), 1);
        // A batch still on head 1 (it read the head before the commit)
        // clears the cache for its own head, and what it reads is not
        // seen by a batch on head 2.
        let other = PublicKey([2; 32]);
        assert_eq!(view(&cache, 1, &old).account(&other).unwrap().next_nonce, 1);
        assert_eq!(view(&cache, 2, &new).account(&other).unwrap().next_nonce, 2);
        // The bound.
        let many = Counting {
            reads: Cell::new(0),
            nonce: 3,
        };
        for i in 0..SCREEN_ACCOUNTS_MAX as u32 + 10 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            view(&cache, 3, &many).account(&PublicKey(k));
        }
        assert_eq!(cache.lock().unwrap().accounts.len(), SCREEN_ACCOUNTS_MAX);
    }
}
