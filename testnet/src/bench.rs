//! `aidledger bench load`: an open-loop load generator against a local
//! testnet (`testnet.json`).
//!
//! It pre-signs a realistic mix (deposits into a bench program, household
//! registrations, attestations about households) across every operator key
//! of the testnet, submits it to every node at a fixed rate for a bounded
//! time, and follows the chain's blocks to see each transaction commit.
//!
//! An acknowledged transaction is one a node admitted to its mempool. A
//! node may die before gossiping it, so, like any client of a BFT ledger,
//! the generator re-submits acknowledged transactions that have not
//! committed to another node; nonces make this safe (a transaction commits
//! at most once). `lost` counts acknowledged transactions never seen in a
//! block by the end of the drain period; `duplicates` counts any seen in
//! two blocks (must be 0).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aidledger_contracts::model::{ApprovalPolicy, AttestValue, Subject};
use aidledger_contracts::{payload, Account, Payload};
use aidledger_crypto::{read_key_file, Keypair, Purpose};
use aidledger_types::{
    Amount, ChainId, Currency, Hash, OrgId, RegionCode, Role, SignedTx, Slug, Text, TxBody,
};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

pub mod budget;
pub mod flood;
pub mod hist;
#[cfg(feature = "suite")]
pub mod suite;

use crate::testnet::read_testnet;
use aidledger_node::api_types::{BatchSubmitResponse, BlockView, NodeStatus, BATCH_SUBMIT_MAX};
use aidledger_node::cli::Ctx;
use aidledger_node::client::Client;

/// Most transactions one run pre-signs.
const MAX_TXS: u64 = 5_000_000;
/// An acknowledged transaction not committed after this long is
/// re-submitted to another node.
const RETRY_AFTER: Duration = Duration::from_secs(4);
/// Households registered during setup, the subjects of attestations.
const SETUP_HOUSEHOLDS: usize = 16;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Submit signed, valid transactions to every node of a testnet at a
    /// fixed rate for a bounded time; report committed throughput and
    /// submit-to-commit latency. The last line of --output json is the result.
    Load(LoadArgs),
    /// Issue 15's attack beside a probe: threads flood one node (the
    /// leader by default) with batches of transactions whose signatures
    /// are bad but whose accounts, roles and nonces pass the cheap checks,
    /// while a probe commits one legitimate transaction at a time through
    /// another node. Reports the probe's latency with and without the
    /// flood, and whether any view changed. Bounded in time.
    Flood(flood::FloodArgs),
    /// The benchmark suite: the machine's limits (signature verification,
    /// SHA-256, synced RocksDB writes), a 4-validator testnet's sustained
    /// throughput, latency at half load, catch-up and memory, the audit
    /// replay rate and the cost of a large state, each figure also as a
    /// ratio to the limit that bounds it. Writes one JSON file and prints a
    /// table.
    #[cfg(feature = "suite")]
    Suite(suite::SuiteArgs),
    /// The benchmark suite (not in this build: it needs `--features
    /// bench-suite`, which adds test kits that sign with keys derived from
    /// public seeds).
    #[cfg(not(feature = "suite"))]
    Suite {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// The testnet directory (holds testnet.json).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Target submission rate, transactions per second.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub rate: u64,
    /// How long to submit, in seconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// After the last submission, how long to wait for commits, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub drain: u64,
    /// Concurrent HTTP submitters.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: u64,
    /// Keep the generator, every thread of it, on these CPUs (a list as
    /// `taskset -c` takes it: 0,2-3), so that it takes no more of the
    /// machine than that from the nodes it measures [default: any CPU].
    #[arg(long, value_name = "LIST", value_parser = parse_cpus_arg)]
    pub cpus: Option<CpuList>,
}

/// The CPUs `--cpus` names, sorted, without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

pub fn parse_cpus_arg(s: &str) -> std::result::Result<CpuList, String> {
    budget::parse_cpu_list(s).map(CpuList)
}

