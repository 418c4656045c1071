#![allow(clippy::unwrap_used)]
//! Payment proofs (ADR 020) on the standard audit chain, whose validator
//! set changes part way: a proof of a payment after the change carries
//! the change, and a proof of a settled payment carries the bank's
//! confirmation. Every way of altering a proof is refused, naming the
//! step that failed.

mod common;

use aidledger_audit::proof::{
    parse_proof, payment_proof, verify_payment_proof, PaymentProof, ProofError, ProofRequest,
    PROOF_MAX_BYTES,
};
use aidledger_contracts::events::{EventBody, MoneyEvent, MoneyFlow, Party};
use aidledger_contracts::keys;
use aidledger_contracts::payload::{self, Payload};
use aidledger_storage::Store;
use aidledger_types::hash::sha256;
use aidledger_types::{codec, Role};
use common::standard_chain;

/// Every entitlement payment to a household on the chain.
fn household_payments(state: &aidledger_execution::MemState) -> Vec<MoneyEvent> {
    let mut out = Vec::new();
    for (_, v) in aidledger_audit::scan_all(state, b"ledger/").unwrap() {
        let e: MoneyEvent = codec::decode(&v).unwrap();
        if e.flow == MoneyFlow::Disbursement
            && matches!(e.to, Party::Household(_))
            && e.period.is_some()
        {
            out.push(e);
        }
    }
    out
}

fn request(e: &MoneyEvent) -> ProofRequest {
    let Party::Household(h) = e.to else {
        unreachable!()
    };
    ProofRequest {
        household: h,
        program: e.program.clone(),
        period: e.period.unwrap(),
        entitlement: None,
        release: None,
    }
}

fn step_of(p: &PaymentProof, g: &aidledger_contracts::Genesis) -> &'static str {
    verify_payment_proof(p, g).unwrap_err().step
}

