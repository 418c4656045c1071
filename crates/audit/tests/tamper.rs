#![allow(clippy::unwrap_used)]
//! Tamper tests: a chain built with the real execution crate and committed
//! into a RocksStore, then altered the way an attacker with disk access
//! (or a byzantine quorum) could, and replayed. Each alteration must be
//! caught at the right height, with the right object and reason.

mod common;

use std::io::Cursor;

use aidledger_audit::chainfile::write_chain_file;
use aidledger_audit::{replay, FileSource, ReplayOptions, ReplayOutcome, StoreSource, NO_PROGRESS};
use aidledger_contracts::keys;
use aidledger_crypto::Keypair;
use aidledger_storage::{keys as skeys, Cf, RocksStore, Store};
use aidledger_types::{codec, Block, CommitCertificate};
use common::{built, certificate, vote_signature, Built};

fn opts() -> ReplayOptions {
    with_threads(2)
}

fn with_threads(threads: usize) -> ReplayOptions {
    ReplayOptions {
        threads,
        expected_genesis: None,
    }
}

fn audit_store(b: &Built) -> ReplayOutcome {
    let mut src = StoreSource::open_read_only(&b.data()).unwrap();
    replay(&mut src, &opts(), &NO_PROGRESS)
}

fn audit_bytes(bytes: Vec<u8>) -> ReplayOutcome {
    let mut src = FileSource::from_reader(Box::new(Cursor::new(bytes)), "memory".into());
    replay(&mut src, &opts(), &NO_PROGRESS)
}

/// Opens the built store read-write for tampering.
fn tamper(b: &Built, f: impl FnOnce(&RocksStore)) {
    let store = RocksStore::open(b.data()).unwrap();
    f(&store);
}

fn get_block(s: &RocksStore, h: u64) -> Block {
    s.block(h).unwrap().unwrap()
}
fn put_block(s: &RocksStore, b: &Block) {
    s.raw_put(Cf::Blocks, &skeys::height(b.height()), &codec::encode(b))
        .unwrap();
}
fn get_cert(s: &RocksStore, h: u64) -> CommitCertificate {
    s.certificate(h).unwrap().unwrap()
}
fn put_cert(s: &RocksStore, c: &CommitCertificate) {
    s.raw_put(
        Cf::Certificates,
        &skeys::height(c.height),
        &codec::encode(c),
    )
    .unwrap();
}

/// The failure, as a line, asserting there is one.
fn failed(o: &ReplayOutcome) -> String {
    o.failure
        .as_ref()
        .unwrap_or_else(|| panic!("replay verified a tampered chain: {:?}", o.summary))
        .to_string()
}

/// The state a failed replay hands back is the one after the last block
/// that verified: its root is the summary's, even where the failing
/// block had executed before the store's records of it were compared.
fn state_is_the_last_verified_blocks(o: &ReplayOutcome) {
    let state = o.state.as_ref().expect("a replayed state");
    assert_eq!(
        Some(state.accumulator().root()),
        o.summary.state_root,
        "the state handed back is not the last verified block's"
    );
}

#[test]
fn an_untouched_chain_verifies_following_the_validator_set_change() {
    let b = built(3);
    let o = audit_store(&b);
    assert!(o.failure.is_none(), "{:?}", o.failure);
    let s = &o.summary;
    assert_eq!(s.blocks, b.head);
    assert!(s.txs > 20, "{s:?}");
    assert_eq!(s.validator_set_changes, 1);
    assert_eq!(s.programs, 2);
    assert!(s.households >= 8, "{s:?}");
    assert!(s.releases >= 2, "{s:?}");
    assert_eq!(s.state_root, Some(b.last_state_root));
    assert_eq!(s.genesis_hash, Some(b.genesis.hash()));

    // One thread or many: the same verdict.
    let mut src = StoreSource::open_read_only(&b.data()).unwrap();
    let one = replay(
        &mut src,
        &ReplayOptions {
            threads: 1,
            expected_genesis: Some(b.genesis.hash()),
        },
        &NO_PROGRESS,
    );
    assert!(one.failure.is_none());
    assert_eq!(one.summary.state_root, s.state_root);
}

#[test]
fn a_genesis_other_than_the_trusted_one_fails_at_height_0() {
    let b = built(2);
    let mut src = StoreSource::open_read_only(&b.data()).unwrap();
    let o = replay(
        &mut src,
        &ReplayOptions {
            threads: 2,
            expected_genesis: Some(aidledger_types::Hash([7; 32])),
        },
        &NO_PROGRESS,
    );
    assert!(
        failed(&o).starts_with("height 0: genesis hash"),
        "{}",
        failed(&o)
    );
}

#[test]
fn an_altered_block_header_is_caught_by_its_certificate() {
    let b = built(2);
    tamper(&b, |s| {
        let mut blk = get_block(s, 5);
        blk.header.timestamp = blk.header.timestamp.saturating_add_ms(1);
        put_block(s, &blk);
    });
    let o = audit_store(&b);
    let f = o.failure.clone().unwrap();
    assert_eq!(f.height, Some(5), "{f}");
    assert_eq!(f.object, "certificate", "{f}");
    assert!(f.reason.starts_with("is for block"), "{f}");
    assert_eq!(o.summary.blocks, 4, "blocks before the failure verified");
}