/// The result: the last line of `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub submitted: u64,
    pub acknowledged: u64,
    pub refused: u64,
    pub committed: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub resubmitted: u64,
    /// Requests a node answered `503 busy` or `429 rate-limited`; each was
    /// retried after a jittered back-off.
    pub busy_answers: u64,
    pub target_rate: u64,
    pub duration_s: u64,
    pub submit_rate: f64,
    pub committed_tps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Every committed transaction's submit-to-commit latency, counted
    /// into buckets.
    pub latency_histogram: hist::Histogram,
    /// The CPU the generator itself used from the first submission to the
    /// end of the drain.
    pub generator: budget::GeneratorUse,
    pub first_height: u64,
    pub last_height: u64,
    pub program: String,
    /// The reason a node gave for the last transaction it refused, if any
    /// was refused: a run that goes wrong says why in its JSON (a suite
    /// run once had 43,018 refusals and nothing to name them).
    pub last_refusal: Option<String>,
}

/// One signer and the nonce its next transaction carries.
struct Signer {
    org: OrgId,
    role: Role,
    key: Keypair,
    nonce: u64,
}

/// Per-transaction tracking. Times are milliseconds since the run began.
struct Tracked {
    encoded_hex: String,
    /// First submission (0 = not yet).
    sent_ms: AtomicU64,
    /// Last (re)submission.
    last_sent_ms: AtomicU64,
    acked: AtomicBool,
    /// The nodes (bit i for node i, mod 64) that acknowledged it: a
    /// re-submission goes only to a node that has not.
    acked_by: AtomicU64,
    /// Commit seen (0 = not yet).
    committed_ms: AtomicU64,
    commits: AtomicUsize,
    attempts: AtomicUsize,
}

struct Run {
    start: std::time::Instant,
    txs: Vec<Tracked>,
    by_id: HashMap<Hash, usize>,
    nodes: Vec<String>,
    refused: AtomicU64,
    resubmitted: AtomicU64,
    busy: AtomicU64,
    stop_watch: AtomicBool,
    heights: Mutex<(u64, u64)>,
    last_refusal: Mutex<Option<String>>,
}

impl Run {
    #[allow(clippy::disallowed_methods)] // the load tool measures wall time
    fn now() -> std::time::Instant {
        std::time::Instant::now()
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .timeout_connect(Some(Duration::from_secs(2)))
        .max_redirects(0)
        .build()
        .into()
}

/// A node asked the client to come back later (`503 busy` or `429
/// rate-limited`), after `retry_after`.
#[derive(Debug)]
struct Busy {
    retry_after: Duration,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "busy; retry after {:?}", self.retry_after)
    }
}

impl std::error::Error for Busy {}

/// A transaction every node has acknowledged, still not committed after
/// this long since it was last sent, may be sent to them again (a node that
/// restarted lost its mempool).
const ALL_ACKED_RETRY: Duration = Duration::from_secs(30);

fn node_bit(n: usize) -> u64 {
    1u64 << (n % 64)
}

/// The node a re-submission goes to: the first from `start` (mod `nodes`)
/// that has not acknowledged the transaction (`acked_by`); when all have,
/// `start`'s node if `stale` (waited [`ALL_ACKED_RETRY`]), else none.
fn retry_node(nodes: usize, start: usize, acked_by: u64, stale: bool) -> Option<usize> {
    if nodes == 0 {
        return None;
    }
    (0..nodes)
        .map(|k| (start + k) % nodes)
        .find(|&n| acked_by & node_bit(n) == 0)
        .or_else(|| stale.then_some(start % nodes))
}

/// Most tries of one batch against busy nodes before it is left to the
/// re-submission loop.
const BUSY_TRIES: u32 = 8;
/// The first back-off after a busy answer; it doubles with each try, up to
/// the node's `Retry-After`.
const BUSY_BASE: Duration = Duration::from_millis(25);

/// How long to wait before try `k` (from 0) after a busy answer: "full
/// jitter", a uniform draw below min(Retry-After, base × 2^k), so many
/// workers refused at once do not come back at once.
fn backoff(k: u32, retry_after: Duration) -> Duration {
    use rand::Rng;
    let cap = BUSY_BASE
        .saturating_mul(1u32 << k.min(16))
        .min(retry_after.max(BUSY_BASE));
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::thread_rng().gen_range(1..=ms))
}