#[test]
fn proofs_check_offline_and_every_alteration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = standard_chain(&dir.path().join("data"), 4);
    let changed_at = c.set_changed_at.unwrap();
    let payments = household_payments(&c.state);
    let late = payments
        .iter()
        .find(|e| e.height > changed_at + 1)
        .expect("a household payment after the set change")
        .clone();
    let early = payments
        .iter()
        .find(|e| e.height <= changed_at)
        .expect("a household payment before the set change")
        .clone();

    // The bank confirms the late payment, certified by the new set.
    let release = late.release.unwrap();
    let settle = c.f.sign_as(
        "state-bank",
        Role::Disburser,
        &Payload::Settle(payload::Settle {
            release,
            amount: late.amount,
            bank_ref: sha256(b"bank ref household"),
        }),
    );
    let (settled_block, _) = c.ok(vec![settle]);
    let g = c.genesis.clone();

    // Before the change: no set change needed, not settled.
    let p = payment_proof(&c.store, &request(&early)).unwrap();
    assert!(p.set_changes.is_empty());
    assert!(!p.summary.settled && p.settlement.is_none());
    let v = verify_payment_proof(&p, &g).unwrap();
    assert_eq!(v.summary.height, early.height);
    assert_eq!(v.summary.amount, early.amount.minor().to_string());

    // After it: the change is carried and followed; the settlement too.
    let p = payment_proof(&c.store, &request(&late)).unwrap();
    assert_eq!(p.set_changes.len(), 1);
    assert_eq!(p.set_changes[0].header.height, changed_at);
    assert!(p.summary.settled);
    assert_eq!(p.summary.settlement_height, Some(settled_block.height()));
    let v = verify_payment_proof(&p, &g).unwrap();
    assert_eq!(v.set_changes, 1);
    assert_eq!(v.settlement_block_hash, Some(settled_block.hash()));
    assert!(p.receipt_code.contains(&format!("release={release}")));

    // Through its file form, unchanged.
    let json = serde_json::to_vec_pretty(&p).unwrap();
    assert!(
        json.len() < 64 * 1024,
        "a proof is small: {} bytes",
        json.len()
    );
    assert_eq!(parse_proof(&json).unwrap(), p);

    // Alterations, each refused at its step.
    let other_genesis = aidledger_execution::testkit::dev_genesis(4, 12).0;
    assert_eq!(step_of(&p, &other_genesis), "genesis");

    let mut x = p.clone();
    x.format = "aidledger payment proof v0".into();
    assert_eq!(step_of(&x, &g), "format");

    let mut x = p.clone();
    x.set_changes.clear();
    assert_eq!(step_of(&x, &g), "payment", "a missing set change");

    let mut x = p.clone();
    x.set_changes[0].certificate.signatures.truncate(1);
    assert_eq!(step_of(&x, &g), "validator sets");

    let mut x = p.clone();
    x.summary.amount = (late.amount.minor() * 10).to_string();
    assert_eq!(step_of(&x, &g), "payment", "a bigger amount claimed");

    // The event itself altered, summary and code to match: the path no
    // longer leads to the root.
    let mut x = p.clone();
    if let EventBody::Money(m) = &mut x.payment.event.body {
        m.amount = aidledger_types::Amount(m.amount.minor() * 10);
    }
    x.summary.amount = (late.amount.minor() * 10).to_string();
    assert_eq!(step_of(&x, &g), "payment");

    let mut x = p.clone();
    let other = [0x11u8; 32];
    x.summary.household = aidledger_types::Hash(other);
    assert_eq!(step_of(&x, &g), "payment", "another household claimed");

    let mut x = p.clone();
    if let Some(s) = x.payment.path.siblings.first_mut() {
        s.0[0] ^= 1;
    } else {
        x.payment.path.index += 1;
    }
    assert_eq!(step_of(&x, &g), "payment", "a damaged path");

    let mut x = p.clone();
    x.payment.header.timestamp = x.payment.header.timestamp.saturating_add_ms(1);
    assert_eq!(
        step_of(&x, &g),
        "payment",
        "a header the certificate is not for"
    );

    let mut x = p.clone();
    x.payment.certificate.signatures.truncate(1);
    assert_eq!(step_of(&x, &g), "payment", "too few signatures");

    let mut x = p.clone();
    x.settlement = None;
    assert_eq!(step_of(&x, &g), "settlement", "settled, with no settlement");

    let mut x = p.clone();
    x.settlement = Some(x.payment.clone());
    assert_eq!(
        step_of(&x, &g),
        "settlement",
        "the payment passed off as its settlement"
    );

    let mut x = p.clone();
    x.receipt_code = x.receipt_code.replace("period=", "period=1");
    assert_eq!(step_of(&x, &g), "receipt code");

    // An early proof's block passed off as a late one's.
    let early_p = payment_proof(&c.store, &request(&early)).unwrap();
    let mut x = p.clone();
    x.payment.path = early_p.payment.path.clone();
    assert_eq!(step_of(&x, &g), "payment");

    // The file form: unknown fields and oversize files are refused.
    let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["extra"] = serde_json::json!(1);
    assert_eq!(
        parse_proof(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .step,
        "file"
    );
    // Deep inside too.
    let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["payment"]["header"]["extra"] = serde_json::json!(1);
    assert_eq!(
        parse_proof(&serde_json::to_vec(&v).unwrap())
            .unwrap_err()
            .step,
        "file"
    );
    let big = vec![b' '; PROOF_MAX_BYTES as usize + 1];
    assert_eq!(parse_proof(&big).unwrap_err().step, "file");
    assert_eq!(parse_proof(b"{").unwrap_err().step, "file");

    // Naming the release gives the same proof, from its block alone; a
    // release that is not the payment named is refused.
    let mut r = request(&late);
    r.release = Some(release);
    assert_eq!(payment_proof(&c.store, &r).unwrap(), p);
    let mut r = request(&early);
    r.release = Some(release);
    assert!(matches!(
        payment_proof(&c.store, &r),
        Err(ProofError::NotFound(_))
    ));
    let mut r = request(&late);
    r.release = Some(9_999_999);
    assert!(matches!(
        payment_proof(&c.store, &r),
        Err(ProofError::NotFound(_))
    ));

    // Display decimals are not proven, but are bounded.
    let mut x = p.clone();
    x.summary.decimals = 64;
    assert_eq!(step_of(&x, &g), "summary");

    // The settlement's height claimed elsewhere.
    let mut x = p.clone();
    x.summary.settlement_height = Some(settled_block.height() + 1);
    assert_eq!(step_of(&x, &g), "settlement");

    // Another release's real, certified settlement (the road plan's
    // tranche, settled in block 8) passed off as this payment's.
    let mut x = p.clone();
    let other = settlement_of_the_tranche(&c);
    x.summary.settlement_height = Some(other.header.height);
    x.settlement = Some(other);
    assert_eq!(step_of(&x, &g), "settlement");

    // Requests for what was never paid.
    let mut r = request(&late);
    r.period = 9_999;
    assert!(matches!(
        payment_proof(&c.store, &r),
        Err(ProofError::NotFound(_))
    ));
    let mut r = request(&late);
    r.entitlement = Some("no-such-entitlement".parse().unwrap());
    assert!(matches!(
        payment_proof(&c.store, &r),
        Err(ProofError::NotFound(_))
    ));
    let mut r = request(&late);
    r.program = "no-such-program".parse().unwrap();
    assert!(matches!(
        payment_proof(&c.store, &r),
        Err(ProofError::NotFound(_))
    ));
    // The release is still there, unchanged by all of this.
    assert!(c
        .store
        .state_get(&keys::release(release))
        .unwrap()
        .is_some());
}

