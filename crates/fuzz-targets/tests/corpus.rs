#![allow(clippy::unwrap_used)]
//! The fuzz corpus (`fuzz/corpus/<target>/`, seeds and what the fuzzer
//! kept, minimised) replayed through the targets on stable: a finding
//! that was minimised into the corpus stays fixed. The seeds are real
//! transactions, blocks, certificates, chain files and conditions, built
//! by `seed_corpus` below; a test checks the committed ones against it.

use std::path::{Path, PathBuf};

use aidledger_fuzz_targets::TARGETS;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn every_target_has_a_corpus_and_replays_it_without_a_panic() {
    let mut total = 0;
    for (name, target) in TARGETS {
        let dir = corpus_dir().join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name} has no corpus");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            target(&data);
        }
        total += files.len();
        eprintln!("{name}: {} inputs", files.len());
    }
    assert!(total >= TARGETS.len());
}

/// Truncations and single-byte changes of every corpus input: the
/// decoders refuse or accept them, never panic. (A cheap, exhaustive
/// sweep beside the fuzzer's random one.)
#[test]
fn damaged_corpus_inputs_never_panic() {
    for (name, target) in TARGETS {
        let dir = corpus_dir().join(name);
        for e in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(e.unwrap().path()).unwrap();
            if data.len() > 4096 {
                continue;
            }
            for cut in 0..data.len() {
                target(&data[..cut]);
            }
            for i in 0..data.len() {
                let mut d = data.clone();
                d[i] ^= 0xff;
                target(&d);
            }
        }
    }
}

/// Setting this rewrites the committed seeds from the generator.
const WRITE_SEEDS_ENV: &str = "AIDLEDGER_WRITE_SEEDS";

/// The committed seeds (`fuzz/corpus/<target>/seed-*`) are exactly the
/// real values the generator below builds, and every one is accepted by
/// its decoder (the generator checks it), so a format change that makes
/// a seed stale fails here. With `AIDLEDGER_WRITE_SEEDS=1`, the test
/// writes them instead:
/// `AIDLEDGER_WRITE_SEEDS=1 cargo test --release -p aidledger-fuzz-targets --test corpus`.
#[test]
fn the_committed_seeds_are_the_real_values_the_generator_builds() {
    let seeds = seed_corpus();
    let write = std::env::var_os(WRITE_SEEDS_ENV).is_some();
    let mut per_target = std::collections::BTreeMap::new();
    for (target, name, data) in &seeds {
        let dir = corpus_dir().join(target);
        let path = dir.join(format!("seed-{name}"));
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, data).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; write the seeds with {WRITE_SEEDS_ENV}=1",
                    path.display()
                )
            });
            assert!(
                committed == *data,
                "{} is not what the generator builds now; rewrite the seeds with {WRITE_SEEDS_ENV}=1",
                path.display()
            );
        }
        *per_target.entry(target.as_str()).or_insert(0) += 1;
    }
    // Every target but the hand-written findings' has generated seeds.
    for (name, _) in TARGETS {
        assert!(per_target.contains_key(name), "no seeds for {name}");
    }
}

