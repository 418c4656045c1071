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
    #[command(flatten)]
    salt: super::keys::SaltArgs,
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

/// A bad row: its line, the value that names it (possibly empty) and why.
type BadRow = (u64, String, String);

/// A bulk input file read and split into rows: each readable row that is
/// not empty and not a repeated header, with its line number, and the
/// unreadable ones as bad rows. The whole file is bounded by
/// [`CSV_MAX_BYTES`] and [`ROWS_MAX`].
struct CsvFile {
    headers: csv::StringRecord,
    rows: Vec<(u64, csv::StringRecord)>,
    bad: Vec<BadRow>,
}

impl CsvFile {
    /// Reads `path`, whose header row must name every column in `required`
    /// (`names` says so in the error).
    fn read(path: &Path, required: &[&str], names: &str) -> Result<CsvFile> {
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
            .flexible(false)
            .from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let headers = reader
            .headers()
            .with_context(|| format!("{}: no header row", path.display()))?
            .clone();
        let file = CsvFile {
            headers,
            rows: Vec::new(),
            bad: Vec::new(),
        };
        if required.iter().any(|c| file.col(c).is_none()) {
            return Err(usage(format!(
                "{}: the header row must name {names}; it has: {}",
                path.display(),
                file.headers.iter().collect::<Vec<_>>().join(",")
            )));
        }
        let mut file = file;
        for (i, record) in reader.records().enumerate() {
            if i >= ROWS_MAX {
                return Err(usage(format!(
                    "{} has more than {ROWS_MAX} rows: split it",
                    path.display()
                )));
            }
            let line = match &record {
                Ok(r) => r.position(),
                Err(e) => e.position(),
            }
            .map_or(i as u64 + 2, |p| p.line());
            match record {
                Err(e) => file
                    .bad
                    .push((line, String::new(), format!("unreadable row: {e}"))),
                // Spreadsheets end files with rows of empty cells.
                Ok(r) if r.iter().all(str::is_empty) => {}
                Ok(r) if r == file.headers => {
                    file.bad
                        .push((line, String::new(), "a second header row".into()));
                }
                Ok(r) => file.rows.push((line, r)),
            }
        }
        Ok(file)
    }

    /// The position of a column, by its name in any case.
    fn col(&self, name: &str) -> Option<usize> {
        self.headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    }
}

