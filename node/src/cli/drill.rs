//! `aidledger testnet drill`: fault drills under load on a local testnet.
//!
//! While `bench load` submits signed transactions at a fixed rate, the
//! drill, driven by a seed:
//! * kills a validator with SIGKILL, several times, every other time the
//!   current leader, and restarts it from its RocksDB data;
//! * pauses a validator with SIGSTOP, then resumes it with SIGCONT;
//! * partitions a validator away from every peer and heals it. The
//!   partition is made at the application layer (the node's
//!   `POST /v1/admin/isolate` blocks every peer in its libp2p swarm), so
//!   the drill needs no privileges; see docs/testnet.md.
//!
//! Afterwards it checks that every acknowledged transaction committed
//! exactly once, that every node has the same block hash at every height
//! (no fork) and the same final state root, and that every program's
//! balances obey `deposited = available + committed + released + returned`.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use aidledger_contracts::Program;
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::bench::{self, LoadArgs, LoadReport};
use super::testnet::{read_testnet, start_missing, TestnetOrg};
use super::{print_json, procs, query, Ctx, Output};
use crate::api_types::BlockView;
use crate::client::Client;

#[derive(Args, Debug, Clone)]
pub struct DrillArgs {
    /// The testnet directory (holds testnet.json).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Load during the drills, transactions per second.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub rate: u64,
    /// How long the load runs, in seconds; the faults are spread over it.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub duration: u64,
    /// SIGKILL-and-restart rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub kills: u64,
    /// Seed for the choice of victims [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillEvent {
    pub drill: String,
    pub node: String,
    pub was_leader: bool,
    /// From the fault to the next block committed by the others.
    pub failover_ms: u64,
    /// From recovery (restart, SIGCONT, heal) to catching up.
    pub catch_up_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub seed: u64,
    pub partition_method: &'static str,
    pub drills_run: usize,
    pub events: Vec<DrillEvent>,
    pub tx_acknowledged: u64,
    pub tx_committed: u64,
    pub tx_lost: u64,
    pub tx_duplicated: u64,
    pub longest_failover_ms: u64,
    pub heights_compared: u64,
    pub final_height: u64,
    pub final_state_root: String,
    pub programs_checked: usize,
    pub load: LoadReport,
    pub failures: Vec<String>,
    pub ok: bool,
}

#[allow(clippy::disallowed_methods)] // the drill measures wall time
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn height(api: &str) -> Option<u64> {
    query::node_status(api).ok().map(|s| s.height)
}

/// Highest height among `apis` that answer.
fn max_height(apis: &[&str]) -> u64 {
    apis.iter().filter_map(|a| height(a)).max().unwrap_or(0)
}

