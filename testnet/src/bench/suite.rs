//! `aidledger bench suite`: how fast the ledger is on this machine, and
//! how close that is to the machine's own limit, measured in the same run.
//!
//! Parts, each bounded in time, each figure also given as a ratio to the
//! limit (or target) that bounds it:
//!
//! * `limits` (a): ed25519 single and batch verification per core (and on
//!   every core at once), SHA-256, RocksDB synced commits of a realistic
//!   block-sized batch and of a small safety-state write;
//! * `testnet` (b, e, f): a fresh 4-validator testnet on this machine:
//!   sustained committed tx/s under saturating open-loop load, latency at
//!   50% of that rate, the catch-up of a wiped validator, peak RSS per node;
//! * `replay` (c): the audit replay of a synthetic 1M-transaction chain on
//!   1 and 2 threads: its rate, and its CPU time per transaction;
//! * `households` (d): execution and commit of realistic blocks against
//!   RocksDB with 10k and 1M households in state;
//! * `join` (g): snapshot join against replay join on a synthetic chain of
//!   3M transactions that registers 1M households (ADR 017 part 4).
//!
//! The result is one JSON document (`--out`) and a table.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use aidledger_audit::synth::{self, StateMode, SynthChain, Workload};
use aidledger_audit::{replay, ReplayOptions, StoreSource, NO_PROGRESS};
use aidledger_crypto::{signing_bytes, verify, verify_batch, Keypair, Purpose, SigItem};
use aidledger_storage::Store;
use aidledger_types::hash::sha256;
use aidledger_types::time::MS_PER_DAY;
use aidledger_types::{ChainId, Hash, Timestamp};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::{json, Value};

use super::{load, LoadArgs, LoadReport};
use crate::procs;
use crate::testnet::{read_testnet, start_selected};
use aidledger_node::api_types::NodeStatus;
use aidledger_node::cli::{Ctx, Output};

/// The targets of issue 8, used as the bound of figures whose limit is a
/// target rather than a physical rate.
const TARGET_P99_MS: f64 = 1_000.0;
/// Issue 18's P2: p50 at half load.
const TARGET_P50_MS: f64 = 250.0;
/// Issue 18's P8: the rate offered to the testnet past saturation.
const OVERLOAD_RATE: u64 = 12_000;
/// Concurrent submitters in the overload run.
const OVERLOAD_WORKERS: u64 = 64;
/// After the overload run, how long its transactions may take to commit.
const OVERLOAD_DRAIN_SECS: u64 = 60;
/// The probe's highest rate; the sustained run offers up to 3 × it.
const PROBE_RATE_MAX: u64 = 4_000;
/// Issue 18's P6.
const TARGET_RSS_MB: f64 = 300.0;
/// Issue 18's P3: node CPU per committed transaction, signatures included.
const TARGET_NODE_CPU_US: f64 = 50.0;
const TARGET_HOUSEHOLD_LOSS_PCT: f64 = 20.0;
/// Signatures per batch in the batch-verify measurement (the crypto crate
/// combines at most 256 into one multiscalar multiplication).
const BATCH: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    Limits,
    Testnet,
    Replay,
    Households,
    Join,
}

#[derive(Args, Debug, Clone)]
pub struct SuiteArgs {
    /// Lay the testnet out in DIR (kept afterwards; it must not hold a
    /// testnet) [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Smaller sizes and shorter runs (about 5 minutes instead of 15).
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON result.
    #[arg(long, value_name = "FILE.json", default_value = "bench-suite.json")]
    pub out: PathBuf,
    /// Run only these parts (for CI).
    #[arg(long, hide = true, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Tiny sizes, for a smoke test of the in-process parts.
    #[arg(long, hide = true, conflicts_with = "quick")]
    pub tiny: bool,
    /// Also run the testnet's two observer nodes (audit office, county
    /// unit), six nodes in all, each verifying, executing and storing every
    /// transaction [default: the four validators alone].
    #[arg(long)]
    pub observers: bool,
    /// Validators in the testnet part, 4 to 7 (issue 18's P7 compares 4
    /// and 7 on real processes).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(4..=7))]
    pub validators: u64,
    /// Keep the load generator on these CPUs (a list as `taskset -c` takes
    /// it: 0,2-3) [default: any CPU]. On a machine with cores to spare, give
    /// it its own so that it does not measure itself.
    #[arg(long, value_name = "LIST", value_parser = crate::bench::parse_cpus_arg)]
    pub generator_cpus: Option<crate::bench::CpuList>,
}

/// Sizes and durations of one run.
#[derive(Clone, Debug, Serialize)]
struct Sizes {
    profile: &'static str,
    limit_secs: f64,
    probe_secs: u64,
    sustained_secs: u64,
    latency_secs: u64,
    /// Latency runs at half load, back to back: issue 18's P2 asks for
    /// its targets in every one of five.
    latency_runs: u64,
    /// Issue 18's P8: the rate offered past saturation, and for how long.
    overload_rate: u64,
    overload_secs: u64,
    catchup_timeout_secs: u64,
    replay_txs: u64,
    replay_block_txs: usize,
    households_small: u64,
    households_large: u64,
    household_blocks: usize,
    household_block_txs: usize,
    /// Transactions in the join part's chain: a third of them register a
    /// household.
    join_txs: u64,
}

impl Sizes {
    fn of(a: &SuiteArgs) -> Sizes {
        if a.tiny {
            Sizes {
                profile: "tiny",
                limit_secs: 0.2,
                probe_secs: 3,
                sustained_secs: 5,
                latency_secs: 5,
                latency_runs: 1,
                overload_rate: 3_000,
                overload_secs: 3,
                catchup_timeout_secs: 30,
                replay_txs: 3_000,
                replay_block_txs: 500,
                households_small: 3_000,
                households_large: 10_000,
                household_blocks: 2,
                household_block_txs: 300,
                join_txs: 3_000,
            }
        } else if a.quick {
            Sizes {
                profile: "quick",
                limit_secs: 0.5,
                probe_secs: 5,
                sustained_secs: 30,
                latency_secs: 15,
                latency_runs: 3,
                overload_rate: OVERLOAD_RATE,
                overload_secs: 15,
                catchup_timeout_secs: 60,
                replay_txs: 100_000,
                replay_block_txs: 2_000,
                households_small: 10_000,
                households_large: 1_000_000,
                household_blocks: 10,
                household_block_txs: 2_000,
                join_txs: 300_000,
            }
        } else {
            Sizes {
                profile: "full",
                limit_secs: 1.5,
                probe_secs: 10,
                sustained_secs: 60,
                latency_secs: 30,
                latency_runs: 5,
                overload_rate: OVERLOAD_RATE,
                overload_secs: 30,
                catchup_timeout_secs: 150,
                replay_txs: 1_000_000,
                replay_block_txs: 2_000,
                households_small: 10_000,
                households_large: 1_000_000,
                // Each block pays up to 1,000 households, so more than ten
                // blocks would run out of the 10k households to pay and
                // compare unequal work.
                household_blocks: 10,
                household_block_txs: 2_000,
                join_txs: 3_000_000,
            }
        }
    }
}

/// Benchmarks measure wall time: the one legitimate use of the clock here.
#[allow(clippy::disallowed_methods)] // benchmarks measure elapsed wall time
fn now() -> Instant {
    Instant::now()
}

