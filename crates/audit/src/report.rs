//! The auditor's report, built from a state (a node's stored state, or the
//! state a replay computed) and, for transaction counts per organisation,
//! the blocks.
//!
//! Every figure is traceable: each program's amounts come with the money
//! ledger entries behind them (sequence numbers, heights, transaction ids,
//! release ids), and the ledger itself is derived from transactions by the
//! contracts (`ledger/<program>/<seq>` in state, one entry per money
//! movement). The report also recomputes each balance from the ledger and
//! says whether they agree.

use std::collections::{BTreeMap, BTreeSet};

use aidledger_contracts::model::{
    Anomaly, AnomalyKind, AnomalyStatus, Application, Household, Org, Plan, Program, Recipient,
    Release, ReleaseSource, Subject,
};
use aidledger_contracts::{keys, Attestation, MoneyEvent, MoneyFlow, Params, Party};
use aidledger_execution::StateRead;
use aidledger_types::{codec, Amount, Hash, OrgId, Slug, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::state::scan_all;
use crate::AuditError;

/// Where the report's state stands: the block it is the state after.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AsOf {
    pub chain_id: String,
    pub height: u64,
    pub block_hash: Option<Hash>,
    pub state_root: Hash,
    /// The block's timestamp (ms); the clock for "overdue".
    pub time_ms: u64,
    pub time: String,
}

/// The money behind one figure.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Figure {
    /// Sum of the movements, in minor units.
    pub amount: u64,
    /// Number of ledger entries.
    pub movements: u64,
    /// Their sequence numbers in the program's ledger.
    pub ledger_seqs: Vec<u64>,
    /// The distinct transactions that caused them (end-of-block releases
    /// have none; see `releases`).
    pub txs: BTreeSet<Hash>,
    /// The releases involved, if any.
    pub releases: Vec<u64>,
}

impl Figure {
    fn add(&mut self, e: &MoneyEvent) -> Result<(), AuditError> {
        self.amount = self
            .amount
            .checked_add(e.amount.minor())
            .ok_or_else(|| invalid("ledger", "amounts overflow"))?;
        self.movements += 1;
        self.ledger_seqs.push(e.seq);
        if let Some(t) = e.tx {
            self.txs.insert(t);
        }
        if let Some(r) = e.release {
            self.releases.push(r);
        }
        Ok(())
    }
}

/// The ledger entries behind each of a program's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProgramSources {
    pub deposited: Figure,
    pub committed: Figure,
    pub commitments_cancelled: Figure,
    pub released: Figure,
    /// Releases of plan tranches (which leave `committed`).
    pub released_from_tranches: Figure,
    pub settled: Figure,
    pub returned: Figure,
    pub overdue_releases: Vec<u64>,
    pub anomalies_open: Vec<u64>,
    pub anomalies_resolved: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProgramReport {
    pub id: String,
    pub title: String,
    pub currency: String,
    pub decimals: u8,
    pub owner: String,
    pub funding_orgs: Vec<String>,
    pub region_scope: String,
    pub status: String,
    pub budget_ceiling: u64,
    pub created_height: u64,
    /// Balances as the contracts keep them, in minor units.
    pub deposited: u64,
    pub available: u64,
    pub committed: u64,
    pub released: u64,
    pub settled: u64,
    pub returned: u64,
    /// Releases without a confirmed settlement past the deadline.
    pub overdue_settlements: u64,
    pub overdue_amount: u64,
    pub anomalies_open: u64,
    pub anomalies_resolved: u64,
    pub plans: u64,
    pub applications: u64,
    /// deposited = available + committed + released + returned and
    /// settled <= released.
    pub conserved: bool,
    /// Every balance equals the one recomputed from the money ledger.
    pub ledger_consistent: bool,
    /// Which balances disagree with the ledger, if any.
    pub ledger_differences: Vec<String>,
    pub sources: ProgramSources,
}

