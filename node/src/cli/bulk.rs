//! Bulk work from files: `aidledger tx import-households --csv FILE`.
//!
//! A county office registers or updates thousands of household files from
//! its spreadsheet. The salted ids are computed here, from the office's
//! salt, which never leaves the machine. The import:
//!
//! - checks every row first; a bad row is reported with its line number
//!   and reason, and nothing is sent for it;
//! - is idempotent: each household is looked up, and a re-run skips what
//!   the chain already holds (`unchanged`);
//! - sends in batches (`POST /v1/txs/batch`) with consecutive nonces, and
//!   waits for each batch to commit before the next;
//! - writes a result file row by row, and shows a progress bar on a
//!   terminal.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aidledger_contracts::model::{Account, Household, HouseholdStatus};
use aidledger_contracts::{payload, Payload};
use aidledger_crypto::{read_key_file, Keypair, Purpose};
use aidledger_types::{ChainId, Hash, RegionCode, SignedTx, TxBody};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use serde::Serialize;

use super::{args, print_json, usage, Ctx};
use crate::api_types::{NodeStatus, TxState, TxStatus, BATCH_SUBMIT_MAX};
use crate::client::Client;

/// Largest CSV file read.
const CSV_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Most rows in one file.
const ROWS_MAX: usize = 2_000_000;
/// Longest local id accepted (it is hashed, never sent).
const LOCAL_ID_MAX_BYTES: usize = 256;

#[derive(Args, Debug)]
pub struct ImportHouseholdsArgs {
    /// The county's file: a header row naming `local_id` and `region`, and
    /// optionally `status` (active or inactive; active when absent).
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// The registrar's secret salt.
    #[arg(
        long,
        conflicts_with = "salt_file",
        required_unless_present = "salt_file"
    )]
    salt: Option<String>,
    /// A file holding the salt (its trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    salt_file: Option<PathBuf>,
    /// Where to write one result row per input row [default: FILE with
    /// `.result.csv` added].
    #[arg(long, value_name = "FILE")]
    result: Option<PathBuf>,
    /// Transactions sent per batch (1 to 2000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=2000))]
    batch: u16,
    /// How long to wait for one batch to commit.
    #[arg(long, default_value = "120s", value_parser = args::duration_ms)]
    commit_timeout: u64,
}

/// One checked input row.
#[derive(Clone, Debug)]
struct Row {
    line: u64,
    local_id: String,
    household: Hash,
    region: RegionCode,
    status: HouseholdStatus,
}

/// One row of the result file.
#[derive(Serialize)]
struct Outcome<'a> {
    line: u64,
    local_id: &'a str,
    household: String,
    /// `register`, `update`, `unchanged` or `none` (a bad row).
    action: &'a str,
    /// `done`, `unchanged`, `bad-row`, `refused`, `rejected`, `pending`
    /// or `not-sent`.
    result: &'a str,
    tx: String,
    detail: String,
}

/// The counts printed at the end.
#[derive(Default, Serialize)]
struct Summary {
    rows: usize,
    registered: usize,
    updated: usize,
    unchanged: usize,
    bad_rows: usize,
    refused: usize,
    rejected: usize,
    pending: usize,
    not_sent: usize,
    result_file: String,
}

pub fn read_salt(salt: Option<String>, salt_file: Option<PathBuf>) -> Result<String> {
    let salt = match (salt, salt_file) {
        (Some(s), _) => s,
        (None, Some(f)) => {
            let t = args::read_small(&f)?;
            t.strip_suffix('\n')
                .map(|s| s.strip_suffix('\r').unwrap_or(s))
                .unwrap_or(&t)
                .to_string()
        }
        (None, None) => return Err(usage("--salt or --salt-file is required")),
    };
    if salt.is_empty() {
        return Err(usage(
            "the salt must not be empty: without it the id can be guessed",
        ));
    }
    Ok(salt)
}

/// Reads and checks the file: the good rows, and each bad row's line and
/// reason.
/// A bad row: its line, its local id (possibly empty) and why.
type BadRow = (u64, String, String);

