use super::*;
use aidledger_crypto::{verify_tx, Keypair, Purpose};
use aidledger_types::{ChainId, SignedTx, TxBody};
use std::cell::RefCell;

fn chain() -> ChainId {
    ChainId::new("mempool-test").unwrap()
}

fn key(i: u8) -> Keypair {
    Keypair::from_seed([i; 32])
}

fn tx(signer: u8, nonce: u64, kind: TxKind, payload_len: usize) -> VerifiedTx {
    let k = key(signer);
    let body = TxBody {
        chain_id: chain(),
        nonce,
        signer: k.public(),
        kind,
        payload: vec![0; payload_len],
    };
    let signature = k.sign(&chain(), Purpose::Tx, body.id().as_bytes());
    verify_tx(SignedTx { body, signature }, &chain()).unwrap()
}

fn len(t: &VerifiedTx) -> usize {
    t.tx().encode().len()
}

/// Accounts 1..=9 exist with the disburser role; 5 is inactive.
struct Accounts(RefCell<BTreeMap<PublicKey, AccountInfo>>);

impl Accounts {
    fn new() -> Accounts {
        let mut m = BTreeMap::new();
        for i in 1..=9u8 {
            m.insert(
                key(i).public(),
                AccountInfo {
                    roles: vec![Role::Disburser],
                    next_nonce: 0,
                    active: i != 5,
                },
            );
        }
        Accounts(RefCell::new(m))
    }
    fn set_next(&self, i: u8, n: u64) {
        self.0
            .borrow_mut()
            .get_mut(&key(i).public())
            .unwrap()
            .next_nonce = n;
    }
}

impl AccountView for Accounts {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo> {
        self.0.borrow().get(key).cloned()
    }
}

fn pool() -> Mempool {
    Mempool::new(MempoolConfig {
        max_txs: 50,
        max_bytes: 100_000,
        max_per_sender: 10,
        nonce_window: 16,
        gap_ttl_ms: 10_000,
        backlog_ms: 5_000,
        backlog_min_txs: 10_000,
    })
}

#[test]
fn admission_rejects_each_bad_case_with_its_reason() {
    let a = Accounts::new();
    let mut p = pool();
    let ok = tx(1, 0, TxKind::Deposit, 10);
    p.admit(ok.clone(), len(&ok), &a).unwrap();
    let cases: Vec<(VerifiedTx, AdmitError)> = vec![
        (ok.clone(), AdmitError::Duplicate(ok.id())),
        (
            tx(20, 0, TxKind::Deposit, 0),
            AdmitError::UnknownAccount(key(20).public()),
        ),
        (
            tx(5, 0, TxKind::Deposit, 0),
            AdmitError::InactiveAccount(key(5).public()),
        ),
        (
            tx(2, 0, TxKind::CreateProgram, 0),
            AdmitError::RoleNotAllowed {
                kind: TxKind::CreateProgram,
                needed: "program-officer".into(),
            },
        ),
        (
            tx(1, 0, TxKind::Settle, 1),
            AdmitError::NonceTaken { nonce: 0 },
        ),
        (
            tx(2, 16, TxKind::Deposit, 0),
            AdmitError::NonceTooHigh {
                got: 16,
                next: 0,
                window: 16,
            },
        ),
    ];
    for (t, want) in cases {
        let l = len(&t);
        assert_eq!(p.admit(t, l, &a), Err(want));
    }
    a.set_next(3, 4);
    let t = tx(3, 3, TxKind::Deposit, 0);
    let l = len(&t);
    assert_eq!(
        p.admit(t, l, &a),
        Err(AdmitError::NonceTooLow { got: 3, next: 4 })
    );
    let t = tx(3, 4, TxKind::Deposit, 0);
    assert_eq!(
        p.admit(t.clone(), TX_MAX_BYTES + 1, &a),
        Err(AdmitError::TooLarge {
            len: TX_MAX_BYTES + 1,
            limit: TX_MAX_BYTES
        })
    );
    // Nothing bad got in.
    assert_eq!(p.len(), 1);
}

