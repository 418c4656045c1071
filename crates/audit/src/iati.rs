//! IATI 2.03 activity XML: one `iati-activity` per program.
//!
//! * `reporting-org` and the extending `participating-org` (role 3) are
//!   the program's owner; funding organisations are role 1; implementing
//!   organisations (applicants, and organisations receiving tranches) are
//!   role 4.
//! * `budget` is the program's budget ceiling.
//! * `planned-disbursement`: one per tranche not yet released, from the
//!   later of the report date and the earliest date its condition allows.
//! * `transaction`: one per money movement in the program's ledger, typed
//!   by the IATI TransactionType codelist: incoming funds (1) for deposits,
//!   outgoing commitment (2) for plans, disbursement (3) for releases,
//!   expenditure (4) for settlements. Reversals (a cancelled tranche,
//!   funds returned on close) carry the code of the flow they reverse and
//!   a negative value. Each transaction's `ref` is the ledger entry, and
//!   its description names the transaction id or release behind it.
//!
//! Values are decimals in the program's currency (the chain keeps integer
//! minor units; the program's `decimals` says where the point goes).
//! Organisation identifiers are `AIDLEDGER-<chain id>-<org>`: the
//! consortium has no IATI registration agency of its own.

use std::collections::BTreeSet;
use std::io::Write;

use aidledger_contracts::model::{OrgKind, Program, Recipient, TrancheStatus};
use aidledger_contracts::{Condition, MoneyFlow, Party};
use aidledger_types::{Amount, OrgId, Timestamp};

use crate::report::Snapshot;
use crate::AuditError;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The IATI OrganisationType code for an organisation kind.
pub fn org_type(kind: OrgKind) -> &'static str {
    match kind {
        OrgKind::Bank | OrgKind::DevelopmentBank => "15",
        OrgKind::PovertyOffice | OrgKind::FinanceBureau | OrgKind::Auditor => "10",
        OrgKind::ImplementingUnit => "11",
    }
}

struct Ctx<'a> {
    s: &'a Snapshot,
}

impl Ctx<'_> {
    fn org_ref(&self, o: &OrgId) -> String {
        format!("AIDLEDGER-{}-{}", self.s.as_of.chain_id, o)
    }
    fn org_name(&self, o: &OrgId) -> String {
        self.s
            .orgs
            .iter()
            .find(|x| &x.id == o)
            .map_or_else(|| o.to_string(), |x| x.name.to_string())
    }
    fn org_kind(&self, o: &OrgId) -> Option<OrgKind> {
        self.s.orgs.iter().find(|x| &x.id == o).map(|x| x.kind)
    }
    /// A `provider-org` or `receiver-org` element for a party.
    fn party(&self, tag: &str, p: &Party, program: &Program) -> String {
        match p {
            Party::Org(o) => self.org_el(tag, o),
            Party::Household(h) => format!(
                "<{tag}><narrative>Household {}</narrative></{tag}>",
                h.to_hex()
            ),
            Party::Program(_) => self.org_el(tag, &program.owner),
        }
    }
    fn org_el(&self, tag: &str, o: &OrgId) -> String {
        let ty = self
            .org_kind(o)
            .map(|k| format!(" type=\"{}\"", org_type(k)))
            .unwrap_or_default();
        format!(
            "<{tag} ref=\"{}\"{ty}><narrative>{}</narrative></{tag}>",
            esc(&self.org_ref(o)),
            esc(&self.org_name(o))
        )
    }
}

fn value(amount: Amount, negative: bool, p: &Program, date: &str) -> String {
    let sign = if negative && !amount.is_zero() {
        "-"
    } else {
        ""
    };
    format!(
        "<value currency=\"{}\" value-date=\"{date}\">{sign}{}</value>",
        esc(p.currency.as_str()),
        amount.to_decimal(u32::from(p.decimals))
    )
}

/// The earliest time a condition can hold, when it says so directly
/// (`after(t)`, possibly inside `all[...]`).
fn earliest(c: &Condition) -> Option<Timestamp> {
    match c {
        Condition::After(t) => Some(*t),
        Condition::All(v) => v.iter().filter_map(earliest).max(),
        _ => None,
    }
}

fn flow_label(f: MoneyFlow) -> &'static str {
    match f {
        MoneyFlow::IncomingFunds => "Deposit",
        MoneyFlow::Commitment => "Commitment of a disbursement plan",
        MoneyFlow::Disbursement => "Release",
        MoneyFlow::Expenditure => "Confirmed settlement",
        MoneyFlow::CommitmentCancelled => "Cancelled tranche",
        MoneyFlow::FundsReturned => "Funds returned on close",
    }
}