#[test]
fn a_flipped_byte_in_a_stored_block_is_caught_at_its_height() {
    // The last byte of block 1 is inside its last transaction's signature;
    // the middle byte is somewhere in a transaction body.
    for pick in [usize::MAX, 0usize] {
        let b = built(2);
        tamper(&b, |s| {
            let mut raw = s.raw_get(Cf::Blocks, &skeys::height(1)).unwrap().unwrap();
            let i = if pick == usize::MAX {
                raw.len() - 1
            } else {
                raw.len() / 2
            };
            raw[i] ^= 0x40;
            s.raw_put(Cf::Blocks, &skeys::height(1), &raw).unwrap();
        });
        let o = audit_store(&b);
        let f = o.failure.clone().unwrap();
        assert_eq!(f.height, Some(1), "{f}");
        assert!(
            ["tx root", "block", "certificate"].contains(&f.object.as_str()),
            "{f}"
        );
    }
    // A cut that breaks the encoding itself.
    let b = built(2);
    tamper(&b, |s| {
        let mut raw = s.raw_get(Cf::Blocks, &skeys::height(3)).unwrap().unwrap();
        raw.truncate(raw.len() - 3);
        s.raw_put(Cf::Blocks, &skeys::height(3), &raw).unwrap();
    });
    let f = audit_store(&b).failure.unwrap();
    assert_eq!(f.height, Some(3), "{f}");
    assert_eq!(f.object, "block");
    assert!(f.reason.starts_with("does not decode"), "{f}");
}

#[test]
fn a_bad_signature_in_a_body_the_header_does_not_commit_to_is_reported_as_the_body() {
    // A changed signature also changes the transaction's witness hash, so
    // the body no longer matches the header's tx root. The replay checks
    // signatures first (the body check reuses the ids they hashed), but
    // the block's failure is still its body, as before that order changed.
    let b = built(2);
    tamper(&b, |s| {
        let mut blk = get_block(s, 1);
        let last = blk.txs.len() - 1;
        blk.txs[last].signature.0[0] ^= 0x01;
        put_block(s, &blk);
    });
    let o = audit_store(&b);
    let f = o.failure.clone().unwrap();
    assert_eq!(f.height, Some(1), "{f}");
    assert_eq!(f.object, "tx root", "{f}");
    assert_eq!(o.summary.blocks, 0, "nothing after genesis verified");
}

#[test]
fn reordered_transactions_are_caught_by_the_tx_root() {
    let b = built(2);
    tamper(&b, |s| {
        let mut blk = get_block(s, 1);
        assert!(blk.txs.len() >= 2);
        blk.txs.swap(0, 1);
        put_block(s, &blk);
    });
    let f = audit_store(&b).failure.unwrap();
    assert_eq!(f.to_string().split(':').next(), Some("height 1"));
    assert_eq!(f.object, "tx root");
    assert!(f.reason.contains("reordered"), "{f}");
}

#[test]
fn a_dropped_block_is_named() {
    let b = built(2);
    tamper(&b, |s| {
        s.raw_delete(Cf::Blocks, &skeys::height(4)).unwrap();
    });
    let o = audit_store(&b);
    assert_eq!(failed(&o), "height 4: block missing");
    assert_eq!(o.summary.blocks, 3);
}

#[test]
fn a_certificate_short_of_a_quorum_is_named() {
    let b = built(2);
    tamper(&b, |s| {
        let mut c = get_cert(s, 3);
        assert_eq!(c.signatures.len(), 3);
        c.signatures.pop();
        put_cert(s, &c);
    });
    assert_eq!(
        failed(&audit_store(&b)),
        "height 3: certificate has 2 of 3 required signatures"
    );
}

#[test]
fn a_flipped_byte_in_a_certificate_is_caught() {
    let b = built(2);
    tamper(&b, |s| {
        let mut raw = s
            .raw_get(Cf::Certificates, &skeys::height(2))
            .unwrap()
            .unwrap();
        let n = raw.len();
        raw[n - 5] ^= 0x01; // inside the last signature
        s.raw_put(Cf::Certificates, &skeys::height(2), &raw)
            .unwrap();
    });
    let line = failed(&audit_store(&b));
    assert!(
        line.starts_with("height 2: certificate signature of validator 2"),
        "{line}"
    );
    assert!(line.ends_with("is invalid"), "{line}");
}