fn wall_ms() -> u64 {
    aidledger_node::cli::wall_clock_ms()
}

/// One line of the table.
#[derive(Clone, Debug, Serialize)]
struct Row {
    part: &'static str,
    metric: String,
    value: f64,
    unit: &'static str,
    /// value / bound, when there is one.
    ratio: Option<f64>,
    /// What the ratio is taken against.
    bound: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    parts: serde_json::Map<String, Value>,
    errors: Vec<String>,
}

impl Report {
    fn row(
        &mut self,
        part: &'static str,
        metric: impl Into<String>,
        value: f64,
        unit: &'static str,
        ratio_to: Option<(f64, String)>,
    ) {
        let (ratio, bound) = match ratio_to {
            Some((b, what)) if b > 0.0 => (Some(value / b), what),
            Some((_, what)) => (None, what),
            None => (None, "(this is a limit)".to_string()),
        };
        self.rows.push(Row {
            part,
            metric: metric.into(),
            value,
            unit,
            ratio,
            bound,
        });
    }
}

fn say(json: bool, msg: impl AsRef<str>) {
    if !json {
        eprintln!("[bench] {}", msg.as_ref());
    }
}

pub fn run(ctx: &Ctx, a: &SuiteArgs) -> Result<ExitCode> {
    let sizes = Sizes::of(a);
    let json_out = ctx.json();
    let want = |p: Part| a.only.is_empty() || a.only.contains(&p);
    let started = now();
    let started_ms = wall_ms();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rep = Report::default();
    // Minutes of measurement must not end in a result that cannot be
    // written: check the output file first.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .map_err(|e| {
            aidledger_node::cli::usage(format!("cannot write --out {}: {e}", a.out.display()))
        })?;

    // (a) The limits are needed by every other part's ratios; they always
    // run.
    say(json_out, "measuring the machine's limits");
    let limits = match measure_limits(&sizes, cores, &mut rep) {
        Ok(l) => l,
        Err(e) => {
            rep.errors.push(format!("limits: {e:#}"));
            Limits::default()
        }
    };
    if want(Part::Replay) {
        say(
            json_out,
            format!("replay: building a {}-transaction chain", sizes.replay_txs),
        );
        if let Err(e) = replay_part(&sizes, cores, &limits, &mut rep, json_out) {
            rep.errors.push(format!("replay: {e:#}"));
        }
    }
    if want(Part::Households) {
        if let Err(e) = households_part(&sizes, cores, &limits, &mut rep, json_out) {
            rep.errors.push(format!("households: {e:#}"));
        }
    }
    if want(Part::Join) {
        say(
            json_out,
            format!("join: building a {}-transaction chain", sizes.join_txs),
        );
        if let Err(e) = join_part(&sizes, cores, &mut rep, json_out) {
            rep.errors.push(format!("join: {e:#}"));
        }
    }
    if want(Part::Testnet) {
        if let Err(e) = testnet_part(a, &sizes, cores, &limits, &mut rep, json_out) {
            rep.errors.push(format!("testnet: {e:#}"));
        }
    }

    let doc = json!({
        "suite": "aidledger bench suite",
        "version": env!("CARGO_PKG_VERSION"),
        "started_at_ms": started_ms,
        "elapsed_s": started.elapsed().as_secs_f64(),
        "machine": machine(cores),
        "sizes": sizes,
        "parts": Value::Object(rep.parts.clone()),
        "rows": rep.rows,
        "errors": rep.errors,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(&a.out, format!("{text}\n"))
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    if json_out {
        println!("{}", serde_json::to_string(&doc)?);
    } else {
        print_table(&doc, &rep);
        println!("result: {}", a.out.display());
    }
    Ok(if rep.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn machine(cores: usize) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu_model": model,
        "cores": cores,
        "memory_mb": mem_kb / 1024,
        "kernel": kernel.trim(),
    })
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        let s = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn print_table(doc: &Value, rep: &Report) {
    let m = &doc["machine"];
    println!(
        "aidledger bench suite ({}), {} × {} cores, {} MB, {:.0} s",
        doc["sizes"]["profile"].as_str().unwrap_or(""),
        m["cpu_model"].as_str().unwrap_or("?"),
        m["cores"],
        m["memory_mb"],
        doc["elapsed_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "{:<10} {:<52} {:>14} {:<8} {:>7}  BOUND",
        "PART", "METRIC", "VALUE", "UNIT", "RATIO"
    );
    for r in &rep.rows {
        let ratio = r
            .ratio
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:<52} {:>14} {:<8} {:>7}  {}",
            r.part,
            r.metric,
            fmt_value(r.value),
            r.unit,
            ratio,
            r.bound
        );
    }
    for e in &rep.errors {
        println!("ERROR {e}");
    }
}

// ---------------------------------------------------------------- (a) limits

#[derive(Clone, Debug, Default, Serialize)]
struct Limits {
    cores: usize,
    verify_single_per_core: f64,
    verify_batch_per_core: f64,
    verify_batch_all_cores: f64,
    sha256_mb_s: f64,
    sha256_1k_msgs_s: f64,
    rocks_batch_commits_s: f64,
    rocks_batch_mb_s: f64,
    rocks_batch_keys: usize,
    rocks_batch_bytes: usize,
    rocks_small_synced_writes_s: f64,
}

/// Runs `step` (which returns items done) until `secs` have passed;
/// returns items per second.
fn rate_for(secs: f64, mut step: impl FnMut() -> Result<u64>) -> Result<f64> {
    let t = now();
    let mut n = 0u64;
    loop {
        n += step()?;
        let e = t.elapsed().as_secs_f64();
        if e >= secs {
            return Ok(n as f64 / e);
        }
    }
}

struct SigSet {
    keys: Vec<aidledger_types::PublicKey>,
    bytes: Vec<Vec<u8>>,
    sigs: Vec<aidledger_types::Signature>,
    msgs: Vec<Hash>,
    chain: ChainId,
}

fn sig_set(n: usize) -> Result<SigSet> {
    let chain = ChainId::new("aidledger-bench").map_err(|e| anyhow!("{e}"))?;
    let mut s = SigSet {
        keys: Vec::with_capacity(n),
        bytes: Vec::with_capacity(n),
        sigs: Vec::with_capacity(n),
        msgs: Vec::with_capacity(n),
        chain,
    };
    for i in 0..n {
        let kp = Keypair::from_seed(sha256(format!("bench suite signer {}", i % 64).as_bytes()).0);
        let msg = sha256(format!("bench suite tx {i}").as_bytes());
        s.sigs.push(kp.sign(&s.chain, Purpose::Tx, msg.as_bytes()));
        s.bytes
            .push(signing_bytes(&s.chain, Purpose::Tx, msg.as_bytes()));
        s.keys.push(kp.public());
        s.msgs.push(msg);
    }
    Ok(s)
}

fn batch_rate(s: &SigSet, secs: f64) -> Result<f64> {
    let items: Vec<SigItem<'_>> = (0..s.keys.len())
        .map(|i| SigItem {
            public: &s.keys[i],
            signed_bytes: &s.bytes[i],
            signature: &s.sigs[i],
        })
        .collect();
    let mut at = 0usize;
    rate_for(secs, || {
        let chunk = &items[at..at + BATCH];
        at = (at + BATCH) % items.len();
        if verify_batch(chunk).iter().any(|r| r.is_err()) {
            bail!("a valid signature failed batch verification");
        }
        Ok(BATCH as u64)
    })
}

