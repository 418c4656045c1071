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

/// One CSV row: every field of a [`Movement`]. The first nine columns are
/// the ones auditors asked for; the rest make each row traceable within
/// the program's ledger and to its plan, entitlement and release.
#[derive(Serialize)]
struct CsvRow {
    height: u64,
    time: String,
    tx_id: String,
    program: String,
    from: String,
    to: String,
    amount: u64,
    currency: String,
    #[serde(rename = "type")]
    kind: String,
    ledger_seq: u64,
    release: Option<u64>,
    time_ms: u64,
    iati_transaction_type: u8,
    plan: Option<String>,
    tranche: Option<String>,
    entitlement: Option<String>,
}

impl From<Movement> for CsvRow {
    fn from(m: Movement) -> CsvRow {
        CsvRow {
            height: m.height,
            time: m.time,
            tx_id: m.tx.unwrap_or_default(),
            program: m.program,
            from: m.from,
            to: m.to,
            amount: m.amount,
            currency: m.currency,
            kind: m.kind,
            ledger_seq: m.ledger_seq,
            release: m.release,
            time_ms: m.time_ms,
            iati_transaction_type: m.iati_transaction_type,
            plan: m.plan,
            tranche: m.tranche,
            entitlement: m.entitlement,
        }
    }
}

/// The CSV header: one column per field of a movement.
pub const CSV_HEADER: &str = "height,time,tx_id,program,from,to,amount,currency,type,ledger_seq,\
     release,time_ms,iati_transaction_type,plan,tranche,entitlement";

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
            let bad = |e: csv::Error| AuditError::Invalid {
                what: "csv export".into(),
                reason: e.to_string(),
            };
            let mut w = csv::Writer::from_writer(&mut *out);
            let mut rows = 0usize;
            for e in s.movements() {
                w.serialize(CsvRow::from(movement(e))).map_err(bad)?;
                rows += 1;
            }
            if rows == 0 {
                // serde writes the header with the first row; an empty
                // ledger still gets one.
                w.write_record(CSV_HEADER.split(',')).map_err(bad)?;
            }
            w.flush().map_err(io)?;
        }
        Format::Iati => crate::iati::write(s, out)?,
    }
    out.flush().map_err(io)
}