#[test]
fn a_certificate_forged_with_a_non_validator_key_is_rejected() {
    let b = built(2);
    let outsider = Keypair::from_seed([42u8; 32]);
    let chain = b.genesis.chain_id.clone();
    // One signature replaced by an outsider's, under a validator's index.
    tamper(&b, |s| {
        let mut c = get_cert(s, 2);
        c.signatures[1] = vote_signature(&chain, &c, &outsider, 1, c.signatures[1].time);
        put_cert(s, &c);
    });
    assert_eq!(
        failed(&audit_store(&b)),
        "height 2: certificate signature of validator 1 (dev-bank) is invalid"
    );

    // After governance removed the finance bureau, its key is a
    // non-validator key too: a certificate counting it is refused even
    // though it was a validator before.
    let b = built(2);
    let h = b.set_changed_at + 1;
    let fb = b.validator_keys[&"finance-bureau".parse().unwrap()].clone();
    tamper(&b, |s| {
        let mut c = get_cert(s, h);
        c.signatures.truncate(1);
        c.signatures
            .push(vote_signature(&chain, &c, &fb, 3, c.signatures[0].time));
        put_cert(s, &c);
    });
    assert_eq!(
        failed(&audit_store(&b)),
        format!("height {h}: certificate signer index 3 is not in the validator set of 3")
    );
}

#[test]
fn the_auditor_follows_governance_not_the_old_validator_set() {
    // Certificates after the change carry 2 signatures: a quorum of the
    // new set of 3, not of the old set of 4 (which needs 3).
    let b = built(2);
    let s = RocksStore::open_read_only(b.data()).unwrap();
    let before = s.certificate(b.set_changed_at).unwrap().unwrap();
    let after = s.certificate(b.set_changed_at + 1).unwrap().unwrap();
    assert_eq!(before.signatures.len(), 3);
    assert_eq!(after.signatures.len(), 2);
    drop(s);
    assert!(audit_store(&b).failure.is_none());
}

#[test]
fn flipped_state_is_caught_at_the_head() {
    let b = built(2);
    let key = keys::program(&"road-fund".parse().unwrap());
    tamper(&b, |s| {
        let mut v = s.raw_get(Cf::State, &key).unwrap().unwrap();
        let n = v.len();
        v[n - 20] ^= 0x01;
        s.raw_put(Cf::State, &key, &v).unwrap();
    });
    let f = audit_store(&b).failure.unwrap();
    assert_eq!(f.height, Some(b.head), "{f}");
    assert_eq!(f.object, "state");
    assert_eq!(
        f.reason,
        "key prog/road-fund: stored value differs from the replayed value"
    );

    // A key added behind the contracts' back.
    let b = built(2);
    tamper(&b, |s| {
        s.raw_put(Cf::State, b"prog/ghost-fund", b"x").unwrap();
    });
    let f = audit_store(&b).failure.unwrap();
    assert_eq!(f.height, Some(b.head));
    assert!(f.reason.contains("prog/ghost-fund"), "{f}");
}

#[test]
fn a_tampered_transaction_index_is_caught() {
    let b = built(2);
    tamper(&b, |s| {
        let tx = get_block(s, 2).txs[0].id();
        s.raw_delete(Cf::TxIndex, &skeys::tx(&tx)).unwrap();
    });
    let o = audit_store(&b);
    assert_eq!(
        failed(&o),
        "height 2: tx 0 is missing from the transaction index"
    );
    assert_eq!(o.summary.blocks, 1);
    state_is_the_last_verified_blocks(&o);
}

/// Receipts live apart from the index (ADR 025): one altered, one lost and
/// one moved under another transaction's location are each named.
#[test]
fn a_tampered_or_lost_receipt_is_caught() {
    // A block with two transactions, to move a receipt within it.
    let b = built(2);
    let h = {
        let s = RocksStore::open_read_only(b.data()).unwrap();
        (1..=b.head)
            .find(|&h| get_block(&s, h).txs.len() >= 2)
            .expect("a block with two transactions")
    };
    tamper(&b, |s| {
        let key = skeys::receipt(h, 1);
        let mut r = s.raw_get(Cf::Receipts, &key).unwrap().unwrap();
        let last = r.len() - 1;
        r[last] ^= 0x01;
        s.raw_put(Cf::Receipts, &key, &r).unwrap();
    });
    let o = audit_store(&b);
    assert_eq!(
        failed(&o),
        format!("height {h}: tx 1 stored receipt differs from the replayed receipt")
    );
    state_is_the_last_verified_blocks(&o);

    let b = built(2);
    tamper(&b, |s| {
        s.raw_delete(Cf::Receipts, &skeys::receipt(h, 0)).unwrap();
    });
    let f = failed(&audit_store(&b));
    assert!(
        f.starts_with(&format!(
            "height {h}: tx 0 index entry or receipt cannot be read"
        )),
        "{f}"
    );
    assert!(f.contains("receipts"), "{f}");

    // A receipt of the same block copied over another: both decode, and
    // the replay still tells them apart.
    let b = built(2);
    tamper(&b, |s| {
        let first = s
            .raw_get(Cf::Receipts, &skeys::receipt(h, 0))
            .unwrap()
            .unwrap();
        s.raw_put(Cf::Receipts, &skeys::receipt(h, 1), &first)
            .unwrap();
    });
    let f = failed(&audit_store(&b));
    assert_eq!(
        f,
        format!("height {h}: tx 1 stored receipt differs from the replayed receipt")
    );
}

