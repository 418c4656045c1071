//! `aidledger-sim`: runs seeds S..S+N-1 of whole node cores and prints a
//! summary.

use std::collections::BTreeMap;
use std::process::ExitCode;

use aidledger_sim::cluster::Byz;
use aidledger_sim::{run_cluster_seed, ClusterOptions};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    about = "Deterministic simulation of whole aidledger node cores under faults and byzantine nodes"
)]
struct Args {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start_seed: u64,
    /// Print one line per seed.
    #[arg(short, long)]
    verbose: bool,
    /// No byzantine node (by default half of the seeds have one, its
    /// behaviour drawn at random).
    #[arg(long)]
    no_byzantine: bool,
    /// Every seed has a byzantine node with this behaviour (equivocator,
    /// double-voter, replayer, splitter, garbage).
    #[arg(long, value_name = "BEHAVIOUR")]
    byzantine: Option<String>,
    /// Disable crashes, wipes, safety-state loss, partitions and loss.
    #[arg(long)]
    no_faults: bool,
    /// No validator-set changes by governance.
    #[arg(long)]
    no_reconfig: bool,
    /// Plant a defect that the simulator must catch (stale-outputs,
    /// no-send-nonce, view-change-without-cert, ignore-highest-prepared,
    /// persist-after-send, admission-without-onchain-check,
    /// accept-2f-votes, ignore-next-due, ignore-restored-marker, ignore-key-replacement,
    /// fall-below-ahead-votes, which also pipelines); violations expected.
    #[arg(long)]
    mutant: Option<String>,
    /// Worker threads (seeds are independent; output is in seed order).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print every violation as it happens (use with --seeds 1).
    #[arg(long)]
    debug: bool,
    /// Accepted for old command lines: whole node cores are the only mode.
    #[arg(long, hide = true)]
    nodes: bool,
    /// Instead of the fault seeds: issue 18's P7, a steady load on this
    /// many validators, each count in turn (for example 4,7,10,16), on a
    /// full mesh with a fixed one-way delay and no faults.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    scale: Vec<usize>,
    /// With --scale: one-way delay of every message, in ms (1 to 1000).
    #[arg(long, default_value_t = 20)]
    delay_ms: u64,
    /// With --scale: transactions offered per virtual second (1 to 20000).
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// With --scale: how long the load runs, in virtual seconds (1 to 120).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Every node pipelines (ADR 022): the leader proposes the next block
    /// before the one in flight commits.
    #[arg(long)]
    pipeline: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.scale.is_empty() {
        main_nodes(&args)
    } else {
        main_scale(&args)
    }
}