/// Submits a batch with `POST /v1/txs/batch`. For each transaction:
/// Ok(true) if the node admitted it (or already holds it), Ok(false) with
/// the reason if it refused it. Err if the node could not be reached, or
/// [`Busy`] (downcast) if it asked to be left alone for a while.
fn submit_batch(
    agent: &ureq::Agent,
    node: &str,
    txs: &[&str],
) -> Result<Vec<(bool, Option<String>)>> {
    let body = serde_json::json!({ "txs": txs });
    let mut resp = agent
        .post(&format!("{node}/v1/txs/batch"))
        .send_json(&body)
        .map_err(|e| anyhow!("{node}: {e}"))?;
    let status = resp.status();
    if status.as_u16() == 503 || status.as_u16() == 429 {
        let secs = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1)
            .min(60);
        return Err(Busy {
            retry_after: Duration::from_secs(secs),
        }
        .into());
    }
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    if !status.is_success() {
        bail!("{node}: HTTP {status}: {text}");
    }
    let r: BatchSubmitResponse =
        serde_json::from_str(&text).map_err(|e| anyhow!("{node}: bad answer: {e}"))?;
    if r.results.len() != txs.len() {
        bail!(
            "{node}: {} results for {} transactions",
            r.results.len(),
            txs.len()
        );
    }
    Ok(r.results
        .into_iter()
        .map(|it| match it.error {
            None => (true, None),
            // Already on the chain: committed, which is what was wanted.
            Some(_) if it.included_at.is_some() => (true, None),
            // Already held: an acknowledgement all the same.
            Some(e) if e.contains("already pending") => (true, None),
            Some(e) => (false, Some(e)),
        })
        .collect())
}

fn load_signers(dir: &std::path::Path, client: &Client) -> Result<Vec<Signer>> {
    let t = read_testnet(dir)?;
    let mut out = Vec::new();
    for o in &t.orgs {
        for (role, path) in &o.clients {
            let role = Role::parse(role).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            let key = read_key_file(path).with_context(|| format!("{}", path.display()))?;
            let acct: Account = client
                .get_opt(&format!("/v1/accounts/{}", key.public().to_hex()))?
                .ok_or_else(|| anyhow!("the key {} is not an account", path.display()))?;
            out.push(Signer {
                org: OrgId::new(&o.id).map_err(|e| anyhow!("{e}"))?,
                role,
                key,
                nonce: acct.nonce,
            });
        }
    }
    Ok(out)
}

fn sign(chain: &ChainId, s: &mut Signer, p: &Payload) -> SignedTx {
    let body = TxBody {
        chain_id: chain.clone(),
        nonce: s.nonce,
        signer: s.key.public(),
        kind: p.kind(),
        payload: p.encode(),
    };
    s.nonce += 1;
    let signature = s.key.sign(chain, Purpose::Tx, body.id().as_bytes());
    SignedTx { body, signature }
}

/// Submits `tx` and waits for it to commit with a successful receipt.
fn setup_tx(client: &Client, tx: &SignedTx) -> Result<()> {
    let (_, st) = client.submit(hex::encode(tx.encode()), 60_000)?;
    match st.receipt {
        Some(r) if r.is_applied() => Ok(()),
        Some(r) => bail!("setup transaction rejected: {:?}", r.outcome),
        None => bail!("setup transaction did not commit within 60 s"),
    }
}

fn slug(s: &str) -> Result<Slug> {
    Slug::new(s).map_err(|e| anyhow!("{e}"))
}