fn read_rows(path: &Path, salt: &[u8]) -> Result<(Vec<Row>, Vec<BadRow>)> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > CSV_MAX_BYTES {
        return Err(usage(format!(
            "{} is larger than {CSV_MAX_BYTES} bytes: split it",
            path.display()
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(id_col), Some(region_col)) = (col("local_id"), col("region")) else {
        return Err(usage(format!(
            "{}: the header row must name local_id and region (and may name status); it has: {}",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(",")
        )));
    };
    let status_col = col("status");
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (i, record) in reader.records().enumerate() {
        if i >= ROWS_MAX {
            return Err(usage(format!(
                "{} has more than {ROWS_MAX} rows: split it",
                path.display()
            )));
        }
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i as u64 + 2, |p| p.line());
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                bad.push((line, String::new(), format!("unreadable row: {e}")));
                continue;
            }
        };
        let local = record.get(id_col).unwrap_or_default().to_string();
        let check = || -> std::result::Result<Row, String> {
            if local.is_empty() {
                return Err("local_id is empty".into());
            }
            if local.len() > LOCAL_ID_MAX_BYTES {
                return Err(format!("local_id is over {LOCAL_ID_MAX_BYTES} bytes"));
            }
            if let Some(first) = seen.get(&local) {
                return Err(format!("local_id appears again (first at line {first})"));
            }
            let region = RegionCode::new(record.get(region_col).unwrap_or_default())
                .map_err(|e| format!("region: {e}"))?;
            let status = match status_col.map(|c| record.get(c).unwrap_or_default()) {
                None | Some("") => HouseholdStatus::Active,
                Some(s) if s.eq_ignore_ascii_case("active") => HouseholdStatus::Active,
                Some(s) if s.eq_ignore_ascii_case("inactive") => HouseholdStatus::Inactive,
                Some(s) => return Err(format!("status {s:?}: expected active or inactive")),
            };
            Ok(Row {
                line,
                household: super::keys::household_hash(salt, local.as_bytes()),
                local_id: local.clone(),
                region,
                status,
            })
        };
        match check() {
            Ok(row) => {
                seen.insert(local.clone(), line);
                good.push(row);
            }
            Err(why) => bad.push((line, local, why)),
        }
    }
    Ok((good, bad))
}

/// What a row needs, given what the chain holds.
fn plan(row: &Row, on_chain: Option<&Household>) -> (&'static str, Vec<Payload>) {
    let register = || {
        Payload::RegisterHousehold(payload::RegisterHousehold {
            id: row.household,
            region: row.region.clone(),
        })
    };
    let update = || {
        Payload::UpdateHousehold(payload::UpdateHousehold {
            id: row.household,
            region: row.region.clone(),
            status: row.status,
        })
    };
    match on_chain {
        None if row.status == HouseholdStatus::Active => ("register", vec![register()]),
        None => ("register", vec![register(), update()]),
        Some(h) if h.region == row.region && h.status == row.status => ("unchanged", vec![]),
        Some(_) => ("update", vec![update()]),
    }
}

struct Signer {
    key: Keypair,
    chain: ChainId,
    nonce: u64,
}

impl Signer {
    fn sign(&mut self, p: &Payload) -> SignedTx {
        let body = TxBody {
            chain_id: self.chain.clone(),
            nonce: self.nonce,
            signer: self.key.public(),
            kind: p.kind(),
            payload: p.encode(),
        };
        self.nonce += 1;
        let signature = self
            .key
            .sign(&self.chain, Purpose::Tx, body.id().as_bytes());
        SignedTx { body, signature }
    }
}

fn bar(len: u64, show: bool) -> Option<indicatif::ProgressBar> {
    if !show || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(8),
    );
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} import [{elapsed_precise}] {wide_bar} {pos}/{len} rows {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(pb)
}