#[test]
fn bounded_by_count_bytes_and_sender() {
    let a = Accounts::new();
    let mut p = Mempool::new(MempoolConfig {
        max_txs: 12,
        max_bytes: 100_000,
        max_per_sender: 10,
        nonce_window: 100,
        gap_ttl_ms: 10_000,
        backlog_ms: 5_000,
        backlog_min_txs: 10_000,
    });
    for n in 0..10 {
        let t = tx(1, n, TxKind::Deposit, 0);
        let l = len(&t);
        p.admit(t, l, &a).unwrap();
    }
    let t = tx(1, 10, TxKind::Deposit, 0);
    let l = len(&t);
    assert_eq!(p.admit(t, l, &a), Err(AdmitError::SenderFull { limit: 10 }));
    for n in 0..2 {
        let t = tx(2, n, TxKind::Deposit, 0);
        let l = len(&t);
        p.admit(t, l, &a).unwrap();
    }
    let t = tx(3, 0, TxKind::Deposit, 0);
    let l = len(&t);
    assert_eq!(p.admit(t, l, &a), Err(AdmitError::Full { what: "count" }));

    let mut p = Mempool::new(MempoolConfig {
        max_txs: 100,
        max_bytes: 3000,
        max_per_sender: 10,
        nonce_window: 100,
        gap_ttl_ms: 10_000,
        backlog_ms: 5_000,
        backlog_min_txs: 10_000,
    });
    let t = tx(1, 0, TxKind::Deposit, 2000);
    let l = len(&t);
    p.admit(t, l, &a).unwrap();
    let t = tx(2, 0, TxKind::Deposit, 2000);
    let l = len(&t);
    assert_eq!(p.admit(t, l, &a), Err(AdmitError::Full { what: "bytes" }));
    assert!(p.bytes() <= 3000);
}

#[test]
fn selection_takes_turns_and_respects_nonce_order() {
    let a = Accounts::new();
    let mut p = pool();
    // Sender 1 floods first, sender 2 and 3 arrive later.
    for n in 0..6 {
        let t = tx(1, n, TxKind::Deposit, 0);
        let l = len(&t);
        p.admit(t, l, &a).unwrap();
    }
    for s in [2u8, 3] {
        for n in (0..2).rev() {
            let t = tx(s, n, TxKind::Deposit, 0);
            let l = len(&t);
            p.admit(t, l, &a).unwrap();
        }
    }
    let picked = p.select(6, usize::MAX, &a);
    let order: Vec<(PublicKey, u64)> = picked
        .iter()
        .map(|t| (t.tx().body.signer, t.tx().body.nonce))
        .collect();
    let k = |i: u8| key(i).public();
    // Sender 1 arrived first, so it leads each round, then 2, then 3; the
    // flood from 1 does not push the others out of the block.
    assert_eq!(
        order,
        vec![
            (k(1), 0),
            (k(2), 0),
            (k(3), 0),
            (k(1), 1),
            (k(2), 1),
            (k(3), 1)
        ]
    );
}

#[test]
fn selection_skips_gaps() {
    let a = Accounts::new();
    let mut p = pool();
    for n in [0u64, 1, 3] {
        let t = tx(1, n, TxKind::Deposit, 0);
        let l = len(&t);
        p.admit(t, l, &a).unwrap();
    }
    let picked = p.select(10, usize::MAX, &a);
    assert_eq!(picked.len(), 2, "nonce 3 waits for nonce 2");
}

#[test]
fn commit_evicts_included_and_stale() {
    let a = Accounts::new();
    let mut p = pool();
    let mut ids = Vec::new();
    for n in 0..4 {
        let t = tx(1, n, TxKind::Deposit, 0);
        let l = len(&t);
        ids.push(p.admit(t, l, &a).unwrap());
    }
    let t = tx(2, 0, TxKind::Deposit, 0);
    let l = len(&t);
    p.admit(t, l, &a).unwrap();
    // A block included 1/0 and 1/1; another node's block also used 1/2
    // with a different tx, so the pool's 1/2 is now stale.
    a.set_next(1, 3);
    let removed = p.on_commit(&ids[..2], &a);
    assert_eq!(removed, 3);
    assert_eq!(p.len(), 2);
    assert!(p.contains(&ids[3]));
    let before = p.bytes();
    assert!(before > 0);
}

