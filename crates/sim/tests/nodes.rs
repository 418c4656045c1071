//! Whole node cores in the simulator: the CI-sized run, determinism, and
//! the mutants each run must catch.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use aidledger_sim::cluster::Byz;
use aidledger_sim::{run_cluster_seed, ClusterOptions, ClusterReport};

/// Runs seeds on every core; stops early (returning what it has) once
/// `stop` holds for a report.
fn run_many(
    seeds: std::ops::Range<u64>,
    opts: &ClusterOptions,
    stop: impl Fn(&ClusterReport) -> bool + Sync,
) -> Vec<ClusterReport> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;
    let next = AtomicU64::new(seeds.start);
    let done = AtomicBool::new(false);
    let out = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end || done.load(Ordering::Relaxed) {
                    break;
                }
                let r = run_cluster_seed(seed, opts);
                if stop(&r) {
                    done.store(true, Ordering::Relaxed);
                }
                out.lock().unwrap().push(r);
            });
        }
    });
    let mut v = out.into_inner().unwrap();
    v.sort_by_key(|r| r.seed);
    v
}

fn assert_no_violations(reports: &[ClusterReport]) {
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok())
        .map(|r| format!("seed {}: {:?}", r.seed, r.violations))
        .collect();
    assert!(bad.is_empty(), "violations:\n{}", bad.join("\n"));
}

/// Seeds of 500 in which the plans@4 upgrade must take effect.
const UPGRADED_MIN: usize = 400;

fn all_faults() -> ClusterOptions {
    ClusterOptions {
        faults: true,
        reconfig: true,
        byzantine: true,
        ..ClusterOptions::default()
    }
}

#[test]
fn five_hundred_seeds_of_node_cores_keep_every_invariant() {
    let reports = run_many(0..500, &all_faults(), |_| false);
    assert_eq!(reports.len(), 500);
    assert_no_violations(&reports);
    // The runs did what they claim: sets changed, clients resent and
    // replayed, every fault kind happened, money moved.
    let changes: usize = reports.iter().map(|r| r.set_changes.len()).sum();
    let resent: u64 = reports.iter().map(|r| r.resent).sum();
    let replays: u64 = reports.iter().map(|r| r.replayed_gossip).sum();
    let committed: u64 = reports.iter().map(|r| r.committed_txs).sum();
    assert!(
        changes >= 500,
        "only {changes} validator-set changes took effect"
    );
    // Each kind of change happened, the node-key rotation among them.
    // (Shrinking back to four restores the genesis set, named so.)
    let kinds = ["grow to five", "genesis set", "replace", "remove", "rotate"];
    let counts: Vec<(&str, usize)> = kinds
        .iter()
        .map(|kind| {
            let n = reports
                .iter()
                .flat_map(|r| &r.set_changes)
                .filter(|c| c.starts_with(kind))
                .count();
            (*kind, n)
        })
        .collect();
    assert!(
        counts.iter().all(|(_, n)| *n >= 50),
        "a kind of set change took effect fewer than 50 times: {counts:?}"
    );
    // Node 3 replaced its own key while running in most seeds, and its
    // seat moved to the new key in many.
    let replaced = reports.iter().filter(|r| r.key_replaced).count();
    let on_new_key = reports
        .iter()
        .flat_map(|r| &r.set_changes)
        .filter(|c| c.contains("node 3's replaced key"))
        .count();
    assert!(
        replaced >= 300 && on_new_key >= 100,
        "node 3's key replaced in {replaced} seeds, {on_new_key} sets on the new key"
    );
    // The contract upgrade reached its height in most seeds.
    let upgraded = reports
        .iter()
        .filter(|r| r.upgrade.is_some_and(|(_, reached)| reached))
        .count();
    assert!(
        upgraded >= UPGRADED_MIN,
        "the plans@4 upgrade took effect in only {upgraded} seeds"
    );
    assert!(
        resent >= 10_000 && replays >= 1_000,
        "{resent} resends, {replays} replays"
    );
    assert!(
        committed >= 50_000,
        "only {committed} transactions committed"
    );
    for kind in [
        "crash",
        "crash after send",
        "wipe",
        "safety state lost",
        "safety state rolled back",
        "partition 3|3",
        "partition 1|5",
        "one-way",
        "loss",
        "backup",
    ] {
        let n = reports
            .iter()
            .flat_map(|r| &r.faults)
            .filter(|f| f.starts_with(kind))
            .count();
        assert!(n >= 20, "fault {kind} happened only {n} times");
    }
    // A restore needs an earlier backup of a node and no byzantine node.
    let restores = reports
        .iter()
        .flat_map(|r| &r.faults)
        .filter(|f| f.starts_with("restore"))
        .count();
    assert!(restores >= 10, "only {restores} restores from a backup");
    // The quiet stretch after the heal: the dated tranche released on
    // time (a late one is a violation above) in nearly every seed.
    let on_time = reports
        .iter()
        .filter(|r| {
            r.dated_release
                .as_deref()
                .is_some_and(|d| d.ends_with("after the date"))
        })
        .count();
    assert!(
        on_time >= 450,
        "the dated tranche released in only {on_time} seeds"
    );
    // Half the seeds had a byzantine node, every behaviour among them.
    for b in Byz::ALL {
        let n = reports
            .iter()
            .filter(|r| r.byzantine.is_some_and(|(_, x)| x == b))
            .count();
        assert!(n >= 20, "byzantine {} in only {n} seeds", b.name());
    }
    println!(
        "500 seeds: {changes} validator-set changes, {resent} resends, {replays} gossip replays, {committed} transactions committed"
    );
}