fn activity(c: &Ctx<'_>, p: &Program, out: &mut String) {
    let s = c.s;
    let ledger = s.ledgers.get(&p.id).map(Vec::as_slice).unwrap_or(&[]);
    let start = ledger
        .iter()
        .map(|e| e.time)
        .min()
        .unwrap_or(Timestamp(s.as_of.time_ms));
    let start_date = start.date_string();
    let end_date = start
        .saturating_add_ms(364 * aidledger_types::time::MS_PER_DAY)
        .date_string();
    let id = format!("{}-{}", c.org_ref(&p.owner), p.id);
    out.push_str(&format!(
        "  <iati-activity last-updated-datetime=\"{}\" xml:lang=\"en\" default-currency=\"{}\">\n",
        esc(&s.as_of.time),
        esc(p.currency.as_str())
    ));
    out.push_str(&format!(
        "    <iati-identifier>{}</iati-identifier>\n",
        esc(&id)
    ));
    let owner_type = c.org_kind(&p.owner).map_or("10", org_type);
    out.push_str(&format!(
        "    <reporting-org ref=\"{}\" type=\"{owner_type}\"><narrative>{}</narrative></reporting-org>\n",
        esc(&c.org_ref(&p.owner)),
        esc(&c.org_name(&p.owner))
    ));
    out.push_str(&format!(
        "    <title><narrative>{}</narrative></title>\n",
        esc(p.title.as_str())
    ));
    out.push_str(&format!(
        "    <description type=\"1\"><narrative>aidledger program {} covering region {}, replayed at height {} (block {}).</narrative></description>\n",
        esc(p.id.as_str()),
        esc(p.region_scope.as_str()),
        s.as_of.height,
        s.as_of.block_hash.map(|h| h.to_hex()).unwrap_or_default()
    ));
    let mut seen: BTreeSet<(String, OrgId)> = BTreeSet::new();
    let mut part = |role: &str, o: &OrgId, out: &mut String| {
        if seen.insert((role.to_string(), o.clone())) {
            let ty = c
                .org_kind(o)
                .map(|k| format!(" type=\"{}\"", org_type(k)))
                .unwrap_or_default();
            out.push_str(&format!(
                "    <participating-org ref=\"{}\" role=\"{role}\"{ty}><narrative>{}</narrative></participating-org>\n",
                esc(&c.org_ref(o)),
                esc(&c.org_name(o))
            ));
        }
    };
    for f in &p.funding_orgs {
        part("1", f, out);
    }
    part("3", &p.owner, out);
    for a in s.applications.iter().filter(|a| a.program == p.id) {
        part("4", &a.applicant, out);
    }
    let plans: Vec<_> = s.plans.iter().filter(|x| x.program == p.id).collect();
    for plan in &plans {
        for t in &plan.tranches {
            if let Recipient::Org(o) = &t.recipient {
                part("4", o, out);
            }
        }
    }
    let status = match p.status {
        aidledger_contracts::model::ProgramStatus::Open => "2",
        aidledger_contracts::model::ProgramStatus::Closed => "4",
    };
    out.push_str(&format!("    <activity-status code=\"{status}\"/>\n"));
    out.push_str(&format!(
        "    <activity-date type=\"2\" iso-date=\"{start_date}\"/>\n"
    ));
    out.push_str(&format!(
        "    <budget type=\"1\" status=\"2\"><period-start iso-date=\"{start_date}\"/><period-end iso-date=\"{end_date}\"/>{}</budget>\n",
        value(p.budget_ceiling, false, p, &start_date)
    ));
    for plan in &plans {
        for t in &plan.tranches {
            if !matches!(t.status, TrancheStatus::Pending { .. }) {
                continue;
            }
            let when =
                earliest(&t.condition).map_or(s.as_of.time_ms, |e| e.ms().max(s.as_of.time_ms));
            let date = Timestamp(when).date_string();
            let receiver = match &t.recipient {
                Recipient::Org(o) => Party::Org(o.clone()),
                Recipient::Household(h) => Party::Household(*h),
            };
            out.push_str(&format!(
                "    <planned-disbursement type=\"1\"><period-start iso-date=\"{date}\"/>{}{}{}</planned-disbursement>\n",
                value(t.amount, false, p, &date),
                c.org_el("provider-org", &p.owner),
                c.party("receiver-org", &receiver, p)
            ));
        }
    }
    for e in ledger {
        let date = e.time.date_string();
        let cause = match (e.tx, e.release) {
            (Some(tx), _) => format!("transaction {}", tx.to_hex()),
            (None, Some(r)) => format!("release {r} at the end of block {}", e.height),
            (None, None) => format!("end of block {}", e.height),
        };
        let mut what = flow_label(e.flow).to_string();
        if let (Some(plan), Some(tr)) = (&e.plan, &e.tranche) {
            what.push_str(&format!(" (plan {plan}, tranche {tr})"));
        }
        if let (Some(ent), Some(per)) = (&e.entitlement, e.period) {
            what.push_str(&format!(" (entitlement {ent}, period {per})"));
        }
        out.push_str(&format!(
            "    <transaction ref=\"{}\"><transaction-type code=\"{}\"/><transaction-date iso-date=\"{date}\"/>{}<description><narrative>{}; height {}; {}</narrative></description>{}{}</transaction>\n",
            esc(&format!("{id}-ledger-{}", e.seq)),
            e.flow.iati_code(),
            value(e.amount, e.flow.is_reversal(), p, &date),
            esc(&what),
            e.height,
            esc(&cause),
            c.party("provider-org", &e.from, p),
            c.party("receiver-org", &e.to, p)
        ));
    }
    out.push_str("  </iati-activity>\n");
}

/// Writes the whole document.
pub fn write(s: &Snapshot, w: &mut dyn Write) -> Result<(), AuditError> {
    if s.programs.is_empty() {
        return Err(AuditError::Invalid {
            what: "IATI export".into(),
            reason: "the chain has no programs, and an IATI file needs at least one activity"
                .into(),
        });
    }
    let c = Ctx { s };
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<iati-activities version=\"2.03\" generated-datetime=\"{}\">\n",
        esc(&s.as_of.time)
    ));
    for p in &s.programs {
        activity(&c, p, &mut out);
    }
    out.push_str("</iati-activities>\n");
    w.write_all(out.as_bytes())
        .map_err(|source| AuditError::Io {
            path: "output".into(),
            source,
        })
}