fn measure_limits(sizes: &Sizes, cores: usize, rep: &mut Report) -> Result<Limits> {
    let secs = sizes.limit_secs;
    let s = sig_set(BATCH * 4)?;
    let mut i = 0usize;
    let single = rate_for(secs, || {
        let k = i % s.keys.len();
        i += 1;
        verify(
            &s.keys[k],
            &s.chain,
            Purpose::Tx,
            s.msgs[k].as_bytes(),
            &s.sigs[k],
        )
        .map_err(|e| anyhow!("a valid signature failed: {e}"))?;
        Ok(1)
    })?;
    let batch1 = batch_rate(&s, secs)?;
    let all: Vec<f64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..cores)
            .map(|_| sc.spawn(|| batch_rate(&s, secs)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a thread panicked"))?)
            .collect::<Result<Vec<f64>>>()
    })?;
    let batch_all: f64 = all.iter().sum();

    let big = vec![0xa5u8; 1 << 20];
    let sha_mb = rate_for(secs, || {
        std::hint::black_box(sha256(std::hint::black_box(&big)));
        Ok(1)
    })? * (big.len() as f64)
        / 1e6;
    let small: Vec<[u8; 1024]> = (0..64u8).map(|i| [i; 1024]).collect();
    let sha_1k = rate_for(secs, || {
        for m in &small {
            std::hint::black_box(sha256(std::hint::black_box(m)));
        }
        Ok(small.len() as u64)
    })?;

    let (commits_s, mb_s, keys, bytes, small_w) = rocks_limits(secs)?;
    let l = Limits {
        cores,
        verify_single_per_core: single,
        verify_batch_per_core: batch1,
        verify_batch_all_cores: batch_all,
        sha256_mb_s: sha_mb,
        sha256_1k_msgs_s: sha_1k,
        rocks_batch_commits_s: commits_s,
        rocks_batch_mb_s: mb_s,
        rocks_batch_keys: keys,
        rocks_batch_bytes: bytes,
        rocks_small_synced_writes_s: small_w,
    };
    let p = "limits";
    rep.row(p, "ed25519 verify, single, 1 core", single, "sig/s", None);
    rep.row(
        p,
        format!("ed25519 verify, batches of {BATCH}, 1 core"),
        batch1,
        "sig/s",
        Some((single, "single verify, 1 core".into())),
    );
    rep.row(
        p,
        format!("ed25519 verify, batches of {BATCH}, {cores} cores at once"),
        batch_all,
        "sig/s",
        Some((
            batch1 * cores as f64,
            format!("{cores} × batch rate of 1 core"),
        )),
    );
    rep.row(p, "SHA-256, 1 MiB messages", sha_mb, "MB/s", None);
    rep.row(
        p,
        "SHA-256, 1 KiB messages",
        sha_1k,
        "msg/s",
        Some((
            sha_mb * 1e6 / 1024.0,
            "SHA-256 bulk rate in 1 KiB units".into(),
        )),
    );
    rep.row(
        p,
        format!(
            "RocksDB synced block commit ({} keys, {:.2} MB)",
            keys,
            bytes as f64 / 1e6
        ),
        commits_s,
        "commit/s",
        None,
    );
    rep.row(p, "RocksDB synced block commit, bytes", mb_s, "MB/s", None);
    rep.row(
        p,
        "RocksDB synced small write (safety state)",
        small_w,
        "write/s",
        None,
    );
    rep.parts.insert("limits".into(), serde_json::to_value(&l)?);
    Ok(l)
}

/// A temporary directory, removed when dropped.
fn temp_dir(label: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("aidledger-bench-{label}-"))
        .tempdir()
        .context("cannot create a temporary directory")
}

/// Synced commits of block-sized batches through a real `RocksStore`, and
/// small synced writes. Returns (commits/s, MB/s, keys, bytes, small/s).
fn rocks_limits(secs: f64) -> Result<(f64, f64, usize, usize, f64)> {
    // A block of 2,000 transactions writes about 3 state keys per
    // transaction; keys and values the size of real ones.
    const KEYS: usize = 6_000;
    const VALUE: usize = 128;
    let tmp = temp_dir("rocks")?;
    let mut c = SynthChain::new(&tmp.path().join("data"), StateMode::Store)?;
    let mut commits = 0u64;
    let mut spent = Duration::ZERO;
    let mut batch_bytes = 0usize;
    let mut round = 0u64;
    let limit = now();
    while spent.as_secs_f64() < secs && limit.elapsed().as_secs_f64() < secs * 6.0 + 5.0 {
        let t = c.time().saturating_add_ms(1_000);
        let (mut block, mut outcome) = c.build(t, &[])?;
        let mut bytes = 0usize;
        for k in 0..KEYS {
            let key = aidledger_types::hash::hash_parts(
                b"bench/rocks",
                &[&round.to_le_bytes(), &(k as u64).to_le_bytes()],
            )
            .0
            .to_vec();
            let mut key = [b"bench/".as_slice(), &key].concat();
            key.truncate(38);
            let value = vec![(k % 251) as u8; VALUE];
            bytes += key.len() + value.len();
            outcome.accumulator.insert(&key, &value);
            outcome.writes.insert(key, Some(value));
        }
        outcome.state_root = outcome.accumulator.root();
        block.header.state_root = outcome.state_root;
        let batch = c.commit_batch(block, &outcome)?;
        let t0 = now();
        c.commit_prepared(batch, outcome)?;
        spent += t0.elapsed();
        commits += 1;
        batch_bytes = bytes;
        round += 1;
    }
    let commits_s = commits as f64 / spent.as_secs_f64().max(1e-9);
    let mb_s = commits_s * batch_bytes as f64 / 1e6;
    let payload = [7u8; 256];
    let store = c.store.clone();
    let small = rate_for(secs, || {
        store.put_safety_state(&payload)?;
        Ok(1)
    })?;
    Ok((commits_s, mb_s, KEYS, batch_bytes, small))
}

// ---------------------------------------------------------------- (c) replay