#[test]
fn only_runnable_transactions_make_the_pool_ready() {
    let a = Accounts::new();
    let mut p = pool();
    assert!(!p.has_ready());
    // Nonces 2 and 3 wait behind a gap: pending, but nothing can run.
    for n in [2u64, 3] {
        let t = tx(1, n, TxKind::Deposit, 0);
        let l = len(&t);
        p.admit(t, l, &a).unwrap();
    }
    assert_eq!(p.len(), 2);
    assert!(!p.has_ready(), "a nonce gap must not look like work");
    let t = tx(1, 0, TxKind::Deposit, 0);
    let l = len(&t);
    let first = p.admit(t, l, &a).unwrap();
    assert!(p.has_ready());
    // Nonce 0 commits; nonce 1 is still missing, so 2 and 3 cannot run.
    a.set_next(1, 1);
    p.on_commit(&[first], &a);
    assert!(!p.has_ready());
    let t = tx(1, 1, TxKind::Deposit, 0);
    let l = len(&t);
    p.admit(t, l, &a).unwrap();
    assert!(p.has_ready());
    assert_eq!(p.select(10, usize::MAX, &a).len(), 3);
}

#[test]
fn transactions_behind_a_gap_expire_and_runnable_ones_stay() {
    let a = Accounts::new();
    let mut p = pool();
    p.expire_gaps(1_000);
    let mut ids = Vec::new();
    for n in [0u64, 1, 5, 6] {
        let t = tx(1, n, TxKind::Deposit, 0);
        let l = len(&t);
        ids.push(p.admit(t, l, &a).unwrap());
    }
    // Not yet: 9.999 s later.
    assert!(p.expire_gaps(10_999).is_empty());
    // Time going back changes nothing.
    assert!(p.expire_gaps(5).is_empty());
    let gone = p.expire_gaps(11_000);
    assert_eq!(
        gone,
        vec![ids[2], ids[3]],
        "only 5 and 6 sat behind the gap"
    );
    assert_eq!(p.len(), 2);
    assert!(p.has_ready());
    // The gap-fillers arriving later start their own clock.
    let t = tx(1, 3, TxKind::Deposit, 0);
    let l = len(&t);
    p.admit(t, l, &a).unwrap();
    assert!(p.expire_gaps(20_999).is_empty());
    assert_eq!(p.expire_gaps(21_000).len(), 1);
}

#[test]
fn a_transaction_resent_after_its_nonce_was_used_is_refused() {
    // An included transaction consumes its nonce whether it applied or
    // not (ADR 010), so a resend of it, byte for byte, is below the
    // account's next nonce and never re-enters the pool.
    let a = Accounts::new();
    let mut p = pool();
    let t = tx(1, 0, TxKind::Deposit, 0);
    let l = len(&t);
    let id = p.admit(t.clone(), l, &a).unwrap();
    a.set_next(1, 1);
    p.on_commit(&[id], &a);
    assert!(p.is_empty());
    assert!(!p.has_ready());
    assert_eq!(
        p.admit(t, l, &a),
        Err(AdmitError::NonceTooLow { got: 0, next: 1 })
    );
    assert!(p.is_empty());
}

#[test]
fn only_runnable_transactions_are_offered_for_re_gossip() {
    // Re-gossiping a transaction stuck behind a gap would hand it back to
    // peers that let it expire, so it would never leave the network.
    let a = Accounts::new();
    let mut p = pool();
    let mut ids = Vec::new();
    for (s, n) in [(1u8, 3u64), (1, 0), (2, 0), (1, 1), (2, 2)] {
        let t = tx(s, n, TxKind::Deposit, 0);
        let l = len(&t);
        ids.push(p.admit(t, l, &a).unwrap());
    }
    let offered: Vec<Hash> = p.oldest(10).iter().map(|v| v.id()).collect();
    assert_eq!(
        offered,
        vec![ids[1], ids[2], ids[3]],
        "oldest first, gaps left out"
    );
    assert_eq!(p.oldest(2).len(), 2);
}