/// A byzantine quorum (all validator keys) certifies blocks that break
/// the rules; the replay still catches them, as the examples say.
#[test]
fn a_certified_block_with_a_bad_signature_or_state_root_is_caught() {
    let b = built(2);
    let h = b.head;
    let chain = b.genesis.chain_id.clone();
    let keys = b.validator_keys.clone();
    // After the governance change the set is the first three validators.
    let set = aidledger_types::ValidatorSet::new(b.genesis.validators.validators()[..3].to_vec())
        .unwrap();
    let certify = |s: &RocksStore, blk: &Block| {
        put_block(s, blk);
        put_cert(s, &certificate(&chain, &set, &keys, blk, 2));
    };
    tamper(&b, |s| {
        let mut blk = get_block(s, h);
        let i = blk.txs.len() - 1;
        blk.txs[i].signature.0[10] ^= 0x01;
        blk.header.tx_root = Block::compute_tx_root(&blk.txs);
        certify(s, &blk);
    });
    let n = {
        let s = RocksStore::open_read_only(b.data()).unwrap();
        get_block(&s, h).txs.len() - 1
    };
    assert_eq!(
        failed(&audit_store(&b)),
        format!("height {h}: tx {n} signature invalid")
    );

    let b2 = built(2);
    tamper(&b2, |s| {
        let mut blk = get_block(s, h);
        blk.header.state_root = aidledger_types::Hash([9; 32]);
        certify(s, &blk);
    });
    let o = audit_store(&b2);
    assert!(
        failed(&o).starts_with(&format!("height {h}: state root mismatch")),
        "{}",
        failed(&o)
    );
    state_is_the_last_verified_blocks(&o);
}

/// A byzantine quorum certifies a block that holds a transaction already
/// on the chain (the halt and the replay of issue 12): the replay refuses
/// it at that height, from the store and from an export, and says the
/// transaction may not be included again.
#[test]
fn a_certified_block_repeating_an_earlier_transaction_is_refused() {
    let b = built(2);
    let h = b.head;
    let chain = b.genesis.chain_id.clone();
    let keys = b.validator_keys.clone();
    let set = aidledger_types::ValidatorSet::new(b.genesis.validators.validators()[..3].to_vec())
        .unwrap();
    let mut repeated = None;
    tamper(&b, |s| {
        // The first transaction of block 1, appended to the head block.
        let first = get_block(s, 1).txs[0].clone();
        repeated = Some(first.id());
        let mut blk = get_block(s, h);
        blk.txs.push(first);
        blk.header.tx_count += 1;
        blk.header.tx_root = Block::compute_tx_root(&blk.txs);
        put_block(s, &blk);
        put_cert(s, &certificate(&chain, &set, &keys, &blk, 2));
    });
    let n = {
        let s = RocksStore::open_read_only(b.data()).unwrap();
        get_block(&s, h).txs.len() - 1
    };
    let line = failed(&audit_store(&b));
    assert!(
        line.starts_with(&format!(
            "height {h}: tx {n} transaction {}",
            repeated.unwrap().short()
        )),
        "{line}"
    );
    assert!(line.contains("may not be included"), "{line}");
    assert!(line.contains("wrong nonce"), "{line}");
    let from_file = failed(&audit_bytes(export(&b)));
    assert_eq!(from_file, line, "the export fails the same way");
}

fn export(b: &Built) -> Vec<u8> {
    let s = RocksStore::open_read_only(b.data()).unwrap();
    let mut out = Vec::new();
    let summary = write_chain_file(&s, &mut out).unwrap();
    assert_eq!(summary.blocks, b.head);
    assert_eq!(summary.bytes as usize, out.len());
    out
}

#[test]
fn an_exported_chain_file_replays() {
    let b = built(2);
    let bytes = export(&b);
    let o = audit_bytes(bytes);
    assert!(o.failure.is_none(), "{:?}", o.failure);
    assert_eq!(o.summary.blocks, b.head);
    assert_eq!(o.summary.state_root, Some(b.last_state_root));
}

#[test]
fn a_single_flipped_byte_anywhere_in_an_export_fails_replay() {
    let b = built(2);
    let good = export(&b);
    let n = good.len();
    // Every byte of the head and the tail (magic, version, header, genesis
    // start; end tag, count, digest) and an even spread through the rest:
    // about 600 positions, each a full replay.
    let mut positions: Vec<usize> = (0..n.min(200)).collect();
    positions.extend(n.saturating_sub(64)..n);
    let step = (n / 400).max(1);
    positions.extend((0..n).step_by(step));
    positions.sort_unstable();
    positions.dedup();
    for (k, &i) in positions.iter().enumerate() {
        let mut bad = good.clone();
        bad[i] ^= [0x01, 0x80, 0xff][k % 3];
        let o = audit_bytes(bad);
        assert!(
            o.failure.is_some(),
            "flipping byte {i} of {n} was not detected"
        );
    }
    // Truncated or extended files fail too.
    assert!(audit_bytes(good[..n - 1].to_vec()).failure.is_some());
    let mut longer = good.clone();
    longer.push(0);
    assert!(audit_bytes(longer).failure.is_some());
}