fn replay_part(
    sizes: &Sizes,
    cores: usize,
    l: &Limits,
    rep: &mut Report,
    json_out: bool,
) -> Result<()> {
    let tmp = temp_dir("replay")?;
    let data = tmp.path().join("data");
    let t = now();
    let built = synth::build_chain(&data, sizes.replay_txs, sizes.replay_block_txs, cores)?;
    let gen_s = t.elapsed().as_secs_f64();
    say(
        json_out,
        format!(
            "replay: chain of {} blocks, {} txs built in {gen_s:.1} s",
            built.blocks, built.txs
        ),
    );
    let p = "replay";
    rep.row(
        p,
        format!("chain generation ({} txs, {cores} threads)", built.txs),
        built.txs as f64 / gen_s,
        "tx/s",
        Some((
            l.verify_batch_per_core * cores as f64,
            format!("batch verify, {cores} cores"),
        )),
    );
    let mut runs = Vec::new();
    let mut threads_list = vec![1usize];
    if cores >= 2 {
        threads_list.push(2);
    }
    for threads in threads_list {
        let mut src = StoreSource::open_read_only(&data)?;
        // The replay is all this process does while it runs: its CPU time
        // per transaction is the replay's cost, which a busy neighbour on
        // a shared machine moves far less than the rate.
        let me = std::process::id() as i32;
        let cpu0 = process_cpu_secs(me);
        let t = now();
        let out = replay(
            &mut src,
            &ReplayOptions {
                threads,
                expected_genesis: None,
            },
            &NO_PROGRESS,
        );
        let secs = t.elapsed().as_secs_f64();
        let cpu_us_per_tx = match (cpu0, process_cpu_secs(me)) {
            (Some(a), Some(b)) if out.summary.txs > 0 => {
                Some((b - a) * 1e6 / out.summary.txs as f64)
            }
            _ => None,
        };
        if let Some(f) = &out.failure {
            bail!("the synthetic chain did not verify: {f}");
        }
        if out.summary.state_root != Some(built.head_state_root) {
            bail!("the replay's state root differs from the chain's");
        }
        let tps = out.summary.txs as f64 / secs;
        say(
            json_out,
            format!("replay: {threads} thread(s): {tps:.0} tx/s ({secs:.1} s)"),
        );
        let bound = l.verify_batch_per_core * threads as f64;
        rep.row(
            p,
            format!("audit replay, --threads {threads}"),
            tps,
            "tx/s",
            Some((bound, format!("batch verify, {threads} core(s)"))),
        );
        if let Some(us) = cpu_us_per_tx {
            rep.row(
                p,
                format!("audit replay CPU per tx, --threads {threads}"),
                us,
                "µs",
                Some((
                    1e6 / l.verify_batch_per_core,
                    "batch verify of one signature, 1 core".into(),
                )),
            );
        }
        runs.push(json!({
            "cpu_us_per_tx": cpu_us_per_tx,
            "threads": threads,
            "seconds": secs,
            "blocks": out.summary.blocks,
            "txs": out.summary.txs,
            "tx_per_s": tps,
            "ratio_to_batch_verify": tps / bound,
        }));
    }
    rep.parts.insert(
        "replay".into(),
        json!({
            "chain_blocks": built.blocks,
            "chain_txs": built.txs,
            "generation_s": gen_s,
            "runs": runs,
        }),
    );
    Ok(())
}

// ------------------------------------------------------------ (g) join

/// Snapshot join against replay join (issue 16 part 4, ADR 017): one
/// synthetic chain whose workload registers a household in every third
/// transaction, then (1) the auditor's replay of it from genesis, the work
/// a node joining by replay does before it can answer a query (a lower
/// bound: a replaying node also writes every block), and (2) a snapshot
/// join in process: the serving node cuts the manifest at the head (in the
/// background on a live node), and the joiner fetches every chunk, checks
/// it against the manifest, installs it and recomputes the state root, as
/// `node run --from-snapshot` does (encoding and decoding each chunk as
/// the wire does; the loopback transfer itself is left out).
fn join_part(sizes: &Sizes, cores: usize, rep: &mut Report, json_out: bool) -> Result<()> {
    use aidledger_storage::snapshot::{chunk_pairs, manifest_at_head};
    use aidledger_storage::RocksStore;
    use aidledger_types::codec;
    use aidledger_types::snapshot::{SnapshotChunk, CHUNK_MAX_ENCODED_BYTES};

    let tmp = temp_dir("join")?;
    let data = tmp.path().join("data");
    let t = now();
    let built = synth::build_chain(&data, sizes.join_txs, sizes.replay_block_txs, cores)?;
    let gen_s = t.elapsed().as_secs_f64();
    // A checkpoint of the settled store: what a node pays for each
    // snapshot before cutting it (its memtables are empty here; on a live
    // node the flush of up to 64 MB of memtables comes on top).
    let checkpoint_s = {
        let s = RocksStore::open(&data)?;
        s.settle(Duration::from_secs(300))?;
        let t = now();
        s.checkpoint(tmp.path().join("checkpoint"))?;
        t.elapsed().as_secs_f64()
    };
    // Households in the head state, counted by their keys.
    let households = {
        let s = RocksStore::open_read_only(&data)?;
        let prefix = aidledger_contracts::keys::HOUSEHOLD_PREFIX;
        let mut n = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = s.state_scan(prefix, after.as_deref(), aidledger_storage::SCAN_LIMIT_MAX)?;
            let Some((last, _)) = page.last() else { break };
            n += page.len() as u64;
            after = Some(last.clone());
        }
        n
    };
    say(
        json_out,
        format!(
            "join: chain of {} blocks, {} txs (about {households} households) built in {gen_s:.1} s",
            built.blocks, built.txs
        ),
    );

    // (1) Replay from genesis.
    let mut src = StoreSource::open_read_only(&data)?;
    let t = now();
    let out = replay(
        &mut src,
        &ReplayOptions {
            threads: cores,
            expected_genesis: None,
        },
        &NO_PROGRESS,
    );
    let replay_s = t.elapsed().as_secs_f64();
    drop(src);
    if let Some(f) = &out.failure {
        bail!("the synthetic chain did not verify: {f}");
    }

    // (2) Snapshot: cut, then fetch, check and install.
    let source = RocksStore::open_read_only(&data)?;
    let t = now();
    let manifest = manifest_at_head(&source)?.context("the chain has no head")?;
    let cut_s = t.elapsed().as_secs_f64();
    let joiner_dir = tmp.path().join("joiner");
    let joiner = RocksStore::open(&joiner_dir)?;
    let (genesis_hash, genesis_doc) = source.genesis()?.context("no genesis")?;
    let t = now();
    manifest.check()?;
    joiner.snapshot_begin(genesis_hash, genesis_doc, manifest.height())?;
    let mut pairs = 0u64;
    let mut bytes = 0u64;
    for (i, info) in manifest.chunks.iter().enumerate() {
        let chunk = SnapshotChunk {
            height: manifest.height(),
            index: i as u32,
            pairs: chunk_pairs(&source, info)?,
        };
        let wire = codec::encode(&chunk);
        bytes += wire.len() as u64;
        let chunk: SnapshotChunk = codec::decode_with_limit(&wire, CHUNK_MAX_ENCODED_BYTES)?;
        manifest.check_chunk(&chunk)?;
        pairs += chunk.pairs.len() as u64;
        joiner.snapshot_put_chunk(manifest.height(), &chunk.pairs)?;
    }
    let head = joiner.snapshot_finish(&manifest, &source.set_changes(0, 256)?)?;
    let join_s = t.elapsed().as_secs_f64();
    if head.state_root != built.head_state_root {
        bail!("the installed state's root differs from the chain's");
    }
    say(
        json_out,
        format!(
            "join: replay {replay_s:.1} s; snapshot cut {cut_s:.1} s, join {join_s:.1} s ({} chunks, {pairs} pairs, {:.0} MB)",
            manifest.chunks.len(),
            bytes as f64 / 1e6
        ),
    );
    let p = "join";
    rep.row(
        p,
        format!(
            "replay join: audit replay from genesis, {} txs, {cores} threads",
            out.summary.txs
        ),
        replay_s,
        "s",
        Some((replay_s, "replay join".into())),
    );
    rep.row(
        p,
        format!(
            "snapshot join: fetch, check, install {} chunks ({pairs} pairs, {:.0} MB)",
            manifest.chunks.len(),
            bytes as f64 / 1e6
        ),
        join_s,
        "s",
        Some((replay_s, "replay join".into())),
    );
    rep.row(
        p,
        "checkpoint of the settled store (serving node)",
        checkpoint_s,
        "s",
        Some((replay_s, "replay join".into())),
    );
    rep.row(
        p,
        "snapshot cut at the head (serving node, background)",
        cut_s,
        "s",
        Some((replay_s, "replay join".into())),
    );
    rep.parts.insert(
        "join".into(),
        json!({
            "chain_blocks": built.blocks,
            "chain_txs": built.txs,
            "households": households,
            "generation_s": gen_s,
            "replay_s": replay_s,
            "snapshot_cut_s": cut_s,
            "checkpoint_s": checkpoint_s,
            "snapshot_join_s": join_s,
            "chunks": manifest.chunks.len(),
            "pairs": pairs,
            "bytes": bytes,
            "speedup": replay_s / join_s,
        }),
    );
    Ok(())
}