/// A store that lost a block's own events cannot give a proof of a
/// payment in it, and says so rather than giving one that does not check.
#[test]
fn a_store_missing_block_events_gives_no_proof() {
    use aidledger_storage::{keys as skeys, Cf};
    let dir = tempfile::tempdir().unwrap();
    let c = standard_chain(&dir.path().join("data"), 2);
    let e = household_payments(&c.state)[0].clone();
    c.store
        .raw_delete(Cf::BlockEvents, &skeys::height(e.height))
        .unwrap();
    assert!(matches!(
        payment_proof(&c.store, &request(&e)),
        Err(ProofError::Store(_))
    ));
    // Damaged rather than missing: a different list of events.
    c.store
        .raw_put(
            Cf::BlockEvents,
            &skeys::height(e.height),
            &codec::encode(&Vec::<aidledger_contracts::Event>::new()),
        )
        .unwrap();
    assert!(matches!(
        payment_proof(&c.store, &request(&e)),
        Err(ProofError::Store(_))
    ));
}

/// The certified settlement of the standard chain's tranche release (a
/// payment to an organisation, not a household), with its path.
fn settlement_of_the_tranche(c: &common::ChainBuilder) -> aidledger_audit::proof::EventInclusion {
    use aidledger_contracts::{Event, Receipt};
    for h in 1..=c.parent.height {
        let block = c.store.block(h).unwrap().unwrap();
        let ids: Vec<_> = block.txs.iter().map(|t| t.id()).collect();
        let receipts: Vec<Receipt> = c
            .store
            .tx_locations(&ids)
            .into_iter()
            .map(|r| codec::decode(&r.unwrap().unwrap().1).unwrap())
            .collect();
        let own: Vec<Event> = codec::decode(&c.store.block_events(h).unwrap().unwrap()).unwrap();
        let events: Vec<Event> = receipts
            .iter()
            .flat_map(|r| r.events.iter().cloned())
            .chain(own)
            .collect();
        let Some(i) = events.iter().position(|e| {
            matches!(&e.body, EventBody::Money(m) if m.flow == MoneyFlow::Expenditure
                && m.to != Party::Program(m.program.clone())
                && !matches!(m.to, Party::Household(_)))
        }) else {
            continue;
        };
        let leaves: Vec<_> = events.iter().map(|e| e.leaf_hash()).collect();
        return aidledger_audit::proof::EventInclusion {
            event: events[i].clone(),
            path: aidledger_types::merkle::prove(&leaves, i).unwrap(),
            header: block.header,
            certificate: c.store.certificate(h).unwrap().unwrap(),
        };
    }
    panic!("the standard chain settles its tranche release");
}