/// Issue 18's P7: one run per validator count, a line each.
fn main_scale(args: &Args) -> ExitCode {
    if let Some(n) = args.scale.iter().find(|n| !(4..=64).contains(*n)) {
        eprintln!("--scale: {n} validators is outside 4 to 64");
        return ExitCode::from(2);
    }
    if !(1..=1000).contains(&args.delay_ms)
        || !(1..=20_000).contains(&args.rate)
        || !(1..=120).contains(&args.secs)
    {
        eprintln!("--delay-ms must be 1 to 1000, --rate 1 to 20000, --secs 1 to 120");
        return ExitCode::from(2);
    }
    let opts: Vec<u64> = (0..args.scale.len() as u64).collect();
    let reports = parallel(&opts, threads_of(args), |k| {
        aidledger_sim::run_scale(&aidledger_sim::ScaleOptions {
            validators: args.scale[k as usize],
            delay_ms: args.delay_ms,
            rate: args.rate,
            secs: args.secs,
            seed: args.start_seed,
            pipeline: args.pipeline,
        })
    });
    println!(
        "validators  delay  offered tx/s  committed tx/s  p50 ms  p99 ms  max ms  blocks  msgs/block  2(n-1)  highest view  refused"
    );
    let mut bad = 0;
    for r in &reports {
        println!(
            "{:>10}  {:>5}  {:>12}  {:>14.0}  {:>6}  {:>6}  {:>6}  {:>6}  {:>10.1}  {:>6}  {:>12}  {:>7}",
            r.validators,
            r.delay_ms,
            r.offered_rate,
            r.committed_tps,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.blocks,
            r.consensus_msgs_per_block,
            2 * (r.validators - 1),
            r.view_changes,
            r.refused
        );
        for v in &r.violations {
            bad += 1;
            println!("  {} validators: {v}", r.validators);
        }
    }
    if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn threads_of(args: &Args) -> usize {
    if args.threads > 0 {
        args.threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Whole node cores.
fn main_nodes(args: &Args) -> ExitCode {
    let mut opts = ClusterOptions {
        faults: !args.no_faults,
        reconfig: !args.no_reconfig,
        debug: args.debug,
        byzantine: !args.no_byzantine,
        pipeline: args.pipeline,
        ..ClusterOptions::default()
    };
    if let Some(name) = &args.byzantine {
        match Byz::ALL.iter().find(|b| b.name() == name) {
            Some(b) => opts.byzantine_only = Some(*b),
            None => {
                eprintln!(
                    "unknown byzantine behaviour {name:?}: expected equivocator, double-voter, \
                     replayer, splitter or garbage"
                );
                return ExitCode::from(2);
            }
        }
        opts.byzantine = true;
    }
    match args.mutant.as_deref() {
        None => {}
        Some("stale-outputs") => opts.mutants.keep_stale_outputs = true,
        Some("no-send-nonce") => opts.mutant_no_send_nonce = true,
        Some("view-change-without-cert") => opts.mutants.view_change_without_cert = true,
        Some("ignore-highest-prepared") => opts.mutants.ignore_highest_prepared = true,
        Some("persist-after-send") => opts.mutants.persist_after_send = true,
        Some("ignore-next-due") => opts.mutants.ignore_next_due = true,
        Some("ignore-restored-marker") => opts.mutants.ignore_restored_marker = true,
        Some("ignore-key-replacement") => opts.mutants.ignore_key_replacement = true,
        Some("accept-2f-votes") => opts.mutants.accept_2f_votes = true,
        Some("fall-below-ahead-votes") => {
            opts.pipeline = true;
            opts.mutants.fall_below_ahead_votes = true
        }
        Some("admission-without-onchain-check") => {
            opts.mutants.admission_without_onchain_check = true
        }
        Some(other) => {
            eprintln!(
                "unknown mutant {other:?}: expected stale-outputs, no-send-nonce, \
                 view-change-without-cert, ignore-highest-prepared, persist-after-send, \
                 admission-without-onchain-check, accept-2f-votes, ignore-next-due, \
                 ignore-restored-marker, ignore-key-replacement or fall-below-ahead-votes"
            );
            return ExitCode::from(2);
        }
    }
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let seeds: Vec<u64> = (args.start_seed..args.start_seed + args.seeds).collect();
    let reports = parallel(&seeds, threads_of(args), |s| run_cluster_seed(s, &opts));
    let (mut ok, mut bad) = (0u64, 0u64);
    let (mut txs, mut submitted, mut refused, mut resent, mut replays, mut max_height) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut reconfigs, mut took_effect) = (0usize, 0usize);
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let mut byzantine: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut fetches = 0u64;
    let mut backlog = 0u64;
    let mut pipelined = 0u64;
    for r in &reports {
        backlog += r.backlog_refused;
        pipelined += r.pipelined_blocks;
        fetches += r.block_fetches;
        if let Some((_, b)) = r.byzantine {
            *byzantine.entry(b.name()).or_default() += 1;
        }
        if args.verbose {
            println!("{r}");
        }
        txs += r.committed_txs;
        submitted += r.submitted;
        refused += r.refused;
        resent += r.resent;
        replays += r.replayed_gossip;
        max_height = max_height.max(r.max_height);
        reconfigs += r.reconfigurations.len();
        took_effect += r.set_changes.len();
        for f in &r.faults {
            let kind: String = f
                .split(|c: char| c.is_ascii_digit())
                .next()
                .unwrap_or(f)
                .trim()
                .to_string();
            *faults.entry(kind).or_default() += 1;
        }
        if r.ok() {
            ok += 1;
        } else {
            bad += 1;
            println!("seed {} FAILED: {:?}", r.seed, r.violations);
            println!(
                "  reproduce: cargo run --release -p aidledger-sim -- --seeds 1 --start-seed {}{}{}",
                r.seed,
                if args.pipeline { " --pipeline" } else { "" },
                args.mutant
                    .as_ref()
                    .map(|m| format!(" --mutant {m}"))
                    .unwrap_or_default()
            );
        }
    }
    let fs: Vec<String> = faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let bs: Vec<String> = byzantine.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let last = (args.start_seed + args.seeds).saturating_sub(1);
    println!(
        "node cores, seeds {}..{last}: {ok} ok, {bad} violations; mutant: {}; {reconfigs} validator-set changes proposed, {took_effect} took effect; {submitted} transactions submitted ({resent} resends, {replays} gossip replays), {refused} refused at admission ({backlog} for the backlog); {txs} committed; max height {max_height}; faults: {}; byzantine nodes: {}; {fetches} candidate blocks fetched by hash; {pipelined} blocks proposed before their parent committed; {:.1} s",
        args.start_seed,
        args.mutant.as_deref().unwrap_or("none"),
        fs.join(", "),
        if bs.is_empty() { "none".to_string() } else { bs.join(", ") },
        started.elapsed().as_secs_f64()
    );
    let expect_violations = args.mutant.is_some();
    if (bad > 0) != expect_violations {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn parallel<R: Send>(seeds: &[u64], threads: usize, run: impl Fn(u64) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..seeds.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else {
                    break;
                };
                let report = run(seed);
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(report);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|_| panic!("a simulation thread panicked"))
        .into_iter()
        .flatten()
        .collect()
}
