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

use crate::bench::{self, LoadArgs, LoadReport};
use crate::testnet::{read_testnet, start_missing, TestnetOrg};
use crate::{netns, procs};
use aidledger_node::api_types::BlockView;
use aidledger_node::cli::{print_json, query, usage, Ctx, Output};
use aidledger_node::client::Client;

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
    /// Instead of the kill, pause and isolate rounds: real network
    /// partitions between Linux network namespaces (needs root). One of
    /// `A:B[:C...]` (validator groups, e.g. `2:2` or `1:3`; observers join
    /// the groups in turn), `flap` (the link between two validators goes
    /// down and up every second) or `oneway` (one validator's packets to
    /// every other node are dropped, while theirs still reach it).
    /// Repeat to run several in turn.
    #[arg(long, value_name = "SPEC", value_parser = parse_partition)]
    pub partition: Vec<PartitionSpec>,
    /// How long each `--partition` holds, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub hold: u64,
}

/// One `--partition` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSpec {
    Groups(Vec<usize>),
    Flap,
    OneWay,
}

impl std::fmt::Display for PartitionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartitionSpec::Groups(g) => {
                let parts: Vec<String> = g.iter().map(usize::to_string).collect();
                write!(f, "{}", parts.join(":"))
            }
            PartitionSpec::Flap => write!(f, "flap"),
            PartitionSpec::OneWay => write!(f, "oneway"),
        }
    }
}

fn parse_partition(s: &str) -> std::result::Result<PartitionSpec, String> {
    match s {
        "flap" => return Ok(PartitionSpec::Flap),
        "oneway" | "one-way" => return Ok(PartitionSpec::OneWay),
        _ => {}
    }
    let groups: Vec<usize> = s
        .split(':')
        .map(|g| g.parse::<usize>().ok().filter(|n| (1..=64).contains(n)))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            format!("{s:?}: expected group sizes such as 2:2 or 1:3, or flap, or oneway")
        })?;
    if groups.len() < 2 || groups.len() > 8 {
        return Err(format!("{s:?}: a partition has 2 to 8 groups"));
    }
    Ok(PartitionSpec::Groups(groups))
}

/// What one namespace partition did.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub spec: String,
    /// Organisation ids on each side (`flap` and `oneway`: the nodes whose
    /// links were cut, first the one cut off).
    pub groups: Vec<Vec<String>>,
    pub hold_ms: u64,
    /// Whether some side kept a quorum of validators (2f+1).
    pub quorum_side: bool,
    pub height_at_split: u64,
    pub height_at_heal: u64,
    /// Blocks committed while the partition held.
    pub committed_during_hold: u64,
    /// From healing to a commit above the height at heal on every
    /// validator.
    pub recovery_ms: Option<u64>,
    /// 2 × the round timeout.
    pub recovery_limit_ms: u64,
    pub ok: bool,
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
    /// `--partition` rounds (network namespaces).
    pub partitions: Vec<PartitionReport>,
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