/// Totals for one region code and currency.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RegionReport {
    pub region: String,
    pub currency: String,
    /// Deposits into programs whose scope is this region.
    pub deposited: u64,
    pub released: u64,
    pub settled: u64,
    pub releases: Vec<u64>,
    pub households_registered: u64,
    pub households_reached: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TxCounts {
    pub signed: u64,
    pub applied: u64,
    pub rejected: u64,
    /// Applied transactions by kind.
    pub by_kind: BTreeMap<String, u64>,
}

/// Money amounts per currency.
pub type PerCurrency = BTreeMap<String, u64>;

#[derive(Clone, Debug, Default, Serialize)]
pub struct OrgReport {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    /// From the blocks; absent when the report had no blocks to read.
    pub txs: Option<TxCounts>,
    pub programs_owned: Vec<String>,
    pub programs_funded: Vec<String>,
    pub deposited: PerCurrency,
    pub received: PerCurrency,
    pub settled: PerCurrency,
    pub applications_submitted: u64,
    pub application_votes: u64,
    pub attestations: u64,
    pub households_registered: u64,
    pub anomalies_resolved: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HouseholdReach {
    pub id: Hash,
    pub region: String,
    pub releases: Vec<u64>,
    pub received: PerCurrency,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HouseholdsReport {
    pub registered: u64,
    pub active: u64,
    /// Households that received at least one release.
    pub reached: u64,
    pub reached_list: Vec<HouseholdReach>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AnomalyTotals {
    pub open: u64,
    pub resolved: u64,
    pub by_code: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub as_of: AsOf,
    pub programs: Vec<ProgramReport>,
    pub regions: Vec<RegionReport>,
    pub organisations: Vec<OrgReport>,
    pub households: HouseholdsReport,
    pub anomalies: AnomalyTotals,
}

fn invalid(what: &str, reason: impl Into<String>) -> AuditError {
    AuditError::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// Every record under `prefix`, decoded.
pub fn records<T: Serialize + DeserializeOwned>(
    state: &dyn StateRead,
    prefix: &[u8],
) -> Result<Vec<T>, AuditError> {
    scan_all(state, prefix)?
        .into_iter()
        .map(|(k, v)| {
            codec::decode(&v).map_err(|e| {
                invalid(
                    &format!("state key {}", crate::failure::show_key(&k)),
                    e.to_string(),
                )
            })
        })
        .collect()
}

pub(crate) fn record<T: Serialize + DeserializeOwned>(
    state: &dyn StateRead,
    key: &[u8],
) -> Result<Option<T>, AuditError> {
    state
        .get(key)?
        .map(|v| {
            codec::decode(&v).map_err(|e| {
                invalid(
                    &format!("state key {}", crate::failure::show_key(key)),
                    e.to_string(),
                )
            })
        })
        .transpose()
}

/// Everything the report and the exports read from state, loaded once.
pub struct Snapshot {
    pub as_of: AsOf,
    pub params: Params,
    pub orgs: Vec<Org>,
    pub programs: Vec<Program>,
    pub ledgers: BTreeMap<Slug, Vec<MoneyEvent>>,
    pub applications: Vec<Application>,
    pub plans: Vec<Plan>,
    pub releases: Vec<Release>,
    pub households: Vec<Household>,
    pub anomalies: Vec<Anomaly>,
    pub attestations: Vec<Attestation>,
}

impl Snapshot {
    pub fn load(state: &dyn StateRead, as_of: AsOf) -> Result<Snapshot, AuditError> {
        let params: Params = record(state, keys::PARAMS)?
            .ok_or_else(|| invalid("state", "has no consortium parameters"))?;
        let programs: Vec<Program> = records(state, keys::PROGRAM_PREFIX)?;
        let mut ledgers = BTreeMap::new();
        for p in &programs {
            ledgers.insert(p.id.clone(), records(state, &keys::ledger_prefix(&p.id))?);
        }
        // State keys put both in id order already (big-endian release
        // ids, household hash bytes); sorting a sorted list is one pass,
        // and it makes the binary searches below independent of the key
        // layout.
        let mut releases: Vec<Release> = records(state, keys::RELEASE_PREFIX)?;
        releases.sort_by_key(|r| r.id);
        let mut households: Vec<Household> = records(state, keys::HOUSEHOLD_PREFIX)?;
        households.sort_by_key(|h| h.id);
        Ok(Snapshot {
            as_of,
            params,
            orgs: records(state, keys::ORG_PREFIX)?,
            programs,
            ledgers,
            applications: records(state, keys::APPLICATION_PREFIX)?,
            plans: records(state, keys::PLAN_PREFIX)?,
            releases,
            households,
            anomalies: records(state, keys::ANOMALY_PREFIX)?,
            attestations: records(state, keys::ATTESTATION_PREFIX)?,
        })
    }

    /// Every money movement of every program, by height, then program and
    /// ledger sequence.
    pub fn movements(&self) -> Vec<&MoneyEvent> {
        let mut all: Vec<&MoneyEvent> = self.ledgers.values().flatten().collect();
        all.sort_by(|a, b| {
            (a.height, a.program.as_str(), a.seq).cmp(&(b.height, b.program.as_str(), b.seq))
        });
        all
    }

    pub fn program(&self, id: &Slug) -> Option<&Program> {
        self.programs.iter().find(|p| &p.id == id)
    }

    fn release(&self, id: u64) -> Option<&Release> {
        let i = self.releases.binary_search_by_key(&id, |r| r.id).ok()?;
        self.releases.get(i)
    }

    fn household(&self, id: &Hash) -> Option<&Household> {
        let i = self.households.binary_search_by_key(id, |h| h.id).ok()?;
        self.households.get(i)
    }

    /// A release is overdue when it has no confirmed settlement and either
    /// the contracts flagged it or the deadline has passed at `as_of`.
    pub fn is_overdue(&self, r: &Release) -> bool {
        !r.is_settled()
            && (r.overdue_flagged
                || self.as_of.time_ms.saturating_sub(r.time.ms())
                    > self.params.settlement_deadline_ms)
    }

    /// The programs an anomaly concerns.
    pub fn anomaly_programs(&self, a: &Anomaly) -> BTreeSet<Slug> {
        let mut out = BTreeSet::new();
        let mut by_release = |id: u64| {
            if let Some(r) = self.release(id) {
                out.insert(r.program.clone());
            }
        };
        match &a.subject {
            Subject::Release(r) => by_release(*r),
            Subject::Application(app) => {
                if let Some(x) = self.applications.iter().find(|x| &x.id == app) {
                    out.insert(x.program.clone());
                }
            }
            Subject::Household(h) => {
                for r in &self.releases {
                    if r.recipient == Recipient::Household(*h) {
                        out.insert(r.program.clone());
                    }
                }
            }
        }
        match &a.kind {
            AnomalyKind::IneligibleRecipient { program, .. } => {
                out.insert(program.clone());
            }
            AnomalyKind::SettlementMismatch { release, .. }
            | AnomalyKind::SettlementOverdue { release, .. } => {
                if let Some(r) = self.release(*release) {
                    out.insert(r.program.clone());
                }
            }
            _ => {}
        }
        out
    }

    /// The region a release's money went to: the household's region, else
    /// the application's, else the program's scope.
    pub fn release_region(&self, r: &Release) -> String {
        if let Recipient::Household(h) = &r.recipient {
            if let Some(hh) = self.household(h) {
                return hh.region.to_string();
            }
        }
        if let ReleaseSource::Tranche { plan, .. } = &r.source {
            if let Some(app) = self
                .plans
                .iter()
                .find(|p| &p.id == plan)
                .and_then(|p| p.application.as_ref())
                .and_then(|a| self.applications.iter().find(|x| &x.id == a))
            {
                return app.region.to_string();
            }
        }
        self.program(&r.program)
            .map(|p| p.region_scope.to_string())
            .unwrap_or_default()
    }
}

/// An enum's serde name (`incoming-funds`, `conflicting-attestation`): the
/// variant for struct variants. Shared with the CLI's printers.
pub fn kebab<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(m)) => m.keys().next().cloned().unwrap_or_default(),
        Ok(other) => other.to_string(),
        Err(_) => String::from("?"),
    }
}

fn region_entry(
    map: &mut BTreeMap<(String, String), RegionReport>,
    r: String,
    c: String,
) -> &mut RegionReport {
    map.entry((r.clone(), c.clone()))
        .or_insert_with(|| RegionReport {
            region: r,
            currency: c,
            ..RegionReport::default()
        })
}

/// Adds `amount` to a report total; a total beyond u64 is an error, never
/// a silently saturated figure.
fn total(sum: &mut u64, amount: u64, what: &'static str) -> Result<(), AuditError> {
    *sum = sum
        .checked_add(amount)
        .ok_or_else(|| invalid(what, "the total overflows 64 bits"))?;
    Ok(())
}

fn add_to(map: &mut PerCurrency, currency: &str, amount: Amount) -> Result<(), AuditError> {
    let e = map.entry(currency.to_string()).or_insert(0);
    total(e, amount.minor(), "currency totals")
}

fn program_report(s: &Snapshot, p: &Program) -> Result<ProgramReport, AuditError> {
    let mut src = ProgramSources::default();
    for e in s.ledgers.get(&p.id).map(Vec::as_slice).unwrap_or(&[]) {
        match e.flow {
            MoneyFlow::IncomingFunds => src.deposited.add(e)?,
            MoneyFlow::Commitment => src.committed.add(e)?,
            MoneyFlow::CommitmentCancelled => src.commitments_cancelled.add(e)?,
            MoneyFlow::Disbursement => {
                src.released.add(e)?;
                if e.tranche.is_some() {
                    src.released_from_tranches.add(e)?;
                }
            }
            MoneyFlow::Expenditure => src.settled.add(e)?,
            MoneyFlow::FundsReturned => src.returned.add(e)?,
        }
    }
    let mut overdue_amount = 0u64;
    for r in s.releases.iter().filter(|r| r.program == p.id) {
        if s.is_overdue(r) {
            src.overdue_releases.push(r.id);
            total(&mut overdue_amount, r.amount.minor(), "overdue amount")?;
        }
    }
    for a in &s.anomalies {
        if s.anomaly_programs(a).contains(&p.id) {
            match a.status {
                AnomalyStatus::Open => src.anomalies_open.push(a.id),
                AnomalyStatus::Resolved { .. } => src.anomalies_resolved.push(a.id),
            }
        }
    }
    let b = &p.balances;
    let committed_l = src
        .committed
        .amount
        .checked_sub(src.commitments_cancelled.amount)
        .and_then(|x| x.checked_sub(src.released_from_tranches.amount));
    let available_l = src
        .deposited
        .amount
        .checked_sub(committed_l.unwrap_or(u64::MAX))
        .and_then(|x| x.checked_sub(src.released.amount))
        .and_then(|x| x.checked_sub(src.returned.amount));
    let mut diffs = Vec::new();
    let checks: [(&str, u64, Option<u64>); 6] = [
        ("deposited", b.deposited.minor(), Some(src.deposited.amount)),
        ("available", b.available.minor(), available_l),
        ("committed", b.committed.minor(), committed_l),
        ("released", b.released.minor(), Some(src.released.amount)),
        ("settled", b.settled.minor(), Some(src.settled.amount)),
        ("returned", b.returned.minor(), Some(src.returned.amount)),
    ];
    for (name, kept, from_ledger) in checks {
        if Some(kept) != from_ledger {
            diffs.push(format!(
                "{name}: balance {kept}, ledger {}",
                from_ledger.map_or("overflow".to_string(), |x| x.to_string())
            ));
        }
    }
    Ok(ProgramReport {
        id: p.id.to_string(),
        title: p.title.to_string(),
        currency: p.currency.to_string(),
        decimals: p.decimals,
        owner: p.owner.to_string(),
        funding_orgs: p.funding_orgs.iter().map(|o| o.to_string()).collect(),
        region_scope: p.region_scope.to_string(),
        status: kebab(&p.status),
        budget_ceiling: p.budget_ceiling.minor(),
        created_height: p.created_height,
        deposited: b.deposited.minor(),
        available: b.available.minor(),
        committed: b.committed.minor(),
        released: b.released.minor(),
        settled: b.settled.minor(),
        returned: b.returned.minor(),
        overdue_settlements: src.overdue_releases.len() as u64,
        overdue_amount,
        anomalies_open: src.anomalies_open.len() as u64,
        anomalies_resolved: src.anomalies_resolved.len() as u64,
        plans: s.plans.iter().filter(|x| x.program == p.id).count() as u64,
        applications: s.applications.iter().filter(|x| x.program == p.id).count() as u64,
        conserved: b.conserved(),
        ledger_consistent: diffs.is_empty(),
        ledger_differences: diffs,
        sources: src,
    })
}

/// Builds the report. `activity` is the per-organisation transaction
/// counts from [`tx_activity`], when the blocks were available.
pub fn build(
    s: &Snapshot,
    activity: Option<&BTreeMap<OrgId, TxCounts>>,
) -> Result<Report, AuditError> {
    let programs = s
        .programs
        .iter()
        .map(|p| program_report(s, p))
        .collect::<Result<Vec<_>, _>>()?;
    let currency_of = |id: &Slug| {
        s.program(id)
            .map(|p| p.currency.to_string())
            .unwrap_or_default()
    };

    // Regions.
    let mut regions: BTreeMap<(String, String), RegionReport> = BTreeMap::new();
    let mut reached_in: BTreeMap<String, BTreeSet<Hash>> = BTreeMap::new();
    for p in &s.programs {
        let e = region_entry(
            &mut regions,
            p.region_scope.to_string(),
            p.currency.to_string(),
        );
        total(
            &mut e.deposited,
            p.balances.deposited.minor(),
            "region totals",
        )?;
    }
    for r in &s.releases {
        let reg = s.release_region(r);
        let e = region_entry(&mut regions, reg.clone(), currency_of(&r.program));
        total(&mut e.released, r.amount.minor(), "region totals")?;
        if r.is_settled() {
            total(&mut e.settled, r.amount.minor(), "region totals")?;
        }
        e.releases.push(r.id);
        if let Recipient::Household(h) = r.recipient {
            reached_in.entry(reg).or_default().insert(h);
        }
    }
    let mut registered_in: BTreeMap<String, u64> = BTreeMap::new();
    for h in &s.households {
        *registered_in.entry(h.region.to_string()).or_default() += 1;
    }
    // Household counts do not depend on currency: they go on every row of
    // the region, and a region with households but no money gets a row of
    // its own with an empty currency.
    for (reg, n) in &registered_in {
        if !regions.keys().any(|(r, _)| r == reg) {
            region_entry(&mut regions, reg.clone(), String::new());
        }
        for ((r, _), e) in regions.iter_mut() {
            if r == reg {
                e.households_registered = *n;
            }
        }
    }
    for ((r, _), e) in regions.iter_mut() {
        e.households_reached = reached_in.get(r).map_or(0, |x| x.len() as u64);
    }

    // Organisations.
    let mut orgs: BTreeMap<OrgId, OrgReport> = s
        .orgs
        .iter()
        .map(|o| {
            (
                o.id.clone(),
                OrgReport {
                    id: o.id.to_string(),
                    name: o.name.to_string(),
                    kind: kebab(&o.kind),
                    status: kebab(&o.status),
                    txs: activity.map(|a| a.get(&o.id).cloned().unwrap_or_default()),
                    ..OrgReport::default()
                },
            )
        })
        .collect();
    for p in &s.programs {
        if let Some(o) = orgs.get_mut(&p.owner) {
            o.programs_owned.push(p.id.to_string());
        }
        for f in &p.funding_orgs {
            if let Some(o) = orgs.get_mut(f) {
                o.programs_funded.push(p.id.to_string());
            }
        }
    }
    for e in s.movements() {
        let c = e.currency.to_string();
        match (e.flow, &e.from, &e.to) {
            (MoneyFlow::IncomingFunds, Party::Org(o), _) => {
                if let Some(r) = orgs.get_mut(o) {
                    add_to(&mut r.deposited, &c, e.amount)?;
                }
            }
            (MoneyFlow::Disbursement, _, Party::Org(o)) => {
                if let Some(r) = orgs.get_mut(o) {
                    add_to(&mut r.received, &c, e.amount)?;
                }
            }
            (MoneyFlow::Expenditure, Party::Org(o), _) => {
                if let Some(r) = orgs.get_mut(o) {
                    add_to(&mut r.settled, &c, e.amount)?;
                }
            }
            _ => {}
        }
    }
    for a in &s.applications {
        if let Some(r) = orgs.get_mut(&a.applicant) {
            r.applications_submitted += 1;
        }
        for voter in a.votes.keys() {
            if let Some(r) = orgs.get_mut(voter) {
                r.application_votes += 1;
            }
        }
    }
    for a in &s.attestations {
        if let Some(r) = orgs.get_mut(&a.org) {
            r.attestations += 1;
        }
    }
    for h in &s.households {
        if let Some(r) = orgs.get_mut(&h.registered_by) {
            r.households_registered += 1;
        }
    }
    let mut anomalies = AnomalyTotals::default();
    for a in &s.anomalies {
        *anomalies
            .by_code
            .entry(a.kind.code().to_string())
            .or_default() += 1;
        match &a.status {
            AnomalyStatus::Open => anomalies.open += 1,
            AnomalyStatus::Resolved { org, .. } => {
                anomalies.resolved += 1;
                if let Some(r) = orgs.get_mut(org) {
                    r.anomalies_resolved += 1;
                }
            }
        }
    }

    // Households.
    let mut reached: BTreeMap<Hash, HouseholdReach> = BTreeMap::new();
    for r in &s.releases {
        if let Recipient::Household(h) = r.recipient {
            let e = reached.entry(h).or_insert_with(|| HouseholdReach {
                id: h,
                region: s
                    .household(&h)
                    .map(|x| x.region.to_string())
                    .unwrap_or_default(),
                ..HouseholdReach::default()
            });
            e.releases.push(r.id);
            add_to(&mut e.received, &currency_of(&r.program), r.amount)?;
        }
    }
    let households = HouseholdsReport {
        registered: s.households.len() as u64,
        active: s
            .households
            .iter()
            .filter(|h| h.status == aidledger_contracts::model::HouseholdStatus::Active)
            .count() as u64,
        reached: reached.len() as u64,
        reached_list: reached.into_values().collect(),
    };

    Ok(Report {
        as_of: s.as_of.clone(),
        programs,
        regions: regions.into_values().collect(),
        organisations: orgs.into_values().collect(),
        households,
        anomalies,
    })
}

/// Counts transactions per signing organisation, block by block, from
/// the blocks and their receipts' applied flags.
#[derive(Default)]
pub struct ActivityCounter {
    counts: BTreeMap<OrgId, TxCounts>,
    orgs: BTreeMap<aidledger_types::PublicKey, Option<OrgId>>,
}

impl ActivityCounter {
    /// `applied` has one flag per transaction; `org_of` maps a signer to
    /// its organisation (signers it cannot map are not counted).
    pub fn add_block(
        &mut self,
        block: &aidledger_types::Block,
        applied: &[bool],
        org_of: &dyn Fn(&aidledger_types::PublicKey) -> Option<OrgId>,
    ) {
        for (tx, ok) in block.txs.iter().zip(applied) {
            let signer = tx.body.signer;
            let org = self
                .orgs
                .entry(signer)
                .or_insert_with(|| org_of(&signer))
                .clone();
            let Some(org) = org else { continue };
            let c = self.counts.entry(org).or_default();
            c.signed += 1;
            if *ok {
                c.applied += 1;
                *c.by_kind.entry(kebab(&tx.body.kind)).or_default() += 1;
            } else {
                c.rejected += 1;
            }
        }
    }