/// A view that counts how often it is asked.
struct Asked(std::cell::Cell<u32>);

impl AccountView for Asked {
    fn account(&self, key: &PublicKey) -> Option<AccountInfo> {
        self.0.set(self.0.get() + 1);
        (key.0[0] != 0).then(|| AccountInfo {
            roles: vec![Role::Attester],
            next_nonce: u64::from(key.0[0]),
            active: true,
        })
    }
}

#[test]
fn once_per_account_asks_once_per_key_and_gives_the_same_answers() {
    let inner = Asked(std::cell::Cell::new(0));
    let view = OncePerAccount::new(&inner);
    let (a, b, none) = (PublicKey([7; 32]), PublicKey([9; 32]), PublicKey([0; 32]));
    for _ in 0..3 {
        assert_eq!(view.account(&a), inner_answer(&a));
        assert_eq!(view.account(&b), inner_answer(&b));
        assert_eq!(view.account(&none), None);
    }
    assert_eq!(inner.0.get(), 3);

    // Past the bound it asks again rather than grow.
    let inner = Asked(std::cell::Cell::new(0));
    let view = OncePerAccount::new(&inner);
    let key = |i: usize| {
        let mut k = [1u8; 32];
        k[1..9].copy_from_slice(&(i as u64).to_le_bytes());
        PublicKey(k)
    };
    for i in 0..OncePerAccount::KEYS_MAX + 5 {
        view.account(&key(i));
    }
    let asked = inner.0.get();
    view.account(&key(0));
    assert_eq!(inner.0.get(), asked);
    view.account(&key(OncePerAccount::KEYS_MAX + 1));
    assert_eq!(inner.0.get(), asked + 1);
}

fn inner_answer(key: &PublicKey) -> Option<AccountInfo> {
    Asked(std::cell::Cell::new(0)).account(key)
}

/// A pool whose backlog bound is small enough to reach: at least 4
/// pending, 2 s of the recent commit rate, at most 40.
fn backlog_pool() -> Mempool {
    Mempool::new(MempoolConfig {
        max_txs: 40,
        max_bytes: 1_000_000,
        max_per_sender: 100,
        nonce_window: 100,
        gap_ttl_ms: 60_000,
        backlog_ms: 2_000,
        backlog_min_txs: 4,
    })
}