#[test]
fn pipelined_seeds_keep_every_invariant() {
    // ADR 022: every node proposes, checks and prepares the next block
    // before the one in flight commits; the same faults, set changes and
    // byzantine nodes (an equivocating primary forks inside the window).
    let opts = ClusterOptions {
        pipeline: true,
        ..all_faults()
    };
    let reports = run_many(0..40, &opts, |_| false);
    assert_no_violations(&reports);
    let pipelined: u64 = reports.iter().map(|r| r.pipelined_blocks).sum();
    let committed: u64 = reports.iter().map(|r| r.committed_txs).sum();
    let changes: usize = reports.iter().map(|r| r.set_changes.len()).sum();
    assert!(
        pipelined >= 1_500 && committed >= 30_000 && changes >= 100,
        "{pipelined} pipelined blocks, {committed} transactions, {changes} set changes"
    );
    let equivocating = ClusterOptions {
        byzantine_only: Some(Byz::Equivocator),
        ..opts
    };
    let reports = run_many(100..110, &equivocating, |_| false);
    assert_no_violations(&reports);
    println!("40 pipelined seeds: {pipelined} blocks proposed before their parent committed, {committed} transactions");
}

#[test]
fn same_seed_gives_same_trace() {
    let a = run_cluster_seed(7, &all_faults());
    let b = run_cluster_seed(7, &all_faults());
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.max_height, b.max_height);
    assert_eq!(a.faults, b.faults);
    let c = run_cluster_seed(8, &all_faults());
    assert_ne!(a.trace_hash, c.trace_hash);
}

