//! Following one application or one household through the chain, from
//! state: the record, its attestations, the plan and releases it led to,
//! the money movements and the anomalies about it.

use aidledger_contracts::model::{
    Anomaly, Application, Household, Plan, Program, Recipient, Release, ReleaseSource, Subject,
};
use aidledger_contracts::{keys, Attestation, MoneyEvent, Party};
use aidledger_execution::StateRead;
use aidledger_types::{Hash, Slug};
use serde::{Deserialize, Serialize};

use crate::report::{record, records};
use crate::AuditError;

/// An application and everything that follows from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApplicationTrace {
    pub application: Application,
    pub program: Option<Program>,
    pub plan: Option<Plan>,
    pub attestations: Vec<Attestation>,
    /// Releases of the plan's tranches.
    pub releases: Vec<Release>,
    /// The program's ledger entries for this plan.
    pub ledger: Vec<MoneyEvent>,
    /// Anomalies about the application or about its releases.
    pub anomalies: Vec<Anomaly>,
    /// Through a node's API, the trace comes in pages: pass `next` back as
    /// `after` until it is null, joining the lists (ADR 019). Built here
    /// from state, it is whole and `next` is null.
    #[serde(default)]
    pub next: Option<String>,
}

/// A household file and every payment and check about it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HouseholdTrace {
    pub household: Household,
    pub attestations: Vec<Attestation>,
    /// Releases paid to the household.
    pub releases: Vec<Release>,
    /// Ledger entries, in every program, paying the household.
    pub ledger: Vec<MoneyEvent>,
    /// Anomalies about the household or about its releases.
    pub anomalies: Vec<Anomaly>,
    /// As in [`ApplicationTrace::next`].
    #[serde(default)]
    pub next: Option<String>,
}

fn attestations_about(
    state: &dyn StateRead,
    subject: &Subject,
) -> Result<Vec<Attestation>, AuditError> {
    // Attestations are keyed by subject, then claim: read only the
    // subject's range.
    records(state, &keys::attestations_about_prefix(subject))
}

fn anomalies_about(
    state: &dyn StateRead,
    subject: &Subject,
    releases: &[Release],
) -> Result<Vec<Anomaly>, AuditError> {
    let all: Vec<Anomaly> = records(state, keys::ANOMALY_PREFIX)?;
    Ok(all
        .into_iter()
        .filter(|a| {
            &a.subject == subject
                || matches!(a.subject, Subject::Release(r) if releases.iter().any(|x| x.id == r))
        })
        .collect())
}

/// `None` when there is no such application.
pub fn application(
    state: &dyn StateRead,
    id: &Slug,
) -> Result<Option<ApplicationTrace>, AuditError> {
    let Some(application): Option<Application> = record(state, &keys::application(id))? else {
        return Ok(None);
    };
    let program: Option<Program> = record(state, &keys::program(&application.program))?;
    let plan: Option<Plan> = match &application.plan {
        Some(p) => record(state, &keys::plan(p))?,
        None => None,
    };
    let subject = Subject::Application(id.clone());
    let releases: Vec<Release> = match &plan {
        Some(pl) => records::<Release>(state, keys::RELEASE_PREFIX)?
            .into_iter()
            .filter(|r| matches!(&r.source, ReleaseSource::Tranche { plan, .. } if plan == &pl.id))
            .collect(),
        None => Vec::new(),
    };
    let ledger: Vec<MoneyEvent> = match &plan {
        Some(pl) => records::<MoneyEvent>(state, &keys::ledger_prefix(&application.program))?
            .into_iter()
            .filter(|e| e.plan.as_ref() == Some(&pl.id))
            .collect(),
        None => Vec::new(),
    };
    Ok(Some(ApplicationTrace {
        attestations: attestations_about(state, &subject)?,
        anomalies: anomalies_about(state, &subject, &releases)?,
        application,
        program,
        plan,
        releases,
        ledger,
        next: None,
    }))
}

/// `None` when there is no such household.
pub fn household(state: &dyn StateRead, id: &Hash) -> Result<Option<HouseholdTrace>, AuditError> {
    let Some(household): Option<Household> = record(state, &keys::household(id))? else {
        return Ok(None);
    };
    let subject = Subject::Household(*id);
    let releases: Vec<Release> = records::<Release>(state, keys::RELEASE_PREFIX)?
        .into_iter()
        .filter(|r| r.recipient == Recipient::Household(*id))
        .collect();
    let mut ledger = Vec::new();
    for p in records::<Program>(state, keys::PROGRAM_PREFIX)? {
        ledger.extend(
            records::<MoneyEvent>(state, &keys::ledger_prefix(&p.id))?
                .into_iter()
                .filter(|e| e.to == Party::Household(*id) || e.from == Party::Household(*id)),
        );
    }
    ledger.sort_by_key(|e| (e.height, e.seq));
    Ok(Some(HouseholdTrace {
        attestations: attestations_about(state, &subject)?,
        anomalies: anomalies_about(state, &subject, &releases)?,
        household,
        releases,
        ledger,
        next: None,
    }))
}
