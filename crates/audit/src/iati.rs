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
use quick_xml::events::{BytesDecl, BytesText, Event};

use crate::report::Snapshot;
use crate::AuditError;

type Xml<'w> = quick_xml::Writer<&'w mut dyn Write>;
type XmlResult = std::io::Result<()>;

/// Text as XML 1.0 can carry it: the control characters it cannot hold at
/// all become spaces. (Escaping is quick-xml's.)
pub fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The IATI OrganisationType code for an organisation kind.
pub fn org_type(kind: OrgKind) -> &'static str {
    match kind {
        OrgKind::Bank | OrgKind::DevelopmentBank => "15",
        OrgKind::PovertyOffice | OrgKind::FinanceBureau | OrgKind::Auditor => "10",
        OrgKind::ImplementingUnit => "11",
    }
}

/// `<narrative>text</narrative>`.
fn narrative(w: &mut Xml<'_>, text: &str) -> XmlResult {
    w.create_element("narrative")
        .write_text_content(BytesText::new(&xml_text(text)))?;
    Ok(())
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
    fn party(&self, w: &mut Xml<'_>, tag: &str, p: &Party, program: &Program) -> XmlResult {
        match p {
            Party::Org(o) => self.org_el(w, tag, o, None),
            Party::Household(h) => {
                w.create_element(tag)
                    .write_inner_content(|w| narrative(w, &format!("Household {}", h.to_hex())))?;
                Ok(())
            }
            Party::Program(_) => self.org_el(w, tag, &program.owner, None),
        }
    }
    /// An organisation element (`ref`, an optional `role`, `type`) with its
    /// name.
    fn org_el(&self, w: &mut Xml<'_>, tag: &str, o: &OrgId, role: Option<&str>) -> XmlResult {
        let reference = xml_text(&self.org_ref(o));
        let mut el = w
            .create_element(tag)
            .with_attribute(("ref", reference.as_str()));
        if let Some(r) = role {
            el = el.with_attribute(("role", r));
        }
        if let Some(k) = self.org_kind(o) {
            el = el.with_attribute(("type", org_type(k)));
        }
        el.write_inner_content(|w| narrative(w, &self.org_name(o)))?;
        Ok(())
    }
}

fn value(w: &mut Xml<'_>, amount: Amount, negative: bool, p: &Program, date: &str) -> XmlResult {
    let sign = if negative && !amount.is_zero() {
        "-"
    } else {
        ""
    };
    let text = format!("{sign}{}", amount.to_decimal(u32::from(p.decimals)));
    w.create_element("value")
        .with_attribute(("currency", p.currency.as_str()))
        .with_attribute(("value-date", date))
        .write_text_content(BytesText::new(&text))?;
    Ok(())
}

fn date_el(w: &mut Xml<'_>, tag: &str, attrs: &[(&str, &str)]) -> XmlResult {
    w.create_element(tag)
        .with_attributes(attrs.iter().copied())
        .write_empty()?;
    Ok(())
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

fn activity(c: &Ctx<'_>, p: &Program, w: &mut Xml<'_>) -> XmlResult {
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
    let updated = xml_text(&s.as_of.time);
    w.create_element("iati-activity")
        .with_attribute(("last-updated-datetime", updated.as_str()))
        .with_attribute(("xml:lang", "en"))
        .with_attribute(("default-currency", p.currency.as_str()))
        .write_inner_content(|w| {
            w.create_element("iati-identifier")
                .write_text_content(BytesText::new(&xml_text(&id)))?;
            let owner_type = c.org_kind(&p.owner).map_or("10", org_type);
            let owner_ref = xml_text(&c.org_ref(&p.owner));
            w.create_element("reporting-org")
                .with_attribute(("ref", owner_ref.as_str()))
                .with_attribute(("type", owner_type))
                .write_inner_content(|w| narrative(w, &c.org_name(&p.owner)))?;
            w.create_element("title")
                .write_inner_content(|w| narrative(w, p.title.as_str()))?;
            let about = format!(
                "aidledger program {} covering region {}, replayed at height {} (block {}).",
                p.id,
                p.region_scope,
                s.as_of.height,
                s.as_of.block_hash.map(|h| h.to_hex()).unwrap_or_default()
            );
            w.create_element("description")
                .with_attribute(("type", "1"))
                .write_inner_content(|w| narrative(w, &about))?;
            participants(c, p, w)?;
            let status = match p.status {
                aidledger_contracts::model::ProgramStatus::Open => "2",
                aidledger_contracts::model::ProgramStatus::Closed => "4",
            };
            date_el(w, "activity-status", &[("code", status)])?;
            date_el(
                w,
                "activity-date",
                &[("type", "2"), ("iso-date", &start_date)],
            )?;
            w.create_element("budget")
                .with_attribute(("type", "1"))
                .with_attribute(("status", "2"))
                .write_inner_content(|w| {
                    date_el(w, "period-start", &[("iso-date", &start_date)])?;
                    date_el(w, "period-end", &[("iso-date", &end_date)])?;
                    value(w, p.budget_ceiling, false, p, &start_date)
                })?;
            planned(c, p, w)?;
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
                let reference = xml_text(&format!("{id}-ledger-{}", e.seq));
                let code = e.flow.iati_code().to_string();
                w.create_element("transaction")
                    .with_attribute(("ref", reference.as_str()))
                    .write_inner_content(|w| {
                        date_el(w, "transaction-type", &[("code", &code)])?;
                        date_el(w, "transaction-date", &[("iso-date", &date)])?;
                        value(w, e.amount, e.flow.is_reversal(), p, &date)?;
                        w.create_element("description").write_inner_content(|w| {
                            narrative(w, &format!("{what}; height {}; {cause}", e.height))
                        })?;
                        c.party(w, "provider-org", &e.from, p)?;
                        c.party(w, "receiver-org", &e.to, p)
                    })?;
            }
            Ok(())
        })?;
    Ok(())
}