/// Reads and checks a county's file: the good rows, and each bad row's
/// line and reason.
fn read_rows(path: &Path, salt: &[u8]) -> Result<(Vec<Row>, Vec<BadRow>)> {
    let file = CsvFile::read(
        path,
        &["local_id", "region"],
        "local_id and region (and may name status)",
    )?;
    let id_col = file.col("local_id").unwrap_or_default();
    let region_col = file.col("region").unwrap_or_default();
    let status_col = file.col("status");
    let mut good = Vec::new();
    let mut bad = file.bad;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (line, record) in file.rows {
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

/// What both bulk commands start with: the node, the signer at the
/// account's next nonce, and the result file.
struct Session {
    client: Client,
    signer: Signer,
    result_path: PathBuf,
    out: csv::Writer<std::fs::File>,
}

impl Session {
    fn open(
        ctx: &Ctx,
        key_path: &Path,
        chain_id: Option<ChainId>,
        input: &Path,
        result: Option<PathBuf>,
    ) -> Result<Session> {
        let result_path = result.unwrap_or_else(|| {
            let mut p = input.to_path_buf().into_os_string();
            p.push(".result.csv");
            PathBuf::from(p)
        });
        let key = read_key_file(key_path)?;
        let client = ctx.client()?;
        let chain = match chain_id {
            Some(c) => c,
            None => client.get::<NodeStatus>("/v1/status")?.chain_id.parse()?,
        };
        let account: Account = client
            .get_opt(&format!("/v1/accounts/{}", key.public().to_hex()))?
            .ok_or_else(|| anyhow!("account {} is not on the chain", key.public()))?;
        let file = std::fs::File::create(&result_path)
            .with_context(|| format!("creating {}", result_path.display()))?;
        Ok(Session {
            client,
            signer: Signer {
                key,
                chain,
                nonce: account.nonce,
            },
            result_path,
            out: csv::Writer::from_writer(file),
        })
    }
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

/// What became of one row's transactions.
struct Sent {
    /// `done`, `refused`, `rejected` or `pending`.
    result: &'static str,
    /// The transaction ids, space-separated.
    tx: String,
    detail: String,
}

/// Most times a batch, or the part of it the node was too busy to take,
/// is sent again.
const BUSY_RETRIES: u32 = 8;
/// Longest wait between two tries, whatever `Retry-After` says.
const BUSY_WAIT_MAX: Duration = Duration::from_secs(30);

/// Whether a batch item was refused only because the node or the account
/// was full for now (the same transaction may be sent again).
fn refused_for_now(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("mempool-full" | "sender-full" | "busy" | "rate-limited")
    )
}

/// Sends a batch (`txs`, the encoded transactions, and their `ids`), and
/// sends again what the node refused only for being busy (a whole request
/// answered 429 or 503, or items refused `mempool-full`, `sender-full`):
/// after the node's `Retry-After` (or a doubling pause), at most
/// [`BUSY_RETRIES`] times. One result per transaction, in order; what is
/// still refused after the last try keeps its refusal, and what the node
/// took on an earlier try keeps its answer. An error means the fate of the
/// last request is unknown.
fn submit_patiently(
    c: &Client,
    txs: Vec<String>,
    ids: &[Hash],
) -> Result<Vec<crate::api_types::BatchItem>> {
    let mut results: Vec<Option<crate::api_types::BatchItem>> = vec![None; txs.len()];
    let mut todo: Vec<usize> = (0..txs.len()).collect();
    let mut pause = Duration::from_secs(1);
    for attempt in 0..=BUSY_RETRIES {
        let batch: Vec<String> = todo.iter().map(|&i| txs[i].clone()).collect();
        let wait = match c.submit_batch(batch) {
            Ok(answer) => {
                let mut again = Vec::new();
                for (&i, item) in todo.iter().zip(answer.results) {
                    if item.error.is_some() && refused_for_now(item.code.as_deref()) {
                        again.push(i);
                    }
                    results[i] = Some(item);
                }
                if again.is_empty() {
                    break;
                }
                todo = again;
                None
            }
            Err(e) => match e.downcast_ref::<crate::client::Refused>() {
                // A whole request refused for load: the node took none of it.
                Some(r) if r.is_retryable() => {
                    for &i in &todo {
                        results[i] = Some(crate::api_types::BatchItem {
                            id: ids.get(i).copied(),
                            error: Some(r.detail.clone()),
                            code: Some(r.code.clone()),
                            included_at: None,
                        });
                    }
                    r.retry_after
                }
                _ => return Err(e),
            },
        };
        if attempt == BUSY_RETRIES {
            break;
        }
        let wait = wait.unwrap_or(pause).min(BUSY_WAIT_MAX);
        pause = (pause * 2).min(BUSY_WAIT_MAX);
        eprintln!(
            "the node is busy: sending {} transaction(s) again in {} s",
            todo.len(),
            wait.as_secs().max(1)
        );
        std::thread::sleep(wait);
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow::anyhow!("the node answered no result for a transaction")))
        .collect()
}

/// Signs each row's payloads with consecutive nonces, sends them all in
/// one batch, and waits for them to commit. One [`Sent`] per row with
/// payloads, in order; `true` when something was refused at admission
/// (later nonces would then wait behind the refused one).
fn send_rows(
    c: &Client,
    signer: &mut Signer,
    rows: &[Vec<Payload>],
    timeout: Duration,
) -> Result<(Vec<Sent>, bool)> {
    let signed: Vec<Vec<SignedTx>> = rows
        .iter()
        .map(|ps| ps.iter().map(|p| signer.sign(p)).collect())
        .collect();
    let all: Vec<String> = signed
        .iter()
        .flatten()
        .map(|t| hex::encode(t.encode()))
        .collect();
    let mut refusals: BTreeMap<Hash, String> = BTreeMap::new();
    // Anything that fails from here on leaves it unknown what the node
    // took: each row says so, and the caller sends nothing more.
    let unknown = |why: String| -> (Vec<Sent>, bool) {
        let rows = signed
            .iter()
            .map(|txs| Sent {
                result: "unknown",
                tx: txs
                    .iter()
                    .map(|t| t.id().to_hex())
                    .collect::<Vec<_>>()
                    .join(" "),
                detail: format!("{why}; re-run to find out what the chain holds"),
            })
            .collect();
        (rows, true)
    };
    if !all.is_empty() {
        let ids: Vec<Hash> = signed.iter().flatten().map(SignedTx::id).collect();
        let results = match submit_patiently(c, all, &ids) {
            Ok(a) => a,
            Err(e) => return Ok(unknown(format!("sending the batch failed: {e:#}"))),
        };
        for item in results {
            if let (Some(id), Some(err)) = (item.id, item.error) {
                let code = item.code.unwrap_or_default();
                // A copy the node already holds (an earlier run that was
                // cut off, say) is as good as sent: wait for it.
                if code == "already-pending" || code == "already-included" {
                    continue;
                }
                refusals.insert(id, format!("{code}: {err}"));
            }
        }
    }
    // A refused nonce leaves a gap: the transactions after it cannot
    // commit, so waiting for them only wastes the timeout.
    let gap = signed
        .iter()
        .flatten()
        .filter(|t| refusals.contains_key(&t.id()))
        .map(|t| t.body.nonce)
        .min();
    let ids: Vec<Hash> = signed
        .iter()
        .flatten()
        .filter(|t| !refusals.contains_key(&t.id()) && gap.is_none_or(|g| t.body.nonce < g))
        .map(SignedTx::id)
        .collect();
    let by_id: BTreeMap<Hash, TxStatus> = match wait_committed(c, &ids, timeout) {
        Ok(v) => v.into_iter().map(|s| (s.id, s)).collect(),
        Err(e) => return Ok(unknown(format!("reading the commits failed: {e:#}"))),
    };
    let mut out = Vec::with_capacity(signed.len());
    for txs in &signed {
        let mut sent = Sent {
            result: "done",
            tx: txs
                .iter()
                .map(|t| t.id().to_hex())
                .collect::<Vec<_>>()
                .join(" "),
            detail: String::new(),
        };
        for t in txs {
            let id = t.id();
            if let Some(why) = refusals.get(&id) {
                sent.result = "refused";
                sent.detail = why.clone();
                break;
            }
            match by_id.get(&id).and_then(|s| s.receipt.as_ref()) {
                Some(rc) if rc.is_applied() => {}
                Some(rc) => {
                    sent.result = "rejected";
                    sent.detail = match &rc.outcome {
                        aidledger_contracts::TxOutcome::Rejected { code, reason } => {
                            format!("{code}: {reason}")
                        }
                        aidledger_contracts::TxOutcome::Applied => String::new(),
                    };
                    break;
                }
                None if gap.is_some_and(|g| t.body.nonce > g) => {
                    sent.result = "pending";
                    sent.detail = format!(
                        "admitted, but behind the refused nonce {}: it cannot commit, and the \
                         node drops it within a minute; re-run after that",
                        gap.unwrap_or_default()
                    );
                    break;
                }
                None => {
                    sent.result = "pending";
                    sent.detail = "not committed in time; re-run to check".into();
                    break;
                }
            }
        }
        out.push(sent);
    }
    Ok((out, !refusals.is_empty()))
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
    let salt = a.salt.read()?;
    let (rows, bad) = read_rows(&a.csv, salt.as_bytes())?;
    let Session {
        client,
        mut signer,
        result_path,
        mut out,
    } = Session::open(ctx, &key_path, chain_id, &a.csv, a.result.clone())?;
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
            "pending" | "unknown" => summary.pending += 1,
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
        let mut planned: Vec<(&Row, &'static str, Vec<Payload>)> = Vec::with_capacity(rows.len());
        for r in rows {
            let on_chain: Option<Household> =
                client.get_opt(&format!("/v1/households/{}", r.household.to_hex()))?;
            let (action, payloads) = plan(r, on_chain.as_ref());
            planned.push((r, action, payloads));
        }
        let to_send: Vec<Vec<Payload>> = planned
            .iter()
            .filter(|(_, _, ps)| !ps.is_empty())
            .map(|(_, _, ps)| ps.clone())
            .collect();
        let (mut sent, refused) = if dry_run {
            (Vec::new(), false)
        } else {
            send_rows(
                &client,
                &mut signer,
                &to_send,
                Duration::from_millis(a.commit_timeout),
            )?
        };
        sent.reverse();
        for (r, action, payloads) in &planned {
            let (result, tx, detail) = if payloads.is_empty() {
                (
                    "unchanged",
                    String::new(),
                    "the chain already holds this file".to_string(),
                )
            } else if dry_run {
                (
                    "not-sent",
                    String::new(),
                    format!("dry run: would {action}"),
                )
            } else {
                let s = sent
                    .pop()
                    .ok_or_else(|| anyhow!("a row lost its transactions"))?;
                (s.result, s.tx, s.detail)
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
        if refused {
            // Later nonces would wait behind the refused one.
            stopped = Some(
                "not sent: an earlier batch was refused, or what became of it is unknown; fix the cause and re-run".into(),
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

#[derive(Args, Debug)]
pub struct SettleFileArgs {
    /// The bank's payment-confirmation file: a header row naming `release`,
    /// `amount` (in the program's currency, e.g. 1200.50) and `bank_ref`
    /// (the bank's payment reference; only its SHA-256 is sent).
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// Where to write one result row per input row [default: FILE with
    /// `.result.csv` added].
    #[arg(long, value_name = "FILE")]
    result: Option<PathBuf>,
    /// Also send confirmations whose amount differs from the release's: the
    /// chain then records each as disputed, with a settlement-mismatch
    /// anomaly for an auditor. Without it they are listed and not sent.
    #[arg(long)]
    send_mismatches: bool,
    /// Confirmations sent per batch (1 to 2000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=2000))]
    batch: u16,
    /// How long to wait for one batch to commit.
    #[arg(long, default_value = "120s", value_parser = args::duration_ms)]
    commit_timeout: u64,
}

/// One checked confirmation.
struct Confirmation {
    line: u64,
    release: u64,
    amount: args::Decimal,
    bank_ref: Hash,
}

/// One row of a settlement result file.
#[derive(Serialize)]
struct SettleOutcome {
    line: u64,
    release: String,
    amount: String,
    bank_ref_hash: String,
    /// `settle` or `none`.
    action: &'static str,
    /// `done`, `unchanged` (already settled with this reference and
    /// amount), `mismatch`, `bad-row`, `refused`, `rejected`, `pending` or
    /// `not-sent`.
    result: &'static str,
    tx: String,
    detail: String,
}

fn read_confirmations(path: &Path) -> Result<(Vec<Confirmation>, Vec<BadRow>)> {
    let file = CsvFile::read(
        path,
        &["release", "amount", "bank_ref"],
        "release, amount and bank_ref",
    )?;
    let rel = file.col("release").unwrap_or_default();
    let amt = file.col("amount").unwrap_or_default();
    let bref = file.col("bank_ref").unwrap_or_default();
    let mut good = Vec::new();
    let mut bad = file.bad;
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for (line, record) in file.rows {
        let release_text = record.get(rel).unwrap_or_default().to_string();
        let check = || -> std::result::Result<Confirmation, String> {
            let release: u64 = release_text
                .parse()
                .map_err(|_| format!("release {release_text:?}: expected a release number"))?;
            if let Some(first) = seen.get(&release) {
                return Err(format!(
                    "release {release} appears again (first at line {first})"
                ));
            }
            let amount = args::decimal(record.get(amt).unwrap_or_default())
                .map_err(|e| format!("amount: {e}"))?;
            let r = record.get(bref).unwrap_or_default();
            if r.is_empty() || r.len() > LOCAL_ID_MAX_BYTES {
                return Err(format!("bank_ref must be 1 to {LOCAL_ID_MAX_BYTES} bytes"));
            }
            Ok(Confirmation {
                line,
                release,
                amount,
                bank_ref: aidledger_types::hash::sha256(r.as_bytes()),
            })
        };
        match check() {
            Ok(c) => {
                seen.insert(c.release, line);
                good.push(c);
            }
            Err(why) => bad.push((line, release_text, why)),
        }
    }
    Ok((good, bad))
}

pub fn settle_file(
    ctx: &Ctx,
    key_path: Option<PathBuf>,
    chain_id: Option<ChainId>,
    dry_run: bool,
    a: SettleFileArgs,
) -> Result<ExitCode> {
    use aidledger_contracts::model::{Program, Release};
    let key_path =
        key_path.ok_or_else(|| usage("--key FILE is required: the bank's settling key file"))?;
    let (rows, bad) = read_confirmations(&a.csv)?;
    let Session {
        client,
        mut signer,
        result_path,
        mut out,
    } = Session::open(ctx, &key_path, chain_id, &a.csv, a.result.clone())?;
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut write = |o: SettleOutcome| -> Result<()> {
        *counts.entry(o.result).or_default() += 1;
        out.serialize(&o)?;
        out.flush()?;
        Ok(())
    };
    for (line, release, why) in &bad {
        if !ctx.json() {
            eprintln!("line {line}: {why}; nothing sent for it");
        }
        write(SettleOutcome {
            line: *line,
            release: release.clone(),
            amount: String::new(),
            bank_ref_hash: String::new(),
            action: "none",
            result: "bad-row",
            tx: String::new(),
            detail: why.clone(),
        })?;
    }
    let pb = bar(rows.len() as u64, !ctx.json());
    let mut decimals: BTreeMap<String, u8> = BTreeMap::new();
    let mut stopped: Option<String> = None;
    for chunk in rows.chunks(usize::from(a.batch).min(BATCH_SUBMIT_MAX)) {
        // What each confirmation needs: (row, payload or none, result, detail).
        let mut planned: Vec<(&Confirmation, Option<Payload>, &'static str, String)> = Vec::new();
        for c in chunk {
            let release: Option<Release> =
                client.get_opt(&format!("/v1/releases/{}", c.release))?;
            let Some(r) = release else {
                planned.push((
                    c,
                    None,
                    "mismatch",
                    format!("release {} does not exist", c.release),
                ));
                continue;
            };
            let d = match decimals.get(r.program.as_str()) {
                Some(d) => *d,
                None => {
                    let p: Program = client.get(&format!("/v1/programs/{}", r.program))?;
                    decimals.insert(r.program.to_string(), p.decimals);
                    p.decimals
                }
            };
            let amount = match c.amount.to_amount(d) {
                Ok(x) => x,
                Err(e) => {
                    planned.push((c, None, "bad-row", format!("amount: {e}")));
                    continue;
                }
            };
            if let Some(s) = &r.settlement {
                if s.bank_ref == c.bank_ref && s.amount == amount {
                    planned.push((
                        c,
                        None,
                        "unchanged",
                        format!("settled at height {}", s.height),
                    ));
                } else {
                    planned.push((
                        c,
                        None,
                        "mismatch",
                        format!(
                            "release {} is already settled at height {} with another reference or amount",
                            c.release, s.height
                        ),
                    ));
                }
                continue;
            }
            let payload = Payload::Settle(payload::Settle {
                release: c.release,
                amount,
                bank_ref: c.bank_ref,
            });
            if amount != r.amount {
                let why = format!(
                    "the bank confirms {} but release {} paid {} (minor units)",
                    amount.minor(),
                    c.release,
                    r.amount.minor()
                );
                if a.send_mismatches {
                    planned.push((c, Some(payload), "mismatch", why));
                } else {
                    planned.push((
                        c,
                        None,
                        "mismatch",
                        format!("{why}; not sent (--send-mismatches records it as disputed)"),
                    ));
                }
                continue;
            }
            planned.push((c, Some(payload), "settle", String::new()));
        }
        let to_send: Vec<Vec<Payload>> = if dry_run || stopped.is_some() {
            Vec::new()
        } else {
            planned
                .iter()
                .filter_map(|(_, p, _, _)| p.clone().map(|p| vec![p]))
                .collect()
        };
        let (mut sent, refused) = if to_send.is_empty() {
            (Vec::new(), false)
        } else {
            send_rows(
                &client,
                &mut signer,
                &to_send,
                Duration::from_millis(a.commit_timeout),
            )?
        };
        sent.reverse();
        for (c, payload, kind, why) in planned {
            let mut o = SettleOutcome {
                line: c.line,
                release: c.release.to_string(),
                amount: c.amount.0.clone(),
                bank_ref_hash: c.bank_ref.to_hex(),
                action: if payload.is_some() { "settle" } else { "none" },
                result: kind,
                tx: String::new(),
                detail: why,
            };
            if payload.is_some() {
                if let Some(why) = &stopped {
                    o.result = "not-sent";
                    o.detail = why.clone();
                } else if dry_run {
                    o.result = "not-sent";
                    o.detail = "dry run: would settle".into();
                } else {
                    let s = sent
                        .pop()
                        .ok_or_else(|| anyhow!("a row lost its transaction"))?;
                    // A sent mismatch stays a mismatch once applied.
                    if !(kind == "mismatch" && s.result == "done") {
                        o.result = s.result;
                    }
                    o.tx = s.tx;
                    if !s.detail.is_empty() {
                        o.detail = s.detail;
                    }
                }
            }
            write(o)?;
            if let Some(pb) = &pb {
                pb.inc(1);
            }
        }
        if refused {
            stopped = Some(
                "not sent: an earlier batch was refused, or what became of it is unknown; fix the cause and re-run".into(),
            );
        }
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    if ctx.json() {
        print_json(&serde_json::json!({
            "rows": rows.len() + bad.len(),
            "settled": n("done"),
            "unchanged": n("unchanged"),
            "mismatches": n("mismatch"),
            "bad_rows": n("bad-row"),
            "refused": n("refused"),
            "rejected": n("rejected"),
            "pending": n("pending"),
            "not_sent": n("not-sent"),
            "result_file": result_path.display().to_string(),
        }))?;
    } else {
        println!(
            "{} rows: {} settled, {} already settled, {} mismatches, {} bad, {} refused, {} \
             rejected, {} pending, {} not sent",
            rows.len() + bad.len(),
            n("done"),
            n("unchanged"),
            n("mismatch"),
            n("bad-row"),
            n("refused"),
            n("rejected"),
            n("pending"),
            n("not-sent")
        );
        println!("results: {}", result_path.display());
    }
    let failed =
        n("bad-row") + n("mismatch") + n("refused") + n("rejected") + n("pending") + n("unknown");
    if failed + if dry_run { 0 } else { n("not-sent") } > 0 {
        bail!(
            "some confirmations were not settled; see {} (a re-run skips what is done)",
            result_path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod busy_tests {
    #![allow(clippy::unwrap_used)]
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A node that answers each batch request with the next scripted
    /// answer, and records which transactions each request carried.
    fn scripted(answers: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<Vec<String>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut w = stream;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    let mut first = true;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        first = false;
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    if first {
                        break;
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let txs: Vec<String> = serde_json::from_value(req["txs"].clone()).unwrap();
                    log.lock().unwrap().push(txs);
                    let Some((status, text)) = answers.next() else {
                        return;
                    };
                    let kind = if status == 200 {
                        "application/json"
                    } else {
                        "application/problem+json"
                    };
                    let extra = if status == 200 {
                        ""
                    } else {
                        "retry-after: 0\r\n"
                    };
                    let _ = write!(
                        w,
                        "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\n{extra}content-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                }
            }
        });
        (url, seen)
    }

    fn item(id: u8, code: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "id": hex::encode([id; 32]),
            "error": code.map(|c| format!("refused: {c}")),
            "code": code,
        })
    }

    #[test]
    fn a_busy_node_gets_what_it_refused_again_and_only_that() {
        let busy = r#"{"type":"/v1/problems#busy","title":"busy","status":503,"detail":"busy","code":"busy"}"#;
        let first = serde_json::json!({"admitted": 1, "results": [
            item(1, None), item(2, Some("sender-full")), item(3, Some("bad-signature"))
        ]});
        let second = serde_json::json!({"admitted": 1, "results": [item(2, None)]});
        let (url, seen) = scripted(vec![
            (503, busy.into()),
            (200, first.to_string()),
            (200, second.to_string()),
        ]);
        let c = Client::new(&url).unwrap();
        let txs: Vec<String> = ["aa", "bb", "cc"].map(String::from).to_vec();
        let ids: Vec<Hash> = (1..=3).map(|b| Hash([b; 32])).collect();
        let out = submit_patiently(&c, txs, &ids).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out[0].error.is_none() && out[1].error.is_none());
        // A refusal that is not about load is kept, not retried.
        assert_eq!(out[2].code.as_deref(), Some("bad-signature"));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![vec!["aa", "bb", "cc"], vec!["aa", "bb", "cc"], vec!["bb"]]
        );
    }

    #[test]
    fn a_node_busy_to_the_end_leaves_the_refusal_and_keeps_what_it_took() {
        let busy = r#"{"type":"/v1/problems#busy","title":"busy","status":503,"detail":"busy now","code":"busy"}"#;
        let first = serde_json::json!({"admitted": 1, "results": [
            item(1, None), item(2, Some("sender-full"))
        ]});
        let mut answers = vec![(200, first.to_string())];
        answers.extend((0..BUSY_RETRIES).map(|_| (503, busy.to_string())));
        let (url, seen) = scripted(answers);
        let c = Client::new(&url).unwrap();
        let ids: Vec<Hash> = (1..=2).map(|b| Hash([b; 32])).collect();
        let out = submit_patiently(&c, vec!["aa".into(), "bb".into()], &ids).unwrap();
        assert!(out[0].error.is_none(), "what the node took stays taken");
        assert_eq!(out[1].id, Some(ids[1]));
        assert_eq!(out[1].code.as_deref(), Some("busy"));
        assert_eq!(seen.lock().unwrap().len(), 1 + BUSY_RETRIES as usize);
    }

    #[test]
    fn a_refusal_that_is_not_about_load_is_not_retried() {
        let bad = r#"{"type":"/v1/problems#bad-request","title":"bad","status":400,"detail":"no","code":"bad-request"}"#;
        let (url, seen) = scripted(vec![(400, bad.into())]);
        let c = Client::new(&url).unwrap();
        let e = submit_patiently(&c, vec!["aa".into()], &[Hash([1; 32])]).unwrap_err();
        let r = e.downcast_ref::<crate::client::Refused>().unwrap();
        assert_eq!((r.status, r.code.as_str()), (400, "bad-request"));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
