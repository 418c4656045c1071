#![allow(clippy::unwrap_used)]
//! Issue 18's P7 scale mode (`aidledger-sim --scale`): real node cores on
//! a full mesh with a fixed delay. What must hold whatever the count:
//! everything submitted commits, no view changes on a calm network, one
//! round of consensus messages per block (2(n - 1) at each validator), and
//! the same options give the same figures. The figures themselves go to
//! docs/benchmarks.md.

use aidledger_sim::{run_scale, ScaleOptions};

fn opts(validators: usize) -> ScaleOptions {
    ScaleOptions {
        validators,
        delay_ms: 20,
        rate: 400,
        secs: 2,
        seed: 7,
        pipeline: false,
    }
}

#[test]
fn four_and_seven_validators_commit_everything_in_one_round_per_block() {
    for n in [4usize, 7] {
        let r = run_scale(&opts(n));
        assert!(r.violations.is_empty(), "{n}: {:?}", r.violations);
        assert!(r.submitted >= 800, "{n}: {r:?}");
        assert_eq!(r.refused, 0, "{n}: {r:?}");
        assert_eq!(r.committed, r.submitted, "{n}: {r:?}");
        assert!(r.blocks >= 5, "{n}: {r:?}");
        assert_eq!(r.view_changes, 0, "{n}: {r:?}");
        let round = 2.0 * (n as f64 - 1.0);
        assert!(
            (r.consensus_msgs_per_block - round).abs() < 1.0,
            "{n}: {} messages per block, one round is {round}",
            r.consensus_msgs_per_block
        );
        // Virtual time: a commit takes at least the three message delays
        // of a round (proposal, prepares, commits).
        assert!(
            r.p50_ms >= 60 && r.p50_ms <= r.p99_ms && r.p99_ms <= r.max_ms,
            "{r:?}"
        );
    }
}

#[test]
fn the_same_options_give_the_same_figures() {
    let a = run_scale(&opts(4));
    let b = run_scale(&opts(4));
    assert_eq!(
        (
            a.submitted,
            a.committed,
            a.blocks,
            a.p50_ms,
            a.p99_ms,
            a.max_ms,
            a.virtual_ms
        ),
        (
            b.submitted,
            b.committed,
            b.blocks,
            b.p50_ms,
            b.p99_ms,
            b.max_ms,
            b.virtual_ms
        )
    );
}