    pub fn finish(self) -> BTreeMap<OrgId, TxCounts> {
        self.counts
    }
}

/// The snapshot of a store's committed state, as of its head. On a store
/// that a running node writes to, a commit may land while it reads; a
/// node that serves reports reads through [`point_in_time_snapshot`].
pub fn store_snapshot(store: &dyn aidledger_storage::Store) -> Result<Snapshot, AuditError> {
    let head = store.head()?;
    let head_block = match head {
        Some(h) => Some(store.block(h.height)?),
        None => None,
    };
    let root = store.accumulator()?.root();
    snapshot_of(store, head, head_block, root, &crate::StoreState(store))
}

/// The snapshot of a RocksDB store's committed state as of one moment:
/// head, state and root are read from one point-in-time view, so the
/// figures of a report all come from the same block while the node goes
/// on committing.
pub fn point_in_time_snapshot(
    store: &aidledger_storage::RocksStore,
) -> Result<Snapshot, AuditError> {
    let view = store.point_in_time();
    let head = view.head()?;
    let head_block = match head {
        Some(h) => Some(view.block(h.height)?),
        None => None,
    };
    let root = view.accumulator()?.root();
    snapshot_of(
        store,
        head,
        head_block,
        root,
        &crate::state::ViewState(&view),
    )
}

/// A snapshot from what one consistent read gave: the head, its block (if
/// any: `Some(None)` is a missing head block), the state root, and the
/// state. The genesis, which never changes, is read from `store`.
fn snapshot_of(
    store: &dyn aidledger_storage::Store,
    head: Option<aidledger_storage::Head>,
    head_block: Option<Option<aidledger_types::Block>>,
    state_root: Hash,
    state: &dyn StateRead,
) -> Result<Snapshot, AuditError> {
    let (_, gbytes) = store
        .genesis()?
        .ok_or_else(|| invalid("store", "holds no genesis"))?;
    let genesis: aidledger_contracts::Genesis =
        codec::decode_with_limit(&gbytes, crate::chainfile::GENESIS_MAX_BYTES)
            .map_err(|e| invalid("stored genesis", e.to_string()))?;
    let time_ms = match (head, head_block) {
        (Some(h), Some(b)) => b
            .ok_or_else(|| invalid("store", format!("head block {} is missing", h.height)))?
            .header
            .timestamp
            .ms(),
        _ => genesis.genesis_time.ms(),
    };
    let as_of = AsOf {
        chain_id: genesis.chain_id.to_string(),
        height: head.map_or(0, |h| h.height),
        block_hash: head.map(|h| h.block_hash),
        state_root,
        time_ms,
        time: iso(time_ms),
    };
    Snapshot::load(state, as_of)
}

/// Transactions per organisation, from every stored block and the
/// receipts in the transaction index.
pub fn store_activity(
    store: &dyn aidledger_storage::Store,
) -> Result<BTreeMap<OrgId, TxCounts>, AuditError> {
    let head = store.head()?.map_or(0, |h| h.height);
    let state = crate::StoreState(store);
    // A storage or decoding failure must not pass for "no organisation":
    // the first one is kept and ends the report.
    let lookup_error: std::cell::RefCell<Option<AuditError>> = std::cell::RefCell::new(None);
    let org_of = |k: &aidledger_types::PublicKey| -> Option<OrgId> {
        let found = state
            .get(&keys::account(k))
            .map_err(|e| invalid("state", format!("account {k}: {e}")))
            .and_then(|b| match b {
                None => Ok(None),
                Some(bytes) => codec::decode::<aidledger_contracts::Account>(&bytes)
                    .map(|a| Some(a.org))
                    .map_err(|e| invalid("state", format!("account {k}: {e}"))),
            });
        match found {
            Ok(o) => o,
            Err(e) => {
                lookup_error.borrow_mut().get_or_insert(e);
                None
            }
        }
    };
    let mut counter = ActivityCounter::default();
    for h in 1..=head {
        let b = store
            .block(h)?
            .ok_or_else(|| invalid("store", format!("block {h} is missing")))?;
        let ids: Vec<aidledger_types::Hash> = b.txs.iter().map(|tx| tx.id()).collect();
        let mut applied = Vec::with_capacity(b.txs.len());
        for (i, found) in store.tx_locations(&ids).into_iter().enumerate() {
            let (_, r) = found?.ok_or_else(|| {
                invalid(
                    "tx_index",
                    format!("tx {i} of height {h} is missing from the transaction index"),
                )
            })?;
            let receipt = codec::decode::<aidledger_contracts::Receipt>(&r)
                .map_err(|e| invalid("receipts", format!("height {h}: {e}")))?;
            applied.push(receipt.is_applied());
        }
        counter.add_block(&b, &applied, &org_of);
        if let Some(e) = lookup_error.borrow_mut().take() {
            return Err(e);
        }
    }
    Ok(counter.finish())
}

/// `Timestamp` as an ISO 8601 string, for `AsOf`.
pub fn iso(ms: u64) -> String {
    Timestamp(ms).iso8601()
}

#[cfg(test)]
mod total_tests {
    use super::*;

