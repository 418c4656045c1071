#![allow(clippy::unwrap_used)]
//! Admission's screen and signature check (ADR 016), over a real RocksDB
//! store holding the development genesis: the cheap checks refuse before
//! any signature work, the verdicts are exactly those of single
//! verification, and the verdict cache only saves work.

use aidledger_audit::synth::{StateMode, SynthChain};
use aidledger_contracts::payload::{self, Payload};
use aidledger_crypto::{verify_tx, HashedTx, Keypair};
use aidledger_node_core::{Admission, Mutants, Screened, TxGossip, TxRefusal};
use aidledger_types::values::Amount;
use aidledger_types::{codec, ChainId, Role, Signature, SignedTx, Slug};

fn chain() -> (tempfile::TempDir, SynthChain) {
    let dir = tempfile::tempdir().unwrap();
    let c = SynthChain::new(&dir.path().join("data"), StateMode::Store).unwrap();
    (dir, c)
}

fn admission(c: &SynthChain, mutants: &Mutants) -> Admission {
    Admission::new(
        c.genesis.chain_id.clone(),
        c.store.clone(),
        64,
        1 << 20,
        mutants,
    )
}

/// A deposit by the state bank's disburser with an explicit nonce (the
/// screen does not care whether it would apply).
fn deposit(c: &mut SynthChain, nonce: u64) -> SignedTx {
    let key = c.f.keys.op("state-bank", Role::Disburser).clone();
    c.f.sign_with_nonce(&key, &payload(), nonce)
}

fn payload() -> Payload {
    Payload::Deposit(payload::Deposit {
        program: Slug::new("p").unwrap(),
        amount: Amount(100),
    })
}

fn refusal(s: &Screened) -> &str {
    match s {
        Screened::Refused(e) => &e.reason,
        Screened::Pending(_) => panic!("expected a refusal"),
    }
}

#[test]
fn the_screen_refuses_before_any_signature_work() {
    let (_d, mut c) = chain();
    let a = admission(&c, &Mutants::default());
    let good = deposit(&mut c, 0);

    let mut wrong_chain = good.clone();
    wrong_chain.body.chain_id = ChainId::new("other-chain").unwrap();
    let stranger = {
        let k = Keypair::generate();
        let mut t = good.clone();
        t.body.signer = k.public();
        t
    };
    let wrong_role = {
        // The county unit's registrar may not deposit.
        let key = c.f.keys.op("county-unit", Role::Registrar).clone();
        c.f.sign_with_nonce(&key, &payload(), 0)
    };
    let too_far = deposit(&mut c, 64);
    let mut big = good.clone();
    big.body.payload = vec![0; aidledger_types::tx::TX_PAYLOAD_MAX_BYTES + 1];

    let out = a.screen(vec![
        good.clone(),
        wrong_chain,
        stranger,
        wrong_role,
        too_far,
        big,
        good.clone(),
    ]);
    assert!(out[0].is_pending());
    assert!(refusal(&out[1]).contains("expected"), "{:?}", out[1]);
    assert!(refusal(&out[2]).contains("unknown account"), "{:?}", out[2]);
    assert!(
        refusal(&out[3]).contains("role not allowed"),
        "{:?}",
        out[3]
    );
    assert!(refusal(&out[4]).contains("too far ahead"), "{:?}", out[4]);
    assert!(refusal(&out[5]).contains("payload"), "{:?}", out[5]);
    assert!(refusal(&out[6]).contains("already pending"), "{:?}", out[6]);
    // None of that needed a signature check.
    assert_eq!(a.cache_hits(), 0);
}

#[test]
fn a_resent_bad_signature_is_refused_at_the_screen_and_valid_ones_are_checked_once() {
    let (_d, mut c) = chain();
    let a = admission(&c, &Mutants::default());
    let good = deposit(&mut c, 0);
    let mut forged = deposit(&mut c, 1);
    forged.signature = Signature([7; 64]);

    let first = a.check(vec![good.clone(), forged.clone()]);
    assert!(first[0].is_ok());
    let bad = first[1].as_ref().unwrap_err().clone();
    assert!(bad.reason.contains("signature"), "{bad}");
    assert_eq!(bad.code, "bad-signature");

    // The resend of the forgery stops at the screen, with the same reason.
    let again = a.screen(vec![forged.clone()]);
    assert!(matches!(&again[0], Screened::Refused(r) if *r == bad));

    // A valid transaction arriving again (as from three gossip peers) is
    // answered from the cache, with the verdict single verification gives.
    let hits = a.cache_hits();
    let v = a.check(vec![good.clone()]);
    assert_eq!(a.cache_hits(), hits + 1);
    assert_eq!(
        v[0].as_ref().unwrap(),
        &verify_tx(good, &c.genesis.chain_id).unwrap()
    );

    // The same body with another (bad) signature is judged on its own.
    let mut other_sig = deposit(&mut c, 0);
    other_sig.signature = Signature([9; 64]);
    assert!(a.check(vec![other_sig])[0].is_err());
}

