//! `aidledger bench flood`: issue 15's attack next to a probe (ADR 016).
//!
//! Several flooding threads send batches of transactions with bad
//! signatures to one node (by default the leader). Each transaction names a
//! real account with a role allowed to sign its kind and a nonce inside the
//! admission window, and carries a fresh random signature. So each must
//! pass the cheap screen, and costs the node a full signature check. At the
//! same time a probe commits one legitimate transaction at a time through
//! another node, the way an honest client would, and times each from submit
//! to commit. A baseline phase runs the probe alone first.
//!
//! The report gives the probe's latency with and without the flood and
//! their ratio, each node's view before and after, and what the flooders
//! got back: admitted, refused, 503 busy, 429 rate-limited. Every loop is
//! bounded in time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aidledger_contracts::{payload, Payload};
use aidledger_crypto::Purpose;
use aidledger_types::{ChainId, RegionCode, Role, Signature, SignedTx, TxBody};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde::Serialize;

use super::{agent, load_signers, percentile, sign, slug, Run, Signer};
use crate::testnet::read_testnet;
use aidledger_node::api_types::{NodeStatus, BATCH_SUBMIT_MAX};
use aidledger_node::cli::Ctx;
use aidledger_node::client::Client;

#[derive(Args, Debug, Clone)]
pub struct FloodArgs {
    /// The testnet directory (holds testnet.json).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Flooding threads.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=32))]
    pub senders: u64,
    /// Transactions in each flood batch.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=2000))]
    pub batch: u64,
    /// How long to flood, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub duration: u64,
    /// How long to probe with no flood first, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub baseline: u64,
    /// Pause between probes, in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub probe_interval_ms: u64,
    /// The organisation whose node is flooded; default: the current leader.
    #[arg(long, value_name = "ORG")]
    pub target: Option<String>,
    /// The organisation whose node the probe submits to; default: the
    /// first validator that is not the flooded node.
    #[arg(long, value_name = "ORG")]
    pub probe: Option<String>,
}

/// Probe latencies of one phase, in milliseconds.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ProbeFigures {
    pub probes: usize,
    /// Probes that did not commit within 30 s.
    pub timed_out: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
}

/// The result: the last line of `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    pub target: String,
    pub probe_node: String,
    pub senders: u64,
    pub batch: u64,
    pub duration_s: u64,
    pub baseline: ProbeFigures,
    pub flooded: ProbeFigures,
    /// flooded p50 / baseline p50.
    pub p50_ratio: f64,
    /// Each node's view before and after the flood, in testnet order.
    pub views_before: Vec<u64>,
    pub views_after: Vec<u64>,
    pub view_changed: bool,
    pub flood_requests: u64,
    pub flood_txs_sent: u64,
    pub flood_txs_admitted: u64,
    pub flood_txs_refused: u64,
    pub flood_busy_503: u64,
    pub flood_rate_limited_429: u64,
    pub flood_other_errors: u64,
    pub flood_txs_per_s: f64,
    /// CPU seconds this tool used while flooding (user + system): on one
    /// machine, the flood competes with the nodes for the same cores.
    pub flood_tool_cpu_s: f64,
}

/// This process's CPU time so far, in seconds.
fn own_cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

#[derive(Default)]
struct FloodCounts {
    requests: AtomicU64,
    sent: AtomicU64,
    admitted: AtomicU64,
    refused: AtomicU64,
    busy: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
}

fn views(apis: &[String]) -> Vec<u64> {
    apis.iter()
        .map(|a| {
            Client::new(a)
                .ok()
                .and_then(|c| c.get::<NodeStatus>("/v1/status").ok())
                .map_or(0, |s| s.view)
        })
        .collect()
}