#[test]
fn a_block_altered_in_an_export_is_pinpointed_even_with_a_fresh_digest() {
    // Someone rewrites a block in the file and recomputes the digest: the
    // digest no longer helps, the block checks still do.
    let b = built(2);
    tamper(&b, |s| {
        let mut blk = get_block(s, 6);
        blk.header.view += 1;
        put_block(s, &blk);
    });
    let bytes = export(&b);
    let f = audit_bytes(bytes).failure.unwrap();
    assert_eq!(f.height, Some(6), "{f}");
    assert_eq!(f.object, "certificate", "{f}");
}

#[test]
fn oversized_lengths_in_an_export_are_refused_before_allocating() {
    let b = built(2);
    let mut bytes = export(&b);
    // The header length field follows the 16-byte magic and the version.
    bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let f = audit_bytes(bytes).failure.unwrap();
    assert!(f.reason.contains("over the limit"), "{f}");
}

#[test]
fn replay_reads_a_store_that_a_running_node_holds_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The builder keeps the store open read-write, as a node does.
    let mut c = common::standard_chain(&data, 2);
    let mut src = StoreSource::open_read_only(&data).unwrap();
    let o = replay(&mut src, &opts(), &NO_PROGRESS);
    assert!(o.failure.is_none(), "{:?}", o.failure);
    assert_eq!(o.summary.blocks, c.parent.height);
    // The node goes on committing; a fresh read-only open sees the new block.
    let txs = c.f.workload_block(99);
    c.ok(txs);
    let mut src = StoreSource::open_read_only(&data).unwrap();
    let o = replay(&mut src, &opts(), &NO_PROGRESS);
    assert!(o.failure.is_none(), "{:?}", o.failure);
    assert_eq!(o.summary.blocks, c.parent.height);
}

#[test]
fn an_empty_chain_verifies_from_the_store_and_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let c = common::ChainBuilder::new(&data);
    let root = c.acc.root();
    drop(c);
    let mut src = StoreSource::open_read_only(&data).unwrap();
    let o = replay(&mut src, &opts(), &NO_PROGRESS);
    assert!(o.failure.is_none(), "{:?}", o.failure);
    assert_eq!((o.summary.blocks, o.summary.state_root), (0, Some(root)));
    let s = RocksStore::open_read_only(&data).unwrap();
    let mut bytes = Vec::new();
    write_chain_file(&s, &mut bytes).unwrap();
    let o = audit_bytes(bytes);
    assert!(o.failure.is_none(), "{:?}", o.failure);
    assert_eq!(o.summary.blocks, 0);
}

#[test]
fn the_first_failure_does_not_depend_on_the_thread_count() {
    // Two alterations; the lower height is reported whichever thread
    // checks which block first.
    let b = built(2);
    tamper(&b, |s| {
        let mut blk = get_block(s, 5);
        assert!(blk.txs.len() >= 2);
        blk.txs.reverse();
        put_block(s, &blk);
        let mut c = get_cert(s, 3);
        c.signatures.pop();
        put_cert(s, &c);
    });
    for threads in [1, 2, 3, 8] {
        let mut src = StoreSource::open_read_only(&b.data()).unwrap();
        let o = replay(&mut src, &with_threads(threads), &NO_PROGRESS);
        assert_eq!(
            failed(&o),
            "height 3: certificate has 2 of 3 required signatures",
            "{threads} threads"
        );
    }
}

/// The block's own events, which payment proofs are built from, are
/// compared with the replay's: a store that lost or altered them is
/// named, so a node that would hand out proofs from them is caught.
#[test]
fn altered_or_lost_block_events_are_named() {
    let b = built(2);
    let none = codec::encode(&Vec::<aidledger_contracts::Event>::new());
    let mut at = 0;
    tamper(&b, |s| {
        // The first block that released or paid something at its end.
        at = (1..=b.head)
            .find(|h| {
                s.raw_get(Cf::BlockEvents, &skeys::height(*h))
                    .unwrap()
                    .is_some_and(|v| v != none)
            })
            .expect("a block with events of its own");
        s.raw_put(Cf::BlockEvents, &skeys::height(at), &none)
            .unwrap();
    });
    let line = failed(&audit_store(&b));
    assert_eq!(
        line,
        format!("height {at}: block events differ from the replayed ones")
    );
    let b = built(2);
    tamper(&b, |s| {
        s.raw_delete(Cf::BlockEvents, &skeys::height(3)).unwrap();
    });
    assert_eq!(
        failed(&audit_store(&b)),
        "height 3: block events are missing from the store"
    );
}