// ------------------------------------------------------------ (d) households

#[derive(Debug, Serialize)]
struct HouseholdRun {
    households: u64,
    populate_s: f64,
    /// Flushing and compacting after the bulk load (not timed).
    settle_s: f64,
    blocks: usize,
    txs: u64,
    execute_s: f64,
    commit_s: f64,
    /// All timed blocks together.
    tx_per_s: f64,
    /// The median of the blocks' own rates (execute + commit): the figure
    /// compared, as one slow block on a shared machine moves a total.
    median_block_tx_per_s: f64,
    entitlement_payments: usize,
}

fn household_run(sizes: &Sizes, cores: usize, n: u64) -> Result<HouseholdRun> {
    let tmp = temp_dir("households")?;
    let mut c = SynthChain::new(&tmp.path().join("data"), StateMode::Store)?;
    let chain = c.genesis.chain_id.clone();
    // The program, an entitlement to every household in the region, and
    // enough money to pay it.
    let mut setup = c.f.workload_block(0);
    setup.push(c.f.deposit("relief", 100_000_000_000));
    let setup = synth::verify_parallel(setup, &chain, cores)?;
    let t = c.time().saturating_add_ms(1_000);
    let (_, out) = c.block_at(t, &setup)?;
    if let Some(r) = out.receipts.iter().find(|r| !r.is_applied()) {
        bail!("setup tx {} rejected: {:?}", r.index, r.outcome);
    }
    let t = now();
    c.populate_households(n, 250_000, 1_000)?;
    let populate_s = t.elapsed().as_secs_f64();
    // Time the state, not the bulk load's compaction debt: a node holds
    // its households compacted (both sizes settle the same way).
    let t = now();
    c.store.settle(Duration::from_secs(300))?;
    let settle_s = t.elapsed().as_secs_f64();
    c.resync()?;
    let mut w = Workload::new(&c.f, 2)?;
    let mut blocks = Vec::new();
    for _ in 0..sizes.household_blocks {
        let txs = w.next_txs(&c.f, sizes.household_block_txs, cores)?;
        blocks.push(synth::verify_parallel(txs, &chain, cores)?);
    }
    // The first timed block is past the entitlement's first period, so
    // every block also pays a batch of households, as on a live chain.
    let first = Timestamp(
        c.genesis
            .genesis_time
            .0
            .saturating_add(MS_PER_DAY + 3_600_000),
    );
    let (mut exec_s, mut commit_s) = (0.0, 0.0);
    let (mut txs, mut payments) = (0u64, 0usize);
    let mut block_rates: Vec<f64> = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let t = if i == 0 {
            first
        } else {
            c.time().saturating_add_ms(1_000)
        };
        let t0 = now();
        let (block, outcome) = c.build(t, b)?;
        let this_exec = t0.elapsed().as_secs_f64();
        exec_s += this_exec;
        if block.txs.len() != b.len() {
            bail!("{} of {} transactions included", block.txs.len(), b.len());
        }
        if let Some(r) = outcome.receipts.iter().find(|r| !r.is_applied()) {
            bail!("tx {} rejected: {:?}", r.index, r.outcome);
        }
        payments += outcome
            .events
            .iter()
            .filter(|e| {
                matches!(&e.body, aidledger_contracts::EventBody::Money(m) if m.entitlement.is_some())
            })
            .count();
        txs += block.txs.len() as u64;
        let t1 = now();
        let n_txs = block.txs.len() as f64;
        c.commit(block, outcome)?;
        let this_commit = t1.elapsed().as_secs_f64();
        commit_s += this_commit;
        block_rates.push(n_txs / (this_exec + this_commit).max(1e-9));
    }
    block_rates.sort_by(f64::total_cmp);
    let median_block_tx_per_s = block_rates
        .get(block_rates.len() / 2)
        .copied()
        .unwrap_or(0.0);
    Ok(HouseholdRun {
        households: n,
        populate_s,
        settle_s,
        blocks: blocks.len(),
        txs,
        execute_s: exec_s,
        commit_s,
        tx_per_s: txs as f64 / (exec_s + commit_s).max(1e-9),
        median_block_tx_per_s,
        entitlement_payments: payments,
    })
}

fn households_part(
    sizes: &Sizes,
    cores: usize,
    l: &Limits,
    rep: &mut Report,
    json_out: bool,
) -> Result<()> {
    let mut runs = Vec::new();
    for n in [sizes.households_small, sizes.households_large] {
        say(
            json_out,
            format!("households: {n} in state, executing and committing blocks"),
        );
        let r = household_run(sizes, cores, n)?;
        say(
            json_out,
            format!(
                "households: {n}: median block {:.0} tx/s, all blocks {:.0} tx/s (populated in {:.1} s, settled in {:.1} s, {} payments)",
                r.median_block_tx_per_s, r.tx_per_s, r.populate_s, r.settle_s, r.entitlement_payments
            ),
        );
        runs.push(r);
    }
    let p = "households";
    for r in &runs {
        rep.row(
            p,
            format!(
                "execute + commit, {} households ({} payments), median block",
                r.households, r.entitlement_payments
            ),
            r.median_block_tx_per_s,
            "tx/s",
            Some((l.verify_batch_per_core, "batch verify, 1 core".into())),
        );
    }
    let (small, large) = (&runs[0], &runs[1]);
    if small.entitlement_payments != large.entitlement_payments {
        rep.errors.push(format!(
            "households: unequal work ({} against {} entitlement payments); the loss compares different blocks",
            small.entitlement_payments, large.entitlement_payments
        ));
    }
    let loss = (1.0 - large.median_block_tx_per_s / small.median_block_tx_per_s) * 100.0;
    rep.row(
        p,
        format!(
            "throughput loss, {} → {} households",
            small.households, large.households
        ),
        loss,
        "%",
        Some((
            TARGET_HOUSEHOLD_LOSS_PCT,
            format!("target ≤ {TARGET_HOUSEHOLD_LOSS_PCT}%"),
        )),
    );
    rep.parts.insert(
        "households".into(),
        json!({ "runs": runs, "loss_pct": loss }),
    );
    Ok(())
}

// ------------------------------------------------------- (b, e, f) testnet

/// Stops the nodes this run started and removes a temporary testnet
/// directory, on every exit path.
struct TestnetGuard {
    homes: Vec<PathBuf>,
    /// Removed after `drop` has stopped the nodes (fields drop last).
    _temp: Option<tempfile::TempDir>,
}