    #[test]
    fn a_total_beyond_64_bits_is_an_error_not_a_saturated_figure() {
        let mut sum = u64::MAX - 1;
        total(&mut sum, 1, "region totals").unwrap();
        assert_eq!(sum, u64::MAX);
        let e = total(&mut sum, 1, "region totals").unwrap_err().to_string();
        assert!(e.contains("overflows"), "{e}");
        let mut per = PerCurrency::new();
        add_to(&mut per, "CNY", Amount(u64::MAX)).unwrap();
        assert!(add_to(&mut per, "CNY", Amount(1)).is_err());
    }
}

/// A county's or township's report (`aidledger audit report --region R`):
/// the rows of every region code `R` covers (`R` and the codes under it),
/// their totals per currency, and the households reached there with what
/// each received.
#[derive(Clone, Debug, Serialize)]
pub struct RegionalReport {
    pub as_of: AsOf,
    pub region: String,
    pub rows: Vec<RegionReport>,
    /// One per currency: the sums of the rows.
    pub totals: Vec<RegionTotal>,
    /// Households registered in the region, over every code it covers.
    pub households_registered: u64,
    /// Distinct households in the region that received a release.
    pub households_reached: u64,
    pub households: Vec<HouseholdReach>,
}

/// The sums of a regional report's rows in one currency.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegionTotal {
    pub currency: String,
    pub deposited: u64,
    pub released: u64,
    pub settled: u64,
    pub releases: u64,
}