/// The seed corpus, built from real values: `(target, name, bytes)`.
fn seed_corpus() -> Vec<(String, String, Vec<u8>)> {
    use aidledger_audit::synth::{StateMode, SynthChain};
    use aidledger_storage::Store;
    use aidledger_types::codec;
    use aidledger_types::wire::{CandidateResponse, SyncRequest, SyncResponse, TxGossip};

    let mut out = Vec::new();
    let mut put = |target: &str, name: &str, data: &[u8]| {
        out.push((target.to_string(), name.to_string(), data.to_vec()));
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut c = SynthChain::new(&tmp.path().join("data"), StateMode::Store).unwrap();
    let mut txs = vec![
        c.f.create_program("seed-fund", 1_000_000),
        c.f.deposit("seed-fund", 5_000),
    ];
    let (_, reg) = c.f.register_household();
    txs.push(reg);
    for (i, tx) in txs.iter().enumerate() {
        put("signed_tx", &format!("tx{i}"), &tx.encode());
    }
    for tx in &txs {
        let v = c.f.verified(tx.clone());
        let t = c.time().saturating_add_ms(1_000);
        c.block_at(t, &[v]).unwrap();
    }
    let head = c.parent.height;
    let mut entries = Vec::new();
    for h in 1..=head {
        let b = c.store.block(h).unwrap().unwrap();
        let cert = c.store.certificate(h).unwrap().unwrap();
        put("block", &format!("h{h}"), &codec::encode(&b));
        put("certificate", &format!("h{h}"), &codec::encode(&cert));
        entries.push((b, cert));
    }
    put(
        "tx_gossip",
        "three",
        &codec::encode(&TxGossip { round: 7, txs }),
    );
    put(
        "sync_request",
        "blocks",
        &codec::encode(&SyncRequest::Blocks { from: 1, max: 16 }),
    );
    put(
        "sync_request",
        "candidate",
        &codec::encode(&SyncRequest::Candidate {
            hash: entries[0].0.hash(),
        }),
    );
    put(
        "sync_response",
        "blocks",
        &codec::encode(&SyncResponse {
            head,
            base: 1,
            blocks: entries.clone(),
        }),
    );
    // The same answer as a peer on wire version 1 sends it.
    put(
        "sync_response",
        "blocks-v1",
        &codec::encode(&aidledger_types::wire::SyncResponseV1 {
            head,
            blocks: entries.clone(),
        }),
    );
    put(
        "sync_request",
        "set-changes",
        &codec::encode(&SyncRequest::SetChanges { after: 0 }),
    );
    put(
        "sync_request",
        "snapshot-offers",
        &codec::encode(&SyncRequest::SnapshotOffers),
    );
    put(
        "sync_request",
        "snapshot-manifest",
        &codec::encode(&SyncRequest::SnapshotManifest { height: head }),
    );
    put(
        "sync_request",
        "snapshot-chunk",
        &codec::encode(&SyncRequest::SnapshotChunk {
            height: head,
            index: 0,
        }),
    );
    {
        use aidledger_types::wire::{
            SetChangesResponse, SnapshotChunkResponse, SnapshotManifestResponse,
            SnapshotOffersResponse,
        };
        let store = c.store.as_ref();
        let manifest = aidledger_storage::snapshot::manifest_at_head(store)
            .unwrap()
            .unwrap();
        let pairs = aidledger_storage::snapshot::chunk_pairs(store, &manifest.chunks[0]).unwrap();
        put(
            "sync_response",
            "snapshot-offers",
            &codec::encode(&SnapshotOffersResponse {
                head,
                base: 1,
                heights: vec![head],
            }),
        );
        put(
            "sync_response",
            "set-changes",
            &codec::encode(&SetChangesResponse {
                changes: store.set_changes(0, 16).unwrap(),
            }),
        );
        put(
            "sync_response",
            "snapshot-chunk",
            &codec::encode(&SnapshotChunkResponse {
                chunk: Some(aidledger_types::snapshot::SnapshotChunk {
                    height: head,
                    index: 0,
                    pairs,
                }),
            }),
        );
        put(
            "sync_response",
            "snapshot-manifest",
            &codec::encode(&SnapshotManifestResponse {
                manifest: Some(manifest),
            }),
        );
    }
    put(
        "sync_response",
        "candidate",
        &codec::encode(&CandidateResponse {
            block: Some(entries[0].0.clone()),
        }),
    );
    let mut file = Vec::new();
    aidledger_audit::chainfile::write_chain_file(c.store.as_ref(), &mut file).unwrap();
    assert_eq!(
        aidledger_audit::chainfile::decode_chain_file(&file).unwrap(),
        head
    );
    put("chain_file", "three-blocks", &file);
    // Consensus messages, signed by a validator of the chain: each kind.
    {
        use aidledger_consensus::message::{NewView, SignedViewChange, ViewChange};
        use aidledger_consensus::{Envelope, Payload};
        let key = c.validator_keys.values().next().unwrap().clone();
        let chain = c.genesis.chain_id.clone();
        let (b, _) = entries[0].clone();
        let hash = b.hash();
        let vc = ViewChange {
            new_view: 1,
            height: 1,
            prepared: None,
        };
        let svc = SignedViewChange {
            from: 0,
            signature: aidledger_consensus::message::sign_payload(
                &key,
                &chain,
                &Payload::ViewChange(vc.clone()),
            ),
            view_change: vc.clone(),
        };
        let msgs = [
            (
                Payload::PrePrepare {
                    view: 0,
                    height: 1,
                    block_hash: hash,
                },
                Some(b.clone()),
            ),
            (
                Payload::Prepare {
                    view: 0,
                    height: 1,
                    block_hash: hash,
                },
                None,
            ),
            (
                Payload::Commit {
                    view: 0,
                    height: 1,
                    block_hash: hash,
                    time: b.header.timestamp,
                },
                None,
            ),
            (Payload::ViewChange(vc), None),
            (
                Payload::NewView(NewView {
                    view: 1,
                    height: 1,
                    view_changes: vec![svc],
                    reproposal: None,
                }),
                None,
            ),
        ];
        for (i, (p, block)) in msgs.into_iter().enumerate() {
            let bytes = Envelope::sign(&key, &chain, 0, p, block).encode();
            Envelope::decode(&bytes, aidledger_consensus::MESSAGE_MAX_BYTES).unwrap();
            put("consensus_message", &format!("m{i}"), &bytes);
        }
    }
    for (i, text) in [
        "after(2026-03-01)",
        "before(2026-03-01T12:30:15Z)",
        "all(released(b), after(2026-03-01))",
        "not(any(after(1), approvals(1, of: [dev-bank])))",
        "approvals(2, of: [poverty-office, dev-bank])",
        "no_open_anomaly(release:42)",
        "settled(t1)",
        "attested(poverty-status, by: poverty-office, subject: app:a1)",
    ]
    .iter()
    .enumerate()
    {
        aidledger_contracts::condition_text::parse(text)
            .unwrap_or_else(|e| panic!("seed {text:?}: {e}"));
        put("condition_text", &format!("c{i}"), text.as_bytes());
    }
    let tx_hex = codec::encode(&entries[0].0.txs[0])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    put(
        "http_bodies",
        "submit",
        format!(r#"{{"tx":"{tx_hex}","wait_ms":1000}}"#).as_bytes(),
    );
    put(
        "http_bodies",
        "batch",
        format!(r#"{{"txs":["{tx_hex}","00"]}}"#).as_bytes(),
    );
    out
}

/// A bounded, seeded mutation run of every target on stable, `chain_file`
/// included (CI's libFuzzer step leaves it out: its instrumented build
/// would need RocksDB). It mutates the corpus the way libFuzzer's simplest
/// mutators do (bit flips, special bytes, large length fields, inserted and
/// deleted runs, splices), 10,000 inputs per target; the inputs are read in
/// name order, so a seed gives the same run everywhere.
#[test]
fn a_bounded_mutation_run_of_every_target() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
    for (name, target) in TARGETS {
        let dir = corpus_dir().join(name);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        let inputs: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        for _ in 0..10_000 {
            let mut d = inputs[rng.gen_range(0..inputs.len())].clone();
            for _ in 0..rng.gen_range(1..=4) {
                mutate(&mut d, &inputs, &mut rng);
            }
            target(&d);
        }
    }
}

fn mutate(d: &mut Vec<u8>, inputs: &[Vec<u8>], rng: &mut impl rand::Rng) {
    let len = d.len();
    match rng.gen_range(0..7) {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            d[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            d[i] = [0u8, 0xff, 0x7f, 0x80, 1][rng.gen_range(0..5)];
        }
        2 if len >= 8 => {
            // A length or count field made huge, or zero.
            let i = rng.gen_range(0..=len - 8);
            let v: u64 = [u64::MAX, u64::from(u32::MAX), 1 << 24, 0][rng.gen_range(0..4)];
            d[i..i + 8].copy_from_slice(&v.to_le_bytes());
        }
        3 => {
            let i = rng.gen_range(0..=len);
            let n = rng.gen_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            d.splice(i..i, bytes);
        }
        4 if len > 0 => {
            let i = rng.gen_range(0..len);
            let j = rng.gen_range(i..=len.min(i + 64));
            d.drain(i..j);
        }
        5 if len > 0 => {
            // A run repeated.
            let i = rng.gen_range(0..len);
            let j = rng.gen_range(i..=len.min(i + 32));
            let run = d[i..j].to_vec();
            d.splice(j..j, run);
        }
        _ => {
            // Splice: this input's head, another's tail.
            let other = &inputs[rng.gen_range(0..inputs.len())];
            let i = rng.gen_range(0..=len);
            let j = rng.gen_range(0..=other.len());
            d.truncate(i);
            d.extend_from_slice(&other[j..]);
        }
    }
}