/// A chain longer than one of the replay's windows (256 blocks): the
/// window after the first is verified while the first executes, by the
/// other threads and then by the executing one. Every thread count gives
/// the same summary untouched, and the same first failure, with the same
/// blocks verified before it, whether the damage is in the first window,
/// in the second, or in both (the first window's failure stops the
/// replay before the second's is reported).
#[test]
fn a_chain_of_several_windows_gives_one_verdict_for_every_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let built = aidledger_audit::synth::build_chain(&data, 300, 1, 2).unwrap();
    assert!(built.blocks > 256, "{} blocks", built.blocks);
    let run = |threads: usize| {
        let mut src = StoreSource::open_read_only(&data).unwrap();
        let o = replay(&mut src, &with_threads(threads), &NO_PROGRESS);
        (o.failure.as_ref().map(ToString::to_string), o.summary)
    };
    for threads in [1, 2, 3] {
        let (failure, s) = run(threads);
        assert_eq!(failure, None, "{threads} threads");
        assert_eq!(s.blocks, built.blocks, "{threads} threads");
        assert_eq!(s.txs, built.txs, "{threads} threads");
        assert_eq!(s.state_root, Some(built.head_state_root));
    }
    let drop_signature = |h: u64| {
        let store = RocksStore::open(&data).unwrap();
        let mut c = get_cert(&store, h);
        c.signatures.pop();
        put_cert(&store, &c);
    };
    // In the second window only.
    drop_signature(280);
    for threads in [1, 2, 3] {
        let (failure, s) = run(threads);
        let failure = failure.unwrap_or_else(|| panic!("{threads} threads verified"));
        assert!(failure.starts_with("height 280: certificate"), "{failure}");
        assert_eq!(s.blocks, 279, "{threads} threads");
    }
    // And in the first: that one is reported, after the blocks below it.
    drop_signature(100);
    for threads in [1, 2, 3] {
        let (failure, s) = run(threads);
        let failure = failure.unwrap_or_else(|| panic!("{threads} threads verified"));
        assert!(failure.starts_with("height 100: certificate"), "{failure}");
        assert_eq!(s.blocks, 99, "{threads} threads");
    }
}

/// A store that answers like the one it wraps, except that its `n`th
/// read of index entries panics: a fault inside the replay's checks, on
/// whichever thread checks that block.
struct PanicsOnIndexRead {
    inner: std::sync::Arc<dyn Store>,
    calls: std::sync::atomic::AtomicUsize,
    n: usize,
}

/// A source that reads like the store source it wraps, except that its
/// check of block `at` panics: a fault on the executing thread while the
/// other threads wait for blocks to check.
struct PanicsInCheckBlock {
    inner: StoreSource,
    at: u64,
}

impl aidledger_audit::ChainSource for PanicsInCheckBlock {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn genesis(&mut self) -> Result<aidledger_contracts::Genesis, aidledger_audit::Failure> {
        self.inner.genesis()
    }
    fn expected_blocks(&self) -> Option<u64> {
        self.inner.expected_blocks()
    }
    fn next_entry(&mut self) -> Option<Result<aidledger_audit::Entry, aidledger_audit::Failure>> {
        self.inner.next_entry()
    }
    fn check_block(
        &mut self,
        block: &Block,
        ids: &[aidledger_types::Hash],
        outcome: &aidledger_execution::BlockOutcome,
        index: Option<
            Vec<Result<Option<aidledger_storage::TxIndexed>, aidledger_storage::StorageError>>,
        >,
    ) -> Result<(), aidledger_audit::Failure> {
        assert!(
            block.height() != self.at,
            "injected fault at height {}",
            self.at
        );
        self.inner.check_block(block, ids, outcome, index)
    }
    fn index_reader(&self) -> Option<std::sync::Arc<dyn Store>> {
        self.inner.index_reader()
    }
    fn check_end(
        &mut self,
        end: &aidledger_audit::ReplayEnd<'_>,
    ) -> Result<(), aidledger_audit::Failure> {
        self.inner.check_end(end)
    }
}

mod delegate {
    use super::PanicsOnIndexRead;
    use aidledger_storage::{
        CommitBatch, Head, KeyValues, PendingParent, StorageError, Store, TxIndexed,
    };
    use aidledger_types::snapshot::{SetChange, SnapshotManifest};
    use aidledger_types::{Block, CommitCertificate, Hash, IdentifiedBlock, StateAccumulator};
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;

    type R<T> = Result<T, StorageError>;