/// The reconfiguration fork of issue 13: the old replica's outputs run
/// after the replica was rebuilt for a new validator set. The simulator
/// must catch it within 100 seeds. Most of those outputs are harmless (a
/// fresh state for the next height, a timer); the harmful ones are view
/// changes and new-views the old replica joined from its buffer. When the
/// checker saw them only where the node's index changed with the set, the
/// first catch was at seed 99 and then at seed 390 of 400; since it also
/// checks that nothing is sent for a view above the live replica's, the
/// first is at seed 14 (2026-12-06).
#[test]
fn mutant_stale_outputs_after_reconfiguration_is_caught() {
    let mut opts = all_faults();
    opts.mutants.keep_stale_outputs = true;
    let reports = run_many(0..100, &opts, |r| !r.ok());
    let caught = reports.iter().find(|r| !r.ok());
    let r = caught.expect("the stale-outputs mutant survived 100 seeds");
    assert!(
        r.violations.iter().any(|v| {
            v.contains("above its replica's view")
                || v.contains("not its index in that height's set")
        }),
        "caught, but not as a stale replica's message: {:?}",
        r.violations
    );
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// Consensus messages without the network's per-send frame: gossip's
/// duplicate filter eats byte-identical retransmissions, and the
/// consortium stalls after faults. Must be caught within 100 seeds (first
/// at seed 1, 41 seeds of 200, when this test was written).
#[test]
fn mutant_without_per_send_nonce_is_caught() {
    let opts = ClusterOptions {
        mutant_no_send_nonce: true,
        ..all_faults()
    };
    let reports = run_many(0..100, &opts, |r| !r.ok());
    let r = reports
        .iter()
        .find(|r| !r.ok())
        .expect("the no-send-nonce mutant survived 100 seeds");
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// The safety state written after the messages that depend on it: a node
/// that loses power right after a send comes back without the record and
/// signs again differently. Must be caught within 200 seeds. When the
/// checker excused a second pre-prepare at any height the others had
/// decided, this caught one seed in 400 after the ADR 014 change (which
/// also changed every seed's random draws; the cause of the drop was not
/// isolated); since only an amnesic node is excused there, it catches six
/// of the first 100 (the first at seed 9).
#[test]
fn mutant_persist_after_send_is_caught() {
    let mut opts = all_faults();
    opts.mutants.persist_after_send = true;
    let reports = run_many(0..200, &opts, |r| !r.ok());
    let r = reports
        .iter()
        .find(|r| !r.ok())
        .expect("the persist-after-send mutant survived 200 seeds");
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// Admission that forgets the chain's consumed nonces: a byte-identical
/// resend of an included transaction is queued and answered as accepted
/// (the first half of issue 13's "one resent rejected transaction halts
/// every validator"). Must be caught within 20 seeds (clients resend
/// included transactions in nearly every run: the first seed caught it
/// when this test was written).
#[test]
fn mutant_admission_without_onchain_check_is_caught() {
    let mut opts = all_faults();
    opts.mutants.admission_without_onchain_check = true;
    let reports = run_many(0..20, &opts, |r| !r.ok());
    let r = reports
        .iter()
        .find(|r| !r.ok())
        .expect("the admission-without-onchain-check mutant survived 20 seeds");
    assert!(
        r.violations.iter().any(|v| v.contains("already holds")),
        "{:?}",
        r.violations
    );
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// A view change that leaves out the sender's prepared certificate
/// (PBFT §4.4). Must be caught within 30 seeds (first at seed 1 when this
/// test was written): the simulator checks every honest view change
/// against the sender's persisted safety state, and agreement after.
#[test]
fn mutant_view_change_without_cert_is_caught() {
    let mut opts = all_faults();
    opts.mutants.view_change_without_cert = true;
    let reports = run_many(0..30, &opts, |r| !r.ok());
    let r = reports
        .iter()
        .find(|r| !r.ok())
        .expect("the view-change-without-cert mutant survived 30 seeds");
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// A new-view (built and accepted) that ignores the highest prepared
/// certificate among its view changes. Must be caught within 30 seeds
/// (first at seed 1 when this test was written).
#[test]
fn mutant_new_view_ignoring_the_highest_certificate_is_caught() {
    let mut opts = all_faults();
    opts.mutants.ignore_highest_prepared = true;
    let reports = run_many(0..30, &opts, |r| !r.ok());
    let r = reports
        .iter()
        .find(|r| !r.ok())
        .expect("the ignore-highest-prepared mutant survived 30 seeds");
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// Each byzantine behaviour on its own, 12 seeds each: no invariant of
/// the honest nodes breaks.
#[test]
fn every_byzantine_behaviour_alone_breaks_nothing() {
    for b in Byz::ALL {
        let opts = ClusterOptions {
            byzantine_only: Some(b),
            ..all_faults()
        };
        let reports = run_many(1000..1012, &opts, |_| false);
        for r in &reports {
            assert_eq!(r.byzantine.map(|(_, x)| x), Some(b));
            assert!(r.ok(), "{}: seed {}: {:?}", b.name(), r.seed, r.violations);
        }
    }
}

/// Quorums of 2f votes: caught at once by the certificate check (the
/// first seed, when this test was written); within 5 seeds.
#[test]
fn mutant_accepting_2f_votes_is_caught() {
    let mut opts = all_faults();
    opts.mutants.accept_2f_votes = true;
    let reports = run_many(0..5, &opts, |r| !r.ok());
    let r = reports
        .iter()
        .find(|r| !r.ok())
        .expect("the accept-2f-votes mutant survived 5 seeds");
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// A quiet chain that forgets its due time: the dated tranche waits for
/// the next transaction instead of its date. Caught in the first seeds.
#[test]
fn mutant_ignoring_the_due_time_is_caught() {
    let mut opts = all_faults();
    opts.mutants.ignore_next_due = true;
    let reports = run_many(0..20, &opts, |r| !r.ok());
    let r = reports
        .iter()
        .find(|r| r.violations.iter().any(|v| v.contains("quiet chain")))
        .expect("the ignore-next-due mutant survived 20 seeds");
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// A store restored from an older backup that trusts the backup's safety
/// state (no `restored` marker): the node signs again at heights it may
/// already have signed at before the restore. The checker knows those
/// heights (up to the one in flight at the restore) and catches the
/// mutant in the first seeds with a restore, among the runs without a
/// byzantine node (restores happen only then).
#[test]
fn mutant_ignoring_the_restore_marker_is_caught() {
    let mut opts = all_faults();
    opts.byzantine = false;
    opts.mutants.ignore_restored_marker = true;
    // The restored node must reach the height in flight at its restore
    // before the others commit it; with blocks paced from the proposal
    // (ADR 022, step c) the others move on sooner, so it takes more seeds.
    let reports = run_many(0..80, &opts, |r| {
        r.violations.iter().any(|v| v.contains("after its restore"))
    });
    let r = reports
        .iter()
        .find(|r| r.violations.iter().any(|v| v.contains("after its restore")))
        .expect("the ignore-restored-marker mutant survived 80 seeds");
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}

/// A node that never follows the replacement of its own key (ADR 017)
/// keeps signing with the key governance retired: every peer refuses its
/// votes from the replacement's height, and its seat is lost. Node 3
/// replaces its key in most seeds; the checker finds it still on the old
/// key at the end.
#[test]
fn mutant_ignoring_a_key_replacement_is_caught() {
    let mut opts = all_faults();
    opts.mutants.ignore_key_replacement = true;
    let reports = run_many(0..20, &opts, |r| {
        r.violations.iter().any(|v| v.contains("replaced key"))
    });
    let r = reports
        .iter()
        .find(|r| r.violations.iter().any(|v| v.contains("replaced key")))
        .expect("the ignore-key-replacement mutant survived 20 seeds");
    println!("caught at seed {}: {:?}", r.seed, r.violations);
}