/// Cuts the node off from its peers, or heals it, through its admin API,
/// with the token the node keeps in its home.
fn isolate(org: &TestnetOrg, on: bool) -> Result<()> {
    let api = &org.api;
    let token_file = org.home.join(aidledger_node::node::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the admin token {}", token_file.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let resp = agent
        .post(&format!("{api}/v1/admin/isolate"))
        .header("Authorization", &format!("Bearer {}", token.trim()))
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
        isolate(&victim, true)?;
        let failover = wait_commit(&others, h, Duration::from_secs(90));
        let rest = span.saturating_sub(failover.as_ref().map(|d| *d).unwrap_or_default());
        std::thread::sleep(rest);
        isolate(&victim, false)?;
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

/// The validators' base round timeout (the largest configured).
fn round_timeout_ms(validators: &[TestnetOrg]) -> Result<u64> {
    let mut t = 0;
    for v in validators {
        let cfg = aidledger_node::config::NodeConfig::load(&v.home)
            .with_context(|| format!("the config of {}", v.id))?;
        t = t.max(cfg.consensus.round_timeout_ms);
    }
    Ok(t)
}

/// Removes every block between the first `n` nodes of layout `tag`.
fn heal_ns(tag: &str, n: usize) {
    for i in 0..n {
        for j in 0..n {
            if i != j {
                if let Err(e) = netns::unblock(tag, i, j) {
                    eprintln!("drill: cannot heal {i} -> {j}: {e:#}");
                }
            }
        }
    }
}

fn heights(apis: &[&str]) -> Vec<Option<u64>> {
    apis.iter().map(|a| height(a)).collect()
}

/// One namespace partition: split, hold, heal, and time the recovery.
fn partition_ns(
    orgs: &[TestnetOrg],
    tag: &str,
    spec: &PartitionSpec,
    hold: u64,
    limit_ms: u64,
    rng: &mut rand_chacha::ChaCha8Rng,
    quiet: bool,
) -> Result<PartitionReport> {
    let say = |m: String| {
        if !quiet {
            eprintln!("drill: {m}");
        }
    };
    let vals: Vec<usize> = (0..orgs.len()).filter(|i| orgs[*i].validator).collect();
    let apis: Vec<&str> = vals.iter().map(|i| orgs[*i].api.as_str()).collect();
    let n = vals.len();
    let quorum = n - (n - 1) / 3;
    // Live before the split: a fresh commit on some validator.
    let h = max_height(&apis);
    wait_commit(&apis, h, Duration::from_secs(60)).context("no commit before the split")?;
    let leader = apis
        .iter()
        .find_map(|a| query::node_status(a).ok().and_then(|s| s.leader))
        .map(|l| l.to_string());
    let leader_idx = vals
        .iter()
        .copied()
        .find(|i| leader.as_deref() == Some(orgs[*i].id.as_str()));
    let mut order = vals.clone();
    order.shuffle(rng);
    // Cut links: (from, to), one direction each.
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let (groups, quorum_side, flap): (Vec<Vec<usize>>, bool, Option<(usize, usize)>) = match spec {
        PartitionSpec::Groups(sizes) => {
            let mut groups: Vec<Vec<usize>> = Vec::new();
            let mut it = order.iter().copied();
            for sz in sizes {
                groups.push(it.by_ref().take(*sz).collect());
            }
            let quorum_side = groups.iter().any(|g| g.len() >= quorum);
            // Observers join the groups in turn.
            for (k, i) in (0..orgs.len()).filter(|i| !orgs[*i].validator).enumerate() {
                let g = k % groups.len();
                groups[g].push(i);
            }
            for (gi, g) in groups.iter().enumerate() {
                for (gj, other) in groups.iter().enumerate() {
                    if gi != gj {
                        for a in g {
                            for b in other {
                                cuts.push((*a, *b));
                            }
                        }
                    }
                }
            }
            (groups, quorum_side, None)
        }
        PartitionSpec::OneWay => {
            let victim = leader_idx.unwrap_or(order[0]);
            for j in 0..orgs.len() {
                if j != victim {
                    cuts.push((victim, j));
                }
            }
            let rest = (0..orgs.len()).filter(|j| *j != victim).collect();
            (vec![vec![victim], rest], true, None)
        }
        PartitionSpec::Flap => {
            let a = leader_idx.unwrap_or(order[0]);
            let b = order.iter().copied().find(|x| *x != a).unwrap_or(order[1]);
            (vec![vec![a], vec![b]], true, Some((a, b)))
        }
    };
    let names: Vec<Vec<String>> = groups
        .iter()
        .map(|g| g.iter().map(|i| orgs[*i].id.clone()).collect())
        .collect();
    say(format!(
        "partition {spec}: {names:?} for {hold} s (network namespaces)"
    ));
    let cut = |cuts: &[(usize, usize)]| -> Result<()> {
        for (a, b) in cuts {
            netns::block(tag, *a, *b)?;
        }
        Ok(())
    };
    let uncut = |cuts: &[(usize, usize)]| -> Result<()> {
        for (a, b) in cuts {
            netns::unblock(tag, *a, *b)?;
        }
        Ok(())
    };
    let t_split = now();
    let hold_for = Duration::from_secs(hold);
    let mut height_at_split = None;
    match flap {
        None => {
            cut(&cuts)?;
            // Messages already on the wire may still land: the split
            // counts from one second in.
            std::thread::sleep(Duration::from_secs(1).min(hold_for));
            height_at_split = Some(max_height(&apis));
            if let Some(rest) = hold_for.checked_sub(t_split.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        Some((a, b)) => {
            let link = [(a, b), (b, a)];
            let mut down = false;
            while t_split.elapsed() < hold_for {
                if down {
                    uncut(&link)?;
                } else {
                    cut(&link)?;
                }
                down = !down;
                if height_at_split.is_none() {
                    height_at_split = Some(max_height(&apis));
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            cuts = link.to_vec();
        }
    }
    let height_at_split = height_at_split.unwrap_or(0);
    let height_at_heal = max_height(&apis);
    uncut(&cuts)?;
    let healed = now();
    let hold_ms = ms(healed.duration_since(t_split));
    say(format!("  healed at height {height_at_heal}"));
    let mut recovery_ms = None;
    while healed.elapsed() < Duration::from_secs(120) {
        let hs = heights(&apis);
        if hs.iter().all(|h| h.is_some_and(|h| h > height_at_heal)) {
            recovery_ms = Some(ms(healed.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let committed_during_hold = height_at_heal.saturating_sub(height_at_split);
    // Without a quorum on any side nothing may commit; with one, the
    // quorum side must have kept going.
    let hold_ok = if quorum_side {
        committed_during_hold > 0 || hold < 3
    } else {
        committed_during_hold == 0
    };
    let ok = hold_ok && recovery_ms.is_some_and(|r| r <= limit_ms);
    say(format!(
        "  {committed_during_hold} blocks during the hold; recovery {}",
        recovery_ms.map_or_else(|| "none within 120 s".into(), |r| format!("{r} ms"))
    ));
    Ok(PartitionReport {
        spec: spec.to_string(),
        groups: names,
        hold_ms,
        quorum_side,
        height_at_split,
        height_at_heal,
        committed_during_hold,
        recovery_ms,
        recovery_limit_ms: limit_ms,
        ok,
    })
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
    let programs: Vec<Program> = clients[0]
        .get_all("/v1/programs")?
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()?;
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

/// Checks `--partition` values against the testnet's validator count.
fn check_partitions(specs: &[PartitionSpec], validators: usize) -> Result<()> {
    for spec in specs {
        if let PartitionSpec::Groups(g) = spec {
            let total: usize = g.iter().sum();
            if total != validators {
                return Err(usage(format!(
                    "--partition {spec}: the groups hold {total} validators, the testnet has {validators}"
                )));
            }
        }
    }
    Ok(())
}

/// `--partition` from the host: lays out one network namespace per node
/// and a hub, moves the testnet's nodes into them, runs this same drill
/// inside the hub (where every node's namespace address is reachable),
/// then tears the layout down and puts the nodes back on loopback.
fn run_in_namespaces(ctx: &Ctx, a: &DrillArgs) -> Result<std::process::ExitCode> {
    netns::check_available()?;
    let t = read_testnet(&a.dir)?;
    let validators = t.orgs.iter().filter(|o| o.validator).count();
    if validators < 4 {
        return Err(usage(format!(
            "drills need at least 4 validators (f >= 1); {} has {validators}",
            a.dir.display()
        )));
    }
    check_partitions(&a.partition, validators)?;
    let homes: Vec<PathBuf> = t.orgs.iter().map(|o| o.home.clone()).collect();
    let was_running = homes.iter().any(|h| procs::running(h).is_some());
    let quiet = ctx.json();
    if !quiet {
        eprintln!(
            "drill: moving the {} nodes into network namespaces",
            homes.len()
        );
    }
    procs::stop_all(&homes, Duration::from_secs(20))?;
    let status = {
        let ns = netns::Namespaces::create(t.orgs.len())?;
        let exe = std::env::current_exe().context("cannot find the aidledger executable")?;
        let status = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.hub()])
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(netns::ENV, ns.tag())
            .status()
            .context("cannot run the drill inside the hub namespace");
        // The nodes run detached inside the namespaces; stop them before
        // the namespaces go (signals reach them from here).
        let stopped = procs::stop_all(&homes, Duration::from_secs(20));
        drop(ns);
        stopped?;
        status?
    };
    if was_running {
        if !quiet {
            eprintln!("drill: namespaces removed; restarting the nodes on loopback");
        }
        start_missing(&a.dir, 60)?;
    }
    Ok(match status.code() {
        Some(0) => std::process::ExitCode::SUCCESS,
        Some(c) => std::process::ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => std::process::ExitCode::FAILURE,
    })
}

pub fn run(ctx: &Ctx, a: DrillArgs) -> Result<std::process::ExitCode> {
    if !a.partition.is_empty() && netns::current_tag().is_none() {
        return run_in_namespaces(ctx, &a);
    }
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
            "load: {:.0} tx/s committed, p50 {:.0} ms, p99 {:.0} ms, {} re-submissions, {} busy \
             answers; partitions made by {}",
            r.load.committed_tps,
            r.load.p50_ms,
            r.load.p99_ms,
            r.load.resubmitted,
            r.load.busy_answers,
            r.partition_method
        );
        for p in &r.partitions {
            println!(
                "partition {} {:?} for {} ms: {} blocks committed meanwhile, recovery {} (limit {} ms){}",
                p.spec,
                p.groups,
                p.hold_ms,
                p.committed_during_hold,
                p.recovery_ms
                    .map_or_else(|| "none".to_string(), |r| format!("{r} ms")),
                p.recovery_limit_ms,
                if p.ok { "" } else { "  FAILED" }
            );
        }
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
        return Err(usage(format!(
            "drills need at least 4 validators (f >= 1); {} has {}",
            a.dir.display(),
            validators.len()
        )));
    }
    check_partitions(&a.partition, validators.len())?;
    let ns_tag = netns::current_tag();
    if !a.partition.is_empty() && ns_tag.is_none() {
        bail!("--partition runs inside network namespaces (use `aidledger testnet drill`)");
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
    // A partition drill lasts as long as its partitions: each holds, then
    // has up to a minute to recover.
    let duration = if a.partition.is_empty() {
        a.duration
    } else {
        let per = a.hold + 15;
        (5 + per * a.partition.len() as u64).max(10)
    };
    let load_args = LoadArgs {
        dir: a.dir.clone(),
        rate: a.rate,
        duration,
        drain: 90,
        workers: 8,
        cpus: None,
    };
    let load_ctx = Ctx {
        home: None,
        node: None,
        output: Output::Json,
    };
    let load = std::thread::spawn(move || bench::load(&load_ctx, &load_args));
    let mut partitions = Vec::new();
    let mut failures = Vec::new();
    if let Some(tag) = &ns_tag {
        let limit = round_timeout_ms(&validators)?.saturating_mul(2);
        // Let the load get going first: the split should cut a consortium
        // that is committing transactions, not one still idle.
        std::thread::sleep(Duration::from_secs(5));
        for spec in &a.partition {
            match partition_ns(&t.orgs, tag, spec, a.hold, limit, &mut rng, quiet) {
                Ok(r) => {
                    if !r.ok {
                        failures.push(format!(
                            "partition {}: recovery {:?} ms (limit {} ms), {} blocks committed during the hold",
                            r.spec, r.recovery_ms, r.recovery_limit_ms, r.committed_during_hold
                        ));
                    }
                    partitions.push(r);
                }
                Err(e) => {
                    failures.push(format!("partition {spec}: {e:#}"));
                    heal_ns(tag, t.orgs.len());
                }
            }
        }
    }
    let t0 = now();
    // Spread the rounds over the load: kills, then a pause, then a partition.
    let rounds = if ns_tag.is_some() { 0 } else { a.kills + 2 };
    let slot = Duration::from_secs(a.duration) / u32::try_from(rounds + 1).unwrap_or(u32::MAX);
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
                let _ = isolate(v, false);
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
    let drills_run = d.events.len() + partitions.len();
    Ok(DrillReport {
        seed,
        partition_method: if ns_tag.is_some() {
            "network namespaces (prohibit routes between per-node namespaces)"
        } else {
            "application layer (libp2p peers blocked via /v1/admin/isolate)"
        },
        partitions,
        drills_run,
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