/// One flooding thread: batches of forged transactions until `stop`.
fn flood(
    chain: &ChainId,
    target: &str,
    signers: &[(Signer, u64)],
    batch: u64,
    seed: u64,
    stop: &AtomicBool,
    counts: &FloodCounts,
) {
    let agent = agent();
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        // xorshift64*: fast, and plenty for forged signatures.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let Ok(program) = slug("flood") else {
        return;
    };
    let r_points: Vec<[u8; 32]> = signers
        .iter()
        .map(|(s, _)| {
            let mut r = [0u8; 32];
            r.copy_from_slice(&s.key.sign(chain, Purpose::Tx, b"flood").0[..32]);
            r
        })
        .collect();
    // A batch refused busy (503) or rate-limited (429) was not looked at,
    // so it is sent again as is: the flood then costs this tool little
    // more than the sending, as it would cost an attacker.
    let mut pending: Option<serde_json::Value> = None;
    while !stop.load(Ordering::Relaxed) {
        let body = if let Some(b) = pending.take() {
            b
        } else {
            let mut hexes = Vec::with_capacity(batch as usize);
            for k in 0..batch {
                let (s, window) = &signers[(k as usize) % signers.len()];
                let p = Payload::Deposit(payload::Deposit {
                    program: program.clone(),
                    amount: aidledger_types::Amount(1 + next() % 1000),
                });
                let body = TxBody {
                    chain_id: chain.clone(),
                    nonce: s.nonce + next() % window,
                    signer: s.key.public(),
                    kind: p.kind(),
                    payload: p.encode(),
                };
                // A valid curve point for R (from a real signature of this
                // key) and a canonical scalar for s: the forgery passes every
                // encoding check, so only the full group equation refuses it.
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&r_points[(k as usize) % signers.len()]);
                for c in sig[32..].chunks_mut(8) {
                    c.copy_from_slice(&next().to_le_bytes());
                }
                sig[63] &= 0x0f;
                let tx = SignedTx {
                    body,
                    signature: Signature(sig),
                };
                hexes.push(hex::encode(tx.encode()));
            }
            serde_json::json!({ "txs": hexes })
        };
        counts.requests.fetch_add(1, Ordering::Relaxed);
        counts.sent.fetch_add(batch, Ordering::Relaxed);
        match agent
            .post(&format!("{target}/v1/txs/batch"))
            .send_json(&body)
        {
            Ok(mut r) => match r.status().as_u16() {
                200 => {
                    let v: serde_json::Value = r
                        .body_mut()
                        .with_config()
                        .limit(64 << 20)
                        .read_json()
                        .unwrap_or_default();
                    let admitted = v["admitted"].as_u64().unwrap_or(0);
                    counts.admitted.fetch_add(admitted, Ordering::Relaxed);
                    counts
                        .refused
                        .fetch_add(batch.saturating_sub(admitted), Ordering::Relaxed);
                }
                503 => {
                    counts.busy.fetch_add(1, Ordering::Relaxed);
                    pending = Some(body);
                    std::thread::sleep(Duration::from_millis(20));
                }
                429 => {
                    counts.limited.fetch_add(1, Ordering::Relaxed);
                    pending = Some(body);
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    counts.other.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(_) => {
                counts.other.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Probes until `until`: one legitimate registration at a time, each
/// timed from submit to commit.
fn probe(
    chain: &ChainId,
    node: &Client,
    signer: &mut Signer,
    until: std::time::Instant,
    interval: Duration,
    tag: &str,
) -> Result<ProbeFigures> {
    let region = RegionCode::new("bench/probe").map_err(|e| anyhow!("{e}"))?;
    let mut lat = Vec::new();
    let mut timed_out = 0;
    let mut k = 0u64;
    while Run::now() < until {
        k += 1;
        let p = Payload::RegisterHousehold(payload::RegisterHousehold {
            id: aidledger_types::hash::hash_parts(
                b"aidledger/bench-probe",
                &[tag.as_bytes(), &k.to_le_bytes()],
            ),
            region: region.clone(),
        });
        let tx = sign(chain, signer, &p);
        let t0 = Run::now();
        match node.submit(hex::encode(tx.encode()), 30_000) {
            Ok((_, st)) if st.receipt.is_some() => {
                lat.push(u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
            Ok(_) => timed_out += 1,
            Err(e) => {
                // Refused or unreachable: the nonce may not have been
                // used; take it from the chain again.
                eprintln!("probe failed: {e:#}");
                timed_out += 1;
                if let Ok(a) = node.get::<aidledger_contracts::Account>(&format!(
                    "/v1/accounts/{}",
                    signer.key.public().to_hex()
                )) {
                    signer.nonce = a.nonce;
                }
            }
        }
        std::thread::sleep(interval);
    }
    lat.sort_unstable();
    Ok(ProbeFigures {
        probes: lat.len() + timed_out,
        timed_out,
        p50_ms: percentile(&lat, 0.5),
        p90_ms: percentile(&lat, 0.9),
        max_ms: lat.last().copied().unwrap_or(0) as f64,
    })
}

pub fn flood_bench(_ctx: &Ctx, a: &FloodArgs) -> Result<FloodReport> {
    let t = read_testnet(&a.dir)?;
    let apis: Vec<String> = t.orgs.iter().map(|o| o.api.clone()).collect();
    let first = apis
        .iter()
        .find_map(|api| {
            let c = Client::new(api).ok()?;
            c.get::<NodeStatus>("/v1/status").ok().map(|s| (c, s))
        })
        .ok_or_else(|| {
            anyhow!(
                "no node of the testnet in {} answers; start it with `aidledger testnet up --dir {}`",
                a.dir.display(),
                a.dir.display()
            )
        })?;
    let (client, status) = first;
    let chain = ChainId::new(&status.chain_id).map_err(|e| anyhow!("{e}"))?;
    let target_org = match &a.target {
        Some(o) => o.clone(),
        None => status
            .leader
            .as_ref()
            .map(|o| o.as_str().to_string())
            .ok_or_else(|| anyhow!("the node reports no leader"))?,
    };
    let api_of = |org: &str| {
        t.orgs
            .iter()
            .find(|o| o.id == org)
            .map(|o| o.api.clone())
            .ok_or_else(|| anyhow!("no organisation {org:?} in the testnet"))
    };
    let target = api_of(&target_org)?;
    let probe_org = match &a.probe {
        Some(o) => o.clone(),
        None => t
            .orgs
            .iter()
            .find(|o| o.id != target_org && o.validator)
            .map(|o| o.id.clone())
            .ok_or_else(|| anyhow!("the testnet has no second validator to probe through"))?,
    };
    let probe_client = Client::new(&api_of(&probe_org)?)?;

    let mut signers = load_signers(&a.dir, &client)?;
    let registrar_at = signers
        .iter()
        .position(|s| s.role == Role::Registrar)
        .ok_or_else(|| anyhow!("the testnet has no registrar key for the probe"))?;
    let mut prober = signers.swap_remove(registrar_at);
    // Forgers sign as the disbursers (deposits), inside the nonce window.
    let window = 2_000u64;
    let forgers: Vec<(Signer, u64)> = signers
        .into_iter()
        .filter(|s| s.role == Role::Disburser)
        .map(|s| (s, window))
        .collect();
    if forgers.is_empty() {
        bail!("the testnet has no disburser key to forge as");
    }
    if a.batch as usize > BATCH_SUBMIT_MAX {
        bail!("--batch is over the node's batch limit of {BATCH_SUBMIT_MAX}");
    }
    // Probe households are new on every run: the tag is the head's hash.
    let tag = status.block_hash.to_hex();
    let interval = Duration::from_millis(a.probe_interval_ms);

    eprintln!(
        "baseline: probing through {probe_org} for {} s with no flood",
        a.baseline
    );
    let base_until = Run::now() + Duration::from_secs(a.baseline);
    let baseline = probe(
        &chain,
        &probe_client,
        &mut prober,
        base_until,
        interval,
        &format!("{tag}-b"),
    )?;

    let views_before = views(&apis);
    eprintln!(
        "flood: {} senders × {}-transaction batches of bad signatures at {target_org} for {} s",
        a.senders, a.batch, a.duration
    );
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(FloodCounts::default());
    let forgers = Arc::new(forgers);
    let started = Run::now();
    let cpu_before = own_cpu_s();
    let mut threads = Vec::new();
    for i in 0..a.senders {
        let (stop, counts, forgers, chain, target) = (
            stop.clone(),
            counts.clone(),
            forgers.clone(),
            chain.clone(),
            target.clone(),
        );
        let batch = a.batch;
        threads.push(std::thread::spawn(move || {
            flood(&chain, &target, &forgers, batch, i + 1, &stop, &counts);
        }));
    }
    // Let the flood build up before the probe starts.
    std::thread::sleep(Duration::from_secs(2).min(Duration::from_secs(a.duration)));
    let until = started + Duration::from_secs(a.duration);
    let flooded = probe(
        &chain,
        &probe_client,
        &mut prober,
        until,
        interval,
        &format!("{tag}-f"),
    );
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let flood_tool_cpu_s = own_cpu_s() - cpu_before;
    let flooded = flooded?;
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let views_after = views(&apis);
    let c = &counts;
    Ok(FloodReport {
        target: target_org,
        probe_node: probe_org,
        senders: a.senders,
        batch: a.batch,
        duration_s: a.duration,
        p50_ratio: if baseline.p50_ms > 0.0 {
            flooded.p50_ms / baseline.p50_ms
        } else {
            0.0
        },
        view_changed: views_before != views_after,
        baseline,
        flooded,
        views_before,
        views_after,
        flood_requests: c.requests.load(Ordering::Relaxed),
        flood_txs_sent: c.sent.load(Ordering::Relaxed),
        flood_txs_admitted: c.admitted.load(Ordering::Relaxed),
        flood_txs_refused: c.refused.load(Ordering::Relaxed),
        flood_busy_503: c.busy.load(Ordering::Relaxed),
        flood_rate_limited_429: c.limited.load(Ordering::Relaxed),
        flood_other_errors: c.other.load(Ordering::Relaxed),
        flood_txs_per_s: c.sent.load(Ordering::Relaxed) as f64 / secs,
        flood_tool_cpu_s,
    })
}

pub fn print_flood(r: &FloodReport) {
    println!(
        "flooded {} with {} senders × {} bad signatures per batch for {} s: {} requests, {} \
         transactions ({:.0} tx/s); admitted {}, refused {}, 503 busy {}, 429 {}, other {}",
        r.target,
        r.senders,
        r.batch,
        r.duration_s,
        r.flood_requests,
        r.flood_txs_sent,
        r.flood_txs_per_s,
        r.flood_txs_admitted,
        r.flood_txs_refused,
        r.flood_busy_503,
        r.flood_rate_limited_429,
        r.flood_other_errors
    );
    println!(
        "probe through {}: baseline p50 {:.0} ms, p90 {:.0} ms ({} probes); under flood p50 {:.0} \
         ms, p90 {:.0} ms, max {:.0} ms ({} probes, {} timed out); p50 ratio {:.2}",
        r.probe_node,
        r.baseline.p50_ms,
        r.baseline.p90_ms,
        r.baseline.probes,
        r.flooded.p50_ms,
        r.flooded.p90_ms,
        r.flooded.max_ms,
        r.flooded.probes,
        r.flooded.timed_out,
        r.p50_ratio
    );
    println!(
        "this tool used {:.1} CPU seconds while flooding",
        r.flood_tool_cpu_s
    );
    println!(
        "views before {:?}, after {:?}: {}",
        r.views_before,
        r.views_after,
        if r.view_changed {
            "the view changed"
        } else {
            "no view change"
        }
    );
    if let Ok(s) = serde_json::to_string(r) {
        println!("{s}");
    }
}