    impl Store for PanicsOnIndexRead {
        fn tx_locations(&self, ids: &[Hash]) -> Vec<R<Option<TxIndexed>>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(call != self.n, "injected fault in index read {call}");
            self.inner.tx_locations(ids)
        }
        fn head(&self) -> R<Option<Head>> {
            self.inner.head()
        }
        fn block(&self, h: u64) -> R<Option<Block>> {
            self.inner.block(h)
        }
        fn block_hash(&self, h: u64) -> R<Option<Hash>> {
            self.inner.block_hash(h)
        }
        fn certificate(&self, h: u64) -> R<Option<CommitCertificate>> {
            self.inner.certificate(h)
        }
        fn block_events(&self, h: u64) -> R<Option<Vec<u8>>> {
            self.inner.block_events(h)
        }
        fn tx_location(&self, id: &Hash) -> R<Option<TxIndexed>> {
            self.inner.tx_location(id)
        }
        fn state_get(&self, key: &[u8]) -> R<Option<Vec<u8>>> {
            self.inner.state_get(key)
        }
        fn state_scan(&self, p: &[u8], a: Option<&[u8]>, l: usize) -> R<KeyValues> {
            self.inner.state_scan(p, a, l)
        }
        fn accumulator(&self) -> R<StateAccumulator> {
            self.inner.accumulator()
        }
        fn commit_block(&self, b: CommitBatch) -> R<()> {
            self.inner.commit_block(b)
        }
        fn check_commit_block(
            &self,
            block: &IdentifiedBlock,
            writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
            receipts: &[Vec<u8>],
            events: &[u8],
            acc: &StateAccumulator,
            pending: Option<&PendingParent<'_>>,
        ) -> R<()> {
            self.inner
                .check_commit_block(block, writes, receipts, events, acc, pending)
        }
        fn put_genesis(
            &self,
            hash: Hash,
            bytes: Vec<u8>,
            state: BTreeMap<Vec<u8>, Vec<u8>>,
            acc: StateAccumulator,
        ) -> R<()> {
            self.inner.put_genesis(hash, bytes, state, acc)
        }
        fn genesis(&self) -> R<Option<(Hash, Vec<u8>)>> {
            self.inner.genesis()
        }
        fn put_safety_state(&self, bytes: &[u8]) -> R<()> {
            self.inner.put_safety_state(bytes)
        }
        fn safety_state(&self) -> R<Option<Vec<u8>>> {
            self.inner.safety_state()
        }
        fn meta_get(&self, key: &str) -> R<Option<Vec<u8>>> {
            self.inner.meta_get(key)
        }
        fn meta_put(&self, key: &str, value: &[u8]) -> R<()> {
            self.inner.meta_put(key, value)
        }
        fn base(&self) -> R<u64> {
            self.inner.base()
        }
        fn snapshot_begin(&self, hash: Hash, bytes: Vec<u8>, height: u64) -> R<()> {
            self.inner.snapshot_begin(hash, bytes, height)
        }
        fn snapshot_put_chunk(&self, height: u64, pairs: &[(Vec<u8>, Vec<u8>)]) -> R<()> {
            self.inner.snapshot_put_chunk(height, pairs)
        }
        fn snapshot_finish(&self, m: &SnapshotManifest, c: &[SetChange]) -> R<Head> {
            self.inner.snapshot_finish(m, c)
        }
        fn set_changes(&self, after: u64, limit: usize) -> R<Vec<SetChange>> {
            self.inner.set_changes(after, limit)
        }
        fn snapshot_installing(&self) -> R<Option<u64>> {
            self.inner.snapshot_installing()
        }
    }
}

/// A panic inside the replay's checks, on whichever thread meets it, ends
/// the replay with that panic: no thread is left waiting for a block the
/// panicking one held, nor for more blocks once the executing thread
/// panicked (the replay runs on its own thread here, so a hang fails the
/// test after a minute instead of holding the suite).
#[test]
fn a_panic_while_checking_a_block_ends_the_replay_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    aidledger_audit::synth::build_chain(&data, 300, 1, 2).unwrap();
    // A fault in an index read, in the first window and in the second, on
    // whichever thread checks that block; and one on the executing thread
    // (`check_block`), in each window.
    for (threads, n, in_check_block) in [
        (1, 5, false),
        (2, 5, false),
        (2, 270, false),
        (3, 120, false),
        (2, 3, true),
        (2, 280, true),
        (3, 3, true),
    ] {
        let data = data.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let store: std::sync::Arc<dyn Store> =
                std::sync::Arc::new(RocksStore::open_read_only(&data).unwrap());
            let mut src: Box<dyn aidledger_audit::ChainSource> = if in_check_block {
                Box::new(PanicsInCheckBlock {
                    inner: StoreSource::new(store, "faulty".into()),
                    at: n as u64,
                })
            } else {
                let faulty = PanicsOnIndexRead {
                    inner: store,
                    calls: std::sync::atomic::AtomicUsize::new(0),
                    n,
                };
                Box::new(StoreSource::new(
                    std::sync::Arc::new(faulty),
                    "faulty".into(),
                ))
            };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                replay(src.as_mut(), &with_threads(threads), &NO_PROGRESS)
                    .summary
                    .blocks
            }));
            let _ = tx.send(r.is_err());
        });
        let panicked = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{threads} threads, fault {n} (in check_block: {in_check_block}): the replay hung"));
        assert!(
            panicked,
            "{threads} threads, fault {n} (in check_block: {in_check_block}): no panic"
        );
    }
}