/// Creates the bench program and registers the attestation subjects.
fn setup(
    chain: &ChainId,
    client: &Client,
    signers: &mut [Signer],
    program: &Slug,
    tag: &str,
) -> Result<Vec<Hash>> {
    let funding: Vec<OrgId> = {
        let mut v: Vec<OrgId> = signers
            .iter()
            .filter(|s| s.role == Role::Disburser)
            .map(|s| s.org.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if funding.is_empty() {
        bail!("the testnet has no disburser key");
    }
    let officer = signers
        .iter_mut()
        .find(|s| s.role == Role::ProgramOfficer)
        .ok_or_else(|| anyhow!("the testnet has no program-officer key"))?;
    let p = Payload::CreateProgram(payload::CreateProgram {
        id: program.clone(),
        title: Text::new("Load benchmark fund").map_err(|e| anyhow!("{e}"))?,
        currency: Currency::new("CNY").map_err(|e| anyhow!("{e}"))?,
        decimals: 2,
        funding_orgs: funding,
        budget_ceiling: Amount(1_000_000_000_000_000),
        policy: ApprovalPolicy {
            threshold: 1,
            orgs: vec![officer.org.clone()],
        },
        region_scope: RegionCode::new("bench").map_err(|e| anyhow!("{e}"))?,
    });
    let tx = sign(chain, officer, &p);
    setup_tx(client, &tx).context("creating the bench program")?;
    let registrar = signers
        .iter_mut()
        .find(|s| s.role == Role::Registrar)
        .ok_or_else(|| anyhow!("the testnet has no registrar key"))?;
    let mut households = Vec::new();
    for i in 0..SETUP_HOUSEHOLDS {
        let id = aidledger_types::hash::hash_parts(
            b"aidledger/bench-household",
            &[tag.as_bytes(), &(i as u64).to_le_bytes()],
        );
        let p = Payload::RegisterHousehold(payload::RegisterHousehold {
            id,
            region: RegionCode::new("bench/setup").map_err(|e| anyhow!("{e}"))?,
        });
        let tx = sign(chain, registrar, &p);
        households.push(id);
        if i + 1 < SETUP_HOUSEHOLDS {
            client.submit(hex::encode(tx.encode()), 0)?;
        } else {
            // The last one waits: it commits after the others (nonce order).
            setup_tx(client, &tx).context("registering the attestation subjects")?;
        }
    }
    Ok(households)
}

/// Pre-signs `n` transactions, round-robin over the mix.
fn presign(
    chain: &ChainId,
    signers: &mut [Signer],
    program: &Slug,
    households: &[Hash],
    tag: &str,
    n: u64,
) -> Result<Vec<SignedTx>> {
    let mut idx: HashMap<Role, Vec<usize>> = HashMap::new();
    for (i, s) in signers.iter().enumerate() {
        idx.entry(s.role).or_default().push(i);
    }
    let get = |r: Role| idx.get(&r).cloned().unwrap_or_default();
    let (dep, reg, att) = (
        get(Role::Disburser),
        get(Role::Registrar),
        get(Role::Attester),
    );
    // The mix, one slot per signer key so every account carries load.
    let mut slots: Vec<(u8, usize)> = Vec::new();
    slots.extend(dep.iter().map(|&i| (0u8, i)));
    slots.extend(reg.iter().map(|&i| (1u8, i)));
    slots.extend(att.iter().map(|&i| (2u8, i)));
    if slots.is_empty() {
        bail!("no disburser, registrar or attester keys in the testnet");
    }
    let bench_region = RegionCode::new("bench/load").map_err(|e| anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for k in 0..n {
        let (what, si) = slots[(k % slots.len() as u64) as usize];
        let p = match what {
            0 => Payload::Deposit(payload::Deposit {
                program: program.clone(),
                amount: Amount(100 + k % 900),
            }),
            1 => Payload::RegisterHousehold(payload::RegisterHousehold {
                id: aidledger_types::hash::hash_parts(
                    b"aidledger/bench-household",
                    &[tag.as_bytes(), b"load", &k.to_le_bytes()],
                ),
                region: bench_region.clone(),
            }),
            _ => Payload::Attest(payload::Attest {
                subject: Subject::Household(households[(k as usize) % households.len()]),
                claim: slug(&format!("visit-{k}"))?,
                value: AttestValue::Code(slug("ok")?),
            }),
        };
        out.push(sign(chain, &mut signers[si], &p));
    }
    Ok(out)
}

/// How long the watcher's request for the next block waits for it to
/// commit (`GET /v1/blocks/{h}?wait_ms=`): the node answers as the block
/// commits, so the time recorded is the commit's, not the next poll's.
const WATCH_WAIT_MS: u64 = 1_000;
/// A node that has not given the next block for this long (down, or
/// behind) is left for the next one.
const WATCH_SWITCH_AFTER: Duration = Duration::from_secs(5);

/// Follows committed blocks on whichever node answers, recording commits.
fn watch(run: &Run) {
    let agent = agent();
    let mut h = run.heights.lock().map(|g| g.0).unwrap_or(1);
    let mut node = 0usize;
    let mut since = Run::now();
    loop {
        if run.stop_watch.load(Ordering::Relaxed) {
            return;
        }
        let url = format!(
            "{}/v1/blocks/{h}?wait_ms={WATCH_WAIT_MS}",
            run.nodes[node % run.nodes.len()]
        );
        let asked = Run::now();
        // 503: the node is stopping (or busy); the next one is asked at once.
        let mut unavailable = false;
        let got = agent.get(&url).call().ok().and_then(|mut r| {
            if r.status().is_success() {
                r.body_mut()
                    .with_config()
                    .limit(256 << 20)
                    .read_json::<BlockView>()
                    .ok()
            } else {
                unavailable = r.status().as_u16() == 503;
                None
            }
        });
        match got {
            Some(b) => {
                since = Run::now();
                let t = run.elapsed_ms();
                for tx in &b.txs {
                    if let Some(&i) = run.by_id.get(&tx.id) {
                        let tr = &run.txs[i];
                        if tr.commits.fetch_add(1, Ordering::Relaxed) == 0 {
                            tr.committed_ms.store(t, Ordering::Relaxed);
                        }
                    }
                }
                if let Ok(mut g) = run.heights.lock() {
                    g.1 = h;
                }
                h += 1;
            }
            None => {
                // Not committed within the wait, or the node is down:
                // after a while (at once if it said it is stopping) try
                // another node. An answer that came at
                // once (a refused connection, a node of a release without
                // the wait) is retried after a pause, not at once.
                if unavailable || since.elapsed() >= WATCH_SWITCH_AFTER {
                    node += 1;
                    since = Run::now();
                }
                if asked.elapsed() < Duration::from_millis(20) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

pub fn run(ctx: &Ctx, cmd: BenchCmd) -> Result<std::process::ExitCode> {
    match cmd {
        BenchCmd::Load(a) => {
            let r = load(ctx, &a)?;
            if ctx.json() {
                // One line: scripts read the last line of the output.
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print_report(&r);
            }
            if r.lost > 0 || r.duplicates > 0 {
                return Ok(std::process::ExitCode::FAILURE);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        BenchCmd::Flood(a) => {
            let r = flood::flood_bench(ctx, &a)?;
            if ctx.json() {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                flood::print_flood(&r);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        #[cfg(feature = "suite")]
        BenchCmd::Suite(a) => suite::run(ctx, &a),
        #[cfg(not(feature = "suite"))]
        BenchCmd::Suite { .. } => Err(aidledger_node::cli::usage(
            "this aidledger was built without the benchmark suite, whose synthetic chains sign \
             with keys derived from public seeds; build it with \
             `cargo build --release --locked -p aidledger-cli --features bench-suite`",
        )),
    }
}

fn print_report(r: &LoadReport) {
    println!(
        "submitted {} at {:.0} tx/s (target {} tx/s for {} s), acknowledged {}, refused {}",
        r.submitted, r.submit_rate, r.target_rate, r.duration_s, r.acknowledged, r.refused
    );
    println!(
        "committed {} ({:.0} tx/s), lost {}, duplicates {}, re-submitted {}, busy answers {}",
        r.committed, r.committed_tps, r.lost, r.duplicates, r.resubmitted, r.busy_answers
    );
    println!(
        "submit-to-commit latency: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms
    );
    if r.latency_histogram.total > 0 {
        println!("latency histogram (bucket, committed transactions, cumulative share):");
        for l in r.latency_histogram.lines(40) {
            println!("  {l}");
        }
    }
    let g = &r.generator;
    println!(
        "load generator: {:.0} ms of CPU, {:.1} µs per transaction, {:.2} cores on average{}",
        g.cpu_ms,
        g.us_per_tx,
        g.cores,
        match &g.cpus {
            Some(c) => format!(
                ", kept on CPUs {}",
                c.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None => String::new(),
        }
    );
    println!(
        "blocks {}..{} (program {})",
        r.first_height, r.last_height, r.program
    );
    // The machine-readable result is always the last line.
    if let Ok(s) = serde_json::to_string(r) {
        println!("{s}");
    }
}

/// Runs the load and returns the figures.
pub fn load(ctx: &Ctx, a: &LoadArgs) -> Result<LoadReport> {
    let total = a.rate.saturating_mul(a.duration);
    if total > MAX_TXS {
        return Err(aidledger_node::cli::usage(format!(
            "--rate × --duration is {total} transactions, over the limit of {MAX_TXS}"
        )));
    }
    let t = read_testnet(&a.dir)?;
    // Load goes to the nodes that answer now: a testnet may run without
    // its observers (the bench suite runs the validators alone unless `--observers`).
    let mut nodes: Vec<String> = Vec::new();
    let mut first: Option<(Client, NodeStatus)> = None;
    for o in &t.orgs {
        let c = Client::new(&o.api)?;
        if let Ok(s) = c.get::<NodeStatus>("/v1/status") {
            nodes.push(o.api.clone());
            if first.is_none() {
                first = Some((c, s));
            }
        }
    }
    let (client, status) = first.ok_or_else(|| {
        anyhow!(
            "no node of the testnet in {} answers; start it with `aidledger testnet up --dir {}`",
            a.dir.display(),
            a.dir.display()
        )
    })?;
    let chain: ChainId = status.chain_id.parse()?;
    let mut signers = load_signers(&a.dir, &client)?;
    let tag = format!("{:016x}", rand::random::<u64>());
    let program = slug(&format!("bench-{}", &tag[..8]))?;
    if !ctx.json() {
        eprintln!("setting up: program {program}, {SETUP_HOUSEHOLDS} households");
    }
    let households = setup(&chain, &client, &mut signers, &program, &tag)?;
    if !ctx.json() {
        eprintln!(
            "pre-signing {total} transactions over {} accounts",
            signers.len()
        );
    }
    let signed = presign(&chain, &mut signers, &program, &households, &tag, total)?;
    let first_height = client.get::<NodeStatus>("/v1/status")?.height + 1;
    let mut by_id = HashMap::with_capacity(signed.len());
    let txs: Vec<Tracked> = signed
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            by_id.insert(tx.id(), i);
            Tracked {
                encoded_hex: hex::encode(tx.encode()),
                sent_ms: AtomicU64::new(0),
                last_sent_ms: AtomicU64::new(0),
                acked: AtomicBool::new(false),
                acked_by: AtomicU64::new(0),
                committed_ms: AtomicU64::new(0),
                commits: AtomicUsize::new(0),
                attempts: AtomicUsize::new(0),
            }
        })
        .collect();
    drop(signed);
    // From here to the end of the drain the generator stays inside its
    // budget; pre-signing above is not part of the measured run.
    let pinned = a
        .cpus
        .as_ref()
        .map(|c| budget::Pinned::to(&c.0))
        .transpose()?;
    let cpu0 = budget::process_cpu()?;
    let run = Arc::new(Run {
        start: Run::now(),
        txs,
        by_id,
        nodes,
        refused: AtomicU64::new(0),
        resubmitted: AtomicU64::new(0),
        busy: AtomicU64::new(0),
        stop_watch: AtomicBool::new(false),
        heights: Mutex::new((first_height, first_height.saturating_sub(1))),
        last_refusal: Mutex::new(None),
    });
    if !ctx.json() {
        eprintln!(
            "submitting at {} tx/s for {} s to {} nodes",
            a.rate,
            a.duration,
            run.nodes.len()
        );
    }
    let next = Arc::new(AtomicUsize::new(0));
    let rate = a.rate;
    std::thread::scope(|scope| -> Result<()> {
        let watcher = {
            let run = run.clone();
            scope.spawn(move || watch(&run))
        };
        let mut workers = Vec::new();
        // Each request carries about 50 ms of one worker's share of the load.
        let batch = usize::try_from(rate / (a.workers * 20))
            .unwrap_or(1)
            .clamp(1, BATCH_SUBMIT_MAX / 4);
        for _ in 0..a.workers {
            let run = run.clone();
            let next = next.clone();
            workers.push(scope.spawn(move || {
                let agent = agent();
                loop {
                    let i0 = next.fetch_add(batch, Ordering::Relaxed);
                    if i0 >= run.txs.len() {
                        return;
                    }
                    let i1 = (i0 + batch).min(run.txs.len());
                    // Open loop: transaction i is due at i / rate seconds.
                    let due_ms = (i0 as u64).saturating_mul(1000) / rate;
                    let now = run.elapsed_ms();
                    if due_ms > now {
                        std::thread::sleep(Duration::from_millis(due_ms - now));
                    }
                    let t = run.elapsed_ms();
                    let hexes: Vec<&str> = run.txs[i0..i1]
                        .iter()
                        .map(|tr| {
                            tr.sent_ms.store(t, Ordering::Relaxed);
                            tr.last_sent_ms.store(t, Ordering::Relaxed);
                            tr.attempts.fetch_add(1, Ordering::Relaxed);
                            tr.encoded_hex.as_str()
                        })
                        .collect();
                    // Spread over nodes; if one is down, try the next; if
                    // one is busy, back off (jittered) and try the next.
                    let mut busy_tries = 0u32;
                    let mut k = 0usize;
                    while k < run.nodes.len() + busy_tries as usize {
                        let ni = (i0 / batch + k) % run.nodes.len();
                        let node = &run.nodes[ni];
                        k += 1;
                        let verdicts = match submit_batch(&agent, node, &hexes) {
                            Ok(v) => v,
                            Err(e) => {
                                if let Some(b) = e.downcast_ref::<Busy>() {
                                    run.busy.fetch_add(1, Ordering::Relaxed);
                                    if busy_tries < BUSY_TRIES {
                                        std::thread::sleep(backoff(busy_tries, b.retry_after));
                                        busy_tries += 1;
                                    }
                                }
                                continue;
                            }
                        };
                        for (tr, (ok, why)) in run.txs[i0..i1].iter().zip(verdicts) {
                            if ok {
                                tr.acked.store(true, Ordering::Relaxed);
                                tr.acked_by.fetch_or(node_bit(ni), Ordering::Relaxed);
                            } else {
                                run.refused.fetch_add(1, Ordering::Relaxed);
                                if let Ok(mut g) = run.last_refusal.lock() {
                                    *g = Some(why.unwrap_or_else(|| "no reason given".into()));
                                }
                            }
                        }
                        break;
                    }
                }
            }));
        }
        // Re-submit acknowledged transactions that have not committed, until
        // all have or the drain period ends.
        let submit_end = a.duration * 1000;
        let deadline_ms = submit_end + a.drain * 1000;
        let agent = agent();
        let mut last_pending = usize::MAX;
        let mut next_check = 0u64;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = run.elapsed_ms();
            let sending = workers.iter().any(|w| !w.is_finished());
            let mut pending = 0usize;
            let mut retry: Vec<Vec<usize>> = vec![Vec::new(); run.nodes.len()];
            for (i, tr) in run.txs.iter().enumerate() {
                let sent = tr.sent_ms.load(Ordering::Relaxed);
                if sent == 0 {
                    pending += 1;
                    continue;
                }
                if tr.commits.load(Ordering::Relaxed) > 0 {
                    continue;
                }
                pending += 1;
                let last = tr.last_sent_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) < RETRY_AFTER.as_millis() as u64 {
                    continue;
                }
                // Each retry goes to the next node in turn that has not
                // acknowledged it. Once every node has, it waits: only
                // after ALL_ACKED_RETRY (nodes that restarted lose their
                // mempool) may it go to them again.
                let attempt = tr.attempts.load(Ordering::Relaxed);
                let Some(n) = retry_node(
                    run.nodes.len(),
                    i + attempt,
                    tr.acked_by.load(Ordering::Relaxed),
                    now.saturating_sub(last) >= ALL_ACKED_RETRY.as_millis() as u64,
                ) else {
                    continue;
                };
                if tr.acked_by.load(Ordering::Relaxed) & node_bit(n) != 0 {
                    tr.acked_by.store(0, Ordering::Relaxed);
                }
                tr.attempts.fetch_add(1, Ordering::Relaxed);
                retry[n].push(i);
            }
            for (n, idx) in retry.iter().enumerate() {
                for chunk in idx.chunks(BATCH_SUBMIT_MAX / 4) {
                    let hexes: Vec<&str> = chunk
                        .iter()
                        .map(|&i| run.txs[i].encoded_hex.as_str())
                        .collect();
                    for &i in chunk {
                        run.txs[i].last_sent_ms.store(now, Ordering::Relaxed);
                    }
                    if let Ok(verdicts) = submit_batch(&agent, &run.nodes[n], &hexes) {
                        for (&i, (ok, _)) in chunk.iter().zip(verdicts) {
                            if ok {
                                run.txs[i].acked.store(true, Ordering::Relaxed);
                                run.txs[i].acked_by.fetch_or(node_bit(n), Ordering::Relaxed);
                                run.resubmitted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
            if !sending && pending == 0 {
                break;
            }
            // Past the drain deadline, keep going only while the backlog
            // is still shrinking (an overloaded consortium is slow, not
            // lossy), checked every 5 s, and never past twice the drain.
            if now > deadline_ms && now >= next_check {
                if pending >= last_pending || now > deadline_ms + a.drain * 1000 {
                    break;
                }
                last_pending = pending;
                next_check = now + 5000;
            }
        }
        for w in workers {
            let _ = w.join();
        }
        run.stop_watch.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        Ok(())
    })?;
    let mut lat = Vec::new();
    let (mut acked, mut committed, mut lost, mut dups, mut submitted) = (0, 0, 0, 0, 0u64);
    let mut last_commit_ms = 0u64;
    let mut last_sent = 0u64;
    for tr in &run.txs {
        let sent = tr.sent_ms.load(Ordering::Relaxed);
        if sent > 0 {
            submitted += 1;
            last_sent = last_sent.max(sent);
        }
        let c = tr.commits.load(Ordering::Relaxed);
        let was_acked = tr.acked.load(Ordering::Relaxed);
        if was_acked {
            acked += 1;
        }
        if c > 0 {
            committed += 1;
            let at = tr.committed_ms.load(Ordering::Relaxed);
            last_commit_ms = last_commit_ms.max(at);
            lat.push(at.saturating_sub(sent));
        } else if was_acked {
            lost += 1;
        }
        if c > 1 {
            dups += 1;
        }
    }
    let generator = budget::GeneratorUse::of(
        a.cpus.as_ref().map(|c| c.0.clone()),
        budget::process_cpu()?.saturating_sub(cpu0),
        run.start.elapsed(),
        submitted,
    );
    drop(pinned);
    lat.sort_unstable();
    let (first, last) = run.heights.lock().map(|g| *g).unwrap_or((0, 0));
    let last_refusal = run.last_refusal.lock().ok().and_then(|g| g.clone());
    if let Some(w) = &last_refusal {
        if !ctx.json() {
            eprintln!("last refusal: {w}");
        }
    }
    Ok(LoadReport {
        submitted,
        acknowledged: acked,
        refused: run.refused.load(Ordering::Relaxed),
        committed,
        lost,
        duplicates: dups,
        resubmitted: run.resubmitted.load(Ordering::Relaxed),
        busy_answers: run.busy.load(Ordering::Relaxed),
        target_rate: a.rate,
        duration_s: a.duration,
        submit_rate: submitted as f64 / (last_sent.max(1) as f64 / 1000.0),
        committed_tps: committed as f64 / (last_commit_ms.max(1) as f64 / 1000.0),
        p50_ms: percentile(&lat, 0.50),
        p90_ms: percentile(&lat, 0.90),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0) as f64,
        latency_histogram: hist::Histogram::of(&lat),
        generator,
        first_height: first,
        last_height: last,
        program: program.to_string(),
        last_refusal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resubmission_goes_only_to_nodes_that_have_not_acknowledged() {
        // Node 1 acknowledged: start at 1, go to 2.
        assert_eq!(retry_node(4, 1, 0b0010, false), Some(2));
        // 0, 1 and 3 acknowledged: only 2 is left, whatever the start.
        for start in 0..8 {
            assert_eq!(retry_node(4, start, 0b1011, false), Some(2));
        }
        // Everyone acknowledged: wait, unless it has been too long.
        assert_eq!(retry_node(4, 5, 0b1111, false), None);
        assert_eq!(retry_node(4, 5, 0b1111, true), Some(1));
        assert_eq!(retry_node(0, 0, 0, true), None);
    }

    #[test]
    fn busy_backoff_is_jittered_grows_and_honours_retry_after() {
        let one = Duration::from_secs(1);
        for k in 0..20 {
            let cap = BUSY_BASE.saturating_mul(1 << k.min(16)).min(one);
            for _ in 0..50 {
                let d = backoff(k, one);
                assert!(d >= Duration::from_millis(1) && d <= cap, "try {k}: {d:?}");
            }
        }
        // Draws differ: workers refused together come back apart.
        let draws: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff(5, one)).collect();
        assert!(draws.len() > 10, "{draws:?}");
        // A longer Retry-After lets the back-off grow further.
        assert!((0..200).any(|_| backoff(8, Duration::from_secs(10)) > one));
    }
}
