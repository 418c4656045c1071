//! `aidledger audit replay|report|export` and `aidledger export-blocks`:
//! the auditor's commands. They read a node's data directory read-only
//! (which works while the node runs) or a chain file, never a node's API,
//! so nothing here trusts a node.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aidledger_audit::export::{self, Format};
use aidledger_audit::report;
use aidledger_audit::{
    chainfile, replay, ChainSource, FileSource, Progress, ReplayOptions, ReplayOutcome, StoreSource,
};
use aidledger_storage::RocksStore;
use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::{args, print_json, usage, Ctx, Output};
use crate::config::NodeConfig;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Verify the whole chain from genesis: hashes, Merkle roots,
    /// signatures, commit certificates and state roots. Exit 0 only if
    /// everything verifies; otherwise names the first failing height.
    Replay(ReplayArgs),
    /// Per-program balances, overdue settlements and anomalies, per-region
    /// totals, per-organisation activity and households reached, each
    /// traceable to its transactions.
    Report(ReportArgs),
    /// Write the chain's programs and money movements as JSON, CSV or IATI
    /// 2.03 activity XML.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Replay a chain file written by `aidledger export-blocks` instead of
    /// a node's data directory (--home).
    #[arg(long, value_name = "FILE")]
    blocks: Option<PathBuf>,
    /// The genesis file the auditor trusts: the chain's genesis must be
    /// exactly this one.
    #[arg(long, value_name = "FILE")]
    genesis: Option<PathBuf>,
    /// Threads for the parallel checks, at most 256 [default: the number
    /// of cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Only this region and the codes under it (a county or township
    /// report), with totals per currency and the households reached.
    #[arg(long, value_parser = args::region)]
    region: Option<aidledger_types::RegionCode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
    Iati,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Where to write (replaced atomically).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExportBlocksArgs {
    /// The chain file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Reads of a running node's store before a vanished table file counts
/// as a failure (`audit replay`).
const LIVE_STORE_ATTEMPTS: u32 = 3;

/// The data directory of a node home: config.toml's `node.data_dir`, else
/// `HOME/data`.
pub fn data_dir(home: &Path) -> Result<PathBuf> {
    let dir = if NodeConfig::path(home).exists() {
        let cfg = NodeConfig::load(home)?;
        if cfg.node.data_dir.is_absolute() {
            cfg.node.data_dir
        } else {
            home.join(cfg.node.data_dir)
        }
    } else {
        home.join("data")
    };
    if !dir.is_dir() {
        return Err(usage(format!(
            "{} has no data directory at {}",
            home.display(),
            dir.display()
        )));
    }
    Ok(dir)
}

fn open_store(ctx: &Ctx, what: &str) -> Result<RocksStore> {
    let home = ctx.home(what)?;
    let dir = data_dir(home)?;
    RocksStore::open_read_only(&dir).with_context(|| format!("opening {} read-only", dir.display()))
}

/// Writes through a temporary file in the same directory, renamed into
/// place once complete, so a failed export never leaves half a file.
pub(crate) fn write_atomically(
    path: &Path,
    f: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<u64> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a directory", dir.display())));
    }
    let name = path
        .file_name()
        .ok_or_else(|| usage(format!("{} is not a file path", path.display())))?;
    // A fresh temporary name per writer (tempfile): two exports to one
    // path never write into each other's file. Removed if anything fails.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    f(&mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    // tempfile creates 0600; an export is for others to read (0644, as a
    // plain file created under the usual umask).
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(std::fs::metadata(path)?.len())
}

pub fn run(ctx: &Ctx, cmd: AuditCmd) -> Result<ExitCode> {
    match cmd {
        AuditCmd::Replay(a) => run_replay(ctx, a),
        AuditCmd::Report(a) => run_report(ctx, a),
        AuditCmd::Export(a) => run_export(ctx, a),
    }
}

/// An indicatif bar on stderr, or nothing when stderr is not a terminal.
struct Bar(Option<indicatif::ProgressBar>);

impl Bar {
    fn new(show: bool) -> Bar {
        if !show || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let pb = indicatif::ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::stderr_with_hz(8),
        );
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} replay [{elapsed_precise}] {wide_bar} {pos}/{len} blocks {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        pb.set_style(style);
        Bar(Some(pb))
    }
}