impl Drop for TestnetGuard {
    fn drop(&mut self) {
        let _ = procs::stop_all(&self.homes, Duration::from_secs(10));
    }
}

fn status_of(api: &str) -> Option<NodeStatus> {
    aidledger_node::cli::query::node_status(api).ok()
}

/// Each validator's consensus messages received and blocks committed,
/// from its metrics (`None` for a node that did not answer).
fn consensus_counts(t: &crate::testnet::TestnetFile) -> Vec<Option<(f64, f64)>> {
    t.orgs
        .iter()
        .filter(|o| o.validator)
        .map(|o| {
            Some((
                metric(&o.api, "aidledger_consensus_messages_in_total")?,
                metric(&o.api, "aidledger_committed_blocks_total")?,
            ))
        })
        .collect()
}

/// CPU time (user and system, every thread) of each running node of the
/// testnet, in seconds, from `/proc/PID/stat`, with the node's process id.
fn nodes_cpu_secs(t: &crate::testnet::TestnetFile) -> Vec<(String, i32, f64)> {
    t.orgs
        .iter()
        .filter_map(|o| {
            let pid = procs::running(&o.home)?;
            Some((o.id.clone(), pid, process_cpu_secs(pid)?))
        })
        .collect()
}

fn process_cpu_secs(pid: i32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields that
    // follow it start with the state (field 3); utime and stime are 14, 15.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some((utime + stime) as f64 / tick.max(1) as f64)
}

/// Peak and current RSS of a process, in MB.
fn rss_mb(pid: i32) -> Option<(f64, f64)> {
    let [hwm, rss] = aidledger_node::node::proc_status_bytes(Some(pid), ["VmHWM", "VmRSS"])?;
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    Some((mb(hwm), mb(rss)))
}

fn metric(api: &str, name: &str) -> Option<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut resp = agent.get(&format!("{api}/metrics")).call().ok()?;
    let text = resp.body_mut().read_to_string().ok()?;
    text.lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k == name || k.starts_with(&format!("{name}{{")))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn load_json(r: &LoadReport) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