/// The participating organisations: funders (role 1), the owner (3), and
/// applicants and tranche recipients (4), each once per role.
fn participants(c: &Ctx<'_>, p: &Program, w: &mut Xml<'_>) -> XmlResult {
    let mut seen: BTreeSet<(&str, OrgId)> = BTreeSet::new();
    let mut roles: Vec<(&str, OrgId)> = Vec::new();
    for f in &p.funding_orgs {
        roles.push(("1", f.clone()));
    }
    roles.push(("3", p.owner.clone()));
    for a in c.s.applications.iter().filter(|a| a.program == p.id) {
        roles.push(("4", a.applicant.clone()));
    }
    for plan in c.s.plans.iter().filter(|x| x.program == p.id) {
        for t in &plan.tranches {
            if let Recipient::Org(o) = &t.recipient {
                roles.push(("4", o.clone()));
            }
        }
    }
    for (role, o) in roles {
        if seen.insert((role, o.clone())) {
            c.org_el(w, "participating-org", &o, Some(role))?;
        }
    }
    Ok(())
}

/// One `planned-disbursement` per tranche not yet released.
fn planned(c: &Ctx<'_>, p: &Program, w: &mut Xml<'_>) -> XmlResult {
    let s = c.s;
    for plan in s.plans.iter().filter(|x| x.program == p.id) {
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
            w.create_element("planned-disbursement")
                .with_attribute(("type", "1"))
                .write_inner_content(|w| {
                    date_el(w, "period-start", &[("iso-date", &date)])?;
                    value(w, t.amount, false, p, &date)?;
                    c.org_el(w, "provider-org", &p.owner, None)?;
                    c.party(w, "receiver-org", &receiver, p)
                })?;
        }
    }
    Ok(())
}

/// Writes the whole document.
pub fn write(s: &Snapshot, out: &mut dyn Write) -> Result<(), AuditError> {
    if s.programs.is_empty() {
        return Err(AuditError::Invalid {
            what: "IATI export".into(),
            reason: "the chain has no programs, and an IATI file needs at least one activity"
                .into(),
        });
    }
    let c = Ctx { s };
    let mut w: Xml<'_> = quick_xml::Writer::new_with_indent(out, b' ', 2);
    let io = |source| AuditError::Io {
        path: "output".into(),
        source,
    };
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(io)?;
    let generated = xml_text(&s.as_of.time);
    w.create_element("iati-activities")
        .with_attribute(("version", "2.03"))
        .with_attribute(("generated-datetime", generated.as_str()))
        .write_inner_content(|w| {
            for p in &s.programs {
                activity(&c, p, w)?;
            }
            Ok(())
        })
        .map_err(io)?;
    w.get_mut().write_all(b"\n").map_err(io)
}