impl Progress for Bar {
    fn start(&self, blocks: Option<u64>) {
        if let (Some(pb), Some(n)) = (&self.0, blocks) {
            pb.set_length(n);
        }
    }
    fn block_done(&self, height: u64, _txs: usize) {
        if let Some(pb) = &self.0 {
            pb.set_position(height);
        }
    }
    fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

#[derive(Serialize)]
struct ReplayJson<'a> {
    verified: bool,
    /// The one-line verdict.
    message: String,
    failure: Option<&'a aidledger_audit::Failure>,
    summary: &'a aidledger_audit::ReplaySummary,
    elapsed_ms: u64,
    tx_per_s: u64,
}

// The auditor times its own replay; the node crate is where the clock may
// be read.
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn run_replay(ctx: &Ctx, a: ReplayArgs) -> Result<ExitCode> {
    let expected_genesis = match &a.genesis {
        Some(p) => Some(
            crate::node::load_genesis(p)
                .map_err(|e| usage(format!("{e:#}")))?
                .hash(),
        ),
        None => None,
    };
    let open_source = || -> anyhow::Result<Box<dyn ChainSource>> {
        Ok(match &a.blocks {
            Some(file) => {
                if !file.is_file() {
                    return Err(usage(format!("{} is not a file", file.display())));
                }
                Box::new(FileSource::open(file)?)
            }
            None => {
                let home = ctx.home("audit replay (or give --blocks FILE)")?;
                let dir = data_dir(home)?;
                let source = StoreSource::open_read_only(&dir)?;
                let base = source.store().base()?;
                if base > 1 {
                    anyhow::bail!(
                        "this node's history starts at height {base}: it joined from a \
                         snapshot (a pruned node), so a replay from genesis cannot run on \
                         it. Replay on a node that keeps all history, or from an export of \
                         one (aidledger export-blocks)"
                    );
                }
                Box::new(source)
            }
        })
    };
    let opts = ReplayOptions {
        threads: match a.threads {
            Some(0) => return Err(usage("--threads must be at least 1")),
            Some(n) if n > aidledger_audit::REPLAY_THREADS_MAX => {
                return Err(usage(format!(
                    "--threads {n} is more than the replay runs (at most {})",
                    aidledger_audit::REPLAY_THREADS_MAX
                )))
            }
            Some(n) => n,
            None => ReplayOptions::default().threads,
        },
        expected_genesis,
    };
    let bar = Bar::new(!ctx.json());
    let started = now();
    // A running node's store is read as of the moment it was opened; the
    // node's compactions may delete a table file that view still lists
    // (RocksDB reports the file missing). That is the source moving, not
    // the chain failing: read it again from a fresh view, a bounded number
    // of times. A file that stays missing is reported as a failure.
    let mut attempts = 0;
    let out: ReplayOutcome = loop {
        let mut source = open_source()?;
        let out = replay(source.as_mut(), &opts, &bar);
        attempts += 1;
        let vanished = a.blocks.is_none()
            && out
                .failure
                .as_ref()
                .is_some_and(|f| aidledger_storage::is_vanished_file(&f.to_string()));
        if vanished && attempts < LIVE_STORE_ATTEMPTS {
            eprintln!(
                "a table file of the node's store went away while it was read (a compaction \
                 of the running node); reading again"
            );
            continue;
        }
        break out;
    };
    let elapsed = started.elapsed();
    let elapsed_ms = elapsed.as_millis() as u64;
    let secs = elapsed.as_secs_f64();
    let tx_per_s = if secs > 0.0 {
        (out.summary.txs as f64 / secs) as u64
    } else {
        0
    };
    let message = match &out.failure {
        None => "verified: every hash, Merkle root, signature, certificate and state root".into(),
        Some(f) => f.to_string(),
    };
    let s = &out.summary;
    if ctx.json() {
        print_json(&ReplayJson {
            verified: out.verified(),
            message: message.clone(),
            failure: out.failure.as_ref(),
            summary: s,
            elapsed_ms,
            tx_per_s,
        })?;
    } else {
        let hash = |h: Option<aidledger_types::Hash>| h.map_or("-".into(), |h| h.to_hex());
        println!("source         {}", s.source);
        println!("chain          {}", s.chain_id);
        println!("genesis        {}", hash(s.genesis_hash));
        println!("blocks         {}", s.blocks);
        println!(
            "txs            {} ({} applied, {} rejected)",
            s.txs, s.txs_applied, s.txs_rejected
        );
        println!("organisations  {}", s.organisations);
        println!("accounts       {}", s.accounts);
        println!("programs       {}", s.programs);
        println!("applications   {}", s.applications);
        println!("households     {}", s.households);
        println!("releases       {}", s.releases);
        println!("anomalies      {}", s.anomalies);
        println!("validator sets {} change(s)", s.validator_set_changes);
        println!("head           {}", hash(s.head_hash));
        println!("state root     {}", hash(s.state_root));
        println!("time           {:.3} s on {} threads", secs, s.threads);
        println!("throughput     {tx_per_s} tx/s");
        if out.verified() {
            println!("result         {message}");
        }
    }
    match &out.failure {
        None => Ok(ExitCode::SUCCESS),
        Some(_) => {
            eprintln!("error: audit failed: {message}");
            Ok(ExitCode::from(1))
        }
    }
}