/// Waits until one of `apis` passes `above`; returns how long it took.
fn wait_commit(apis: &[&str], above: u64, limit: Duration) -> Result<Duration> {
    let t0 = now();
    while t0.elapsed() < limit {
        if max_height(apis) > above {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "no block committed past height {above} within {} s",
        limit.as_secs()
    )
}

/// Waits until `api` reaches `target`.
fn wait_height(api: &str, target: u64, limit: Duration) -> Result<Duration> {
    let t0 = now();
    while t0.elapsed() < limit {
        if height(api).is_some_and(|h| h >= target) {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "{api} did not reach height {target} within {} s",
        limit.as_secs()
    )
}

fn signal(pid: i32, sig: Signal) -> Result<()> {
    kill(Pid::from_raw(pid), sig).with_context(|| format!("cannot send {sig} to {pid}"))
}

/// The pid of `o`'s node, checked to be ours.
fn node_pid(o: &TestnetOrg) -> Result<i32> {
    procs::running(&o.home).ok_or_else(|| anyhow!("the node of {} is not running", o.id))
}

fn wait_gone(pid: i32, home: &Path, children: &mut [Child]) {
    for c in children.iter_mut() {
        if c.id() as i32 == pid {
            let _ = c.wait();
            return;
        }
    }
    for _ in 0..100 {
        if !procs::is_our_node(pid, home) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn isolate(api: &str, on: bool) -> Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let resp = agent
        .post(&format!("{api}/v1/admin/isolate"))
        .send_json(serde_json::json!({ "isolated": on }))
        .map_err(|e| anyhow!("{api}: {e}"))?;
    if !resp.status().is_success() {
        bail!("{api}: isolate answered HTTP {}", resp.status());
    }
    Ok(())
}

struct Drill<'a> {
    dir: &'a Path,
    validators: Vec<TestnetOrg>,
    children: Vec<Child>,
    events: Vec<DrillEvent>,
    quiet: bool,
}

impl Drill<'_> {
    fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln!("drill: {msg}");
        }
    }

    fn others(&self, victim: &TestnetOrg) -> Vec<String> {
        self.validators
            .iter()
            .filter(|v| v.id != victim.id)
            .map(|v| v.api.clone())
            .collect()
    }

    fn leader(&self) -> Option<String> {
        self.validators
            .iter()
            .find_map(|v| query::node_status(&v.api).ok().and_then(|s| s.leader))
            .map(|l| l.to_string())
    }

    /// Waits for the victim to catch up with the others after recovery.
    fn catch_up(&self, victim: &TestnetOrg, others: &[&str]) -> Result<Duration> {
        let target = max_height(others);
        wait_height(&victim.api, target, Duration::from_secs(120))
    }

    fn kill_round(&mut self, victim: TestnetOrg, was_leader: bool) -> Result<()> {
        let others = self.others(&victim);
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        let pid = node_pid(&victim)?;
        let h = max_height(&others);
        self.say(&format!(
            "kill -9 {} (pid {pid}{})",
            victim.id,
            if was_leader { ", the leader" } else { "" }
        ));
        signal(pid, Signal::SIGKILL)?;
        wait_gone(pid, &victim.home, &mut self.children);
        let failover = wait_commit(&others, h, Duration::from_secs(90))
            .with_context(|| format!("after killing {}", victim.id))?;
        std::thread::sleep(Duration::from_secs(2));
        let (_, started) = start_missing(self.dir, 60)?;
        self.children.extend(started);
        let t0 = now();
        self.catch_up(&victim, &others)
            .with_context(|| format!("{} restarted", victim.id))?;
        let catch_up = t0.elapsed();
        self.say(&format!(
            "  failover {} ms, restarted and caught up in {} ms",
            ms(failover),
            ms(catch_up)
        ));
        self.events.push(DrillEvent {
            drill: "kill-9".into(),
            node: victim.id,
            was_leader,
            failover_ms: ms(failover),
            catch_up_ms: ms(catch_up),
        });
        Ok(())
    }

    fn pause_round(&mut self, victim: TestnetOrg, was_leader: bool, pause: Duration) -> Result<()> {
        let others = self.others(&victim);
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        let pid = node_pid(&victim)?;
        let h = max_height(&others);
        self.say(&format!("SIGSTOP {} for {} s", victim.id, pause.as_secs()));
        signal(pid, Signal::SIGSTOP)?;
        let failover = wait_commit(&others, h, Duration::from_secs(90));
        let rest = pause.saturating_sub(failover.as_ref().map(|d| *d).unwrap_or_default());
        std::thread::sleep(rest);
        signal(pid, Signal::SIGCONT)?;
        let failover = failover.with_context(|| format!("while {} was paused", victim.id))?;
        let t0 = now();
        self.catch_up(&victim, &others)
            .with_context(|| format!("{} resumed", victim.id))?;
        self.events.push(DrillEvent {
            drill: "sigstop".into(),
            node: victim.id,
            was_leader,
            failover_ms: ms(failover),
            catch_up_ms: ms(t0.elapsed()),
        });
        Ok(())
    }

    fn partition_round(
        &mut self,
        victim: TestnetOrg,
        was_leader: bool,
        span: Duration,
    ) -> Result<()> {
        let others = self.others(&victim);
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        let h = max_height(&others);
        self.say(&format!(
            "partition {} away for {} s",
            victim.id,
            span.as_secs()
        ));
        isolate(&victim.api, true)?;
        let failover = wait_commit(&others, h, Duration::from_secs(90));
        let rest = span.saturating_sub(failover.as_ref().map(|d| *d).unwrap_or_default());
        std::thread::sleep(rest);
        isolate(&victim.api, false)?;
        let failover = failover.with_context(|| format!("while {} was cut off", victim.id))?;
        let t0 = now();
        self.catch_up(&victim, &others)
            .with_context(|| format!("{} healed", victim.id))?;
        self.events.push(DrillEvent {
            drill: "partition".into(),
            node: victim.id,
            was_leader,
            failover_ms: ms(failover),
            catch_up_ms: ms(t0.elapsed()),
        });
        Ok(())
    }
}