/// The replay checks a store's transaction index as one set (ADR 008,
/// "the index as one set") and, after any failure, replays again block by
/// block. Whatever was done to the index and the receipts, alone or
/// beside another fault, the outcome is the block-by-block replay's: the
/// same failure, the same summary and the same state handed back.
#[test]
fn the_index_checked_whole_gives_the_block_by_block_verdict() {
    use aidledger_audit::ChainSource;
    use aidledger_storage::TxLocation;
    use std::sync::Arc;

    let at = |h: u64, index: u32| codec::encode(&TxLocation { height: h, index });
    let stranger = aidledger_types::Hash([0x5a; 32]);
    type Tamper = Box<dyn Fn(&RocksStore)>;
    let cases: Vec<(&str, Tamper, Option<&str>)> = vec![
        ("untouched", Box::new(|_s: &RocksStore| {}), None),
        (
            "an entry deleted",
            Box::new(|s: &RocksStore| {
                let id = get_block(s, 2).txs[0].id();
                s.raw_delete(Cf::TxIndex, &skeys::tx(&id)).unwrap();
            }),
            Some("height 2: tx 0 is missing from the transaction index"),
        ),
        (
            "an entry pointing elsewhere",
            Box::new(move |s: &RocksStore| {
                let id = get_block(s, 3).txs[0].id();
                s.raw_put(Cf::TxIndex, &skeys::tx(&id), &at(2, 0)).unwrap();
            }),
            Some("height 3: tx 0 is indexed at height 2 index 0 instead"),
        ),
        (
            "an entry deleted below an altered receipt",
            Box::new(|s: &RocksStore| {
                let id = get_block(s, 2).txs[0].id();
                s.raw_delete(Cf::TxIndex, &skeys::tx(&id)).unwrap();
                let key = skeys::receipt(4, 0);
                let mut r = s.raw_get(Cf::Receipts, &key).unwrap().unwrap();
                r[0] ^= 1;
                s.raw_put(Cf::Receipts, &key, &r).unwrap();
            }),
            Some("height 2: tx 0 is missing from the transaction index"),
        ),
        (
            "an entry for a transaction not in the chain",
            Box::new(move |s: &RocksStore| {
                s.raw_put(Cf::TxIndex, &skeys::tx(&stranger), &at(2, 0))
                    .unwrap();
            }),
            Some("transaction index holds entries for transactions not in the chain"),
        ),
        (
            "an undecodable entry for a transaction not in the chain",
            Box::new(move |s: &RocksStore| {
                s.raw_put(Cf::TxIndex, &skeys::tx(&stranger), b"\x01\x02")
                    .unwrap();
            }),
            Some("transaction index cannot be read whole"),
        ),
        (
            "an undecodable entry of the chain",
            Box::new(|s: &RocksStore| {
                let id = get_block(s, 3).txs[0].id();
                s.raw_put(Cf::TxIndex, &skeys::tx(&id), b"\x01\x02")
                    .unwrap();
            }),
            Some("height 3: tx 0 index entry or receipt cannot be read"),
        ),
    ];
    for (what, f, expected) in cases {
        let b = built(2);
        tamper(&b, f);
        let store: Arc<dyn Store> = Arc::new(RocksStore::open_read_only(b.data()).unwrap());
        let label = b.data().display().to_string();
        // A store of the current form is checked whole.
        let mut probe = StoreSource::new(store.clone(), label.clone());
        probe.begin(2);
        let whole = probe.receipts_by_height();
        let mut src = StoreSource::new(store.clone(), label.clone());
        let fast = replay(&mut src, &opts(), &NO_PROGRESS);
        let mut src = StoreSource::checking_index_per_block(store, label);
        let slow = replay(&mut src, &opts(), &NO_PROGRESS);
        let line = |o: &ReplayOutcome| o.failure.as_ref().map(ToString::to_string);
        match expected {
            None => {
                assert!(whole, "{what}: not checked whole");
                assert_eq!(line(&fast), None, "{what}");
            }
            Some(e) => {
                let got = line(&fast).unwrap_or_else(|| panic!("{what}: verified"));
                assert!(got.starts_with(e), "{what}: {got}");
            }
        }
        assert_eq!(line(&fast), line(&slow), "{what}");
        assert_eq!(fast.summary, slow.summary, "{what}");
        assert_eq!(
            fast.state.as_ref().map(|s| s.accumulator().root()),
            slow.state.as_ref().map(|s| s.accumulator().root()),
            "{what}"
        );
        state_is_the_last_verified_blocks(&fast);
    }
}

/// A store upgraded in place holds index entries of the form before
/// ADR 025 (the receipt inside the entry): its index is checked entry by
/// entry, and it verifies.
#[test]
fn a_store_with_entries_of_the_older_form_is_checked_entry_by_entry() {
    use aidledger_audit::ChainSource;
    use aidledger_storage::{LegacyTxEntry, TxLocation};
    use std::sync::Arc;

    let b = built(2);
    tamper(&b, |s| {
        let id = get_block(s, 2).txs[0].id();
        let key = skeys::receipt(2, 0);
        let receipt = s.raw_get(Cf::Receipts, &key).unwrap().unwrap();
        let entry = LegacyTxEntry {
            location: TxLocation {
                height: 2,
                index: 0,
            },
            receipt,
        };
        s.raw_put(Cf::TxIndex, &skeys::tx(&id), &codec::encode(&entry))
            .unwrap();
        s.raw_delete(Cf::Receipts, &key).unwrap();
    });
    let store: Arc<dyn Store> = Arc::new(RocksStore::open_read_only(b.data()).unwrap());
    let mut src = StoreSource::new(store, "upgraded".into());
    src.begin(2);
    assert!(!src.receipts_by_height());
    let o = audit_store(&b);
    assert!(o.verified(), "{:?}", o.failure);
}