/// One CSV row of a regional report: a region's row, or a total.
#[derive(Serialize)]
struct RegionCsv<'a> {
    /// `region` or `total`.
    level: &'static str,
    region: &'a str,
    currency: &'a str,
    deposited: u64,
    released: u64,
    settled: u64,
    releases: u64,
    households_registered: Option<u64>,
    households_reached: Option<u64>,
}

/// A region's row in the text tables.
fn region_cells(g: &report::RegionReport) -> [String; 8] {
    [
        g.region.clone(),
        g.currency.clone(),
        g.deposited.to_string(),
        g.released.to_string(),
        g.settled.to_string(),
        g.releases.len().to_string(),
        g.households_registered.to_string(),
        g.households_reached.to_string(),
    ]
}

/// `audit report --region R`, or the regions of the whole chain as CSV.
fn regional_report(
    ctx: &Ctx,
    r: &report::Report,
    region: Option<&aidledger_types::RegionCode>,
) -> Result<ExitCode> {
    let all;
    let region = match region {
        Some(g) => g,
        None => {
            // Every code: the province-level codes' union is the chain.
            all = r
                .regions
                .iter()
                .filter_map(|g| g.region.split('/').next())
                .filter_map(|p| aidledger_types::RegionCode::new(p).ok())
                .collect::<std::collections::BTreeSet<_>>();
            if all.len() != 1 {
                return Err(usage(
                    "--output csv needs --region R when the chain spans more than one province",
                ));
            }
            all.iter().next().ok_or_else(|| anyhow!("no regions"))?
        }
    };
    let g = report::regional(r, region)?;
    match ctx.output {
        Output::Json => print_json(&g)?,
        Output::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            for row in &g.rows {
                w.serialize(RegionCsv {
                    level: "region",
                    region: &row.region,
                    currency: &row.currency,
                    deposited: row.deposited,
                    released: row.released,
                    settled: row.settled,
                    releases: row.releases.len() as u64,
                    households_registered: Some(row.households_registered),
                    households_reached: Some(row.households_reached),
                })?;
            }
            for t in &g.totals {
                w.serialize(RegionCsv {
                    level: "total",
                    region: &g.region,
                    currency: &t.currency,
                    deposited: t.deposited,
                    released: t.released,
                    settled: t.settled,
                    releases: t.releases,
                    households_registered: Some(g.households_registered),
                    households_reached: Some(g.households_reached),
                })?;
            }
            w.flush()?;
        }
        Output::Text => {
            let o = &g.as_of;
            println!(
                "region {} as of height {} ({}), state root {}",
                g.region,
                o.height,
                o.time,
                o.state_root.to_hex()
            );
            println!();
            let mut t = super::table::table(
                &[
                    "REGION",
                    "CUR",
                    "DEPOSITED",
                    "RELEASED",
                    "SETTLED",
                    "RELEASES",
                    "HOUSEHOLDS",
                    "REACHED",
                ],
                &[2, 3, 4, 5, 6, 7],
            );
            for row in &g.rows {
                t.add_row(region_cells(row));
            }
            for tot in &g.totals {
                t.add_row([
                    format!("TOTAL {}", g.region),
                    tot.currency.clone(),
                    tot.deposited.to_string(),
                    tot.released.to_string(),
                    tot.settled.to_string(),
                    tot.releases.to_string(),
                    g.households_registered.to_string(),
                    g.households_reached.to_string(),
                ]);
            }
            super::table::print(&t);
            println!("(amounts in minor units; --output json lists each household reached and what it received)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_report(ctx: &Ctx, a: ReportArgs) -> Result<ExitCode> {
    let store = open_store(ctx, "audit report")?;
    let snap = report::store_snapshot(&store)?;
    let act = report::store_activity(&store)?;
    let r = report::build(&snap, Some(&act))?;
    if a.region.is_some() || ctx.output == Output::Csv {
        return regional_report(ctx, &r, a.region.as_ref());
    }
    if ctx.json() {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let o = &r.as_of;
    println!(
        "as of height {} ({}), state root {}",
        o.height,
        o.time,
        o.state_root.to_hex()
    );
    println!();
    let mut t = super::table::table(
        &[
            "PROGRAM",
            "CUR",
            "DEPOSITED",
            "AVAILABLE",
            "COMMITTED",
            "RELEASED",
            "SETTLED",
            "RETURNED",
            "OVERDUE",
            "ANOMALIES",
            "LEDGER",
        ],
        &[2, 3, 4, 5, 6, 7, 8, 9],
    );
    for p in &r.programs {
        let d = |v: u64| aidledger_types::Amount(v).to_decimal(u32::from(p.decimals));
        t.add_row([
            p.id.to_string(),
            p.currency.to_string(),
            d(p.deposited),
            d(p.available),
            d(p.committed),
            d(p.released),
            d(p.settled),
            d(p.returned),
            p.overdue_settlements.to_string(),
            format!("{}/{}", p.anomalies_open, p.anomalies_resolved),
            if p.ledger_consistent && p.conserved {
                "ok".to_string()
            } else {
                format!("MISMATCH {}", p.ledger_differences.join("; "))
            },
        ]);
    }
    super::table::print(&t);
    println!("(anomalies: open/resolved; every figure's ledger entries and transactions are in --output json under programs[].sources)");
    println!();
    let mut t = super::table::table(
        &[
            "REGION",
            "CUR",
            "DEPOSITED",
            "RELEASED",
            "SETTLED",
            "RELEASES",
            "HOUSEHOLDS",
            "REACHED",
        ],
        &[2, 3, 4, 5, 6, 7],
    );
    for g in &r.regions {
        t.add_row(region_cells(g));
    }
    super::table::print(&t);
    println!("(amounts in minor units)");
    println!();
    let mut table = super::table::table(
        &[
            "ORG",
            "KIND",
            "TXS",
            "APPLIED",
            "REJECTED",
            "ATTEST",
            "VOTES",
            "HOUSEHOLDS",
        ],
        &[2, 3, 4, 5, 6, 7],
    );
    for g in &r.organisations {
        let t = g.txs.clone().unwrap_or_default();
        table.add_row([
            g.id.to_string(),
            g.kind.to_string(),
            t.signed.to_string(),
            t.applied.to_string(),
            t.rejected.to_string(),
            g.attestations.to_string(),
            g.application_votes.to_string(),
            g.households_registered.to_string(),
        ]);
    }
    super::table::print(&table);
    println!();
    println!(
        "households     {} registered, {} active, {} reached by a release",
        r.households.registered, r.households.active, r.households.reached
    );
    println!(
        "anomalies      {} open, {} resolved",
        r.anomalies.open, r.anomalies.resolved
    );
    Ok(ExitCode::SUCCESS)
}

fn run_export(ctx: &Ctx, a: ExportArgs) -> Result<ExitCode> {
    let store = open_store(ctx, "audit export")?;
    let snap = report::store_snapshot(&store)?;
    let format = match a.format {
        ExportFormat::Json => Format::Json,
        ExportFormat::Csv => Format::Csv,
        ExportFormat::Iati => Format::Iati,
    };
    let bytes = write_atomically(&a.out, |w| {
        export::write(&snap, format, w)?;
        Ok(())
    })?;
    #[derive(Serialize)]
    struct Done<'a> {
        path: &'a str,
        format: &'a str,
        bytes: u64,
        programs: usize,
        height: u64,
    }
    let path_text = a.out.to_string_lossy();
    let done = Done {
        path: &path_text,
        format: match a.format {
            ExportFormat::Json => "json",
            ExportFormat::Csv => "csv",
            ExportFormat::Iati => "iati",
        },
        bytes,
        programs: snap.programs.len(),
        height: snap.as_of.height,
    };
    if ctx.json() {
        print_json(&done)?;
    } else {
        println!(
            "wrote {} ({} export, {} bytes, {} programs, as of height {})",
            done.path, done.format, done.bytes, done.programs, done.height
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export_blocks(ctx: &Ctx, a: ExportBlocksArgs) -> Result<ExitCode> {
    let store = open_store(ctx, "export-blocks")?;
    let mut summary = None;
    write_atomically(&a.out, |w| {
        summary = Some(chainfile::write_chain_file(&store, w)?);
        Ok(())
    })?;
    let s = summary.context("export wrote nothing")?;
    if ctx.json() {
        print_json(&s)?;
    } else {
        println!(
            "wrote {}: chain {}, {} blocks, {} bytes, digest {}",
            a.out.display(),
            s.chain_id,
            s.blocks,
            s.bytes,
            s.digest.to_hex()
        );
    }
    Ok(ExitCode::SUCCESS)
}