/// Waits until every transaction in `ids` is committed or `timeout`
/// passes; the status of each.
fn wait_committed(c: &Client, ids: &[Hash], timeout: Duration) -> Result<Vec<TxStatus>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut done: BTreeMap<Hash, TxStatus> = BTreeMap::new();
    loop {
        for id in ids {
            if done.contains_key(id) {
                continue;
            }
            let st: TxStatus = c.get(&format!("/v1/txs/{}", id.to_hex()))?;
            if st.status == TxState::Committed {
                done.insert(*id, st);
            } else {
                // Later nonces commit after this one: look again later.
                break;
            }
        }
        if done.len() == ids.len() || tokio::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match done.remove(id) {
            Some(st) => out.push(st),
            None => out.push(c.get(&format!("/v1/txs/{}", id.to_hex()))?),
        }
    }
    Ok(out)
}

pub fn import_households(
    ctx: &Ctx,
    key_path: Option<PathBuf>,
    chain_id: Option<ChainId>,
    dry_run: bool,
    a: ImportHouseholdsArgs,
) -> Result<ExitCode> {
    let key_path =
        key_path.ok_or_else(|| usage("--key FILE is required: the registrar's key file"))?;
    let salt = read_salt(a.salt, a.salt_file)?;
    let (rows, bad) = read_rows(&a.csv, salt.as_bytes())?;
    let result_path = a.result.clone().unwrap_or_else(|| {
        let mut p = a.csv.clone().into_os_string();
        p.push(".result.csv");
        PathBuf::from(p)
    });
    let key = read_key_file(&key_path)?;
    let client = ctx.client()?;
    let chain = match chain_id {
        Some(c) => c,
        None => client.get::<NodeStatus>("/v1/status")?.chain_id.parse()?,
    };
    let account: Account = client
        .get_opt(&format!("/v1/accounts/{}", key.public().to_hex()))?
        .ok_or_else(|| anyhow!("account {} is not on the chain", key.public()))?;
    let mut signer = Signer {
        key,
        chain,
        nonce: account.nonce,
    };
    let file = std::fs::File::create(&result_path)
        .with_context(|| format!("creating {}", result_path.display()))?;
    let mut out = csv::Writer::from_writer(file);
    let mut summary = Summary {
        rows: rows.len() + bad.len(),
        result_file: result_path.display().to_string(),
        ..Summary::default()
    };
    let mut write = |o: Outcome<'_>, summary: &mut Summary| -> Result<()> {
        match o.result {
            "bad-row" => summary.bad_rows += 1,
            "unchanged" => summary.unchanged += 1,
            "refused" => summary.refused += 1,
            "rejected" => summary.rejected += 1,
            "pending" => summary.pending += 1,
            "not-sent" => summary.not_sent += 1,
            _ if o.action == "register" => summary.registered += 1,
            _ => summary.updated += 1,
        }
        out.serialize(&o)?;
        out.flush()?;
        Ok(())
    };
    for (line, local, why) in &bad {
        write(
            Outcome {
                line: *line,
                local_id: local,
                household: String::new(),
                action: "none",
                result: "bad-row",
                tx: String::new(),
                detail: why.clone(),
            },
            &mut summary,
        )?;
        if !ctx.json() {
            eprintln!("line {line}: {why}; nothing sent for it");
        }
    }
    let pb = bar(rows.len() as u64, !ctx.json());
    let chunk = usize::from(a.batch).min(BATCH_SUBMIT_MAX) / 2; // two transactions at most per row
    let mut stopped: Option<String> = None;
    for rows in rows.chunks(chunk.max(1)) {
        if let Some(why) = &stopped {
            for r in rows {
                write(
                    Outcome {
                        line: r.line,
                        local_id: &r.local_id,
                        household: r.household.to_hex(),
                        action: "none",
                        result: "not-sent",
                        tx: String::new(),
                        detail: why.clone(),
                    },
                    &mut summary,
                )?;
            }
            continue;
        }
        // What each row needs.
        let mut planned: Vec<(&Row, &'static str, Vec<SignedTx>)> = Vec::with_capacity(rows.len());
        for r in rows {
            let on_chain: Option<Household> =
                client.get_opt(&format!("/v1/households/{}", r.household.to_hex()))?;
            let (action, payloads) = plan(r, on_chain.as_ref());
            let txs = if dry_run {
                Vec::new()
            } else {
                payloads.iter().map(|p| signer.sign(p)).collect()
            };
            planned.push((r, action, txs));
        }
        let all: Vec<String> = planned
            .iter()
            .flat_map(|(_, _, txs)| txs.iter().map(|t| hex::encode(t.encode())))
            .collect();
        let mut refusals: BTreeMap<Hash, String> = BTreeMap::new();
        if !all.is_empty() {
            let answer = client.submit_batch(all)?;
            for item in answer.results {
                if let (Some(id), Some(err)) = (item.id, item.error) {
                    let code = item.code.unwrap_or_default();
                    refusals.insert(id, format!("{code}: {err}"));
                }
            }
        }
        let ids: Vec<Hash> = planned
            .iter()
            .flat_map(|(_, _, txs)| txs.iter().map(SignedTx::id))
            .filter(|id| !refusals.contains_key(id))
            .collect();
        let statuses = wait_committed(&client, &ids, Duration::from_millis(a.commit_timeout))?;
        let by_id: BTreeMap<Hash, TxStatus> = statuses.into_iter().map(|s| (s.id, s)).collect();
        for (r, action, txs) in &planned {
            let (result, tx, detail) = if txs.is_empty() {
                if *action == "unchanged" {
                    (
                        "unchanged",
                        String::new(),
                        "the chain already holds this file".into(),
                    )
                } else {
                    (
                        "not-sent",
                        String::new(),
                        format!("dry run: would {action}"),
                    )
                }
            } else {
                let mut result = "done";
                let mut detail = String::new();
                for t in txs {
                    let id = t.id();
                    if let Some(why) = refusals.get(&id) {
                        result = "refused";
                        detail = why.clone();
                        break;
                    }
                    match by_id.get(&id).and_then(|s| s.receipt.as_ref()) {
                        Some(rc) if rc.is_applied() => {}
                        Some(rc) => {
                            result = "rejected";
                            detail = format!("{:?}", rc.outcome);
                            break;
                        }
                        None => {
                            result = "pending";
                            detail = "not committed in time; re-run the import to check".into();
                            break;
                        }
                    }
                }
                let tx = txs
                    .iter()
                    .map(|t| t.id().to_hex())
                    .collect::<Vec<_>>()
                    .join(" ");
                (result, tx, detail)
            };
            write(
                Outcome {
                    line: r.line,
                    local_id: &r.local_id,
                    household: r.household.to_hex(),
                    action,
                    result,
                    tx,
                    detail,
                },
                &mut summary,
            )?;
            if let Some(pb) = &pb {
                pb.inc(1);
            }
        }
        if !refusals.is_empty() {
            // Later nonces would wait behind the refused one.
            stopped = Some(
                "not sent: an earlier transaction was refused; fix the cause and re-run".into(),
            );
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if ctx.json() {
        print_json(&summary)?;
    } else {
        let mut so = std::io::stdout();
        writeln!(
            so,
            "{} rows: {} registered, {} updated, {} unchanged, {} bad, {} refused, {} rejected, \
             {} pending, {} not sent",
            summary.rows,
            summary.registered,
            summary.updated,
            summary.unchanged,
            summary.bad_rows,
            summary.refused,
            summary.rejected,
            summary.pending,
            summary.not_sent
        )?;
        writeln!(so, "results: {}", summary.result_file)?;
    }
    let clean =
        summary.bad_rows + summary.refused + summary.rejected + summary.pending + summary.not_sent
            == 0;
    if dry_run && summary.bad_rows == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    if !clean {
        bail!(
            "some rows were not imported; see {} (a re-run skips what is done)",
            summary.result_file
        );
    }
    Ok(ExitCode::SUCCESS)
}