/// Narrows a whole report to the region codes `region` covers.
pub fn regional(
    r: &Report,
    region: &aidledger_types::RegionCode,
) -> Result<RegionalReport, AuditError> {
    let covers =
        |code: &str| aidledger_types::RegionCode::new(code).is_ok_and(|c| region.covers(&c));
    let rows: Vec<RegionReport> = r
        .regions
        .iter()
        .filter(|g| covers(&g.region))
        .cloned()
        .collect();
    let mut totals: BTreeMap<String, RegionTotal> = BTreeMap::new();
    let mut registered: BTreeMap<&str, u64> = BTreeMap::new();
    for g in &rows {
        // Household counts repeat on each currency's row of a region.
        registered.insert(&g.region, g.households_registered);
        if g.currency.is_empty() {
            continue;
        }
        let t = totals
            .entry(g.currency.clone())
            .or_insert_with(|| RegionTotal {
                currency: g.currency.clone(),
                ..RegionTotal::default()
            });
        total(&mut t.deposited, g.deposited, "regional totals")?;
        total(&mut t.released, g.released, "regional totals")?;
        total(&mut t.settled, g.settled, "regional totals")?;
        total(&mut t.releases, g.releases.len() as u64, "regional totals")?;
    }
    let households: Vec<HouseholdReach> = r
        .households
        .reached_list
        .iter()
        .filter(|h| covers(&h.region))
        .cloned()
        .collect();
    Ok(RegionalReport {
        as_of: r.as_of.clone(),
        region: region.to_string(),
        households_registered: registered.values().sum(),
        households_reached: households.len() as u64,
        households,
        totals: totals.into_values().collect(),
        rows,
    })
}