/// Every node's block hash at every height up to the common height, and
/// each program's conservation invariant. Returns (height, state root,
/// programs checked).
fn verify_agreement(
    orgs: &[TestnetOrg],
    failures: &mut Vec<String>,
) -> Result<(u64, String, usize)> {
    let apis: Vec<&str> = orgs.iter().map(|o| o.api.as_str()).collect();
    // Let every node reach a common height.
    let mut common = 0;
    for _ in 0..120 {
        let hs: Vec<Option<u64>> = apis.iter().map(|a| height(a)).collect();
        if hs.iter().all(Option::is_some) {
            let lo = hs.iter().flatten().min().copied().unwrap_or(0);
            let hi = hs.iter().flatten().max().copied().unwrap_or(0);
            common = lo;
            if hi.saturating_sub(lo) <= 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if common == 0 {
        bail!("the nodes did not reach a common height");
    }
    let clients: Vec<Client> = apis.iter().map(|a| Client::new(a)).collect::<Result<_>>()?;
    let mut root = String::new();
    for h in 1..=common {
        let mut first: Option<BlockView> = None;
        for (c, o) in clients.iter().zip(orgs) {
            let b: BlockView = c
                .get(&format!("/v1/blocks/{h}"))
                .with_context(|| format!("block {h} from {}", o.id))?;
            match &first {
                None => first = Some(b),
                Some(f) => {
                    if f.hash != b.hash {
                        failures.push(format!(
                            "fork at height {h}: {} has {}, {} has {}",
                            orgs[0].id, f.hash, o.id, b.hash
                        ));
                    }
                    if f.header.state_root != b.header.state_root {
                        failures.push(format!(
                            "state root differs at height {h} between {} and {}",
                            orgs[0].id, o.id
                        ));
                    }
                }
            }
        }
        if h == common {
            root = first
                .map(|b| b.header.state_root.to_hex())
                .unwrap_or_default();
        }
    }
    let programs: Vec<Program> = clients[0].get("/v1/programs")?;
    for p in &programs {
        let b = &p.balances;
        let sum = b
            .available
            .0
            .checked_add(b.committed.0)
            .and_then(|x| x.checked_add(b.released.0))
            .and_then(|x| x.checked_add(b.returned.0));
        if sum != Some(b.deposited.0) {
            failures.push(format!(
                "program {}: deposited {} != available + committed + released + returned",
                p.id, b.deposited.0
            ));
        }
    }
    Ok((common, root, programs.len()))
}

pub fn run(ctx: &Ctx, a: DrillArgs) -> Result<std::process::ExitCode> {
    let r = drill(ctx, &a)?;
    if ctx.json() {
        print_json(&r)?;
    } else {
        println!(
            "drills run: {}   tx acknowledged: {}   tx lost: {}   duplicated: {}   longest failover: {} ms",
            r.drills_run, r.tx_acknowledged, r.tx_lost, r.tx_duplicated, r.longest_failover_ms
        );
        println!(
            "agreement: {} heights compared on every node, final state root {} at height {}; {} programs conserve their funds",
            r.heights_compared, r.final_state_root, r.final_height, r.programs_checked
        );
        println!(
            "load: {:.0} tx/s committed, p50 {:.0} ms, p99 {:.0} ms; partitions made by {}",
            r.load.committed_tps, r.load.p50_ms, r.load.p99_ms, r.partition_method
        );
        for f in &r.failures {
            println!("FAILED: {f}");
        }
        println!(
            "{}",
            if r.ok {
                "all drills passed"
            } else {
                "DRILLS FAILED"
            }
        );
    }
    Ok(if r.ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

pub fn drill(ctx: &Ctx, a: &DrillArgs) -> Result<DrillReport> {
    let t = read_testnet(&a.dir)?;
    let validators: Vec<TestnetOrg> = t.orgs.iter().filter(|o| o.validator).cloned().collect();
    if validators.len() < 4 {
        return Err(super::usage(format!(
            "drills need at least 4 validators (f >= 1); {} has {}",
            a.dir.display(),
            validators.len()
        )));
    }
    let seed = a.seed.unwrap_or_else(rand::random);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let quiet = ctx.json();
    if !quiet {
        eprintln!("drill: seed {seed} (re-run with --seed {seed})");
    }
    let (_, started) = start_missing(&a.dir, 60)?;
    let mut d = Drill {
        dir: &a.dir,
        validators: validators.clone(),
        children: started,
        events: Vec::new(),
        quiet,
    };
    // The load runs in the background for the whole drill.
    let load_args = LoadArgs {
        dir: a.dir.clone(),
        rate: a.rate,
        duration: a.duration,
        drain: 90,
        workers: 8,
    };
    let load_ctx = Ctx {
        home: None,
        node: None,
        output: Output::Json,
    };
    let load = std::thread::spawn(move || bench::load(&load_ctx, &load_args));
    let t0 = now();
    // Spread the rounds over the load: kills, then a pause, then a partition.
    let rounds = a.kills + 2;
    let slot = Duration::from_secs(a.duration) / u32::try_from(rounds + 1).unwrap_or(u32::MAX);
    let mut failures = Vec::new();
    for i in 0..rounds {
        let due = slot * u32::try_from(i + 1).unwrap_or(u32::MAX);
        if let Some(rest) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(rest);
        }
        if load.is_finished() {
            break;
        }
        let leader = d.leader();
        // Every other round targets the leader.
        let want_leader = i % 2 == 0;
        let victim = match (&leader, want_leader) {
            (Some(l), true) => validators.iter().find(|v| &v.id == l).cloned(),
            _ => None,
        }
        .or_else(|| validators.choose(&mut rng).cloned())
        .ok_or_else(|| anyhow!("no validator to pick"))?;
        let was_leader = leader.as_deref() == Some(victim.id.as_str());
        let r = if i < a.kills {
            d.kill_round(victim, was_leader)
        } else if i == a.kills {
            let pause = Duration::from_millis(rng.gen_range(3000..6000));
            d.pause_round(victim, was_leader, pause)
        } else {
            let span = Duration::from_millis(rng.gen_range(4000..8000));
            d.partition_round(victim, was_leader, span)
        };
        if let Err(e) = r {
            failures.push(format!("{e:#}"));
            // Put the testnet back together before going on.
            let (_, started) = start_missing(&a.dir, 60)?;
            d.children.extend(started);
            for v in &validators {
                let _ = isolate(&v.api, false);
            }
        }
    }
    let report = load
        .join()
        .map_err(|_| anyhow!("the load generator panicked"))??;
    if report.lost > 0 {
        failures.push(format!(
            "{} acknowledged transactions were lost",
            report.lost
        ));
    }
    if report.duplicates > 0 {
        failures.push(format!(
            "{} transactions committed twice",
            report.duplicates
        ));
    }
    if report.committed == 0 {
        failures.push("no load transaction committed".into());
    }
    let (final_height, root, programs) = verify_agreement(&t.orgs, &mut failures)?;
    // Reap the nodes this drill started; they keep running (detached).
    drop(std::mem::take(&mut d.children));
    let longest = d.events.iter().map(|e| e.failover_ms).max().unwrap_or(0);
    Ok(DrillReport {
        seed,
        partition_method: "application layer (libp2p peers blocked via /v1/admin/isolate)",
        drills_run: d.events.len(),
        events: d.events,
        tx_acknowledged: report.acknowledged,
        tx_committed: report.committed,
        tx_lost: report.lost,
        tx_duplicated: report.duplicates,
        longest_failover_ms: longest,
        heights_compared: final_height,
        final_height,
        final_state_root: root,
        programs_checked: programs,
        ok: failures.is_empty(),
        failures,
        load: report,
    })
}
