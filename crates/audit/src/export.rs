//! Exports of a [`Snapshot`]: JSON (the report plus every money
//! movement), CSV (one row per money movement) and IATI 2.03 XML (see
//! [`crate::iati`]).

use std::io::Write;

use aidledger_contracts::{MoneyEvent, MoneyFlow, Party};
use serde::Serialize;

use crate::report::{self, Report, Snapshot};
use crate::AuditError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Iati,
}

/// One money movement as exported.
#[derive(Clone, Debug, Serialize)]
pub struct Movement {
    pub height: u64,
    pub time_ms: u64,
    pub time: String,
    /// Empty for end-of-block releases, which no transaction caused.
    pub tx: Option<String>,
    pub program: String,
    pub ledger_seq: u64,
    pub from: String,
    pub to: String,
    /// Minor units.
    pub amount: u64,
    pub currency: String,
    /// `incoming-funds`, `commitment`, `disbursement`, `expenditure`,
    /// `commitment-cancelled` or `funds-returned`.
    #[serde(rename = "type")]
    pub kind: String,
    pub iati_transaction_type: u8,
    pub plan: Option<String>,
    pub tranche: Option<String>,
    pub entitlement: Option<String>,
    pub release: Option<u64>,
}

pub fn party(p: &Party) -> String {
    match p {
        Party::Org(o) => format!("org:{o}"),
        Party::Household(h) => format!("household:{}", h.to_hex()),
        Party::Program(p) => format!("program:{p}"),
    }
}

pub fn flow_name(f: MoneyFlow) -> &'static str {
    match f {
        MoneyFlow::IncomingFunds => "incoming-funds",
        MoneyFlow::Commitment => "commitment",
        MoneyFlow::Disbursement => "disbursement",
        MoneyFlow::Expenditure => "expenditure",
        MoneyFlow::CommitmentCancelled => "commitment-cancelled",
        MoneyFlow::FundsReturned => "funds-returned",
    }
}

pub fn movement(e: &MoneyEvent) -> Movement {
    Movement {
        height: e.height,
        time_ms: e.time.ms(),
        time: e.time.iso8601(),
        tx: e.tx.map(|t| t.to_hex()),
        program: e.program.to_string(),
        ledger_seq: e.seq,
        from: party(&e.from),
        to: party(&e.to),
        amount: e.amount.minor(),
        currency: e.currency.to_string(),
        kind: flow_name(e.flow).to_string(),
        iati_transaction_type: e.flow.iati_code(),
        plan: e.plan.as_ref().map(|x| x.to_string()),
        tranche: e.tranche.as_ref().map(|x| x.to_string()),
        entitlement: e.entitlement.as_ref().map(|x| x.to_string()),
        release: e.release,
    }
}

#[derive(Serialize)]
struct JsonExport<'a> {
    format: &'static str,
    report: &'a Report,
    movements: Vec<Movement>,
}

/// The CSV header. The first nine columns are the ones auditors asked
/// for; the rest make each row traceable within the program's ledger.
pub const CSV_HEADER: &str =
    "height,time,tx_id,program,from,to,amount,currency,type,ledger_seq,release";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes one export of the snapshot.
pub fn write(s: &Snapshot, format: Format, out: &mut dyn Write) -> Result<(), AuditError> {
    let io = |source| AuditError::Io {
        path: "output".into(),
        source,
    };
    match format {
        Format::Json => {
            let report = report::build(s, None)?;
            let doc = JsonExport {
                format: "aidledger audit export v1",
                report: &report,
                movements: s.movements().into_iter().map(movement).collect(),
            };
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(|e| AuditError::Invalid {
                what: "json export".into(),
                reason: e.to_string(),
            })?;
            writeln!(out).map_err(io)?;
        }
        Format::Csv => {
            writeln!(out, "{CSV_HEADER}").map_err(io)?;
            for e in s.movements() {
                let m = movement(e);
                let cols = [
                    m.height.to_string(),
                    m.time,
                    m.tx.unwrap_or_default(),
                    m.program,
                    m.from,
                    m.to,
                    m.amount.to_string(),
                    m.currency,
                    m.kind,
                    m.ledger_seq.to_string(),
                    m.release.map(|r| r.to_string()).unwrap_or_default(),
                ];
                let line: Vec<String> = cols.iter().map(|c| csv_field(c)).collect();
                writeln!(out, "{}", line.join(",")).map_err(io)?;
            }
        }
        Format::Iati => crate::iati::write(s, out)?,
    }
    out.flush().map_err(io)
}