#[test]
fn verdicts_equal_single_verification_with_or_without_the_cache() {
    let (_d, mut c) = chain();
    let cached = admission(&c, &Mutants::default());
    let mut txs = Vec::new();
    for n in 0..40u64 {
        let mut t = deposit(&mut c, n % 64);
        match n % 5 {
            0 => t.signature.0[(n as usize) % 64] ^= 1,
            1 => t.body.payload.push(0),
            _ => {}
        }
        txs.push(t);
    }
    // Every transaction twice, in three rounds, through one admission.
    for round in 0..3 {
        let fresh = admission(&c, &Mutants::default());
        for chunk in txs.chunks(7) {
            let a = cached.verify(
                chunk
                    .iter()
                    .cloned()
                    .map(|tx| Screened::Pending(HashedTx::new(tx)))
                    .collect::<Vec<_>>(),
            );
            let b = fresh.verify(
                chunk
                    .iter()
                    .cloned()
                    .map(|tx| Screened::Pending(tx.into()))
                    .collect(),
            );
            for ((tx, x), y) in chunk.iter().zip(a).zip(b) {
                let single = verify_tx(tx.clone(), &c.genesis.chain_id).map_err(TxRefusal::from);
                assert_eq!(x, single, "round {round}: cached verdict");
                assert_eq!(y, single, "round {round}: uncached verdict");
            }
        }
    }
    assert!(cached.cache_hits() >= 80);
}

#[test]
fn gossip_is_decoded_within_its_limit_and_each_transaction_taken_once() {
    let (_d, mut c) = chain();
    let a = admission(&c, &Mutants::default());
    let t0 = deposit(&mut c, 0);
    let t1 = deposit(&mut c, 1);
    let msg = |round, txs: Vec<SignedTx>| codec::encode(&TxGossip { round, txs });
    let batch = vec![
        msg(1, vec![t0.clone(), t1.clone()]),
        vec![0xff; 40],
        msg(2, vec![t1.clone()]),
    ];
    let v = a.gossip(batch);
    assert_eq!(
        v.len(),
        2,
        "the undecodable message is skipped, t1 taken once"
    );
    assert!(v.iter().all(Result::is_ok));

    // Over the gossip limit: skipped.
    let small = Admission::new(
        c.genesis.chain_id.clone(),
        c.store.clone(),
        64,
        64,
        &Mutants::default(),
    );
    assert!(small.gossip(vec![msg(3, vec![t0])]).is_empty());
}

#[test]
fn the_admission_mutant_forgets_the_on_chain_nonce_in_the_screen_too() {
    let (_d, mut c) = chain();
    // Apply one transaction so the auditor's next nonce is 1.
    let tx = deposit(&mut c, 0);
    let v = c.f.verified(tx.clone());
    let t = c.time().saturating_add_ms(1_000);
    c.block_at(t, &[v]).unwrap();

    let honest = admission(&c, &Mutants::default());
    let out = honest.screen(vec![tx.clone()]);
    assert!(refusal(&out[0]).contains("already used"), "{:?}", out[0]);

    let mutant = admission(
        &c,
        &Mutants {
            admission_without_onchain_check: true,
            ..Mutants::default()
        },
    );
    assert!(mutant.screen(vec![tx])[0].is_pending());
}

/// The screen remembers the accounts it read between batches, for one
/// committed head: a commit that uses a nonce makes the next batch refuse
/// it, as if nothing were remembered.
#[test]
fn the_screen_never_answers_from_accounts_read_before_a_commit() {
    let (_d, mut c) = chain();
    let a = admission(&c, &Mutants::default());
    let tx = deposit(&mut c, 0);
    // Read (and remembered) at the genesis head: nonce 0 is next.
    assert!(a.screen(vec![tx.clone()])[0].is_pending());
    assert!(a.screen(vec![tx.clone()])[0].is_pending());
    let v = c.f.verified(tx.clone());
    let t = c.time().saturating_add_ms(1_000);
    c.block_at(t, &[v]).unwrap();
    let out = a.screen(vec![tx.clone()]);
    assert!(refusal(&out[0]).contains("already used"), "{:?}", out[0]);
    // And the next nonce now passes, read at the new head.
    let next = deposit(&mut c, 1);
    assert!(a.screen(vec![next])[0].is_pending());
}