fn fake_ids(from: u32, n: u32) -> Vec<Hash> {
    (from..from + n)
        .map(|i| {
            let mut h = [0xee; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            Hash(h)
        })
        .collect()
}

#[test]
fn past_the_floor_only_an_account_holding_its_grace_is_refused_and_gossip_is_not() {
    let a = Accounts::new();
    let mut p = backlog_pool();
    assert_eq!((p.backlog_limit(), p.commit_rate()), (4, 0));
    let heavy = key(1).public();
    let light = key(2).public();
    // One account fills the floor, and goes on up to its grace.
    for n in 0..BACKLOG_SENDER_GRACE as u64 {
        assert_eq!(p.backlog_refusal(&heavy), None, "{n} pending");
        let t = tx(1, n, TxKind::Deposit, 0);
        let l = len(&t);
        p.admit(t, l, &a).unwrap();
    }
    let e = p.backlog_refusal(&heavy).unwrap();
    assert_eq!(
        e,
        AdmitError::Backlog {
            pending: BACKLOG_SENDER_GRACE,
            limit: 4,
            per_sec: 0,
            held: BACKLOG_SENDER_GRACE,
        }
    );
    assert_eq!(e.code(), "mempool-full");
    // Another account with nothing pending still gets in.
    assert_eq!(p.backlog_refusal(&light), None);
    let t = tx(2, 0, TxKind::Deposit, 0);
    let l = len(&t);
    p.admit(t, l, &a).unwrap();
    assert_eq!(p.backlog_refusal(&light), None, "one pending");
    // The bound is the caller's to ask for a client's transaction: admit
    // itself (gossip) still takes the heavy account's, up to max_txs.
    let t = tx(1, BACKLOG_SENDER_GRACE as u64, TxKind::Deposit, 0);
    let l = len(&t);
    p.admit(t, l, &a).unwrap();
    assert_eq!(p.len(), BACKLOG_SENDER_GRACE + 2);
}

#[test]
fn the_backlog_limit_follows_the_recent_commit_rate_and_forgets_it() {
    let a = Accounts::new();
    let mut p = backlog_pool();
    // 30 transactions committed over 1 s: 3 tx/s over the 10 s window,
    // so 2 s of backlog is 6.
    for step in 0..3u32 {
        p.set_time(1_000 + u64::from(step) * 400);
        p.on_commit(&fake_ids(step * 10, 10), &a);
    }
    assert_eq!((p.commit_rate(), p.backlog_limit()), (3, 6));
    // Ten times the rate: 60, but never past max_txs.
    for step in 0..27u32 {
        p.set_time(2_000 + u64::from(step) * 10);
        p.on_commit(&fake_ids(30 + step * 10, 10), &a);
    }
    assert_eq!((p.commit_rate(), p.backlog_limit()), (30, 40));
    // A stalled chain: once the window has passed, the floor again.
    // The last bucket began at 2,200 ms and ends a window later.
    p.set_time(2_300 + RATE_WINDOW_MS);
    assert_eq!((p.commit_rate(), p.backlog_limit()), (0, 4));
    // Empty blocks count nothing.
    p.on_commit(&[], &a);
    assert_eq!(p.backlog_limit(), 4);
}

#[test]
fn the_commit_meter_holds_a_bounded_number_of_buckets() {
    let mut m = backlog::DrainMeter::default();
    // A block every ms for a minute (a node catching up).
    for t in 0..60_000u64 {
        m.record(t, 1);
        assert!(m.buckets() <= 102, "{} buckets at {t} ms", m.buckets());
    }
    // Every bucket that ended a whole window ago is gone; the window holds
    // 10 s of one tx per ms, give or take one bucket.
    m.advance(60_000);
    let n = m.committed();
    assert!((9_900..=10_100).contains(&n), "{n}");
    assert_eq!(backlog::limit(u64::MAX, u64::MAX, 1, 7), 7, "no overflow");
}

#[test]
fn the_table_gives_memory_back_once_a_burst_has_drained() {
    let accounts = Accounts::new();
    let mut p = Mempool::new(MempoolConfig {
        max_txs: 100_000,
        max_bytes: 100_000_000,
        max_per_sender: 10_000,
        nonce_window: 10_000,
        gap_ttl_ms: 10_000,
        backlog_ms: 5_000,
        backlog_min_txs: 100_000,
    });
    let burst: Vec<VerifiedTx> = (0..4 * SHRINK_FLOOR as u64)
        .map(|n| tx(1 + (n % 4) as u8, n / 4, TxKind::Deposit, 8))
        .collect();
    let ids: Vec<Hash> = burst
        .into_iter()
        .map(|t| {
            let l = len(&t);
            p.admit(t, l, &accounts).unwrap()
        })
        .collect();
    let grown = p.entries.capacity();
    assert!(grown >= 4 * SHRINK_FLOOR);
    // Still full: nothing to give back.
    p.expire_gaps(1);
    assert_eq!(p.entries.capacity(), grown);
    assert_eq!(p.on_commit(&ids, &accounts), ids.len());
    assert!(p.is_empty());
    p.expire_gaps(2);
    assert!(p.entries.capacity() < grown);
    assert!(p.entries.capacity() >= 2 * SHRINK_FLOOR);
    // The pool still works after shrinking.
    let t = tx(2, 0, TxKind::Deposit, 8);
    let l = len(&t);
    p.admit(t, l, &accounts).unwrap();
    assert_eq!(p.len(), 1);
}