fn testnet_part(
    a: &SuiteArgs,
    sizes: &Sizes,
    cores: usize,
    l: &Limits,
    rep: &mut Report,
    json_out: bool,
) -> Result<()> {
    let (dir, temp) = match &a.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = temp_dir("testnet")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut guard = TestnetGuard {
        homes: Vec::new(),
        _temp: temp,
    };
    say(
        json_out,
        format!(
            "testnet: {} validators{} in {}",
            a.validators,
            if a.observers { " and 2 observers" } else { "" },
            dir.display()
        ),
    );
    let exe = std::env::current_exe().context("cannot find the aidledger executable")?;
    let out = Command::new(&exe)
        .args(["testnet", "init", "--validators"])
        .arg(a.validators.to_string())
        .arg("--dir")
        .arg(&dir)
        .env_remove("AIDLEDGER_HOME")
        .env_remove("AIDLEDGER_NODE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running testnet init")?;
    if !out.status.success() {
        bail!(
            "testnet init --dir {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut t = read_testnet(&dir)?;
    guard.homes = t.orgs.iter().map(|o| o.home.clone()).collect();
    // From here on `t.orgs` is the nodes that run.
    t.orgs.retain(|o| a.observers || o.validator);
    start_selected(&dir, 60, |o| a.observers || o.validator)?;
    // Let the validators connect and agree on a first view.
    let t0 = now();
    let connected = || {
        t.orgs
            .iter()
            .all(|o| status_of(&o.api).is_some_and(|s| s.peers + 1 >= t.orgs.len()))
    };
    while !connected() {
        if t0.elapsed() >= Duration::from_secs(30) {
            say(
                json_out,
                "testnet: not every node sees every other after 30 s; loading anyway",
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let quiet = Ctx {
        home: None,
        node: None,
        output: Output::Json,
    };
    let node_limit = cores as f64 * l.verify_batch_per_core / t.orgs.len().max(1) as f64;
    let run_load_with =
        |rate: u64, duration: u64, drain: u64, workers: u64| -> Result<LoadReport> {
            load(
                &quiet,
                &LoadArgs {
                    dir: dir.clone(),
                    rate: rate.clamp(1, 200_000),
                    duration,
                    drain,
                    workers,
                    cpus: a.generator_cpus.clone(),
                },
            )
            .inspect(|r| {
                // A run that went wrong names it where the operator reads.
                if r.refused > 0 || r.lost > 0 {
                    say(
                        json_out,
                        format!(
                            "testnet: {} refused, {} acknowledged and lost; last refusal: {}",
                            r.refused,
                            r.lost,
                            r.last_refusal.as_deref().unwrap_or("none")
                        ),
                    );
                }
            })
        };
    let run_load = |rate: u64, duration: u64, drain: u64| run_load_with(rate, duration, drain, 16);

    // Between runs, let the mempools empty: the next run reads account
    // nonces from committed state.
    let wait_idle = |what: &str| {
        let t0 = now();
        // A node that does not answer counts as busy.
        let busy = || -> usize {
            t.orgs
                .iter()
                .map(|o| status_of(&o.api).map_or(1, |s| s.mempool_txs))
                .sum()
        };
        let mut left = busy();
        while left > 0 && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(250));
            left = busy();
        }
        let secs = t0.elapsed().as_secs_f64();
        say(
            json_out,
            if left == 0 {
                format!("testnet: mempools empty {secs:.1} s after the {what} run")
            } else {
                format!(
                    "testnet: {left} transactions still pending {secs:.1} s after the {what} run"
                )
            },
        );
    };

    // Probe: a moderate offered load shows what the testnet sustains
    // without building a backlog that takes minutes to drain; the
    // sustained run then offers 1.3 × that (or 3 × the probe rate if the
    // probe did not saturate), capped at the per-node verify limit. The
    // probe goes up to 4,000 tx/s so that the sustained run can offer
    // more than P1's 10,000: offering less would cap the figure it
    // measures.
    let probe_rate = (node_limit as u64).clamp(200, PROBE_RATE_MAX);
    say(
        json_out,
        format!(
            "testnet: probing at {probe_rate} tx/s for {} s",
            sizes.probe_secs
        ),
    );
    let probe = run_load(probe_rate, sizes.probe_secs, 10)?;
    wait_idle("probe");
    let sat_rate = if probe.committed_tps >= 0.85 * probe_rate as f64 {
        ((3 * probe_rate) as f64).min(node_limit.max(probe_rate as f64)) as u64
    } else {
        (probe.committed_tps * 1.3) as u64
    }
    .max(100);
    say(
        json_out,
        format!(
            "testnet: probe committed {:.0} tx/s; saturating at {sat_rate} tx/s for {} s",
            probe.committed_tps, sizes.sustained_secs
        ),
    );
    let cpu_before = nodes_cpu_secs(&t);
    let msgs_before = consensus_counts(&t);
    let sustained = run_load(sat_rate, sizes.sustained_secs, 30)?;
    let cpu_after = nodes_cpu_secs(&t);
    let msgs_after = consensus_counts(&t);
    // Consensus messages each validator received per block it committed
    // over the sustained run (P7: the message count per block against n).
    let per_block: Vec<f64> = msgs_before
        .iter()
        .zip(&msgs_after)
        .filter_map(|(b, a)| {
            let (b, a) = (b.as_ref()?, a.as_ref()?);
            let blocks = a.1 - b.1;
            (blocks > 0.0 && a.0 >= b.0).then(|| (a.0 - b.0) / blocks)
        })
        .collect();
    let msgs_per_block =
        (!per_block.is_empty()).then(|| per_block.iter().sum::<f64>() / per_block.len() as f64);
    // CPU each node spent per committed transaction over the sustained run
    // (from the setup of its bench program to the end of its drain): every
    // node verifies, executes and stores every transaction.
    // A node that restarted during the run (another process) has no figure.
    let node_cpu_us: Vec<(String, f64)> = cpu_before
        .iter()
        .filter_map(|(org, pid, b)| {
            let a = cpu_after.iter().find(|(o, p, _)| o == org && p == pid)?.2;
            (a >= *b).then(|| {
                (
                    org.clone(),
                    (a - b) * 1e6 / sustained.committed.max(1) as f64,
                )
            })
        })
        .collect();
    let node_cpu_mean =
        node_cpu_us.iter().map(|(_, u)| u).sum::<f64>() / node_cpu_us.len().max(1) as f64;
    let half = ((sustained.committed_tps * 0.5) as u64).max(1);
    say(
        json_out,
        format!(
            "testnet: sustained {:.0} tx/s; latency at {half} tx/s for {} s",
            sustained.committed_tps, sizes.latency_secs
        ),
    );
    wait_idle("sustained");
    let mut lats: Vec<LoadReport> = Vec::new();
    for i in 0..sizes.latency_runs {
        if i > 0 {
            wait_idle("latency");
        }
        let r = run_load(half, sizes.latency_secs, 30)?;
        say(
            json_out,
            format!(
                "testnet: at {half} tx/s, run {} of {}: p50 {:.0} ms, p99 {:.0} ms",
                i + 1,
                sizes.latency_runs,
                r.p50_ms,
                r.p99_ms
            ),
        );
        lats.push(r);
    }
    // The run whose p99 is the median of the runs stands for them all; the
    // worst and the count of runs within both targets are reported beside it.
    let mut by_p99: Vec<&LoadReport> = lats.iter().collect();
    by_p99.sort_by(|x, y| x.p99_ms.total_cmp(&y.p99_ms));
    let lat = by_p99
        .get(by_p99.len() / 2)
        .copied()
        .ok_or_else(|| anyhow!("no latency run"))?
        .clone();
    let worst_p99 = by_p99.last().map_or(0.0, |r| r.p99_ms);
    let within = lats
        .iter()
        .filter(|r| r.p50_ms <= TARGET_P50_MS && r.p99_ms <= TARGET_P99_MS)
        .count();
    if !json_out {
        eprintln!("[bench] latency histogram of the median run at {half} tx/s:");
        for l in lat.latency_histogram.lines(40) {
            eprintln!("[bench]   {l}");
        }
    }
    // (P8) Overload: offered well past what the testnet commits. What
    // cannot be admitted must be refused with back-pressure (the nodes
    // answer busy and the generator backs off), not queued for minutes,
    // and the load must cause no view change.
    wait_idle("latency");
    let views = || -> Vec<u64> {
        t.orgs
            .iter()
            .map(|o| status_of(&o.api).map_or(0, |s| s.view))
            .collect()
    };
    say(
        json_out,
        format!(
            "testnet: overload, {} tx/s offered for {} s",
            sizes.overload_rate, sizes.overload_secs
        ),
    );
    let views_before = views();
    let over = run_load(
        sizes.overload_rate,
        sizes.overload_secs,
        OVERLOAD_DRAIN_SECS,
    )?;
    let views_after = views();
    let view_changes = views_before
        .iter()
        .zip(&views_after)
        .map(|(b, a)| a.saturating_sub(*b))
        .max()
        .unwrap_or(0);
    say(
        json_out,
        format!(
            "testnet: overload committed {:.0} tx/s, {} busy answers, {view_changes} view changes, max latency {:.0} ms",
            over.committed_tps, over.busy_answers, over.max_ms
        ),
    );
    wait_idle("overload");

    let mut rss: Vec<Value> = Vec::new();
    let mut peak_by_org: std::collections::BTreeMap<String, f64> = Default::default();
    let mut sample_rss = |after: &str| {
        for o in &t.orgs {
            let Some(pid) = procs::running(&o.home) else {
                continue;
            };
            if let Some((hwm, cur)) = rss_mb(pid) {
                rss.push(json!({"org": o.id, "after": after, "pid": pid, "vm_hwm_mb": hwm, "vm_rss_mb": cur}));
                let e = peak_by_org.entry(o.id.clone()).or_insert(0.0);
                *e = e.max(hwm);
            }
        }
    };
    sample_rss("load");

    // (e) Catch-up of a wiped validator.
    let catchup = catch_up(&t, sizes, json_out);
    sample_rss("catch-up");

    let p = "testnet";
    rep.row(
        p,
        format!(
            "probe: committed at {probe_rate} tx/s offered, {} s",
            sizes.probe_secs
        ),
        probe.committed_tps,
        "tx/s",
        Some((node_limit, "per-node verify limit".into())),
    );
    rep.row(
        p,
        format!(
            "sustained committed, {} tx/s offered, {} s",
            sat_rate, sizes.sustained_secs
        ),
        sustained.committed_tps,
        "tx/s",
        Some((
            node_limit,
            format!(
                "per-node verify limit {:.0} ({cores} cores × batch / {} nodes, all verifying)",
                node_limit,
                t.orgs.len()
            ),
        )),
    );
    rep.row(
        p,
        format!("latency p50 at {half} tx/s (50%), median run"),
        lat.p50_ms,
        "ms",
        Some((TARGET_P50_MS, "target p50 ≤ 250 ms".into())),
    );
    rep.row(
        p,
        format!("latency p99 at {half} tx/s (50%), median run"),
        lat.p99_ms,
        "ms",
        Some((TARGET_P99_MS, "target p99 ≤ 1 s".into())),
    );
    rep.row(
        p,
        format!(
            "latency p99 at {half} tx/s (50%), worst of {} runs",
            lats.len()
        ),
        worst_p99,
        "ms",
        Some((TARGET_P99_MS, "target p99 ≤ 1 s".into())),
    );
    rep.row(
        p,
        "latency runs within p50 ≤ 250 ms and p99 ≤ 1 s",
        within as f64,
        "runs",
        Some((lats.len() as f64, "runs".into())),
    );
    if !node_cpu_us.is_empty() {
        rep.row(
            p,
            format!(
                "node CPU per committed tx, sustained run (mean of {} nodes)",
                node_cpu_us.len()
            ),
            node_cpu_mean,
            "µs",
            Some((TARGET_NODE_CPU_US, "target ≤ 50 µs".into())),
        );
    }
    if let Some(m) = msgs_per_block {
        let n = a.validators as f64;
        rep.row(
            p,
            format!(
                "consensus messages received per block by each of {} validators, sustained run",
                a.validators
            ),
            m,
            "msgs",
            Some((
                2.0 * (n - 1.0),
                "one round, 2(n − 1): from each other validator a prepare (the leader's pre-prepare standing for its own) and a commit".into(),
            )),
        );
    }
    rep.row(
        p,
        "load generator CPU per submitted tx, sustained run",
        sustained.generator.us_per_tx,
        "µs",
        Some((0.0, "what measuring costs".into())),
    );
    rep.row(
        p,
        "load generator, cores kept busy in the sustained run",
        sustained.generator.cores,
        "cores",
        Some((cores as f64, format!("{cores} cores"))),
    );
    rep.row(
        p,
        format!("committed at {half} tx/s offered"),
        lat.committed_tps,
        "tx/s",
        Some((half as f64, "offered rate".into())),
    );
    let o = sizes.overload_rate;
    rep.row(
        p,
        format!(
            "overload: committed at {o} tx/s offered, {} s",
            sizes.overload_secs
        ),
        over.committed_tps,
        "tx/s",
        Some((o as f64, "offered rate".into())),
    );
    rep.row(
        p,
        format!("overload: submitted and acknowledged, {OVERLOAD_WORKERS} submitters"),
        over.submit_rate,
        "tx/s",
        Some((o as f64, "offered rate".into())),
    );
    rep.row(
        p,
        "overload: view changes during the run (most at any node)",
        view_changes as f64,
        "views",
        Some((0.0, "target 0".into())),
    );
    rep.row(
        p,
        "overload: submissions answered busy (back-pressure), then retried",
        over.busy_answers as f64,
        "answers",
        Some((over.submitted as f64, "transactions submitted".into())),
    );
    rep.row(
        p,
        "overload: latency p99 of what committed",
        over.p99_ms,
        "ms",
        Some((60_000.0, "a minute".into())),
    );
    rep.row(
        p,
        "overload: latency max of what committed",
        over.max_ms,
        "ms",
        Some((60_000.0, "a minute".into())),
    );
    rep.row(
        p,
        format!("overload: not committed {OVERLOAD_DRAIN_SECS} s after the last submission"),
        over.lost as f64,
        "txs",
        Some((over.submitted as f64, "transactions submitted".into())),
    );
    match &catchup {
        Ok(c) => {
            rep.row(
                p,
                format!(
                    "catch-up of a wiped validator ({} blocks, {:.1} s)",
                    c.blocks, c.seconds
                ),
                c.blocks as f64 / c.seconds,
                "block/s",
                Some((0.0, "-".into())),
            );
            rep.row(
                p,
                format!("catch-up of a wiped validator ({} txs)", c.txs),
                c.txs as f64 / c.seconds,
                "tx/s",
                Some((
                    cores as f64 * l.verify_batch_per_core,
                    format!("batch verify, {cores} cores"),
                )),
            );
        }
        Err(e) => rep.errors.push(format!("catch-up: {e:#}")),
    }
    for (org, mb) in &peak_by_org {
        rep.row(
            p,
            format!("peak RSS (VmHWM), {org}"),
            *mb,
            "MB",
            Some((TARGET_RSS_MB, "target 300 MB".into())),
        );
    }
    rep.parts.insert(
        "testnet".into(),
        json!({
            "dir": dir,
            "nodes": t.orgs.len(),
            "validators": t.orgs.iter().filter(|o| o.validator).count(),
            "per_node_verify_limit_tx_s": node_limit,
            "per_validator_verify_limit_tx_s": cores as f64 * l.verify_batch_per_core
                / t.orgs.iter().filter(|o| o.validator).count().max(1) as f64,
            "probe": load_json(&probe),
            "sustained": load_json(&sustained),
            "sustained_node_cpu_us_per_tx": node_cpu_us.iter().map(|(o, u)| json!({"org": o, "us": u})).collect::<Vec<_>>(),
            "latency_at_half": load_json(&lat),
            "latency_runs_at_half": lats.iter().map(load_json).collect::<Vec<_>>(),
            "overload": load_json(&over),
            "overload_view_changes": view_changes,
            "consensus_messages_per_block": msgs_per_block,
            "catch_up": catchup.as_ref().map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).unwrap_or_else(|e| json!({"error": format!("{e:#}")})),
            "rss": rss,
        }),
    );
    drop(guard);
    Ok(())
}

#[derive(Debug, Serialize)]
struct CatchUp {
    org: String,
    target_height: u64,
    blocks: u64,
    txs: u64,
    seconds: f64,
    /// From starting the process to its API answering.
    startup_s: f64,
}

fn catch_up(t: &crate::testnet::TestnetFile, sizes: &Sizes, json_out: bool) -> Result<CatchUp> {
    let victim = t
        .orgs
        .iter()
        .rev()
        .find(|o| o.validator)
        .ok_or_else(|| anyhow!("no validator"))?;
    procs::stop_all(std::slice::from_ref(&victim.home), Duration::from_secs(10))?;
    // A node this tool could not recognise as its own was not signalled:
    // wiping its data under it would time nothing but its answers.
    if status_of(&victim.api).is_some() {
        bail!(
            "{} still answers at {} after being stopped; its data is left as it is",
            victim.id,
            victim.api
        );
    }
    let target = t
        .orgs
        .iter()
        .filter(|o| o.id != victim.id)
        .filter_map(|o| status_of(&o.api))
        .map(|s| s.height)
        .max()
        .ok_or_else(|| anyhow!("no other node answers"))?;
    let data = victim.home.join("data");
    std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&data)?;
    }
    say(
        json_out,
        format!(
            "catch-up: {} wiped, catching up to height {target}",
            victim.id
        ),
    );
    let t0 = now();
    let _child = procs::spawn_node(&victim.home)?;
    let mut startup_s = None;
    loop {
        let e = t0.elapsed().as_secs_f64();
        if e > sizes.catchup_timeout_secs as f64 {
            let h = status_of(&victim.api).map(|s| s.height).unwrap_or(0);
            bail!(
                "{} reached height {h} of {target} within {} s",
                victim.id,
                sizes.catchup_timeout_secs
            );
        }
        if let Some(s) = status_of(&victim.api) {
            startup_s.get_or_insert(e);
            if s.height >= target {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seconds = t0.elapsed().as_secs_f64();
    let txs = metric(&victim.api, "aidledger_committed_txs_total").ok_or_else(|| {
        anyhow!(
            "{} reports no aidledger_committed_txs_total at {}/metrics",
            victim.id,
            victim.api
        )
    })? as u64;
    Ok(CatchUp {
        org: victim.id.clone(),
        target_height: target,
        blocks: target,
        txs,
        seconds,
        startup_s: startup_s.unwrap_or(seconds),
    })
}

#[cfg(test)]
mod tests {
    use super::process_cpu_secs;

    #[test]
    fn a_process_cpu_time_is_read_from_proc() {
        let me = i32::try_from(std::process::id()).unwrap();
        // Burn CPU until the figure is above zero ticks: the kernel counts
        // CPU time in ticks of 10 ms, sampled, so one fixed burn may read
        // zero on a busy machine (it did once). Bounded: at most 100
        // rounds of about 10 ms each.
        let mut secs = 0.0;
        let mut x = 0u64;
        for _ in 0..100 {
            for i in 0..10_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            secs = process_cpu_secs(me).unwrap();
            if secs > 0.0 {
                break;
            }
        }
        assert!(secs > 0.0 && secs.is_finite(), "{secs}");
        // No such process: no figure, no panic.
        assert_eq!(process_cpu_secs(i32::MAX), None);
    }
}
